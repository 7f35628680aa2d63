"""The life of one run: its record on start, a heartbeat while alive, its status at the end.

``RunSession`` is a context manager around the task's body. Whatever ends the
body (return, exception, Ctrl-C, SIGTERM, preemption) is written to
``info.yaml`` before the process goes, so a run that is gone is never left
``RUNNING`` except by ``kill -9``, which the heartbeat exposes.

The stop signals are caught from the start of the process (``launch`` installs
them before Hydra composes the config). While Hydra's own code runs (it composes
the config, or goes from one run of a sweep to the next) a stop waits for
runlab's code, which stops the process before the next run is made or when Hydra
returns: raised in Hydra's code, it could be lost (Hydra drops every
``Exception`` while it reads its mode, and its config reader turns an exception
raised in its ``open()`` into another one). A second stop, :data:`RESTOP_S`
later, acts at once. While a run directory is being made and its first ``info``
record written they wait; from then on they end the run with its status written.
A run directory is born with its ``info`` record (``allocate(info=...)``), so no
signal, not even ``kill -9``, leaves one without it.

**Forked children.** Only the process that opened the run writes it. A child made by
``os.fork()`` (and so by multiprocessing's fork and forkserver start methods, and
DataLoader workers) is told at the fork (``os.register_at_fork``): runlab's stop
handlers are put back to what they were before runlab (a terminated pool worker
just ends; a stop signal that reaches the child before that waits for it, blocked
from just before the fork, so it is neither lost nor taken by runlab's handler), its
logger refuses to log (:class:`runlab.record.logger.ForkedChildError`)
and drops the rows the parent had buffered, and a child that leaves the run's
``with`` block (returns, raises, ``sys.exit``) exits there, with the code Python
would give it (0; 1 and its traceback on stderr; ``sys.exit``'s code), as
multiprocessing's children do: the run's status, and whatever follows the block
(Hydra's next job of a sweep), belong to the parent.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import orjson

from runlab.record import distributed, environment, secrets
from runlab.record.files import (
    dump_yaml,
    now_iso,
    read_yaml,
    record_form,
    remove_temporaries,
    write_atomic,
    write_record,
    write_yaml,
)
from runlab.record.inputs import INPUTS_FILE
from runlab.record.logger import RunLogger
from runlab.record.rundir import (
    DEFAULT_HEARTBEAT_S,
    HEARTBEAT_ENV,
    RunDir,
    RunDirError,
    allocate,
    start_fields,
)
from runlab.record.stops import Interrupted, OutputClosed, Pruned
from runlab.record.trial import TRIAL_ENV, attach
from runlab.status import Status

# The signals that stop a run, and the status each one leaves. SIGUSR2 is what
# SLURM (through submitit) sends before a preemption or the time limit. SIGINT
# (Ctrl-C) raises KeyboardInterrupt in the task, as Python's own handler does.
_STOP_SIGNALS: dict[int, Status] = {
    signal.SIGTERM: Status.INTERRUPTED,
    signal.SIGINT: Status.INTERRUPTED,
    signal.SIGUSR2: Status.PREEMPTED,
}


class ConfigMismatchError(RunDirError):
    """A run directory being resumed holds a different config than the one given."""


class RunStartError(RunDirError):
    """The run's record could not be written when the run started (e.g. a read-only disk)."""


class CancelledRunError(RunDirError):
    """The run was cancelled before its task started (``runlab cancel``): a worker that
    had already taken it starts the task late, which must not run it."""


class RecordError(RunDirError):
    """The run's record could not be completed when the run ended (e.g. a full disk)."""


class _Guard:
    """What a stop signal does now: see the module's docstring."""

    installed = False
    previous: ClassVar[dict[int, Any]] = {}
    defer = False  # a run directory is being made, or its status written: wait
    outside = False  # Hydra's code runs (launch): a stop waits for runlab's
    pending: int | None = None  # the signal that came while deferred
    pending_at = 0.0  # when (time.monotonic())
    stopping = False  # a stop is under way: further signals change nothing...
    stopped_at = 0.0  # ...for RESTOP_S after it began (time.monotonic())
    first: int = signal.SIGTERM  # the signal that began it
    owner = 0  # the process that installed the handlers (a forked child is not it)


