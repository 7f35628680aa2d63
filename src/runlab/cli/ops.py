"""After submitting: ``runlab status``, ``cancel``, ``retry`` and ``logs`` on a sweep.

    runlab status [--logs DIR] [--sweep ID | --all] [--json]
    runlab status --watch [--interval S] [--metric FILE.KEY] [--sweep ID]
    runlab cancel [SWEEP | RUN ...] [--logs DIR] [--json]
    runlab retry [SWEEP | RUN ...] [--status FAILED,TIMEOUT,INTERRUPTED,LOST]
                 [--code submitted|current] [--dry-run] [--logs DIR] [--json]
    runlab logs RUN [--err] [-f] [--logs DIR] [--json]

A sweep is named by its id (``20261123-204501-17``, see ``runlab status --all``);
without one, the latest sweep of the logs directory. Every command first
reconciles the sweep with the scheduler (``squeue``/``sacct``, or the local
workers' pids), so a run whose job is gone is not shown ``QUEUED`` forever.
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

from runlab.cli import _watch, results
from runlab.cli._logs import add_logs_option, logs_from, logs_value
from runlab.cli._text import cell, console, m, output, safe
from runlab.errors import UserError
from runlab.logs import Logs, NoLogsError, is_run_id
from runlab.record.files import tail
from runlab.record.rundir import RunDir
from runlab.status import ACTIVE, FAILING, RETRYABLE, Status, colour, names
from runlab.sweep import ops
from runlab.sweep.record import Code, SweepRecord, SweepRecordError
from runlab.sweep.snapshot import code_state
from runlab.sweep.submission import code_entry


def _logs(args: argparse.Namespace) -> Path:
    """The command's logs directory (``--logs``, else the default); it must exist."""
    return logs_from(args).path


def _logs_option(parser: argparse.ArgumentParser) -> None:
    add_logs_option(parser)


def _targets(logs: Path, targets: list[str]) -> tuple[SweepRecord, list[int] | None]:
    """A sweep id, run ids of one sweep, or nothing (the latest sweep)."""
    if not targets:
        sid = ops.latest(logs)
        if sid is None:
            raise UserError(
                f"no sweep in {logs}: nothing was submitted there with `runlab submit`; "
                "pass --logs DIR (or set $RUNLAB_LOGS) to the logs directory of a sweep"
            )
        return ops.load(logs, sid), None
    if len(targets) == 1 and not is_run_id(targets[0]):
        return ops.load(logs, targets[0]), None
    bad = [t for t in targets if not is_run_id(t)]
    if bad:
        raise UserError(
            f"{bad[0]!r} is not a run id: give one sweep id, or run ids (numbers) of {logs}"
        )
    record = None
    for t in targets:
        if not (logs / t).is_dir():
            raise UserError(f"no run {t} in {logs}: see `runlab status` for the runs of its sweeps")
        rec = ops.sweep_of_run(logs, int(t))
        if rec is None:
            raise UserError(f"run {t} in {logs} was not submitted with `runlab submit`: no sweep")
        if record is not None and rec.sweep_id != record.sweep_id:
            raise UserError(
                f"runs {targets[0]} and {t} belong to different sweeps "
                f"({record.sweep_id}, {rec.sweep_id}): give runs of one sweep at a time"
            )
        record = rec
    assert record is not None
    return record, [int(t) for t in targets]


def _print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _console() -> Any:
    return console(width=None if sys.stdout.isatty() else 10_000)


# --------------------------------------------------------------------- status
def configure_status(parser: argparse.ArgumentParser) -> None:
    add_logs_option(parser, positional=True)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sweep", metavar="ID", help="this sweep (default: the latest one)")
    which.add_argument("--all", action="store_true", help="every sweep of the logs directory")
    parser.add_argument(
        "-w",
        "--where",
        metavar="QUERY",
        help="count the runs of the whole logs directory matching QUERY instead of a sweep",
    )
    parser.add_argument(
        "--lines", type=int, default=3, help="traceback lines to show per failing run (default 3)"
    )
    parser.add_argument(
        "-n", "--limit", type=int, default=20, help="failing runs to show (default 20)"
    )
    parser.add_argument(
        "--no-reconcile",
        action="store_true",
        help="show the records as they are, without asking the scheduler",
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON, for scripts")
    fmt.add_argument("--csv", action="store_true", help="print CSV counts, for scripts")
    live = parser.add_argument_group("live view (--watch)")
    live.add_argument(
        "--watch",
        action="store_true",
        help="a live view of the sweep (counts, progress, ETA, the metric per run, failures) "
        "until every run has ended; Ctrl-C leaves it (exit 130) and the runs go on",
    )
    live.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="with --watch: seconds between refreshes (default 1)",
    )
    live.add_argument(
        "--metric",
        metavar="FILE.KEY",
        help="with --watch: the metric shown per run, as <metrics file>.<key> (default: the "
        "study's metric for a tune sweep, else the first key of the first metrics file logged)",
    )


