"""A RunLogger made by hand (a notebook, another framework) leaves a healthy run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

import runlab
from conftest import runlab_cli, task_env
from runlab.record.files import now_iso
from runlab.record.rundir import RunDir
from runlab.results.reader import _store
from runlab.status import SETTLED, names


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


def _ended_an_hour_ago(run: Path, status: str = "COMPLETE", duration_s: float = 100.0) -> None:
    """Make the hand-made run at ``run`` one that ended ``status`` an hour ago (through
    runlab's own writer, so both info files agree): a later write is clearly after it."""
    hour_ago = time.time() - 3600
    end = datetime.fromtimestamp(hour_ago, UTC).isoformat(timespec="milliseconds")
    RunDir(run).update_info(status=status, end_time=end, duration_s=duration_s)
    for file in (run / "metrics").iterdir():
        os.utime(file, (hour_ago - 1, hour_ago - 1))


def _info(run: Path) -> dict:
    return yaml.safe_load((run / "metadata/info.yaml").read_text())


def test_logging_into_a_complete_run_by_hand_opens_a_second_attempt(tmp_path: Path) -> None:
    """Evaluating a finished run by hand (the logger takes the run's lock itself) is a
    new attempt of it from its first row: RUNNING, then COMPLETE again at close with the durations
    added up, its rows beside the first attempt's, and `runlab verify` finds nothing
    written after a final status (invariant 2)."""
    logs = tmp_path / "logs"
    with runlab.RunLogger(logs / "1", config={"a": 1}) as first:
        first.log_metrics({"loss": 1.0})
    _ended_an_hour_ago(logs / "1")
    first_info = _info(logs / "1")
    with pytest.raises(ValueError, match="already has its record"):
        runlab.RunLogger(logs / "1", config={"a": 2})
    logger = runlab.RunLogger(logs / "1", resume=False)
    assert _info(logs / "1") == first_info  # nothing written yet
    logger.log_metrics({"acc": 0.9}, name="eval")
    running = _info(logs / "1")
    assert running["status"] == "RUNNING" and running["attempts"] == 2
    assert running["previous_status"] == "COMPLETE" and "end_time" not in running
    assert running["attempt_start_time"] > first_info["attempt_start_time"]
    assert running["start_time"] == first_info["start_time"]
    logger.close()
    info = _info(logs / "1")
    assert info["status"] == "COMPLETE" and info["attempts"] == 2
    assert info["end_time"] > first_info["end_time"]
    assert 100.0 <= info["duration_s"] < 200.0  # the first attempt's 100 s, plus this one's
    assert yaml.safe_load((logs / "1/metadata/config.yaml").read_text()) == {"a": 1}
    row = _row(logs, 1)
    assert row["train.loss.last"] == 1.0 and row["eval.acc.last"] == 0.9
    proc = runlab_cli(tmp_path, "verify", "--deep", "--logs", str(logs), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[2]" not in proc.stdout


def test_an_exception_inside_with_on_an_ended_run_ends_that_attempt_failed(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    with runlab.RunLogger(logs / "1", config={}) as first:
        first.log_metrics({"loss": 1.0})
    _ended_an_hour_ago(logs / "1")
    with pytest.raises(ZeroDivisionError), runlab.RunLogger(logs / "1") as again:
        again.log_metrics({"acc": 0.5}, name="eval")
        _ = 1 / 0
    info = _info(logs / "1")
    assert info["status"] == "FAILED" and info["attempts"] == 2
    assert info["error"]["type"] == "ZeroDivisionError"
    assert "1 / 0" in (logs / "1/metadata/traceback.txt").read_text()
    proc = runlab_cli(tmp_path, "verify", "--logs", str(logs), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("status", names(SETTLED))
def test_a_hand_made_logger_on_any_ended_run_opens_a_new_attempt(
    tmp_path: Path, status: str
) -> None:
    """Whatever ended the run (COMPLETE, FAILED, INTERRUPTED, PRUNED, or LOST to the
    reader), a hand-made logger's rows come in a new attempt, which ends it again."""
    logs = tmp_path / "logs"
    with runlab.RunLogger(logs / "1", config={}) as first:
        first.log_metrics({"loss": 1.0})
    _ended_an_hour_ago(logs / "1", status)
    with runlab.RunLogger(logs / "1", resume=False) as again:
        again.log_metrics({"acc": 0.5}, name="eval")
    info = _info(logs / "1")
    assert (info["status"], info["attempts"], info["previous_status"]) == (
        "COMPLETE",
        2,
        status,
    )
    proc = runlab_cli(tmp_path, "verify", "--logs", str(logs), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_new_attempt_by_hand_with_resume_false_never_cuts_the_metrics(
    tmp_path: Path,
) -> None:
    """Loading the last checkpoint of an ended run to evaluate it (``resume=False``)
    keeps every row the run logged after that checkpoint."""
    logs = tmp_path / "logs"
    with runlab.RunLogger(logs / "1", config={}) as first:
        first.log_metrics({"loss": 1.0})
        first.log_checkpoint({"w": 1})
        first.log_metrics({"loss": 0.5})
    with runlab.RunLogger(logs / "1", resume=False) as again:
        assert again.load_checkpoint() == {"w": 1}
        again.log_metrics({"acc": 0.5}, name="eval")
    assert len((logs / "1/metrics/train.jsonl").read_text().splitlines()) == 2
    assert _info(logs / "1")["attempts"] == 2


def test_a_logger_that_only_reads_an_ended_run_leaves_its_record(tmp_path: Path) -> None:
    """Reading a finished run's checkpoint (``resume=False``), even from a process that
    never closes the logger, is no attempt: the run stays COMPLETE, attempt 1."""
    logs = tmp_path / "logs"
    with runlab.RunLogger(logs / "1", config={}) as first:
        first.log_checkpoint({"epoch": 2})
    before = (logs / "1/metadata/info.json").read_bytes()
    code = (
        "import runlab\n"
        f"print(runlab.RunLogger({str(logs / '1')!r}, resume=False).load_checkpoint())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=task_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "{'epoch': 2}" in out.stdout, out.stderr
    assert (logs / "1/metadata/info.json").read_bytes() == before
    assert runlab_cli(tmp_path, "verify", "--logs", str(logs), check=False).returncode == 0


def _hand_made_then_exit(run: Path) -> None:
    """A process that makes a run by hand, logs a row and ends with ``os._exit(0)``:
    no close, no final status; its record says RUNNING with a fresh heartbeat."""
    code = (
        "import os, runlab\n"
        f"lg = runlab.RunLogger({str(run)!r}, config={{}})\n"
        "lg.log_metrics({'loss': 1.0}); lg.flush(); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=task_env(), check=True, timeout=120)
    assert _info(run)["status"] == "RUNNING"


def test_a_dead_hand_made_run_on_this_host_is_lost_at_once(tmp_path: Path) -> None:
    """Its process is gone and this host can tell: `runlab ls`, `status` and `show` say
    LOST right away, as `runlab verify` does, without waiting for the heartbeat to age."""
    logs = tmp_path / "logs"
    _hand_made_then_exit(logs / "1")
    ls = runlab_cli(tmp_path, "ls", str(logs)).stdout
    assert "LOST" in ls and "RUNNING" not in ls
    status = runlab_cli(tmp_path, "status", "--all", check=False)
    assert "LOST 1" in status.stdout, status.stdout
    show = runlab_cli(tmp_path, "show", str(logs), "1").stdout
    assert "LOST" in show and "RUNNING" not in show
    verify = runlab_cli(tmp_path, "verify", "--logs", str(logs), check=False)
    assert verify.returncode == 1 and "[3]" in verify.stdout


def test_a_live_hand_made_run_in_another_process_shows_running(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    code = (
        "import sys, runlab\n"
        f"lg = runlab.RunLogger({str(logs / '1')!r}, config={{}})\n"
        "lg.log_metrics({'loss': 1.0}); lg.flush(); print('ready', flush=True)\n"
        "sys.stdin.read(); lg.close()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=task_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        ls = runlab_cli(tmp_path, "ls", str(logs)).stdout
        assert "RUNNING" in ls and "LOST" not in ls
        assert "RUNNING" in runlab_cli(tmp_path, "show", str(logs), "1").stdout
        assert runlab_cli(tmp_path, "verify", "--logs", str(logs), check=False).returncode == 0
    finally:
        proc.communicate("", timeout=120)
    assert proc.returncode == 0 and _info(logs / "1")["status"] == "COMPLETE"


def test_a_reused_pid_is_not_taken_for_the_runs_writer(tmp_path: Path) -> None:
    """The recorded pid names a live process that started after the attempt (the
    writer died and its pid was given to another): the run is not running."""
    logs = tmp_path / "logs"
    _hand_made_then_exit(logs / "1")
    hour_ago = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        RunDir(logs / "1").update_info(pid=other.pid, attempt_start_time=hour_ago)
        assert _row(logs, 1)["info.status"] == "LOST"
        ls = runlab_cli(tmp_path, "ls", str(logs)).stdout
        assert "LOST" in ls and "RUNNING" not in ls
        # the same pid, recorded by an attempt that started after that process: running
        RunDir(logs / "1").update_info(attempt_start_time=now_iso())
        assert _row(logs, 1)["info.status"] == "RUNNING"
    finally:
        other.kill()
        other.wait()
