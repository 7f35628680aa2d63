"""Which runs a report is about: the latest sweep, one sweep, every run, or a query's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from runlab.errors import UserError
from runlab.results.reader import Reader
from runlab.sweep import ops


class ScopeError(UserError, ValueError):
    """A sweep that cannot be read; one line for the user."""


def select_runs(
    logs: Path | str,
    *,
    sweep: str | None = None,
    all_runs: bool = False,
    where: str | None = None,
) -> tuple[Reader, dict[str, Any]]:
    """The runs a report is about, and a description of that choice.

    ``sweep``: that sweep's runs; else, unless ``all_runs`` or ``where``, the latest
    sweep's runs when sweeps are recorded; else every run. ``where`` filters the
    result. Raises :class:`ScopeError` for an unknown sweep, and
    :class:`runlab.results.query.QueryError` for a bad query.
    """
    logs = Path(logs)
    everything = Reader(logs)
    runs = everything
    known = ops.sweep_ids(logs)
    sweep_id = sweep
    if sweep_id is None and not all_runs and not where and known:
        sweep_id = known[-1]
    kind = "all"
    if sweep_id is not None:
        try:
            record = ops.load(logs, sweep_id)
        except ops.SweepOpsError as exc:
            raise ScopeError(str(exc)) from None
        ids = list(record.runs)
        runs = runs.filter(pl.col("run_id").is_in(ids))
        kind = "sweep" if sweep else "latest sweep"
    if where:
        runs = runs.filter(where)
    outside = len(everything) - len(runs)
    if kind == "all":
        text = "every run" if not where else "the runs matching the query"
    else:
        text = f"the {kind} {sweep_id}"
    scope = {
        "kind": kind,
        "sweep": sweep_id,
        "sweeps": len(known),
        "where": where,
        "runs": len(runs),
        "total": len(everything),
        "outside": outside,
        "text": text,
    }
    return runs, scope
