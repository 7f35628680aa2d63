"""``runlab status --watch``: a live terminal view of a sweep, refreshed every second.

The view shows the counts by status, the progress and an ETA, the latest value of the
ranking metric per run, and every failure with its error line as it happens. It ends
by itself once every run has ended (the final view stays on the screen), or on Ctrl-C
(exit 130, the runs go on). It never writes to a run: the only writer it calls is the
periodic reconcile with the scheduler that ``runlab status`` does once (and
``submit --wait``'s progress bar does every few seconds), which closes runs whose job
is gone.

**What a refresh reads** (:class:`Watch`, the model; :func:`view` draws it). The
model keeps, per run, the signature (mtime, size, inode) of ``metadata/info.json`` and
the offset reached in the metrics file of the ranking metric. A refresh:

- ``stat``\\ s each run's ``info.json`` and reads it again only where it changed;
- for the runs still active (and those whose info just changed), ``stat``\\ s the
  ranking metric's ``metrics/<name>.jsonl`` and reads only the bytes appended since
  the last refresh, up to the last whole line (a torn last line is read again next
  time, :class:`runlab.record.metricsfile.Tail`, shared with ``runlab serve``). The first
  read of a file takes only its last :data:`TAIL_WINDOW` bytes (the latest value is what is shown);
  a file that shrank or was replaced is read again from its end in the same way.

Every byte read is counted in :attr:`Watch.bytes_read` (the tests and
``benchmarks/watch_refresh.py`` check it). Over 1,000 runs a refresh where nothing
changed reads nothing but 1,000 to 2,000 ``stat`` results.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from runlab.cli._progress import _timeouts_settled
from runlab.cli._text import cell, m, safe
from runlab.errors import UserError
from runlab.record.metricsfile import (
    READ_CAP,
    TAIL_WINDOW,
    Tail,
    complete_lines,
    decode_value,
    parse_row,
    read_sized,
)
from runlab.record.rundir import RunDir
from runlab.status import ACTIVE, FAILING, SUCCEEDED, Status, colour
from runlab.sweep import ops
from runlab.sweep.record import SweepRecord, SweepRecordError
from runlab.sweep.tune import journal_path

# The reconcile with the scheduler: at most this often.
RECONCILE_S = 5.0
# runlab's own keys in a metrics row (never the ranking metric by default).
OWN_KEYS = frozenset({"step", "time"})
EXIT_INTERRUPTED = 130


# ------------------------------------------------------------------------ model
# Re-exported: the tests and the benchmark read them here.
__all__ = ["READ_CAP", "TAIL_WINDOW", "Tail", "Watch", "view"]


@dataclass
class RunState:
    """What the watcher knows of one run."""

    run_id: int
    path: str
    sig: tuple[int, int, int] | None = None
    status: str = Status.QUEUED.value
    start: float | None = None
    end: float | None = None
    error: str | None = None
    value: Any = None
    step: Any = None
    tail: Tail = field(default_factory=Tail)

    @property
    def active(self) -> bool:
        return Status.of(self.status) in ACTIVE

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)


@dataclass
class Failure:
    run_id: int
    status: str
    error: str
    seen: float


def _epoch(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp() if value else None
    except ValueError:
        return None


def _error_line(info: dict[str, Any]) -> str:
    error = info.get("error")
    if not isinstance(error, dict):
        return ""
    kind, message = error.get("type") or "", error.get("message") or ""
    text = f"{kind}: {message}".strip(": ") if kind or message else ""
    return safe(text.splitlines()[0] if text else "", limit=300)


class Watch:
    """The runs of a sweep as last read, kept up to date by :meth:`refresh`."""

    def __init__(self, logs: Path | str, run_ids: Sequence[int], metric: str | None = None):
        self.logs = Path(logs)
        self.runs: dict[int, RunState] = {}
        self.metric = metric
        self.metric_from = "--metric" if metric else ""
        self.failures: list[Failure] = []
        self.bytes_read = 0  # every byte read from the runs' files, all refreshes together
        self.stats = 0  # every stat of them
        self.refreshes = 0
        self.started = time.time()
        self.add_runs(run_ids)

    def add_runs(self, run_ids: Sequence[int]) -> None:
        """Watch these runs too (a tune study's sweep grows)."""
        for rid in run_ids:
            rid = int(rid)
            if rid not in self.runs:
                self.runs[rid] = RunState(rid, os.path.join(self.logs, str(rid)))

    # ------------------------------------------------------------ refresh
    def refresh(self) -> int:
        """Read what changed since the last refresh; return the bytes read."""
        before = self.bytes_read
        first = self.refreshes == 0
        now = time.time()
        for run in self.runs.values():
            changed = self._read_info(run, now, first)
            if run.active or changed:
                self._read_metric(run)
        self.refreshes += 1
        return self.bytes_read - before

    def _read_info(self, run: RunState, now: float, first: bool) -> bool:
        path = os.path.join(run.path, "metadata", "info.json")
        try:
            st = os.stat(path)
        except OSError:
            st = None
        self.stats += 1
        sig = (st.st_mtime_ns, st.st_size, st.st_ino) if st else None
        if sig is not None and sig == run.sig:
            return False
        run.sig = sig
        info = self._load_info(path, run)
        was = run.status
        status = info.get("status")
        run.status = status if isinstance(status, str) and status else Status.CORRUPT.value
        run.start = _epoch(info.get("attempt_start_time") or info.get("start_time"))
        run.end = _epoch(info.get("end_time")) if not run.active else None
        run.error = _error_line(info) or None
        if Status.of(run.status) in FAILING and (first or was != run.status):
            self.failures.append(Failure(run.run_id, run.status, run.error or "", now))
        return True

    def _load_info(self, path: str, run: RunState) -> dict[str, Any]:
        try:
            with open(path, "rb") as fh:
                data = read_sized(fh)
            self.bytes_read += len(data)
            info = orjson.loads(data)
        except (OSError, orjson.JSONDecodeError):
            info = RunDir(run.path).read_info()  # an older run: its info.yaml alone
        return info if isinstance(info, dict) else {}

    def _read_metric(self, run: RunState) -> None:
        if self.metric is None:
            self.metric = self._first_metric(run)
            if self.metric is None:
                return
            self.metric_from = "the first metric logged"
        name, _, key = self.metric.partition(".")
        path = os.path.join(run.path, "metrics", f"{name}.jsonl")
        mark = key.encode() if key.isascii() and not {'"', "\\"} & set(key) else b""
        for line in reversed(run.tail.read(path, self)):  # only the latest value is shown
            row = parse_row(line) if mark in line else None
            if row is not None and key in row:
                run.value = decode_value(row[key])
                run.step = row.get("step")
                return

    def _first_metric(self, run: RunState) -> str | None:
        """``FILE.KEY``: of ``run``'s metrics file whose first row was logged first, its
        first key holding a float (a loss, an accuracy: not a counter such as ``epoch``),
        else its first key of the task's own."""
        try:
            names = sorted(
                e.name for e in os.scandir(os.path.join(run.path, "metrics"))
                if e.name.endswith(".jsonl") and ".rank" not in e.name
            )  # fmt: skip
        except OSError:
            return None
        firsts = []
        for name in names:
            try:
                with open(os.path.join(run.path, "metrics", name), "rb") as fh:
                    line = fh.readline(TAIL_WINDOW)
            except OSError:
                continue
            self.bytes_read += len(line)
            whole = complete_lines(line)  # a torn first line is no row yet
            row = parse_row(whole[0]) if whole else None
            keys = [k for k in row or {} if k not in OWN_KEYS]
            if row and keys:
                when = row.get("time")
                firsts.append((when if isinstance(when, float | int) else math.inf, name, row))
        if not firsts:
            return None
        _, name, row = min(firsts, key=lambda f: f[0])
        keys = [k for k in row if k not in OWN_KEYS]
        key = next((k for k in keys if isinstance(decode_value(row[k]), float)), keys[0])
        return f"{name[: -len('.jsonl')]}.{key}"

    # ------------------------------------------------------------ summaries
    def counts(self) -> Counter[str]:
        return Counter(run.status for run in self.runs.values())

    def ended(self) -> int:
        return sum(1 for run in self.runs.values() if not run.active)

    def active_ids(self) -> list[int]:
        return [rid for rid, run in self.runs.items() if run.active]

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until every run has ended, from the durations of the runs ended so far
        (those that succeeded, if any: a run that failed early says little): each running run takes the mean duration (less its time so
        far), each queued one the whole of it, as many at a time as run now."""
        now = time.time() if now is None else now
        ended = [r for r in self.runs.values() if r.duration is not None]
        succeeded = [r for r in ended if Status.of(r.status) in SUCCEEDED]
        durations = [r.duration or 0.0 for r in succeeded or ended]
        if not durations:
            return None
        mean = sum(durations) / len(durations)
        running = [r for r in self.runs.values() if r.status != Status.QUEUED and r.active]
        queued = sum(1 for r in self.runs.values() if r.status == Status.QUEUED)
        left = sum(max(0.0, mean - (now - (r.start or now))) for r in running)
        return (left + queued * mean) / max(1, len(running))


# ------------------------------------------------------------------------- view
def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return safe(value, limit=40) if value is not None else ""


def _order(watch: Watch) -> list[RunState]:
    """Running runs first (by id), then the others, the last to end first."""
    runs = list(watch.runs.values())
    live = [r for r in runs if r.active and r.status != Status.QUEUED]
    ended = sorted((r for r in runs if not r.active), key=lambda r: -(r.end or 0))
    queued = [r for r in runs if r.status == Status.QUEUED]
    return live + ended + queued


def view(
    watch: Watch,
    title: str,
    *,
    height: int = 40,
    now: float | None = None,
    footer: str = "",
    max_failures: int = 8,
) -> Any:
    """The view of ``watch`` as a rich renderable, made to fit ``height`` lines."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = time.time() if now is None else now
    total, ended = len(watch.runs), watch.ended()
    parts: list[Any] = [Text.from_markup(title)]
    parts.append(_progress_line(watch, total, ended, now))
    counts = watch.counts()
    order = [s.value for s in Status] + sorted(set(counts) - {s.value for s in Status})
    parts.append(
        Text.from_markup(
            "  ".join(f"[{colour(s)}]{m(s)}[/] {counts[s]}" for s in order if counts.get(s))
            or "[dim]no runs[/]"
        )
    )
    fails = watch.failures[-max_failures:]
    room = max(3, height - len(parts) - len(fails) - 6)
    parts.append(_metric_table(watch, room, Table))
    if watch.failures:
        parts.append(Text.from_markup(f"[bold]failures[/] ({len(watch.failures)})"))
        if len(watch.failures) > len(fails):
            more = len(watch.failures) - len(fails)
            parts.append(Text.from_markup(f"  [dim]... {more} earlier (runlab status)[/]"))
        for f in fails:
            line = Text(f"  {f.run_id:>6}  ")
            line.append(f.status, style=colour(f.status))
            line.append(f"  {f.error}" if f.error else "")
            parts.append(line)
    if footer:
        parts.append(Text.from_markup(footer))
    return Group(*parts)


def _progress_line(watch: Watch, total: int, ended: int, now: float) -> Any:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=40)
    grid.add_column()
    pct = 100 * ended / total if total else 100.0
    eta = watch.eta(now) if ended < total else 0.0
    when = "done" if ended == total else ("ETA " + _clock(eta) if eta is not None else "ETA ?")
    cells = [  # a bar (no user text), and runlab's own figures as text
        ProgressBar(total=max(total, 1), completed=ended, width=40),
        cell(f"{ended}/{total} ended ({pct:.0f}%)  {when}  elapsed {_clock(now - watch.started)}"),
    ]
    grid.add_row(*cells)
    return grid


