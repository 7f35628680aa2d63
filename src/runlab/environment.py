"""Capture the code version and software environment a run executes in.

Everything here is best effort and never fails a run: a missing git, pixi or
GPU is recorded as absent, not raised.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# Set by `runlab submit` for jobs that run from a code snapshot instead of a git checkout.
CODE_COMMIT_ENV = "RUNLAB_CODE_COMMIT"
CODE_BRANCH_ENV = "RUNLAB_CODE_BRANCH"
CODE_DIRTY_ENV = "RUNLAB_CODE_DIRTY"
CODE_SNAPSHOT_ENV = "RUNLAB_CODE_SNAPSHOT"


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_state(path: Path) -> dict[str, Any]:
    """Commit, branch and dirtiness of the git work tree holding ``path``.

    ``diff`` (the uncommitted changes against HEAD, untracked files listed) is
    returned separately by :func:`git_diff` because it can be large.
    """
    if os.environ.get(CODE_COMMIT_ENV):
        return {
            "commit": os.environ[CODE_COMMIT_ENV],
            "branch": os.environ.get(CODE_BRANCH_ENV) or None,
            "dirty": os.environ.get(CODE_DIRTY_ENV) == "1",
            "snapshot": os.environ.get(CODE_SNAPSHOT_ENV) or None,
        }
    top = _run(["git", "rev-parse", "--show-toplevel"], cwd=path)
    if top is None:
        return {"commit": None, "note": "not a git work tree"}
    root = Path(top.strip())
    commit = (_run(["git", "rev-parse", "HEAD"], cwd=root) or "").strip() or None
    branch = (_run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=root) or "").strip() or None
    status = _run(["git", "status", "--porcelain", "--untracked-files=normal"], cwd=root) or ""
    return {"commit": commit, "branch": branch, "dirty": bool(status.strip()), "root": str(root)}


def git_diff(root: Path) -> str:
    """The uncommitted changes of the work tree at ``root`` as one patch, untracked files included.

    ``git apply`` on a checkout of the commit gives back the exact tree.
    """
    diff = _run(["git", "diff", "HEAD", "--binary"], cwd=root) or ""
    untracked = _run(["git", "ls-files", "-z", "--others", "--exclude-standard"], cwd=root) or ""
    for name in filter(None, untracked.split("\0")):
        proc = subprocess.run(
            ["git", "diff", "--no-index", "--binary", "--", "/dev/null", name],
            cwd=root,
            capture_output=True,
            text=True,
        )
        diff += proc.stdout  # exit status 1 means "they differ", as expected
    return diff


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


def python_packages() -> dict[str, str]:
    """Every installed Python distribution and its version, sorted by name."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in found:
            found[name] = dist.version
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def conda_packages() -> dict[str, str] | None:
    """Conda packages of the active environment (pixi's), as ``name: version=build``."""
    prefix = os.environ.get("CONDA_PREFIX")
    meta = Path(prefix) / "conda-meta" if prefix else None
    if meta is None or not meta.is_dir():
        return None
    found = {}
    for entry in sorted(meta.glob("*.json")):
        name, version, build = entry.stem.rsplit("-", 2)
        found[name] = f"{version}={build}"
    return found


def torch_state() -> dict[str, Any] | None:
    """Torch's version, the CUDA it was built with, and the GPUs it sees."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch
    except Exception as exc:  # a broken install is worth recording, not raising
        return {"error": f"{type(exc).__name__}: {exc}"}
    state: dict[str, Any] = {"version": str(torch.__version__), "cuda": torch.version.cuda}
    try:
        state["cuda_available"] = torch.cuda.is_available()
        if state["cuda_available"]:
            state["cudnn"] = torch.backends.cudnn.version()
            state["devices"] = [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
    except Exception as exc:
        state["cuda_error"] = f"{type(exc).__name__}: {exc}"
    return state


def gpus() -> list[dict[str, str]]:
    """GPUs seen by the NVIDIA driver (empty without ``nvidia-smi``)."""
    if shutil.which("nvidia-smi") is None:
        return []
    out = _run(
        [
            "nvidia-smi",
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ]
    )
    found = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            found.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return found


def capture(code_path: Path) -> tuple[dict[str, Any], str | None]:
    """The environment record of a run whose code lives at ``code_path``.

    Returns the ``env.yaml`` mapping and the git diff when the tree is dirty.
    """
    git = git_state(code_path)
    diff = None
    if git.get("dirty") and git.get("root"):
        diff = git_diff(Path(git["root"]))
    env: dict[str, Any] = {
        "git": git,
        "pixi": pixi_state(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "torch": torch_state(),
        "gpus": gpus(),
        "conda_packages": conda_packages(),
        "packages": python_packages(),
    }
    return env, diff
