"""The logs directory inside the repository, not git-ignored (issue 19, family 3): run
records are never part of a run's patch (``metadata/git.diff``) or a sweep's code
snapshot, a clean tree is recorded clean, and an artifact copy of a folder holding the
logs directory never copies the record into itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import git, task_env
from runlab.sweep.snapshot import snapshot
from runlab.sweep.submission import prepare

TASK = """\
from pathlib import Path

import runlab


@runlab.launch(config_path=".", config_name="train")
def main(ctx: runlab.Context) -> None:
    ctx.logger.log_metrics({"loss": 1.0}, name="train")
    if ctx.config.artifact:
        ctx.logger.log_artifact(Path.cwd(), name="workdir")


if __name__ == "__main__":
    main()
"""
CONFIG = "artifact: false\nrunlab:\n  logs: ${oc.env:RUNLAB_LOGS,logs}\n  run_id: null\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed project whose logs directory ``logs/`` is inside and not ignored."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "train.py").write_text(TASK)
    (root / "train.yaml").write_text(CONFIG)
    (root / "model.py").write_text("WIDTH = 1\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return root


def _run(repo: Path, *overrides: str) -> Path:
    """Run the task from ``repo`` (its logs at ``repo/logs``); the run's directory."""
    before = set((repo / "logs").glob("[0-9]*")) if (repo / "logs").exists() else set()
    proc = subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=repo,
        env=task_env(RUNLAB_LOGS=str(repo / "logs")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = set((repo / "logs").glob("[0-9]*")) - before
    return run


def _git_record(run: Path) -> dict:
    return json.loads((run / "metadata" / "env.json").read_text())["git"]


def test_a_clean_tree_with_runs_in_it_is_recorded_clean(repo: Path) -> None:
    runs = [_run(repo) for _ in range(3)]
    for run in runs:
        assert _git_record(run)["dirty"] is False, run
        assert not (run / "metadata" / "git.diff").exists()


def test_a_dirty_tree_records_its_change_and_no_run_record(repo: Path) -> None:
    _run(repo)
    (repo / "model.py").write_text("WIDTH = 2\n")
    sizes = []
    for _ in range(3):
        run = _run(repo)
        assert _git_record(run)["dirty"] is True
        diff = (run / "metadata" / "git.diff").read_bytes()
        assert b"WIDTH = 2" in diff and b"logs/" not in diff
        sizes.append(len(diff))
    assert len(set(sizes)) == 1, sizes  # the patch does not grow with the runs


def test_an_artifact_of_the_working_directory_leaves_the_logs_out(repo: Path) -> None:
    _run(repo)
    run = _run(repo, "artifact=true")
    copy = run / "artifacts" / "workdir"
    assert sorted(p.name for p in copy.iterdir()) == [".git", "model.py", "train.py", "train.yaml"]
    assert json.loads((run / "metadata" / "info.json").read_text())["status"] == "COMPLETE"


def test_a_sweep_of_a_clean_tree_is_clean_and_its_snapshot_leaves_the_logs_out(
    repo: Path, tmp_path: Path
) -> None:
    _run(repo)
    logs = repo / "logs"
    # `runlab submit` refuses a dirty tree: its own runs do not make the tree dirty
    assert not prepare(repo / "train.py", [], logs=logs).code.dirty
    (repo / "model.py").write_text("WIDTH = 3\n")
    state = prepare(repo / "train.py", [], logs=logs, allow_dirty=True).code
    assert state.changes == [" M model.py"] and b"logs/" not in state.diff
    copy = snapshot(state, tmp_path / "snapshots")
    assert sorted(p.name for p in copy.iterdir()) == ["model.py", "train.py", "train.yaml"]
