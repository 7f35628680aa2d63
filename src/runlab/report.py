"""Reports of a sweep: learning curves per group as an HTML page, PNG figures and JSON.

    >>> from runlab.reader import Reader
    >>> from runlab.report import build_report, write_report
    >>> runs = Reader("logs").filter("info.status == 'COMPLETE'")
    >>> report = build_report(runs, ["train.loss", "test.acc"], by=["config.lr"])
    >>> write_report(report, "reports/lr")   # index.html, <metric>.png, report.json

Everything is computed by the Polars reader (:meth:`runlab.reader.Grouped.curves`
and the per-run summaries); this module only arranges and draws it.

- ``index.html`` is one self-contained file: Plotly's JavaScript and all the data
  are inline, nothing is fetched when it is opened. One panel per metric with the
  mean of each group and a shaded mean +/- std band (over the runs present at each
  step: ``count`` in the hover says how many), a linear/log toggle, the status
  summary, and sortable tables of the final values per group and per run.
- ``<metric>.png``: the same curves drawn by matplotlib, for papers and slides.
- ``report.json``: the numbers behind the plots.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from runlab.query import QueryError

__all__ = [
    "NoRunsError",
    "build_report",
    "default_by",
    "palette",
    "write_html",
    "write_json",
    "write_pngs",
    "write_report",
]

# Qualitative colours, distinct and dark enough on white; they cycle (with a new
# dash style) past 48 groups.
_DARK = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1", "#636363", "#6b6ecf", "#b5cf6b", "#e7ba52", "#ad494a",
]  # fmt: skip
_LIGHT = [
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
    "#dbdb8d", "#9edae5", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c", "#de9ed6", "#6baed6",
    "#fd8d3c", "#74c476", "#9e9ac8", "#969696", "#5254a3", "#8ca252", "#bd9e39", "#d6616b",
]  # fmt: skip
PALETTE = _DARK + _LIGHT
_DASHES = ["solid", "dash", "dot", "dashdot"]
_MPL_DASHES = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-."}
_STATUS_COLOURS = {
    "COMPLETE": "#2ca02c",
    "RUNNING": "#17becf",
    "QUEUED": "#1f77b4",
    "FAILED": "#d62728",
    "LOST": "#d62728",
    "CORRUPT": "#d62728",
    "TIMEOUT": "#bcbd22",
    "INTERRUPTED": "#bcbd22",
    "PREEMPTED": "#bcbd22",
}


class NoRunsError(ValueError):
    """No run to report on (none selected, or none logged any of the metrics)."""


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


def _fmt(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean_list(values: Sequence[Any]) -> list[Any]:
    return [_clean(v) for v in values]


# ------------------------------------------------------------------ numbers
def default_by(reader: Any, seeds: bool = False) -> list[str]:
    """The config columns whose values differ across the runs, except seeds (unless
    ``seeds``), chosen from the runs whose metadata was read without a problem."""
    reader = reader.readable()
    table = reader.select(*reader.columns)
    if table.height < 2:
        return []
    out = []
    for column, dtype in table.schema.items():
        if not column.startswith("config.") or column.startswith("config.runlab."):
            continue
        if (column.rsplit(".", 1)[-1] == "seed" and not seeds) or isinstance(
            dtype, (pl.List, pl.Array, pl.Struct, pl.Object)
        ):
            continue
        if table[column].n_unique() > 1:
            out.append(column)
    return out


def _labels(keys: pl.DataFrame, by: list[str], short: bool = False) -> list[str]:
    """``model.name=mlp, lr=0.1`` per group (``short``: ``mlp, 0.1``, for legends
    titled with the keys)."""
    if not by:
        return ["all runs"] * keys.height
    cols = [keys[c].to_list() for c in by]
    return [
        ", ".join(
            _fmt(v) if short else f"{_short(c)}={_fmt(v)}" for c, v in zip(by, vals, strict=True)
        )
        for vals in zip(*cols, strict=True)
    ]


def _metric_column(reader: Any, metric: str) -> str | None:
    """The run-table column with each run's last value of ``metric``, if any run has it."""
    column = f"{metric}.last"
    try:
        reader.select(column)
    except QueryError:
        return None
    return column


