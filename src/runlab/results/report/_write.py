"""A report's files: ``index.html``, one PNG per metric and ``report.json``."""

from __future__ import annotations

from pathlib import Path

from runlab.results.report._html import write_html
from runlab.results.report._model import Report, write_json
from runlab.results.report._png import write_pngs


def write_report(report: Report, out: Path | str) -> dict[str, Path | list[Path]]:
    """Write ``index.html``, one PNG per metric and ``report.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    html_path = write_html(report, out / "index.html")
    pngs = write_pngs(report, out)
    json_path = write_json(report, out / "report.json")  # after the PNGs: their layout
    return {"html": html_path, "pngs": pngs, "json": json_path}
