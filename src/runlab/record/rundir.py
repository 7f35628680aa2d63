"""The run directory: where each run's record lives, and how run ids are handed out.

Layout (the interface between writers and readers, documented in the README)::

    <logs>/<run_id>/
        metadata/config.yaml     resolved config
        metadata/overrides.yaml  command-line overrides, as given
        metadata/info.yaml       status, times, host, job ids, heartbeat, error
        metadata/env.yaml        code version and software environment
        metadata/git.diff        uncommitted changes, when the tree was dirty
        metadata/traceback.txt   the traceback of a failed run
        metrics/<name>.jsonl     one JSON object per logged row
        artifacts/               files, figures and objects logged by the task
        checkpoints/             atomically written checkpoints
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import os
import socket
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from runlab.errors import UserError
from runlab.logs import MAX_RUN_ID, is_run_id, note_change
from runlab.record.files import (
    DamagedFile,
    dumps_json,
    file_mode,
    now_iso,
    open_dir,
    overwrite_record,
    read_capped,
    read_yaml,
    write_record,
)
from runlab.status import ACTIVE, Status, written

RUN_DIR_ENV = "RUNLAB_RUN_DIR"
HEARTBEAT_ENV = "RUNLAB_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 15.0
# The most bytes of info.json or info.yaml read: runlab writes well under a kilobyte.
MAX_INFO = 16 << 20


class RunDirError(UserError, RuntimeError):
    """A run directory that cannot be used as asked; its message is one line for the user."""


class RunBusyError(RunDirError):
    """The run is being written by another live process."""


_STAGING = ".new-run-"  # a run directory being born (a hidden name: never a run)
_STAGING_STALE_S = 3600.0


def _max_id(logs: Path) -> int:
    best = 0
    with os.scandir(logs) as it:
        for entry in it:
            name = entry.name
            if is_run_id(name) and int(name) > best:
                best = int(name)
    return best


def _remove_stale_staging(logs: Path) -> None:
    """Remove run directories whose birth was cut short by ``kill -9`` an hour ago or more."""
    import shutil

    now = time.time()
    try:
        entries = [e for e in os.scandir(logs) if e.name.startswith(_STAGING)]
    except OSError:
        return
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > _STAGING_STALE_S:
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            pass


_NOREPLACE_MISSING = False


def _rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (then ``False``), atomically.

    Linux's ``renameat2(RENAME_NOREPLACE)``; where it is missing (other systems,
    some network file systems) ``dst`` is claimed by ``mkdir`` and then replaced,
    which leaves an empty ``dst`` visible for a few microseconds.
    """
    global _NOREPLACE_MISSING
    if not _NOREPLACE_MISSING:
        import ctypes

        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except AttributeError:
            _NOREPLACE_MISSING = True
        else:
            fn.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_uint,
            ]
            at_fdcwd, rename_noreplace = -100, 1
            if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace) == 0:
                return True
            err = ctypes.get_errno()
            if err in (errno.EEXIST, errno.ENOTEMPTY):
                return False
            if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise OSError(err, os.strerror(err), str(dst))
            _NOREPLACE_MISSING = True
    try:
        dst.mkdir()
    except FileExistsError:
        return False
    os.rename(src, dst)  # replaces the empty directory just claimed
    return True


