"""``runlab export``: runs into TensorBoard event files or an MLflow tracking server.

    runlab export tensorboard [LOGS | --logs DIR] [--where QUERY] [--out DIR]
    runlab export mlflow [LOGS | --logs DIR] [--where QUERY] [--uri URI]
                         [--experiment NAME] [--artifacts]

TensorBoard: one directory per run, ``<out>/<run_id>/`` (default
``<logs>/.exports/tensorboard``). MLflow: one MLflow run per run, to ``--uri`` (default
``sqlite:///<logs>/.exports/mlflow.db``). Exporting again updates and never duplicates
(see :mod:`runlab.results.export`). Exit status: 0; 2 for a missing logs directory, a
query that cannot be used, or a missing ``tensorboard``/``mlflow`` package.
"""

from __future__ import annotations

import argparse
import time

from runlab.cli._logs import logs_from
from runlab.cli._text import safe
from runlab.cli.results import _logs_argument, _reader, _run, _where_argument
from runlab.errors import UserError
from runlab.results import export


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        choices=export.TARGETS,
        help="tensorboard: event files, one directory per run; mlflow: one MLflow run per run",
    )
    _logs_argument(parser)
    _where_argument(parser)
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="tensorboard: where the runs' directories go "
        "(default: <logs>/.exports/tensorboard; `tensorboard --logdir DIR` shows them)",
    )
    parser.add_argument(
        "--uri",
        metavar="URI",
        help="mlflow: the tracking URI, e.g. http://host:5000 "
        "(default: sqlite:///<logs>/.exports/mlflow.db)",
    )
    parser.add_argument(
        "--experiment",
        metavar="NAME",
        default="runlab",
        help="mlflow: the experiment the runs go to (default: runlab; made when missing)",
    )
    parser.add_argument(
        "--artifacts",
        action="store_true",
        help="mlflow: also upload each run's artifacts/ and metadata/ files",
    )


def run_export(args: argparse.Namespace) -> int:
    return _run(_export, args)


def _export(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    wrong = ("--uri", args.uri) if args.target == "tensorboard" else ("--out", args.out)
    if wrong[1] is not None or (args.target == "tensorboard" and args.artifacts):
        option = wrong[0] if wrong[1] is not None else "--artifacts"
        raise UserError(f"{option} is not an option of `runlab export {args.target}`")
    export.require(args.target)  # before reading any run: a missing package is one line
    logs = logs_from(args).path
    runs = _reader(logs, args.where)
    if not len(runs):
        what = "no runs match the query" if args.where else "no runs"
        print(f"{what} in {safe(logs)}/: nothing exported")
        return 0
    if args.target == "tensorboard":
        outcome = export.to_tensorboard(runs, args.out)
    else:
        outcome = export.to_mlflow(
            runs, args.uri, experiment=args.experiment, artifacts=args.artifacts
        )
    order = ("created", "written", "updated", "replaced", "unchanged")
    counts = ", ".join(f"{outcome.counts[w]} {w}" for w in order if outcome.counts[w])
    seconds = time.perf_counter() - started
    print(
        f"exported {len(runs)} run(s) to {safe(outcome.where)} ({counts}; "
        f"{outcome.points:,} points written) in {seconds:.1f} s"
    )
    if args.target == "tensorboard":
        print(f"  see them with: tensorboard --logdir {safe(outcome.where)}")
    return 0
