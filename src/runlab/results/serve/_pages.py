"""The dashboard's HTML: every value from a run goes through :func:`html.escape`.

The pages carry no script of their own (the Content-Security-Policy forbids inline
scripts): ``static/serve.js`` fills the runs table and the curves from the JSON
endpoints, inserting every value with ``textContent``. The run page is drawn here,
whole, from :func:`runlab.results.serve._data.run_record`.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from runlab.status import hex_colour

NAV = (("/", "runs"), ("/curves", "curves"))


def _e(value: Any) -> str:
    """Any value as HTML text (quotes too: safe in attributes)."""
    return escape(value if isinstance(value, str) else str(value), quote=True)


def frame(title: str, page: str, body: str, *, scripts: tuple[str, ...] = ()) -> str:
    """A whole page: the header with its links, ``body`` (already HTML), the scripts."""
    links = " ".join(
        f'<a href="{href}"{" class=here" if name == page else ""}>{name}</a>' for href, name in NAV
    )
    tags = "".join(f'<script src="/static/{name}"></script>' for name in scripts)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        '<link rel=icon href="data:,"><link rel=stylesheet href="/static/serve.css"></head>'
        f'<body data-page="{_e(page)}"><header><strong>runlab serve</strong> {links}'
        "<span id=live class=dim></span></header>"
        f"<main>{body}</main>{tags}</body></html>\n"
    )


def _filter_form(where: str, error: str | None) -> str:
    message = (
        f"<p id=error class=error role=alert>{_e(error)}</p>"
        if error
        else ("<p id=error class=error role=alert hidden></p>")
    )
    return (
        "<form id=filter autocomplete=off>"
        '<input id=where name=where size=60 placeholder="query, as runlab ls --where: '
        "info.status == 'RUNNING' &amp; config.lr &lt; 0.1\" "
        f'value="{_e(where)}"> <button>filter</button>'
        " <label>metric <select id=metric name=metric></select></label></form>"
        f"{message}"
    )


def runs_page(logs: str, where: str, error: str | None) -> str:
    """The runs table: filled and refreshed by the script."""
    body = (
        f"<h1>runs <span class=dim>in {_e(logs)}</span></h1>{_filter_form(where, error)}"
        "<p id=counts class=dim></p>"
        "<table id=runs><thead></thead><tbody></tbody></table>"
    )
    return frame(f"runs: {logs}", "runs", body, scripts=("serve.js",))


def curves_page(logs: str, where: str, error: str | None) -> str:
    """One panel per metric, one line per run coloured by its group: drawn by the script."""
    body = (
        f"<h1>curves <span class=dim>in {_e(logs)}</span></h1>{_filter_form(where, error)}"
        "<p class=dim>one line per run, coloured by its group (the config keys that "
        "differ, as in runlab report); new rows are added as they are logged</p>"
        "<div id=panels></div>"
    )
    return frame(f"curves: {logs}", "curves", body, scripts=("plotly.min.js", "serve.js"))


def _pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    return f"<pre>{_e(text)}</pre>"


def _section(title: str, content: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{content}</section>"


def run_page(record: dict[str, Any]) -> str:
    """One run: status, error, config, record, metrics, artifacts, its job output's end."""
    rid = record["run_id"]
    status = record.get("status") or ""
    info = record.get("info") or {}
    parts = [
        f'<h1>run {_e(rid)} <span class=status style="color:{hex_colour(status)}">'
        f"{_e(status)}</span></h1><p class=dim>{_e(record.get('path', ''))}</p>"
    ]
    error = info.get("error") if isinstance(info, dict) else None
    if error:
        parts.append(_section("error", _pre(error)))
    if record.get("traceback"):
        parts.append(_section("traceback (end)", _pre("\n".join(record["traceback"]))))
    if record.get("problems"):
        items = "".join(f"<li>{_e(p)}</li>" for p in record["problems"])
        parts.append(_section("problems", f"<ul>{items}</ul>"))
    parts.append(_section("config", _pre(record.get("config"))))
    parts.append(_section("metrics", _pre(record.get("metrics"))))
    for name in ("artifacts", "checkpoints"):
        files = record.get(name) or []
        items = "".join(f"<li>{_e(f)}</li>" for f in files) or "<li class=dim>none</li>"
        parts.append(_section(name, f"<ul class={name}>{items}</ul>"))
    parts.append(_section("record (info)", _pre(info)))
    log = record.get("log")
    where = f" <span class=dim>{_e(record.get('log_path'))}</span>" if log is not None else ""
    parts.append(
        f"<section><h2>job output (its end){where}</h2>"
        + (_pre(log) if log is not None else "<p class=dim>no job output</p>")
        + "</section>"
    )
    return frame(f"run {rid}", "run", "".join(parts))


def message_page(title: str, line: str) -> str:
    """A page that says one thing (no such run, not found)."""
    return frame(title, "message", f"<h1>{_e(title)}</h1><p class=error>{_e(line)}</p>")
