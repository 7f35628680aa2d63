"""Pin a sweep to its code: check the git tree, then copy it once per code version.

Jobs run from the snapshot, not from the working tree, so a job that starts
hours later in a queue runs exactly the code it was submitted with.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runlab.errors import UserError
from runlab.record import codetree
from runlab.record.environment import (
    SKIPPED_LISTED,
    GitError,
    WorkTreeChanges,
    code_record,
    display_path,
    git,
    git_root,
    record_pathspec,
    snapshot_code_record,
    snapshot_patch,
    work_tree_changes,
)
from runlab.record.files import dir_mode, file_mode, open_dir, write_atomic


class CodeStateError(UserError, RuntimeError):
    """The git tree cannot pin the code of a sweep (not a repository, or dirty)."""


@dataclass
class CodeState:
    """The code a sweep is pinned to: a commit, plus the uncommitted changes as a patch.

    ``diff`` is bytes (binary files and non-UTF-8 names survive). Untracked files above
    the limits of :mod:`runlab.record.environment` are in neither the patch nor the snapshot;
    ``work`` lists them (``skipped_problem()`` says so in one line).
    """

    root: Path
    commit: str
    branch: str | None
    changes: list[str]  # one line per change, `git status --short` style
    diff: bytes
    work: WorkTreeChanges | None = None
    exclude: tuple[Path, ...] = ()  # logs directories: never part of the patch or snapshot

    @property
    def dirty(self) -> bool:
        return bool(self.changes)

    @property
    def key(self) -> str:
        """The snapshot's name: the commit, plus a hash of the changes when dirty."""
        if not self.dirty:
            return self.commit
        digest = hashlib.sha256(self.diff)  # the untracked files copied are in the diff
        return f"{self.commit}-dirty-{digest.hexdigest()[:12]}"

    def skipped_problem(self) -> str | None:
        """One line naming the untracked files left out of patch and snapshot, or ``None``."""
        return self.work.skipped_problem() if self.work else None

    def record(self) -> dict[str, Any]:
        """What the jobs' env records must say about the code beyond the commit."""
        if not self.work:
            return {}
        problems = list(self.work.problems)
        if self.work.skipped_files:
            problems.append(self.work.skipped_problem() or "")
        return {
            "problems": problems,
            "untracked_skipped_files": self.work.skipped_files,
            "untracked_skipped": [display_path(n) for n in self.work.skipped[:SKIPPED_LISTED]],
        }

    def record_json(self) -> str:
        return json.dumps(self.record())


def _git(root: Path, *args: str, stdin: bytes | None = None) -> str:
    try:
        return git(root, *args, stdin=stdin).decode("utf-8", "replace")
    except GitError as exc:
        raise CodeStateError(str(exc)) from None


def code_state(path: Path, exclude: tuple[Path, ...] = ()) -> CodeState:
    """The git state of the repository holding ``path``, with a fixed number of git calls.

    The folders ``exclude`` (the logs directory: run records, snapshots, the index)
    are left out of the changes, the patch and the snapshot.
    """
    path = Path(path)
    try:
        root = git_root(path)
    except GitError as exc:
        raise CodeStateError(str(exc)) from None
    if root is None:
        raise CodeStateError(
            f"{path} is not inside a git repository: runlab submit pins every job to a commit. "
            "Run `git init && git add -A && git commit -m init` first."
        )
    try:
        commit = git(root, "rev-parse", "--verify", "HEAD").decode().strip()
    except GitError:
        raise CodeStateError(f"{root} has no commit yet: commit your code first.") from None
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD").strip() or None
    try:
        work = work_tree_changes(root, exclude=exclude)
    except GitError as exc:
        raise CodeStateError(str(exc)) from None
    return CodeState(
        root=root,
        commit=commit,
        branch=branch,
        changes=work.lines(),
        diff=work.diff,
        work=work,
        exclude=tuple(exclude),
    )


def commit_all(state: CodeState, message: str) -> CodeState:
    """Commit every tracked change and the untracked files within the limits.

    Untracked files above the limits (a virtualenv, data) are never committed.
    """
    _git(state.root, "add", "-u", *record_pathspec(state.root, state.exclude))
    if state.work and state.work.included:
        _git(
            state.root,
            "--literal-pathspecs",
            "add",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
            stdin=b"\0".join(state.work.included) + b"\0",
        )
    _git(state.root, "commit", "-q", "-m", message)
    return code_state(state.root, state.exclude)


def share(tree: Path) -> None:
    """Give ``tree`` the modes runlab's own files get (``0o777``/``0o666`` less the umask,
    executable bits kept): ``mkdtemp`` makes a private ``0700`` folder and the copies keep
    the work tree's modes, but a group sharing the logs directory must read the code."""
    open_dir(tree)
    setgid = os.stat(tree).st_mode & 0o2000  # tar sets its folders' modes, without it
    for folder, dirs, files in os.walk(tree):
        for name in dirs:
            os.chmod(os.path.join(folder, name), dir_mode() | setgid)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                run = os.stat(path).st_mode & 0o111 & dir_mode()
                os.chmod(path, file_mode() | run)


def snapshot(state: CodeState, store: Path) -> Path:
    """Copy the files of the work tree at this code version into ``store/<key>``, once,
    and, when the tree is dirty, its patch into ``store/<key>.diff``
    (:func:`runlab.record.environment.snapshot_patch`).

    Only files git knows or would add (tracked, plus the untracked files within the
    limits, the same ones the patch holds) are copied; a second call for the same key
    returns the existing copy.
    """
    dest = Path(store) / state.key
    record = code_record(state.root, state.work, state.diff) if state.work else {}
    if state.dirty and not snapshot_patch(dest).exists():
        Path(store).mkdir(parents=True, exist_ok=True)
        write_atomic(snapshot_patch(dest), state.diff)  # before the copy: a job may read it
    if record and not snapshot_code_record(dest).exists():
        Path(store).mkdir(parents=True, exist_ok=True)
        write_atomic(snapshot_code_record(dest), json.dumps(record, indent=1).encode())
    if dest.is_dir():
        return dest
    store.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{state.key[:12]}-", dir=store))
    try:
        if state.dirty:  # the work tree's own bytes: what the jobs must run
            spec = record_pathspec(state.root, state.exclude)
            tracked = git(state.root, "ls-files", "-z", "--cached", *spec).split(b"\0")
            untracked = state.work.included if state.work else []
            names = [os.fsdecode(raw) for raw in dict.fromkeys([*tracked, *untracked]) if raw]
            for module, held in (record.get("submodules") or {}).items():
                if held.get("commit") and (state.root / module / ".git").exists():
                    inner = git(state.root / module, "ls-files", "-z", "--cached")
                    names += [f"{module}/{os.fsdecode(r)}" for r in inner.split(b"\0") if r]
            for name in names:
                src = state.root / name
                if src.is_file() or src.is_symlink():
                    target = tmp / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target, follow_symlinks=False)
        else:  # the commit's objects as stored, line ends and submodules as they ran
            codetree.rebuild(state.root, state.commit, tmp, b"", record)
        share(tmp)
        os.rename(tmp, dest)  # atomic: a concurrent submit of the same code keeps one copy
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and dest.is_dir():
            return dest  # a concurrent submit of the same code made it first
        if isinstance(exc, (GitError, codetree.RebuildError, subprocess.CalledProcessError)):
            raise CodeStateError(
                f"cannot copy the code of {state.root} into {dest}: {exc}"
            ) from None
        raise
    return dest
