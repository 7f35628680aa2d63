"""A RunLogger made by hand (a notebook, another framework) leaves a healthy run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import runlab
from conftest import runlab_cli, task_env
from runlab.results.reader import _store


def _row(logs: Path, run_id: int) -> dict:
    df = runlab.Reader(logs, index=False).df
    return df.filter(df["run_id"] == run_id).to_dicts()[0]


def test_a_config_naming_a_non_utf8_file_is_recorded_as_visible_text(tmp_path: Path) -> None:
    """A file name that is not UTF-8 reaches Python as lone surrogates (``os.listdir``,
    ``sys.argv``): the record holds it as its visible escape, and the run is healthy."""
    name = b"data-\xff.csv".decode("utf-8", "surrogateescape")
    logs = tmp_path / "logs"
    with runlab.RunLogger(logs / "1", config={"data": name, name: 1}) as logger:
        logger.log_metrics({"loss": 0.5})
    row = _row(logs, 1)
    assert row["problem"] is None and row["info.status"] == "COMPLETE"
    assert row["config.data"] == "data-\\udcff.csv"
    assert "data-\\udcff.csv: 1" in (logs / "1/metadata/config.yaml").read_text()


def test_a_hand_made_run_is_healthy_and_complete_after_close(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logger = runlab.RunLogger(logs / "1", config={"lr": 0.1, "model": {"width": 64}})
    for i in range(3):
        logger.log_metrics({"loss": 1.0 / (i + 1)})
    logger.flush()
    running = _row(logs, 1)
    assert running["info.status"] == "RUNNING" and running["problem"] is None
    logger.close()

    row = _row(logs, 1)
    assert row["problem"] is None
    assert row["info.status"] == "COMPLETE"
    assert row["config.lr"] == 0.1 and row["config.model.width"] == 64  # config as columns
    assert row["train.loss.last"] == pytest.approx(1 / 3)
    info = yaml.safe_load((logs / "1/metadata/info.yaml").read_text())
    assert info["start_time"] <= info["end_time"]
    assert info["pid"] > 0 and info["host"] and info["heartbeat_interval_s"] > 0
    # The CLI sees it as the launcher's runs: no CORRUPT, no problem line.
    ls = runlab_cli(tmp_path, "ls", str(logs)).stdout
    assert "COMPLETE" in ls and "CORRUPT" not in ls
    show = runlab_cli(tmp_path, "show", str(logs), "1").stdout
    assert "COMPLETE" in show and "missing" not in show and "problem" not in show


def test_an_exception_inside_with_ends_it_failed_with_the_traceback(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    with pytest.raises(ZeroDivisionError), runlab.RunLogger(logs / "1") as logger:
        logger.log_metrics({"loss": 1.0})
        _ = 1 / 0
    row = _row(logs, 1)
    assert row["info.status"] == "FAILED" and row["problem"] is None
    assert row["info.error.type"] == "ZeroDivisionError"
    assert "1 / 0" in (logs / "1/metadata/traceback.txt").read_text()
    with runlab.RunLogger(logs / "2"):
        pass
    assert _row(logs, 2)["info.status"] == "COMPLETE"


def test_a_process_that_exits_without_close_is_lost_not_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "logs"
    code = (
        "import runlab, time\n"
        f"lg = runlab.RunLogger({str(logs / '1')!r}, config={{'seed': 3}})\n"
        "lg.log_metrics({'loss': 1.0}); lg.flush(); time.sleep(0.6)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        env=task_env(RUNLAB_HEARTBEAT_S="0.1"),
        check=True,
        timeout=120,
    )
    info = yaml.safe_load((logs / "1/metadata/info.yaml").read_text())
    assert info["status"] == "RUNNING" and "end_time" not in info
    assert info["heartbeat"] > info["start_time"]  # it beat while the process lived
    # The reader's heartbeat rule (shortened here) makes it LOST once the beat is old.
    monkeypatch.setattr(_store, "LOST_AFTER_S", 1.0)
    time.sleep(1.2)
    row = _row(logs, 1)
    assert row["info.status"] == "LOST" and row["config.seed"] == 3


def test_a_logger_inside_a_launched_run_leaves_the_launchers_record(tmp_path: Path) -> None:
    """On a run directory that already has its record, the logger only logs."""
    logs = tmp_path / "logs"
    with runlab.RunLogger(logs / "1", config={"a": 1}) as first:
        first.log_metrics({"loss": 1.0})
    before = (logs / "1/metadata/info.yaml").read_text()
    with runlab.RunLogger(logs / "1") as again:
        again.log_metrics({"loss": 0.5})
    assert (logs / "1/metadata/info.yaml").read_text() == before
    with pytest.raises(ValueError, match="already has its record"):
        runlab.RunLogger(logs / "1", config={"a": 2})
    assert yaml.safe_load((logs / "1/metadata/config.yaml").read_text()) == {"a": 1}
