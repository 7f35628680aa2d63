"""What runs on the compute node (or a local worker): one task run in a child process.

On SLURM, submitit runs :class:`ArrayEntry` ``(JOBS_FILE, OFFSET)`` for task ``i``
of an array: entry ``OFFSET + i`` of a sweep's jobs file (written once by
``runlab submit``, a JSON list); ``python -m runlab.sweep.jobs worker JOBS_FILE N`` is a
local worker that claims queued runs one after another (an exclusive
``metadata/.claimed`` file per run, so workers share the queue without a
coordinator and no run is executed twice).

Each run starts the task's own Python from its code snapshot, with the overrides
as an argument list (never a shell string), in its pre-created run directory.
When SLURM signals preemption or the coming time limit (SIGUSR2), the child is
asked to stop (it marks the run ``PREEMPTED``, its last checkpoint on disk), the
run becomes ``PREEMPTED`` or ``TIMEOUT`` and submitit requeues the array task
(``ArrayEntry.checkpoint``), to resume in the same run directory. A cancelled job
(SIGTERM) leaves its run ``INTERRUPTED``.

The jobs file::

    {"python": ..., "cwd": ..., "timeout_min": ..., "max_num_timeout": 3,
     "log_pattern": ".../%A_%a_0_log", "codes": [{"script": ..., "env": {...}}],
     "jobs": [{"run_dir": ..., "overrides": [...], "code": 0}, ...]}
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from runlab.errors import UserError
from runlab.record import distributed
from runlab.record.process import writer_alive
from runlab.record.rundir import RUN_DIR_ENV, RunDir
from runlab.status import ACTIVE, Status

STOP_GRACE_S = 60.0
CLAIM = ".claimed"


class RunFailedError(UserError, RuntimeError):
    """The task ended without completing; the message names its run and status (exit 1)."""

    code = 1


def load(path: Path | str) -> dict[str, Any]:
    return orjson.loads(Path(path).read_bytes())


class TaskRun:
    """One run of a task in a child process, with the signals of a scheduler handled."""

    def __init__(
        self,
        spec: dict[str, Any],
        entry: dict[str, Any],
        log_out: str | None = None,
        log_err: str | None = None,
    ) -> None:
        code = spec["codes"][entry.get("code", 0)]
        self.python = spec["python"]
        self.script = code["script"]
        self.env = code.get("env") or {}
        self.cwd = spec.get("cwd") or os.getcwd()
        self.overrides = list(entry["overrides"])
        self.run = RunDir(entry["run_dir"])
        self.timeout_min = spec.get("timeout_min")
        self.max_num_timeout = int(spec.get("max_num_timeout") or 0)
        self.log_out, self.log_err = log_out, log_err
        self.proc: subprocess.Popen | None = None
        self.started = time.time()
        self.stop_signal: int | None = None  # SIGUSR2 (preempt/time limit) or SIGTERM (cancel)
        self.stop_deadline = 0.0
        self.extra: dict[str, Any] = {}
        self.tasks = int(spec.get("tasks_per_node") or 1)  # local: ranks per run (distributed)
        self.threads = spec.get("cpus_per_task")
        self.retries = _retries(self.run.read_info())  # which attempt this job is for

    # ---------------------------------------------------------------- signals
    def on_signal(self, signum: int, frame: Any = None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self.stop_deadline = time.time() + STOP_GRACE_S
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signum)  # every rank; the task ignores a second one
            except ProcessLookupError:
                pass

    def _written_by_another(self) -> bool:
        """Whether a live process other than this job's task writes the run: a second job
        of the same run (a scheduler that ran it twice), whose task the lock turned away."""
        info = self.run.read_info()
        mine = self.proc.pid if self.proc is not None else None
        return info.get("pid") != mine and writer_alive(info) is True

    def timed_out(self) -> bool:
        # submitit's rule: past 80% of the time limit (or within 10 minutes of it).
        if not self.timeout_min:
            return False
        limit = float(self.timeout_min) * 60
        return time.time() - self.started >= min(0.8 * limit, limit - 600)

    # -------------------------------------------------------------------- run
    def start(self, stdout: Any = None, stderr: Any = None) -> None:
        fields: dict[str, Any] = {}
        if self.log_out:
            fields.update(log_out=self.log_out, log_err=self.log_err)
        fields.update(self.extra)
        if fields:
            self.run.update_info(**fields)
        env = {**os.environ, **self.env, RUN_DIR_ENV: str(self.run.path)}
        self.started = time.time()
        self.proc = distributed.spawn(  # several ranks: torchrun's environment for each
            [self.python, self.script, *self.overrides],
            self.tasks,
            self.threads,
            cwd=self.cwd,
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )

    def wait(self, local_timeout: bool = False) -> int:
        assert self.proc is not None
        while True:
            try:
                return self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            limit = float(self.timeout_min or 0) * 60
            expired = limit and time.time() - self.started > limit
            if local_timeout and self.stop_signal is None and expired:
                self.on_signal(signal.SIGUSR2)
            if self.stop_signal is not None and time.time() > self.stop_deadline:
                self.proc.kill()

    def poll_wait(self) -> int:
        """Wait for the child by polling, safe inside a signal handler (submitit's checkpoint
        runs in one, while ``__call__`` waits): a poll that finds the child's lock taken
        answers ``None``; a stopped child past its grace is killed, and given up on 5 s later."""
        assert self.proc is not None
        killed = 0.0
        while True:
            code = self.proc.poll()
            if code is not None:
                return code
            now = time.time()
            if killed and now > killed + 5:
                return self.proc.returncode if self.proc.returncode is not None else -9
            if self.stop_signal is not None and now > self.stop_deadline and not killed:
                self.proc.kill()
                killed = now
            time.sleep(0.2)

    def outcome(self, code: int, requeue: Any = None) -> Status:
        """The run's status after the child ended; requeues a preempted SLURM job."""
        run = self.run
        info = run.read_info()
        status = Status.of(info.get("status"))
        if _retries(info) != self.retries:
            # `runlab retry` requeued the run while this job's task was ending: the run
            # is the new attempt's now, and this job neither writes it nor requeues it.
            return status or Status.QUEUED
        if self.stop_signal == signal.SIGUSR2:
            timed_out = self.timed_out() or requeue is None
            if status is None or status in ACTIVE or status == Status.TIMEOUT:
                info = run.read_info()
                timeouts = int(info.get("timeouts") or 0) + (1 if timed_out else 0)
                status = Status.TIMEOUT if timed_out else Status.PREEMPTED
                run.update_info(status=status, timeouts=timeouts or None)
                if requeue is not None and (not timed_out or timeouts <= self.max_num_timeout):
                    requeue()
                    return status
                if requeue is not None:
                    run.update_info(
                        error={
                            "type": "TimeoutError",
                            "message": f"time limit reached {timeouts} times "
                            f"(max_num_timeout={self.max_num_timeout}): not requeued again",
                        }
                    )
            return status or Status.TIMEOUT
        if code == 0 and status == Status.COMPLETE:
            return status
        if status == Status.RUNNING and self._written_by_another():
            return status  # this job's task was turned away: the run is another's to end
        if status in (None, Status.QUEUED, Status.RUNNING):
            if self.stop_signal == signal.SIGTERM:
                status, kind = Status.INTERRUPTED, "Cancelled"
                reason = "the job was cancelled (SIGTERM) before the task recorded an end"
            else:
                status, kind = Status.FAILED, "JobError"
                reason = f"the task process ended with {_describe(code)} before recording an end"
            run.update_info(status=status, error={"type": kind, "message": reason})
        return status or Status.FAILED


