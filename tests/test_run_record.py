"""The run record: what `python tasks/train.py` and `@runlab.launch` leave on disk."""

from __future__ import annotations

import importlib.metadata
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, TASKS, run_task, start_task

TRAIN = ROOT / "tasks" / "train.py"
SLOW = TASKS / "slow.py"


def read_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def only_run(logs: Path) -> Path:
    runs = sorted(p for p in logs.iterdir() if p.name.isdigit())
    assert len(runs) == 1, runs
    return runs[0]


def wait_line(proc: subprocess.Popen, prefix: str) -> None:
    """Read the child's output until a line starts with ``prefix`` (or it exits)."""
    for line in proc.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"process exited before printing {prefix!r}: {proc.stderr.read()}")


def test_train_writes_a_complete_record(logs: Path) -> None:
    run_task(TRAIN, "epochs=3", "lr=0.1", "model=cnn")
    run = only_run(logs)
    meta = run / "metadata"
    config = read_yaml(meta / "config.yaml")
    assert config["lr"] == 0.1 and config["model"]["name"] == "cnn" and config["epochs"] == 3
    assert config["runlab"]["logs"] == str(logs)  # interpolations are resolved
    assert read_yaml(meta / "overrides.yaml") == ["epochs=3", "lr=0.1", "model=cnn"]

    info = read_yaml(meta / "info.yaml")
    assert info["status"] == "COMPLETE"
    assert info["run_id"] == run.name == "1"
    for key in (
        "start_time",
        "end_time",
        "duration_s",
        "host",
        "user",
        "pid",
        "command",
        "heartbeat",
    ):
        assert info[key], key
    assert info["command"][1:] == [str(TRAIN), "epochs=3", "lr=0.1", "model=cnn"]
    assert info["end_time"] >= info["start_time"]

    env = read_yaml(meta / "env.yaml")
    assert len(env["git"]["commit"]) == 40
    assert isinstance(env["git"]["dirty"], bool)
    if env["git"]["dirty"]:
        assert (meta / "git.diff").exists()
    assert env["python"]["version"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert env["packages"]["runlab"] == importlib.metadata.version("runlab")
    assert env["torch"]["version"].startswith("2.")
    assert "cuda" in env["torch"]

    train = read_rows(run / "metrics" / "train.jsonl")
    test = read_rows(run / "metrics" / "test.jsonl")
    assert [r["step"] for r in train] == [0, 1, 2] == [r["epoch"] for r in test]
    assert all({"loss", "acc", "time"} <= r.keys() for r in train + test)
    assert (run / "checkpoints" / "last.pt").exists()
    assert (run / "artifacts" / "model.pt").exists()


def test_run_ids_are_distinct_under_200_concurrent_processes(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    start_at = time.time() + 3.0
    code = (
        "import sys, time\n"
        "from runlab.record.rundir import allocate\n"
        f"time.sleep(max(0, {start_at} - time.time()))\n"
        "run = allocate(sys.argv[1])[0]\n"
        "(run / 'owner').write_text(sys.argv[2])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(logs), str(i)]) for i in range(200)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    runs = list(logs.iterdir())
    assert sorted(int(p.name) for p in runs) == list(range(1, 201))
    owners = sorted(int((p / "owner").read_text()) for p in runs)
    assert owners == list(range(200))  # every process got its own directory, none lost


def test_ids_can_be_allocated_in_advance(tmp_path: Path) -> None:
    from runlab.record.rundir import allocate

    first = allocate(tmp_path, count=3)
    assert [p.name for p in first] == ["1", "2", "3"]
    (tmp_path / "7").mkdir()
    assert [p.name for p in allocate(tmp_path, count=2)] == ["8", "9"]


def test_sigterm_marks_the_run_interrupted(logs: Path) -> None:
    proc = start_task(SLOW, "steps=100000", "interval=0.01")
    wait_line(proc, "step 5")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    info = read_yaml(only_run(logs) / "metadata" / "info.yaml")
    assert info["status"] == "INTERRUPTED"
    assert "SIGTERM" in info["error"]["message"]


def test_ctrl_c_marks_the_run_interrupted(logs: Path) -> None:
    proc = start_task(SLOW, "steps=100000", "interval=0.01")
    wait_line(proc, "step 5")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert read_yaml(only_run(logs) / "metadata" / "info.yaml")["status"] == "INTERRUPTED"


def test_exception_marks_the_run_failed_with_its_traceback(logs: Path) -> None:
    proc = run_task(SLOW, "fail_at=3", check=False)
    assert proc.returncode == 1
    meta = only_run(logs) / "metadata"
    info = read_yaml(meta / "info.yaml")
    assert info["status"] == "FAILED"
    assert info["error"] == {"type": "ValueError", "message": "failing on purpose at step 3"}
    assert "failing on purpose" in (meta / "traceback.txt").read_text()
    assert "slow.py" in (meta / "traceback.txt").read_text()


def test_kill_9_leaves_parseable_metrics_and_loses_at_most_a_second(logs: Path) -> None:
    proc = start_task(SLOW, "steps=100000", "interval=0.002", "ckpt_every=1000000")
    wait_line(proc, "step 1500")
    killed_at = time.time()
    proc.kill()
    proc.wait(timeout=10)
    run = only_run(logs)
    rows = read_rows(run / "metrics" / "train.jsonl")  # every line is whole JSON
    assert [r["step"] for r in rows] == list(range(len(rows)))
    assert rows[-1]["wall"] >= killed_at - 1.5  # the flusher writes every second
    info = read_yaml(run / "metadata" / "info.yaml")
    assert info["status"] == "RUNNING"  # gone without a word: the heartbeat tells readers
    assert info["heartbeat_interval_s"] > 0


def test_rerun_into_the_same_directory_resumes_from_the_checkpoint(logs: Path) -> None:
    proc = start_task(SLOW, "steps=100", "interval=0.02", "ckpt_every=10")
    wait_line(proc, "step 45")
    proc.kill()
    proc.wait(timeout=10)
    run = only_run(logs)
    out = run_task(SLOW, "steps=100", "interval=0.02", "ckpt_every=10", f"runlab.run_id={run.name}")
    assert "start 40" in out.stdout  # the last checkpoint was taken after step 39
    rows = read_rows(run / "metrics" / "train.jsonl")
    assert [r["step"] for r in rows] == list(range(100))  # no duplicated, no missing step
    info = read_yaml(run / "metadata" / "info.yaml")
    assert info["status"] == "COMPLETE"
    assert info["attempts"] == 2


def test_example_resumes_bit_for_bit(logs: Path) -> None:
    run_task(TRAIN, "epochs=8")
    proc = start_task(TRAIN, "epochs=8")  # run 2 (runlab.run_id only reopens existing runs)
    # Let it finish two epochs, then kill it as a preemption would, and resume it.
    wait_line(proc, "epoch   1")
    proc.kill()
    proc.wait(timeout=10)
    out = run_task(TRAIN, "epochs=8", "runlab.run_id=2")
    assert re.search(r"resuming run 2 at epoch [2-7]\b", out.stdout), out.stdout
    full = read_rows(logs / "1" / "metrics" / "train.jsonl")
    resumed = read_rows(logs / "2" / "metrics" / "train.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert len(full) == 8
    assert strip(resumed) == strip(full)
    assert read_yaml(logs / "2" / "metadata" / "info.yaml")["attempts"] == 2


def test_resuming_with_another_config_is_refused_and_keeps_the_record(logs: Path) -> None:
    run_task(SLOW, "steps=5", "interval=0")
    run = only_run(logs)
    before = (run / "metadata" / "config.yaml").read_text()
    proc = run_task(SLOW, "steps=9", "interval=0", f"runlab.run_id={run.name}", check=False)
    assert proc.returncode != 0
    assert "different config" in proc.stderr
    assert (run / "metadata" / "config.yaml").read_text() == before
    assert read_yaml(run / "metadata" / "info.yaml")["status"] == "COMPLETE"
    assert len(read_rows(run / "metrics" / "train.jsonl")) == 5


def test_hydra_multirun_gives_each_job_its_own_run(logs: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SLOW), "-m", "steps=3,4", "interval=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p for p in logs.iterdir() if p.name.isdigit())
    assert len(runs) == 2
    assert sorted(len(read_rows(r / "metrics" / "train.jsonl")) for r in runs) == [3, 4]
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()


def test_import_has_no_side_effects() -> None:
    code = (
        "import signal\n"
        "before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)}\n"
        "import runlab, runlab.record.launch, runlab.record.logger, runlab.record.lifecycle\n"
        "after = {s: signal.getsignal(s) for s in before}\n"
        "import sys\n"
        "assert before == after, (before, after)\n"
        "assert 'torch' not in sys.modules and 'polars' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class TestLogger:
    def test_metrics_must_be_scalars(self, tmp_path: Path) -> None:
        from runlab.record.logger import MetricsError, RunLogger

        with RunLogger(tmp_path / "run") as logger:
            with pytest.raises(MetricsError, match=r"'weights'.*list.*not a scalar"):
                logger.log_metrics({"loss": 1.0, "weights": [1, 2]})
            logger.log_metrics({"np": np.float32(0.5), "i": np.int64(3), "ok": True, "s": "x"})
        rows = read_rows(tmp_path / "run" / "metrics" / "train.jsonl")
        assert rows == [
            {"step": 0, "time": rows[0]["time"], "np": 0.5, "i": 3, "ok": True, "s": "x"}
        ]

    def test_torch_scalars_are_stored_as_numbers(self, tmp_path: Path) -> None:
        import torch

        from runlab.record.logger import MetricsError, RunLogger

        with RunLogger(tmp_path / "run") as logger:
            logger.log_metrics({"loss": torch.tensor(0.25)}, name="val")
            with pytest.raises(MetricsError):
                logger.log_metrics({"loss": torch.ones(3)}, name="val")
        assert read_rows(tmp_path / "run" / "metrics" / "val.jsonl")[0]["loss"] == 0.25

    def test_steps_count_per_file_and_continue_after_reopen(self, tmp_path: Path) -> None:
        from runlab.record.logger import RunLogger

        with RunLogger(tmp_path / "run") as logger:
            logger.log_metrics({"a": 1}, name="train")
            logger.log_metrics({"a": 2}, name="train")
            logger.log_metrics({"a": 3}, name="eval", step=10)
        with RunLogger(tmp_path / "run") as logger:
            logger.log_metrics({"a": 4}, name="train")
            logger.log_metrics({"a": 5}, name="eval")
        assert [r["step"] for r in read_rows(tmp_path / "run/metrics/train.jsonl")] == [0, 1, 2]
        assert [r["step"] for r in read_rows(tmp_path / "run/metrics/eval.jsonl")] == [10, 11]

    def test_artifacts(self, tmp_path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import torch

        from runlab.record.logger import RunLogger

        src = tmp_path / "notes.txt"
        src.write_text("hello")
        with RunLogger(tmp_path / "run") as logger:
            assert logger.log_artifact(src).read_text() == "hello"
            fig, ax = plt.subplots()
            ax.plot([1, 2, 3])
            png = logger.log_artifact(fig, "curve.png")
            pt = logger.log_artifact({"w": torch.arange(3)}, "weights.pt")
            with pytest.raises(FileNotFoundError, match="no file or directory"):
                logger.log_artifact(tmp_path / "missing.txt")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert torch.equal(torch.load(pt)["w"], torch.arange(3))

    def test_checkpoint_is_atomic_and_resume_drops_rows_after_it(self, tmp_path: Path) -> None:
        from runlab.record.logger import RunLogger

        with RunLogger(tmp_path / "run") as logger:
            assert logger.load_checkpoint() is None
            for step in range(5):
                logger.log_metrics({"x": step})
            logger.log_checkpoint({"next": 5})
            for step in range(5, 8):  # logged, then the run dies before the next checkpoint
                logger.log_metrics({"x": step})
        assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp"))
        with RunLogger(tmp_path / "run") as logger:
            assert logger.load_checkpoint() == {"next": 5}
            logger.log_metrics({"x": 5})
        rows = read_rows(tmp_path / "run" / "metrics" / "train.jsonl")
        assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGTERM, signal.SIGINT])
def test_a_stopped_runs_last_line_is_a_line_of_its_own(
    signum: int, logs: Path, tmp_path: Path
) -> None:
    # A stop signal can come between a print's text and its newline; where stdout and
    # stderr are one file (`task.py > run.out 2>&1`), runlab's last line still stands alone.
    task = tmp_path / "half.py"
    task.write_text(
        "import os, signal, sys, time\n"
        "import runlab\n\n"
        "@runlab.launch(config_path=None)\n"
        "def main(ctx):\n"
        "    sys.stdout.write('half a line')\n"
        "    sys.stdout.flush()\n"
        f"    os.kill(os.getpid(), {int(signum)})\n"
        "    time.sleep(30)\n\n"
        "if __name__ == '__main__':\n"
        "    main()\n"
    )
    out = tmp_path / "run.out"
    with out.open("wb") as fh:
        code = subprocess.run(
            [sys.executable, str(task)], stdout=fh, stderr=subprocess.STDOUT, timeout=60
        ).returncode
    lines = out.read_text().splitlines()
    assert code == (130 if signum == signal.SIGINT else 128 + signum)
    assert "half a line" in lines
    assert re.fullmatch(r"\[runlab\] run 1 (preempted|interrupted)(: received SIG\w+)?", lines[-1])
