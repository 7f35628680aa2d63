"""`runlab reproduce` and `runlab diff` on the example task, in a git project of its own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, task_env


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The example task and its configs, committed in a fresh repository."""
    repo = tmp_path / "project"
    shutil.copytree(ROOT / "tasks", repo / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", repo / "configs")
    (repo / ".gitignore").write_text("logs/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def runlab(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runlab", *args],
        cwd=repo,
        env=task_env(RUNLAB_LOGS=str(repo / "logs")),
        capture_output=True,
        text=True,
        timeout=300,
    )


def train(repo: Path, *overrides: str) -> None:
    subprocess.run(
        [sys.executable, "tasks/train.py", "epochs=3", *overrides],
        cwd=repo,
        env=task_env(RUNLAB_LOGS=str(repo / "logs")),
        check=True,
        capture_output=True,
    )


def test_reproducing_an_example_run_on_the_cpu_is_identical(project: Path) -> None:
    train(project, "model=cnn")
    out = runlab(project, "reproduce", "--logs", "logs", "1")
    assert out.returncode == 0, out.stderr
    assert "run 2 reproduces run 1: identical" in out.stdout
    info = yaml.safe_load((project / "logs/2/metadata/info.yaml").read_text())
    assert info["reproduces"] == "1" and info["status"] == "COMPLETE"
    config = lambda n: yaml.safe_load((project / f"logs/{n}/metadata/config.yaml").read_text())  # noqa: E731
    assert config(1)["model"] == config(2)["model"] and config(1)["seed"] == config(2)["seed"]
    env = yaml.safe_load((project / "logs/2/metadata/env.yaml").read_text())
    assert env["git"]["commit"] == git(project, "rev-parse", "HEAD").strip()


def test_reproduce_runs_the_recorded_commit_not_the_current_code(project: Path) -> None:
    train(project)
    cfg = project / "configs" / "train.yaml"
    cfg.write_text(cfg.read_text().replace("lr: 0.05", "lr: 0.2"))
    git(project, "commit", "-qam", "another learning rate")
    out = runlab(project, "reproduce", "--logs", "logs", "1")
    assert "identical" in out.stdout, out.stderr


def test_reproducing_a_dirty_run_reruns_its_patch_and_keeps_it_beside_the_snapshot(
    project: Path,
) -> None:
    """A run made from uncommitted changes is rerun from its commit with its patch applied;
    the patched snapshot keeps the patch beside it (as submit's do), so the rerun records
    the same ``git.diff`` and warns of no missing patch."""
    cfg = project / "configs" / "train.yaml"
    cfg.write_text(cfg.read_text() + "# a change not committed\n")
    train(project)
    patch = (project / "logs/1/metadata/git.diff").read_bytes()
    assert b"a change not committed" in patch
    out = runlab(project, "reproduce", "--logs", "logs", "1")
    assert out.returncode == 0 and "identical" in out.stdout, out.stderr
    assert "cannot be rebuilt" not in out.stderr, out.stderr
    (kept,) = (project / "logs/.snapshots").glob("*-dirty-*.diff")
    assert kept.read_bytes() == patch and kept.with_suffix("").is_dir()
    assert (project / "logs/2/metadata/git.diff").read_bytes() == patch


def test_reproduce_reports_divergence_and_tolerance(project: Path) -> None:
    train(project)
    path = project / "logs/1/metrics/test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["loss"] += 1e-12
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = runlab(project, "reproduce", "--logs", "logs", "1")
    assert out.returncode == 1
    assert "diverged" in out.stdout and "step 1 of test.loss" in out.stdout
    out = runlab(project, "reproduce", "--logs", "logs", "1", "--rtol", "1e-9")
    assert out.returncode == 0 and "close" in out.stdout


def test_reproduce_refuses_an_unreachable_commit(project: Path) -> None:
    train(project)
    env_file = project / "logs/1/metadata/env.yaml"
    env = yaml.safe_load(env_file.read_text())
    env["git"]["commit"] = "0123456789" * 4
    env_file.write_text(yaml.safe_dump(env))
    out = runlab(project, "reproduce", "--logs", "logs", "1")
    assert out.returncode == 2
    assert "commit 012345678901" in out.stderr and "not in the repository" in out.stderr
    assert sorted(p.name for p in (project / "logs").iterdir() if p.name.isdigit()) == ["1"]


def test_reproduce_warns_about_environment_differences(project: Path) -> None:
    train(project)
    env_file = project / "logs/1/metadata/env.yaml"
    env = yaml.safe_load(env_file.read_text())
    env["packages"]["numpy"] = "0.0.1"
    env_file.write_text(yaml.safe_dump(env))
    out = runlab(project, "reproduce", "--logs", "logs", "1")
    assert "The environment differs" in out.stderr
    assert "package numpy: 0.0.1 ->" in out.stderr
    assert "identical" in out.stdout


def test_diff_shows_learning_rate_commit_and_metrics(project: Path) -> None:
    train(project)
    cfg = project / "configs" / "train.yaml"
    cfg.write_text(cfg.read_text().replace("lr: 0.05", "lr: 0.2"))
    git(project, "commit", "-qam", "another learning rate")
    train(project)
    out = runlab(project, "diff", "--logs", "logs", "1", "2")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "lr" in text and "0.05" in text and "0.2" in text
    assert "git.commit" in text and "configs/train.yaml" in text  # the code diff's stat
    assert "train.loss" in text and "(3 steps)" in text


def test_reproduce_finds_the_snapshot_of_a_moved_logs_directory(
    project: Path, tmp_path: Path
) -> None:
    """A submitted run records its snapshot's absolute path; after the logs directory
    and the project moved (the recorded path and git root gone), the snapshot is found in
    the moved logs directory's own ``.snapshots`` and the rerun is identical."""
    out = runlab(project, "submit", "tasks/train.py", "epochs=2", "--launcher", "local", "--wait")
    assert out.returncode == 0, out.stderr
    recorded = yaml.safe_load((project / "logs/1/metadata/info.yaml").read_text())
    assert str(project / "logs") in recorded["code_snapshot"]
    moved = tmp_path / "elsewhere" / "logs"
    moved.parent.mkdir()
    shutil.move(project / "logs", moved)
    shutil.rmtree(project)  # nor the commit: only the snapshot holds the code now
    out = subprocess.run(
        [sys.executable, "-m", "runlab", "reproduce", "--logs", str(moved), "1"],
        cwd=tmp_path,
        env=task_env(RUNLAB_LOGS=str(moved)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "run 2 reproduces run 1: identical" in out.stdout, out.stdout + out.stderr
