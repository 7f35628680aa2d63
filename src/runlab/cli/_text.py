"""The one path from user data to the terminal.

Config values, metric names, run names, error messages, paths and job output are the
user's text: each command shows them as text, never as rich markup and never as terminal
control. Every command prints them through these functions (``tests/test_render.py``
checks that), so a config value such as ``[/data/train]``, ``[bold]x[/bold]``, an ESC
sequence or a right-to-left override shows as what it is:

- :func:`safe`: any value as plain, visible text. Control, format (bidi) and surrogate
  characters become escapes such as ``\\n``, ``\\x1b`` or ``\\u202e``; a huge value is cut
  with a note of how much was left out.
- :func:`clipped`: a nested config with its huge strings cut, for YAML.
- :func:`m`: :func:`safe`, and escaped for rich markup: what goes into the f-strings that
  a console prints with markup.
- :func:`cell`: :func:`safe` as a ``rich.text.Text``, which rich never parses: table cells.
- :func:`console`: the one rich console of the commands (no highlighting, no emoji codes).
- :func:`output`: a job's output for ``runlab logs``: its lines kept, the rest escaped.

rich is imported inside the functions that need it, so that ``runlab --help`` stays fast.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

#: The most characters of one value shown by default (a config value can be megabytes).
LIMIT = 2000

# Categories shown as escapes: control (C0, DEL, C1), format (bidi overrides, zero-width
# characters...), surrogates (undecodable bytes under surrogateescape), private use, line
# and paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


# Escaped as Python writes them: ``\n`` reads at once, where ``\x0a`` must be looked up.
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# The characters of those categories as code point ranges, per Unicode version of Python
# 3.11 (14.0.0), 3.12 (15.0.0) and 3.13 (15.1.0): one regular expression then finds them at
# the regex engine's speed (gigabytes of job output in ``runlab logs``). Another version's
# ranges are read from ``unicodedata`` once, when first needed (tests/test_render.py checks
# the running version's table against it).
_COMMON = (
    (0x0, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C),
    (0x6DD, 0x6DD), (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E),
    (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F),
    (0xD800, 0xF8FF), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
)  # fmt: skip
_TAIL = (
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
    (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD),
)  # fmt: skip
HIDDEN_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "14.0.0": (*_COMMON, (0x13430, 0x13438), *_TAIL),
    "15.0.0": (*_COMMON, (0x13430, 0x1343F), *_TAIL),
    "15.1.0": (*_COMMON, (0x13430, 0x1343F), *_TAIL),
}


def hidden_ranges_of_unicodedata() -> tuple[tuple[int, int], ...]:
    """The code point ranges of the hidden categories in this Python's ``unicodedata``
    (every code point looked up: about half a second)."""
    ranges: list[tuple[int, int]] = []
    start = None
    for code in range(0x110000):
        hidden = unicodedata.category(chr(code)) in _HIDDEN
        if hidden and start is None:
            start = code
        elif not hidden and start is not None:
            ranges.append((start, code - 1))
            start = None
    if start is not None:
        ranges.append((start, 0x10FFFF))
    return tuple(ranges)


@functools.cache
def _hidden(keep: str) -> re.Pattern[str]:
    """Runs of characters of the hidden categories, but for those of ``keep``."""
    ranges = HIDDEN_RANGES.get(unicodedata.unidata_version) or hidden_ranges_of_unicodedata()
    kept = sorted(ord(c) for c in set(keep))
    parts = []
    for first, last in ranges:
        for code in kept:  # cut the characters kept out of the range
            if first <= code <= last:
                if first < code:
                    parts.append((first, code - 1))
                first = code + 1
        if first <= last:
            parts.append((first, last))
    body = "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in parts
    )
    return re.compile(f"[{body}]+")


def _printable(text: str, keep: str) -> bool:
    """Whether ``text`` holds no character to escape, at C speed: every hidden character is
    one ``str.isprintable`` refuses (it refuses some harmless ones too, such as a no-break
    space: then the regular expression looks, and finds nothing)."""
    for ch in keep:
        if ch in text:  # a search is cheaper than a copy
            text = text.replace(ch, "")
    return text.isprintable()


def _escape_run(run: re.Match[str]) -> str:
    return "".join(map(_escape_char, run[0]))


def safe(value: Any, *, limit: int | None = LIMIT, keep: str = "") -> str:
    """``value`` as text a terminal shows as it is: control, bidi/format and surrogate
    characters as visible escapes (``\\x1b``, ``\\u202e``, ``\\udcff``), bytes decoded with
    their undecodable bytes escaped, and at most ``limit`` characters (None: no limit),
    followed by how many were left out. ``keep``: characters left as they are (``"\\n"``
    where the surface shows several lines)."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "surrogateescape")
    else:
        text = value if isinstance(value, str) else str(value)
    more = 0
    if limit is not None and len(text) > limit:
        text, more = text[:limit], len(text) - limit
    if not _printable(text, keep):
        text = _hidden(keep).sub(_escape_run, text)
    return f"{text}... ({more} more characters)" if more else text


def clipped(data: Any, limit: int = LIMIT) -> Any:
    """``data`` (a config, nested dicts and lists) with every string longer than ``limit``
    cut as :func:`safe` cuts it: for surfaces that format the whole structure (YAML)."""
    if isinstance(data, str) and len(data) > limit:
        return f"{data[:limit]}... ({len(data) - limit} more characters)"
    if isinstance(data, dict):
        return {clipped(k, limit): clipped(v, limit) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [clipped(v, limit) for v in data]
    return data


def m(value: Any, *, limit: int | None = LIMIT, keep: str = "") -> str:
    """:func:`safe`, escaped for rich markup: a value inside a markup string."""
    from rich.markup import escape

    return escape(safe(value, limit=limit, keep=keep))


def cell(value: Any, *, limit: int | None = LIMIT, style: str = "", keep: str = "") -> Any:
    """A table cell (or any printable piece) holding ``value`` as text: a ``rich.text.Text``,
    which rich shows as it is (no markup, no emoji codes). ``keep="\\n"``: several lines."""
    from rich.text import Text

    return Text(safe(value, limit=limit, keep=keep), style=style)


def console(*, stderr: bool = False, width: int | None = None, soft_wrap: bool = False) -> Any:
    """The rich console of the commands: markup only in runlab's own strings (user values go
    through :func:`m` or :func:`cell`), no highlighting of numbers and paths, no emoji codes
    (``:smile:`` in a config value stays text)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, emoji=False, width=width, soft_wrap=soft_wrap)


def output(text: str) -> str:
    """A job's output as a terminal may show it: its lines and tabs kept, a carriage return
    (a progress bar redrawing itself) as a new line, every other control character (colours,
    title changes, cursor moves) and bidi override as a visible escape. Not cut."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return safe(text, limit=None, keep="\n\t")
