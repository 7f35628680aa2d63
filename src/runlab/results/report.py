"""Reports of runs: a leaderboard and learning curves per group, as HTML, PNG and JSON.

    >>> from runlab.results.report import build_report, select_runs, write_report
    >>> runs, scope = select_runs("logs")        # the latest sweep (or every run)
    >>> report = build_report(runs, ["train.loss", "test.acc"], scope=scope)
    >>> write_report(report, "reports/latest")   # index.html, <metric>.png, report.json

What a report shows, and why:

- **Scope first.** By default one coherent set of runs: the latest sweep recorded in
  ``<logs>/.sweeps/`` (every run when there is none); ``sweep=`` picks one,
  ``all_runs=True`` takes the whole logs directory, ``where`` filters. What was left
  out is said: the runs outside the scope, and the runs kept out of the curves and the
  leaderboard (failed or unreadable ones, listed with their records).
- **Labels from differences.** Groups are made from the config keys that vary among the
  plotted runs; keys that vary only together with a config group's choice
  (``model.channels`` with ``model.name``) are folded into it; seeds are averaged, never
  grouped (unless ``by`` names them). A label shows a group's config groups and sweep
  axes, and any other key only where the group differs from the most common value:
  ``model=cnn · lr=0.001``.
- **Ranked.** Groups are ordered, and coloured, best first by the rank metric's final
  value (``rank``: default the first metric not logged in ``train``; ``:max``/``:min``
  or a guess from its name: acc, f1, auc, score... are maximised).

Everything is computed by the Polars reader (:meth:`runlab.results.reader.Grouped.curves` and
the per-run summaries); this module arranges it, :mod:`runlab.results.report_html` draws the
page.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from runlab.errors import UserError
from runlab.results.query import QueryError
from runlab.status import FAILING, Status

__all__ = [
    "NoRunsError",
    "ScopeError",
    "build_report",
    "default_by",
    "palette",
    "select_runs",
    "write_html",
    "write_json",
    "write_pngs",
    "write_report",
]

TOP = 10  # groups drawn at first (the rest are one click away) and in the PNGs
LABEL_CHARS = 48  # longer labels are shortened, the full config on hover
RECORDS = 300  # runs whose `runlab show` record is rendered into the page

# Qualitative colours, distinct and dark enough on white; they cycle (with a new
# dash style) past 48 groups.
_DARK = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
    "#6b6ecf",
    "#b5cf6b",
    "#e7ba52",
    "#ad494a",
]
_LIGHT = [
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
    "#9c9ede",
    "#cedb9c",
    "#e7cb94",
    "#e7969c",
    "#de9ed6",
    "#6baed6",
    "#fd8d3c",
    "#74c476",
    "#9e9ac8",
    "#969696",
    "#5254a3",
    "#8ca252",
    "#bd9e39",
    "#d6616b",
]
PALETTE = _DARK + _LIGHT
_DASHES = ["solid", "dash", "dot", "dashdot"]
_MPL_DASHES = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-."}


class NoRunsError(UserError, ValueError):
    """No run to report on (none selected, or none logged any of the metrics)."""


class ScopeError(UserError, ValueError):
    """A sweep that cannot be read; one line for the user."""


def palette(i: int) -> tuple[str, str]:
    """Colour and dash style of the ``i``-th group."""
    return PALETTE[i % len(PALETTE)], _DASHES[(i // len(PALETTE)) % len(_DASHES)]


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _short(column: str) -> str:
    for prefix in ("config.", "info.", "env."):
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


def fmt(value: Any) -> str:
    """A value as a label or a table shows it (``NaN``, ``inf`` spelled out)."""
    if value is None:
        return "None"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ·") + "\u2026"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean_list(values: Sequence[Any]) -> list[Any]:
    return [_clean(v) for v in values]


# -------------------------------------------------------------------- scope
def select_runs(
    logs: Path | str,
    *,
    sweep: str | None = None,
    all_runs: bool = False,
    where: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The runs a report is about, and a description of that choice.

    ``sweep``: that sweep's runs; else, unless ``all_runs`` or ``where``, the latest
    sweep's runs when sweeps are recorded; else every run. ``where`` filters the
    result. Raises :class:`ScopeError` for an unknown sweep, and
    :class:`runlab.results.query.QueryError` for a bad query.
    """
    from runlab.results.reader import Reader
    from runlab.sweep import ops

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


# ------------------------------------------------------------------- labels
def _scalar_config(table: pl.DataFrame) -> list[str]:
    return [
        c
        for c, dtype in table.schema.items()
        if c.startswith("config.")
        and not c.startswith("config.runlab.")
        and not isinstance(dtype, (pl.List, pl.Array, pl.Struct, pl.Object))
    ]


