"""What the dashboard shows, read incrementally: the run table, new metric rows, one run.

**The run table** (:class:`RunTable`) is kept between requests. A refresh lists the run
directories, ``stat``\\ s each run's ``metadata/info.json`` and reads it (and, the first
time, its config) only where its signature (mtime, size, inode) changed; the selected
metric's latest value comes from a :class:`~runlab.record.metricsfile.Tail` per run (the
same incremental reader as ``runlab status --watch``), read only for active runs and
runs whose info changed. Over 1,000 ended runs a refresh reads nothing but ``stat``
results. A ``--where`` query is the reader's own (:meth:`runlab.results.reader.Reader.filter`),
evaluated again only when a run changed, at most every :data:`WHERE_EVERY_S`.

**Curves** (:func:`new_rows`) are stateless on the server: the browser sends, per run and
metrics file, the offset and inode it has read up to, and gets back only the rows after
it (a :class:`Tail` made from them), with the new offset. A file that shrank or was
replaced starts again (``reset``). Runs are grouped as the report groups them
(:func:`runlab.results.report.differences` and its labels), one colour per group.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from runlab.logs import Logs
from runlab.record.metricsfile import SUFFIX, Tail, complete_lines, decode_value, parse_row
from runlab.results.reader import Reader, read_run
from runlab.results.reader._files import Refused, load_record
from runlab.results.reader._run import writer_gone
from runlab.results.report._format import palette
from runlab.results.report._labels import differences, labels_of
from runlab.status import ACTIVE, Status, hex_colour
from runlab.sweep import ops

# A --where query's matching runs: computed again at most this often (while runs change).
WHERE_EVERY_S = 5.0
# The config columns of the runs table: at most this many (the keys that differ).
KEY_COLUMNS = 6
# The curves page draws at most this many runs (the latest ones).
MAX_CURVE_RUNS = 200
# The run page shows at most this much of the end of the run's job output.
LOG_TAIL = 64 * 1024
# A RUNNING run's writer: asked whether it lives at most this often (runlab.record.process).
LOST_EVERY_S = 5.0
# runlab's own keys in a metrics row.
OWN_KEYS = frozenset({"step", "time"})


@dataclass
class Meter:
    """Every ``stat`` and every byte read from the runs' files (the tests and the benchmark)."""

    stats: int = 0
    bytes_read: int = 0


@dataclass
class RunRow:
    """What the dashboard knows of one run."""

    run_id: int
    path: str
    sig: tuple[int, int, int] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)  # its metrics files' names
    keys: dict[str, list[str]] = field(default_factory=dict)  # file -> keys of its 1st row
    tails: dict[str, Tail] = field(default_factory=dict)  # metric -> its tail
    values: dict[str, Any] = field(default_factory=dict)  # metric -> latest value
    lost: bool = False  # RUNNING, but its writer is gone (the reader's rule): LOST
    checked: float = float("-inf")  # when ``lost`` was last asked (time.monotonic)

    @property
    def status(self) -> str:
        status = self.info.get("status")
        if not isinstance(status, str) or not status:
            return Status.CORRUPT.value
        return Status.LOST.value if self.lost and status == Status.RUNNING else status

    def check_writer(self, now: float) -> None:
        """Whether a RUNNING run's writer is gone, asked at most every :data:`LOST_EVERY_S`."""
        if self.info.get("status") != Status.RUNNING:
            self.lost = False
        elif now - self.checked >= LOST_EVERY_S:
            self.checked = now
            self.lost = writer_gone(self.info)

    @property
    def active(self) -> bool:
        return Status.of(self.status) in ACTIVE


