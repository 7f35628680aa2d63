"""Shared helpers: run tasks as real processes against a temporary logs directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def start_task(script: Path, *overrides: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), *overrides],
        cwd=ROOT,
        env=task_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
