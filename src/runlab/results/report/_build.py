"""The numbers of a report: which runs are plotted, their groups, curves, finals, ranks.

Everything is computed by the Polars reader (:meth:`runlab.results.reader.Grouped.curves`
and the per-run summaries); this module arranges it into a :class:`Report`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from runlab.errors import UserError
from runlab.results.query import QueryError
from runlab.results.reader import Grouped, Reader, read_run
from runlab.results.report._format import RECORDS, TOP, clean, clean_list, finite, fmt, jsonable
from runlab.results.report._labels import differences, is_seed, labels_of, rank_of, scalar_config
from runlab.results.report._model import Report, Row
from runlab.status import FAILING, Status

__all__ = ["NoRunsError", "build_report"]


class NoRunsError(UserError, ValueError):
    """No run to report on (none selected, or none logged any of the metrics)."""


@dataclass
class _Selection:
    """The runs of a report: all of them (``every``: id and info), the plotted ones."""

    every: pl.DataFrame
    info_cols: list[str]
    plotted: Reader
    left_out: list[Row]


@dataclass
class _Groups:
    """The plotted runs grouped: one row per run in ``base`` (its group ``_g``, keys,
    seed, status and final values), one per group in ``keys``, best first."""

    by: list[str]
    auto: bool
    folded: dict[str, str]
    seed_cols: list[str]
    grouped: Grouped
    base: pl.DataFrame
    keys: pl.DataFrame
    labels: list[str]
    full: list[str]
    has_metric: set[str]


def build_report(
    reader: Reader,
    metrics: Sequence[str],
    by: Sequence[str] | None = None,
    x: str = "step",
    *,
    title: str | None = None,
    where: str | None = None,
    scope: dict[str, Any] | None = None,
    rank: str | None = None,
    top: int = TOP,
    records: bool = True,
) -> Report:
    """The numbers of a report over the runs of ``reader`` (filtered or not).

    ``by`` defaults to :func:`differences` of the plotted runs. ``rank``: the metric
    (``name[:max|min]``) the leaderboard and the group order follow. Raises
    :class:`NoRunsError` when no run is selected or none logged any of ``metrics``,
    and :class:`runlab.results.query.QueryError` for an unknown ``by`` column or ``x`` key.
    """
    if len(reader) == 0:
        raise NoRunsError("no runs match" + (f" {where!r}" if where else ""))
    metrics = list(dict.fromkeys(metrics))
    rank_metric, maximise = rank_of(metrics, rank)
    if rank_metric not in metrics:
        metrics.append(rank_metric)
    scope = dict(scope or {})
    scope.setdefault("where", where)
    chosen = _select(reader, where)
    by, skipped = _groupable(chosen.plotted, by)
    g = _group(chosen, by, metrics, rank_metric, maximise)
    curves = {m: _curves(g, m, x) if m in g.has_metric else [] for m in metrics}
    not_numbers = {
        m: why
        for m in metrics
        if m not in g.has_metric and (why := _not_numbers(chosen.plotted, m))
    }
    skipped += [f"{m}: {why}" for m, why in not_numbers.items()]
    if all(not curves[m] for m in metrics):
        raise NoRunsError(
            f"nothing to draw: {'; '.join(skipped)}"
            if not_numbers
            else f"none of the {len(chosen.plotted)} selected runs logged "
            + ", ".join(repr(m) for m in metrics)
        )
    run_rows = _ranked_runs(g, rank_metric, maximise)
    columns = ["run_id", "group", *g.seed_cols, *g.by, *chosen.info_cols, *metrics]
    status = Counter((s or Status.CORRUPT.value) for s in chosen.every["info.status"].to_list())
    shown = [r["run_id"] for r in run_rows] + [r["run_id"] for r in chosen.left_out]
    return Report(
        title=title or f"runlab report: {reader.logs.name}",
        logs=str(reader.logs),
        where=where,
        scope=scope,
        x=x,
        by=g.by,
        by_auto=g.auto,
        folded=g.folded,
        seeds=g.seed_cols,
        metrics=metrics,
        rank={"metric": rank_metric, "maximise": maximise},
        top=top,
        runs=len(reader),
        plotted=len(chosen.plotted),
        left_out=chosen.left_out,
        status=dict(sorted(status.items(), key=lambda kv: (-kv[1], kv[0]))),
        groups=_group_rows(g, top),
        curves=curves,
        final={m: _finals(g, m) if m in g.has_metric else [] for m in metrics},
        missing={m: [] if m in not_numbers else _missing(g, m) for m in metrics},
        leaderboard=_leaderboard(run_rows, g.seed_cols, rank_metric, metrics),
        columns=columns,
        run_table=[{c: clean(r.get(c)) for c in columns} for r in run_rows],
        records=_records(reader, shown) if records else {},
        nonfinite=_nonfinite(run_rows, metrics),
        skipped=skipped,
    )


_UNGROUPABLE = (pl.List, pl.Array, pl.Struct, pl.Object)


def _groupable(reader: Reader, by: Sequence[str] | None) -> tuple[list[str] | None, list[str]]:
    """``by`` without the keys whose values are lists or mappings (groups cannot be told
    apart by them), and a note for each key left out."""
    if by is None:
        return None, []
    keep, skipped = [], []
    for key in dict.fromkeys(by):
        try:
            dtype = reader.select(key).schema[key]
        except QueryError:
            keep.append(key)  # unknown: the grouping says so, with suggestions
            continue
        if isinstance(dtype, _UNGROUPABLE):
            skipped.append(f"--by {key}: its values are lists or mappings, not grouped by")
        else:
            keep.append(key)
    return keep, skipped


def _not_numbers(reader: Reader, metric: str) -> str | None:
    """Why ``metric`` has no curve although runs logged it: its values are strings or
    booleans (None when no run logged it at all)."""
    name, _, key = metric.partition(".")
    try:
        schema = reader.metrics(name).collect_schema()
    except Exception:
        return None
    dtype = schema.get(key)
    if dtype is None or dtype.is_numeric():
        return None
    kind = "booleans" if dtype == pl.Boolean else "strings" if dtype == pl.String else str(dtype)
    return f"logged as {kind}, not numbers: not drawn"


def _select(reader: Reader, where: str | None) -> _Selection:
    """The runs that are plotted: the readable ones that did not fail (unless the query
    is about the status, or nothing else is left); the others, and why, in ``left_out``."""
    info_cols: list[str] = [
        c for c in ("info.status", "info.start_time", "info.duration_s") if c in reader.columns
    ]
    every = reader.select("run_id", *info_cols)
    if "info.status" not in every.columns:
        every = every.with_columns(pl.lit(None, dtype=pl.String).alias("info.status"))
    readable = (
        set(reader.readable().run_ids)
        if len(reader.readable()) < len(reader)
        else set(reader.run_ids)
    )
    problems = dict(_problems(reader))
    keep_failed = bool(where and "info.status" in where)
    left_out: list[Row] = []
    plotted_ids = []
    for row in every.sort("run_id").iter_rows(named=True):
        rid, status = row["run_id"], row["info.status"] or Status.CORRUPT.value
        if rid not in readable:
            left_out.append(
                {"run_id": rid, "status": status, "why": problems.get(rid, "unreadable metadata")}
            )
        elif Status.of(status) in FAILING and not keep_failed:
            left_out.append({"run_id": rid, "status": status, "why": f"{status.lower()}"})
        else:
            plotted_ids.append(rid)
    if not plotted_ids:  # every run failed: show them rather than nothing
        plotted_ids = [r["run_id"] for r in left_out if r["run_id"] in readable] or reader.run_ids
        left_out = [r for r in left_out if r["run_id"] not in plotted_ids]
    plotted = reader.filter(pl.col("run_id").is_in(plotted_ids))
    return _Selection(every, info_cols, plotted, left_out)


def _group(
    chosen: _Selection,
    by: Sequence[str] | None,
    metrics: list[str],
    rank_metric: str,
    maximise: bool,
) -> _Groups:
    """Group the plotted runs by ``by`` (default: their differences), best group first."""
    plotted = chosen.plotted
    table = plotted.select(*plotted.columns)
    auto = by is None
    if by is None:
        keys_by, folded = differences(table)
    else:
        keys_by, folded = list(dict.fromkeys(by)), {}
    grouped = plotted.group_by(*keys_by)  # checks the keys
    seed_cols = [c for c in scalar_config(table) if is_seed(c) and c not in keys_by]
    base = plotted.select("run_id", *dict.fromkeys([*keys_by, *seed_cols, *folded]))
    base = base.join(chosen.every, on="run_id", how="left")
    has_metric = set()
    for metric in metrics:
        column = _metric_column(plotted, metric)
        if column is not None:
            has_metric.add(metric)
            finals = plotted.select("run_id", column).rename({column: metric})
            base = base.join(finals, on="run_id", how="left")
        else:
            base = base.with_columns(pl.lit(None, dtype=pl.Float64).alias(metric))
    rank_col = _metric_column(plotted, rank_metric)
    keys, base = _order_groups(base, keys_by, rank_metric if rank_col else None, maximise)
    labels, full = labels_of(keys, keys_by)
    return _Groups(keys_by, auto, folded, seed_cols, grouped, base, keys, labels, full, has_metric)


def _order_groups(
    base: pl.DataFrame, by: list[str], rank_metric: str | None, maximise: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The groups' keys, best first by the rank metric's mean final value, numbered
    ``_g``; and ``base`` with each run's ``_g``."""
    if not by:
        keys = pl.DataFrame({"_g": [0]}, schema={"_g": pl.UInt32})
        return keys, base.with_columns(pl.lit(0, dtype=pl.UInt32).alias("_g"))
    keys = base.select(by).unique(maintain_order=True)
    score = (
        base.group_by(by).agg(
            pl.col(rank_metric).filter(pl.col(rank_metric).is_finite()).mean().alias("_s")
        )
        if rank_metric
        else keys.with_columns(pl.lit(None, dtype=pl.Float64).alias("_s"))
    )
    keys = keys.join(score, on=by, how="left", nulls_equal=True)
    order = sorted(
        range(keys.height),
        key=lambda i: (_sort_key(keys["_s"][i], maximise), tuple(fmt(keys[c][i]) for c in by)),
    )
    keys = keys[order].drop("_s").with_row_index("_g")
    return keys, base.join(keys, on=by, how="left", nulls_equal=True)