def allocate(logs: Path | str, count: int = 1, info: dict[str, Any] | None = None) -> list[Path]:
    """Create ``count`` new run directories under ``logs`` with fresh integer ids.

    Each id is claimed atomically (``mkdir``, or a no-replace rename), so any number
    of processes may allocate at once in one directory: none gets an id twice and
    none waits. With ``info``, each directory is born holding ``metadata/info.yaml``
    (and its JSON twin) with ``info`` and its ``run_id``: a reader (or ``kill -9``)
    never finds it without a record. Only canonical ids count (``is_run_id``). A
    ``status`` in ``info`` must be one runlab writes (``ValueError`` otherwise).
    """
    if info is not None and "status" in info:
        info = {**info, "status": written(info["status"])}
    logs = Path(logs)
    logs.mkdir(parents=True, exist_ok=True)
    if info is not None:
        _remove_stale_staging(logs)
    claimed: list[Path] = []
    candidate = _max_id(logs) + 1
    while len(claimed) < count:
        if candidate > MAX_RUN_ID:
            raise RunDirError(
                f"{logs} holds a run folder numbered {candidate - 1}: no run id is left after "
                f"it (ids have at most 18 digits); rename or move that folder, or use "
                "another logs directory"
            )
        path = logs / str(candidate)
        if info is None:
            try:
                path.mkdir()
                taken = False
            except FileExistsError:
                taken = True
        else:
            taken = not _claim_with_info(logs, path, {"run_id": str(candidate), **info})
        if taken:
            # Someone else took it: jump past everything taken meanwhile.
            candidate = max(candidate + 1, _max_id(logs) + 1)
            continue
        claimed.append(path)
        candidate += 1
    return claimed


def _claim_with_info(logs: Path, path: Path, info: dict[str, Any]) -> bool:
    import shutil
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=logs))
    try:
        open_dir(staging)  # mkdtemp's is 0700; a run is made as mkdir would make it
        run = RunDir(staging).create()
        write_record(run.info_file, info)
        if _rename_noreplace(staging, path):
            note_change(path)  # a new run under an id an index may have known
            return True
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return False


def existing_run(logs: Path | str, run_id: Any) -> RunDir:
    """The run ``run_id`` under ``logs``, for ``runlab.run_id=N``; ``RunDirError`` unless it exists."""
    text = str(run_id)
    if isinstance(run_id, bool) or not is_run_id(text):
        raise RunDirError(
            f"runlab.run_id={text!r} is not a run id: give the number of an existing run under "
            f"{logs} (see `runlab ls`), or leave runlab.run_id out to start a new run"
        )
    path = Path(logs) / text
    if not path.is_dir():
        raise RunDirError(
            f"runlab.run_id={text}: there is no run {text} in {Path(logs).absolute()}; "
            "runlab.run_id reopens an existing run (see `runlab ls`), leave it out to start a new one"
        )
    if path.is_symlink():  # runlab never makes one: writing through it would leave the logs
        raise RunDirError(
            f"runlab.run_id={text}: {path.absolute()} is a symbolic link, not a run that "
            "runlab made; move the run itself into the logs directory, or start a new run"
        )
    return RunDir(path)


def run_dir_from_env(value: str) -> RunDir:
    """The run of ``$RUNLAB_RUN_DIR`` (set by ``runlab submit``); ``RunDirError`` unless valid."""
    path = Path(value)
    if not is_run_id(path.name) or not path.is_dir():
        raise RunDirError(
            f"{RUN_DIR_ENV}={value} is not a run directory: it must be an existing "
            "<logs>/<run id> folder made by `runlab submit`; unset it to start a new run"
        )
    return RunDir(path)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container with no passwd entry for this uid
        return str(os.getuid())


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


def heartbeat_interval() -> float:
    """Seconds between heartbeats of a running run (``RUNLAB_HEARTBEAT_S``, else 15)."""
    return float(os.environ.get(HEARTBEAT_ENV) or DEFAULT_HEARTBEAT_S)


def start_fields(
    previous: Mapping[str, Any],
    command: list[str],
    heartbeat_s: float,
    task: str | None = None,
) -> dict[str, Any]:
    """The ``info`` fields a process writes when it starts (or resumes) writing a run:
    RUNNING, its times, heartbeat, host, user, pid, command and SLURM ids.

    ``previous`` is the run's info so far (empty for a new run).
    """
    resumed = previous.get("status") not in (None, Status.QUEUED)
    now = now_iso()
    fields: dict[str, Any] = {
        "status": str(Status.RUNNING),
        "task": task or previous.get("task"),
        "start_time": previous.get("start_time") if resumed else now,
        "attempt_start_time": now,
        "end_time": None,
        "heartbeat": now,
        "heartbeat_interval_s": heartbeat_s,
        "host": socket.gethostname(),
        "user": _user(),
        "pid": os.getpid(),
        "command": command,
        "cwd": str(Path.cwd()),
        "attempts": int(previous.get("attempts", 0)) + 1,
        "error": None,
        **_slurm_ids(),
    }
    if resumed:
        fields["previous_status"] = previous.get("status")
    return fields


