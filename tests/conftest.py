"""Shared helpers: run tasks as real processes against a temporary logs directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# A shell starts a background job (`.ci/run &` in a script) with SIGINT ignored, and an
# ignored signal stays ignored in every process started from it: the tasks these tests
# start would not see the Ctrl-C they send. Restored here, the children get the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
TASKS = Path(__file__).resolve().parent / "tasks"


@pytest.fixture
def logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh logs directory, also exported as RUNLAB_LOGS for child processes."""
    path = tmp_path / "logs"
    monkeypatch.setenv("RUNLAB_LOGS", str(path))
    return path


def task_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_task(
    script: Path, *overrides: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess:
    """Run a task script to completion in a child process, from the repository root."""
    proc = subprocess.run(
        [sys.executable, str(script), *overrides],
        cwd=ROOT,
        env=task_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script.name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


# Processes start_task started in the running test: ended and their pipes closed
# after it (an open pipe is a ResourceWarning, which fails the test).
_STARTED: list[subprocess.Popen] = []


def start_task(script: Path, *overrides: str, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(script), *overrides],
        cwd=ROOT,
        env=task_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _end_started_tasks() -> Iterator[None]:
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# ---------------------------------------------------- the working tree stays clean
# No test writes into the repository: each writes under its tmp_path. The session
# compares the working tree (untracked and ignored entries included) before and
# after, and fails if a test left something there. Tools' caches are not counted.
CACHES = (".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache", "__pycache__")


def working_tree_entries(root: Path = ROOT) -> set[str] | None:
    """``git status`` entries of ``root``, ignored ones included, tools' caches left
    out; None where ``root`` is not a git working tree."""
    proc = subprocess.run(
        ["git", "status", "--porcelain=v1", "-z", "--ignored", "--untracked-files=normal"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    entries = set()
    for entry in proc.stdout.split("\0"):
        path = entry[3:].rstrip("/")
        parts = path.split("/")
        if not path or any(p in CACHES or p.endswith(".egg-info") for p in parts):
            continue
        entries.add(entry)
    return entries


_TREE_BEFORE: set[str] | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _TREE_BEFORE
    _TREE_BEFORE = working_tree_entries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _TREE_BEFORE is None or (after := working_tree_entries()) is None:
        return
    left = sorted(after - _TREE_BEFORE)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "tests left these in the working tree (write under tmp_path instead):\n" + (
        "\n".join(f"  {entry}" for entry in left)
    )
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "working tree changed", red=True)
        reporter.write_line(message)
    else:  # pragma: no cover
        print(message, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ------------------------------------------------------------- projects and the CLI
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` (with a committer identity); its stdout, stripped."""
    return subprocess.run(
        [*GIT, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def _slurm_up() -> bool:
    import shutil

    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0


SLURM_UP = _slurm_up()
needs_slurm = pytest.mark.skipif(
    not SLURM_UP, reason="no SLURM cluster is running (start one with scripts/slurm-local)"
)


def _sge_up() -> bool:
    import shutil

    if shutil.which("qstat") is None:
        return False
    return subprocess.run(["qstat", "-g", "c"], capture_output=True, timeout=20).returncode == 0


SGE_UP = _sge_up()
needs_sge = pytest.mark.skipif(
    not SGE_UP, reason="no Grid Engine cell is running (start one with scripts/sge-local)"
)


def make_project(root: Path, *files: Path) -> Path:
    """A git project at ``root/project`` holding ``files`` in ``tasks/``, committed, with
    ``logs/`` ignored: what a user's repository looks like to ``runlab submit``."""
    import shutil

    repo = root / "project"
    (repo / "tasks").mkdir(parents=True)
    for file in files:
        shutil.copy(file, repo / "tasks" / file.name)
    (repo / ".gitignore").write_text("logs/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def runlab_cli(
    cwd: Path, *args: str, check: bool = True, timeout: float = 400, **env: str
) -> subprocess.CompletedProcess:
    """``runlab ARGS`` in ``cwd`` with its logs at ``cwd/logs``; with ``check``, an
    AssertionError holding its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "runlab", *args],
        cwd=cwd,
        env=task_env(RUNLAB_LOGS=str(cwd / "logs"), **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"runlab {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def repository_files() -> list[str]:
    """Tracked files and untracked ones git does not ignore (what a fresh clone would hold)."""
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted({f for f in proc.stdout.split("\0") if f and (ROOT / f).is_file()})


@contextmanager
def serving(logs: Path) -> Iterator[Any]:
    """``runlab serve``'s server over ``logs``, answering in a thread of this process."""
    import threading

    from runlab.results.serve import Server

    server = Server(logs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