# A stop signal's exception can be swallowed on its way out of the task (a library's
# ``except BaseException``, or a C extension that drops it): a signal this long after
# the first one stops the task again, as the first one would have.
RESTOP_S = 2.0


def _stop_exception(signum: int) -> BaseException:
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return Interrupted(signum, _STOP_SIGNALS[signum])


def _on_signal(signum: int, frame: Any) -> None:
    if os.getpid() != _Guard.owner:  # a forked child whose handlers could not be put back
        _as_before(signum, frame)
        return
    # Only the first stop signal interrupts the task; a second one (SLURM signals
    # every process of a job step, and submitit forwards it too) must not break
    # the writing of the final status.
    if _Guard.defer:
        if _Guard.pending is None and not _Guard.stopping:
            _Guard.pending, _Guard.pending_at = signum, time.monotonic()
        return
    if _Guard.outside:
        if _Guard.pending is None:
            _Guard.pending, _Guard.pending_at = signum, time.monotonic()
            return
        if time.monotonic() - _Guard.pending_at < RESTOP_S:
            return
        signum = _Guard.pending  # runlab's code was not reached: stop now
    if _Guard.stopping:
        if time.monotonic() - _Guard.stopped_at < RESTOP_S:
            return
        signum = _Guard.first  # the first stop was lost on its way: the same stop again
    _stop(signum)


