"""The runs to export, read with runlab's reader: each run's facts, flattened config and
numeric metric series, a batch of runs at a time (so that memory stays bounded).

A series is one key of one metrics file: its tag is ``<file>/<key>`` (``train/loss``),
its points the rows where the key holds a number (booleans as 0 and 1; strings and
nulls are left out), with the row's ``step`` and ``time``.

Nothing here imports polars or numpy at module level (``runlab export --help`` stays
light): they are imported when runs are read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from runlab.results.reader import Reader

BATCH_RUNS = 64  # runs whose metric rows are held in memory at once
# Run-table columns turned into tags (when present).
FACTS = {
    "status": "info.status",
    "start_time": "info.start_time",
    "end_time": "info.end_time",
    "sweep_id": "info.sweep_id",
    "commit": "env.git.commit",
    "code_commit": "info.code_commit",
    "task": "info.task",
}


@dataclass
class Series:
    """One metric's points: ``steps`` (int64), ``values`` (float64), ``times`` (float64,
    seconds since the epoch)."""

    tag: str
    steps: np.ndarray
    values: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)

    def digest(self, rows: int | None = None) -> str:
        """A short hash of the first ``rows`` points (all: None)."""
        n = len(self) if rows is None else rows
        h = hashlib.sha256(self.tag.encode())
        for arr in (self.steps, self.values, self.times):
            h.update(arr[:n].tobytes())
        return h.hexdigest()[:16]


@dataclass
class Run:
    """One runlab run as the exporters see it."""

    run_id: int
    path: Path
    facts: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # dotted keys, without "config."
    series: list[Series] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)  # tags left out: strings, not numbers

    def fingerprint(self) -> str:
        """A hash of everything exported of this run: its facts, config and points."""
        h = hashlib.sha256(json.dumps(self.facts, sort_keys=True, default=str).encode())
        h.update(json.dumps(self.config, sort_keys=True, default=str).encode())
        for s in self.series:
            h.update(s.digest().encode())
        return h.hexdigest()[:32]


def metric_names(reader: Reader) -> list[str]:
    """The metric file names of the selected runs."""
    return list(reader._names())


def iter_runs(reader: Reader, batch: int = BATCH_RUNS) -> Iterator[Run]:
    """Every selected run, with its config and metric series, ``batch`` runs at a time."""
    import polars as pl

    columns = reader.columns
    config = [c for c in columns if c.startswith("config.")]
    facts = {k: c for k, c in FACTS.items() if c in columns}
    ids = reader.run_ids
    for start in range(0, len(ids), batch):
        part = reader.filter(pl.col("run_id").is_in(ids[start : start + batch]))
        table = part.select("run_id", *config, *facts.values())
        runs = {
            row["run_id"]: _run(reader, row, config, facts) for row in table.iter_rows(named=True)
        }
        for name in metric_names(part):
            frame = part.metrics(name).collect()
            if not frame.height:
                continue
            for (rid,), rows in frame.partition_by("run_id", as_dict=True).items():
                if rid in runs:
                    _add_series(runs[rid], name, rows)
        yield from (runs[rid] for rid in sorted(runs))


def _run(reader: Reader, row: dict[str, Any], config: list[str], facts: dict[str, str]) -> Run:
    run = Run(int(row["run_id"]), reader.path(row["run_id"]))
    run.facts = {k: row[c] for k, c in facts.items() if row[c] is not None}
    run.config = {c[len("config.") :]: row[c] for c in config if row[c] is not None}
    return run


def _add_series(run: Run, name: str, rows: Any) -> None:
    """The numeric keys of ``rows`` (one run's rows of ``metrics/<name>.jsonl``) as series."""
    import numpy as np
    import polars as pl

    rows = rows.filter(pl.col("step").is_not_null())
    for key, dtype in rows.schema.items():
        if key in ("run_id", "step", "time"):
            continue
        tag = f"{name}/{key}"
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            if rows[key].null_count() < rows.height:
                run.skipped.add(tag)
            continue
        part = rows.select("step", "time", key).filter(pl.col(key).is_not_null())
        if not part.height:
            continue
        times = part["time"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        run.series.append(
            Series(
                tag,
                np.ascontiguousarray(part["step"].cast(pl.Int64).to_numpy()),
                np.ascontiguousarray(part[key].cast(pl.Float64).to_numpy()),
                np.ascontiguousarray(times),
            )
        )


def param_text(value: Any) -> str:
    """A config value as a parameter's text: strings as they are, lists and mappings as
    JSON, other scalars as Python writes them (as ``mlflow.log_param`` does)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    if hasattr(value, "to_list"):  # a polars Series (a list column's value)
        return json.dumps(value.to_list(), default=str, ensure_ascii=False)
    return str(value)


def short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]
