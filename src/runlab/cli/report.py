"""``runlab report``: a leaderboard and curves of runs as an HTML page, PNG figures and JSON.

    runlab report [LOGS | --logs DIR] [--sweep ID | --all] [--where QUERY] [--metric train.loss ...]
                  [--rank METRIC[:max|min]] [--by config.KEY ...] [--top N] [--x step]
                  [--out reports/NAME]

LOGS (or ``--logs DIR``) defaults to ``$RUNLAB_LOGS``, else the project root's
``logs/``. The runs: the latest sweep when sweeps are recorded (``--sweep ID``: that
one; ``--all`` or ``--where``: the whole logs directory). Writes ``index.html`` (one
self-contained page), ``<metric>.png`` and ``report.json`` into ``--out``. Exit
status: 0, 1 for a missing sweep, or when no run matches (nothing is written then),
2 for a missing logs directory, or a query, column or metric that cannot be used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from runlab.cli._logs import logs_from
from runlab.cli._text import safe
from runlab.cli.results import _logs_argument, _run, _where_argument, query_error
from runlab.errors import UserError
from runlab.results.query import QueryError, suggest
from runlab.sweep import tune


def configure_report(parser: argparse.ArgumentParser) -> None:
    _logs_argument(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sweep", metavar="ID", help="the runs of this sweep (default: the latest)")
    which.add_argument(
        "--all", action="store_true", help="every run of the logs directory, not one sweep"
    )
    which.add_argument(  # runlab tune: its trials, and Optuna's figures beside the page
        "--study",
        metavar="NAME",
        help="the trials of this `runlab tune` study; adds NAME-history.html, "
        "NAME-importance.html and NAME-history.png (Optuna's plots) to --out",
    )
    _where_argument(parser)
    parser.add_argument(
        "-m",
        "--metric",
        action="append",
        metavar="FILE.KEY",
        help="metric to draw, as <metrics file>.<key> (repeat or comma-separate; "
        "default: train.loss)",
    )
    parser.add_argument(
        "-r",
        "--rank",
        metavar="METRIC[:max|min]",
        help="rank runs and groups by this metric's final value (default: the first metric "
        "not logged in 'train'; max for acc/f1/auc/score..., else min)",
    )
    parser.add_argument(
        "-b",
        "--by",
        action="append",
        metavar="COLUMN",
        help="group runs by this run-table column (repeat or comma-separate; default: the "
        "config keys that vary across the plotted runs, except seeds)",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=10,
        metavar="N",
        help="groups drawn at first and in the PNGs, best first (default 10; the page "
        "lists the others)",
    )
    parser.add_argument(
        "--x",
        default="step",
        metavar="KEY",
        help="x axis: a key of the metrics file (default step)",
    )
    parser.add_argument(
        "-o",
        "--out",
        default="reports/latest",
        metavar="DIR",
        help="output directory (default reports/latest)",
    )
    parser.add_argument("--title", help="page title (default: runlab report: <logs name>)")


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def run_report(args: argparse.Namespace) -> int:
    return _run(_report, args)


def _report(args: argparse.Namespace) -> int:
    # runlab.results.report loads polars at its top: imported here, when a report is made,
    # so that `runlab report --help` stays light.
    from runlab.results import report as reports

    started = time.perf_counter()
    logs = logs_from(args).path
    if args.top < 1:
        raise UserError(f"--top {args.top}: give a number of groups of at least 1")
    study = getattr(args, "study", None)
    if study:  # a `runlab tune` study: its trials are the runs whose info.study is NAME
        clause = "info.study == " + repr(str(study))
        args.where = f"({args.where}) & {clause}" if args.where else clause
    try:
        runs, scope = reports.select_runs(
            logs, sweep=args.sweep, all_runs=args.all, where=args.where
        )
    except reports.ScopeError as exc:
        raise UserError(str(exc), code=1) from None
    except QueryError as exc:
        raise query_error(exc) from None
    report = _build(reports, args, runs, scope, logs)
    if study:  # Optuna's figures on the page itself, and as files beside it below
        report.study = {"name": str(study), "figures": tune.study_figures(logs, str(study))}
    written = reports.write_report(report, Path(args.out))
    _notes(report, scope, logs, args.all, runs)
    _summary(report, scope, written, started)
    if study:
        for path in tune.write_plots(logs, study, Path(args.out)):
            print(f"  {safe(path)}")
    return 0


def _build(reports: Any, args: argparse.Namespace, runs: Any, scope: dict, logs: Path) -> Any:
    """The report of ``runs`` as the options ask (``reports``: runlab.results.report, which
    the caller imports when a report is made); its errors as one line each."""
    metrics = _split(args.metric) or ["train.loss"]
    by = _split(args.by) if args.by else None
    try:
        return reports.build_report(
            runs,
            metrics,
            by,
            x=args.x,
            title=args.title,
            where=args.where,
            scope=scope,
            rank=args.rank,
            top=args.top,
        )
    except reports.NoRunsError as exc:
        named = [*_split(args.metric), *([args.rank.rsplit(":", 1)[0]] if args.rank else [])]
        hints = _metric_hints(runs, named)  # the names typed (not the default train.loss)
        hint = "".join(f"; {h}" if len(hints) == 1 else f"; {m!r}: {h}" for m, h in hints.items())
        raise UserError(
            f"{exc}{hint} ({scope['text']} of {logs}); no report written", code=1
        ) from None
    except QueryError as exc:
        raise query_error(exc, "") from None
    except ValueError as exc:  # a --rank that is not METRIC[:max|min]
        raise UserError(f"--{exc}") from None


def _notes(report: Any, scope: dict, logs: Path, all_runs: bool, runs: Any = None) -> None:
    """What the report left out, on stderr: runs outside the scope, runs neither plotted
    nor ranked, metrics some runs never logged."""
    if scope["outside"] and not all_runs:  # with --all, only --where left them out
        hint = "--all" + (" or --sweep ID" if scope["sweeps"] > 1 else "")
        print(
            f"runlab: note: {safe(scope['text'])}: {scope['outside']} other run(s) of {safe(logs)} "
            f"left out ({hint} to include them)",
            file=sys.stderr,
        )
    if report.left_out:
        ids = ", ".join(f"{r['run_id']} ({safe(r['why'])})" for r in report.left_out[:10])
        more = "..." if len(report.left_out) > 10 else ""
        print(
            f"runlab: note: not plotted nor ranked (failed or unreadable): {ids}{more}",
            file=sys.stderr,
        )
    if report.skipped:
        print(f"runlab: note: skipped: {safe('; '.join(report.skipped))}", file=sys.stderr)
    nobody = [
        m for m, lacking in report.missing.items() if lacking and len(lacking) >= report.plotted
    ]
    hints = _metric_hints(runs, nobody) if nobody and runs is not None else {}
    for metric, lacking in report.missing.items():
        if lacking:
            hint = f"; {hints[metric]}" if metric in hints else ""
            print(
                f"runlab: note: {len(lacking)} of {report.plotted} plotted run(s) never "
                f"logged {safe(metric)}{safe(hint)}",
                file=sys.stderr,
            )


def _metric_hints(runs: Any, metrics: list[str]) -> dict[str, str]:
    """``did you mean 'train.loss'?`` for each of ``metrics`` that none of ``runs`` logged
    and that is close to one they did (a misspelt name), as ``--where`` says for a key."""
    try:
        known = {c[: -len(".last")] for c in runs.df.columns if c.endswith(".last")}
    except Exception:  # the hint is a courtesy: never an error of its own
        return {}
    out = {}
    for metric in metrics:
        names = [] if metric in known else suggest(metric, sorted(known))
        if names:
            out[metric] = f"did you mean {' or '.join(repr(n) for n in names)}?"
    return out


def _summary(report: Any, scope: dict, written: dict, started: float) -> None:
    """The report's runs, groups, best run and files, on stdout."""
    best = report.best
    rank = report.rank["metric"]
    print(
        f"{report.runs} run(s) ({safe(scope['text'])}), {len(report.groups)} group(s) by "
        f"{safe(', '.join(report.by) or '(none)')}: {safe(written['html'])}"
        f" ({time.perf_counter() - started:.1f} s)"
    )
    if best is not None:
        print(
            f"  best by {safe(rank)}: run {best['run_id']} ({safe(best['group'])}) "
            f"{best['value']:.4g}"
        )
    for png in written["pngs"]:
        print(f"  {safe(png)}")
    print(f"  {safe(written['json'])}")
