"""`runlab reproduce`: what it restores, what it checks, and when it refuses.

Each test makes real runs of a small deterministic task in a git repository of its own,
then changes one thing a user (or a disk) could change, and checks what a user sees:
`identical`, or one line saying why the run cannot be reproduced exactly and no run
left behind. The generative matrix over ways to start a run and code states is in
tests/test_reproduce_matrix.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TASKS, git, task_env

TASK = """\
import os

import runlab


@runlab.launch(config_path="conf", config_name="main")
def main(ctx: runlab.Context) -> None:
    cfg = ctx.config
    value = cfg.x * 3 + len(str(cfg.token)) + len(cfg.get("extra", ""))
    for step in range(2):
        ctx.logger.log_metrics({"value": value + step}, name="test", step=step)


if __name__ == "__main__":
    main()
"""
CONFIG = """\
x: 1
token: ${oc.env:API_TOKEN,none}
runlab:
  logs: ${oc.env:RUNLAB_LOGS,logs}
  run_id: null
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    (repo / "conf").mkdir(parents=True)
    (repo / "task.py").write_text(TASK)
    (repo / "conf" / "main.yaml").write_text(CONFIG)
    (repo / ".gitignore").write_text("logs/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def run(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=repo,
        env=task_env(RUNLAB_LOGS=str(repo / "logs"), **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def reproduce(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run(repo, "-m", "runlab", "reproduce", "--logs", "logs", *args, **env)


def run_ids(repo: Path) -> list[str]:
    return sorted((p.name for p in (repo / "logs").iterdir() if p.name.isdigit()), key=int)


def refused(out: subprocess.CompletedProcess, why: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("runlab reproduce: error: run 1 cannot be reproduced exactly:")
    assert why in lines[0], lines[0]


def test_dry_run_shows_the_plan_and_runs_nothing(repo: Path) -> None:
    (repo / "task.py").write_text(TASK.replace("* 3", "* 4"))  # an uncommitted change
    assert run(repo, "task.py", "x=2", "+extra=abc").returncode == 0
    out = reproduce(repo, "1", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "with the recorded patch" in out.stdout and "1 file hash(es) checked" in out.stdout
    assert "--config-name main" in out.stdout and "x=2 +extra=abc" in out.stdout
    assert run_ids(repo) == ["1"]


def test_check_says_whether_two_runs_were_run_the_same_way(repo: Path) -> None:
    assert run(repo, "task.py", "x=2").returncode == 0
    out = reproduce(repo, "1")
    assert "run 2 reproduces run 1: identical" in out.stdout, out.stderr
    same = reproduce(repo, "--check", "1", "2")
    assert same.returncode == 0 and "run the same way" in same.stdout, same.stdout
    assert run(repo, "task.py", "x=3").returncode == 0
    other = reproduce(repo, "--check", "1", "3")
    assert other.returncode == 1
    assert "not run the same way" in other.stdout and "overrides" in other.stdout


def test_a_config_that_would_compose_differently_is_refused_and_leaves_no_run(
    repo: Path,
) -> None:
    assert run(repo, "task.py", "+extra=abc").returncode == 0
    twin = repo / "logs/1/metadata/inputs.json"
    inputs = json.loads(twin.read_text())
    inputs["overrides"]["task"] = []  # as a damaged or hand-edited record would say
    twin.write_text(json.dumps(inputs))
    refused(reproduce(repo, "1"), "the config composed now differs from the run's at extra")
    assert run_ids(repo) == ["1"]


def test_a_patch_that_is_not_the_recorded_one_is_refused(repo: Path) -> None:
    (repo / "task.py").write_text(TASK.replace("* 3", "* 4"))
    assert run(repo, "task.py").returncode == 0
    diff = repo / "logs/1/metadata/git.diff"
    diff.write_bytes(diff.read_bytes().replace(b"* 4", b"* 5"))
    refused(reproduce(repo, "1"), "is not the patch the run recorded")


def test_a_damaged_rebuilt_tree_is_made_anew(repo: Path) -> None:
    """A tree kept from an earlier reproduce is checked file by file against the
    commit: one edited (or holding a file more) since is rebuilt, never run."""
    assert run(repo, "task.py").returncode == 0
    assert "identical" in reproduce(repo, "1").stdout
    (tree,) = (repo / "logs/.snapshots").glob("*-rebuilt")
    (tree / "conf" / "main.yaml").write_text(CONFIG.replace("x: 1", "x: 9"))
    (tree / "stray.py").write_text("import os\n")
    out = reproduce(repo, "1")
    assert "run 3 reproduces run 1: identical" in out.stdout, out.stderr
    assert (tree / "conf" / "main.yaml").read_text() == CONFIG
    assert not (tree / "stray.py").exists()


def test_a_redacted_variable_must_be_given_again(repo: Path) -> None:
    """The config reads API_TOKEN: the record keeps it redacted and its hash; the rerun
    refuses without it, and with the same value is identical."""
    secret = "sk-live-0123456789abcdefXYZ"
    assert run(repo, "task.py", API_TOKEN=secret).returncode == 0
    recorded = (repo / "logs/1/metadata/inputs.json").read_text()
    assert secret not in recorded
    refused(reproduce(repo, "1"), "set API_TOKEN to the value the run had")
    refused(reproduce(repo, "1", API_TOKEN="another-value-123456"), "API_TOKEN")
    out = reproduce(repo, "1", API_TOKEN=secret)
    assert "identical" in out.stdout, out.stderr


def test_a_run_whose_attempts_ran_different_code_is_refused(repo: Path) -> None:
    assert run(repo, "task.py").returncode == 0
    (repo / "task.py").write_text(TASK.replace("* 3", "* 4"))
    out = run(repo, "task.py", "runlab.run_id=1")
    assert "the attempts of this run ran different code" in out.stderr
    refused(reproduce(repo, "1"), "the attempts of this run ran different code")


def test_a_config_folder_outside_the_code_is_checked(repo: Path, tmp_path: Path) -> None:
    """`--config-dir` outside the repository: no commit holds it, so the record keeps a
    hash of its files; changed since, the rerun is refused."""
    outside = tmp_path / "shared-configs"
    outside.mkdir()
    (outside / "main.yaml").write_text(CONFIG.replace("x: 1", "x: 7"))
    assert run(repo, "task.py", "--config-dir", str(outside)).returncode == 0
    out = reproduce(repo, "1")
    assert "identical" in out.stdout, out.stderr
    (outside / "main.yaml").write_text(CONFIG.replace("x: 1", "x: 8"))
    refused(reproduce(repo, "1"), "its files changed since the run")


def test_the_example_tasks_record_their_inputs(tmp_path: Path) -> None:
    """The quadratic task's inputs record, as the reference documents it."""
    repo = tmp_path / "q"
    repo.mkdir()
    for name in ("quadratic.py", "quadratic.yaml"):
        shutil.copy(TASKS / name, repo / name)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    out = run(repo, "quadratic.py", "-m", "x=1,2", "interval=0", "hydra.job.chdir=false")
    assert out.returncode == 0, out.stderr
    inputs = yaml.safe_load((repo / "logs/2/metadata/inputs.yaml").read_text())
    assert inputs["task"]["in_code"] == "quadratic.py"
    assert inputs["config"]["name"] == "quadratic" and inputs["config"]["in_code"] == "."
    assert inputs["overrides"] == {
        "task": ["x=2", "interval=0"],
        "hydra": ["hydra.job.chdir=false"],
    }
    assert inputs["multirun"]["num"] == 1
    out = reproduce(repo, "2")
    assert "run 3 reproduces run 2: identical" in out.stdout, out.stderr


def test_a_run_of_several_nodes_is_refused(repo: Path) -> None:
    """Reproduce starts ranks on one machine only (a one-node torchrun run is rerun with
    as many ranks: see test_distributed); a run that spanned nodes is refused."""
    assert run(repo, "task.py").returncode == 0
    for name in ("info.yaml", "info.json"):
        path = repo / "logs/1/metadata" / name
        data = yaml.safe_load(path.read_text())
        data.update(world_size=4, nodes=2)
        path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    refused(reproduce(repo, "1"), "ran as 4 ranks on 2 nodes")


def test_a_config_with_non_finite_numbers_and_odd_text_is_reproduced(repo: Path) -> None:
    """The record writes `inf` as "Infinity" (strict JSON): the rerun's config check
    compares in the record's encoding, so such a config is not taken for another."""
    args = ("+a=inf", "+b=nan", "+c=-inf", '+d="é\u202e\u0007"', "+e=[1,2.5,null]")
    assert run(repo, "task.py", *args).returncode == 0
    out = reproduce(repo, "1")
    assert "run 2 reproduces run 1: identical" in out.stdout, out.stderr
