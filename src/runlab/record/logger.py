"""Write a run's metrics, artifacts and checkpoints into its run directory.

Metrics are buffered in memory and appended to ``metrics/<name>.jsonl`` by a
background thread every ``flush_interval`` seconds (and on checkpoint and
close), so a call costs a few microseconds and a ``kill -9`` loses at most the
last interval of rows; each write ends on a whole line.

**Metric rows.** Each ``log_metrics`` call appends one line to
``metrics/<name>.jsonl``: a JSON object, UTF-8, ending in ``\\n``, that a strict
JSON parser reads (``json.loads(line, parse_constant=...)`` never sees a
constant). Its first two keys are runlab's own:

- ``step``: an integer (64-bit), given by ``step=``, by the key ``step`` of the
  dict, or one more than the previous row of that file;
- ``time``: seconds since the epoch (float) when the row was logged;

then the task's keys, in the order given. Values are JSON numbers (integers
within 64 bits, finite floats), ``true``/``false``, strings or ``null``
(``None``). Non-finite floats are stored as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (:func:`runlab.record.metricsfile.encode_float`;
the format is :mod:`runlab.record.metricsfile`'s);
readers turn them back into floats in numeric columns. numpy scalars, 0-d and
one-element arrays and one-element tensors are stored as the Python number they
hold. Refused at the call, with an error naming the key: keys that are not
non-empty strings or hold control characters, the reserved keys ``run_id`` and
``time``, a ``step`` that is not an integer (``bool`` included), integers beyond
64 bits, and anything that is not one scalar.

**Columnar twins.** When the logger closes, each metrics file it appended to
gets a twin ``metrics/<name>.parquet``: the same rows as the reader reads them
from the ``.jsonl`` (non-finite values as floats), in plain Parquet whose
key-value metadata ``runlab.covers`` holds the ``.jsonl``'s ``"<size>.<mtime_ns>"``
(also ``runlab.rows``, ``runlab.inc``, ``runlab.columns``). Readers use it only
while the ``.jsonl`` still has that size and mtime (a resumed run's file has moved
on), so the ``.jsonl`` stays the record. The twin is written under a temporary
name and renamed; any failure (a bad line, a full disk) just leaves no twin, and
never fails the run. Polars is imported for it at close, and only when rows were
logged.

**Names** of metric files, artifacts and checkpoints are checked by
:func:`runlab.record.names.check_name`: one plain file name, never a path.

**Resuming.** A checkpoint records how long each metrics file was when it was
taken. Loading a checkpoint only reads it, except in one case: a logger that
*resumes* a run (``resume=True``; by default, one opened on a run directory that
already holds ``checkpoints/last.pt``) truncates the metric files back to those
lengths on its first ``load_checkpoint("last")``, provided it has logged no row
and written no checkpoint yet. The rows cut are those the previous attempt
logged after its last checkpoint; the resumed task logs them again. Loading any
checkpoint later, or any other name, never touches the metrics. A new attempt of
a run (``resume=True``, as a run session passes it) that logs a row or writes a
checkpoint before loading ``"last"`` starts over: the previous attempt's metric
files are moved to ``metrics/.previous/<attempt>/``, so no step is there twice.

**One writer.** A logger made on a run directory by hand takes the run's lock
(:meth:`RunDir.acquire`: ``RunBusyError`` while another live process writes the
run) until :meth:`close`; inside a run session the session holds it.

**Threads.** A logger may be shared by threads: a row's step (when not given),
its time and its place in the file are taken under one lock, so logger-assigned
steps are unique and increase in the file's order.

**Forked children.** Only the run's own process writes the run. In a child made
by ``os.fork()`` (multiprocessing's fork and forkserver start methods, a pool,
DataLoader workers), told by ``os.register_at_fork``, the logger is not the
writer: ``log_metrics``, ``log_checkpoint``, ``log_artifact`` and ``flush``
raise :class:`ForkedChildError` (send the values to the parent, e.g. as a pool's
results or through a ``multiprocessing.Queue``, and log them there); ``close``
and ``__exit__`` do nothing, so a child never ends the run; the rows buffered at
the fork are dropped in the child (the parent writes them); the child's copies
of the open files and of the run's lock are closed.

**Open files.** At most :data:`MAX_OPEN_FILES` metrics files are open at once (a
quarter of the file-descriptor limit when that is lower): the least recently
written is closed to open another, and reopened in append mode, its tail
repaired, when written again. The number of metric names is not bounded by the
limit on open files.

**Full disk.** When a write fails (``ENOSPC``, ``EDQUOT``, ``EIO``…) the file is
cut back to its last complete line and the rows not written stay in memory, in
order. The next ``log_metrics`` or ``log_checkpoint`` call raises
:class:`RecordWriteError` (an ``OSError``) saying which file and from which
step; that call logs nothing. A task that lets it propagate ends FAILED; a task
that catches it may go on logging: the background thread keeps retrying, and
once the disk has room again every kept row is written once, in order (a new
failure is raised again at the next call). ``close()`` makes a last attempt and
raises :class:`RecordWriteError` once if rows remain unwritten.
"""