def _metric_column(reader: Reader, metric: str) -> str | None:
    """The run-table column with each run's last value of ``metric``, if any run has it."""
    column = f"{metric}.last"
    try:
        dtype = reader.select(column).schema[column]
    except QueryError:
        return None
    # Strings and booleans have no curve nor mean: _not_numbers says they were skipped.
    return column if dtype.is_numeric() or dtype == pl.Null else None


def _sort_key(value: Any, maximise: bool) -> tuple[int, float]:
    if not finite(value):
        return (1, 0.0)
    return (0, -float(value) if maximise else float(value))


def _curves(g: _Groups, metric: str, x: str) -> list[Row]:
    """One series per group: mean, std, min, max and count of ``metric`` per ``x``."""
    curves = g.grouped.curves(metric, x=x)
    curves = (
        curves.join(g.keys, on=g.by, how="left", nulls_equal=True)
        if g.by
        else curves.with_columns(pl.lit(0, dtype=pl.UInt32).alias("_g"))
    )
    series = []
    for part in curves.sort("_g", x).partition_by("_g", maintain_order=True):
        i = int(part["_g"][0])
        series.append(
            {
                "group": g.labels[i],
                "index": i,
                "x": clean_list(part[x].to_list()),
                "mean": clean_list(part["mean"].to_list()),
                "std": clean_list(part["std"].to_list()),
                "min": clean_list(part["min"].to_list()),
                "max": clean_list(part["max"].to_list()),
                "count": part["count"].to_list(),
            }
        )
    return series


