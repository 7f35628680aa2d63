"""Grid Engine: a 1,000-point submit, and how soon a cancelled pending array shows in status.

    bash scripts/sge-local start
    python benchmarks/sge_submit.py [--points 1000] [--repeat 3]

A throw-away git project holds one small task; each sweep is ``a=range(10)
b=range(N/10)`` submitted *held* (``launcher.additional_parameters=[-h]``) to the local
one-node cell of ``scripts/sge-local``, so nothing runs. Three figures per repeat:

- **submit**: from ``runlab submit`` to its exit, every run pre-created and every array
  in ``qstat`` (``qsub -w v`` first, then one ``qsub -t`` per ``max_aj_tasks`` tasks);
- **cancel**: ``runlab cancel`` of the pending sweep, until ``runlab status --json``
  says every run is ``INTERRUPTED`` (the command's own time included);
- **qdel behind runlab's back**: the array deleted with ``qdel`` right after the submit,
  until a plain ``runlab status`` says every run is ``INTERRUPTED``. Grid Engine keeps no
  record of a task that never ran, so its absence counts as the deletion only once the
  backend's grace (20 s after the submission: the accounting flush) has passed.
"""

from __future__ import annotations

import argparse
import json
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
    ctx.logger.log_metrics({"x": ctx.config.a * ctx.config.b})

if __name__ == "__main__":
    main()
"""
GIT = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]


def project(root: Path) -> Path:
    repo = root / "project"
    (repo / "tasks").mkdir(parents=True)
    (repo / "tasks" / "task.py").write_text(TASK)
    (repo / "tasks" / "task.yaml").write_text("a: 0\nb: 0\n")
    (repo / ".gitignore").write_text("logs/\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run([*GIT, *args], cwd=repo, check=True)
    return repo


def runlab(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RUNLAB_LOGS": str(repo / "logs")}
    return subprocess.run(
        [sys.executable, "-m", "runlab", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def counts(repo: Path) -> dict:
    return json.loads(runlab(repo, "status", "--json").stdout)["counts"]


def until_interrupted(repo: Path, points: int, timeout: float = 120) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if counts(repo) == {"INTERRUPTED": points}:
            return time.perf_counter() - start
        time.sleep(0.2)
    raise SystemExit(f"not INTERRUPTED after {timeout} s: {counts(repo)}")


def submit(repo: Path, points: int) -> tuple[float, list[str]]:
    start = time.perf_counter()
    runlab(
        repo, "submit", "tasks/task.py", "a=range(10)", f"b=range({points // 10})",
        "--launcher", "sge", "launcher.additional_parameters=[-h]",
    )  # fmt: skip
    took = time.perf_counter() - start
    (record,) = (repo / "logs" / ".sweeps").glob("*.json")
    jobs = [a["job_id"] for a in json.loads(record.read_text())["submissions"][0]["arrays"]]
    runs = sum(1 for p in (repo / "logs").iterdir() if p.name.isdigit())
    assert runs == points, runs
    return took, jobs


def one(points: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        repo = project(Path(tmp))
        took, jobs = submit(repo, points)
        start = time.perf_counter()
        runlab(repo, "cancel")
        cancel = time.perf_counter() - start + until_interrupted(repo, points)
    with tempfile.TemporaryDirectory() as tmp:
        repo = project(Path(tmp))
        _, jobs = submit(repo, points)
        subprocess.run(["qdel", *jobs], check=True, capture_output=True)
        behind = until_interrupted(repo, points)
    return {"submit_s": took, "arrays": len(jobs), "cancel_s": cancel, "qdel_s": behind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| points | arrays | submit | runlab cancel -> status | qdel -> status | load |")
    print("|---:|---:|---:|---:|---:|---:|")
    for _ in range(args.repeat):
        row = one(args.points)
        load = os.getloadavg()[0]
        print(
            f"| {args.points:,} | {row['arrays']} | {row['submit_s']:.2f} s "
            f"| {row['cancel_s']:.2f} s | {row['qdel_s']:.2f} s | {load:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
