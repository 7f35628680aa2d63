"""The life of one run: its record on start, a heartbeat while alive, its status at the end.

``RunSession`` is a context manager around the task's body. Whatever ends the
body (return, exception, Ctrl-C, SIGTERM, preemption) is written to
``info.yaml`` before the process goes, so a run that is gone is never left
``RUNNING`` except by ``kill -9``, which the heartbeat exposes.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runlab import environment
from runlab.files import dump_yaml, now_iso, read_yaml, write_atomic, write_record, write_yaml
from runlab.logger import RunLogger
from runlab.rundir import RunDir

HEARTBEAT_ENV = "RUNLAB_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 15.0


class Interrupted(BaseException):
    """Raised in the task when the process is asked to stop (SIGTERM, or SIGINT)."""

    def __init__(self, signum: int, status: str = "INTERRUPTED") -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum
        self.status = status


# The signals that stop a run, and the status each one leaves. SIGUSR2 is what
# SLURM (through submitit) sends before a preemption or the time limit.
_STOP_SIGNALS = {signal.SIGTERM: "INTERRUPTED", signal.SIGUSR2: "PREEMPTED"}


class ConfigMismatchError(RuntimeError):
    """A run directory being resumed holds a different config than the one given."""


def _slurm_ids() -> dict[str, Any]:
    env = os.environ
    ids: dict[str, Any] = {}
    if env.get("SLURM_JOB_ID"):
        ids["job_id"] = env["SLURM_JOB_ID"]
    if env.get("SLURM_ARRAY_JOB_ID"):
        ids["array_job_id"] = env["SLURM_ARRAY_JOB_ID"]
        ids["array_task_id"] = int(env.get("SLURM_ARRAY_TASK_ID", 0))
    if env.get("SLURM_RESTART_COUNT"):
        ids["slurm_restart_count"] = int(env["SLURM_RESTART_COUNT"])
    return ids


class RunSession:
    """Open a run directory for a task: write its record, yield a logger, close its status."""

    def __init__(
        self,
        run: RunDir,
        config: Mapping[str, Any],
        overrides: list[str] | None = None,
        code_path: Path | None = None,
        task: str | None = None,
        heartbeat_s: float | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.command = command or [sys.executable, *sys.argv]
        self.run = run
        self.config = dict(config)
        self.overrides = list(overrides or [])
        self.code_path = Path(code_path or Path.cwd())
        self.task = task
        self.heartbeat_s = heartbeat_s or float(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S))
        self.logger: RunLogger | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._started = 0.0
        self._info: dict[str, Any] = {}
        self._stopping = False

    # ----------------------------------------------------------------- start
    def __enter__(self) -> RunSession:
        run = self.run.create()
        info = run.read_info()
        self._check_config()
        write_record(run.config_file, self.config)
        write_yaml(run.metadata / "overrides.yaml", self.overrides)
        self._write_env()
        resumed = info.get("status") not in (None, "QUEUED")
        self._started = time.time()
        now = now_iso()
        fields: dict[str, Any] = {
            "run_id": run.run_id,
            "status": "RUNNING",
            "task": self.task or info.get("task"),
            "start_time": info.get("start_time") if resumed else now,
            "attempt_start_time": now,
            "end_time": None,
            "heartbeat": now,
            "heartbeat_interval_s": self.heartbeat_s,
            "host": socket.gethostname(),
            "user": getpass.getuser(),
            "pid": os.getpid(),
            "command": self.command,
            "cwd": str(Path.cwd()),
            "attempts": int(info.get("attempts", 0)) + 1,
            "error": None,
            **_slurm_ids(),
        }
        if resumed:
            fields["previous_status"] = info.get("status")
        self._info = run.update_info(**fields)
        self.logger = RunLogger(run)
        self._install_handlers()
        self._beat = threading.Thread(target=self._heartbeat, name="runlab-heartbeat", daemon=True)
        self._beat.start()
        return self

    def _write_env(self) -> None:
        try:
            env, diff = environment.capture(self.code_path)
        except Exception as exc:  # the record must not stop the run; say what is missing
            env, diff = {"error": f"{type(exc).__name__}: {exc}"}, None
        write_record(self.run.env_file, env)
        if diff:
            write_atomic(self.run.metadata / "git.diff", diff.encode())

    def _check_config(self) -> None:
        if not self.run.config_file.exists():
            return
        saved = read_yaml(self.run.config_file) or {}
        strip = lambda c: {k: v for k, v in c.items() if k != "runlab"}  # noqa: E731
        if strip(saved) != strip(_plain(self.config)):
            raise ConfigMismatchError(
                f"{self.run.path} already holds a run with a different config "
                f"(see {self.run.config_file}). Resume it with the same overrides, or start a "
                "new run by leaving out runlab.run_id."
            )

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.run.heartbeat()
            except OSError:
                pass

    # ---------------------------------------------------------------- signals
    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _STOP_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only the first stop signal interrupts the task; a second one (SLURM signals
        # every process of a job step, and submitit forwards it too) must not break
        # the writing of the final status.
        if self._stopping:
            return
        self._stopping = True
        raise Interrupted(signum, _STOP_SIGNALS[signum])

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # ------------------------------------------------------------------- end
    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._stopping = True
        self._stop.set()
        if self.logger is not None:
            self.logger.close()
        if exc is None:
            status, error = "COMPLETE", None
        elif isinstance(exc, Interrupted):
            status, error = exc.status, {"type": "Interrupted", "message": str(exc)}
        elif isinstance(exc, KeyboardInterrupt):
            status, error = "INTERRUPTED", {"type": "KeyboardInterrupt", "message": "Ctrl-C"}
        elif isinstance(exc, SystemExit) and exc.code in (0, None):
            status, error = "COMPLETE", None
        else:
            status = "FAILED"
            error = {"type": type(exc).__name__, "message": str(exc)}
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            write_atomic(self.run.metadata / "traceback.txt", text.encode())
        previous = (
            float(self._info.get("duration_s") or 0.0) if self._info.get("attempts", 1) > 1 else 0.0
        )
        if self._beat is not None:
            self._beat.join(timeout=5)
        self.run.update_info(
            status=status,
            end_time=now_iso(),
            duration_s=round(previous + time.time() - self._started, 3),
            error=error,
        )
        self._restore_handlers()
        return False


def _plain(config: Mapping[str, Any]) -> Any:
    """A config as plain YAML data, for comparing with a saved one."""
    import yaml

    return yaml.safe_load(dump_yaml(dict(config)))
