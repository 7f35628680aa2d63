"""runlab: replicable machine-learning experiments on plain files.

A run is a directory; writing it (``launch``, ``RunLogger``) and reading it
(``Reader``) only meet through the files on disk. Heavy modules (Hydra, Polars,
torch) load on first use so that importing ``runlab`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.5.0"

__all__ = ["Context", "Dist", "Reader", "RunLogger", "launch", "runs"]

_LAZY = {
    "launch": "runlab.record.launch",
    "Context": "runlab.record.launch",
    "Dist": "runlab.record.distributed",
    "RunLogger": "runlab.record.logger",
    "Reader": "runlab.results.reader",
    "runs": "runlab.results.reader",
}

if TYPE_CHECKING:  # pragma: no cover
    from runlab.record.distributed import Dist
    from runlab.record.launch import Context, launch
    from runlab.record.logger import RunLogger
    from runlab.results.reader import Reader, runs


# The package's own parts, loaded on first use as attributes (`runlab.record`,
# `runlab.status` after `import runlab`), as the public names above are.
_PARTS = frozenset(
    {"cli", "doctor", "envvars", "errors", "logs", "record", "results", "status", "sweep"}
)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _PARTS:
        return importlib.import_module(f"runlab.{name}")
    raise AttributeError(f"module 'runlab' has no attribute {name!r}")
