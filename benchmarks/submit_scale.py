"""From the command to every array task in SLURM's queue: runlab submit vs Hydra's submitit launcher.

    bash scripts/slurm-local start
    pip install -e ".[bench]"          # hydra-submitit-launcher, the peer
    python benchmarks/submit_scale.py [--points 1000 10000] [--peer-points 1000] [--peer-timeout 300]

A throw-away git project holds one small task and its config (``a``, ``b``,
``seed``); each sweep is the grid ``a=range(10) b=range(10) seed=range(N/100)``
on the local SLURM cluster. The clock starts before the command and stops when
``squeue`` lists every array task of the sweep. The jobs are submitted *held*
(``--hold``) and cancelled right after, so nothing runs on the shared cluster.

- **runlab**: ``runlab submit tasks/task.py ... --launcher slurm
  launcher.additional_parameters.hold=true``; the runs pre-created (directories
  holding ``metadata/info.json``) are counted.
- **Hydra's submitit launcher** (``hydra-submitit-launcher``): ``python
  tasks/plain.py -m hydra/launcher=submitit_slurm ...`` on a plain ``@hydra.main``
  task with the same config. It submits one array through submitit and then waits
  for the results, so it is stopped once its array is queued, or after
  ``--peer-timeout`` seconds.

Machine load changes the figures: the load average is printed with each row. So does
the number of job records SLURM's controller holds when the sweep starts: cancelled and
ended jobs stay there for ``MinJobAge`` (300 s here), and a busy controller answers
``sbatch`` more slowly. ``--drain`` waits until it holds fewer than 100 before each sweep.

``--busy N`` makes the controller busy first: N other jobs, held (arrays of 1,000 of
``sbatch --hold --wrap true``), stay in the queue while every sweep is measured, and
are cancelled at the end. ``--points 10000 50000 --busy 10000 --peer-points`` gives
the scale targets' rows: 10,000 points on a controller already holding 10,000 jobs,
and 50,000 points (several arrays).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TASK = """
import runlab

@runlab.launch(config_path=".", config_name="task")
def main(ctx):
    ctx.logger.log_metrics({"x": ctx.config.a * ctx.config.b})

if __name__ == "__main__":
    main()
"""
PLAIN = """
import hydra

@hydra.main(config_path=".", config_name="task", version_base="1.3")
def main(cfg):
    return cfg.a * cfg.b

if __name__ == "__main__":
    main()