def run_status(args: argparse.Namespace) -> int:
    if args.watch:
        return _watch_status(args)
    if args.where or args.csv:
        return _runs_status(args)
    if not logs_value(args) and not Logs.resolve().path.is_dir():
        return _runs_status(args)
    try:
        logs = _logs(args)
    except NoLogsError:
        return _runs_status(args)  # the same message, from the runs' status
    if not args.sweep and not ops.sweep_ids(logs):
        return _runs_status(args)  # runs made without `runlab submit`
    return _sweep_status(args)


def _runs_status(args: argparse.Namespace) -> int:
    return results.run_status(args)


def _watch_status(args: argparse.Namespace) -> int:
    """``runlab status --watch``: :mod:`runlab.cli._watch`'s live view of one sweep."""
    clash = [o for o, given in (("--all", args.all), ("--where", args.where),
             ("--json", args.json), ("--csv", args.csv)) if given]  # fmt: skip
    if clash:
        raise UserError(f"--watch follows one sweep live: leave out {clash[0]}")
    if args.metric is not None and not _is_metric(args.metric):
        raise UserError(
            f"--metric {args.metric!r} is not FILE.KEY: give the metrics file and the key, "
            "e.g. train.loss for the key 'loss' of log_metrics(..., name='train')"
        )
    logs = _logs(args)
    sid = args.sweep or ops.latest(logs)
    if sid is None:
        raise UserError(
            f"no sweep in {logs}: --watch follows a sweep of `runlab submit` or `runlab tune`; "
            "pass --logs DIR (or set $RUNLAB_LOGS) to the logs directory of a sweep"
        )
    record = ops.load(logs, sid)
    opts = _watch.Options(interval=args.interval, reconcile=not args.no_reconcile)
    return _watch.run(logs, record, args.metric, opts, console(width=None))


def _is_metric(text: str) -> bool:
    name, _, key = text.partition(".")
    return bool(name and key)


def _sweep_status(args: argparse.Namespace) -> int:
    logs = _logs(args)
    # without --all: a sweep is named, or run_status saw one in logs
    ids = ops.sweep_ids(logs) if args.all else [cast(str, args.sweep or ops.latest(logs))]
    reports = []
    for sid in ids:
        try:
            record = ops.load(logs, sid)
        except SweepRecordError as exc:
            if not args.all:
                raise
            reports.append({"sweep_id": sid, "damaged": exc.line()})  # the others still show
            continue
        changes = [] if args.no_reconcile else ops.reconcile(logs, record)
        reports.append(_summary(logs, record, changes, args.limit, args.lines))
    if args.json:
        _print_json({"logs": str(logs), "sweeps": reports} if args.all else reports[0])
        return 0
    console = _console()
    for i, report in enumerate(reports):
        if i:
            console.print()
        if "damaged" in report:
            console.print(
                f"[bold]sweep {m(report['sweep_id'])}[/]: [red]damaged[/]: {m(report['damaged'])}",
                highlight=False,
                soft_wrap=True,
            )
            continue
        _print_summary(console, report)
    return 0


