"""The project's own checks of tasks/train.py (about a minute on 2 cores).

- the config composes, with every config group and launcher file;
- one epoch trains and is recorded as a complete run (in a temporary logs directory);
- a sweep is planned for the local launcher without running (`runlab submit --dry-run`).

Runs never land in the project's logs/: each test writes under pytest's tmp_path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TASK = ROOT / "tasks" / "train.py"


def run(*args: str, logs: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNLAB_LOGS": str(logs), "PYTHONHASHSEED": "0"}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_config_composes() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose(config_name="train", overrides=["epochs=1", "model=cnn"])
    assert cfg.epochs == 1 and cfg.model.name == "cnn"
    for launcher in sorted((CONFIGS / "launcher").glob("*.yaml")):
        assert yaml.safe_load(launcher.read_text())["name"] == launcher.stem


def test_one_epoch_trains_and_is_recorded(tmp_path: Path) -> None:
    import runlab

    logs = tmp_path / "logs"
    run(str(TASK), "epochs=1", f"runlab.logs={logs}", logs=logs)
    reader = runlab.Reader(logs)
    assert list(reader.run_ids) == [1]
    info = yaml.safe_load((logs / "1" / "metadata" / "info.yaml").read_text())
    assert info["status"] == "COMPLETE"
    assert (logs / "1" / "metrics" / "test.jsonl").read_text().strip()


def test_sweep_dry_run_plans_without_running(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    proc = run(
        "-m", "runlab", "submit", str(TASK.relative_to(ROOT)), "seed=0,1",
        "--launcher", "local", "--dry-run", "--logs", str(logs),
        logs=logs,
    )  # fmt: skip
    assert "2 job(s)" in proc.stdout + proc.stderr
    assert not logs.exists() or not any(logs.iterdir()), "a dry run runs nothing"
