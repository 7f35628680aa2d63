"""The report's page: one self-contained ``index.html`` (Plotly's JavaScript inline).

Top to bottom: what is in scope and what was left out; the leaderboard (best runs by
the rank metric, each linking to its record further down); the curves, one panel per
metric beside a fixed-width list of the groups (best first; the best
:data:`runlab.results.report.TOP` drawn, the others one click away; long labels shortened,
the full config on hover); final values per group; every run; and each run's
``runlab show`` record. The layout cannot be squeezed: no Plotly legend or title
inside a figure (the title and the linear/log buttons are HTML above it), so the
plot area keeps its width whatever the labels.

Everything that comes from a config, a metric name or a record is escaped: HTML text
through :func:`html.escape`, data for the scripts as JSON with ``<`` written
``\\u003c``, and labels reach Plotly's hover only through ``customdata``, escaped.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import orjson

from runlab.results.report import _rgba, _short, fmt, palette, shorten
from runlab.status import Status, hex_colour

esc = html.escape


def plotly_text(text: str) -> str:
    """Text for Plotly's titles and hover: Plotly reads a subset of HTML there (tags,
    ``&lt;``, ``&amp;``) but shows ``&quot;`` as it is, so quotes stay quotes."""
    return html.escape(text, quote=False)


_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:16px 24px 10px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:26px 0 8px}
main{padding:0 24px 40px;max-width:1800px}.meta{color:#555;font-size:13px;margin:4px 0}
a{color:#1f5fa8}code{font-size:12px;background:#f1f1f1;padding:0 3px;border-radius:3px}
.status span{display:inline-block;margin:4px 8px 4px 0;padding:2px 10px;border-radius:12px;
color:#fff;font-size:12px;font-weight:600}
.note{background:#fff8e1;border:1px solid #f0d58c;border-radius:6px;padding:6px 12px;
font-size:13px;margin:8px 0}
.tablewrap{max-height:460px;overflow:auto;background:#fff;border:1px solid #ddd;border-radius:6px}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}
td.label{min-width:220px;max-width:420px;overflow-wrap:anywhere}
th{position:sticky;top:0;background:#f3f3f3;cursor:pointer;user-select:none;
overflow-wrap:anywhere;min-width:56px}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
tr.best td{background:#eef7ee;font-weight:600}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;flex:none}
.curves{display:grid;grid-template-columns:minmax(0,1fr) 300px;gap:16px;align-items:start}
@media (max-width:1000px){.curves{grid-template-columns:minmax(0,1fr)}}
.panel{background:#fff;border:1px solid #ddd;border-radius:6px;margin:0 0 16px;padding:8px 8px 4px}
.panel-head{display:flex;align-items:baseline;justify-content:space-between;gap:12px;
flex-wrap:wrap;padding:0 6px;margin-bottom:12px}
.panel-title{font-size:15px;margin:0;font-weight:600;overflow-wrap:anywhere}
.panel-title small{font-weight:400;color:#666;margin-left:6px}
.tools{display:flex;gap:4px;flex:none}
button{font:inherit;font-size:12px;padding:2px 8px;border:1px solid #bbb;border-radius:4px;
background:#fff;cursor:pointer}button.active{background:#e6eefb;border-color:#7a9cd6}
.runlab-plot{width:100%;height:420px}
aside.groups{position:sticky;top:8px;background:#fff;border:1px solid #ddd;border-radius:6px;
padding:8px;max-height:calc(100vh - 16px);display:flex;flex-direction:column}
aside.groups h3{font-size:14px;margin:0 0 4px}
aside.groups .tools{margin:4px 0 6px}
aside.groups ol{list-style:none;margin:0;padding:0;overflow-y:auto;font-size:12px}
aside.groups li label{display:flex;align-items:flex-start;gap:4px;padding:3px 2px;cursor:pointer;
border-bottom:1px solid #f2f2f2}aside.groups .swatch{margin-top:3px}
aside.groups li label:hover{background:#f3f6fb}
aside.groups .name{flex:1;min-width:0;overflow:hidden;display:-webkit-box;-webkit-line-clamp:3;
-webkit-box-orient:vertical;overflow-wrap:anywhere;line-height:1.25}
aside.groups .val{color:#555;font-variant-numeric:tabular-nums}
details.record{background:#fff;border:1px solid #ddd;border-radius:6px;margin:6px 0;padding:4px 10px}
details.record summary{cursor:pointer;font-size:13px;padding:2px 0}
details.record:target,details.record.flash{outline:2px solid #7a9cd6}
details.record pre{background:#f7f7f7;padding:6px 8px;border-radius:4px;font-size:12px;
overflow:auto;max-height:320px;white-space:pre-wrap;overflow-wrap:anywhere}
details.record dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:12.5px;margin:6px 0}
details.record dt{color:#666}details.record dd{margin:0;overflow-wrap:anywhere}
.bad{color:#b3261e}
"""

