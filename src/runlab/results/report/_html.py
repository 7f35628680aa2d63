"""The report's page: one self-contained ``index.html`` (Plotly's JavaScript inline).

Top to bottom: what is in scope and what was left out; the leaderboard (best runs by
the rank metric, each linking to its record further down); the curves, one panel per
metric beside a fixed-width list of the groups (best first; the best ``top`` drawn,
the others one click away; long labels shortened, the full config on hover); final
values per group; every run; and each run's ``runlab show`` record. The layout cannot
be squeezed: no Plotly legend or title inside a figure (the title and the linear/log
buttons are HTML above it), so the plot area keeps its width whatever the labels.

The page's frame, its CSS and its script are the package's template files
(``templates/report.html``, ``report.css``, ``report.js``); :func:`fill` puts the
sections into the frame in one pass, so a ``{{name}}`` inside a value stays text.
Everything that comes from a config, a metric name or a record is escaped: HTML text
through :func:`html.escape`, data for the scripts as JSON with ``<`` written
``\\u003c``, and labels reach Plotly's hover only through ``customdata``, escaped.
The run records are :mod:`runlab.results.report._records_html`.
"""

from __future__ import annotations

import functools
import html
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from runlab.results.report._format import fmt, palette, rgba, short, shorten
from runlab.results.report._model import Report, Row
from runlab.results.report._records_html import record_html
from runlab.status import hex_colour

esc = html.escape
TEMPLATES = ("report.html", "report.css", "report.js")
_SLOT = re.compile(r"\{\{(\w+)\}\}")


@functools.cache
def template(name: str) -> str:
    """A template file of the package (``report.html``, ``report.css``, ``report.js``)."""
    return (
        resources.files("runlab.results.report")
        .joinpath("templates", name)
        .read_text(encoding="utf-8")
    )


def fill(frame: str, values: dict[str, str]) -> str:
    """``frame`` with each ``{{name}}`` replaced by ``values[name]``, in one pass: the
    values are not read again, so a ``{{x}}`` in a config value stays as it is."""
    return _SLOT.sub(lambda m: values[m.group(1)], frame)


def plotly_text(text: str) -> str:
    """Text for Plotly's titles and hover: Plotly reads a subset of HTML there (tags,
    ``&lt;``, ``&amp;``) but shows ``&quot;`` as it is, so quotes stay quotes."""
    return html.escape(text, quote=False)


def script_json(data: Any) -> str:
    """JSON for a ``<script type="application/json">``: no ``<`` at all in it."""
    text = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_html(report: Report, path: Path | str) -> Path:
    """``index.html``: one self-contained page (Plotly's JavaScript inline)."""
    from plotly.offline import get_plotlyjs

    path = Path(path)
    panels, figures = _curves(report)
    study, study_figures = _study(report)
    sections = [_leaderboard(report), panels, study, _finals(report), _records(report)]
    page = fill(
        template("report.html"),
        {
            "title": esc(report.title),
            "css": template("report.css"),
            "plotly": get_plotlyjs(),
            "header": _header(report),
            "sections": "".join(sections),
            "figures": script_json(figures + study_figures),
            "script": template("report.js"),
        },
    )
    path.write_text(page, encoding="utf-8")
    return path


# ------------------------------------------------------------------ cells
def _num(value: Any, nonfinite: str | None = None) -> str:
    if nonfinite is not None:
        return f'<td class="num bad" data-v="">{esc(nonfinite)}</td>'
    if value is None:
        return '<td class="num" data-v=""></td>'
    if isinstance(value, bool):
        return f'<td data-v="{int(value)}">{value}</td>'
    if isinstance(value, float) and not math.isfinite(value):
        return f'<td class="num bad" data-v="">{esc(fmt(value))}</td>'
    text = f"{value:.5g}" if isinstance(value, float) else str(value)
    return f'<td class="num" data-v="{value!r}">{esc(text)}</td>'


def _text(value: Any, cls: str = "") -> str:
    text = "" if value is None else esc(fmt(value))
    c = f' class="{cls}"' if cls else ""
    return f'<td{c} data-v="{text}">{text}</td>'


def _swatch(index: int) -> str:
    colour, _ = palette(index)
    return f'<span class="swatch" style="background:{colour}"></span>'


def _label_cell(group: Row) -> str:
    label = group["label"]
    return (
        f'<td class="label" data-v="{esc(label)}" title="{esc(group["full"])}">'
        f"{_swatch(group['index'])}{esc(shorten(label, 120))}</td>"
    )