def _epoch(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp() if value else None
    except ValueError:
        return None


def duration(info: dict[str, Any], now: float) -> float | None:
    """Seconds the run ran: so far while active, else its record's ``duration_s`` (or its
    end less its start); None where the record cannot say."""
    start = _epoch(info.get("attempt_start_time") or info.get("start_time"))
    if Status.of(info.get("status")) in ACTIVE:
        return max(0.0, now - start) if start is not None else None
    recorded = info.get("duration_s")
    if isinstance(recorded, int | float) and not isinstance(recorded, bool):
        return float(recorded)
    end = _epoch(info.get("end_time"))
    return max(0.0, end - start) if start is not None and end is not None else None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (lists and scalars are leaves)."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return out


def _load(path: str, name: str) -> dict[str, Any] | None:
    try:
        data = load_record(path, name)[0]
    except (FileNotFoundError, Refused, OSError):
        return None
    return dict(data)


class RunTable:
    """The runs of a logs directory as last read, kept up to date by :meth:`refresh`."""

    def __init__(self, logs: Path) -> None:
        self.logs = Path(logs)
        self.runs: dict[int, RunRow] = {}
        self.meter = Meter()
        self.version = 0  # bumped whenever a run appears or its info changes
        self.lock = threading.Lock()
        self._where: dict[str, tuple[int, float, list[int]]] = {}
        self._groups: tuple[frozenset[int], dict[int, tuple[int, str]]] | None = None

    def refresh(self) -> None:
        """Read what changed since the last refresh."""
        ids = set(Logs(self.logs).run_ids())
        for rid in sorted(ids - set(self.runs)):
            self.runs[rid] = RunRow(rid, os.path.join(self.logs, str(rid)))
            self.version += 1
        for rid in set(self.runs) - ids:
            del self.runs[rid]
            self.version += 1
        now = time.monotonic()
        for run in self.runs.values():
            changed = self._read_info(run)
            run.check_writer(now)
            keyless = any(not run.keys.get(name) for name in run.files)
            if changed or run.active or not run.files or keyless:
                self._scan_metrics(run)

    def _read_info(self, run: RunRow) -> bool:
        path = os.path.join(run.path, "metadata", "info.json")
        try:
            st = os.stat(path)
            sig: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = None
        self.meter.stats += 1
        if sig is not None and sig == run.sig:
            return False
        run.sig = sig
        run.info = _load(run.path, "info") or {}
        run.checked = float("-inf")  # a new record: its writer asked again
        self.meter.bytes_read += sig[1] if sig else 0
        if run.config is None:
            run.config = flatten(_load(run.path, "config") or {})
        self.version += 1
        return True

    def _scan_metrics(self, run: RunRow) -> None:
        folder = os.path.join(run.path, "metrics")
        try:
            names = sorted(
                e.name[: -len(SUFFIX)] for e in os.scandir(folder)
                if e.name.endswith(SUFFIX) and ".rank" not in e.name
            )  # fmt: skip
        except OSError:
            return
        run.files = names
        for name in names:
            if not run.keys.get(name):  # none yet (an empty file, a first row half-written)
                run.keys[name] = self._first_keys(os.path.join(folder, name + SUFFIX))

    def _first_keys(self, path: str) -> list[str]:
        try:
            with open(path, "rb") as fh:
                line = fh.readline(64 * 1024)
        except OSError:
            return []
        self.meter.bytes_read += len(line)
        whole = complete_lines(line)  # a torn first line has no keys yet
        row = parse_row(whole[0]) if whole else None
        return [k for k in row or {} if k not in OWN_KEYS]

    # ------------------------------------------------------------ what is shown
    def metrics(self) -> list[str]:
        """Every ``file.key`` the runs logged (from each file's first row)."""
        found = {f"{name}.{key}" for run in self.runs.values() for name, keys in run.keys.items()
                 for key in keys}  # fmt: skip
        return sorted(found)

    def value(self, run: RunRow, metric: str) -> Any:
        """The latest value of ``metric`` (``file.key``) in ``run``, read incrementally."""
        name, _, key = metric.partition(".")
        tail = run.tails.get(metric)
        if tail is None:
            tail = run.tails[metric] = Tail()
        elif not run.active and metric in run.values:
            return run.values[metric]
        path = os.path.join(run.path, "metrics", name + SUFFIX)
        for line in reversed(tail.read(path, self.meter)):
            row = parse_row(line)
            if row is not None and key in row:
                run.values[metric] = decode_value(row[key])
                break
        return run.values.get(metric)

    def key_columns(self, runs: list[RunRow]) -> list[str]:
        """The config keys whose values differ among ``runs`` (runlab's own left out)."""
        seen: dict[str, set[str]] = {}
        for run in runs:
            for key, value in (run.config or {}).items():
                if not key.startswith("runlab."):
                    seen.setdefault(key, set()).add(repr(value))
        keys = [k for k, values in seen.items() if len(values) > 1 or len(runs) == 1]
        return keys[:KEY_COLUMNS]

    def matching(self, where: str | None) -> list[int]:
        """The run ids matching ``where`` (every run without one); a bad query raises
        :class:`runlab.results.query.QueryError`."""
        if not where:
            return sorted(self.runs)
        cached = self._where.get(where)
        now = time.monotonic()
        if cached and (cached[0] == self.version or now - cached[1] < WHERE_EVERY_S):
            return cached[2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged run is shown as CORRUPT, not warned
            ids = sorted(Reader(self.logs).filter(where).run_ids)
        self._where = {where: (self.version, now, ids)}  # one query at a time is kept
        return ids

    def groups(self, ids: list[int]) -> dict[int, tuple[int, str]]:
        """Each run's group (index, label), as the report makes them: the config keys
        that differ among the runs."""
        key = frozenset(ids)
        if self._groups is not None and self._groups[0] == key:
            return self._groups[1]
        out: dict[int, tuple[int, str]] = {}
        if ids:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = _group_of(Reader(self.logs).filter(pl.col("run_id").is_in(ids)))
        self._groups = (key, out)
        return out


def _group_of(reader: Reader) -> dict[int, tuple[int, str]]:
    """Run id -> (group index, label) for the runs of ``reader``."""
    table = reader.df
    by, _folded = differences(table)
    if not by:
        return {int(r): (0, "all runs") for r in table["run_id"].to_list()}
    keys = table.select(by).unique(maintain_order=True).with_row_index("_g")
    labels, _full = labels_of(keys.drop("_g"), by)
    joined = table.select("run_id", *by).join(keys, on=by, how="left", nulls_equal=True)
    return {
        int(r): (int(g), labels[int(g)])
        for r, g in joined.select("run_id", pl.col("_g")).iter_rows()
    }


# ------------------------------------------------------------------ the JSON
def runs_json(table: RunTable, where: str | None, metric: str | None) -> dict[str, Any]:
    """The runs page's data: a row per run matching ``where``, newest first."""
    table.refresh()
    metrics = table.metrics()
    if not metric or metric not in metrics:
        metric = metrics[0] if metrics else None
    ids = table.matching(where)
    runs = [table.runs[i] for i in reversed(ids) if i in table.runs]
    keys = table.key_columns(runs)
    now = time.time()
    rows = [
        {
            "run_id": run.run_id,
            "status": run.status,
            "colour": hex_colour(run.status),
            "duration_s": duration(run.info, now),
            "config": {k: (run.config or {}).get(k) for k in keys},
            "value": table.value(run, metric) if metric else None,
            "error": _error(run.info),
        }
        for run in runs
    ]
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    return {"metric": metric, "metrics": metrics, "keys": keys, "runs": rows, "counts": counts}


def _error(info: dict[str, Any]) -> str | None:
    error = info.get("error")
    if not isinstance(error, dict):
        return None
    text = f"{error.get('type') or ''}: {error.get('message') or ''}".strip(": ")
    return text.splitlines()[0][:300] if text else None


def new_rows(
    table: RunTable, where: str | None, since: dict[str, dict[str, list[int]]]
) -> dict[str, Any]:
    """The curves page's data: per run and metrics file, only the rows after the offset
    the browser sent (``since[run][file] = [offset, inode]``), and the new offsets."""
    table.refresh()
    ids = table.matching(where)[-MAX_CURVE_RUNS:]
    groups = table.groups(ids)
    out: dict[str, Any] = {}
    for rid in ids:
        run = table.runs.get(rid)
        if run is None:
            continue
        files = {}
        for name in run.files:
            got = _file_rows(table, run, name, since.get(str(rid), {}).get(name))
            if got is not None:
                files[name] = got
        if not files:  # nothing new: the page has all of it
            continue
        index, label = groups.get(rid, (0, "all runs"))
        out[str(rid)] = {
            "group": index,
            "label": label,
            "colour": palette(index)[0],
            "status": run.status,
            "files": files,
        }
    return {"runs": out, "groups": len({g for g, _ in groups.values()})}


def _file_rows(
    table: RunTable, run: RunRow, name: str, mark: list[int] | None
) -> dict[str, Any] | None:
    """The rows of one metrics file after ``mark`` ([offset, inode]); None if none."""
    try:  # what the browser sent back; anything else: from the start
        offset, ino = (int(mark[0]), int(mark[1])) if mark and len(mark) == 2 else (-1, 0)
    except (TypeError, ValueError):
        offset, ino = -1, 0
    tail = Tail(offset, ino)
    lines = tail.read(os.path.join(run.path, "metrics", name + SUFFIX), table.meter, window=None)
    if not lines and not tail.restarted:
        return None
    steps: list[Any] = []
    values: dict[str, list[Any]] = {}
    for line in lines:
        row = parse_row(line)
        if row is None:
            continue
        n = len(steps)
        steps.append(row.get("step", n))
        for key, value in row.items():
            if key in OWN_KEYS:
                continue
            column = values.setdefault(key, [None] * n)
            column.extend([None] * (n - len(column)))
            column.append(_number(decode_value(value)))
    for column in values.values():
        column.extend([None] * (len(steps) - len(column)))
    return {"offset": tail.offset, "ino": tail.ino, "reset": tail.restarted,
            "step": steps, "values": values}  # fmt: skip


def _number(value: Any) -> Any:
    """A value a curve can draw: numbers (NaN and inf as gaps), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):  # the browser's numbers are floats (one beyond: a gap)
        try:
            return float(value)
        except OverflowError:
            return None
    return value if value == value and abs(value) != float("inf") else None


# ------------------------------------------------------------------ one run
def run_record(logs: Path, run_id: int) -> dict[str, Any]:
    """``runlab show``'s record of one run, with the path and the last :data:`LOG_TAIL`
    bytes of its job's stdout (``log`` and ``log_path``, None when it has none).
    :class:`runlab.results.reader.NoSuchRun` if there is no such run."""
    record = read_run(logs, run_id)
    path = log_path(logs, run_id, record.get("info") or {})
    record["log_path"] = str(path) if path else None
    record["log"] = _tail_text(path) if path else None
    return record


def log_path(logs: Path, run_id: int, info: dict[str, Any]) -> Path | None:
    """Where the run's current job wrote its stdout, as ``runlab logs`` finds it: the
    sweep's log file for the run, else the one the task recorded."""
    try:
        record = ops.sweep_of_run(logs, run_id)
        path = ops.log_file(logs, record, run_id) if record else None
    except Exception:  # a damaged sweep record: the task's own note below
        path = None
    if path is not None and path.is_file():
        return path
    recorded = info.get("log_out")
    if isinstance(recorded, str) and recorded and Path(recorded).is_file():
        return Path(recorded)
    return None


def _tail_text(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - LOG_TAIL))
            data = fh.read(LOG_TAIL)
    except OSError:
        return None
    if size > LOG_TAIL:  # from the middle of a line: start at the next one
        data = data[data.find(b"\n") + 1 :]
    return data.decode("utf-8", "replace")