def _metric_table(watch: Watch, room: int, table_type: Any) -> Any:
    table = table_type(box=None, pad_edge=False, show_edge=False, header_style="bold")
    metric = watch.metric or "(no metric logged yet)"
    table.add_column("run", justify="right")
    table.add_column("status")
    table.add_column("step", justify="right")
    table.add_column(cell(metric, limit=60), justify="right")
    runs = _order(watch)
    shown = runs[:room] if len(runs) > room else runs
    for run in shown:
        table.add_row(
            cell(run.run_id),
            cell(run.status, style=colour(run.status) or ""),
            cell(_value(run.step)),
            cell(_value(run.value)),
        )
    if len(runs) > len(shown):
        more = f"... {len(runs) - len(shown)} more"
        table.add_row(cell(""), cell(more, style="dim"), cell(""), cell(""))
    return table


# ------------------------------------------------------------------------- loop
@dataclass
class Options:
    interval: float = 1.0
    reconcile: bool = True
    reconcile_s: float = RECONCILE_S


def tune_metric(logs: Path, record: SweepRecord) -> str | None:
    """The metric of the study a tune sweep belongs to, read from its journal (the
    ``runlab`` user attribute Optuna's journal holds), or ``None``."""
    if not record.tune:
        return None
    try:
        with open(journal_path(Path(logs), record.tune), "rb") as fh:
            for line in fh:  # the attribute is set when the study is made: near the start
                entry = parse_row(line) or {}
                attrs = entry.get("user_attr") if "trial_id" not in entry else None
                runlab = attrs.get("runlab") if isinstance(attrs, dict) else None
                if isinstance(runlab, dict) and isinstance(runlab.get("metric"), str):
                    return str(runlab["metric"])
    except OSError:
        return None
    return None