def _run_link(rid: int, records: dict[str, Any]) -> str:
    if str(rid) in records:
        return f'<td class="num" data-v="{rid}"><a href="#run-{rid}">{rid}</a></td>'
    return f'<td class="num" data-v="{rid}">{rid}</td>'


def _table(headers: list[tuple[str, bool]], rows: list[str], cls: str = "sortable") -> str:
    head = "".join(f"<th{' class=num' if num else ''}>{esc(h)}</th>" for h, num in headers)
    return (
        f'<div class="tablewrap"><table class="{cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


# ------------------------------------------------------------------ header
def _header(report: Report) -> str:
    """The title, the scope, the grouping, the runs per status and the notes."""
    scope = report.scope or {}
    head = [f"{report.runs} run(s): {esc(scope.get('text', 'the selected runs'))}"]
    if scope.get("where"):
        head.append(f"where <code>{esc(scope['where'])}</code>")
    head.append(f"<code>{esc(report.logs)}</code>")
    status = "".join(
        f'<span style="background:{hex_colour(s)}">{esc(s)} {n}</span>'
        for s, n in report.status.items()
    )
    by = ", ".join(esc(short(c)) for c in report.by) or "(one group)"
    fold_text = (
        " ("
        + ", ".join(f"{esc(short(k))} with {esc(short(v))}" for k, v in report.folded.items())
        + " folded in)"
        if report.folded
        else ""
    )
    seeds = (
        f" &middot; averaged over {esc(', '.join(short(s) for s in report.seeds))}"
        if report.seeds
        else ""
    )
    return (
        f'<header><h1>{esc(report.title)}</h1><div class="meta">{" &middot; ".join(head)}</div>'
        f'<div class="meta">{len(report.groups)} group(s) by {by}{fold_text}{seeds}'
        f' &middot; x: {esc(report.x)}</div><div class="status">{status}</div>'
        + "".join(f'<div class="note">{n}</div>' for n in _notes(report))
        + "</header>"
    )


def _notes(report: Report) -> list[str]:
    """What is not in the report: runs outside the scope, left out, lacking a metric."""
    scope, records, notes = report.scope or {}, report.records, []
    if scope.get("outside"):
        how = "<code>--all</code> for every run"
        if scope.get("sweeps", 0) > 1:
            how += ", <code>--sweep ID</code> for another sweep"
        notes.append(
            f"{scope['outside']} other run(s) of the logs directory are not in this report ({how})."
        )
    if report.left_out:
        links = ", ".join(
            f'<a href="#run-{r["run_id"]}">{r["run_id"]}</a> ({esc(shorten(r["why"], 90))})'
            if str(r["run_id"]) in records
            else f"{r['run_id']} ({esc(shorten(r['why'], 90))})"
            for r in report.left_out[:100]
        )
        more = f" and {len(report.left_out) - 100} more" if len(report.left_out) > 100 else ""
        notes.append(
            f"Left out of the curves and the leaderboard: {len(report.left_out)} run(s) that "
            f"failed or cannot be read: {links}{more}."
        )
    for metric in report.metrics:
        lacking = report.missing.get(metric, [])
        if lacking and report.curves[metric]:
            ids = ", ".join(str(r) for r in lacking[:50])
            more = f" and {len(lacking) - 50} more" if len(lacking) > 50 else ""
            notes.append(
                f"<b>{esc(metric)}</b>: {len(lacking)} of {report.plotted} run(s) never "
                f"logged it and are left out of its panel (run {esc(ids)}{more})."
            )
        elif not report.curves[metric]:
            notes.append(f"<b>{esc(metric)}</b>: no run logged it.")
    return notes


# ------------------------------------------------------------- leaderboard
def _leaderboard(report: Report) -> str:
    """The best runs by the rank metric, each linking to its record."""
    rank, maximise = report.rank["metric"], report.rank["maximise"]
    groups = {g["index"]: g for g in report.groups}
    better = "higher" if maximise else "lower"
    others = [m for m in report.metrics if m != rank]
    has_seed = any(r["seed"] is not None for r in report.leaderboard)
    headers = [("#", True), ("run", True), (f"{rank} (final)", True)]
    headers += [(m, True) for m in others]
    headers += [("config", False)] + ([("seed", True)] if has_seed else [])
    headers += [("status", False), ("started", False)]
    rows = []
    for i, r in enumerate(report.leaderboard):
        bad = report.nonfinite.get(str(r["run_id"]), {})
        g = groups.get(r["index"])
        cells = [
            _num(r["rank"]),
            _run_link(r["run_id"], report.records),
            _num(r["value"], bad.get(rank)),
            *[_num(r["metrics"].get(m), bad.get(m)) for m in others],
            _label_cell(g) if g else _text(r["group"]),
            *([_num(r["seed"])] if has_seed else []),
            _text(r["status"]),
            _text((r.get("start_time") or "")[:16].replace("T", " ")),
        ]
        cls = ' class="best"' if i == 0 and r["rank"] == 1 else ""
        rows.append(f'<tr{cls} data-run="{r["run_id"]}">{"".join(cells)}</tr>')
    return (
        f'<section id="leaderboard"><h2>Best runs by {esc(rank)}</h2>'
        f"<p class='meta'>each run's last value of {esc(rank)}, {better} is better; "
        f"config: what distinguishes its group (hover for the full config); the run id "
        f"opens its record. Click a header to sort.</p>"
        f"{_table(headers, rows, 'sortable leaderboard')}</section>"
    )


# ------------------------------------------------------------------ curves
def _curves(report: Report) -> tuple[str, list[dict[str, Any]]]:
    """The curve panels beside the group list, and the panels' Plotly figures."""
    figures, panels = [], []
    for i, metric in enumerate(report.metrics):
        if not report.curves[metric]:
            continue
        div = f"runlab-plot-{i}"
        tools = "".join(
            f'<button type="button" data-plot="{div}" data-scale="{kind}"'
            f"{' class=active' if kind == 'linear' else ''}>{kind} y</button>"
            for kind in ("linear", "log")
        )
        panels.append(
            f'<div class="panel"><div class="panel-head"><h3 class="panel-title">{esc(metric)}'
            f"<small>mean &plusmn; std over seeds</small></h3>"
            f'<div class="tools">{tools}</div></div>'
            f'<div id="{div}" class="runlab-plot"></div></div>'
        )
        figures.append(_figure(report, metric, div))
    return (
        f'<section id="curves"><h2>Curves</h2><div class="curves"><div class="panels">'
        f"{''.join(panels)}</div>{_group_list(report)}</div></section>"
    ), figures


def _group_list(report: Report) -> str:
    """The groups beside the plots, best first, the shown ones ticked."""
    rank = report.rank["metric"]
    finals = {f["index"]: f for f in report.final.get(rank, [])}
    top, n = report.top, len(report.groups)
    items = []
    for g in report.groups:
        value = finals.get(g["index"], {}).get("mean")
        checked = " checked" if g["shown"] else ""
        items.append(
            f'<li><label title="{esc(g["full"])}"><input type="checkbox" data-g="{g["index"]}"'
            f'{checked}>{_swatch(g["index"])}<span class="name">{esc(shorten(g["label"], 72))}</span>'
            f'<span class="val">{esc(fmt(value)) if value is not None else ""}</span></label></li>'
        )
    pick = (
        f'<div class="tools"><button type="button" data-pick="top" data-top="{top}">best {top}</button>'
        f'<button type="button" data-pick="all">all</button>'
        f'<button type="button" data-pick="none">none</button></div>'
        if n > 1
        else ""
    )
    shown_note = f"best {min(top, n)} of {n} drawn; tick to add" if n > top else f"{n} group(s)"
    return (
        f'<aside class="groups"><h3>Groups</h3><div class="meta">{shown_note}; ordered by '
        f"{esc(rank)} (mean final value)</div>{pick}<ol>{''.join(items)}</ol></aside>"
    )


def _figure(report: Report, metric: str, div: str) -> dict[str, Any]:
    """A Plotly figure (plain dicts) for one metric: a band and a mean line per group."""
    import plotly.io as pio

    shown = {g["index"]: g["shown"] for g in report.groups}
    label = {g["index"]: plotly_text(g["label"]) for g in report.groups}
    x_name = plotly_text(report.x)
    data = []
    for s in report.curves[metric]:
        g = s["index"]
        colour, dash = palette(g)
        visible = bool(shown.get(g, True))
        if any(d for d in s["std"] if d):
            data.append(_band(s, colour, visible))
        data.append(
            {
                "type": "scatter",
                "x": s["x"],
                "y": s["mean"],
                "mode": "lines+markers" if len(s["x"]) == 1 else "lines",
                "line": {"color": colour, "dash": dash, "width": 2},
                "showlegend": False,
                "visible": visible,
                "meta": {"g": g, "kind": "mean"},
                "customdata": [
                    [d, c, lo, hi, label[g]]
                    for d, c, lo, hi in zip(s["std"], s["count"], s["min"], s["max"], strict=True)
                ],
                "hovertemplate": (
                    "<b>%{customdata[4]}</b><br>" + x_name + " %{x}<br>mean %{y:.4g}"
                    "<br>std %{customdata[0]:.3g} · runs %{customdata[1]}"
                    "<br>min %{customdata[2]:.4g} · max %{customdata[3]:.4g}<extra></extra>"
                ),
            }
        )
    template_layout = pio.templates["plotly_white"].to_plotly_json()["layout"]
    layout = {
        "template": {"layout": template_layout},
        "height": 420,
        "autosize": True,
        "margin": {"l": 64, "r": 16, "t": 16, "b": 48},
        "showlegend": False,
        "hovermode": "closest",
        "xaxis": {"title": {"text": x_name}, "zeroline": False},
        "yaxis": {"title": {"text": plotly_text(metric)}, "zeroline": False},
    }
    return {"id": div, "data": data, "layout": layout}


def _band(s: Row, colour: str, visible: bool) -> dict[str, Any]:
    """The mean +/- std band of one group's series, as a filled Plotly trace."""
    xs, mean, std = s["x"], s["mean"], s["std"]
    upper = [None if m is None else m + (d or 0.0) for m, d in zip(mean, std, strict=True)]
    lower = [None if m is None else m - (d or 0.0) for m, d in zip(mean, std, strict=True)]
    return {
        "type": "scatter",
        "x": list(xs) + list(xs[::-1]),
        "y": upper + lower[::-1],
        "fill": "toself",
        "fillcolor": rgba(colour, 0.15),
        "line": {"width": 0, "color": colour},
        "hoverinfo": "skip",
        "showlegend": False,
        "visible": visible,
        "meta": {"g": s["index"], "kind": "band"},
    }


# ------------------------------------------------------- study, finals, records
def _study(report: Report) -> tuple[str, list[dict[str, Any]]]:
    """A ``runlab tune`` study: Optuna's own figures (``runlab report --study NAME``)."""
    study = report.study
    if not study or not study.get("figures"):
        return "", []
    boxes, figures = [], []
    for i, fig in enumerate(study["figures"]):
        div = f"runlab-study-{i}"
        boxes.append(
            f'<div class="panel"><div class="panel-head"><h3 class="panel-title">'
            f'{esc(fig["title"])}</h3></div><div id="{div}" class="study-plot"></div></div>'
        )
        figures.append({"id": div, "data": fig["data"], "layout": fig["layout"]})
    return (
        f'<section id="study"><h2>Study {esc(study["name"])}</h2><p class="meta">'
        f"Optuna's optimisation history and parameter importances of the study's "
        f'trials.</p><div class="panels">{"".join(boxes)}</div></section>'
    ), figures


def _finals(report: Report) -> str:
    """Final values per group: mean and std of the runs' last values, per metric."""
    headers = [("group", False), ("runs", True)]
    for m in report.metrics:
        headers += [(f"{m} mean", True), (f"{m} std", True)]
    rows = []
    per = {m: {f["index"]: f for f in report.final[m]} for m in report.metrics}
    for g in report.groups:
        cells = [_label_cell(g), _num(g["runs"])]
        for m in report.metrics:
            f = per[m].get(g["index"], {})
            bad = f.get("nonfinite") or 0
            note = f"{bad} run(s) NaN/inf" if bad and f.get("mean") is None else None
            cells += [_num(f.get("mean"), note), _num(f.get("std"))]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        "<h2>Final values per group</h2><p class='meta'>mean and std over the runs of each "
        "group of their last value; a last value of NaN or inf is left out of them (a group "
        "with only such runs says so). Click a header to sort.</p>" + _table(headers, rows)
    )


def _records(report: Report) -> str:
    """Each run's ``runlab show`` record, folded."""
    records = report.records
    label_of = {r["run_id"]: r["group"] for r in report.leaderboard}
    recs = "".join(record_html(rec, label_of.get(int(rid))) for rid, rec in records.items())
    more = report.runs - len(records)
    tail = (
        f"<p class='meta'>{more} more run(s): <code>runlab show LOGS RUN_ID</code>.</p>"
        if more > 0
        else ""
    )
    return (
        f'<section id="records"><h2>Run records</h2><p class="meta">what '
        f"<code>runlab show</code> prints for each run; click to open.</p>{recs}{tail}</section>"
    )