def _is_seed(column: str) -> bool:
    return column.rsplit(".", 1)[-1] in ("seed", "seeds", "random_seed")


def differences(table: pl.DataFrame, seeds: bool = False) -> tuple[list[str], dict[str, str]]:
    """The config keys that vary among the runs of ``table`` (one row per run), and the
    folded ones: ``{key: choice}`` for a key ``a.x`` that varies only with ``a.name``
    (a config group's choice). Seeds are left out unless ``seeds``."""
    if table.height < 2:
        return [], {}
    varying = [
        c for c in _scalar_config(table) if (seeds or not _is_seed(c)) and table[c].n_unique() > 1
    ]
    folded: dict[str, str] = {}
    for column in varying:
        parent = column.rsplit(".", 1)[0]
        choice = f"{parent}.name"
        if choice == column or choice not in varying or "." not in column[len("config.") :]:
            continue
        most = table.group_by(choice).agg(pl.col(column).n_unique().alias("n"))["n"].max()
        if most is not None and int(most) <= 1:  # type: ignore[arg-type]
            folded[column] = choice
    return [c for c in varying if c not in folded], folded


def default_by(reader: Any, seeds: bool = False) -> list[str]:
    """The config columns that distinguish the readable runs of ``reader`` (see
    :func:`differences`)."""
    reader = reader.readable()
    return differences(reader.select(*reader.columns), seeds=seeds)[0]


def _key_names(by: list[str]) -> dict[str, str]:
    """Short names of the keys in labels: ``model`` for ``config.model.name``, the last
    part of a dotted key when that is unambiguous (``weight_decay``)."""
    names = {}
    for c in by:
        short = _short(c)
        if short.endswith(".name"):
            short = short[: -len(".name")]
        names[c] = short
    last = Counter(n.rsplit(".", 1)[-1] for n in names.values())
    return {
        c: (n.rsplit(".", 1)[-1] if last[n.rsplit(".", 1)[-1]] == 1 else n)
        for c, n in names.items()
    }


def _labels(keys: pl.DataFrame, by: list[str]) -> tuple[list[str], list[str]]:
    """Per group: the label (``model=cnn · lr=0.001``) and the full key values.

    A key is always shown when it is a config group's choice (``*.name``) or has no
    common value (its most common value covers at most half of the groups: a sweep
    axis); any other key only where the group's value is not the most common one.
    Missing values (a key another model has) are not shown."""
    if not by:
        return ["all runs"] * keys.height, ["all runs"] * keys.height
    names = _key_names(by)
    n = keys.height
    always, common = set(), {}
    for c in by:
        present = [v for v in keys[c].to_list() if v is not None]
        counts = Counter(present)
        value, top = counts.most_common(1)[0] if counts else (None, 0)
        if c.endswith(".name") or top * 2 <= len(present):
            always.add(c)
        else:
            common[c] = value
    order = [c for c in by if c.endswith(".name")] + [c for c in by if not c.endswith(".name")]
    labels, full = [], []
    for i in range(n):
        parts, every = [], []
        for c in order:
            v = keys[c][i]
            every.append(f"{_short(c)}={_exact(v)}")
            if v is None:
                continue
            if c in always or v != common.get(c):
                parts.append(f"{names[c]}={fmt(v)}")
        labels.append(" \u00b7 ".join(parts) or " \u00b7 ".join(every))
        full.append(", ".join(every))
    return _distinct(labels, keys, order, names), full


def _exact(value: Any) -> str:
    """A value in full (the hover's config): floats to their last digit."""
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return fmt(value)


def _distinct(labels: list[str], keys: pl.DataFrame, order: list[str], names: dict) -> list[str]:
    """Labels that two groups share get the keys those groups differ in: a key that only
    some runs have (``label_smoothing``, unset elsewhere), or values equal at 4 digits."""
    seen: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        seen.setdefault(label, []).append(i)
    out = list(labels)
    for label, rows in seen.items():
        if len(rows) < 2:
            continue
        differ = [c for c in order if len({_exact(keys[c][i]) for i in rows}) > 1]
        for i in rows:
            parts = label.split(" \u00b7 ")
            for c in differ:
                v = keys[c][i]
                short = f"{names[c]}={fmt(v)}"
                if v is None:
                    parts.append(f"{names[c]} unset")
                elif short in parts:  # equal to another's at 4 digits: all of them
                    parts[parts.index(short)] = f"{names[c]}={_exact(v)}"
                else:
                    parts.append(f"{names[c]}={_exact(v)}")
            out[i] = " \u00b7 ".join(parts)
    return out