def _retries(info: dict[str, Any]) -> int:
    """How many times ``runlab retry`` has requeued the run whose ``info`` this is."""
    try:
        return int(info.get("retries") or 0)
    except (TypeError, ValueError, OverflowError):  # a hand-edited record: counted as none
        return 0


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    if code > 128 and code - 128 in signal.Signals._value2member_map_:
        return f"exit code {code} ({signal.Signals(code - 128).name})"
    return f"exit code {code}"


# ---------------------------------------------------------------------- SLURM
class ArrayEntry:
    """What submitit runs for an array task: entry ``offset + SLURM_ARRAY_TASK_ID`` of a jobs file.

    Light to pickle (two fields), so that ``executor.map_array`` writes small
    pickles; the run itself is described once, in the sweep's jobs file.
    submitit runs it in every task of the job step (one per rank); on SIGUSR2
    (preemption, or the time limit ``signal_delay_s`` ahead) submitit calls
    :meth:`checkpoint` in task 0, which stops the run (it marks itself
    ``PREEMPTED``, its last checkpoint on disk), records ``PREEMPTED`` or
    ``TIMEOUT`` and hands submitit the same entry to requeue.
    """

    def __init__(self, jobs_file: Path | str, offset: int) -> None:
        self.jobs_file = str(jobs_file)
        self.offset = int(offset)
        self._job: TaskRun | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"jobs_file": self.jobs_file, "offset": self.offset}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["jobs_file"], state["offset"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ArrayEntry({self.jobs_file!r}, {self.offset})"

    def _task_run(self, index: int) -> TaskRun:
        spec = load(self.jobs_file)
        entry = spec["jobs"][self.offset + index]
        array = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "")
        task = os.environ.get("SLURM_ARRAY_TASK_ID", str(index))
        pattern = spec.get("log_pattern") or ""
        base = pattern.replace("%A", array).replace("%a", task) if pattern else ""
        out, err = (f"{base}.out", f"{base}.err") if base else (None, None)
        job = TaskRun(spec, entry, out, err)
        job.tasks = (
            1  # srun starts the step's tasks; each one is a rank (runlab.record.distributed)
        )
        return job

    def __call__(self, index: int | None = None) -> str:
        index = _array_task(index)
        job = self._job = self._task_run(index)
        rank = distributed.slurm_task()
        # scancel's SIGTERM (submitit ignores it): stop the run, it ends INTERRUPTED
        signal.signal(signal.SIGTERM, job.on_signal)
        if rank > 0:  # submitit's SIGUSR2 handler does nothing outside task 0
            signal.signal(signal.SIGUSR2, job.on_signal)
        os.environ.update(distributed.slurm_rank_env(job.run))
        if rank > 0:  # ranks > 0 run the task; task 0 keeps the record
            job.log_out = job.log_err = None
            job.start()
            code = job.poll_wait()
            if code:
                raise RunFailedError(
                    f"rank {rank} of run {job.run.run_id} ended with {_describe(code)}"
                )
            return Status.COMPLETE
        array = os.environ.get("SLURM_ARRAY_JOB_ID", "")
        print(
            f"[runlab] job {array}_{index}: run {job.run.run_id} ({job.run.path})",
            file=sys.stderr,
            flush=True,
        )
        job.start()
        code = job.poll_wait()
        distributed.settle(job.run.path)  # task 0 killed while another rank failed: that failure
        status = job.outcome(code)
        print(f"[runlab] run {job.run.run_id} {status}", file=sys.stderr, flush=True)
        if status != Status.COMPLETE:
            raise RunFailedError(f"run {job.run.run_id} ended {status} ({job.run.path})")
        return status

    def checkpoint(self, index: int | None = None) -> Any:
        """Called by submitit (task 0) on SIGUSR2: stop the run, then requeue it or not."""
        from submitit.helpers import DelayedSubmission

        args = () if index is None else (index,)
        job = self._job
        if job is None or job.proc is None:  # the signal came before the run started
            return DelayedSubmission(ArrayEntry(self.jobs_file, self.offset), *args)
        job.on_signal(signal.SIGUSR2)
        code = job.poll_wait()
        distributed.settle(job.run.path)
        requeued: list[bool] = []
        status = job.outcome(code, requeue=lambda: requeued.append(True))
        print(
            f"[runlab] run {job.run.run_id} {status}"
            f"{', requeued by submitit' if requeued else ', not requeued'}",
            file=sys.stderr,
            flush=True,
        )
        if not requeued:
            return None
        return DelayedSubmission(ArrayEntry(self.jobs_file, self.offset), *args)