def _summary(logs: Path, record: SweepRecord, changes: list[dict], limit: int, lines: int):
    located = ops.locate(record)
    counts: Counter[str] = Counter()
    failing = []
    for rid in record.runs:
        info = RunDir(logs / str(rid)).read_info()
        status = info.get("status")  # a hand-edited one may be of any type
        status = status if isinstance(status, str) and status else Status.CORRUPT.value
        counts[status] += 1
        if Status.of(status) in FAILING:
            error = got if isinstance(got := info.get("error"), dict) else {}
            failing.append(
                {
                    "run_id": int(rid),
                    "status": status,
                    "error_type": error.get("type"),
                    "error_message": error.get("message"),
                    "attempts": info.get("attempts"),
                    "job": ops.job_label(record, *located[rid]) if rid in located else None,
                }
            )
    for f in failing[:limit]:
        f["traceback"] = tail(logs / str(f["run_id"]) / "metadata" / "traceback.txt", lines)
    total = len(record.runs)
    ended = sum(n for s, n in counts.items() if Status.of(s) not in ACTIVE)
    subs = record.submissions
    jobs = [a.job_id for s in subs for a in s.arrays]
    workers = [w.pid for s in subs for w in s.workers]
    pinned = [*record.code, *(c for s in subs for c in s.code)]
    code = pinned[0] if pinned else None
    return {
        "sweep_id": record.sweep_id,
        "task": record.task,
        "launcher": record.launcher_name,
        "created": record.created,
        "command": record.command,
        "commit": code.commit if code else None,
        "arrays": jobs,
        "workers": workers,
        "submissions": len(subs),
        "runs": total,
        "first_run": min(record.runs) if record.runs else None,
        "last_run": max(record.runs) if record.runs else None,
        "counts": {
            s: counts[s] for s in (*(m.value for m in Status), *sorted(counts)) if counts.get(s)
        },
        "ended": ended,
        "progress": round(ended / total, 4) if total else 1.0,
        "failing": failing[:limit],
        "failing_total": len(failing),
        "reconciled": changes,
    }


def _short(iso: Any) -> str:
    text = str(iso or "")
    return text[:19].replace("T", " ")


def _print_summary(console: Any, r: dict[str, Any]) -> None:
    where = r["launcher"]
    if r["arrays"]:
        word = "array" if len(r["arrays"]) == 1 else "arrays"
        where += f" ({word} {', '.join(r['arrays'])})"
    elif r["workers"]:
        where += f" (workers {', '.join(map(str, r['workers']))})"
    task = Path(r["task"] or "?").name
    retries = f", {r['submissions'] - 1} retry submission(s)" if r["submissions"] > 1 else ""
    span = f" {r['first_run']}..{r['last_run']}" if r["runs"] else ""
    console.print(
        f"[bold]sweep {m(r['sweep_id'])}[/]: {m(r['runs'])} run(s){m(span)} "
        f"of {m(task)} on {m(where)}, commit {m((r['commit'] or '?')[:10])}, "
        f"submitted {m(_short(r['created']))}{m(retries)}"
    )
    parts = [f"[{colour(s)}]{m(s)}[/] {n}" for s, n in r["counts"].items()]
    pct = 100 * r["progress"]
    console.print(
        "  " + "   ".join(parts) + f"   [dim]ended {m(r['ended'])}/{m(r['runs'])} ({pct:.0f}%)[/]"
    )
    for c in r["reconciled"][:10]:
        console.print(
            f"  [yellow]now {m(c['status'])}[/]: run {m(c['run_id'])}: {m(c['reason'])}",
            markup=True,
        )
    if len(r["reconciled"]) > 10:
        console.print(f"  [dim]... and {m(len(r['reconciled']) - 10)} more runs closed (--json)[/]")
    if r["failing"]:
        console.print(f"[bold]failing runs[/] ({m(r['failing_total'])})")
        for f in r["failing"]:
            style = colour(f["status"])
            head = f"  {f['run_id']:>6}  [{style}]{m(f['status'])}[/]"
            if f["error_type"] or f["error_message"]:
                msg = f"{f['error_type'] or ''}: {f['error_message'] or ''}".strip(": ")
                head += "  " + m(msg)
            console.print(head)
            for line in f.get("traceback") or []:
                console.print(cell("          " + line, style="dim"))
        if r["failing_total"] > len(r["failing"]):
            console.print(
                f"  [dim]... and {m(r['failing_total'] - len(r['failing']))} more (--limit)[/]"
            )
        console.print(
            f"  [dim]output: runlab logs {m(r['failing'][0]['run_id'])} --err    "
            f"retry: runlab retry {m(r['sweep_id'])} --dry-run[/]"
        )


# --------------------------------------------------------------------- cancel
def configure_cancel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="SWEEP|RUN",
        help="a sweep id, or run ids (default: the latest sweep)",
    )
    _logs_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def run_cancel(args: argparse.Namespace) -> int:
    return _cancel(args)


