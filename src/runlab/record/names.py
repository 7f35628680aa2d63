"""Names a task passes to runlab are data, never paths.

A metrics file, an artifact or a checkpoint is named by the task
(``log_metrics(name=)``, ``log_artifact(name=)``, ``log_checkpoint(name=)``,
``load_checkpoint(name=)``), and runlab turns the name into a file inside the run
directory. :func:`check_name` makes sure it stays there: a name is one plain file
name, so ``../../x``, ``/etc/x``, ``a/b`` or a NUL byte are refused at the call,
before anything is written or read.
"""

from __future__ import annotations

import unicodedata

from runlab.errors import UserError

#: Longest name, in UTF-8 bytes: file systems allow 255, and runlab adds suffixes
#: (``.jsonl``, ``.pt``) and a temporary ``.<name>.tmp`` around it.
MAX_NAME_BYTES = 200


class BadNameError(UserError, ValueError):
    """A name given to runlab that is not one plain file name (a ``ValueError`` too)."""


def check_name(value: object, argument: str) -> str:
    """Return ``value`` if it is a safe file name, else raise :class:`BadNameError`
    naming ``argument``.

    A safe name is a non-empty ``str`` of at most :data:`MAX_NAME_BYTES` UTF-8
    bytes that holds no ``/`` or ``\\``, no ``..``, no NUL, control or invisible
    format character, does not start or end with a space, and does not start with
    ``.`` (hidden and temporary files are runlab's own).
    """
    problem = _problem(value)
    if problem is None:
        return value  # type: ignore[return-value]
    raise BadNameError(
        f"{argument}={value!r} is not a valid name: {problem}; use a plain file name "
        "such as 'train' or 'model.pt' (letters, digits, '-', '_' and '.')"
    )


def _problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"it is a {type(value).__name__}, not a str"
    if not value:
        return "it is empty"
    if "/" in value or "\\" in value:
        return "it holds a path separator"
    if ".." in value:
        return "it holds '..'"
    if value.startswith("."):
        return "it starts with '.'"
    if not value.isprintable():
        # Cc: NUL, newline...; Cf: invisible format characters (the right-to-left
        # override that disguises a name, zero-width spaces, a BOM); Zl, Zp: line breaks.
        bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
        if bad:
            return f"it holds a control or invisible character ({bad[0]!a})"
    if not value.strip():
        return "it is only spaces"
    if value != value.strip():
        return "it starts or ends with a space"
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        return "it is not valid text"
    if size > MAX_NAME_BYTES:
        return f"it is {size} bytes long, more than {MAX_NAME_BYTES}"
    return None
