"""No credential in clear: whatever way a secret reaches a run, no file under the logs
directory, no index and no report holds it, and `runlab verify` agrees (invariant 8).

The ways in: ``${oc.env:...}`` resolved into the config under an innocent key, a token
given on the command line, a git remote URL with a password, an exception message.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TASKS, git, make_project, runlab_cli

WANDB = "0123456789abcdef0123456789abcdef01234567"  # a W&B key: 40 hex, like a commit
HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
URL_PASSWORD = "s3cr3t-Pa55w0rd"

_RAISES = """
import os

import runlab


@runlab.launch(config_path=".", config_name="quadratic")
def main(ctx: runlab.Context) -> None:
    ctx.logger.log_metrics({"acc": 0.5}, name="test", step=0)
    raise RuntimeError("could not log in with " + os.environ["HF_TOKEN"])


if __name__ == "__main__":
    main()
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose runs met every secret: two runs, a report, the reader's index."""
    repo = make_project(tmp_path_factory.mktemp("secrets"), TASKS / "quadratic.py")
    shutil.copy(TASKS / "quadratic.yaml", repo / "tasks")
    (repo / "tasks" / "raises.py").write_text(_RAISES)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tasks")
    git(repo, "remote", "add", "origin", f"https://alice:{URL_PASSWORD}@git.example.org/x.git")
    env = {"WANDB_API_KEY": WANDB, "HF_TOKEN": HF}
    for script, extra in (
        ("quadratic.py", ["+wandb.key=${oc.env:WANDB_API_KEY}", f"+hub.token={HF}"]),
        ("raises.py", []),
    ):
        subprocess.run(
            [*_python(), str(repo / "tasks" / script), "steps=3", "interval=0", *extra],
            cwd=repo,
            env=_env(repo, env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    runlab_cli(repo, "ls", **env)  # writes the index
    runlab_cli(repo, "report", "--metric", "test.acc", "--out", str(repo / "report"), **env)
    return repo


def _python() -> list[str]:
    import sys

    return [sys.executable]


def _env(repo: Path, extra: dict[str, str]) -> dict[str, str]:
    from conftest import task_env

    return task_env(RUNLAB_LOGS=str(repo / "logs"), **extra)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_both_runs_were_recorded(project: Path) -> None:
    runs = sorted(p.name for p in (project / "logs").iterdir() if p.name.isdigit())
    assert runs == ["1", "2"]
    config = (project / "logs/1/metadata/config.yaml").read_text()
    assert "wandb:" in config and "key: '***'" in config  # kept, redacted


@pytest.mark.parametrize("secret", [WANDB, HF, URL_PASSWORD])
def test_no_file_under_logs_or_in_the_report_holds_a_secret(project: Path, secret: str) -> None:
    found = [
        str(p.relative_to(project))
        for root in (project / "logs", project / "report")
        for p in _files(root)
        if secret.encode() in p.read_bytes()
    ]
    assert found == []


def test_verify_finds_no_credential(project: Path) -> None:
    proc = runlab_cli(project, "verify", check=False)
    assert "[8]" not in proc.stdout, proc.stdout


def test_a_credential_on_submits_command_line_is_refused(project: Path) -> None:
    before = sorted((project / "logs").iterdir())
    proc = runlab_cli(
        project,
        "submit",
        "tasks/quadratic.py",
        f"+hub.token={HF}",
        "--launcher",
        "local",
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("runlab submit: error: +hub.token: this override holds")
    assert "oc.env" in proc.stderr and HF not in proc.stderr
    assert sorted((project / "logs").iterdir()) == before  # nothing pre-created


def test_reproduce_refuses_a_redacted_override(project: Path) -> None:
    proc = runlab_cli(project, "reproduce", "1", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "credential on its command line" in proc.stderr
