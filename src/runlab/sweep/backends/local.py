"""Local processes: ``max_parallel`` detached workers on this machine share a sweep's runs.

Each worker (``python -m runlab.sweep.jobs worker JOBS_FILE N``) claims queued runs one
after another through an exclusive ``metadata/.claimed`` file per run, so workers need
no coordinator and no run is executed twice. A worker's output is
``<log_dir>/worker-N.out``; each run's own is ``<log_dir>/<run_id>.out``/``.err``, a
retry's ``<run_id>.<n>.out``/``.err`` (``n``: the sweep's n-th submission).
There is no queue to ask: a job's state is whether its processes are alive.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from runlab.record.files import now_iso
from runlab.status import Status
from runlab.sweep.backends.base import (
    Ending,
    JobState,
    LauncherError,
    Limits,
    Placed,
    Target,
    plan_arrays,
)
from runlab.sweep.jobs import CLAIM, claim, local_log_name
from runlab.sweep.record import Submission, SweepRecord, Worker

NAME = "local"


def pid_alive(pid: Any, marker: str = "runlab.sweep.jobs") -> bool:
    """Whether ``pid`` is alive on this host and is a runlab process (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError, TypeError):
        try:
            os.kill(int(pid), 0)
        except (OSError, ValueError, TypeError):
            return False
        return True
    try:
        if Path(f"/proc/{int(pid)}/stat").read_text().split(") ")[-1][:1] == "Z":
            return False  # a zombie has ended
    except OSError:
        return False
    # Empty while the kernel makes a program just started (exec) its argument list (and
    # for a kernel thread): look again, briefly, before saying "not runlab's".
    for wait in (0.001, 0.005, 0.02, 0.05):
        if cmdline:
            break
        time.sleep(wait)
        try:
            cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
        except OSError:
            return False
    return marker.encode() in cmdline


def python_executable() -> str:
    """The interpreter jobs run: this environment's (pixi's, when run through pixi)."""
    return sys.executable


