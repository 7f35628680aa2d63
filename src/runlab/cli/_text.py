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


def _visible(ch: str, keep: str) -> str:
    if ch in keep:
        return ch
    if ch.isascii() and ch.isprintable():  # the common case, without a table look-up
        return ch
    return _escape_char(ch) if unicodedata.category(ch) in _HIDDEN else ch


@functools.cache
def _unusual(keep: str) -> re.Pattern[str]:
    """Runs of characters other than printable ASCII and ``keep``."""
    return re.compile(f"[^\\x20-\\x7e{re.escape(keep)}]+")


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
    if not (text.isascii() and text.isprintable()):
        # only the runs of characters outside printable ASCII (and ``keep``) are looked at
        # one by one: job output is mostly ASCII lines, megabytes of it (runlab logs)
        text = _unusual(keep).sub(lambda run: "".join(_visible(c, keep) for c in run[0]), text)
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
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return safe(text, limit=None, keep="\n\t")
