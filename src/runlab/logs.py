"""A logs directory: where it is when nothing names one, and what lives in it.

The rule, the same for a task and every command:

1. ``--logs DIR`` (or a task's ``runlab.logs=DIR``), when given;
2. else ``$RUNLAB_LOGS``;
3. else ``logs/`` in the project root: the nearest directory at or above the
   current one that holds ``pixi.toml``, ``pyproject.toml`` or ``.git``. So
   ``cd tasks && python train.py`` and ``runlab report`` from a subdirectory use
   the project's one ``logs/``. Outside any project, ``./logs``.

Layout::

    <logs>/<run_id>/          one run (see runlab.record.rundir)
    <logs>/.sweeps/<id>.json  a sweep's record (runlab.sweep.record)
    <logs>/.studies/<name>/   a tune study's journal
    <logs>/.snapshots/<hash>/ the code a sweep was submitted with
    <logs>/.runlab-index/     the reader's cache: safe to delete
    <logs>/.runlab-index/changed/<run_id>.<time_ns>.<pid>.<hex>
                              made when a run's record reaches or leaves an end
                              (``Reader(refresh="changes")`` rereads just those runs)
    <logs>/.aside/<time>/     what `runlab verify --repair` moved aside (never deleted)

Hidden folders are never runs; every module asks this one for their names.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runlab.errors import UserError

LOGS_ENV = "RUNLAB_LOGS"
REFRESH_ENV = "RUNLAB_REFRESH"  # `changes`: readers look only at runs whose end changed
DEFAULT_NAME = "logs"
PROJECT_MARKERS = ("pixi.toml", "pyproject.toml", ".git")

SWEEPS = ".sweeps"
STUDIES = ".studies"
SNAPSHOTS = ".snapshots"
INDEX = ".runlab-index"
ASIDE = ".aside"  # what `runlab verify --repair` moved out of the way (never deleted)
HIDDEN = (SWEEPS, STUDIES, SNAPSHOTS, INDEX, ASIDE)
CHANGED = "changed"  # inside INDEX: one empty file per change of a run's end (note_change)

WHERE_HINT = "pass --logs DIR, or set RUNLAB_LOGS"

# A run id is a canonical positive decimal integer in ASCII: `7`, never `007`, `²` or `١٢`.
# Anything else in a logs directory is not a run, whoever made it.
_RUN_ID = re.compile(r"[1-9][0-9]{0,17}\Z", re.ASCII)
MAX_RUN_ID = 10**18 - 1


def is_run_id(name: str) -> bool:
    """Whether a folder name is a canonical run id (``[1-9][0-9]*``, ASCII, at most 18 digits)."""
    return _RUN_ID.match(name) is not None


class NoLogsError(UserError):
    """There is no logs directory where one was looked for."""


def project_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest directory at or above ``start`` (default: the current one) that holds
    ``pixi.toml``, ``pyproject.toml`` or ``.git``; ``None`` outside any project."""
    here = Path(start if start is not None else os.getcwd()).absolute()
    for folder in (here, *here.parents):
        if any(os.path.lexists(folder / marker) for marker in PROJECT_MARKERS):
            return folder
    return None


def default_path(start: str | os.PathLike[str] | None = None) -> Path:
    """The logs directory when nothing names one: ``$RUNLAB_LOGS``, else the project
    root's ``logs/``, else ``./logs`` (absolute)."""
    env = os.environ.get(LOGS_ENV)
    if env:
        return Path(env).absolute()
    root = project_root(start)
    base = root if root is not None else Path(start if start is not None else os.getcwd())
    return (base / DEFAULT_NAME).absolute()


def note_change(run_path: str | os.PathLike[str]) -> None:
    """Say that the record of the run at ``run_path`` reached an end or left one (its
    ``info`` written with a status outside the active ones before or after): a new empty
    file ``<logs>/.runlab-index/changed/<run_id>.<time_ns>.<pid>.<random>``.

    A reader that trusts its index for the runs that have ended (``refresh="changes"``)
    rereads those named by a file whose time is past its index's stamp. The folder
    exists only where such a reader made it: nothing is made here when it is absent, and
    a folder that cannot be written is left alone. Each change is a file of its own,
    never touched again, so a reader may delete old ones without a race with a writer.
    """
    path = os.path.join(os.path.dirname(os.fspath(run_path)), INDEX, CHANGED)
    if not os.path.isdir(path):
        return
    run_id = os.path.basename(os.fspath(run_path))
    name = f"{run_id}.{time.time_ns()}.{os.getpid()}.{os.urandom(3).hex()}"
    try:
        os.close(os.open(os.path.join(path, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError:
        pass


def changed_file(name: str) -> tuple[int, float] | None:
    """``(run id, time in seconds)`` of a file ``note_change`` made, from its name;
    ``None`` for any other name."""
    parts = name.split(".")
    if len(parts) != 4 or not is_run_id(parts[0]) or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1]) / 1e9


@dataclass(frozen=True)
class Logs:
    """One logs directory (an absolute path) and the places in it."""

    path: Path

    @classmethod
    def resolve(cls, value: str | os.PathLike[str] | None = None) -> Logs:
        """``value`` when given (``--logs``), else the default (see the module)."""
        return cls(Path(value).absolute() if value else default_path())

    @classmethod
    def existing(cls, value: str | os.PathLike[str] | None = None) -> Logs:
        """Like :meth:`resolve`, for reading: a :class:`NoLogsError` if it is not a directory."""
        logs = cls.resolve(value)
        if not logs.path.is_dir():
            hint = "check the path" if value else WHERE_HINT
            raise NoLogsError("no logs directory", where=logs.path, todo=hint)
        return logs

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def sweeps(self) -> Path:
        """``.sweeps/``: one JSON record per sweep."""
        return self.path / SWEEPS

    @property
    def studies(self) -> Path:
        """``.studies/``: the journals of ``runlab tune``."""
        return self.path / STUDIES

    @property
    def snapshots(self) -> Path:
        """``.snapshots/``: the code of submitted sweeps, by content hash."""
        return self.path / SNAPSHOTS

    @property
    def index(self) -> Path:
        """``.runlab-index/``: the reader's cache."""
        return self.path / INDEX

    def run(self, run_id: int | str) -> Path:
        """The directory of run ``run_id``."""
        return self.path / str(run_id)

    def run_ids(self) -> Iterator[int]:
        """The ids of the run directories (canonical decimal names), in no order."""
        try:
            entries = os.scandir(self.path)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                if is_run_id(entry.name) and entry.is_dir(follow_symlinks=False):
                    yield int(entry.name)
