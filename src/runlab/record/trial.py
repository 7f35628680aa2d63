"""Inside a trial of ``runlab tune``: report the objective at each step, stop when pruned.

A trial is an ordinary run whose ``info`` holds ``tune`` (the study's journal,
the trial's id, the metric, the pruner). When the run is started with
``RUNLAB_TRIAL`` in its environment (set by ``runlab tune`` for its jobs only,
so ``runlab reproduce`` of a trial never reports to the study),
:class:`runlab.record.lifecycle.RunSession` calls :func:`attach`, which hooks the
logger: every row of the objective's metric file is reported to the study as an
intermediate value at its step, and when the study's pruner says the trial is
hopeless, ``log_metrics`` raises :class:`runlab.record.stops.Pruned`; the run then
ends with status ``PRUNED`` (its rows up to that step are kept) and the process
exits 0.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from runlab.record.metricsfile import NONFINITE
from runlab.record.stops import Pruned

TRIAL_ENV = "RUNLAB_TRIAL"


def split_metric(metric: str) -> tuple[str, str]:
    """``test.acc`` -> (``test``, ``acc``): the metrics file and the key in its rows."""
    name, _, key = metric.partition(".")
    if not name or not key:
        raise ValueError(
            f"metric {metric!r} is not FILE.KEY: give the metrics file and the key, "
            "e.g. test.acc for the key 'acc' of log_metrics(..., name='test')"
        )
    return name, key


def make_pruner(spec: Any) -> Any:
    """An Optuna pruner from ``{"name": "median"|"halving"|"none", ...its arguments}``."""
    import optuna

    spec = {"name": spec} if isinstance(spec, str) else dict(spec or {"name": "none"})
    name = spec.pop("name", "none")
    if name in ("none", None):
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(**spec)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(**spec)
    raise ValueError(f"unknown pruner {name!r}: use none, median or halving")


def number(value: Any) -> float | None:
    """A metric value as a float (the stored strings NaN/Infinity too), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in NONFINITE:
        return NONFINITE[value]
    return None


class Reporter:
    """The logger's row hook of a trial (``RunLogger.on_row``)."""

    def __init__(self, tune: dict[str, Any]) -> None:
        self.tune = tune
        self.file, self.key = split_metric(tune["metric"])
        self.trial: Any = None
        self.broken = False

    def _open(self) -> Any:
        import optuna
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = JournalStorage(JournalFileBackend(self.tune["storage"]))
        study = optuna.load_study(
            study_name=self.tune["study"],
            storage=storage,
            pruner=make_pruner(self.tune.get("pruner")),
        )
        return optuna.trial.Trial(study, int(self.tune["trial_id"]))

    def __call__(self, name: str, step: int, row: dict[str, Any]) -> None:
        if name != self.file or self.key not in row or self.broken:
            return
        value = number(row[self.key])
        if value is None or math.isnan(value):
            return
        try:
            if self.trial is None:
                self.trial = self._open()
            self.trial.report(value, int(step))
            prune = self.trial.should_prune()
        except Exception as exc:  # bookkeeping must never end a trial: go on unpruned
            self.broken = True
            print(
                f"runlab: warning: trial {self.tune.get('trial')}: cannot report to the study "
                f"({type(exc).__name__}: {exc}); it runs to its end without pruning",
                file=sys.stderr,
            )
            return
        if prune:
            raise Pruned(
                f"trial {self.tune.get('trial')} of study {self.tune['study']} pruned at step "
                f"{step} ({self.tune['metric']}={value:g})"
            )


def attach(logger: Any, info: dict[str, Any]) -> None:
    """Hook ``logger`` to report the trial's objective (a no-op without a pruner)."""
    tune = info.get("tune")
    if not isinstance(tune, dict) or not tune.get("storage"):
        return
    pruner = tune.get("pruner") or "none"
    if pruner == "none" or (isinstance(pruner, dict) and pruner.get("name") == "none"):
        return
    logger.on_row = Reporter(tune)
