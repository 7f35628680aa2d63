"""Pin a sweep to its code: check the git tree, then copy it once per code version.

Jobs run from the snapshot, not from the working tree, so a job that starts
hours later in a queue runs exactly the code it was submitted with.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runlab.environment import git_diff


class CodeStateError(RuntimeError):
    """The git tree cannot pin the code of a sweep (not a repository, or dirty)."""


@dataclass
class CodeState:
    root: Path
    commit: str
    branch: str | None
    changes: list[str]  # `git status --porcelain` lines: modified and untracked files
    diff: str

    @property
    def dirty(self) -> bool:
        return bool(self.changes)

    @property
    def key(self) -> str:
        """The snapshot's name: the commit, plus a hash of the changes when dirty."""
        if not self.dirty:
            return self.commit
        digest = hashlib.sha256(self.diff.encode())  # untracked files are in the diff
        return f"{self.commit}-dirty-{digest.hexdigest()[:12]}"


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CodeStateError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}")
    return proc.stdout


def code_state(path: Path) -> CodeState:
    """The git state of the repository holding ``path``."""
    path = Path(path)
    start = path if path.is_dir() else path.parent
    try:
        root = Path(_git(start, "rev-parse", "--show-toplevel").strip())
    except CodeStateError:
        raise CodeStateError(
            f"{path} is not inside a git repository: runlab submit pins every job to a commit. "
            "Run `git init && git add -A && git commit -m init` first."
        ) from None
    try:
        commit = _git(root, "rev-parse", "HEAD").strip()
    except CodeStateError:
        raise CodeStateError(f"{root} has no commit yet: commit your code first.") from None
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD").strip() or None
    changes = [line for line in _git(root, "status", "--porcelain").splitlines() if line.strip()]
    diff = git_diff(root) if changes else ""
    return CodeState(root=root, commit=commit, branch=branch, changes=changes, diff=diff)


def commit_all(state: CodeState, message: str) -> CodeState:
    """Commit every change and untracked file (what an interactive submit offers)."""
    _git(state.root, "add", "-A")
    _git(state.root, "commit", "-q", "-m", message)
    return code_state(state.root)


def snapshot(state: CodeState, store: Path) -> Path:
    """Copy the files of the work tree at this code version into ``store/<key>``, once.

    Only files git knows or would add (tracked plus untracked, not ignored) are
    copied; a second call for the same key returns the existing copy.
    """
    dest = Path(store) / state.key
    if dest.is_dir():
        return dest
    store.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{state.key[:12]}-", dir=store))
    try:
        if state.dirty:
            names = _git(state.root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
            for name in filter(None, names.split("\0")):
                src = state.root / name
                if src.is_file() or src.is_symlink():
                    target = tmp / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target, follow_symlinks=False)
        else:
            archive = subprocess.run(
                ["git", "archive", "--format=tar", state.commit],
                cwd=state.root,
                capture_output=True,
                check=True,
            )
            subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        os.rename(tmp, dest)  # atomic: a concurrent submit of the same code keeps one copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():
            raise
    return dest