def _cancel(args: argparse.Namespace) -> int:
    logs = _logs(args)
    record, run_ids = _targets(logs, args.targets)
    changes = ops.cancel(logs, record, run_ids)
    targets = run_ids or record.runs
    counts = Counter(RunDir(logs / str(r)).read_info().get("status") for r in targets)
    if args.json:
        _print_json(
            {
                "sweep_id": record.sweep_id,
                "runs": [int(r) for r in targets],
                "closed": changes,
                "counts": dict(counts),
            }
        )
        return 0
    what = f"runs {', '.join(map(str, run_ids))}" if run_ids else f"sweep {record.sweep_id}"
    summary = "   ".join(f"{s} {n}" for s, n in counts.most_common())
    print(f"cancelled {what}: {summary}")
    return 0


# ---------------------------------------------------------------------- retry
def configure_retry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="SWEEP|RUN",
        help="a sweep id, or run ids (default: the latest sweep)",
    )
    parser.add_argument(
        "--status",
        default=",".join(names(RETRYABLE)),
        metavar="S,...",
        help=f"retry the runs with these statuses (default {','.join(names(RETRYABLE))})",
    )
    parser.add_argument(
        "--code",
        choices=["submitted", "current"],
        default="submitted",
        help="run the code snapshot each run was submitted with (default), or the current "
        "commit of the task's repository (after a fix)",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="with --code current: accept uncommitted changes (recorded as a patch)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be retried")
    _logs_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def run_retry(args: argparse.Namespace) -> int:
    return _retry(args)


def _retry(args: argparse.Namespace) -> int:
    statuses = [s.strip().upper() for s in args.status.split(",") if s.strip()]
    bad = [s for s in statuses if s not in RETRYABLE]
    if bad or not statuses:
        raise UserError(
            f"--status {args.status}: a run can be retried when it is one of "
            f"{', '.join(names(RETRYABLE))} (a run QUEUED or RUNNING still has a job)"
        )
    logs = _logs(args)
    record, run_ids = _targets(logs, args.targets)
    if args.dry_run:
        return _retry_in(args, logs, record, run_ids, statuses)
    # Under the sweep's lock from choosing the runs to recording the submission: a second
    # `retry` at the same time finds them QUEUED, and nothing is submitted twice.
    with ops.exclusive(logs, record.sweep_id, by="runlab retry") as fresh:
        return _retry_in(args, logs, fresh or record, run_ids, statuses)


def _retry_in(
    args: argparse.Namespace,
    logs: Path,
    record: SweepRecord,
    run_ids: list[int] | None,
    statuses: list[str],
) -> int:
    ops.reconcile(logs, record, by="runlab retry")
    picked = ops.retry_candidates(logs, record, statuses, run_ids)
    if run_ids:
        found = {rid for rid, _ in picked}
        skipped = [r for r in run_ids if r not in found]
        if skipped:
            st = RunDir(logs / str(skipped[0])).read_info().get("status")
            raise UserError(
                f"run {skipped[0]} is {st}, not one of {','.join(statuses)}: "
                "leave it out, or widen --status"
            )
    rows = [
        {
            "run_id": rid,
            "status": info.get("status"),
            "error": (info.get("error") or {}).get("message")
            if isinstance(info.get("error"), dict)
            else None,
            "commit": info.get("code_commit"),
        }
        for rid, info in picked
    ]
    if not picked:
        if args.json:
            _print_json({"sweep_id": record.sweep_id, "retried": [], "dry_run": args.dry_run})
        else:
            print(f"nothing to retry in sweep {record.sweep_id}: no run is {','.join(statuses)}")
        return 0
    current = None
    if args.code == "current":
        current = _current_code(logs, record, args.allow_dirty)
    if args.dry_run:
        if args.json:
            _print_json(
                {
                    "sweep_id": record.sweep_id,
                    "retried": rows,
                    "dry_run": True,
                    "code": current.commit if current else "submitted",
                }
            )
            return 0
        code = (
            f"commit {(current.commit or '?')[:10]}"
            if current
            else "the code each was submitted with"
        )
        print(f"would retry {len(rows)} run(s) of sweep {record.sweep_id} with {code}:")
        for r in rows:
            print(f"  {r['run_id']:>6}  {safe(r['status']):<11}  {safe(r['error'] or '')}")
        return 0
    sub = ops.retry(logs, record, picked, current=current).submissions[-1]
    jobs: list[str | int] = [a.job_id for a in sub.arrays] or [w.pid for w in sub.workers]
    if args.json:
        _print_json(
            {
                "sweep_id": record.sweep_id,
                "retried": rows,
                "dry_run": False,
                "submission": sub.n,
                "jobs": jobs,
                "code": [c.commit for c in sub.code],
            }
        )
        return 0
    kind = "array" if sub.arrays else "local workers"
    code = ", ".join((c.commit or "?")[:10] for c in sub.code)
    ids = " ".join(str(r["run_id"]) for r in rows[:10]) + (" ..." if len(rows) > 10 else "")
    print(
        f"retrying {len(rows)} run(s) of sweep {record.sweep_id} ({ids}) in their own "
        f"directories as {kind} {', '.join(map(str, jobs))}, commit {code}"
    )
    return 0