def _as_before(signum: int, frame: Any) -> None:
    """Do what the handler runlab replaced would do with ``signum``."""
    handler = _Guard.previous.get(signum, signal.SIG_DFL)
    if callable(handler):
        handler(signum, frame)
    elif handler != signal.SIG_IGN:  # the default: end the process, as the signal would
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _stop(signum: int) -> None:
    _Guard.stopping, _Guard.stopped_at, _Guard.first = True, time.monotonic(), signum
    raise _stop_exception(signum)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold stop signals for the duration, then act on one that came.

    For imports of large libraries in the task's first seconds (torch, for the
    first checkpoint): an exception raised in the middle of an import can be
    swallowed by the library's own error handling, and the run would go on.
    """
    if _Guard.defer or not _Guard.installed:
        yield
        return
    _Guard.defer = True
    try:
        yield
    finally:
        _Guard.defer = False
    _raise_pending()


def install_stop_handlers() -> bool:
    """Catch SIGTERM, SIGINT and SIGUSR2 from now on (main thread only); ``True`` if done now."""
    if _Guard.installed or threading.current_thread() is not threading.main_thread():
        return False
    _Guard.previous = {s: signal.signal(s, _on_signal) for s in _STOP_SIGNALS}
    _Guard.installed, _Guard.owner = True, os.getpid()
    _Guard.stopping = False
    _Guard.pending = None
    return True


def restore_stop_handlers() -> None:
    """Put back the handlers :func:`install_stop_handlers` replaced."""
    if not _Guard.installed:
        return
    for signum, handler in _Guard.previous.items():
        signal.signal(signum, handler)
    _Guard.previous = {}
    _Guard.installed = False
    _Guard.defer = False
    _Guard.pending = None


# The stop signals' mask of the thread that forks, kept from just before its fork (they
# are blocked through it) until just after, in the parent and in the child.
_FORKING = threading.local()


def _before_fork() -> None:
    """Block the stop signals through the fork: one sent to the new child before its
    handlers are put back would be lost (Python clears the signals that came before its
    at-fork hooks) or raised in a hook (and dropped); blocked, it waits for them."""
    if _Guard.installed:
        _FORKING.mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)


def _unblock_after_fork() -> None:
    mask = getattr(_FORKING, "mask", None)
    if mask is not None:
        _FORKING.mask = None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _after_fork_in_child() -> None:
    """A forked child is not the run's process: runlab's stop handlers, and the sessions
    open in the parent, are not its own (see the module's docstring). A stop signal that
    came since the fork is acted on when they are put back, as the child's own."""
    try:
        if _Guard.installed:
            try:
                restore_stop_handlers()
            except (ValueError, OSError):  # not the main thread: _on_signal passes them on
                _Guard.installed = False
        _Guard.defer = _Guard.stopping = _Guard.outside = False
        _Guard.pending = None
        for session in list(_SESSIONS):
            session._forked = True
    finally:
        _unblock_after_fork()


def _end_forked_child(exc: BaseException | None, tb: Any) -> NoReturn:
    """End a forked child that left the run's ``with`` block, as Python would end it."""
    code: int = 0
    if isinstance(exc, SystemExit):
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:
            print(exc.code, file=sys.stderr)
            code = 1
    elif exc is not None:
        traceback.print_exception(type(exc), exc, tb)
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def _raise_pending() -> None:
    signum, _Guard.pending = _Guard.pending, None
    if signum is not None:
        _stop(signum)


def stop_if_asked() -> None:
    """Raise the stop that came while Hydra's code ran, if one did."""
    if not _Guard.defer:
        _raise_pending()


@contextmanager
def stops_wait(wait: bool = True) -> Iterator[None]:
    """For ``launch``: while Hydra's code runs (``wait``), a stop waits for runlab's
    code; in runlab's own (``wait=False``: the task's function, called by Hydra), a
    stop raises as it comes, a waiting one at once."""
    before = _Guard.outside
    _Guard.outside = wait
    try:
        if not wait:
            stop_if_asked()
        yield
    finally:
        _Guard.outside = before


# Said in the record of a run whose attempts ran different code (see RunSession).
MIXED_CODE = "the attempts of this run ran different code"


class RunSession:
    """Open a run directory for a task: write its record, yield a logger, close its status."""

    def __init__(
        self,
        run: RunDir | Path | str | None,
        config: Mapping[str, Any],
        overrides: list[str] | None = None,
        code_path: Path | None = None,
        task: str | None = None,
        heartbeat_s: float | None = None,
        command: list[str] | None = None,
        logs: Path | str | None = None,
        announce: Any = None,
        trial: bool | None = None,
        inputs: Mapping[str, Any] | None = None,
        same_config: Callable[[Mapping[str, Any]], Any] | None = None,
    ) -> None:
        """``run`` is the directory to (re)open; with ``run=None`` a new one is made in ``logs``.

        ``trial``: the run is a trial of ``runlab tune`` (``None``: when ``RUNLAB_TRIAL``
        is set, which the session then takes out of ``os.environ``: it was this run's).
        ``same_config``: how a reopened run's saved config is read before it is compared
        with ``config`` (a task's schema types it as it typed ``config``)."""
        self.same_config = same_config
        if trial is None:
            trial = bool(os.environ.pop(TRIAL_ENV, None))
        self.trial = trial
        self.command = command or [sys.executable, *sys.argv]
        if run is None and logs is None:
            raise TypeError("RunSession needs a run directory or a logs directory")
        self.logs = Path(logs) if logs is not None else None
        self.run = run if isinstance(run, RunDir) or run is None else RunDir(run)
        self.config = dict(config)
        self.overrides = list(overrides or [])
        self.inputs = inputs  # how the config was made (runlab.record.inputs)
        self.code_path = Path(code_path or Path.cwd())
        self.task = task
        self.heartbeat_s = heartbeat_s or float(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S))
        self.logger: RunLogger | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._installed = False
        self._started = 0.0
        self._info: dict[str, Any] = {}
        self._opened = False
        self._forked = False  # set in a child forked from this process: not the run's writer
        self._announce = announce

    # ----------------------------------------------------------------- start
    def __enter__(self) -> RunSession:
        self._installed = install_stop_handlers()
        if _Guard.stopping:  # a stop raised before this run, and dropped on its way
            _Guard.stopping = False
            _Guard.pending = _Guard.first if _Guard.pending is None else _Guard.pending
        try:
            stop_if_asked()  # a stop that came before this run: no run is made
        except BaseException:
            if self._installed:
                restore_stop_handlers()
            raise
        _Guard.defer = True  # until the run has its first info record
        try:
            run = self._open()
        except BaseException as exc:
            _Guard.defer = False
            _Guard.pending = None
            if self.run is not None:
                self.run.release()
            if self._installed:
                restore_stop_handlers()
            if isinstance(exc, OSError):
                raise self._start_error(exc) from exc
            raise
        _Guard.defer = False
        try:
            _raise_pending()
            write_record(run.config_file, self.config)
            write_yaml(run.metadata / "overrides.yaml", self.overrides)
            if self.inputs is not None and not (run.metadata / INPUTS_FILE).exists():
                write_record(run.metadata / INPUTS_FILE, dict(self.inputs))
            self._write_env()
            # A later attempt resumes from the last checkpoint, or starts over (see RunLogger).
            self.logger = RunLogger(run, resume=int(self._info.get("attempts") or 1) > 1)
            if self.trial:  # a trial of `runlab tune`: report, maybe prune
                attach(self.logger, self._info)
            self._beat = threading.Thread(
                target=self._heartbeat, name="runlab-heartbeat", daemon=True
            )
            self._beat.start()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, OSError):
                raise self._start_error(exc) from exc
            raise
        return self

    def _start_error(self, exc: OSError) -> RunStartError:
        where = self.run.path if self.run is not None else self.logs
        what = exc.strerror or str(exc)
        if exc.filename:
            what = f"{what}: {exc.filename}"
        return RunStartError(
            f"cannot write the record of a run in {where} ({what}); use a writable logs "
            "directory with free space (runlab.logs=DIR or RUNLAB_LOGS=DIR)"
        )

    def _fields(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        return start_fields(previous, self.command, self.heartbeat_s, task=self.task)

    def _open(self) -> RunDir:
        """Make or reopen the run directory and write its first RUNNING record; return it
        (``self.run`` from then on)."""
        self._started = time.time()
        if self.run is None:
            assert self.logs is not None
            fields = {k: v for k, v in self._fields({}).items() if v is not None}
            self.run = RunDir(allocate(self.logs, info=fields)[0])
            self.run.create()
            self.run.acquire()
            self._info = self.run.read_info()
        else:
            run = self.run
            self._check_config()  # a refused reopen changes nothing in the run
            run.create()
            run.acquire()  # RunBusyError while another live process writes the run
            for folder in (run.metadata, run.checkpoints, run.artifacts, run.metrics, run.path):
                remove_temporaries(folder)  # left by atomic writes that were killed
            info = run.read_info()
            was = info.get("reconciled") or {}
            if was.get("by") == "runlab cancel" and was.get("was") == Status.QUEUED:
                raise CancelledRunError(
                    f"run {run.run_id} ({run.path}) was cancelled before its task started "
                    "(runlab cancel): not run; `runlab retry` runs it again"
                )
            self._info = run.update_info(run_id=run.run_id, **self._fields(info))
        self._opened = True
        _SESSIONS.add(self)
        if self._announce is not None:
            self._announce(self.run)
        self.run.reserve_space()
        return self.run

    def _write_env(self) -> None:
        # capture() records each part on its own and lists what it could not record in
        # env["problems"]; each problem is also a warning on stderr now, at run start.
        assert self.run is not None
        try:
            # The logs directory is never part of the patch (issue 19, family 3).
            env, diff = environment.capture(self.code_path, exclude=(self.run.path.parent,))
        except Exception as exc:  # the record must not stop the run; say what is missing
            env, diff = {"problems": [f"environment: not recorded ({exc!r})"]}, None
        mixed = self._code_changed(env)
        if mixed:
            env.setdefault("problems", []).append(mixed)
        if not diff and (self.run.metadata / "git.diff").exists():  # written by submit
            unread = "git: " + environment.PATCH_UNREADABLE  # the run has its patch
            env["problems"] = [p for p in env.get("problems") or [] if not p.startswith(unread)]
        write_record(self.run.env_file, env)
        if diff:
            write_atomic(self.run.metadata / "git.diff", diff)
        for problem in env.get("problems") or []:
            print(f"runlab: warning: run {self.run.run_id}: {problem}", file=sys.stderr)

    def _code_changed(self, env: Mapping[str, Any]) -> str | None:
        """The problem line when this attempt runs other code than the run's earlier ones
        (a reopened run whose code changed since): its results mix two code versions,
        which no rerun can reproduce. Kept from attempt to attempt."""
        assert self.run is not None
        try:
            before = orjson.loads(self.run.env_file.with_suffix(".json").read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(before, dict):
            return None
        for problem in before.get("problems") or []:
            if isinstance(problem, str) and MIXED_CODE in problem:
                return problem
        was, now = before.get("git") or {}, env.get("git") or {}
        if not isinstance(was, dict) or not was.get("commit"):
            return None

        both = bool(was.get("patch_sha256") and now.get("patch_sha256"))  # older records lack it

        def code(git: Mapping[str, Any]) -> tuple[Any, ...]:
            return git.get("commit"), bool(git.get("dirty")), git.get("patch_sha256") if both else 0

        if code(was) == code(now):
            return None
        if was.get("commit") == now.get("commit"):
            how = "the same commit with other uncommitted changes"
        else:
            how = f"commit {str(now.get('commit'))[:12]}, the earlier ones {str(was.get('commit'))[:12]}"
        return f"git: {MIXED_CODE} (this attempt: {how}); its results mix two versions of the code"

    def _check_config(self) -> None:
        assert self.run is not None
        twin = self.run.config_file.with_suffix(".json")
        # The record holds the config with its credentials redacted: so is the one given.
        config = secrets.redact(self.config)
        if twin.exists():  # the twin is what readers trust; compared in its own encoding
            saved = orjson.loads(twin.read_bytes()) or {}
            if self.same_config is not None and isinstance(saved, dict):
                saved = record_form(self.same_config(saved))
            given = record_form(self.config)
        elif self.run.config_file.exists():  # a record from before the JSON twins
            saved, given = read_yaml(self.run.config_file) or {}, _plain(config)
            if self.same_config is not None and isinstance(saved, dict):
                saved = _plain(self.same_config(saved))
        else:
            return

        def strip(c: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in c.items() if k != "runlab"}

        if strip(saved) != strip(given):
            raise ConfigMismatchError(
                f"{self.run.path} already holds a run with a different config "
                f"(see {self.run.config_file}). Resume it with the same overrides, or start a "
                "new run by leaving out runlab.run_id."
            )

    def _heartbeat(self) -> None:
        assert self.run is not None
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.run.heartbeat()
            except OSError:
                pass

    # ------------------------------------------------------------------- end
    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if self._forked:  # a forked child leaves the run's block: it ends here, the run goes on
            _end_forked_child(exc, tb)
        run = self.run
        if run is None or not self._opened:
            return False
        self._opened = False
        closed = (
            OutputClosed() if isinstance(exc, BrokenPipeError) and _drop_closed_output() else None
        )
        if closed is not None:  # `task.py | head`: the run ends as a SIGPIPE would (OutputClosed)
            cause, exc, tb = exc, closed, None
        _Guard.defer = True  # a signal now waits until the status is written
        try:
            close_error = self._finish(run, exc, tb)
        finally:
            run.release()
            if self._installed:
                restore_stop_handlers()
            _Guard.defer = False
        if isinstance(exc, (Interrupted, KeyboardInterrupt)):
            _Guard.pending = None
        else:
            _raise_pending()  # asked to stop while the status was written: stop now
        if close_error is not None and exc is None:
            raise close_error
        if closed is not None:
            raise closed from cause
        return isinstance(exc, Pruned)  # a pruned trial ends normally, with its status

    def _finish(self, run: RunDir, exc: BaseException | None, tb: Any) -> RecordError | None:
        """Stop the writers and write the final status; return the error closing them raised."""
        self._stop.set()
        close_error: RecordError | None = None
        late: BaseException | None = None  # sys.exit (or Ctrl-C) while the logger closed
        if self.logger is not None:
            try:
                self.logger.close()
            except Exception as err:  # e.g. a full disk at the last flush
                close_error = RecordError(
                    f"run {run.run_id} ({run.path}): its last metrics could not be written "
                    f"({type(err).__name__}: {err}); free space and rerun with "
                    f"runlab.run_id={run.run_id} to resume from its last checkpoint"
                )
            except BaseException as err:  # the status is written first, then it goes on
                late = err
                if exc is None:
                    exc, tb = err, err.__traceback__
        if exc is None and close_error is not None:
            exc, tb = close_error, None
        if exc is None:
            status, error = Status.COMPLETE, None
        elif isinstance(exc, Interrupted):
            status, error = exc.status, {"type": "Interrupted", "message": str(exc)}
        elif isinstance(exc, KeyboardInterrupt):
            status, error = Status.INTERRUPTED, {"type": "KeyboardInterrupt", "message": "Ctrl-C"}
        elif isinstance(exc, Pruned):
            status, error = Status.PRUNED, {"type": "Pruned", "message": str(exc)}
        elif isinstance(exc, SystemExit) and exc.code in (0, None):
            status, error = Status.COMPLETE, None
        else:
            status = Status.FAILED
            error = {"type": type(exc).__name__, "message": str(exc)}
            text = "".join(traceback.format_exception(type(exc), exc, tb))
            try:
                _write_on_full_disk(
                    run, run.metadata / "traceback.txt", secrets.redact_text(text).encode()
                )
            except OSError as err:
                error["traceback"] = f"not written: {err.strerror or err}"
        ranks = distributed.rank_outcome(run)  # another rank raised: the run failed with its error
        if ranks is not None:
            status, error, text = ranks
            _write_on_full_disk(
                run, run.metadata / "traceback.txt", secrets.redact_text(text).encode()
            )
        previous = (
            float(self._info.get("duration_s") or 0.0) if self._info.get("attempts", 1) > 1 else 0.0
        )
        if self._beat is not None:
            self._beat.join(timeout=5)
        run.update_info(
            final=True,
            status=status,
            end_time=now_iso(),
            duration_s=round(previous + time.time() - self._started, 3),
            error=error,
        )
        run.release_reserve()
        if late is not None:
            raise late
        return close_error


# The run sessions of this process, told by os.register_at_fork when it forks a child.
_SESSIONS: weakref.WeakSet[RunSession] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_unblock_after_fork,
        after_in_child=_after_fork_in_child,
    )


def _drop_closed_output() -> bool:
    """Whether stdout or stderr is a pipe whose reader has exited (``task.py | head``
    after head ended); each such one is pointed at ``os.devnull`` (the advice of Python's
    "Note on SIGPIPE"), so that what is still buffered for it, and the last words of the
    process, do not fail again (no "Exception ignored ... BrokenPipeError" at exit).

    A pipe whose reader is gone polls as an error (POLLERR) for its writer; where
    ``select.poll`` is missing (Windows) no output is taken for closed."""
    closed = False
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            if not any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
                continue
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
            closed = True
        except (AttributeError, OSError, ValueError):  # no descriptor (a captured stream)
            continue
    return closed


def _write_on_full_disk(run: RunDir, path: Path, data: bytes) -> None:
    """Write a small file of the final record, with the reserved space if the disk is full."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not run.release_reserve():
            raise
        write_atomic(path, data)


def _plain(config: Mapping[str, Any]) -> Any:
    """A config as plain YAML data, for comparing with a saved one."""
    import yaml

    return yaml.safe_load(dump_yaml(dict(config)))