_SCRIPT = r"""
(function(){
  var errors = [];
  window.addEventListener('error', function(e){ errors.push(String(e.message || e)); });
  window.addEventListener('unhandledrejection', function(e){
    errors.push('unhandled rejection: ' + String(e.reason)); });
  function sortable(table){
    var heads = table.querySelectorAll('thead th');
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

  // A link to a run opens its record.
  function openRecord(){
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    if (el && el.tagName === 'DETAILS') { el.open = true; el.scrollIntoView(); }
  }
  window.addEventListener('hashchange', openRecord);
  document.addEventListener('click', function(e){
    var a = e.target.closest && e.target.closest('a[href^="#run-"]');
    var d = a && document.getElementById(a.getAttribute('href').slice(1));
    if (d) d.open = true;
  });
  openRecord();

  var figures = JSON.parse(document.getElementById('runlab-figures').textContent);
  var config = {responsive: true, displaylogo: false, displayModeBar: 'hover',
    toImageButtonOptions: {format: 'png', scale: 2}};
  var boxes = Array.prototype.slice.call(document.querySelectorAll('aside.groups input[data-g]'));
  function visibility(){
    var on = {};
    boxes.forEach(function(b){ on[b.dataset.g] = b.checked; });
    document.querySelectorAll('.runlab-plot').forEach(function(gd){
      if (!gd.data) return;
      var vis = gd.data.map(function(t){ return on[String(t.meta.g)] !== false; });
      Plotly.restyle(gd, {visible: vis});
    });
  }
  boxes.forEach(function(b){ b.addEventListener('change', visibility); });
  document.querySelectorAll('aside.groups button[data-pick]').forEach(function(btn){
    btn.addEventListener('click', function(){
      var pick = btn.dataset.pick, top = Number(btn.dataset.top || 0);
      boxes.forEach(function(b, i){
        b.checked = pick === 'all' || (pick === 'top' && i < top); });
      visibility();
    });
  });
  document.querySelectorAll('.panel .tools button[data-scale]').forEach(function(btn){
    btn.addEventListener('click', function(){
      var gd = document.getElementById(btn.dataset.plot);
      Plotly.relayout(gd, {'yaxis.type': btn.dataset.scale});
      btn.parentNode.querySelectorAll('button').forEach(function(b){
        b.classList.toggle('active', b === btn); });
    });
  });
  var jobs = figures.map(function(f){
    return Plotly.newPlot(document.getElementById(f.id), f.data, f.layout, config); });
  Promise.all(jobs).then(function(){
    var out = document.getElementById('runlab-selftest');
    var traces = 0;
    document.querySelectorAll('.runlab-plot').forEach(function(gd){
      traces += (gd.data || []).length; });
    out.textContent = JSON.stringify({done: true, panels: jobs.length, traces: traces,
      drawn: document.querySelectorAll('.runlab-plot .scatterlayer .trace').length,
      errors: errors});
  }, function(e){ errors.push(String(e));
    document.getElementById('runlab-selftest').textContent =
      JSON.stringify({done: true, panels: 0, errors: errors}); });
})();
"""