def _current_code(logs: Path, record: SweepRecord, allow_dirty: bool) -> Code:
    script = Path(record.task)
    if not script.is_file():
        raise UserError(
            f"--code current: the sweep's task {script} is gone: restore it, or "
            "retry with the code it was submitted with (leave out --code)"
        )
    code = code_state(script, exclude=(logs,))
    if code.dirty and not allow_dirty:
        listing = ", ".join(code.changes[:5])
        raise UserError(
            f"--code current: the git tree at {code.root} has uncommitted changes ({listing}): "
            "commit the fix first (jobs are pinned to a commit), or pass --allow-dirty"
        )
    return code_entry(code, script, logs)


# ----------------------------------------------------------------------- logs
def configure_logs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id")
    parser.add_argument("--err", action="store_true", help="the job's stderr (default: stdout)")
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing while the job runs"
    )
    _logs_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON (path, status, text)")


def run_logs(args: argparse.Namespace) -> int:
    return _logs_command(args)


class _Attempt:
    """The job output ``runlab logs`` shows: the latest attempt's (after a ``retry``, the
    retried job's, which may not have written yet), which attempt it is and its job."""

    def __init__(self, logs: Path, run_id: int, err: bool) -> None:
        self.run_id = run_id
        self.info = info = RunDir(logs / str(run_id)).read_info()
        record = ops.sweep_of_run(logs, run_id)
        located = ops.locate(record).get(run_id) if record else None
        self.path: Path | None = None
        self.job: str | None = None
        started = True  # the run's current attempt is the latest submission's job
        if record and located:
            sub, pos = located
            self.path = ops.log_file(logs, record, run_id, err)
            self.job = ops.job_label(record, sub, pos)
            started = _started_by(info, sub.time)
        attempts = info.get("attempts")  # a number unless the record was damaged
        attempts = attempts if isinstance(attempts, int) and attempts > 0 else 0
        self.attempt = attempts if started and attempts else attempts + 1
        self.note = ""
        if self.path is None or not self.path.exists():
            # Where the task said it writes: only an attempt of the latest submission's,
            # never a cancelled attempt's file when its retry has not started yet.
            recorded = info.get("log_err" if err else "log_out")
            if started and isinstance(recorded, str) and recorded and Path(recorded).exists():
                self.path = Path(recorded)
        if record and not started and Status.of(info.get("status")) not in ACTIVE:
            self._last_that_ran(record, err, attempts)

    def _last_that_ran(self, record: SweepRecord, err: bool, attempts: int) -> None:
        """A retry that ended before its job started (cancelled while queued) wrote
        nothing: show the output of the last attempt that did run, and say so."""
        for path, job in ops.earlier_outputs(record, self.run_id, err):
            if path.exists():
                self.note = (
                    f"; attempt {self.attempt} ended {self.info.get('status')} before its "
                    f"job started, so this is attempt {attempts}'s output"
                )
                self.path, self.job, self.attempt = path, job, attempts
                return

    def header(self) -> str:
        job = "" if not self.job else f" ({self.job})" if " " in self.job else f" (job {self.job})"
        return f"[runlab] run {self.run_id}, attempt {self.attempt}{job}: {self.path}{self.note}"


def _started_by(info: dict[str, Any], submitted: str | None) -> bool:
    """Whether the run's latest attempt began after ``submitted`` (a submission's time)."""
    from datetime import datetime

    began = info.get("attempt_start_time") or info.get("start_time")
    if not began or not submitted:
        return bool(began)
    try:
        return datetime.fromisoformat(str(began)) >= datetime.fromisoformat(str(submitted))
    except (ValueError, TypeError):  # a damaged time, or one without its zone
        return True