def _array_task(index: int | None) -> int:
    if index is not None:
        return int(index)
    return int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))


# ---------------------------------------------------------------------- local
def claim(run_dir: Path | str) -> bool:
    """Take a queued run for this process (exclusive); ``False`` when another one has it."""
    path = Path(run_dir) / "metadata" / CLAIM
    try:
        # 0o666 less the umask, as every record file (a logs directory a group shares)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    except FileNotFoundError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def local_log_name(run_id: int | str, submission: int, err: bool = False) -> str:
    """The file a local worker writes a run's stdout (stderr) to: ``<run_id>.out`` for
    the sweep's first submission, ``<run_id>.<n>.out`` for the n-th (a retry), so that
    each attempt's output is its own and ``runlab logs`` shows the latest one."""
    suffix = ".err" if err else ".out"
    return f"{run_id}{suffix}" if submission <= 1 else f"{run_id}.{submission}{suffix}"


def run_local(jobs_file: str, worker: int) -> int:
    spec = load(jobs_file)
    log_dir = Path(spec.get("log_dir") or Path(jobs_file).parent)
    stopping: list[int] = []
    current: list[TaskRun] = []

    def on_signal(signum: int, frame: Any) -> None:
        stopping.append(signum)
        for job in current:
            job.on_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failed = 0
    for entry in spec["jobs"]:
        if stopping:
            break
        if not claim(entry["run_dir"]):
            continue
        run_id = Path(entry["run_dir"]).name
        n = int(spec.get("submission") or 1)
        out, err = log_dir / local_log_name(run_id, n), log_dir / local_log_name(run_id, n, True)
        job = TaskRun(spec, entry, str(out), str(err))
        job.extra = {"local_workers": spec.get("worker_logs") or None, "worker_pid": os.getpid()}
        current[:] = [job]
        print(f"[runlab] worker {worker} (pid {os.getpid()}): run {run_id}", flush=True)
        with open(out, "ab") as fo, open(err, "ab") as fe:
            job.start(stdout=fo, stderr=fe)
            if stopping:
                job.on_signal(stopping[0])
            code = job.wait(local_timeout=True)
        status = job.outcome(code)
        current.clear()
        failed += status != Status.COMPLETE
        print(f"[runlab] worker {worker}: run {run_id} {status}", flush=True)
    return 1 if failed or stopping else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "worker":
        print("usage: python -m runlab.sweep.jobs worker JOBS_FILE N", file=sys.stderr)
        return 2
    return run_local(argv[1], int(argv[2]))


if __name__ == "__main__":
    sys.exit(main())