def _heartbeat_age(info: dict[str, Any]) -> float | None:
    try:
        beat = datetime.fromisoformat(str(info["heartbeat"]))
    except (KeyError, ValueError, TypeError):
        return None
    if beat.tzinfo is None:
        beat = beat.astimezone()
    return time.time() - beat.timestamp()


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    except (TypeError, ValueError):
        return False
    return True


#: set by a scheduler backend's task when the scheduler runs its job again (the earlier
#: attempt of that job id has ended: see :func:`live_holder`)
RESTARTED_JOB_ENV = "RUNLAB_RESTARTED_JOB"


def live_holder(info: dict[str, Any]) -> bool:
    """Whether ``info`` says its run is being written by a process that may still be alive.

    It is, when the status is RUNNING and the heartbeat is fresh (younger than three
    intervals, and at least 30 s), unless the process is known dead: its pid is gone
    on this host, or it was an earlier attempt of this very SLURM job (requeued).
    """
    if info.get("status") != Status.RUNNING:
        return False
    age = _heartbeat_age(info)
    interval = info.get("heartbeat_interval_s")
    interval = float(interval) if isinstance(interval, (int, float)) else 15.0
    if age is None or age > max(3 * interval, 30.0):
        return False
    if info.get("host") == socket.gethostname():
        return info.get("pid") != os.getpid() and _pid_alive(info.get("pid"))
    restarted = os.environ.get(RESTARTED_JOB_ENV)
    if restarted and str(info.get("job_id")) == restarted:
        return False  # the scheduler ran this job again: the earlier attempt has ended
    job = os.environ.get("SLURM_JOB_ID")
    if job and str(info.get("job_id")) == job:
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        if str(info.get("slurm_restart_count", "0")) != restarts:
            return False  # SLURM requeued this job: the earlier attempt is gone
    return True


