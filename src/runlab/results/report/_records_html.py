"""One run's ``runlab show`` record on the report's page: a ``<details>`` block.

Every value from the record (config, environment, errors, paths) is HTML-escaped.
"""

from __future__ import annotations

import html
from typing import Any

import yaml

from runlab.results.report._format import fmt, is_num
from runlab.status import Status, hex_colour

esc = html.escape


def record_html(record: dict[str, Any], group: str | None) -> str:
    """The record of one run, folded, with its id as the anchor ``#run-<id>``."""
    rid = record.get("run_id")
    status = record.get("status") or Status.CORRUPT.value
    summary = (
        f'<summary><b>run {esc(str(rid))}</b> <span style="color:{hex_colour(status)};'
        f'font-weight:600">{esc(status)}</span>'
        + (f" &middot; {esc(group)}" if group else "")
        + "</summary>"
    )
    info = got if isinstance(got := record.get("info"), dict) else {}
    parts = [summary, "<dl>", *_facts(record, info), "</dl>"]
    error = info.get("error")
    if isinstance(error, dict):
        parts.append(
            f'<p class="bad">{esc(str(error.get("type")))}: {esc(str(error.get("message")))}</p>'
        )
    parts += _block("config", record.get("config"))
    parts += _block("overrides", record.get("overrides"))
    env = record.get("env")
    if isinstance(env, dict):
        parts += _block("environment", {k: v for k, v in env.items() if k != "problems"})
    parts += _metrics(record.get("metrics") or {})
    for sub in ("artifacts", "checkpoints"):
        if record.get(sub):
            parts.append(f"<b>{sub}</b>: {esc(', '.join(map(str, record[sub][:20])))}<br>")
    if record.get("traceback"):
        parts.append(
            f'<b>traceback</b> (last lines)<pre class="bad">'
            f"{esc(chr(10).join(record['traceback']))}</pre>"
        )
    for problem in record.get("problems") or []:
        parts.append(f'<p class="bad">problem: {esc(str(problem))}</p>')
    return f'<details class="record" id="run-{esc(str(rid))}">{"".join(parts)}</details>'


def _facts(record: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """Path, times, host, job, attempts and the command that shows the run."""
    rid = record.get("run_id")
    duration = info.get("duration_s")
    facts = [
        ("path", record.get("path")),
        ("started", info.get("start_time")),
        ("ended", info.get("end_time")),
        ("duration", f"{duration:.1f} s" if is_num(duration) else None),
        ("host", info.get("host")),
        ("job", info.get("job_id")),
        ("attempts", info.get("attempts")),
        ("command", f"runlab show {record.get('path', '').rsplit('/', 1)[0]} {rid}"),
    ]
    return [f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in facts if v not in (None, "")]


def _block(title: str, data: Any) -> list[str]:
    """A titled YAML block (config, overrides, environment), empty when there is none."""
    if not data:
        return []
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        text = str(data)
    return [f"<b>{esc(title)}</b><pre>{esc(text)}</pre>"]


def _metrics(metrics: dict[str, Any]) -> list[str]:
    """Each metrics file's rows and each key's last / min / max."""
    if not metrics:
        return []
    lines = []
    for name, summary in metrics.items():
        keys = sorted({k.rsplit(".", 1)[0] for k in summary if k.endswith(".last")})
        bits = [f"{summary.get('rows', 0)} rows"]
        for key in keys:
            vals = [summary.get(f"{key}.{s}") for s in ("last", "min", "max")]
            bits.append(f"{key} " + " / ".join(fmt(v) for v in vals if v is not None))
        lines.append(f"{name}: " + ", ".join(bits))
    return [f"<b>metrics</b> (last / min / max)<pre>{esc(chr(10).join(lines))}</pre>"]
