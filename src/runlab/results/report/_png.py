"""The report's figures as PNG files (matplotlib): one per metric, the best groups."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from runlab.results.report._format import (
    LABEL_CHARS,
    MPL_DASHES,
    file_name,
    palette,
    plain_text,
    shorten,
)
from runlab.results.report._model import Report, Row


def write_pngs(report: Report, out: Path | str, dpi: int = 150) -> list[Path]:
    """One PNG per metric with data: the mean line and mean +/- std band of the best
    ``top`` groups, the legend under the plot (it never narrows the axes). What the
    layout gave each figure's axes goes into ``report.png_layout``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    written = []
    shown = [g for g in report.groups if g["shown"]]
    # Two columns for short labels; one, with room for 100 characters, for long ones.
    wide = max((len(g["label"]) for g in shown), default=0) > LABEL_CHARS
    ncol = 1 if len(shown) <= 3 or wide else 2
    chars = 100 if ncol == 1 else LABEL_CHARS
    rows = math.ceil(len(shown) / ncol) if report.by else 0
    for metric in report.metrics:
        if not report.curves[metric]:
            continue
        fig = plt.figure(figsize=(8.0, 4.4 + 0.22 * rows), layout="constrained")
        ax = fig.add_subplot()
        _draw(ax, report, metric, shown, chars)
        if report.by:
            fig.legend(loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
        path = out / f"{file_name(metric)}.png"
        fig.savefig(path, dpi=dpi)
        # What the layout gave the axes (checked by the tests: the legend never narrows it).
        report.png_layout[metric] = {
            "axes_width_share": round(ax.get_position().width, 3),
            "legend_entries": len(ax.get_legend_handles_labels()[1]),
        }
        plt.close(fig)
        written.append(path)
    return written


def _draw(ax: Any, report: Report, metric: str, shown: list[Row], chars: int) -> None:
    """The mean line and std band of each shown group, the axes' labels and title."""
    import numpy as np

    series = {s["index"]: s for s in report.curves[metric]}
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
            linestyle=MPL_DASHES[dash],
            lw=1.6,
            label=plain_text(shorten(g["label"], chars)),
        )
        if np.any(std > 0):
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.18, lw=0)
    ax.set_xlabel(plain_text(report.x), fontsize=11)
    ax.set_ylabel(plain_text(metric), fontsize=11)
    more = len(report.groups) - len(shown)
    rank = report.rank["metric"]
    note = f"; best {len(shown)} of {len(report.groups)} groups by {rank}" if more else ""
    ax.set_title(plain_text(f"{metric} (mean \u00b1 std over seeds{note})"), fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=9)