def _script_json(data: Any) -> str:
    """JSON for a ``<script type="application/json">``: no ``<`` at all in it."""
    text = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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


def _label_cell(group: dict[str, Any]) -> str:
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


# ---------------------------------------------------------------- figures
def _figure(report: dict[str, Any], metric: str, div: str) -> dict[str, Any]:
    """A Plotly figure (plain dicts) for one metric: a band and a mean line per group."""
    shown = {g["index"]: g["shown"] for g in report["groups"]}
    label = {g["index"]: plotly_text(g["label"]) for g in report["groups"]}
    data = []
    x_name = plotly_text(report["x"])
    for s in report["curves"][metric]:
        g = s["index"]
        colour, dash = palette(g)
        xs, mean, std = s["x"], s["mean"], s["std"]
        upper = [None if m is None else m + (d or 0.0) for m, d in zip(mean, std, strict=True)]
        lower = [None if m is None else m - (d or 0.0) for m, d in zip(mean, std, strict=True)]
        visible = bool(shown.get(g, True))
        if any(d for d in std if d):
            data.append(
                {
                    "type": "scatter",
                    "x": list(xs) + list(xs[::-1]),
                    "y": upper + lower[::-1],
                    "fill": "toself",
                    "fillcolor": _rgba(colour, 0.15),
                    "line": {"width": 0, "color": colour},
                    "hoverinfo": "skip",
                    "showlegend": False,
                    "visible": visible,
                    "meta": {"g": g, "kind": "band"},
                }
            )
        data.append(
            {
                "type": "scatter",
                "x": xs,
                "y": mean,
                "mode": "lines+markers" if len(xs) == 1 else "lines",
                "line": {"color": colour, "dash": dash, "width": 2},
                "showlegend": False,
                "visible": visible,
                "meta": {"g": g, "kind": "mean"},
                "customdata": [
                    [d, c, lo, hi, label[g]]
                    for d, c, lo, hi in zip(std, s["count"], s["min"], s["max"], strict=True)
                ],
                "hovertemplate": (
                    "<b>%{customdata[4]}</b><br>" + x_name + " %{x}<br>mean %{y:.4g}"
                    "<br>std %{customdata[0]:.3g} · runs %{customdata[1]}"
                    "<br>min %{customdata[2]:.4g} · max %{customdata[3]:.4g}<extra></extra>"
                ),
            }
        )
    layout = {
        "template": "plotly_white",
        "height": 420,
        "autosize": True,
        "margin": {"l": 64, "r": 16, "t": 16, "b": 48},
        "showlegend": False,
        "hovermode": "closest",
        "xaxis": {"title": {"text": x_name}, "zeroline": False},
        "yaxis": {"title": {"text": plotly_text(metric)}, "zeroline": False},
    }
    import plotly.io as pio

    template = pio.templates["plotly_white"].to_plotly_json()["layout"]
    layout["template"] = {"layout": template}
    return {"id": div, "data": data, "layout": layout}