class Watcher:
    """The loop of ``runlab status --watch``: refresh, draw, reconcile now and then."""

    def __init__(self, logs: Path, record: SweepRecord, metric: str | None, opts: Options):
        self.logs = logs
        self.record = record
        self.opts = opts
        chosen = metric or tune_metric(logs, record)
        self.watch = Watch(logs, record.runs, chosen)
        if chosen and not metric:
            self.watch.metric_from = f"study {record.tune}"
        self.last_reconcile = 0.0
        self.record_sig = self._record_sig()
        self.timeouts_settled = False  # asked of the scheduler at the reconcile's pace

    def _record_sig(self) -> tuple[int, int] | None:
        try:
            st = os.stat(ops.record_path(self.logs, self.record.sweep_id))
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def title(self) -> str:
        r = self.record
        task = Path(r.task or "?").name
        return (
            f"[bold]sweep {m(r.sweep_id)}[/]: {len(self.watch.runs)} run(s) of {m(task)} "
            f"on {m(r.launcher_name)}"
        )

    def tick(self) -> bool:
        """One refresh (and a reconcile when it is due); whether every run has ended."""
        now = time.time()
        if self.opts.reconcile and now - self.last_reconcile >= self.opts.reconcile_s:
            self.last_reconcile = now
            self._reconcile()
        self.watch.refresh()
        return self.finished()

    def _reconcile(self) -> None:
        sig = self._record_sig()
        if sig != self.record_sig:  # a retry or a wave of tune trials
            try:
                self.record = ops.load(self.logs, self.record.sweep_id)
                self.record_sig = sig
                self.watch.add_runs(self.record.runs)
            except (OSError, SweepRecordError):
                pass
        self.timeouts_settled = self._timeouts_settled()
        active = self.watch.active_ids()
        if not active:
            return
        try:
            ops.reconcile(self.logs, self.record, run_ids=active)
        except Exception:  # the next round tries again; `runlab status` says what is wrong
            pass

    def finished(self) -> bool:
        """Whether every run has ended: none active, and no TIMEOUT run that the
        scheduler will requeue (SLURM does; ``submit --wait`` asks the same)."""
        w = self.watch
        if w.ended() < len(w.runs):
            return False
        timeouts = any(r.status == Status.TIMEOUT for r in w.runs.values())
        return not timeouts or not self.opts.reconcile or self.timeouts_settled

    def _timeouts_settled(self) -> bool:
        runs = list(self.watch.runs.values())
        timeouts = sum(1 for r in runs if r.status == Status.TIMEOUT)
        if not timeouts:
            return True
        dirs, statuses = [RunDir(r.path) for r in runs], [r.status for r in runs]
        return _timeouts_settled(self.logs, self.record.sweep_id, dirs, statuses) == timeouts

    def footer(self, done: bool) -> str:
        if done:
            return "[dim]every run has ended[/]"
        metric = f"   metric {m(self.watch.metric)} ({m(self.watch.metric_from)})"
        every = f"refresh every {self.opts.interval:g} s"
        metric = metric if self.watch.metric else ""
        return f"[dim]{every}{metric}   Ctrl-C: leave (the runs go on)[/]"