def _plain_text(text: str) -> str:
    """Text for matplotlib as it is: a ``$`` would start mathtext (``$x^2$`` drawn as x²)."""
    return text.replace("$", r"\$")


def higher_is_better(metric: str) -> bool:
    """A guess from the metric's name: accuracies, scores and rewards are maximised."""
    key = metric.rsplit(".", 1)[-1].lower()
    return bool(
        re.search(
            r"acc|f1|auc|score|precision|recall|reward|return|iou|bleu|rouge|map$|top\d|r2|psnr|ssim",
            key,
        )
    )


def _rank_of(metrics: list[str], rank: str | None) -> tuple[str, bool]:
    if rank:
        name, _, direction = rank.partition(":")
        if direction not in ("", "max", "min"):
            raise ValueError(f"rank {rank!r}: write METRIC, METRIC:max or METRIC:min")
        return name, (direction == "max") if direction else higher_is_better(name)
    chosen = next((m for m in metrics if not m.startswith("train.")), metrics[0])
    return chosen, higher_is_better(chosen)


def _metric_column(reader: Any, metric: str) -> str | None:
    """The run-table column with each run's last value of ``metric``, if any run has it."""
    column = f"{metric}.last"
    try:
        reader.select(column)
    except QueryError:
        return None
    return column


def _sort_key(value: Any, maximise: bool) -> tuple[int, float]:
    if not _finite(value):
        return (1, 0.0)
    return (0, -float(value) if maximise else float(value))


