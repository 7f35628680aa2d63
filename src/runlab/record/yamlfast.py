"""Block YAML for many similar documents, fast: the configs and infos of a sweep's runs.

PyYAML's representer is pure Python (about 0.3 ms for a small config): 30,000
documents for a 10,000-point sweep would take longer than the whole submission
may. :class:`Emitter` writes the same block style (``key: value``, ``- item``,
keys in order) for plain data, with two shortcuts:

- a scalar's text is computed once per distinct value (strings that PyYAML would
  read back as something else, or that need escapes, are double-quoted with JSON
  escapes, which YAML's double-quoted style accepts; floats use PyYAML's own
  representation);
- the text of a dict or list is remembered by identity: the points of a sweep
  share every sub-config they do not override, so only the overridden path is
  written again.

Anything else (non-string keys, other types) falls back to PyYAML for that
document. ``yaml.safe_load(Emitter().dump(x)) == x`` for the data it accepts.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from runlab.record.files import dump_yaml

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*\Z")


class _Fallback(Exception):
    pass


class Emitter:
    """Dump documents that share sub-structures; one emitter per batch of live objects."""

    def __init__(self) -> None:
        self._memo: dict[tuple[int, int], tuple[Any, str]] = {}
        self._scalars: dict[tuple[type, Any], str] = {}
        self._resolver = yaml.resolver.Resolver()

    def dump(self, data: Any) -> str:
        try:
            if isinstance(data, dict):
                return self._mapping(data, 0) if data else "{}\n"
            if isinstance(data, list):
                return self._sequence(data, 0) if data else "[]\n"
            return self._scalar(data) + "\n"
        except _Fallback:
            return dump_yaml(data)

    # ---------------------------------------------------------------- scalars
    def _scalar(self, value: Any) -> str:
        key = (type(value), value)
        try:
            return self._scalars[key]
        except KeyError:
            pass
        except TypeError:
            raise _Fallback from None
        if value is None:
            text = "null"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, float):
            text = yaml.dump(value, Dumper=yaml.SafeDumper).split("\n", 1)[0]
        elif isinstance(value, str):
            plain = (
                _PLAIN.match(value) is not None
                and self._resolver.resolve(yaml.ScalarNode, value, (True, False))
                == "tag:yaml.org,2002:str"
            )
            text = value if plain else json.dumps(value, ensure_ascii=False)
        else:
            raise _Fallback
        self._scalars[key] = text
        return text

    def _key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise _Fallback
        return self._scalar(key)

    # -------------------------------------------------------------- containers
    def _block(self, value: Any, indent: int) -> str | None:
        """The text of a non-empty container at ``indent``, or ``None`` for an inline value."""
        if isinstance(value, dict) and value:
            return self._mapping(value, indent)
        if isinstance(value, list) and value:
            return self._sequence(value, indent)
        return None

    def _inline(self, value: Any) -> str:
        if isinstance(value, dict):
            return "{}"
        if isinstance(value, list):
            return "[]"
        return self._scalar(value)

    def _mapping(self, data: dict[Any, Any], indent: int) -> str:
        memo = self._memo.get((id(data), indent))
        if memo is not None and memo[0] is data:
            return memo[1]
        pad = " " * indent
        parts = []
        for key, value in data.items():
            block = self._block(value, indent + 2 if isinstance(value, dict) else indent)
            if block is None:
                parts.append(f"{pad}{self._key(key)}: {self._inline(value)}\n")
            else:
                parts.append(f"{pad}{self._key(key)}:\n{block}")
        text = "".join(parts)
        self._memo[(id(data), indent)] = (data, text)
        return text

    def _sequence(self, data: list[Any], indent: int) -> str:
        memo = self._memo.get((id(data), indent))
        if memo is not None and memo[0] is data:
            return memo[1]
        pad = " " * indent
        parts = []
        for item in data:
            block = self._block(item, indent + 2)
            if block is None:
                parts.append(f"{pad}- {self._inline(item)}\n")
            else:
                # The first line of the nested block goes after the dash.
                parts.append(f"{pad}- {block[indent + 2 :]}")
        text = "".join(parts)
        self._memo[(id(data), indent)] = (data, text)
        return text