def run(
    logs: Path,
    record: SweepRecord,
    metric: str | None,
    opts: Options,
    console: Any,
    clock: Callable[[float], None] = time.sleep,
) -> int:
    """Watch the sweep until every run has ended (0) or Ctrl-C (130)."""
    from rich.live import Live

    if opts.interval <= 0:
        raise UserError(f"--interval {opts.interval:g}: give a number of seconds above 0")
    restore = signal.getsignal(signal.SIGINT)
    if restore is signal.SIG_IGN:  # started in the background by a shell: Ctrl-C still leaves
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        watcher = Watcher(logs, record, metric, opts)
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                started = time.monotonic()
                done = watcher.tick()
                live.update(_draw(watcher, console, done), refresh=True)
                if done:
                    break
                clock(max(0.0, opts.interval - (time.monotonic() - started)))
        if not console.is_terminal:
            console.line()  # a terminal's Live ends its last line itself
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(
            f"stopped watching; the runs go on (`runlab cancel {record.sweep_id}` stops them)\n"
        )
        return EXIT_INTERRUPTED
    finally:
        if restore is not None:
            signal.signal(signal.SIGINT, restore)


def _draw(watcher: Watcher, console: Any, done: bool) -> Any:
    return view(
        watcher.watch,
        watcher.title(),
        height=console.size.height,
        footer=watcher.footer(done),
    )
