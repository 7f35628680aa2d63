"""Small, safe file primitives shared by the writers: atomic YAML with JSON twins, ISO times.

Every metadata file a reader needs (``config``, ``info``, ``env``) is written twice,
as ``<name>.json`` for machines and ``<name>.yaml`` for people, from the same data:
readers parse the JSON (fast, no YAML on their hot path, no alias bombs) and fall
back to the YAML only for records made by hand or by older versions.

Non-finite floats are stored as the JSON strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` so that a strict JSON parser reads every file.
"""

from __future__ import annotations

import math
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

try:  # the C emitter/loader is ~10x faster; fall back quietly where libyaml is absent
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


def now_iso() -> str:
    """The current local time in ISO 8601 with its UTC offset (millisecond precision)."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def write_yaml(path: Path, data: Any) -> None:
    """Write ``data`` as YAML atomically."""
    write_atomic(path, dump_yaml(data).encode())


def read_yaml(path: Path) -> Any:
    """Parse a YAML file (``None`` for an empty one)."""
    with open(path, "rb") as fh:
        return yaml.load(fh, Loader=_Loader)


NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_float(value: float) -> float | str:
    """A float as stored in JSON: itself when finite, else ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _json_safe(data: Any) -> Any:
    if isinstance(data, float):
        return encode_float(data)
    if isinstance(data, dict):
        return {str(k) if not isinstance(k, str) else k: _json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json_safe(v) for v in data]
    if isinstance(data, int) and not isinstance(data, bool) and not -(2**63) <= data < 2**64:
        return str(data)  # orjson stores 64-bit integers; a larger one survives as text
    return data


def dumps_json(data: Any) -> bytes:
    """``data`` as strict JSON (non-finite floats as strings, keys as text), newline-terminated."""
    return orjson.dumps(_json_safe(data), option=orjson.OPT_APPEND_NEWLINE)


def write_record(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` (a ``.yaml`` file) and its JSON twin ``path.with_suffix('.json')``.

    The JSON goes first: a reader that finds it has the newest state even if the
    YAML for people is not replaced yet.
    """
    path = Path(path)
    write_atomic(path.with_suffix(".json"), dumps_json(data))
    write_atomic(path, dump_yaml(data).encode())
