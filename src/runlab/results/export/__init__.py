"""Export runs to TensorBoard and MLflow (``runlab export tensorboard|mlflow``).

    >>> runs = runlab.Reader("logs").filter("info.status == 'COMPLETE'")
    >>> export.to_tensorboard(runs, "logs/.exports/tensorboard")
    >>> export.to_mlflow(runs, "sqlite:///logs/.exports/mlflow.db")

Both are idempotent: exporting again rewrites what changed and never duplicates (see
:mod:`._tensorboard` and :mod:`._mlflow`). Runs are read with runlab's reader, a batch
at a time. ``tensorboard`` and ``mlflow`` are optional: a missing one is a
:class:`~runlab.errors.UserError` naming the extra to install. Neither is imported
before an export starts.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runlab.errors import UserError, one_line
from runlab.results.export import _mlflow, _tensorboard
from runlab.results.export._runs import iter_runs

if TYPE_CHECKING:
    from runlab.results.reader import Reader

EXPORTS_DIR = ".exports"  # under the logs directory: the default place of exports
TARGETS = ("tensorboard", "mlflow")
_PACKAGES = {"tensorboard": "tensorboard.summary", "mlflow": "mlflow.tracking"}


@dataclass
class Outcome:
    """What an export did: runs by outcome (``created``, ``updated``, ``replaced``,
    ``unchanged``; for TensorBoard ``written`` and ``unchanged``), and where."""

    target: str
    where: str
    counts: Counter[str] = field(default_factory=Counter)
    points: int = 0


def require(target: str) -> Any:
    """The module an export to ``target`` needs, or a UserError saying what to install."""
    try:
        return importlib.import_module(_PACKAGES[target])
    except ImportError:
        raise UserError(
            f"exporting to {target} needs the {target} package, which is not installed",
            todo=f'pip install "runlab[{target}]"',
        ) from None


def default_tensorboard_dir(logs: str | os.PathLike[str]) -> Path:
    return Path(logs) / EXPORTS_DIR / "tensorboard"


def default_mlflow_uri(logs: str | os.PathLike[str]) -> str:
    """``sqlite:///<logs>/.exports/mlflow.db`` (MLflow's file store is deprecated)."""
    return "sqlite:///" + str((Path(logs) / EXPORTS_DIR / "mlflow.db").absolute())


def to_tensorboard(
    reader: Reader,
    out: str | os.PathLike[str] | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Write the selected runs' metrics as TensorBoard event files, ``<out>/<run_id>/``."""
    summary = require("tensorboard")
    path = Path(out) if out is not None else default_tensorboard_dir(reader.logs)
    path.mkdir(parents=True, exist_ok=True)
    outcome = Outcome("tensorboard", str(path))
    for run in iter_runs(reader):
        written = _tensorboard.write_run(path, run, summary.Writer)
        outcome.counts["written" if written else "unchanged"] += 1
        outcome.points += sum(len(s) for s in run.series) if written else 0
        if progress is not None:
            progress(1)
    return outcome


def to_mlflow(
    reader: Reader,
    uri: str | None = None,
    *,
    experiment: str = "runlab",
    artifacts: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Log the selected runs to MLflow at ``uri`` (default: a sqlite database under the
    logs directory), one MLflow run per run, in ``experiment``."""
    tracking = require("mlflow")
    _mlflow.quiet()
    with warnings.catch_warnings():  # the deprecations of MLflow's own dependencies
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return _to_mlflow(tracking, reader, uri, experiment, artifacts, progress)


def _to_mlflow(
    tracking: Any,
    reader: Reader,
    uri: str | None,
    experiment: str,
    artifacts: bool,
    progress: Callable[[int], None] | None,
) -> Outcome:
    local = uri is None
    if uri is None:
        uri = default_mlflow_uri(reader.logs)
        (reader.logs / EXPORTS_DIR).mkdir(parents=True, exist_ok=True)
    from mlflow.exceptions import MlflowException

    try:  # the first calls: an address MLflow cannot use, or a server not answering
        client = tracking.MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
    except MlflowException as exc:
        raise UserError(
            f"MLflow cannot use this tracking URI: {one_line(str(exc))}",
            where=uri,
            todo="check --uri, or start the tracking server (`mlflow server`)",
        ) from None
    if found is None:
        where = (reader.logs / EXPORTS_DIR / "mlartifacts").absolute().as_uri() if local else None
        experiment_id = client.create_experiment(experiment, artifact_location=where)
    elif found.lifecycle_stage != "active":
        raise UserError(
            f"the MLflow experiment {experiment!r} is deleted",
            where=uri,
            todo="restore it (`mlflow experiments restore`) or give --experiment NAME",
        )
    else:
        experiment_id = found.experiment_id
    exporter = _mlflow.MlflowExport(client, experiment_id, reader.logs, artifacts=artifacts)
    outcome = Outcome("mlflow", uri)
    for run in iter_runs(reader):
        exporter.export(run)
        if progress is not None:
            progress(1)
    outcome.counts, outcome.points = exporter.counts, exporter.points
    return outcome


__all__ = [
    "EXPORTS_DIR",
    "TARGETS",
    "Outcome",
    "default_mlflow_uri",
    "default_tensorboard_dir",
    "require",
    "to_mlflow",
    "to_tensorboard",
]
