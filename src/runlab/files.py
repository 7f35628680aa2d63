"""Small, safe file primitives shared by the writers: atomic YAML, ISO times."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

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
