"""What a scheduler runs: one task run in a child process, from its code snapshot.

A :class:`TaskJob` is pickled by submitit and executed on the compute node. It
starts the task's own Python with the overrides as an argument list (never a
shell string) and the pre-allocated run directory, so the task writes its
record there. When SLURM signals preemption or the coming time limit, submitit
calls :meth:`TaskJob.checkpoint`: the child is asked to stop (it marks the run
``PREEMPTED`` or ``TIMEOUT``, its last checkpoint already on disk) and the same
job is requeued, to resume in the same run directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runlab.rundir import RUN_DIR_ENV, RunDir

STOP_GRACE_S = 60.0


class RunFailedError(RuntimeError):
    """The task ended without completing; the message names its run and status."""


@dataclass
class TaskJob:
    python: str
    script: str  # the task script inside the code snapshot
    overrides: list[str]
    run_dir: str
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    timeout_min: float | None = None

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._started = time.time()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_proc", None)
        state.pop("_started", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def __call__(self) -> str:
        env = {**os.environ, **self.env, RUN_DIR_ENV: self.run_dir}
        self._started = time.time()
        self._proc = subprocess.Popen(
            [self.python, self.script, *self.overrides], cwd=self.cwd, env=env
        )
        code = self._proc.wait()
        return self._outcome(code)

    def _outcome(self, code: int) -> str:
        run = RunDir(self.run_dir)
        status = run.read_info().get("status")
        if code == 0 and status == "COMPLETE":
            return status
        if status in (None, "QUEUED", "RUNNING"):
            # The child died without closing its record (killed, or crashed before starting).
            reason = f"the task process ended with {_describe(code)} before recording an end"
            run.update_info(status="FAILED", error={"type": "JobError", "message": reason})
            status = "FAILED"
        raise RunFailedError(f"run {run.run_id} ended {status} ({_describe(code)}): see {run.path}")

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on SIGUSR2: stop the task cleanly, then requeue this job."""
        import submitit

        timed_out = self._timed_out()
        if self._proc is not None:
            _stop(self._proc.pid, STOP_GRACE_S)
        run = RunDir(self.run_dir)
        if run.read_info().get("status") in ("RUNNING", "PREEMPTED", "TIMEOUT"):
            run.update_info(status="TIMEOUT" if timed_out else "PREEMPTED")
        return submitit.helpers.DelayedSubmission(TaskJob(**self.__getstate__()))

    def _timed_out(self) -> bool:
        # submitit's own rule: past 80% of the time limit (or within 10 minutes of it).
        if not self.timeout_min:
            return False
        limit = self.timeout_min * 60
        return time.time() - self._started >= min(0.8 * limit, limit - 600)


def _stop(pid: int, grace_s: float) -> None:
    """Ask the child to stop (SIGUSR2), wait for it, kill it after ``grace_s``.

    This runs inside a signal handler that interrupted ``Popen.wait`` in the same
    thread, which holds Popen's internal lock: only raw ``os`` calls are safe here.
    """
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError:
        return
    deadline = time.time() + grace_s
    while time.time() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    if code > 128 and code - 128 in signal.Signals._value2member_map_:
        return f"exit code {code} ({signal.Signals(code - 128).name})"
    return f"exit code {code}"


@dataclass
class LocalWorker:
    """Runs queued jobs one after another; a few workers give bounded local parallelism.

    Workers claim runs through an exclusive file in each run directory, so they
    share the queue without a coordinator and no run is executed twice.
    """

    jobs: list[TaskJob]

    def __call__(self) -> dict[str, str]:
        outcomes: dict[str, str] = {}
        for job in self.jobs:
            claim = Path(job.run_dir) / "metadata" / ".claimed"
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            try:
                outcomes[job.run_dir] = job()
            except RunFailedError as exc:
                outcomes[job.run_dir] = str(exc)
        return outcomes