from __future__ import annotations

import contextlib
import errno
import math
import operator
import os
import pickle
import re
import resource
import shutil
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from runlab.errors import UserError
from runlab.record import metricsfile, secrets
from runlab.record.files import now_iso, write_atomic, write_record
from runlab.record.metricsfile import encode_float
from runlab.record.names import check_name
from runlab.record.rundir import RunDir, heartbeat_interval, start_fields
from runlab.status import SETTLED, Status

_FAST_TYPES = frozenset((int, float, bool, str))
_CHECKPOINT_KEY = "__runlab_checkpoint__"
_RESERVED_KEYS = frozenset(("run_id", "time"))
_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE
_AUTO = object()  # "no step given": the next one of the file
_CLOSED = object()  # marks a closed logger in _fault
_CHILD = object()  # marks, in _fault, the logger as a forked child process sees it
_REOPEN = object()  # marks, in _fault, a logger on an ended run that has not written yet
_INT64 = (-(2**63), 2**63)
_RANK_FILE = re.compile(r"\.rank(\d+)\Z")  # metrics/<name>.rank<k>.jsonl: all_ranks=True


class MetricsError(UserError, TypeError, ValueError):
    """A metric that cannot be stored: a bad key, a reserved key, a bad step, not one scalar."""


class RecordWriteError(OSError):
    """Rows or a checkpoint could not be written to the run directory (full disk, I/O error)."""


class ForkedChildError(UserError, RuntimeError):
    """A logging call in a child process forked from the run's process (see the module)."""


# At most this many metrics files are kept open at once (least recently written closed
# first): the number of metric names is not bounded by the file-descriptor limit.
MAX_OPEN_FILES = 128


def _check_key(key: Any, name: str) -> None:
    """Raise :class:`MetricsError` for a key runlab will not store, naming it."""
    where = f"log_metrics(name={name!r})"
    if not isinstance(key, str):
        raise MetricsError(
            f"metric names must be strings, got {key!r} ({type(key).__name__}) in {where}"
        )
    if not key:
        raise MetricsError(f"an empty metric name in {where}; name every metric")
    if key in _RESERVED_KEYS:
        raise MetricsError(
            f"metric {key!r} in {where} is reserved: runlab stores the row's "
            f"{'run id' if key == 'run_id' else 'wall-clock time'} under it; rename the metric"
        )
    if not key.isprintable() and any(ord(c) < 32 or 127 <= ord(c) < 160 for c in key):
        raise MetricsError(
            f"metric {key!r} in {where} holds a NUL or another control character; rename it"
        )


def _count(value: Any) -> int | None:
    numel = getattr(value, "numel", None)
    if callable(numel):
        return int(numel())
    size = getattr(value, "size", 1)
    if callable(size):
        size = size()
    return size if isinstance(size, int) else None


def _scalar(name: str, key: str, value: Any) -> Any:
    """Coerce numpy / torch scalars to Python ones; refuse anything else, naming it."""
    if value is None:
        return None
    where = f"metric {key!r} in log_metrics(name={name!r})"
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (Mapping, list, tuple)):
        count = _count(value)
        if count is not None and count != 1:
            raise MetricsError(
                f"{where} has {count} elements, not a scalar; log one number per key "
                "(or store arrays with log_artifact)"
            )
        try:
            out = item()
        except Exception as exc:  # any failure means "not a scalar"
            raise MetricsError(f"{where}: .item() failed ({exc}); log a number") from None
        if type(out) is float:
            return encode_float(out)
        if type(out) in _FAST_TYPES:
            return out
        value = out
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return encode_float(float(value))
    if isinstance(value, Real):
        return encode_float(float(value))
    raise MetricsError(
        f"{where} is a {type(value).__name__}, not a scalar; "
        "log numbers, booleans or strings (call .item() on a one-element tensor, and log "
        "arrays with log_artifact)"
    )


def _step_value(value: Any, name: str) -> int:
    """``value`` as a step (an int within 64 bits), or :class:`MetricsError`."""
    where = f"log_metrics(name={name!r})"
    dtype = str(getattr(value, "dtype", ""))
    if isinstance(value, bool) or type(value).__name__ == "bool_" or "bool" in dtype:
        raise MetricsError(f"step={value!r} in {where} is a boolean; give the step as an int")
    try:
        step = operator.index(value)
    except TypeError:
        raise MetricsError(
            f"step={value!r} in {where} is a {type(value).__name__}, not an int; "
            "give the step as an int (the key 'step' means the step)"
        ) from None
    if not _INT64[0] <= step < _INT64[1]:
        raise MetricsError(f"step={step} in {where} is beyond 64 bits")
    return step


