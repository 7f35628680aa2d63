"""Formatting shared by the report's numbers, page and figures: colours, labels, values.

Leaf of the report package: it imports nothing of runlab's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

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
DASHES = ["solid", "dash", "dot", "dashdot"]
MPL_DASHES = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-."}


def palette(i: int) -> tuple[str, str]:
    """Colour and dash style of the ``i``-th group."""
    return PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]


def rgba(hex_colour: str, alpha: float) -> str:
    """``#rrggbb`` with an opacity, as CSS and Plotly read it."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def short(column: str) -> str:
    """A run-table column without its ``config.``/``info.``/``env.`` prefix."""
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


def exact(value: Any) -> str:
    """A value in full (the hover's config): floats to their last digit."""
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return fmt(value)


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip(" \u00b7") + "\u2026"


def finite(value: Any) -> bool:
    """A real number that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_num(value: Any) -> bool:
    """A number, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean_list(values: Sequence[Any]) -> list[Any]:
    """:func:`clean` of each value."""
    return [clean(v) for v in values]


def jsonable(value: Any) -> Any:
    """A record as JSON: non-finite floats spelled out, other objects as text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else fmt(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def plain_text(text: str) -> str:
    """Text for matplotlib as it is: a ``$`` would start mathtext (``$x^2$`` drawn as x²)."""
    return text.replace("$", r"\$")


def file_name(metric: str) -> str:
    """A metric name as a file name (``test.acc_top_it_s``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric)
