"""``runlab report``: curves and tables of runs as an HTML page, PNG figures and JSON.

    runlab report [LOGS] [--where QUERY] [--metric train.loss ...] [--by config.KEY ...]
                  [--x step] [--out reports/NAME]

LOGS defaults to ``$RUNLAB_LOGS`` or ``./logs``. Writes ``index.html`` (one
self-contained page), ``<metric>.png`` and ``report.json`` into ``--out``.
Exit status: 0, 1 for a missing logs directory or when no run matches (nothing
is written then), 2 for a query, column or metric that cannot be used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from runlab.commands.results import (
    _Exit,
    _logs_argument,
    _logs_path,
    _reader,
    _run,
    _where_argument,
)


def configure_report(parser: argparse.ArgumentParser) -> None:
    _logs_argument(parser)
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
        "-b",
        "--by",
        action="append",
        metavar="COLUMN",
        help="group runs by this run-table column (repeat or comma-separate; default: the "
        "config keys that vary across the selected runs, except seed)",
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
    from runlab.query import QueryError
    from runlab.report import NoRunsError, build_report, write_report

    started = time.perf_counter()
    logs = _logs_path(args.logs)
    runs = _reader(logs, args.where)
    metrics = _split(args.metric) or ["train.loss"]
    by = _split(args.by) if args.by else None
    try:
        report = build_report(runs, metrics, by, x=args.x, title=args.title, where=args.where)
    except NoRunsError as exc:
        raise _Exit(1, f"{exc}; no report written") from None
    except QueryError as exc:
        raise _Exit(2, str(exc)) from None
    written = write_report(report, Path(args.out))
    for metric, lacking in report["missing"].items():
        if lacking:
            print(
                f"runlab: note: {len(lacking)} of {report['runs']} run(s) never logged {metric}",
                file=sys.stderr,
            )
    groups = len(report["groups"])
    print(
        f"{report['runs']} run(s), {groups} group(s) by "
        f"{', '.join(report['by']) or '(none)'}: {written['html']}"
        f" ({time.perf_counter() - started:.1f} s)"
    )
    for png in written["pngs"]:
        print(f"  {png}")
    print(f"  {written['json']}")
    return 0