# ------------------------------------------------------------------ numbers
def build_report(
    reader: Any,
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
) -> dict[str, Any]:
    """The numbers of a report over the runs of ``reader`` (a
    :class:`runlab.results.reader.Reader`, filtered or not), as a JSON-ready dict.

    ``by`` defaults to :func:`differences` of the plotted runs. ``rank``: the metric
    (``name[:max|min]``) the leaderboard and the group order follow. Raises
    :class:`NoRunsError` when no run is selected or none logged any of ``metrics``,
    and :class:`runlab.results.query.QueryError` for an unknown ``by`` column or ``x`` key.
    """
    if len(reader) == 0:
        raise NoRunsError("no runs match" + (f" {where!r}" if where else ""))
    metrics = list(dict.fromkeys(metrics))
    rank_metric, maximise = _rank_of(metrics, rank)
    if rank_metric not in metrics:
        metrics.append(rank_metric)
    scope = dict(scope or {})
    scope.setdefault("where", where)

    # Which runs are plotted: the readable ones that did not fail (unless the query
    # is about the status, or nothing else is left).
    info_cols = [
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
    left_out: list[dict[str, Any]] = []
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

    table = plotted.select(*plotted.columns)
    auto = by is None
    if auto:
        by, folded = differences(table)
    else:
        by, folded = list(dict.fromkeys(by)), {}  # type: ignore[arg-type]
    grouped = plotted.group_by(*by)  # checks the keys
    seed_cols = [c for c in _scalar_config(table) if _is_seed(c) and c not in by]

    # Groups, ordered best first by the rank metric's mean final value.
    rank_col = _metric_column(plotted, rank_metric)
    base = plotted.select("run_id", *dict.fromkeys([*by, *seed_cols, *folded]))
    base = base.join(every, on="run_id", how="left")
    finals_of: dict[str, pl.DataFrame] = {}
    for metric in metrics:
        column = _metric_column(plotted, metric)
        if column is not None:
            finals_of[metric] = plotted.select("run_id", column).rename({column: metric})
            base = base.join(finals_of[metric], on="run_id", how="left")
        else:
            base = base.with_columns(pl.lit(None, dtype=pl.Float64).alias(metric))
    if by:
        keys = base.select(by).unique(maintain_order=True)
        score = (
            base.group_by(by).agg(
                pl.col(rank_metric).filter(pl.col(rank_metric).is_finite()).mean().alias("_s")
            )
            if rank_col
            else keys.with_columns(pl.lit(None, dtype=pl.Float64).alias("_s"))
        )
        keys = keys.join(score, on=by, how="left", nulls_equal=True)
        order = sorted(
            range(keys.height),
            key=lambda i: (
                _sort_key(keys["_s"][i], maximise),
                tuple(fmt(keys[c][i]) for c in by),
            ),
        )
        keys = keys[order].drop("_s").with_row_index("_g")
        base = base.join(keys, on=by, how="left", nulls_equal=True)
    else:
        keys = pl.DataFrame({"_g": [0]}, schema={"_g": pl.UInt32})
        base = base.with_columns(pl.lit(0, dtype=pl.UInt32).alias("_g"))
    labels, full = _labels(keys, by)
    runs_per = dict(base.group_by("_g").len().iter_rows())
    seeds_per = (
        dict(base.group_by("_g").agg(pl.col(seed_cols[0]).n_unique()).iter_rows())
        if seed_cols
        else {}
    )

    panels: dict[str, Any] = {}
    missing: dict[str, list[int]] = {}
    finals: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        if metric not in finals_of:
            missing[metric] = base["run_id"].sort().to_list()
            panels[metric] = []
            finals[metric] = []
            continue
        missing[metric] = base.filter(pl.col(metric).is_null())["run_id"].sort().to_list()
        curves = grouped.curves(metric, x=x)
        curves = (
            curves.join(keys, on=by, how="left", nulls_equal=True)
            if by
            else curves.with_columns(pl.lit(0, dtype=pl.UInt32).alias("_g"))
        )
        series = []
        for part in curves.sort("_g", x).partition_by("_g", maintain_order=True):
            g = int(part["_g"][0])
            series.append(
                {
                    "group": labels[g],
                    "index": g,
                    "x": _clean_list(part[x].to_list()),
                    "mean": _clean_list(part["mean"].to_list()),
                    "std": _clean_list(part["std"].to_list()),
                    "min": _clean_list(part["min"].to_list()),
                    "max": _clean_list(part["max"].to_list()),
                    "count": part["count"].to_list(),
                }
            )
        panels[metric] = series
        finite = pl.col(metric).filter(pl.col(metric).is_finite())
        final = (
            base.filter(pl.col(metric).is_not_null())
            .group_by("_g")
            .agg(
                finite.mean().alias("mean"),
                finite.std().alias("std"),
                finite.min().alias("min"),
                finite.max().alias("max"),
                pl.len().alias("count"),
                (~pl.col(metric).is_finite()).sum().alias("nonfinite"),
            )
            .sort("_g")
        )
        finals[metric] = [
            {
                "group": labels[r["_g"]],
                "index": r["_g"],
                **{k: _clean(v) for k, v in r.items() if k != "_g"},
            }
            for r in final.iter_rows(named=True)
        ]
    if all(not panels[m] for m in metrics):
        raise NoRunsError(
            f"none of the {len(plotted)} selected runs logged "
            + ", ".join(repr(m) for m in metrics)
        )

    # Runs: one row each, best first by the rank metric.
    label_of = pl.DataFrame(
        {"_g": keys["_g"], "group": labels}, schema={"_g": pl.UInt32, "group": pl.String}
    )
    runs_out = base.join(label_of, on="_g", how="left")
    run_rows = sorted(
        runs_out.iter_rows(named=True),
        key=lambda r: (_sort_key(r.get(rank_metric), maximise), r["run_id"]),
    )
    columns = ["run_id", "group", *seed_cols, *by, *[c for c in info_cols], *metrics]
    leaderboard = [
        {
            "rank": i + 1 if _finite(r.get(rank_metric)) else None,
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
    status = Counter((s or Status.CORRUPT.value) for s in every["info.status"].to_list())
    groups = [
        {
            "group": labels[g],
            "label": labels[g],
            "full": full[g],
            "index": g,
            "keys": {c: _clean(keys[c][g]) for c in by},
            "runs": runs_per.get(g, 0),
            "seeds": seeds_per.get(g),
            "shown": g < top,
        }
        for g in range(keys.height)
    ]
    report = {
        "title": title or f"runlab report: {reader.logs.name}",
        "logs": str(reader.logs),
        "where": where,
        "scope": scope,
        "x": x,
        "by": by,
        "by_auto": auto,
        "folded": folded,
        "seeds": seed_cols,
        "metrics": metrics,
        "rank": {"metric": rank_metric, "maximise": maximise},
        "top": top,
        "runs": len(reader),
        "plotted": len(plotted),
        "left_out": left_out,
        "status": dict(sorted(status.items(), key=lambda kv: (-kv[1], kv[0]))),
        "groups": groups,
        "curves": panels,
        "final": finals,
        "missing": missing,
        "leaderboard": leaderboard,
        "columns": columns,
        "run_table": [{c: _clean(r.get(c)) for c in columns} for r in run_rows],
        "records": _records(
            reader, [*[r["run_id"] for r in run_rows], *[r["run_id"] for r in left_out]]
        )
        if records
        else {},
    }
    # Non-finite final values are kept, spelled out, for the page's tables.
    report["nonfinite"] = {
        str(r["run_id"]): {
            m: fmt(r[m]) for m in metrics if isinstance(r.get(m), float) and not math.isfinite(r[m])
        }
        for r in run_rows
        if any(isinstance(r.get(m), float) and not math.isfinite(r[m]) for m in metrics)
    }
    return report


def _problems(reader: Any) -> list[tuple[int, str]]:
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


def _records(reader: Any, run_ids: list[int]) -> dict[str, Any]:
    """``runlab show``'s record of each run (the first :data:`RECORDS`)."""
    from runlab.results.reader import read_run

    out: dict[str, Any] = {}
    for rid in run_ids[:RECORDS]:
        try:
            out[str(rid)] = _jsonable(read_run(reader.logs, int(rid)))
        except Exception as exc:  # a record that cannot be read is said, not fatal
            out[str(rid)] = {"run_id": rid, "problems": [f"{type(exc).__name__}: {exc}"]}
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else fmt(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


# --------------------------------------------------------------------- JSON
def write_json(report: dict[str, Any], path: Path | str) -> Path:
    path = Path(path)
    data = {k: v for k, v in report.items() if k != "records"}
    path.write_bytes(
        orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    )
    return path


# ---------------------------------------------------------------------- PNG
def _file_name(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric)


def write_pngs(report: dict[str, Any], out: Path | str, dpi: int = 150) -> list[Path]:
    """One PNG per metric with data: the mean line and mean +/- std band of the best
    ``top`` groups, the legend under the plot (it never narrows the axes)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(out)
    written = []
    shown = [g for g in report["groups"] if g["shown"]]
    # Two columns for short labels; one, with room for 100 characters, for long ones.
    wide = max((len(g["label"]) for g in shown), default=0) > LABEL_CHARS
    ncol = 1 if len(shown) <= 3 or wide else 2
    chars = 100 if ncol == 1 else LABEL_CHARS
    rows = math.ceil(len(shown) / ncol) if report["by"] else 0
    rank = report["rank"]["metric"]
    for metric in report["metrics"]:
        series = {s["index"]: s for s in report["curves"][metric]}
        if not series:
            continue
        fig = plt.figure(figsize=(8.0, 4.4 + 0.22 * rows), layout="constrained")
        ax = fig.add_subplot()
        for g in shown:
            s = series.get(g["index"])
            if s is None:
                continue
            colour, dash = palette(g["index"])
            x = np.asarray([np.nan if v is None else v for v in s["x"]], dtype=float)
            mean = np.asarray([np.nan if v is None else v for v in s["mean"]], dtype=float)
            std = np.asarray([0.0 if v is None else v for v in s["std"]], dtype=float)
            ax.plot(
                x,
                mean,
                color=colour,
                linestyle=_MPL_DASHES[dash],
                lw=1.6,
                label=_plain_text(shorten(g["label"], chars)),
            )
            if np.any(std > 0):
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.18, lw=0)
        ax.set_xlabel(_plain_text(report["x"]), fontsize=11)
        ax.set_ylabel(_plain_text(metric), fontsize=11)
        more = len(report["groups"]) - len(shown)
        note = f"; best {len(shown)} of {len(report['groups'])} groups by {rank}" if more else ""
        ax.set_title(_plain_text(f"{metric} (mean \u00b1 std over seeds{note})"), fontsize=11)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=9)
        if report["by"]:
            fig.legend(loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
        path = out / f"{_file_name(metric)}.png"
        fig.savefig(path, dpi=dpi)
        # What the layout gave the axes (checked by the tests: the legend never narrows it).
        report.setdefault("png_layout", {})[metric] = {
            "axes_width_share": round(ax.get_position().width, 3),
            "legend_entries": len(ax.get_legend_handles_labels()[1]),
        }
        plt.close(fig)
        written.append(path)
    return written


def write_html(report: dict[str, Any], path: Path | str) -> Path:
    """``index.html``: one self-contained page (see :mod:`runlab.results.report_html`)."""
    from runlab.results.report_html import write_html as write

    return write(report, path)


# -------------------------------------------------------------------- all
def write_report(report: dict[str, Any], out: Path | str) -> dict[str, Any]:
    """Write ``index.html``, one PNG per metric and ``report.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    html_path = write_html(report, out / "index.html")
    pngs = write_pngs(report, out)
    json_path = write_json(report, out / "report.json")
    return {"html": html_path, "pngs": pngs, "json": json_path}
