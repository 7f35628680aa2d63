"""Capture the code version and software environment a run executes in.

Everything here is best effort and never fails a run, but nothing is lost
silently either: each part (git, pixi, Python, packages, torch, GPUs) is
captured on its own, so that a failure of one never wipes the others, and
whatever cannot be recorded is written as one line in the record's
``problems`` list (``env.yaml``/``env.json``), which the run prints as a
warning at start and ``runlab show`` / ``runlab reproduce`` print again.

The code version is read with a fixed, small number of ``git`` processes
whatever the size of the tree (``git status --porcelain=v1 -z``,
``git ls-files -z --others --exclude-standard``, ``git diff --binary HEAD``),
and every path and diff is handled as bytes: non-UTF-8 file names and binary
contents are recorded, not fatal.

Untracked files (new files git would add) are copied into the patch
``metadata/git.diff`` only within limits, so that a virtualenv or a data
folder left in the repository does not put gigabytes into every run:

``RUNLAB_UNTRACKED_MAX_FILES`` (default 100)
    at most this many untracked files in the patch;
``RUNLAB_UNTRACKED_MAX_BYTES`` (default 10 MiB)
    at most this many bytes of untracked files in all;
``RUNLAB_UNTRACKED_MAX_FILE_BYTES`` (default 1 MiB)
    an untracked file larger than this is never copied.

Untracked files come in groups, as ``git status`` shows them: a single file,
or the top-most folder that holds only untracked files (``venv/``). Groups are
taken whole, smallest first, while they fit in the limits; a group that does
not fit is left out whole (a file over the per-file limit is left out on its
own). What is left out is listed in ``git.untracked_skipped`` (at most
:data:`SKIPPED_LISTED` entries; ``git.untracked_skipped_files`` counts the
files) and summarised in one ``problems`` line.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runlab.errors import UserError
from runlab.logs import HIDDEN
from runlab.record import codetree

# Set by `runlab submit` for jobs that run from a code snapshot instead of a git checkout.
CODE_COMMIT_ENV = "RUNLAB_CODE_COMMIT"
CODE_BRANCH_ENV = "RUNLAB_CODE_BRANCH"
CODE_DIRTY_ENV = "RUNLAB_CODE_DIRTY"
CODE_SNAPSHOT_ENV = "RUNLAB_CODE_SNAPSHOT"
# JSON {"problems": [...], "untracked_skipped": [...], "untracked_skipped_files": N}: what
# `runlab submit` could not put into the snapshot, carried into each job's env record.
CODE_RECORD_ENV = "RUNLAB_CODE_RECORD"

UNTRACKED_MAX_FILES_ENV = "RUNLAB_UNTRACKED_MAX_FILES"
UNTRACKED_MAX_BYTES_ENV = "RUNLAB_UNTRACKED_MAX_BYTES"
UNTRACKED_MAX_FILE_BYTES_ENV = "RUNLAB_UNTRACKED_MAX_FILE_BYTES"
DEFAULT_UNTRACKED_MAX_FILES = 100
DEFAULT_UNTRACKED_MAX_BYTES = 10 * 2**20
DEFAULT_UNTRACKED_MAX_FILE_BYTES = 2**20
SKIPPED_LISTED = 100  # entries of `git.untracked_skipped` kept in the record

GIT_TIMEOUT_S = 60.0


class GitError(UserError, RuntimeError):
    """A git command failed; the message is one line saying which and why."""


def display_path(path: bytes) -> str:
    """A path from git as text for people and JSON: non-UTF-8 bytes shown as ``\\xNN``."""
    return path.decode("utf-8", "backslashreplace")


def one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on a single line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ------------------------------------------------------------------ limits


@dataclass(frozen=True)
class UntrackedLimits:
    """How much of the untracked files goes into a patch (see the module docstring)."""

    max_files: int = DEFAULT_UNTRACKED_MAX_FILES
    max_bytes: int = DEFAULT_UNTRACKED_MAX_BYTES
    max_file_bytes: int = DEFAULT_UNTRACKED_MAX_FILE_BYTES

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None
    ) -> tuple[UntrackedLimits, list[str]]:
        """The limits set by the ``RUNLAB_UNTRACKED_*`` variables, and one problem per bad value."""
        environ = os.environ if environ is None else environ
        problems: list[str] = []
        values = {}
        for key, name, default in (
            ("max_files", UNTRACKED_MAX_FILES_ENV, DEFAULT_UNTRACKED_MAX_FILES),
            ("max_bytes", UNTRACKED_MAX_BYTES_ENV, DEFAULT_UNTRACKED_MAX_BYTES),
            ("max_file_bytes", UNTRACKED_MAX_FILE_BYTES_ENV, DEFAULT_UNTRACKED_MAX_FILE_BYTES),
        ):
            raw = environ.get(name, "").strip()
            values[key] = default
            if raw:
                try:
                    values[key] = int(raw)
                    if values[key] < 0:
                        raise ValueError
                except ValueError:
                    values[key] = default
                    problems.append(
                        f"{name}={raw!r} is not a whole number of files or bytes; used {default}"
                    )
        return cls(**values), problems

    def describe(self) -> str:
        return (
            f"{self.max_files} files, {_size(self.max_bytes)} in all, "
            f"{_size(self.max_file_bytes)} per file: {UNTRACKED_MAX_FILES_ENV}, "
            "_MAX_BYTES, _MAX_FILE_BYTES"
        )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# --------------------------------------------------------------------- git


def git(
    root: Path, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None
) -> bytes:
    """Run ``git ARGS`` in ``root`` and return its stdout as bytes; :class:`GitError` on failure.

    ``GIT_OPTIONAL_LOCKS=0`` keeps ``git status`` from taking the index lock, so that
    recording a run never gets in the way of the user's own git commands.
    """
    full_env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", **(env or {})}
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=root,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            env=full_env,
            timeout=GIT_TIMEOUT_S,
        )
    except FileNotFoundError:
        raise GitError("git is not installed (not found on PATH)") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"git {args[0]} failed in {root}: {one_line(exc)}") from None
    if proc.returncode != 0:
        message = " ".join(proc.stderr.decode("utf-8", "replace").split())
        raise GitError(f"git {args[0]} failed in {root}: {message or f'exit {proc.returncode}'}")
    return proc.stdout


def git_root(path: Path) -> Path | None:
    """The top of the git work tree holding ``path``; ``None`` outside one.

    Raises :class:`GitError` when git itself is missing or broken.
    """
    path = Path(path)
    start = path if path.is_dir() else path.parent
    try:
        out = git(start, "rev-parse", "--show-toplevel")
    except GitError as exc:
        if "not a git repository" in str(exc).lower():
            return None
        raise
    return Path(os.fsdecode(out.rstrip(b"\n")))


@dataclass
class UntrackedGroup:
    """Untracked files as ``git status`` groups them: one file, or a folder (``venv/``)."""

    name: bytes
    files: list[bytes] = field(default_factory=list)
    sizes: list[int] | None = None  # measured only when the group may fit in the limits

    @property
    def is_folder(self) -> bool:
        return self.name.endswith(b"/")

    def label(self) -> str:
        if self.is_folder:
            return f"{display_path(self.name)} ({len(self.files):,} files)"
        return display_path(self.name)


@dataclass
class WorkTreeChanges:
    """The uncommitted state of a git work tree, read with a fixed number of git processes."""

    root: Path
    tracked: list[tuple[str, bytes]]  # (XY status, path) of changed tracked files
    groups: list[UntrackedGroup]
    included: list[bytes]  # untracked files copied into the patch
    skipped: list[bytes]  # untracked groups or files left out (names as in `groups`)
    skipped_files: int  # how many untracked files are left out in all
    limits: UntrackedLimits
    diff: bytes = b""
    problems: list[str] = field(default_factory=list)
    pathspec: list[str] = field(default_factory=list)  # what every git call looked at
    sources: list[bytes] = field(default_factory=list)  # where renamed files came from

    def changed_paths(self) -> list[bytes]:
        """Every path the patch changes: tracked changes, their rename sources, and the
        untracked files it holds."""
        return [*(p for _, p in self.tracked), *self.sources, *self.included]

    @property
    def dirty(self) -> bool:
        return bool(self.tracked or self.groups)

    def lines(self) -> list[str]:
        """One line per change, ``git status --short`` style; untracked folders with counts."""
        out = [f"{xy} {display_path(path)}" for xy, path in self.tracked]
        out += [f"?? {g.label()}" for g in self.groups]
        return out

    def skipped_summary(self, top: int = 3) -> str:
        """``venv/ (39,412 files), data.bin``: the largest skipped groups first."""
        by_name = {g.name: g for g in self.groups}
        ranked = sorted(self.skipped, key=lambda n: -len(by_name[n].files) if n in by_name else -1)
        labels = [by_name[n].label() if n in by_name else display_path(n) for n in ranked[:top]]
        more = len(self.skipped) - top
        return ", ".join(labels) + (f" and {more} more" if more > 0 else "")

    def skipped_problem(self) -> str | None:
        """The one line that says which untracked files are not recorded, and what to do."""
        if not self.skipped_files:
            return None
        folders = [n for n in self.skipped if n.endswith(b"/")]
        hint = (
            f"add them to .gitignore (echo '{display_path(folders[0])}' >> .gitignore)"
            if folders
            else "add them to .gitignore"
        )
        return (
            f"{self.skipped_files:,} untracked file(s) left out of the recorded patch and code: "
            f"{self.skipped_summary()}, above the limits ({self.limits.describe()}); "
            f"{hint} or commit them"
        )


def _parse_status(out: bytes) -> tuple[list[tuple[str, bytes]], list[bytes], list[bytes]]:
    """``git status --porcelain=v1 -z`` as (tracked changes, untracked names, the
    source paths of renames and copies)."""
    tracked: list[tuple[str, bytes]] = []
    untracked: list[bytes] = []
    sources: list[bytes] = []
    entries = out.split(b"\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        xy, path = entry[:2].decode("ascii", "replace"), entry[3:]
        if xy == "??":
            untracked.append(path)
        elif xy != "!!":
            tracked.append((xy, path))
            if "R" in xy or "C" in xy:
                if i < len(entries):
                    sources.append(entries[i])  # the source path of a rename or copy
                i += 1
    return tracked, untracked, sources


_RUN_PARTS = frozenset({b"metadata", b"metrics", b"artifacts", b"checkpoints", b"ranks"})
_LOGS_FOLDERS = frozenset(os.fsencode(name) for name in HIDDEN)
_RUN_RECORD_PATH = re.compile(
    rb"(?:^|/|\0)(?:[0-9]+/(?:"
    + b"|".join(sorted(_RUN_PARTS))
    + rb")|"
    + b"|".join(re.escape(name) for name in sorted(_LOGS_FOLDERS))
    + rb")/"
)


def _in_run_record(root: Path, path: bytes) -> bool:
    """Whether the untracked file ``path`` belongs to a run record: inside a run directory
    (``<id>/metadata/info.yaml`` beside it) or a logs directory's own folders. Another
    logs directory in the tree (an older one, a colleague's) is never code."""
    if not _RUN_RECORD_PATH.search(path):  # one C-speed test for the usual file
        return False
    parts = path.split(b"/")
    for i, part in enumerate(parts[:-1]):
        if part in _LOGS_FOLDERS:
            return True
        if part.isdigit() and i + 1 < len(parts) - 1 and parts[i + 1] in _RUN_PARTS:
            run = root / os.fsdecode(b"/".join(parts[: i + 1]))
            if (run / "metadata" / "info.yaml").exists() or (
                run / "metadata" / "info.json"
            ).exists():
                return True
    return False


def _group_untracked(names: list[bytes], files: list[bytes]) -> list[UntrackedGroup]:
    groups = {name: UntrackedGroup(name) for name in names}
    folders = {name for name in names if name.endswith(b"/")}
    for path in files:
        parts = path.split(b"/")
        owner = path if path in groups else None
        if owner is None and folders:
            for depth in range(1, len(parts)):
                prefix = b"/".join(parts[:depth]) + b"/"
                if prefix in folders:
                    owner = prefix
                    break
        if owner is None:  # git status and ls-files disagree (a race): a group of its own
            owner = path
            groups.setdefault(path, UntrackedGroup(path))
        groups[owner].files.append(path)
    return [g for g in groups.values() if g.files]


def _choose_untracked(
    root: Path, groups: list[UntrackedGroup], limits: UntrackedLimits
) -> tuple[list[bytes], list[bytes], int]:
    """Which untracked files go into the patch: whole groups, smallest first, within limits."""
    included: list[bytes] = []
    skipped: list[bytes] = []
    skipped_files = 0
    n_files = n_bytes = 0
    base = os.fsencode(root)
    for group in sorted(groups, key=lambda g: (len(g.files), g.name)):
        files = [f for f in group.files if not f.endswith(b"/")]  # a nested repository is no file
        if len(files) != len(group.files) or n_files + len(files) > limits.max_files:
            skipped.append(group.name)
            skipped_files += len(group.files)
            continue
        group.sizes = []
        for f in files:
            try:
                group.sizes.append(os.lstat(os.path.join(base, f)).st_size)
            except OSError:
                group.sizes.append(0)  # gone since git listed it: git diff will say so
        small = [
            (f, s) for f, s in zip(files, group.sizes, strict=True) if s <= limits.max_file_bytes
        ]
        big = [f for f, s in zip(files, group.sizes, strict=True) if s > limits.max_file_bytes]
        size = sum(s for _, s in small)
        if n_bytes + size > limits.max_bytes:
            skipped.append(group.name)
            skipped_files += len(files)
            continue
        included += [f for f, _ in small]
        n_files += len(small)
        n_bytes += size
        skipped += big
        skipped_files += len(big)
    return included, skipped, skipped_files


def record_pathspec(root: Path, exclude: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """The pathspec (``-- . :(exclude,literal)<dir>``) of the work tree at ``root`` less
    the folders ``exclude`` that lie inside it: logs directories, whose run records are
    never part of the code's patch or snapshot (else each run would hold every earlier
    run's record, and a clean tree would be recorded dirty). Empty when none is inside.
    """
    spec: list[str] = []
    top = Path(root).resolve()
    for folder in exclude:
        try:
            rel = Path(folder).resolve().relative_to(top)
        except (OSError, ValueError):
            continue
        if rel.parts:
            spec.append(f":(exclude,literal){rel.as_posix()}")
    return ["--", ".", *spec] if spec else []


def _diff(root: Path, included: list[bytes], pathspec: Sequence[str] = ()) -> bytes:
    """``git diff --binary HEAD`` of the tracked changes plus the ``included`` untracked files.

    The untracked files enter the patch through a throw-away copy of the index in which
    they are marked intent-to-add (``git add -N``): no object is written and the real
    index is untouched. The result applies with ``git apply --binary`` on the commit.
    """
    # Every option that the user's configuration could change is given: the patch is
    # the same whatever their diff settings, and always applies with `git apply`.
    args = [
        *("-c", "diff.suppressBlankEmpty=false", "-c", "diff.context=3"),
        *("-c", "diff.interHunkContext=0", "-c", "core.quotePath=true"),
        # The work tree's bytes as they are: `core.autocrlf` would record a file's CRLF
        # line ends as LF (line-end attributes still apply: see runlab.record.codetree).
        *("-c", "core.autocrlf=false"),
        "diff",
        "--binary",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-relative",
        "--no-renames",
        "--unified=3",
        "--ignore-submodules=all",  # recorded as commits (git.submodules), not as a diff
        "--src-prefix=a/",
        "--dst-prefix=b/",
        "HEAD",
        *pathspec,
    ]
    if not included:
        return git(root, *args)
    index = Path(os.fsdecode(git(root, "rev-parse", "--git-path", "index").rstrip(b"\n")))
    index = index if index.is_absolute() else root / index
    with tempfile.TemporaryDirectory(prefix="runlab-index-") as tmp:
        tmp_index = Path(tmp) / "index"
        env = {"GIT_INDEX_FILE": str(tmp_index)}
        if index.exists():
            shutil.copyfile(index, tmp_index)
        else:
            git(root, "read-tree", "HEAD", env=env)
        git(
            root,
            "--literal-pathspecs",
            "add",
            "--intent-to-add",
            "--force",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
            stdin=b"\0".join(included) + b"\0",
            env=env,
        )
        return git(root, *args, env=env)


def work_tree_changes(
    root: Path,
    limits: UntrackedLimits | None = None,
    with_diff: bool = True,
    exclude: Sequence[str | os.PathLike[str]] = (),
) -> WorkTreeChanges:
    """What differs from HEAD in the work tree at ``root``, and the patch that records it.

    The folders ``exclude`` (logs directories) are left out of both (see
    :func:`record_pathspec`). Costs three to five git processes whatever the number
    of files (well under a second with 40,000 untracked files). Raises
    :class:`GitError` only when ``git status`` itself fails; a failure to build the
    patch is a ``problems`` line.
    """
    problems: list[str] = []
    if limits is None:
        limits, problems = UntrackedLimits.from_env()
    spec = record_pathspec(root, exclude)
    tracked, names, sources = _parse_status(
        git(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal", *spec)
    )
    groups: list[UntrackedGroup] = []
    if names:
        files = git(root, "ls-files", "-z", "--others", "--exclude-standard", *spec)
        found = [f for f in files.split(b"\0") if f]
        if _RUN_RECORD_PATH.search(files):  # one scan of the listing; rarely true
            found = [f for f in found if not _in_run_record(root, f)]
        groups = _group_untracked(names, found)
    included, skipped, skipped_files = _choose_untracked(root, groups, limits)
    changes = WorkTreeChanges(
        root=root,
        tracked=tracked,
        groups=groups,
        included=included,
        skipped=skipped,
        skipped_files=skipped_files,
        limits=limits,
        problems=problems,
        pathspec=spec,
        sources=sources,
    )
    if with_diff and changes.dirty:
        try:
            changes.diff = _diff(root, included, spec)
        except GitError as exc:
            if not included:
                problems.append(f"the uncommitted changes are not recorded: {exc}")
            else:  # retry without the untracked files: the tracked changes matter most
                try:
                    changes.diff = _diff(root, [], spec)
                    problems.append(f"untracked files are not recorded in the patch: {exc}")
                except GitError as exc2:
                    problems.append(f"the uncommitted changes are not recorded: {exc2}")
            changes.skipped += included
            changes.skipped_files += len(included)
            changes.included = []
    return changes


def _in_snapshot(path: Path) -> bool:
    """Whether ``path`` is inside ``$RUNLAB_CODE_SNAPSHOT`` (or no snapshot is named)."""
    snapshot = os.environ.get(CODE_SNAPSHOT_ENV)
    if not snapshot:
        return True
    try:
        return Path(path).resolve().is_relative_to(Path(snapshot).resolve())
    except OSError:
        return False


# The start of the problem recorded when a dirty snapshot's patch cannot be read: the
# run session drops it when the run has its git.diff already (a pre-made run of a sweep
# whose snapshot is older than the patches kept beside snapshots).
PATCH_UNREADABLE = "the patch of the code snapshot is not readable"


def snapshot_patch(snapshot: str | os.PathLike[str]) -> Path:
    """The patch of a dirty code snapshot, kept beside it: ``<store>/<key>.diff``.

    ``runlab submit`` writes it with the snapshot; a task that a job starts from the
    snapshot (not a pre-made run, whose ``git.diff`` the submission wrote) records it
    as its own ``git.diff``, so that its code too can be rebuilt from the commit.
    """
    path = Path(snapshot)
    return path.with_name(path.name + ".diff")


def snapshot_code_record(snapshot: str | os.PathLike[str]) -> Path:
    """The code record of a snapshot (:func:`code_record`), kept beside it as
    ``<store>/<key>.code.json``: a job started from the snapshot records it as its own."""
    path = Path(snapshot)
    return path.with_name(path.name + ".code.json")


def code_record(root: Path, changes: WorkTreeChanges, diff: bytes | None) -> dict[str, Any]:
    """What makes the rebuild of this code checkable (see :mod:`runlab.record.codetree`):
    ``files`` (hashes of the changed and converted files), ``filtered`` (the files a git
    filter writes), ``submodules``, and ``patch_sha256``."""
    crlf, filtered = codetree.converted(root)
    out: dict[str, Any] = {}
    files = codetree.manifest(root, [*changes.changed_paths(), *crlf, *filtered])
    if files:
        out["files"] = files
    if filtered:
        out["filtered"] = sorted(codetree.record_name(p) for p in filtered)
    modules = codetree.submodules(root)
    if modules:
        out["submodules"] = modules
    if diff:
        out["patch_sha256"] = hashlib.sha256(diff).hexdigest()
    return out


def _snapshot_git_record() -> tuple[dict[str, Any], bytes | None, list[str]]:
    """The ``git`` record of a job that runs from a code snapshot: what the
    ``RUNLAB_CODE_*`` variables say, the snapshot's patch and its code record."""
    state: dict[str, Any] = {
        "commit": os.environ[CODE_COMMIT_ENV],
        "branch": os.environ.get(CODE_BRANCH_ENV) or None,
        "dirty": os.environ.get(CODE_DIRTY_ENV) == "1",
        "snapshot": os.environ.get(CODE_SNAPSHOT_ENV) or None,
    }
    problems: list[str] = []
    carried = os.environ.get(CODE_RECORD_ENV)
    if carried:
        try:
            extra = json.loads(carried)
            problems = [str(p) for p in extra.get("problems") or []]
            if extra.get("untracked_skipped_files"):
                state["untracked_skipped_files"] = int(extra["untracked_skipped_files"])
                state["untracked_skipped"] = list(extra.get("untracked_skipped") or [])
        except (ValueError, TypeError, AttributeError) as exc:
            problems.append(f"{CODE_RECORD_ENV} is not readable: {one_line(exc)}")
    patch = None
    if state["snapshot"]:
        try:
            state.update(json.loads(snapshot_code_record(state["snapshot"]).read_bytes()))
        except FileNotFoundError:
            pass  # a snapshot made before the code record existed
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"the code record of the snapshot is not readable: {one_line(exc)}")
    if state["dirty"] and state["snapshot"]:
        try:
            patch = snapshot_patch(state["snapshot"]).read_bytes()
        except OSError as exc:
            problems.append(
                f"{PATCH_UNREADABLE} ({one_line(exc)}): "
                "the code of this run cannot be rebuilt from its commit"
            )
    return state, patch, problems


def git_record(
    path: Path, exclude: Sequence[str | os.PathLike[str]] = ()
) -> tuple[dict[str, Any], bytes | None, list[str]]:
    """The ``git`` part of the record, the patch of a dirty tree, and what could not be recorded.

    The folders ``exclude`` (the logs directory the run is written into) are never part
    of the patch, nor make the tree dirty.

    A job started by ``runlab submit`` (or ``runlab reproduce``) runs from a code
    snapshot: its code version comes from the ``RUNLAB_CODE_*`` variables, and its patch
    was written by the submission. They describe the snapshot: a task whose code is
    elsewhere (one that the job's task starts, from another folder) records its own.
    """
    if os.environ.get(CODE_COMMIT_ENV) and _in_snapshot(path):
        return _snapshot_git_record()
    root = git_root(path)
    if root is None:
        return (
            {"commit": None, "note": "not a git work tree"},
            None,
            [f"{path} is not inside a git work tree: the code version is not recorded"],
        )
    problems = []
    try:
        commit: str | None = git(root, "rev-parse", "--verify", "HEAD").decode().strip()
    except GitError:
        commit = None
        problems.append(f"the repository at {root} has no commit yet: the code is not recorded")
    try:
        branch = git(root, "rev-parse", "--abbrev-ref", "HEAD").decode().strip() or None
    except GitError:
        branch = None
    state: dict[str, Any] = {"commit": commit, "branch": branch, "root": str(root)}
    changes = work_tree_changes(root, with_diff=commit is not None, exclude=exclude)
    state["dirty"] = changes.dirty
    problems += changes.problems
    diff = changes.diff or None
    if commit is not None:
        try:
            state.update(code_record(root, changes, diff))
        except (codetree.RebuildError, OSError) as exc:
            problems.append(f"the hashes of the changed files are not recorded: {one_line(exc)}")
    if changes.skipped_files:
        state["untracked_skipped_files"] = changes.skipped_files
        state["untracked_skipped"] = [display_path(n) for n in changes.skipped[:SKIPPED_LISTED]]
        problems.append(changes.skipped_problem() or "")
    return state, diff, problems


# ------------------------------------------------------------------ the rest


def pixi_state() -> dict[str, Any] | None:
    """The pixi environment this process runs in, with the lock file's hash."""
    name = os.environ.get("PIXI_ENVIRONMENT_NAME")
    if not name:
        return None
    root = os.environ.get("PIXI_PROJECT_ROOT")
    state: dict[str, Any] = {"environment": name, "root": root}
    manifest = os.environ.get("PIXI_PROJECT_MANIFEST")
    if manifest:
        state["manifest"] = manifest
    if root:
        lock = Path(root) / "pixi.lock"
        state["lock_sha256"] = sha256(lock) if lock.exists() else None
    platform_name = os.environ.get("PIXI_ENVIRONMENT_PLATFORMS")
    if platform_name:
        state["platforms"] = platform_name
    return state


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _name_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from the header lines of a distribution's metadata.

    ``dist.metadata`` parses the whole file as an e-mail, long description included:
    about 3 ms a package, 0.4 s for a usual environment, at every run start.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if text is None:
        return None, None
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the headers
        if line.startswith("Name:") and name is None:
            name = line[5:].strip()
        elif line.startswith("Version:") and version is None:
            version = line[8:].strip()
    return name, version


def python_packages() -> dict[str, str]:
    """Every installed Python distribution and its version, sorted by name."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        try:
            name, version = _name_version(dist)
            if name is None or version is None:
                name, version = dist.metadata["Name"], dist.version
            if name and name not in found:
                found[name] = version
        except Exception:  # one broken distribution must not hide the others
            continue
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def conda_packages() -> dict[str, str] | None:
    """Conda packages of the active environment (pixi's), as ``name: version=build``."""
    prefix = os.environ.get("CONDA_PREFIX")
    meta = Path(prefix) / "conda-meta" if prefix else None
    if meta is None or not meta.is_dir():
        return None
    found = {}
    for entry in sorted(meta.glob("*.json")):
        parts = entry.stem.rsplit("-", 2)
        if len(parts) == 3:
            found[parts[0]] = f"{parts[1]}={parts[2]}"
    return found


_CUDA_LINE = re.compile(r"""^cuda\b[^=\n]*=\s*(?:'([^']*)'|"([^"]*)"|None)""", re.M)


def torch_state() -> dict[str, Any] | None:
    """Torch's version and CUDA build, and, only if the task already imported torch, its GPUs.

    The version comes from the package metadata (:mod:`importlib.metadata`) and the
    CUDA build from ``torch/version.py`` read as text: torch is never imported here,
    since importing it costs about 3 s of CPU, a price a task that does not use torch
    must not pay. ``cuda_available``, ``cudnn`` and ``devices`` are recorded only when
    ``torch`` is already in :data:`sys.modules` (a task that imports torch at its top,
    as usual, has it there before its run starts).
    """
    try:
        dist = importlib.metadata.distribution("torch")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    module = sys.modules.get("torch")
    if dist is None and module is None:
        return None
    state: dict[str, Any] = {"version": dist.version if dist else None, "cuda": None}
    if dist is not None:
        try:
            text = Path(str(dist.locate_file("torch/version.py"))).read_text(errors="replace")
            match = _CUDA_LINE.search(text)
            state["cuda"] = (match.group(1) or match.group(2)) if match else None
        except OSError:
            pass
    if module is None:
        return state
    try:
        state["version"] = str(module.__version__)
        state["cuda"] = module.version.cuda
        state["cuda_available"] = bool(module.cuda.is_available())
        if state["cuda_available"]:
            state["cudnn"] = module.backends.cudnn.version()
            state["devices"] = [
                module.cuda.get_device_name(i) for i in range(module.cuda.device_count())
            ]
    except Exception as exc:  # a half-initialised CUDA is worth recording, not raising
        state["cuda_error"] = one_line(exc)
    return state


def gpus() -> list[dict[str, str]]:
    """GPUs seen by the NVIDIA driver (empty without ``nvidia-smi``)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        out = ""
    found = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            found.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return found


def _python() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }


def _platform() -> dict[str, Any]:
    return {"system": platform.system(), "machine": platform.machine()}


def capture(
    code_path: Path, exclude: Sequence[str | os.PathLike[str]] = ()
) -> tuple[dict[str, Any], bytes | None]:
    """The environment record of a run whose code lives at ``code_path``, and its patch
    (which never holds the folders ``exclude``: the run's logs directory).

    Returns the ``env.yaml`` mapping and, when the tree is dirty, the patch (bytes) to
    write as ``metadata/git.diff``. Never raises: each part is captured separately, a
    part that fails is recorded as ``None`` and explained in ``problems`` (a list of
    one-line strings, empty when the record is complete).
    """
    problems: list[str] = []

    def part(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            problems.append(f"{name}: not recorded ({one_line(exc)})")
            return None

    diff: bytes | None = None
    git_part = part("git", lambda: git_record(Path(code_path), exclude))
    if git_part is not None:
        git_state, diff, git_problems = git_part
        problems += [f"git: {p}" for p in git_problems if p]
    else:
        git_state = {"commit": None}
    env: dict[str, Any] = {
        "git": git_state,
        "pixi": part("pixi", pixi_state),
        "python": part("python", _python),
        "platform": part("platform", _platform),
        "torch": part("torch", torch_state),
        "gpus": part("gpus", gpus),
        "conda_packages": part("conda packages", conda_packages),
        "packages": part("packages", python_packages),
        "problems": problems,
    }
    return env, diff
