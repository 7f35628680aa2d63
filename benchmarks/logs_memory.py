"""``runlab logs`` of a multi-GB job log: its peak memory and time, against issue 24's bound.

    python benchmarks/logs_memory.py [--gb 2] [--workdir DIR]

A throw-away git project runs a one-run sweep of a small task on local workers
(``runlab submit ... --launcher local --wait``); its job's stdout file
(``<logs>/.sweeps/<sweep>/logs/1.out``) is then grown to ``--gb`` GiB of log lines
(some with multi-byte UTF-8 characters and carriage returns, as a progress bar writes
them), as a chatty job would leave it. Then, each in a fresh process whose output
goes to a pipe that is read and counted (a terminal would be slower still):

- ``runlab logs 1``: the whole log, copied a piece at a time;
- ``runlab logs 1 --err``: the small stderr, for the baseline (interpreter, imports).

The figures are the wall time, the peak resident memory of the ``runlab`` process
(``ru_maxrss`` of the child, from ``os.wait4``) and the bytes it printed. The target is
memory bounded by what it prints at once: ``runlab logs`` holds one piece of the file
(1 MiB) and its decoded text, whatever the file's size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = """
import runlab

@runlab.launch(config_path=".", config_name="task")
def main(ctx):
    print("hello from the task")
    ctx.logger.log_metrics({"x": 1.0})

if __name__ == "__main__":
    main()
"""
LINE = "step {i:>9} loss=0.123456 acc=0.9876 lr=1e-3 ✓ µ 🚀\r progress 100%\n"


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``, reading its stdout as it comes; wall time, peak RSS (MB), bytes."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    printed = 0
    while chunk := proc.stdout.read(1 << 20):
        printed += len(chunk)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {err}")
    return {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024, "printed": printed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the grown log (GiB)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        repo = Path(tmp) / "project"
        (repo / "tasks").mkdir(parents=True)
        (repo / "tasks" / "task.py").write_text(TASK)
        (repo / "tasks" / "task.yaml").write_text("a: 0\n")
        (repo / ".gitignore").write_text("logs/\n")
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
            subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *cmd], cwd=repo)
        env = {**os.environ, "RUNLAB_LOGS": str(repo / "logs")}
        runlab = [sys.executable, "-m", "runlab"]
        subprocess.run(
            [*runlab, "submit", "tasks/task.py", "a=1", "--launcher", "local", "--wait"],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
        (out,) = (repo / "logs" / ".sweeps").glob("*/logs/1.out")
        block = "".join(LINE.format(i=i) for i in range(20_000)).encode()
        target = int(args.gb * 2**30)
        with open(out, "ab") as fh:
            while fh.tell() < target:
                fh.write(block)
        size = out.stat().st_size
        rows = []
        for label, extra in (("stderr (small)", ["--err"]), ("stdout", [])):
            r = run([*runlab, "logs", "1", *extra], repo, env)
            rows.append((label, r))
    print(f"`python benchmarks/logs_memory.py --gb {args.gb:g}`: a {size / 2**30:.2f} GiB log\n")
    print("| `runlab logs 1` | printed | wall | peak memory |")
    print("|---|---:|---:|---:|")
    for label, r in rows:
        print(
            f"| {label} | {r['printed'] / 2**20:,.0f} MiB | {r['wall_s']:.2f} s "
            f"| {r['peak_mb']:.0f} MB |"
        )


if __name__ == "__main__":
    main()