def _finals(g: _Groups, metric: str) -> list[Row]:
    """Per group: mean, std, min, max of its runs' finite last values of ``metric``, the
    number of runs that logged it and of those that ended NaN or inf."""
    finite_values = pl.col(metric).filter(pl.col(metric).is_finite())
    final = (
        g.base.filter(pl.col(metric).is_not_null())
        .group_by("_g")
        .agg(
            finite_values.mean().alias("mean"),
            finite_values.std().alias("std"),
            finite_values.min().alias("min"),
            finite_values.max().alias("max"),
            pl.len().alias("count"),
            (~pl.col(metric).is_finite()).sum().alias("nonfinite"),
        )
        .sort("_g")
    )
    return [
        {
            "group": g.labels[r["_g"]],
            "index": r["_g"],
            **{k: clean(v) for k, v in r.items() if k != "_g"},
        }
        for r in final.iter_rows(named=True)
    ]


def _missing(g: _Groups, metric: str) -> list[int]:
    """The plotted runs that never logged ``metric``."""
    if metric not in g.has_metric:
        return g.base["run_id"].sort().to_list()
    return g.base.filter(pl.col(metric).is_null())["run_id"].sort().to_list()


def _ranked_runs(g: _Groups, rank_metric: str, maximise: bool) -> list[Row]:
    """The plotted runs (with their group's label), best first by the rank metric."""
    label_of = pl.DataFrame(
        {"_g": g.keys["_g"], "group": g.labels}, schema={"_g": pl.UInt32, "group": pl.String}
    )
    runs = g.base.join(label_of, on="_g", how="left")
    return sorted(
        runs.iter_rows(named=True),
        key=lambda r: (_sort_key(r.get(rank_metric), maximise), r["run_id"]),
    )