class RunDir:
    """Paths of one run's record, and the read-modify-write of its ``info.yaml``."""

    RESERVE_BYTES = 256 * 1024

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()
        self._lock = threading.Lock()
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def metadata(self) -> Path:
        return self.path / "metadata"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics"

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def info_file(self) -> Path:
        return self.metadata / "info.yaml"

    @property
    def config_file(self) -> Path:
        return self.metadata / "config.yaml"

    @property
    def env_file(self) -> Path:
        return self.metadata / "env.yaml"

    @property
    def lock_file(self) -> Path:
        return self.metadata / ".lock"

    @property
    def reserve_file(self) -> Path:
        return self.metadata / ".reserve"

    def create(self) -> RunDir:
        for sub in (self.metadata, self.metrics, self.artifacts, self.checkpoints):
            sub.mkdir(parents=True, exist_ok=True)
        return self

    def read_info(self) -> dict[str, Any]:
        """The run's info mapping: from ``info.json``, else ``info.yaml``, else empty.

        Each file is read up to :data:`MAX_INFO` bytes (:class:`DamagedFile` beyond): a
        record runlab writes is under a kilobyte, and a damaged one (a huge file, a link
        to ``/dev/zero``) must not take the memory of whatever reads it (a dashboard, a
        sweep's status).
        """
        twin = self.info_file.with_suffix(".json")
        try:
            data = orjson.loads(read_capped(twin, MAX_INFO))
        except (OSError, orjson.JSONDecodeError, DamagedFile):
            data = read_yaml(self.info_file, MAX_INFO) if self.info_file.exists() else None
        return data if isinstance(data, dict) else {}

    def update_info(self, *, final: bool = False, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``info.yaml`` (atomically; ``None`` values remove keys).

        ``final`` is for the last word of a run (its end status): on a full disk it
        releases the space reserved by :meth:`reserve_space` and writes again, and as
        a last resort rewrites the existing files in place (they fit their blocks).
        A ``status`` must be one runlab writes (:data:`runlab.status.WRITTEN`):
        anything else is a programming error, ``ValueError``, and nothing is written.
        """
        if fields.get("status") is not None:
            fields["status"] = written(fields["status"])
        with self._lock:
            info = self.read_info()
            before = info.get("status")
            for key, value in fields.items():
                if value is None:
                    info.pop(key, None)
                else:
                    info[key] = value
            ended = not (Status.of(before) in ACTIVE and Status.of(info.get("status")) in ACTIVE)
            try:
                self._write_info(info, final)
            finally:
                if ended:  # after the write, even a failed one (its JSON twin may be new)
                    note_change(self.path)
            return info

    def _write_info(self, info: dict[str, Any], final: bool) -> None:
        """Write ``info``; for a ``final`` one on a full disk, see :meth:`update_info`."""
        try:
            write_record(self.info_file, info)
        except OSError as exc:
            if not final or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.release_reserve()
            try:
                write_record(self.info_file, info)
            except OSError as again:
                if again.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                overwrite_record(self.info_file, info)

    # ------------------------------------------------------------ disk space
    def reserve_space(self, size: int = RESERVE_BYTES) -> bool:
        """Hold ``size`` bytes in ``metadata/.reserve`` for the run's final status.

        Returns ``False`` when the disk is already too full to hold them.
        """
        try:
            if self.reserve_file.stat().st_size >= size:
                return True
        except OSError:
            pass
        try:
            fd = os.open(self.reserve_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode())
            try:
                block = bytes(65536)
                for _ in range(0, size, len(block)):
                    os.write(fd, block)  # real blocks: a sparse file would reserve nothing
            finally:
                os.close(fd)
        except OSError:
            self.reserve_file.unlink(missing_ok=True)
            return False
        return True

    def release_reserve(self) -> bool:
        """Free the reserved space (``False`` when there was none)."""
        try:
            self.reserve_file.unlink()
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------ lock
    def acquire(self, *, writer_gone: bool = False) -> None:
        """Make this process the run's only writer, or raise :class:`RunBusyError`.

        The lock is an ``flock`` on ``metadata/.lock`` held until :meth:`release`
        (the kernel drops it when the process dies, even by ``kill -9``), so two
        processes opening the run at once cannot both win. The file holds the
        holder's pid and host for the message. On file systems whose locks do not
        reach other hosts, ``info``'s heartbeat guards the run as well: a RUNNING
        run with a fresh heartbeat whose process may be alive is refused, unless
        ``writer_gone`` (its scheduler says the job has ended: its processes with it).
        """
        import fcntl

        if self._lock_fd is not None:
            return
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            locked = False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                raise self._busy(_read_holder(fd)) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            info = self.read_info()
            # With the lock held, a writer on this host is surely gone (its pid may
            # already name another process); one on another host may not be.
            same_host = info.get("host") == socket.gethostname()
            if not ((locked and same_host) or writer_gone) and live_holder(info):
                raise self._busy(info)
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "time": now_iso()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, dumps_json(holder), 0)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    @property
    def locked(self) -> bool:
        """Whether this process holds the run's lock (through this ``RunDir``)."""
        return self._lock_fd is not None

    def release(self) -> None:
        """Give up the lock taken by :meth:`acquire` (idempotent)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def after_fork_in_child(self) -> None:
        """In a child forked from the writer: close the child's copy of the lock's
        descriptor (the lock stays the parent's: it holds its own copy) and take a fresh
        thread lock (a thread of the parent may have held this one at the fork)."""
        self._lock = threading.Lock()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def _busy(self, holder: dict[str, Any]) -> RunBusyError:
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        return RunBusyError(
            f"run {self.run_id} ({self.path}) is being written by {who}: wait for it to end, "
            f"or stop it (kill {holder.get('pid', 'PID')} on that host) and run this again"
        )

    def heartbeat(self) -> None:
        self.update_info(heartbeat=now_iso())


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = orjson.loads(os.pread(fd, 4096, 0))
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