def _logs_command(args: argparse.Namespace) -> int:
    if not is_run_id(args.run):
        raise UserError(
            f"{args.run!r} is not a run id: give the number of a run (see `runlab status`)"
        )
    logs = _logs(args)
    run_id = int(args.run)
    if not (logs / args.run).is_dir():
        raise UserError(
            f"no run {run_id} in {logs}: see `runlab status`, or pass --logs DIR", code=1
        )
    attempt = _Attempt(logs, run_id, args.err)
    path, info = attempt.path, attempt.info
    status = info.get("status")
    stream = "stderr" if args.err else "stdout"
    if path is None:
        raise UserError(
            f"run {run_id} has no job output: it was not run by `runlab submit` (its output "
            "went to the terminal that ran it)",
            code=1,
        )
    if not path.exists() and not args.follow:
        if args.json:
            _print_json({"run_id": run_id, "path": str(path), "status": status, "text": None})
            return 0
        if Status.of(status) not in (*ACTIVE, None, Status.CORRUPT):  # ended: none will come
            raise UserError(
                f"run {run_id} ended {status} and its job wrote no {stream} ({path})", code=1
            )
        raise UserError(
            f"run {run_id} is {status}: its job has not written {stream} yet ({path}); "
            f"`runlab logs {run_id} -f` waits for it",
            code=1,
        )
    if args.json:
        text = path.read_text(errors="replace") if path.exists() else None
        _print_json({"run_id": run_id, "path": str(path), "status": status, "text": text})
        return 0
    print(output(attempt.header()), file=sys.stderr, flush=True)
    if not args.follow:
        out = _Stream(path)
        out.pump()
        out.finish()
        return 0
    return _follow(logs, run_id, path, args.err)


class _Stream:
    """A job's output file, copied to the terminal as it grows, a piece at a time: the
    memory of ``runlab logs`` stays bounded whatever the file's size. A character whose
    bytes are split between two pieces (or two writes of the job) is decoded whole, and a
    ``\r\n`` split between them stays one line break."""

    PIECE = 1 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._cr = ""  # a carriage return held back: the next piece may start with \n

    def pump(self) -> bool:
        """Write what the file holds beyond what was written; whether there was any."""
        wrote = False
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                while piece := fh.read(self.PIECE):
                    self.offset += len(piece)
                    self._write(self._decoder.decode(piece))
                    wrote = True
        except FileNotFoundError:
            return False
        sys.stdout.flush()
        return wrote

    def finish(self) -> None:
        """Write what was held back (an incomplete character, a last carriage return)."""
        self._write(self._decoder.decode(b"", final=True), final=True)
        sys.stdout.flush()

    def _write(self, text: str, final: bool = False) -> None:
        text = self._cr + text
        self._cr = "" if final or not text.endswith("\r") else "\r"
        if self._cr:
            text = text[:-1]
        if text:
            sys.stdout.write(output(text))


def _follow(logs: Path, run_id: int, path: Path, err: bool) -> int:
    run = RunDir(logs / str(run_id))
    stream = _Stream(path)
    ended_at = None
    last_check = last_look = 0.0
    try:
        while True:
            stream.pump()
            status = run.read_info().get("status")
            if Status.of(status) in ACTIVE:
                ended_at = None
                if time.time() - last_look > 2:  # a retry while following: its job's output
                    last_look = time.time()
                    latest = _Attempt(logs, run_id, err)
                    if latest.path is not None and latest.path != stream.path:
                        stream.finish()
                        print(output(latest.header()), file=sys.stderr, flush=True)
                        stream = _Stream(latest.path)
                        continue
                if time.time() - last_check > 10:  # a job that vanished ends the follow too
                    last_check = time.time()
                    record = ops.sweep_of_run(logs, run_id)
                    if record:
                        ops.reconcile(logs, record, by="runlab logs")
            elif ended_at is None:
                ended_at = time.time()
            elif time.time() - ended_at > 2.0:  # the job's last lines after the run's end
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        return 130
    stream.finish()
    print(f"[runlab logs] run {run_id} ended {status}", file=sys.stderr)
    return 0