class Backend:
    """Worker processes on this machine (see the module)."""

    name: ClassVar[str] = NAME
    title: ClassVar[str] = "local processes"
    cluster: ClassVar[bool] = False
    defaults: ClassVar[Mapping[str, Any]] = {
        "name": NAME,
        "max_parallel": 2,
        "timeout_min": 1440,
        "gpus": 0,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": 0,
        "cpus_per_task": None,
        "mem_gb": None,
    }
    preemption: ClassVar[str] = (
        "at timeout_min the worker sends the run SIGUSR2 (it saves its checkpoint and ends "
        "TIMEOUT); `runlab cancel` sends SIGTERM (INTERRUPTED). Nothing is run again on its "
        "own: `runlab retry` resumes from the checkpoint."
    )
    requeues_timeouts: ClassVar[bool] = False
    vanish_grace_s: ClassVar[float] = 0.0

    def available(self) -> bool:
        return True

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        if int(cfg.get("nodes") or 1) != 1:
            raise LauncherError(
                f"launcher.nodes={cfg['nodes']}{where}: the local launcher runs on this machine "
                "only; use launcher.nodes=1 (and launcher.tasks_per_node=N for N ranks), or a "
                "cluster's launcher"
            )
        parallel = cfg.get("max_parallel")
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise LauncherError(f"launcher.max_parallel={parallel!r}{where}: give an integer >= 1")

    def limits(self, cfg: Mapping[str, Any]) -> Limits | None:
        return None

    def plan(self, count: int, limits: Limits | None) -> list[tuple[int, int]]:
        return plan_arrays(count, None)

    def validate(self, cfg: Mapping[str, Any], count: int, limits: Limits | None) -> None:
        return None  # nothing to ask: check() has seen the settings

    def spec_fields(self, cfg: Mapping[str, Any], log_dir: Path, count: int) -> dict[str, Any]:
        workers = max(1, min(int(cfg.get("max_parallel") or 1), count))
        return {"worker_logs": [str(log_dir / f"worker-{w}.out") for w in range(workers)]}

    def submit(
        self,
        jobs_file: Path,
        count: int,
        cfg: Mapping[str, Any],
        log_dir: Path,
        limits: Limits | None,
    ) -> Placed:
        """Start ``max_parallel`` detached worker processes sharing the runs of ``jobs_file``."""
        workers = max(1, min(int(cfg["max_parallel"]), count))
        gpus = int(cfg.get("gpus_per_node") or cfg.get("gpus") or 0)  # per run, all its ranks
        placed = Placed()
        for worker in range(workers):
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(
                    str(g) for g in range(worker * gpus, (worker + 1) * gpus)
                )
            argv = [python_executable(), "-m", "runlab.sweep.jobs", "worker", str(jobs_file)]
            with open(log_dir / f"worker-{worker}.out", "ab") as out:
                proc = subprocess.Popen(
                    [*argv, str(worker)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,  # its own process group: `runlab cancel` stops it all
                )
            placed.workers.append(Worker(proc.pid))
        return placed

    # ------------------------------------------------------------------ states
    def states(self, record: SweepRecord, targets: list[Target]) -> dict[int, JobState]:
        if record.host and record.host != socket.gethostname():
            return {}  # its workers are on another machine: nothing to check from here
        out: dict[int, JobState] = {}
        for t in targets:
            workers = [w.pid for w in t.submission.workers]
            was = t.info.get("status")
            if was == Status.QUEUED:
                if any(pid_alive(p) for p in workers):
                    out[t.run_id] = JobState("WORKERS_ALIVE")
                else:
                    out[t.run_id] = JobState(
                        "WORKERS_GONE",
                        Ending.ENDED,
                        f"the local workers (pids {', '.join(map(str, workers))}) ended "
                        "without running it",
                    )
                continue
            pid = t.info.get("pid")  # RUNNING / PREEMPTED: its own process
            if t.info.get("host") != socket.gethostname() or pid is None:
                continue
            if pid_alive(pid, marker=""):
                out[t.run_id] = JobState("PROCESS_ALIVE")
            else:
                out[t.run_id] = JobState(
                    "PROCESS_GONE",
                    Ending.ENDED,
                    f"its process {pid} ended without the run recording an end (it was {was})",
                )
        return out

    def job_states(self, job_ids: list[str]) -> dict[str, JobState]:
        gone = JobState("PROCESS_GONE", Ending.ENDED, "its process on this machine is gone")
        return {j: (JobState("ALIVE") if pid_alive(j, marker="") else gone) for j in job_ids}

    # ------------------------------------------------------------------ cancel
    def cancel(
        self, record: SweepRecord, targets: list[Target], whole: bool, wait_s: float
    ) -> None:
        stopped: list[int] = []
        if whole:
            for sub in record.submissions:
                for w in sub.workers:
                    if pid_alive(w.pid):
                        try:
                            os.killpg(w.pid, signal.SIGTERM)  # the worker and its task
                            stopped.append(w.pid)
                        except (ProcessLookupError, PermissionError):
                            pass
        claimed = []  # queued runs this command took: no worker may start them now
        for t in targets:
            info: Mapping[str, Any] = t.run.read_info()
            if info.get("status") == Status.QUEUED:
                if claim(t.run.path):
                    claimed.append(t)
                    continue
                if whole:
                    continue  # its worker was stopped above, and the task with it
                info = _started(t, wait_s)  # a worker took it a moment ago: stop its task
                if info.get("status") == Status.QUEUED:  # its worker died, or its task is slow
                    claimed.append(t)  # to start: a task refuses a run cancelled before it
                    continue
            if not whole and info.get("pid") and info.get("host") == socket.gethostname():
                try:
                    os.kill(int(info["pid"]), signal.SIGTERM)
                    stopped.append(int(info["pid"]))
                except ProcessLookupError:
                    pass
        deadline = time.time() + wait_s
        while time.time() < deadline and any(pid_alive(p, marker="") for p in stopped):
            time.sleep(0.2)
        for t in claimed:  # nobody else will write them
            info = t.run.read_info()
            if info.get("status") == Status.QUEUED:
                t.run.update_info(
                    status=Status.INTERRUPTED,
                    error={"type": "Cancelled", "message": "cancelled before the run started"},
                    end_time=now_iso(),
                    reconciled={
                        "time": now_iso(),
                        "by": "runlab cancel",
                        "was": Status.QUEUED,
                        "job": "CANCELLED",
                    },
                )

    def doctor(self) -> tuple[str, str, str]:
        return ("ok", "sweeps can always run as processes on this machine", "")

    # ------------------------------------------------------------------ output
    def log_file(self, submission: Submission, position: int, run_id: int, err: bool) -> Path:
        return Path(submission.log_dir) / local_log_name(run_id, submission.n, err)

    def job_label(self, submission: Submission, position: int) -> str:
        pids = [str(w.pid) for w in submission.workers]
        return f"local workers {', '.join(pids)}" if pids else "?"

    def describe(self, cfg: Mapping[str, Any]) -> list[str]:
        return [f"up to {cfg['max_parallel']} processes at once, timeout {cfg['timeout_min']} min"]


def _started(t: Target, wait_s: float) -> Mapping[str, Any]:
    """The info of a run a worker has claimed, once its task has started (RUNNING, with
    its pid) or ended; as it is after ``wait_s`` otherwise."""
    deadline = time.time() + wait_s
    info = t.run.read_info()
    while info.get("status") == Status.QUEUED and time.time() < deadline:
        try:
            worker = int((t.run.metadata / CLAIM).read_text() or 0)
        except (OSError, ValueError):
            worker = 0
        if worker and not pid_alive(worker):
            break  # the worker that took it is gone: it will never start
        time.sleep(0.2)
        info = t.run.read_info()
    return info