def build_report(
    reader: Any,
    metrics: Sequence[str],
    by: Sequence[str] | None = None,
    x: str = "step",
    *,
    title: str | None = None,
    where: str | None = None,
) -> dict[str, Any]:
    """The aggregated numbers of a report over the runs of ``reader`` (a
    :class:`runlab.reader.Reader`, filtered or not), as a JSON-ready dict.

    ``by`` defaults to :func:`default_by`. Raises :class:`NoRunsError` when no run
    is selected or none logged any of ``metrics``, and
    :class:`runlab.query.QueryError` for an unknown ``by`` column or ``x`` key.
    """
    if len(reader) == 0:
        raise NoRunsError("no runs match" + (f" {where!r}" if where else ""))
    metrics = list(dict.fromkeys(metrics))
    by = default_by(reader) if by is None else list(dict.fromkeys(by))
    grouped = reader.group_by(*by)  # checks the keys

    # The run table: keys, status, duration, commit, and every varying config column.
    shown = list(dict.fromkeys([*by, *default_by(reader, seeds=True)]))
    extra = [c for c in ("info.status", "info.duration_s", "env.git.commit") if c in reader.columns]
    base = reader.select("run_id", *dict.fromkeys([*shown, *extra]))
    groups = base.select(by).unique(maintain_order=False).sort(by, nulls_last=True) if by else None
    if groups is None:
        groups = pl.DataFrame({"_g": [0]}, schema={"_g": pl.UInt32})
        base = base.with_columns(pl.lit(0, dtype=pl.UInt32).alias("_g"))
    else:
        groups = groups.with_row_index("_g")
        base = base.join(groups, on=by, how="left", nulls_equal=True)
    labels = _labels(groups, by)
    legend = _labels(groups, by, short=True)
    group_runs = base.group_by("_g").len().sort("_g")
    run_counts = dict(zip(group_runs["_g"].to_list(), group_runs["len"].to_list(), strict=True))

    runs_out = base.sort("run_id")
    panels: dict[str, Any] = {}
    missing: dict[str, list[int]] = {}
    finals: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        column = _metric_column(reader, metric)
        if column is None:
            missing[metric] = base["run_id"].sort().to_list()
            panels[metric] = []
            finals[metric] = []
            runs_out = runs_out.with_columns(pl.lit(None, dtype=pl.Float64).alias(metric))
            continue
        last = reader.select("run_id", column).rename({column: metric})
        runs_out = runs_out.join(last, on="run_id", how="left")
        missing[metric] = runs_out.filter(pl.col(metric).is_null())["run_id"].to_list()
        curves = grouped.curves(metric, x=x)
        curves = (
            curves.join(groups, on=by, how="left", nulls_equal=True)
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
        final = (
            runs_out.filter(pl.col(metric).is_not_null())
            .group_by("_g")
            .agg(
                pl.col(metric).mean().alias("mean"),
                pl.col(metric).std().alias("std"),
                pl.col(metric).min().alias("min"),
                pl.col(metric).max().alias("max"),
                pl.len().alias("count"),
            )
            .sort("_g")
        )
        finals[metric] = [
            {"group": labels[r["_g"]], "index": r["_g"], **{k: _clean(v) for k, v in r.items()}}
            for r in final.iter_rows(named=True)
        ]
        for row in finals[metric]:
            row.pop("_g", None)
    if all(not panels[m] for m in metrics):
        raise NoRunsError(
            f"none of the {len(reader)} selected runs logged " + ", ".join(repr(m) for m in metrics)
        )

    label_of = pl.DataFrame(
        {"_g": groups["_g"], "group": labels}, schema={"_g": pl.UInt32, "group": pl.String}
    )
    runs_out = runs_out.join(label_of, on="_g", how="left").drop("_g").sort("run_id")
    status = (
        runs_out.group_by("info.status")
        .len()
        .sort("len", "info.status", descending=[True, False], nulls_last=True)
        if "info.status" in runs_out.columns
        else pl.DataFrame({"info.status": [None], "len": [runs_out.height]})
    )
    return {
        "title": title or f"runlab report: {reader.logs.name}",
        "logs": str(reader.logs),
        "where": where,
        "x": x,
        "by": by,
        "metrics": metrics,
        "runs": len(reader),
        "status": {(s or "UNKNOWN"): n for s, n in status.iter_rows()},
        "groups": [
            {
                "group": labels[g],
                "label": legend[g],
                "index": g,
                "keys": {c: _clean(groups[c][g]) for c in by},
                "runs": run_counts.get(g, 0),
            }
            for g in range(groups.height)
        ],
        "curves": panels,
        "final": finals,
        "missing": missing,
        "columns": ["run_id", "group", *shown, *extra, *metrics],
        "run_table": [
            {k: _clean(v) for k, v in row.items()}
            for row in runs_out.select("run_id", "group", *shown, *extra, *metrics).iter_rows(
                named=True
            )
        ],
    }


# --------------------------------------------------------------------- JSON
def write_json(report: dict[str, Any], path: Path | str) -> Path:
    path = Path(path)
    path.write_bytes(
        orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    )
    return path


# ---------------------------------------------------------------------- PNG
def _file_name(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric)


def write_pngs(report: dict[str, Any], out: Path | str, dpi: int = 150) -> list[Path]:
    """One PNG per metric with data: mean line and mean +/- std band per group."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(out)
    written = []
    short = {g["index"]: g["label"] for g in report["groups"]}
    n_groups = max(1, len(report["groups"]))
    below = n_groups > 12  # many groups: a legend of several columns under the plot
    ncol = min(4, math.ceil(n_groups / 8)) if below else 1
    height = 4.2 + (0.2 * math.ceil(n_groups / ncol) + 0.4 if below else 0.0)
    for metric in report["metrics"]:
        series = report["curves"][metric]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7.5 if below else 8.0, height), layout="constrained")
        for s in series:
            colour, dash = palette(s["index"])
            x = np.asarray(s["x"], dtype=float)
            mean = np.asarray([np.nan if v is None else v for v in s["mean"]], dtype=float)
            std = np.asarray([0.0 if v is None else v for v in s["std"]], dtype=float)
            ax.plot(
                x,
                mean,
                color=colour,
                linestyle=_MPL_DASHES[dash],
                lw=1.6,
                label=short.get(s["index"], s["group"]),
            )
            if np.any(std > 0):
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.18, lw=0)
        ax.set_xlabel(report["x"], fontsize=11)
        ax.set_ylabel(metric, fontsize=11)
        ax.set_title(f"{metric} (mean \u00b1 std over runs)", fontsize=12)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=9)
        if report["by"]:
            ax.legend(
                loc="upper center" if below else "upper left",
                bbox_to_anchor=(0.5, -0.16) if below else (1.01, 1.0),
                fontsize=8,
                ncol=ncol,
                frameon=False,
                title=", ".join(_short(c) for c in report["by"]),
                title_fontsize=9,
            )
        path = out / f"{_file_name(metric)}.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------- HTML
def _figure(report: dict[str, Any], metric: str) -> dict[str, Any]:
    """A Plotly figure (as a dict) for one metric panel."""
    import plotly.graph_objects as go

    fig = go.Figure()
    x_name = report["x"]
    short = {g["index"]: g["label"] for g in report["groups"]}
    for s in report["curves"][metric]:
        colour, dash = palette(s["index"])
        name = short.get(s["index"], s["group"])
        xs, mean, std = s["x"], s["mean"], s["std"]
        upper = [None if m is None else m + (d or 0.0) for m, d in zip(mean, std, strict=True)]
        lower = [None if m is None else m - (d or 0.0) for m, d in zip(mean, std, strict=True)]
        fig.add_trace(
            go.Scatter(
                x=list(xs) + list(xs[::-1]),
                y=upper + lower[::-1],
                fill="toself",
                fillcolor=_rgba(colour, 0.15),
                line={"width": 0, "color": colour},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=s["group"],
                name=name,
                meta="band",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=mean,
                mode="lines",
                line={"color": colour, "dash": dash, "width": 2},
                name=name,
                legendgroup=s["group"],
                customdata=[
                    [d, c, lo, hi]
                    for d, c, lo, hi in zip(std, s["count"], s["min"], s["max"], strict=True)
                ],
                hovertemplate=(
                    "<b>"
                    + html.escape(s["group"])
                    + "</b><br>"
                    + x_name
                    + " %{x}<br>mean %{y:.4g}<br>std %{customdata[0]:.3g}"
                    + "<br>count %{customdata[1]}<br>min %{customdata[2]:.4g}"
                    + " max %{customdata[3]:.4g}<extra></extra>"
                ),
                meta="mean",
            )
        )
    buttons = [
        {"label": label, "method": "relayout", "args": [{"yaxis.type": kind}]}
        for label, kind in (("linear y", "linear"), ("log y", "log"))
    ]
    legend_title = ", ".join(_short(c) for c in report["by"]) or None
    fig.update_layout(
        title={"text": f"{metric}  <sub>mean \u00b1 std over runs</sub>", "x": 0.01},
        xaxis_title=x_name,
        yaxis_title=metric,
        template="plotly_white",
        height=480,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        hovermode="closest",
        legend={
            "title": {"text": legend_title},
            "font": {"size": 11},
            "itemclick": "toggle",
            "itemdoubleclick": "toggleothers",
        },
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "buttons": buttons,
                "x": 1.0,
                "xanchor": "right",
                "y": 1.12,
                "yanchor": "top",
                "showactive": True,
                "pad": {"r": 0, "t": 0},
            }
        ],
    )
    return fig.to_plotly_json()


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:16px 24px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:24px 0 8px}
main{padding:0 24px 40px}.meta{color:#666;font-size:13px}
.panel{background:#fff;border:1px solid #ddd;border-radius:6px;margin:16px 0;padding:4px}
.status span{display:inline-block;margin:4px 8px 4px 0;padding:3px 10px;border-radius:12px;
color:#fff;font-size:13px;font-weight:600}
.note{background:#fff8e1;border:1px solid #f0d58c;border-radius:6px;padding:8px 12px;
font-size:13px;margin:12px 0}
.tablewrap{max-height:520px;overflow:auto;background:#fff;border:1px solid #ddd;border-radius:6px}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{position:sticky;top:0;background:#f3f3f3;cursor:pointer;user-select:none}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
"""

_SCRIPT = """
(function(){
  var errors = [];
  window.addEventListener('error', function(e){ errors.push(String(e.message || e)); });
  window.addEventListener('unhandledrejection', function(e){
    errors.push('unhandled rejection: ' + String(e.reason)); });
  var origError = console.error;
  console.error = function(){ errors.push(Array.prototype.join.call(arguments, ' '));
    return origError.apply(console, arguments); };
  function report(drawn){
    var out = document.getElementById('runlab-selftest');
    var traces = 0;
    document.querySelectorAll('.runlab-plot').forEach(function(gd){
      traces += (gd.data || []).length; });
    out.textContent = JSON.stringify({
      panels: drawn,
      plotted: document.querySelectorAll('.runlab-plot .main-svg').length ? drawn : 0,
      traces: traces,
      drawn: document.querySelectorAll('.runlab-plot .scatterlayer .trace').length,
      errors: errors});
  }
  function sortable(table){
    var heads = table.querySelectorAll('th');
    heads.forEach(function(th, col){
      th.addEventListener('click', function(){
        var dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
        heads.forEach(function(h){ delete h.dataset.dir; });
        th.dataset.dir = dir;
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function(a, b){
          var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
          if (x === '' && y === '') return 0;
          if (x === '') return 1;
          if (y === '') return -1;
          var nx = Number(x), ny = Number(y), c;
          if (!isNaN(nx) && !isNaN(ny)) c = nx - ny; else c = x.localeCompare(y);
          return dir === 'asc' ? c : -c;
        });
        rows.forEach(function(r){ body.appendChild(r); });
      });
    });
  }
  document.querySelectorAll('table.sortable').forEach(sortable);
  var figures = JSON.parse(document.getElementById('runlab-figures').textContent);
  var config = {responsive: true, displaylogo: false,
    toImageButtonOptions: {format: 'png', scale: 2}};
  var jobs = figures.map(function(f){
    return Plotly.newPlot(document.getElementById(f.id), f.figure.data, f.figure.layout,
                          config); });
  Promise.all(jobs).then(function(){ report(jobs.length); },
    function(e){ errors.push(String(e)); report(0); });
})();
"""


def _td(value: Any) -> str:
    if value is None:
        return '<td data-v=""></td>'
    if isinstance(value, bool):
        return f'<td data-v="{int(value)}">{value}</td>'
    if isinstance(value, (int, float)):
        text = f"{value:.5g}" if isinstance(value, float) else str(value)
        return f'<td class="num" data-v="{value!r}">{text}</td>'
    text = html.escape(str(value))
    return f'<td data-v="{text}">{text}</td>'


def _table(headers: list[str], rows: list[list[Any]], first: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        lead = first[i] if first else ""
        cells = "".join(_td(v) for v in row)
        body.append(f"<tr>{lead}{cells}</tr>")
    return (
        f'<div class="tablewrap"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _script_json(data: Any) -> str:
    # Inside <script type="application/json">: only "</" must not appear.
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode().replace("</", "<\\/")


def write_html(report: dict[str, Any], path: Path | str) -> Path:
    """``index.html``: one self-contained page (Plotly's JavaScript inline)."""
    from plotly.offline import get_plotlyjs

    path = Path(path)
    esc = html.escape
    parts: list[str] = []
    status = "".join(
        f'<span style="background:{_STATUS_COLOURS.get(s, "#7f7f7f")}">{esc(s)} {n}</span>'
        for s, n in report["status"].items()
    )
    parts.append(f'<h2>Status</h2><div class="status">{status}</div>')

    figures = []
    for i, metric in enumerate(report["metrics"]):
        lacking = report["missing"].get(metric, [])
        if lacking:
            ids = ", ".join(str(r) for r in lacking[:200])
            more = f" and {len(lacking) - 200} more" if len(lacking) > 200 else ""
            parts.append(
                f'<div class="note"><b>{esc(metric)}</b>: {len(lacking)} of '
                f"{report['runs']} run(s) never logged it and are left out of its panel "
                f"(run {esc(ids)}{more}).</div>"
            )
        if not report["curves"][metric]:
            continue
        div = f"runlab-plot-{i}"
        parts.append(f'<div class="panel"><div id="{div}" class="runlab-plot"></div></div>')
        figures.append({"id": div, "figure": _figure(report, metric)})

    # Final values per group.
    metrics = report["metrics"]
    finals = {m: {r["index"]: r for r in report["final"][m]} for m in metrics}
    headers = ["group", *[_short(c) for c in report["by"]], "runs"]
    for m in metrics:
        headers += [f"{m} mean", f"{m} std", f"{m} n"]
    rows, swatches = [], []
    for g in report["groups"]:
        row: list[Any] = [*[g["keys"][c] for c in report["by"]], g["runs"]]
        for m in metrics:
            f = finals[m].get(g["index"], {})
            row += [f.get("mean"), f.get("std"), f.get("count")]
        colour, _ = palette(g["index"])
        label = esc(g["group"])
        swatches.append(
            f'<td data-v="{label}"><span class="swatch" style="background:{colour}"></span>'
            f"{label}</td>"
        )
        rows.append(row)
    parts.append(
        f"<h2>Final values per group</h2><p class='meta'>last logged value of each run; mean,"
        f" std and number of runs that logged it. Click a header to sort.</p>"
        f"{_table(headers, rows, swatches)}"
    )
    columns = report["columns"]
    run_rows = [[r.get(c) for c in columns] for r in report["run_table"]]
    parts.append(
        f"<h2>Runs ({report['runs']})</h2><p class='meta'>final value of each metric per run."
        f" Click a header to sort.</p>{_table([_short(c) for c in columns], run_rows)}"
    )

    by = ", ".join(_short(c) for c in report["by"]) or "(one group)"
    where = f" &middot; where <code>{esc(report['where'])}</code>" if report["where"] else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(report["title"])}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<header><h1>{esc(report["title"])}</h1>
<div class="meta">{report["runs"]} run(s) in <code>{esc(report["logs"])}</code>{where}
&middot; {len(report["groups"])} group(s) by {esc(by)} &middot; x: {esc(report["x"])}</div>
</header><main>
{"".join(parts)}
</main>
<pre id="runlab-selftest" hidden></pre>
<script type="application/json" id="runlab-figures">{_script_json(figures)}</script>
<script type="text/javascript">{_SCRIPT}</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


# -------------------------------------------------------------------- all
def write_report(report: dict[str, Any], out: Path | str) -> dict[str, Any]:
    """Write ``index.html``, one PNG per metric and ``report.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    html_path = write_html(report, out / "index.html")
    pngs = write_pngs(report, out)
    json_path = write_json(report, out / "report.json")
    return {"html": html_path, "pngs": pngs, "json": json_path}
