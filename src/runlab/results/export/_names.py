"""Names MLflow accepts: runlab's metric and config names, mapped where MLflow refuses them.

MLflow takes a parameter, metric or tag name made of letters, digits, ``_ - . / :`` and
spaces, which read as a path must not change (no empty, ``.`` or ``..`` parts, no
leading ``/``) and is at most 250 characters. Every other character becomes ``_``, an
empty or dot-only part becomes ``_``, a name over the limit is cut and ends in a hash
of the whole name, and two names that map to one get a hash of their own name each.
"""

from __future__ import annotations

import posixpath
import re

from runlab.results.export._runs import short_hash

_BAD = re.compile(r"[^/\w.\- :]")


def accepted(name: str, limit: int) -> bool:
    """Whether MLflow takes ``name`` as it is."""
    return (
        bool(name)
        and len(name) <= limit
        and not _BAD.search(name)
        and posixpath.normpath(name) == name
        and not name.startswith((".", "/"))
    )


def _mapped(name: str, limit: int) -> str:
    text = _BAD.sub("_", name)
    parts = [("_" + p[1:] if p.startswith(".") else p) or "_" for p in text.split("/")]
    text = "/".join(parts)
    if len(text) > limit:
        text = text[: limit - 9].rstrip("/") + "-" + short_hash(name)
    return text if accepted(text, limit) else "runlab_" + short_hash(name, 16)


class NameMap:
    """Maps names one way, without collisions: the same name always to the same name."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.names: dict[str, str] = {}
        self._used: set[str] = set()

    def add(self, names: list[str]) -> NameMap:
        """Map ``names``: those MLflow takes as they are first, so that they keep their
        name whatever the order."""
        for name in sorted(names, key=lambda n: not accepted(n, self.limit)):
            self(name)
        return self

    def __call__(self, name: str) -> str:
        if name in self.names:
            return self.names[name]
        out = name if accepted(name, self.limit) else _mapped(name, self.limit)
        if out in self._used:
            out = _mapped(f"{out[: self.limit - 9]}-{short_hash(name)}", self.limit)
        self.names[name] = out
        self._used.add(out)
        return out

    @property
    def renamed(self) -> dict[str, str]:
        """The names that were changed: original -> name in MLflow."""
        return {k: v for k, v in self.names.items() if k != v}