# ------------------------------------------------------------------ record
def _record_html(record: dict[str, Any], group: str | None) -> str:
    import yaml

    rid = record.get("run_id")
    status = record.get("status") or Status.CORRUPT.value
    colour = hex_colour(status)
    summary = (
        f'<summary><b>run {esc(str(rid))}</b> <span style="color:{colour};font-weight:600">'
        f"{esc(status)}</span>" + (f" &middot; {esc(group)}" if group else "") + "</summary>"
    )
    info = record.get("info") if isinstance(record.get("info"), dict) else {}
    facts = [
        ("path", record.get("path")),
        ("started", info.get("start_time")),
        ("ended", info.get("end_time")),
        ("duration", f"{info['duration_s']:.1f} s" if _is_num(info.get("duration_s")) else None),
        ("host", info.get("host")),
        ("job", info.get("job_id")),
        ("attempts", info.get("attempts")),
        ("command", f"runlab show {record.get('path', '').rsplit('/', 1)[0]} {rid}"),
    ]
    parts = [summary, "<dl>"]
    parts += [f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in facts if v not in (None, "")]
    parts.append("</dl>")
    error = info.get("error")
    if isinstance(error, dict):
        parts.append(
            f'<p class="bad">{esc(str(error.get("type")))}: {esc(str(error.get("message")))}</p>'
        )

    def block(title: str, data: Any) -> None:
        if data:
            try:
                text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
            except yaml.YAMLError:
                text = str(data)
            parts.append(f"<b>{esc(title)}</b><pre>{esc(text)}</pre>")

    block("config", record.get("config"))
    block("overrides", record.get("overrides"))
    env = record.get("env")
    if isinstance(env, dict):
        block("environment", {k: v for k, v in env.items() if k != "problems"})
    metrics = record.get("metrics") or {}
    if metrics:
        lines = []
        for name, summary_ in metrics.items():
            keys = sorted({k.rsplit(".", 1)[0] for k in summary_ if k.endswith(".last")})
            bits = [f"{summary_.get('rows', 0)} rows"]
            for key in keys:
                vals = [summary_.get(f"{key}.{s}") for s in ("last", "min", "max")]
                bits.append(f"{key} " + " / ".join(fmt(v) for v in vals if v is not None))
            lines.append(f"{name}: " + ", ".join(bits))
        parts.append(f"<b>metrics</b> (last / min / max)<pre>{esc(chr(10).join(lines))}</pre>")
    for sub in ("artifacts", "checkpoints"):
        if record.get(sub):
            parts.append(f"<b>{sub}</b>: {esc(', '.join(map(str, record[sub][:20])))}<br>")
    if record.get("traceback"):
        parts.append(
            f'<b>traceback</b> (last lines)<pre class="bad">{esc(chr(10).join(record["traceback"]))}</pre>'
        )
    for problem in record.get("problems") or []:
        parts.append(f'<p class="bad">problem: {esc(str(problem))}</p>')
    return f'<details class="record" id="run-{esc(str(rid))}">{"".join(parts)}</details>'


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -------------------------------------------------------------------- page
def write_html(report: dict[str, Any], path: Path | str) -> Path:
    """``index.html``: one self-contained page (Plotly's JavaScript inline)."""
    from plotly.offline import get_plotlyjs

    path = Path(path)
    records = report.get("records") or {}
    groups = {g["index"]: g for g in report["groups"]}
    metrics = report["metrics"]
    rank, maximise = report["rank"]["metric"], report["rank"]["maximise"]
    nonfinite = report.get("nonfinite", {})
    parts: list[str] = []

    # ---- scope and what was left out
    scope = report.get("scope") or {}
    head = [f"{report['runs']} run(s): {esc(scope.get('text', 'the selected runs'))}"]
    if scope.get("where"):
        head.append(f"where <code>{esc(scope['where'])}</code>")
    head.append(f"<code>{esc(report['logs'])}</code>")
    notes = []
    if scope.get("outside"):
        how = "<code>--all</code> for every run"
        if scope.get("sweeps", 0) > 1:
            how += ", <code>--sweep ID</code> for another sweep"
        notes.append(
            f"{scope['outside']} other run(s) of the logs directory are not in this report ({how})."
        )
    if report["left_out"]:
        links = ", ".join(
            f'<a href="#run-{r["run_id"]}">{r["run_id"]}</a> ({esc(shorten(r["why"], 90))})'
            if str(r["run_id"]) in records
            else f"{r['run_id']} ({esc(shorten(r['why'], 90))})"
            for r in report["left_out"][:100]
        )
        more = f" and {len(report['left_out']) - 100} more" if len(report["left_out"]) > 100 else ""
        notes.append(
            f"Left out of the curves and the leaderboard: {len(report['left_out'])} run(s) that "
            f"failed or cannot be read: {links}{more}."
        )
    for metric in metrics:
        lacking = report["missing"].get(metric, [])
        if lacking and report["curves"][metric]:
            ids = ", ".join(str(r) for r in lacking[:50])
            more = f" and {len(lacking) - 50} more" if len(lacking) > 50 else ""
            notes.append(
                f"<b>{esc(metric)}</b>: {len(lacking)} of {report['plotted']} run(s) never "
                f"logged it and are left out of its panel (run {esc(ids)}{more})."
            )
        elif not report["curves"][metric]:
            notes.append(f"<b>{esc(metric)}</b>: no run logged it.")
    status = "".join(
        f'<span style="background:{hex_colour(s)}">{esc(s)} {n}</span>'
        for s, n in report["status"].items()
    )
    by = ", ".join(esc(_short(c)) for c in report["by"]) or "(one group)"
    folded = report.get("folded") or {}
    fold_text = (
        " ("
        + ", ".join(f"{esc(_short(k))} with {esc(_short(v))}" for k, v in folded.items())
        + " folded in)"
        if folded
        else ""
    )
    seeds = (
        f" &middot; averaged over {esc(', '.join(_short(s) for s in report['seeds']))}"
        if report.get("seeds")
        else ""
    )
    header = (
        f'<header><h1>{esc(report["title"])}</h1><div class="meta">{" &middot; ".join(head)}</div>'
        f'<div class="meta">{len(report["groups"])} group(s) by {by}{fold_text}{seeds}'
        f' &middot; x: {esc(report["x"])}</div><div class="status">{status}</div>'
        + "".join(f'<div class="note">{n}</div>' for n in notes)
        + "</header>"
    )

    # ---- leaderboard
    better = "higher" if maximise else "lower"
    others = [m for m in metrics if m != rank]
    has_seed = any(r["seed"] is not None for r in report["leaderboard"])
    headers = [("#", True), ("run", True), (f"{rank} (final)", True)]
    headers += [(m, True) for m in others]
    headers += [("config", False)] + ([("seed", True)] if has_seed else [])
    headers += [("status", False), ("started", False)]
    rows = []
    for i, r in enumerate(report["leaderboard"]):
        bad = nonfinite.get(str(r["run_id"]), {})
        g = groups.get(r["index"])
        cells = [
            _num(r["rank"]),
            _run_link(r["run_id"], records),
            _num(r["value"], bad.get(rank)),
            *[_num(r["metrics"].get(m), bad.get(m)) for m in others],
            _label_cell(g) if g else _text(r["group"]),
            *([_num(r["seed"])] if has_seed else []),
            _text(r["status"]),
            _text((r.get("start_time") or "")[:16].replace("T", " ")),
        ]
        cls = ' class="best"' if i == 0 and r["rank"] == 1 else ""
        rows.append(f'<tr{cls} data-run="{r["run_id"]}">{"".join(cells)}</tr>')
    parts.append(
        f'<section id="leaderboard"><h2>Best runs by {esc(rank)}</h2>'
        f"<p class='meta'>each run's last value of {esc(rank)}, {better} is better; "
        f"config: what distinguishes its group (hover for the full config); the run id "
        f"opens its record. Click a header to sort.</p>"
        f"{_table(headers, rows, 'sortable leaderboard')}</section>"
    )

    # ---- curves and the group list
    figures, panels = [], []
    for i, metric in enumerate(metrics):
        if not report["curves"][metric]:
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
    finals = {g: f for g, f in ((f["index"], f) for f in report["final"].get(rank, []))}
    top = report["top"]
    items = []
    for g in report["groups"]:
        value = finals.get(g["index"], {}).get("mean")
        checked = " checked" if g["shown"] else ""
        items.append(
            f'<li><label title="{esc(g["full"])}"><input type="checkbox" data-g="{g["index"]}"'
            f'{checked}>{_swatch(g["index"])}<span class="name">{esc(shorten(g["label"], 72))}</span>'
            f'<span class="val">{esc(fmt(value)) if value is not None else ""}</span></label></li>'
        )
    n = len(report["groups"])
    pick = (
        f'<div class="tools"><button type="button" data-pick="top" data-top="{top}">best {top}</button>'
        f'<button type="button" data-pick="all">all</button>'
        f'<button type="button" data-pick="none">none</button></div>'
        if n > 1
        else ""
    )
    shown_note = f"best {min(top, n)} of {n} drawn; tick to add" if n > top else f"{n} group(s)"
    aside = (
        f'<aside class="groups"><h3>Groups</h3><div class="meta">{shown_note}; ordered by '
        f"{esc(rank)} (mean final value)</div>{pick}<ol>{''.join(items)}</ol></aside>"
    )
    parts.append(
        f'<section id="curves"><h2>Curves</h2><div class="curves"><div class="panels">'
        f"{''.join(panels)}</div>{aside}</div></section>"
    )

    # ---- a `runlab tune` study: Optuna's own figures (runlab report --study NAME)
    study = report.get("study")
    if study and study.get("figures"):
        boxes = []
        for i, fig in enumerate(study["figures"]):
            div = f"runlab-study-{i}"
            boxes.append(
                f'<div class="panel"><div class="panel-head"><h3 class="panel-title">'
                f'{esc(fig["title"])}</h3></div><div id="{div}" class="study-plot"></div></div>'
            )
            figures.append({"id": div, "data": fig["data"], "layout": fig["layout"]})
        parts.append(
            f'<section id="study"><h2>Study {esc(study["name"])}</h2><p class="meta">'
            f"Optuna's optimisation history and parameter importances of the study's "
            f'trials.</p><div class="panels">{"".join(boxes)}</div></section>'
        )

    # ---- final values per group
    headers = [("group", False), ("runs", True)]
    for m in metrics:
        headers += [(f"{m} mean", True), (f"{m} std", True)]
    rows = []
    per = {m: {f["index"]: f for f in report["final"][m]} for m in metrics}
    for g in report["groups"]:
        cells = [_label_cell(g), _num(g["runs"])]
        for m in metrics:
            f = per[m].get(g["index"], {})
            bad = f.get("nonfinite") or 0
            note = f"{bad} run(s) NaN/inf" if bad and f.get("mean") is None else None
            cells += [_num(f.get("mean"), note), _num(f.get("std"))]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    parts.append(
        "<h2>Final values per group</h2><p class='meta'>mean and std over the runs of each "
        "group of their last value; a last value of NaN or inf is left out of them (a group "
        "with only such runs says so). Click a header to sort.</p>" + _table(headers, rows)
    )

    # ---- records
    label_of = {r["run_id"]: r["group"] for r in report["leaderboard"]}
    recs = "".join(_record_html(rec, label_of.get(int(rid))) for rid, rec in records.items())
    more = report["runs"] - len(records)
    tail = (
        f"<p class='meta'>{more} more run(s): <code>runlab show LOGS RUN_ID</code>.</p>"
        if more > 0
        else ""
    )
    parts.append(
        f'<section id="records"><h2>Run records</h2><p class="meta">what '
        f"<code>runlab show</code> prints for each run; click to open.</p>{recs}{tail}</section>"
    )

    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(report["title"])}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
{header}
<main>
{"".join(parts)}
</main>
<pre id="runlab-selftest" hidden></pre>
<script type="application/json" id="runlab-figures">{_script_json(figures)}</script>
<script type="text/javascript">{_SCRIPT}</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