"""
CONFIG = "a: 0\nb: 0\nseed: 0\nrunlab:\n  logs: logs\n"


def project(root: Path) -> Path:
    repo = root / "project"
    (repo / "tasks").mkdir(parents=True)
    (repo / "tasks" / "task.py").write_text(TASK)
    (repo / "tasks" / "plain.py").write_text(PLAIN)
    (repo / "tasks" / "task.yaml").write_text(CONFIG)
    (repo / ".gitignore").write_text("logs/\nmultirun/\n.submitit/\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *cmd], cwd=repo, check=True
        )
    return repo


def grid(points: int) -> list[str]:
    if points % 100:
        sys.exit(f"--points {points}: use a multiple of 100 (a 10 x 10 x N grid)")
    return ["a=range(10)", "b=range(10)", f"seed=range({points // 100})"]


def queued(args: list[str]) -> int:
    out = subprocess.run(["squeue", "-h", "-r", *args, "-o", "%i"], capture_output=True, text=True)
    return len(out.stdout.split()) if out.returncode == 0 else 0


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def in_controller() -> int:
    """Job records the controller holds now (pending, running and recently ended tasks)."""
    return queued(["-t", "all"])


def drain(timeout: float = 420.0) -> None:
    start = time.perf_counter()
    while in_controller() >= 100 and time.perf_counter() - start < timeout:
        time.sleep(5)


def make_busy(jobs: int) -> list[str]:
    """Queue ``jobs`` held jobs that never run (arrays of 1,000); their job ids."""
    ids = []
    for first in range(0, jobs, 1000):
        size = min(1000, jobs - first)
        out = subprocess.run(
            [
                *("sbatch", "--parsable", "--hold", f"--array=0-{size - 1}"),
                *("-J", "runlab-busy", "-o", "/dev/null", "--wrap", "true"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        ids.append(out.stdout.strip().split(";")[0])
    while queued(["-j", ",".join(ids)]) < jobs:
        time.sleep(0.2)
    return ids


def bench_runlab(points: int) -> dict:
    import orjson

    before = in_controller()
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
                *grid(points),
                "--launcher",
                "slurm",
                "launcher.additional_parameters.hold=true",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            env={**os.environ, "RUNLAB_LOGS": str(repo / "logs")},
        )
        exited = time.perf_counter() - start
        if proc.returncode != 0:
            return {"tool": "runlab", "points": points, "error": proc.stderr.strip()[-300:]}
        (record_file,) = (repo / "logs" / ".sweeps").glob("*.json")
        record = orjson.loads(record_file.read_bytes())
        arrays = [a["job_id"] for a in record["submissions"][0]["arrays"]]
        while queued(["-j", ",".join(arrays)]) < points:
            time.sleep(0.02)
        in_queue = time.perf_counter() - start
        tasks = queued(["-j", ",".join(arrays)])
        subprocess.run(["scancel", *arrays], check=False)
        runs = sum(
            1
            for p in (repo / "logs").iterdir()
            if p.name.isdigit() and (p / "metadata" / "info.json").exists()
        )
    return {
        "tool": "runlab",
        "points": points,
        "runs": runs,
        "arrays": len(arrays),
        "tasks": tasks,
        "exit": exited,
        "queue": in_queue,
        "load": load(),
        "before": before,
    }


def bench_hydra(points: int, timeout: float) -> dict:
    name = f"hydra-bench-{uuid.uuid4().hex[:8]}"
    before = in_controller()
    with tempfile.TemporaryDirectory() as tmp:
        repo = project(Path(tmp))
        start = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "tasks/plain.py",
                "-m",
                "hydra/launcher=submitit_slurm",
                *grid(points),
                f"hydra.launcher.name={name}",
                "+hydra.launcher.additional_parameters.hold=true",
                f"hydra.sweep.dir={repo / 'multirun'}",
                f"hydra.launcher.submitit_folder={repo / '.submitit' / '%j'}",
                "hydra.launcher.timeout_min=5",
            ],
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        in_queue = None
        tasks = 0
        while time.perf_counter() - start < timeout:
            tasks = queued(["-n", name])
            if tasks >= points:
                in_queue = time.perf_counter() - start
                break
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # it would wait for the results of every job
        proc.wait()
        err = proc.stderr.read() if proc.stderr else ""
        subprocess.run(["scancel", f"--name={name}"], check=False)
        out = {"tool": "hydra-submitit-launcher", "points": points, "tasks": tasks}
        out["queue"] = in_queue
        out["load"] = load()
        out["before"] = before
        if in_queue is None:
            out["error"] = (
                f"not all in the queue after {timeout:.0f} s ({tasks} tasks)"
                if proc.returncode in (None, -9)
                else err.strip()[-300:]
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--peer-points", type=int, nargs="*", default=[1000])
    parser.add_argument("--peer-timeout", type=float, default=300.0)
    parser.add_argument(
        "--drain", action="store_true", help="wait for an almost empty controller before each"
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="N other held jobs in the queue while measuring"
    )
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        sys.exit("no sbatch on PATH: start the local cluster with scripts/slurm-local")
    if args.peer_points:  # before anything is measured: a late exit would lose the rows
        try:
            import hydra_plugins.hydra_submitit_launcher  # noqa: F401
        except ImportError:
            sys.exit("the peer is not installed: pip install -e '.[bench]' (or --peer-points)")
    print(
        "| tool | points | runs pre-created | arrays | tasks in queue | command exits | all in queue "
        "| jobs in SLURM before | load avg (1/5/15 min) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    results = []
    if args.drain:
        drain()
    busy = make_busy(args.busy) if args.busy else []
    try:
        for n in args.points:
            if args.drain and not busy:
                drain()
            results.append(bench_runlab(n))
        if args.peer_points:
            for n in args.peer_points:
                if args.drain and not busy:
                    drain()
                results.append(bench_hydra(n, args.peer_timeout))
    finally:
        if busy:
            subprocess.run(["scancel", *busy], check=False)
    for r in results:
        if r.get("error"):
            print(
                f"| {r['tool']} | {r['points']} | | | {r.get('tasks', '')} | | failed: {r['error']} "
                f"| {r.get('before', '')} | {r.get('load', '')} |"
            )
            continue
        exits = f"{r['exit']:.2f} s" if "exit" in r else "(waits for results)"
        queue = f"{r['queue']:.2f} s" if r["queue"] is not None else "-"
        print(
            f"| {r['tool']} | {r['points']} | {r.get('runs', '-')} | {r.get('arrays', 1)} | "
            f"{r['tasks']} | {exits} | {queue} | {r['before']} | {r['load']} |"
        )


if __name__ == "__main__":
    main()
