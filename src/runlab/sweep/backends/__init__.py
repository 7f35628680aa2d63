"""Schedulers a sweep can run on, behind one protocol (:mod:`.base`).

Each backend is a module of this package named for it, holding a class ``Backend``
that implements :class:`~runlab.sweep.backends.base.Backend`. Modules are imported
when first asked for, so that ``runlab --help`` loads none of them.
"""

from __future__ import annotations

import importlib
from functools import cache

from runlab.sweep.backends.base import Backend, LauncherError

#: the backends, in the order the default is looked for (the first whose client commands
#: are on this machine; the last, local processes, always is)
NAMES: tuple[str, ...] = ("slurm", "sge", "local")

__all__ = ["NAMES", "Backend", "LauncherError", "default", "get"]


@cache
def get(name: str) -> Backend:
    """The backend called ``name``; :class:`LauncherError` naming the known ones."""
    if name not in NAMES:
        raise LauncherError(f"unknown launcher {name!r}", todo=f"use one of {', '.join(NAMES)}")
    module = importlib.import_module(f"{__name__}.{name}")
    backend: Backend = module.Backend()
    return backend


def default() -> str:
    """The first backend whose scheduler's commands are on PATH (local processes last)."""
    for name in NAMES:
        if get(name).available():
            return name
    return NAMES[-1]