def _explain(row: dict[str, Any], name: str, error: Exception) -> MetricsError:
    """The :class:`MetricsError` naming the key of ``row`` that orjson could not encode."""
    for key, value in row.items():
        try:
            orjson.dumps(value)
        except TypeError as exc:
            if isinstance(value, int):
                return MetricsError(
                    f"metric {key!r} in log_metrics(name={name!r}) is {value}, an integer "
                    "beyond 64 bits; log it as a float or a string"
                )
            return MetricsError(
                f"metric {key!r} in log_metrics(name={name!r}) cannot be stored: {exc}"
            )
    return MetricsError(f"log_metrics(name={name!r}) cannot store this row: {error}")


class RunLogger:
    """The task's handle on its run directory: metrics, artifacts and checkpoints.

    Create it through `runlab.launch` (as ``ctx.logger``) or directly with
    a run directory for use outside Hydra.

    ``resume``: whether this logger continues a previous attempt of the run, so
    that its first ``load_checkpoint("last")`` (before it logs anything) cuts the
    rows logged after that checkpoint. ``None`` (default): yes when the run
    directory already holds ``checkpoints/last.pt``. ``False``: loading
    checkpoints never touches the metrics (evaluation of a finished run).

    **Made by hand** (a notebook, another framework) on a directory without
    ``metadata/info.yaml``, the logger writes the run's record itself, as a run
    session would: ``config`` to ``metadata/config.yaml`` (when not given: the one already there, else ``{}``),
    and ``info`` RUNNING with its start time, host, pid and a heartbeat kept fresh
    while it is open (a process that exits without `close` becomes LOST to
    the reader). `close` ends it COMPLETE; used as a context manager, an
    exception inside ``with`` ends it FAILED (``metadata/traceback.txt``), Ctrl-C
    INTERRUPTED. On a directory that already has its ``info`` record (a run
    session's, or an earlier logger's) ``config`` must not be given (the run's
    config stays), and:

    - if the run has ended (a status in `runlab.status.SETTLED`: COMPLETE,
      FAILED, INTERRUPTED, PRUNED or LOST), the logger's first write (a row, an
      artifact, a checkpoint, or the cut of rows by a resuming load of ``"last"``)
      opens a **new attempt** of it, as a resumed run session does: info RUNNING
      with ``attempts`` one more, its own ``attempt_start_time``, pid and
      heartbeat, the previous status kept as ``previous_status``; `close` (or the
      end of ``with``) ends that attempt as above, its ``duration_s`` added to the
      previous attempts'. Nothing is ever written into a run after its final
      status except by a new attempt (invariant 2 of ``runlab verify``), so
      evaluating a finished run by hand shows in its record as one more attempt,
      while a logger that only reads (``load_checkpoint`` with ``resume=False``)
      leaves the record as it was;
    - otherwise (a run session's own logger, or a run queued, preempted or timed
      out, waiting for its scheduler) the record is left as it is.
    """

    def __init__(
        self,
        run_dir: Path | str | RunDir,
        flush_interval: float = 1.0,
        resume: bool | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        # A logger made by hand on a new directory writes the run's record (see above).
        self._owns_record = self.writes_record and not self.run.info_file.exists()
        if config is not None and not self._owns_record:
            raise ValueError(
                f"RunLogger({str(self.run.path)!r}, config=...): that run already has its "
                f"record ({self.run.info_file}); leave out config= to log into it"
            )
        self.run.create()
        # One writer per run: a logger made outside a run session takes the run's lock
        # (RunBusyError while another live process writes it) and gives it back at close.
        self._holds_lock = self.writes_record and not self.run.locked
        if self._holds_lock:
            self.run.acquire()
        self._heartbeat_s = heartbeat_interval()
        self._last_beat = time.monotonic()
        self._started = time.time()  # a run made by hand: the duration written at close()
        self._previous_s = 0.0  # a new attempt: the duration of the attempts before it
        # A logger made by hand on an ended run opens a new attempt of it at its first
        # write (see above): until then it has only read, and the record is as it was.
        self._ended = self._ended_info() if self._holds_lock and not self._owns_record else None
        if self._owns_record:
            try:
                self._start_record(config, {})
            except BaseException:
                self.run.release()
                raise
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._buffers: dict[str, list[bytes]] = {}
        self._fds: dict[str, int] = {}
        self._sizes: dict[str, int] = {}  # bytes of whole lines in each open file
        self._next_step: dict[str, int] = {}
        self._good_keys: set[str] = set()
        # An error to raise at the next call, _CLOSED, _CHILD, or _REOPEN (an ended run
        # whose new attempt the first write opens): checked first by every write.
        self._fault: Any = None if self._ended is None else _REOPEN
        self._remove_temporaries()
        # A new attempt (resume=True) that logs before it loads 'last' starts over.
        self._start_over = resume is True
        if resume is None:
            resume = (self.run.checkpoints / "last.pt").exists()
        self._resuming = resume  # until the first row, checkpoint or load of 'last'
        self._resume_steps()
        self._stop = threading.Event()
        self._closed = False
        self._pid = os.getpid()  # the run's writer; a forked child is not (see _in_child)
        self._max_open = _max_open_files()
        self._flusher = threading.Thread(target=self._flush_loop, name="runlab-flush", daemon=True)
        self._flusher.start()
        _LIVE.add(self)

    rank = 0  # runlab.record.distributed: the rank whose logger this is (PeerLogger for ranks > 0)
    writes_record = True  # the run's writer (PeerLogger: rank 0 is, in another process)
    on_row: Any = (
        None  # runlab.record.trial: called (name, step, row) after each row of a tune trial
    )

    # ------------------------------------------------------------------ metrics
    def log_metrics(
        self,
        metrics: Mapping[str, Any],
        name: str = "train",
        step: int | None = None,
        all_ranks: bool = False,
    ) -> None:
        """Append one row of scalar metrics to ``metrics/<name>.jsonl``.

        ``all_ranks=True``: every rank of a distributed run logs its own row, to
        ``metrics/<name>.rank<k>.jsonl`` (without it, only rank 0's rows are kept).

        Each row gets ``step`` (given, or one more than the previous row of this
        file) and ``time`` (seconds since the epoch). Raises
        `RecordWriteError` if an earlier write failed (see the module
        docstring); that call then logs nothing.
        """
        if self._fault is not None:
            self._raise_fault()
        if self._start_over:
            self._set_aside_previous_attempt()
        if all_ranks:
            name = metricsfile.rank_name(name, self.rank)
        try:
            items = metrics.items()
        except AttributeError:
            raise MetricsError(
                f"log_metrics(name={name!r}) takes a dict of metrics, got a "
                f"{type(metrics).__name__}"
            ) from None
        if not self._good_keys.issuperset(metrics):
            self._check_keys(metrics, name)
        row: dict[str, Any] = {"step": _AUTO if step is None else step, "time": 0.0}
        for key, value in items:
            if type(value) is float:
                if value - value:  # NaN or ±inf (finite floats give 0.0)
                    value = encode_float(value)
            elif type(value) not in _FAST_TYPES:
                value = _scalar(name, key, value)
            row[key] = value
        s = row["step"]
        if s is not _AUTO and (type(s) is not int or s is not step or not -(2**63) <= s < 2**63):
            s = row["step"] = self._resolve_step(s, step, name)
        # The step is taken, the row encoded and buffered under one lock: threads logging
        # to one file get distinct steps, in the file's order.
        with self._lock:
            if s is _AUTO:
                s = row["step"] = self._next_step.get(name, 0)
            row["time"] = time.time()
            try:
                line = orjson.dumps(row, option=_APPEND_NEWLINE)
            except TypeError as exc:  # an integer beyond 64 bits, a lone surrogate: which key
                raise _explain(row, name, exc) from None
            buf = self._buffers.get(name)
            if buf is None:
                check_name(name, "log_metrics(name=)")
                buf = self._buffers[name] = []
            buf.append(line)
            self._next_step[name] = s + 1
        if self.on_row is not None:
            self.on_row(name, s, row)

    def _check_keys(self, metrics: Mapping[str, Any], name: str) -> None:
        for key in metrics:
            if key not in self._good_keys:
                _check_key(key, name)
                self._good_keys.add(key)

    def _resolve_step(self, value: Any, given: Any, name: str) -> int:
        step = _step_value(value, name)
        if given is not None and value is not given:
            other = _step_value(given, name)
            if other != step:
                raise MetricsError(
                    f"log_metrics(name={name!r}) got step={other} and the key 'step'={step}; "
                    "give the step once"
                )
        return step

    def _raise_fault(self) -> None:
        fault = self._fault
        if fault is _REOPEN:  # not an error: the first write into an ended run
            self._open_attempt()
            return
        if fault is _CLOSED:
            raise ValueError(f"the logger of {self.run.path} is closed; nothing more is recorded")
        if fault is _CHILD:
            raise ForkedChildError(
                f"process {os.getpid()} was forked from process {self._pid}, which writes run "
                f"{self.run.run_id} ({self.run.path}): only the run's own process writes its "
                "record, so a child process cannot log; send the values back to the parent "
                "(a Pool's results, a multiprocessing Queue) and log them there"
            )
        self._fault = None
        raise fault

    def _in_child(self) -> None:
        """In a child forked from the logger's process (``os.fork``, multiprocessing's
        fork and forkserver, DataLoader workers): this logger is not the run's writer.

        The rows buffered at the fork are the parent's to write: dropped here. The
        child's copies of the open files and of the run's lock are closed (the parent's
        stay open), and every later logging call raises :class:`ForkedChildError`;
        ``close`` and ``__exit__`` do nothing, so the child never ends the run."""
        self._lock = threading.Lock()  # a parent's thread may have held it at the fork
        self._buffers = {}
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = {}
        self._fault = _CHILD
        self._closed = True
        self._resuming = self._start_over = False  # never cut or move the parent's files
        self._owns_record = self._holds_lock = False
        self._stop = threading.Event()
        self._stop.set()
        self.run.after_fork_in_child()

    def flush(self) -> None:
        """Write every buffered row to disk now (raises `RecordWriteError` on failure)."""
        if self._fault is _CHILD:
            self._raise_fault()
        with self._lock:
            self._flush_locked()

    def _flush_locked(self, final: bool = False) -> None:
        first: RecordWriteError | None = None
        for name, buf in self._buffers.items():
            if buf:
                try:
                    self._write(name, buf, final)
                except RecordWriteError as exc:
                    first = first or exc
        if first is not None:
            raise first

    def _write(self, name: str, buf: list[bytes], final: bool) -> None:
        """Append ``buf`` to its file; on failure keep the whole lines written, cut the rest."""
        data = b"".join(buf)
        path = metricsfile.jsonl_path(self.run.metrics, name)
        written = 0
        try:
            fd = self._fds.get(name)
            if fd is None:
                fd = self._open(name, path)
            elif len(self._fds) > 1:  # the most recently written last: closed last
                del self._fds[name]
                self._fds[name] = fd
            view = memoryview(data)
            while written < len(data):
                n = os.write(fd, view[written:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += n
        except OSError as exc:
            kept, kept_bytes = 0, 0
            for line in buf:
                if kept_bytes + len(line) > written:
                    break
                kept, kept_bytes = kept + 1, kept_bytes + len(line)
            if name in self._fds:
                good = self._sizes[name] + kept_bytes
                try:
                    os.ftruncate(self._fds[name], good)  # cut a torn line: never splice rows
                    self._sizes[name] = good
                except OSError:  # reopen (and repair the tail) at the next attempt
                    os.close(self._fds.pop(name))
            del buf[:kept]
            first_step = orjson.loads(buf[0]).get("step")
            fate = (
                "were not written"
                if final
                else "are kept in memory and written once the disk accepts them"
            )
            raise RecordWriteError(
                f"{path}: {exc.strerror or exc}; rows from step {first_step} on ({len(buf)} "
                f"rows) {fate}"
            ) from exc
        self._sizes[name] += written
        buf.clear()

    def _open(self, name: str, path: Path) -> int:
        """Open ``path`` for appending; cut a torn last line left by an earlier crash."""
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        while len(self._fds) >= self._max_open:  # close the least recently written
            os.close(self._fds.pop(next(iter(self._fds))))
        try:
            fd = os.open(path, flags, 0o666)  # the umask decides, as for every record file
        except OSError as exc:  # the process's other files took the rest: close ours, retry
            if exc.errno not in (errno.EMFILE, errno.ENFILE) or not self._fds:
                raise
            for other in self._fds.values():
                os.close(other)
            self._fds.clear()
            fd = os.open(path, flags, 0o666)
        try:
            size = metricsfile.repair_tail(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fds[name] = fd
        self._sizes[name] = size
        return fd

    def _flush_loop(self) -> None:
        wait = self.flush_interval
        if self._holds_lock:  # a run made or reopened by hand: this thread beats for it
            wait = min(wait, self._heartbeat_s)
        while not self._stop.wait(wait):
            try:
                self.flush()
            except Exception as exc:  # the task gets it at its next call
                if self._fault is None:
                    self._fault = exc
            if self._owns_record and time.monotonic() - self._last_beat >= self._heartbeat_s:
                self._last_beat = time.monotonic()
                try:
                    self.run.heartbeat()
                except OSError:
                    pass

    # ------------------------------------------------------------ own record
    def _ended_info(self) -> dict[str, Any] | None:
        """The run's info when its status says no process works on it any more
        (:data:`runlab.status.SETTLED`: final, or LOST), else ``None``. Read under the
        run's lock, so no other writer can end or reopen it in between."""
        info = self.run.read_info()
        return info if Status.of(info.get("status")) in SETTLED else None

    def _start_record(self, config: Mapping[str, Any] | None, previous: Mapping[str, Any]) -> None:
        """Write the record of a run made by hand: its config, and info RUNNING.

        A config already on disk (written by the caller before the logger) is kept
        when none is given; with none at all the run's config is ``{}``. ``previous``
        is the info of an ended run this logger reopens (empty for a new run): the
        new attempt's fields are the ones a resumed run session writes
        (:func:`start_fields`: attempts + 1, its start time, pid, heartbeat), so that
        nothing is written after a final status except by a new attempt (invariant 2).
        """
        if not previous and (config is not None or not self.run.config_file.exists()):
            write_record(self.run.config_file, dict(config or {}))
        if previous:
            self._previous_s = _seconds(previous.get("duration_s"))
        fields = start_fields(previous, [sys.executable, *sys.argv], self._heartbeat_s)
        self.run.update_info(run_id=self.run.run_id, **fields)

    def _open_attempt(self) -> None:
        """Open the new attempt of an ended run, at this logger's first write (once,
        whichever thread writes first). Until it succeeds the record is untouched, and
        a failure (a full disk) is raised to the writing call and tried again at the next."""
        with self._lock:
            if self._fault is not _REOPEN:
                return
            assert self._ended is not None
            self._start_record(None, self._ended)
            self._started = time.time()
            self._owns_record = True
            self._fault = None

    def _end_record(self, exc: BaseException | None, tb: Any) -> None:
        """Write the end of a run made by hand: its status, end time and error."""
        if isinstance(exc, KeyboardInterrupt):
            status, error = Status.INTERRUPTED, {"type": "KeyboardInterrupt", "message": "Ctrl-C"}
        elif exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            status, error = Status.COMPLETE, None
        else:
            status = Status.FAILED
            error = {"type": type(exc).__name__, "message": str(exc)}
            text = "".join(traceback.format_exception(type(exc), exc, tb))
            try:
                write_atomic(
                    self.run.metadata / "traceback.txt", secrets.redact_text(text).encode()
                )
            except OSError as err:
                error["traceback"] = f"not written: {err.strerror or err}"
        self.run.update_info(
            final=True,
            status=str(status),
            end_time=now_iso(),
            duration_s=round(self._previous_s + time.time() - self._started, 3),
            error=error,
        )

    def _owns(self, stem: str) -> bool:
        """Whether ``metrics/<stem>.jsonl`` is this rank's: not another rank's ``.rank<k>``."""
        found = _RANK_FILE.search(stem)
        return found is None or int(found.group(1)) == self.rank

    def _resume_steps(self) -> None:
        for path in self.run.metrics.glob("*.jsonl"):
            last = metricsfile.last_row(path)
            if last is not None and isinstance(last.get("step"), int):
                self._next_step[path.stem] = last["step"] + 1

    def _remove_temporaries(self) -> None:
        """Delete ``.<name>.tmp`` files of checkpoint or artifact writes that were killed."""
        for folder in (self.run.checkpoints, self.run.artifacts):
            for tmp in folder.glob(".*.tmp"):
                try:
                    tmp.unlink()
                except FileNotFoundError:
                    pass
                except IsADirectoryError:
                    shutil.rmtree(tmp, ignore_errors=True)

    # ---------------------------------------------------------------- artifacts
    def log_artifact(self, obj: Any, name: str | None = None) -> Path:
        """Store a file or directory (a ``Path``), a matplotlib figure, bytes, or any
        picklable object (torch objects through ``torch.save``) under ``artifacts/``.

        ``name`` is a plain file name (never a path); for a ``Path`` it defaults to
        the source's own name. Returns the stored path.
        """
        if name is not None:
            check_name(name, "log_artifact(name=)")
        if self._fault is _CHILD or self._fault is _REOPEN:
            self._raise_fault()
        if isinstance(obj, (str, os.PathLike)):
            src = Path(obj)
            if name is None:
                check_name(src.name, f"log_artifact({str(src)!r}): name")
            if not src.exists():
                raise FileNotFoundError(f"log_artifact: no file or directory at {src}")
            dest = self.run.artifacts / (name or src.name)
            if src.is_dir():
                skip = _skip_records(self.run.path.parent, self.run.path)
                write = lambda tmp: shutil.copytree(src, tmp, ignore=skip)  # noqa: E731
            else:
                write = lambda tmp: shutil.copy2(src, tmp)  # noqa: E731
        elif hasattr(obj, "savefig"):
            dest = self.run.artifacts / (name or "figure.png")
            fmt = dest.suffix[1:].lower() or "png"  # the temporary name has no suffix to go by
            write = lambda tmp: obj.savefig(tmp, format=fmt, bbox_inches="tight")  # noqa: E731
        elif isinstance(obj, (bytes, bytearray)):
            if not name:
                raise ValueError("log_artifact needs a name for bytes")
            dest = self.run.artifacts / name
            write = lambda tmp: tmp.write_bytes(obj)  # noqa: E731
        else:
            default = check_name(f"{type(obj).__name__.lower()}.pt", "log_artifact(name=)")
            dest = self.run.artifacts / (name or default)
            write = lambda tmp: _dump(obj, tmp)  # noqa: E731
        try:
            _replace_with(dest, write)
        except OSError as exc:
            raise RecordWriteError(
                f"{dest}: {exc.strerror or exc}; the artifact was not stored "
                "(a previous one of that name, if any, is kept)"
            ) from exc
        return dest

    # -------------------------------------------------------------- checkpoints
    def log_checkpoint(self, state: Any, name: str = "last") -> Path:
        """Save ``state`` to ``checkpoints/<name>.pt`` atomically.

        The metrics written so far are flushed and their lengths recorded, so that
        a run resumed from this checkpoint continues its metric files exactly
        where the checkpoint left them, with no duplicated rows. Raises
        `RecordWriteError` if the metrics or the checkpoint cannot be
        written (the previous checkpoint of that name is then kept).
        """
        if self._fault is not None:
            self._raise_fault()
        check_name(name, "log_checkpoint(name=)")
        if self._start_over:
            self._set_aside_previous_attempt()
        dest = self.run.checkpoints / f"{name}.pt"
        with self._lock:
            self._resuming = False
            self._flush_locked()
            sizes = {
                p.stem: p.stat().st_size
                for p in self.run.metrics.glob("*.jsonl")
                if self._owns(p.stem)  # other ranks' files are theirs (runlab.record.distributed)
            }
            sizes.update(self._sizes)
            meta = {"metrics_bytes": sizes, "next_step": dict(self._next_step), "time": time.time()}
        try:
            _replace_with(dest, lambda tmp: _dump({_CHECKPOINT_KEY: meta, "state": state}, tmp))
        except OSError as exc:
            raise RecordWriteError(
                f"{dest}: {exc.strerror or exc}; the checkpoint was not saved "
                f"(the previous {name}.pt, if any, is kept)"
            ) from exc
        return dest

    def load_checkpoint(self, name: str = "last", **load_kwargs: Any) -> Any:
        """The state of the last checkpoint called ``name``, or ``None`` when there is none.

        Only reads the checkpoint, except when this logger resumes a run (see
        ``resume``): then its first load of ``"last"``, before any row is logged,
        also cuts the rows the previous attempt logged after that checkpoint,
        since the resumed task logs them again.
        """
        check_name(name, "load_checkpoint(name=)")
        path = self.run.checkpoints / f"{name}.pt"
        if not path.exists():
            return None
        payload = _load(path, **load_kwargs)
        if not (isinstance(payload, dict) and _CHECKPOINT_KEY in payload):
            return payload
        if name == "last" and self._resuming:
            if self._fault is _REOPEN:  # cutting rows is a write: a new attempt's
                self._open_attempt()
            self._rewind(payload[_CHECKPOINT_KEY])
        return payload["state"]

    def _set_aside_previous_attempt(self) -> None:
        """Move the previous attempt's metric files to ``metrics/.previous/<k>/``.

        A new attempt that logs before loading ``"last"`` starts over from its first
        step: its rows would follow the previous attempt's and repeat their steps.
        The previous rows are kept aside, not deleted (the record loses nothing).
        """
        with self._lock:
            self._start_over = self._resuming = False
            if self._buffers or self._sizes:
                return
            mine = [p for p in self.run.metrics.glob("*.jsonl") if self._owns(p.stem)]
            if not mine:
                return
            try:  # the attempt that wrote them: one before this one (ranks agree on it)
                k = max(1, int(self.run.read_info().get("attempts") or 2) - 1)
            except Exception:
                k = 1
            folder = self.run.metrics / ".previous" / str(k)
            folder.mkdir(parents=True, exist_ok=True)
            for path in mine:
                for file in (path, path.with_suffix(".parquet")):
                    if file.exists():
                        os.replace(file, folder / file.name)
                self._next_step.pop(path.stem, None)

    def _rewind(self, meta: Mapping[str, Any]) -> None:
        with self._lock:
            self._start_over = False
            self._resuming = False
            if self._buffers or self._sizes:  # this attempt has logged already
                return
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self._sizes.clear()
            for path in self.run.metrics.glob("*.jsonl"):
                if not self._owns(path.stem):
                    continue
                keep = meta["metrics_bytes"].get(path.stem, 0)
                if path.stat().st_size > keep:
                    with open(path, "r+b") as fh:
                        fh.truncate(keep)
            self._next_step = dict(meta["next_step"])

    # -------------------------------------------------------------------- close
    def close(self) -> None:
        """Flush everything and stop the background writer (idempotent).

        A logger made by hand ends its run COMPLETE (FAILED if rows could not be
        written). Raises `RecordWriteError` once if rows could not be written.
        """
        self._close(None, None)

    def _close(self, exc: BaseException | None, tb: Any) -> None:
        """Close the writer; a logger made by hand then ends its run (``exc``: how the
        ``with`` body ended). The run's lock is given back last."""
        if self._closed:
            return
        try:
            try:
                self._close_writer()
            except RecordWriteError as err:
                if self._owns_record:
                    self._end_record(exc or err, tb if exc is not None else err.__traceback__)
                raise
            if self._owns_record:
                self._end_record(exc, tb)
        finally:
            if self._holds_lock:
                self.run.release()

    def _close_writer(self) -> None:
        self._closed = True
        self._stop.set()
        if self._flusher.is_alive() and self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._lock:
            try:
                self._flush_locked(final=True)
            finally:
                self._fault = _CLOSED
                for fd in self._fds.values():
                    os.close(fd)
                self._fds.clear()
        self._write_twins(list(self._sizes))

    def _write_twins(self, names: list[str]) -> None:
        """The columnar twin of each metrics file this logger appended to (see the
        module docstring); never fails the run. Polars is imported only here."""
        for name in names:
            metricsfile.write_twin(metricsfile.jsonl_path(self.run.metrics, name))

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self._close(exc, tb)
        except RecordWriteError:
            if not isinstance(exc, RecordWriteError):  # else the task already has it
                raise

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def artifact_dir(self) -> Path:
        return self.run.artifacts


def _seconds(value: Any) -> float:
    """A recorded duration as seconds: 0 where there is none, or it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value) if math.isfinite(value) else 0.0


def _max_open_files() -> int:
    """How many metrics files a logger keeps open: :data:`MAX_OPEN_FILES`, or a quarter
    of the process's file-descriptor limit when that is lower (at least 4)."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return MAX_OPEN_FILES
    if soft == resource.RLIM_INFINITY:
        return MAX_OPEN_FILES
    return max(4, min(MAX_OPEN_FILES, soft // 4))


# The loggers alive in this process, told by os.register_at_fork when it forks a child.
_LIVE: weakref.WeakSet[RunLogger] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for live in list(_LIVE):
        with contextlib.suppress(Exception):
            live._in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _torch() -> Any:
    """``torch``, or ``None`` where it is not installed.

    The first import of torch takes seconds; a stop signal in the middle of it can be
    swallowed by torch's own error handling, so the run's stop signals wait for its end
    (:func:`runlab.record.lifecycle.signals_held`, when a run is being recorded).
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch
    lifecycle = sys.modules.get("runlab.record.lifecycle")
    with lifecycle.signals_held() if lifecycle is not None else contextlib.nullcontext():
        try:
            import torch
        except ImportError:
            return None
    return torch


class _Sink:
    """A file for ``torch.save`` that keeps the ``OSError`` of a failed write: torch
    raises its own ``RuntimeError`` instead, which never says the disk is full."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        try:
            self.fh.flush()
        except OSError as exc:
            self.error = exc
            raise


def _dump(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` with ``torch.save`` (``pickle`` without torch)."""
    torch = _torch()
    with open(path, "wb") as fh:
        if torch is None:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
            return
        sink = _Sink(fh)
        try:
            torch.save(obj, sink)
        except RuntimeError as exc:
            if sink.error is not None:
                raise sink.error from exc
            raise


def _skip_records(*folders: Path) -> Any:
    """A ``copytree`` ``ignore`` that leaves out ``folders`` (the logs directory, with
    every run record in it, and the run being written to): an artifact copy of a folder
    holding them (the working directory, say) never copies the record into itself."""
    keys = set()
    for folder in folders:
        try:
            st = os.stat(folder)
        except OSError:
            continue
        keys.add((st.st_dev, st.st_ino))

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            try:
                st = os.stat(os.path.join(folder, name))  # through links, as copytree copies
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in keys:
                skipped.add(name)
        return skipped

    return ignore


def _replace_with(dest: Path, write: Any) -> None:
    """Make ``dest`` anew from ``write(tmp)`` under a temporary name, then rename it:
    a write that fails or is killed leaves the previous ``dest`` (or none), never
    a part. Temporaries left by ``kill -9`` are removed at the next start."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    old = dest.with_name(f".{dest.name}.old.tmp")
    try:
        _remove(tmp)
        write(tmp)
        _fsync(tmp)
        if tmp.is_dir() and dest.is_dir():  # a directory is replaced whole
            _remove(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            _remove(old)
        else:
            os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise


def _fsync(path: Path) -> None:
    if path.is_dir():
        return
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _load(path: Path, **kwargs: Any) -> Any:
    torch = _torch()
    if torch is None:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    kwargs.setdefault("weights_only", False)
    return torch.load(path, **kwargs)


__all__ = ["ForkedChildError", "MetricsError", "RecordWriteError", "RunLogger"]
