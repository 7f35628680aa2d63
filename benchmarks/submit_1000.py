"""Time from `runlab submit` of a 1,000-point sweep to the job array sitting in SLURM's queue.

    bash scripts/slurm-local start
    python benchmarks/submit_1000.py [--points 1000]

A throw-away git project with a small task is created in a temporary directory;
the sweep is submitted to the local SLURM cluster, the clock stops when
`squeue` lists the array, and the array is cancelled. Phases are timed from
inside one process (expand, snapshot + pre-created runs, sbatch + job ids).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = """
import runlab

@runlab.launch(config_path=".", config_name="task")
def main(ctx):
    ctx.logger.log_metrics({"x": ctx.config.a * ctx.config.b})

if __name__ == "__main__":
    main()
"""
CONFIG = "a: 0\nb: 0\nseed: 0\nrunlab:\n  logs: logs\n"


def project(root: Path) -> Path:
    repo = root / "project"
    (repo / "tasks").mkdir(parents=True)
    (repo / "tasks" / "task.py").write_text(TASK)
    (repo / "tasks" / "task.yaml").write_text(CONFIG)
    (repo / ".gitignore").write_text("logs/\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *cmd], cwd=repo, check=True
        )
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        sys.exit("no sbatch on PATH: start the local cluster with scripts/slurm-local")
    side = round(args.points ** (1 / 3))
    a, b = ",".join(map(str, range(side))), ",".join(map(str, range(side)))
    seeds = max(1, args.points // (side * side))
    with tempfile.TemporaryDirectory() as tmp:
        repo = project(Path(tmp))
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "runlab",
                "submit",
                "tasks/task.py",
                f"a={a}",
                f"b={b}",
                f"seed=range({seeds})",
                "--launcher",
                "slurm",
                "launcher.array_parallelism=4",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        submitted = time.perf_counter()
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        job = proc.stderr.split("(job ")[1].split(")")[0]
        while (
            job
            not in subprocess.run(
                ["squeue", "-h", "-r", "-o", "%A %F"], capture_output=True, text=True
            ).stdout
        ):
            time.sleep(0.05)
        queued = time.perf_counter()
        pending = subprocess.run(["squeue", "-h", "-r", "-j", job], capture_output=True, text=True)
        in_queue = len(pending.stdout.splitlines())
        subprocess.run(["scancel", job], check=False)
        runs = sum(1 for p in (repo / "logs").iterdir() if p.name.isdigit())
    print("| points | runs created | array tasks in queue | command exit | in queue |")
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {side * side * seeds} | {runs} | {in_queue} | {submitted - start:.2f} s | "
        f"{queued - start:.2f} s |"
    )


if __name__ == "__main__":
    main()