def _leaderboard(
    run_rows: list[Row], seed_cols: list[str], rank_metric: str, metrics: list[str]
) -> list[Row]:
    return [
        {
            "rank": i + 1 if finite(r.get(rank_metric)) else None,
            "run_id": r["run_id"],
            "group": r["group"],
            "index": r["_g"],
            "seed": r.get(seed_cols[0]) if seed_cols else None,
            "status": r.get("info.status"),
            "start_time": r.get("info.start_time"),
            "value": r.get(rank_metric),
            "metrics": {m: r.get(m) for m in metrics},
        }
        for i, r in enumerate(run_rows)
    ]


def _group_rows(g: _Groups, top: int) -> list[Row]:
    """One row per group, best first: its label, full config, keys, runs and seeds."""
    runs_per = dict(g.base.group_by("_g").len().iter_rows())
    seeds_per = (
        dict(g.base.group_by("_g").agg(pl.col(g.seed_cols[0]).n_unique()).iter_rows())
        if g.seed_cols
        else {}
    )
    return [
        {
            "group": g.labels[i],
            "label": g.labels[i],
            "full": g.full[i],
            "index": i,
            "keys": {c: clean(g.keys[c][i]) for c in g.by},
            "runs": runs_per.get(i, 0),
            "seeds": seeds_per.get(i),
            "shown": i < top,
        }
        for i in range(g.keys.height)
    ]


def _nonfinite(run_rows: list[Row], metrics: list[str]) -> dict[str, dict[str, str]]:
    """Non-finite final values, spelled out, for the page's tables."""

    def bad(r: Row, m: str) -> bool:
        return isinstance(r.get(m), float) and not math.isfinite(r[m])

    return {
        str(r["run_id"]): {m: fmt(r[m]) for m in metrics if bad(r, m)}
        for r in run_rows
        if any(bad(r, m) for m in metrics)
    }


def _problems(reader: Reader) -> list[tuple[int, str]]:
    """The reader's problems, by run id (a path under a run directory)."""
    out = []
    for path, message in reader.problems:
        name = Path(path).name
        parent = Path(path)
        while parent.parent != parent and not name.isdigit():
            parent = parent.parent
            name = parent.name
        if name.isdigit():
            out.append((int(name), message))
    return out


def _records(reader: Reader, run_ids: list[int]) -> dict[str, Any]:
    """``runlab show``'s record of each run (the first :data:`RECORDS`)."""
    out: dict[str, Any] = {}
    for rid in run_ids[:RECORDS]:
        try:
            out[str(rid)] = jsonable(read_run(reader.logs, int(rid)))
        except Exception as exc:  # a record that cannot be read is said, not fatal
            out[str(rid)] = {"run_id": rid, "problems": [f"{type(exc).__name__}: {exc}"]}
    return out
