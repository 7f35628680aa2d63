"""The logger under attack: names that are paths, values JSON cannot hold, checkpoints loaded
mid-run, full disks, torn files. Every test writes real files (full disks are a real tmpfs)."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest


def strict_rows(path: Path) -> list[dict]:
    """Every line of a metrics file, parsed by a strict JSON parser (no NaN/Infinity constants)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds the non-JSON constant {constant}")

    text = path.read_bytes().decode()
    assert text == "" or text.endswith("\n"), "the file ends in a torn line"
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def steps(path: Path) -> list[int]:
    return [row["step"] for row in strict_rows(path)]


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


# --------------------------------------------------------------------------- names
BAD_NAMES = [
    "../../escape",
    "../escape",
    "a/b",
    "a\\b",
    "a\x00b",
    "a\nb",
    "",
    ".hidden",
    "..",
    "x" * 300,
    "model\u202egp.pt",  # a right-to-left override: shown as 'modeltp.pg'
    "a\u200bb",  # a zero-width space
    "\ufefftrain",  # a byte-order mark
    "a\u2028b",  # a line separator
    " ",
    "train ",
]


@pytest.mark.parametrize("bad", [*BAD_NAMES, "ABSOLUTE"])
@pytest.mark.parametrize("call", ["log_metrics", "log_artifact", "log_checkpoint"])
def test_a_name_that_is_a_path_is_refused_and_writes_nothing(
    tmp_path: Path, call: str, bad: str
) -> None:
    from runlab.record.logger import RunLogger

    if bad == "ABSOLUTE":
        bad = str(tmp_path / "absolute")
    run = tmp_path / "logs" / "1"
    logger = RunLogger(run, flush_interval=0.05)
    before = files_under(tmp_path)
    argument = {"log_metrics": "log_metrics(name=)"}.get(call, f"{call}(name=)")
    with pytest.raises(ValueError, match=re.escape(argument)):
        if call == "log_metrics":
            logger.log_metrics({"x": 1}, name=bad)
        elif call == "log_artifact":
            logger.log_artifact(b"data", name=bad)
        else:
            logger.log_checkpoint({"w": 1}, name=bad)
    logger.log_metrics({"x": 2})  # the logger still works, and its flush thread too
    # The flush thread creates the file, then writes the row: wait for the whole row.
    jsonl, deadline = run / "metrics" / "train.jsonl", time.time() + 20
    while time.time() < deadline and not (jsonl.exists() and jsonl.read_bytes().endswith(b"\n")):
        time.sleep(0.05)
    assert steps(jsonl) == [0]
    logger.close()
    created = files_under(tmp_path) - before
    # train.parquet: the columnar twin written at close (runlab.record.logger docstring)
    assert created == {run / "metrics" / "train.jsonl", run / "metrics" / "train.parquet"}, created


class Bomb:
    """Unpickling it creates a marker directory: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_checkpoint_outside_the_run_is_never_unpickled(tmp_path: Path, how: str) -> None:
    import torch

    from runlab.record.logger import RunLogger

    marker = tmp_path / "unpickled"
    evil = tmp_path / "logs" / "evil.pt"
    evil.parent.mkdir(parents=True)
    torch.save(Bomb(marker), evil)  # a checkpoint file as torch.save writes them
    name = "../../evil" if how == "relative" else str(evil.with_suffix(""))
    logger = RunLogger(tmp_path / "logs" / "1")
    with pytest.raises(ValueError, match=r"load_checkpoint\(name=\)"):
        logger.load_checkpoint(name)
    logger.close()
    assert not marker.exists()


def test_an_artifact_without_a_name_takes_the_checked_file_name(tmp_path: Path) -> None:
    from runlab.record.logger import RunLogger

    secret = tmp_path / ".env"
    secret.write_text("TOKEN=1")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with RunLogger(tmp_path / "run") as logger:
        with pytest.raises(ValueError, match=r"name='\.env' is not a valid name.*starts with"):
            logger.log_artifact(secret)
        assert logger.log_artifact(notes) == tmp_path / "run" / "artifacts" / "notes.txt"
        assert logger.log_artifact(secret, name="env.txt").read_text() == "TOKEN=1"
    assert sorted(p.name for p in (tmp_path / "run" / "artifacts").iterdir()) == [
        "env.txt",
        "notes.txt",
    ]


def test_check_name_accepts_plain_names_and_says_why_it_refuses() -> None:
    from runlab.record.names import check_name

    for good in ("train", "model.pt", "eval-2_b", "résumé", "a b", "v1.2"):
        assert check_name(good, "x(name=)") == good
    for bad, why in [
        ("a/b", "separator"),
        ("..", "'..'"),
        ("a\x00", "control"),
        ("\x7f", "control"),
        ("", "empty"),
        (".x", "starts with '.'"),
        ("\ud800", "not valid text"),
        (Path("a"), "not a str"),
        ("é" * 101, "bytes long"),
    ]:
        with pytest.raises(ValueError, match=re.escape(why)) as err:
            check_name(bad, "f(name=)")
        assert str(err.value).startswith("f(name=)=") and "\n" not in str(err.value)


# -------------------------------------------------------------------------- values
def test_non_finite_values_read_back_as_non_finite(tmp_path: Path) -> None:
    import torch

    from runlab.record.logger import RunLogger
    from runlab.record.metricsfile import NONFINITE

    with RunLogger(tmp_path / "run") as logger:
        logger.log_metrics({"loss": 1.0, "up": 2.0, "down": 3.0, "np": 4.0, "t": 5.0})
        logger.log_metrics(
            {
                "loss": math.nan,
                "up": math.inf,
                "down": -math.inf,
                "np": np.float32("nan"),
                "t": torch.tensor(float("inf")),
            }
        )
        logger.log_metrics({"loss": 0.5, "up": None, "down": "text", "np": 1, "t": True})
    rows = strict_rows(tmp_path / "run" / "metrics" / "train.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    second = {k: v for k, v in rows[1].items() if k not in ("step", "time")}
    assert second == {
        "loss": "NaN",
        "up": "Infinity",
        "down": "-Infinity",
        "np": "NaN",
        "t": "Infinity",
    }
    assert math.isnan(NONFINITE[second["loss"]]) and NONFINITE[second["down"]] == -math.inf
    assert rows[2]["up"] is None and rows[2]["down"] == "text"


@pytest.mark.parametrize("key", ["run_id", "time"])
def test_reserved_keys_are_refused_at_log_time(tmp_path: Path, key: str) -> None:
    from runlab.record.logger import MetricsError, RunLogger

    with RunLogger(tmp_path / "run") as logger:
        logger.log_metrics({"loss": 1.0})
        with pytest.raises(MetricsError, match=rf"metric '{key}'.*reserved"):
            logger.log_metrics({"loss": 2.0, key: 3})
        logger.log_metrics({"loss": 3.0})
    rows = strict_rows(tmp_path / "run" / "metrics" / "train.jsonl")
    assert [(r["step"], r["loss"]) for r in rows] == [(0, 1.0), (1, 3.0)]
    assert all(isinstance(r["time"], float) and "run_id" not in r for r in rows)


def test_the_step_key_must_be_an_integer(tmp_path: Path) -> None:
    import torch

    from runlab.record.logger import MetricsError, RunLogger

    with RunLogger(tmp_path / "run") as logger:
        for bad in (True, np.bool_(False), 1.5, 2.0, "3", None, 2**64):
            with pytest.raises(MetricsError, match=r"step"):
                logger.log_metrics({"loss": 1.0, "step": bad})
        with pytest.raises(MetricsError, match=r"step"):
            logger.log_metrics({"loss": 1.0}, step=True)
        with pytest.raises(MetricsError, match=r"step=3 and the key 'step'=4"):
            logger.log_metrics({"loss": 1.0, "step": 4}, step=3)
        logger.log_metrics({"loss": 1.0, "step": np.int64(7)})
        logger.log_metrics({"loss": 2.0, "step": torch.tensor(9)}, step=9)
        logger.log_metrics({"loss": 3.0}, step=np.int32(20))
        logger.log_metrics({"loss": 4.0})
    rows = strict_rows(tmp_path / "run" / "metrics" / "train.jsonl")
    assert [r["step"] for r in rows] == [7, 9, 20, 21]
    assert [list(r) for r in rows] == [["step", "time", "loss"]] * 4


def test_errors_name_the_key_and_leave_no_row(tmp_path: Path) -> None:
    from runlab.record.logger import MetricsError, RunLogger

    with RunLogger(tmp_path / "run") as logger:
        for metrics, key in [
            ({"ok": 1, "huge": 2**70}, "huge"),
            ({"ok": 1, "neg": -(2**64)}, "neg"),
            ({"ok": 1, "z": complex(1, 2)}, "z"),
            ({"ok": 1, "s": "\ud800"}, "s"),
            ({"ok": 1, "l": [1.0]}, "l"),
        ]:
            with pytest.raises(MetricsError, match=re.escape(repr(key))) as err:
                logger.log_metrics(metrics)
            assert "\n" not in str(err.value)
        logger.log_metrics({"ok": 2**63 - 1, "min": -(2**63)})
    rows = strict_rows(tmp_path / "run" / "metrics" / "train.jsonl")
    assert [(r["step"], r["ok"], r["min"]) for r in rows] == [(0, 2**63 - 1, -(2**63))]


def test_one_element_tensors_and_arrays_are_scalars(tmp_path: Path) -> None:
    import torch

    from runlab.record.logger import MetricsError, RunLogger

    with RunLogger(tmp_path / "run") as logger:
        logger.log_metrics(
            {
                "t1": torch.ones(1),
                "t11": torch.full((1, 1), 2.5),
                "ti": torch.tensor([3]),
                "a0": np.array(4.5),
                "a1": np.array([5]),
                "f64": np.float64(6.5),
                "b": np.bool_(True),
            }
        )
        for key, value in [("many", torch.ones(3)), ("arr", np.zeros(2)), ("empty", np.zeros(0))]:
            with pytest.raises(MetricsError, match=rf"'{key}'.*elements"):
                logger.log_metrics({"ok": 1.0, key: value})
    (row,) = strict_rows(tmp_path / "run" / "metrics" / "train.jsonl")
    assert row == {
        "step": 0,
        "time": row["time"],
        "t1": 1.0,
        "t11": 2.5,
        "ti": 3,
        "a0": 4.5,
        "a1": 5,
        "f64": 6.5,
        "b": True,
    }


@pytest.mark.parametrize("key", ["", "a\x00b", "tab\there", "nl\n", 1, None, ("a",)])
def test_bad_metric_keys_are_refused(tmp_path: Path, key: object) -> None:
    from runlab.record.logger import MetricsError, RunLogger

    with RunLogger(tmp_path / "run") as logger:
        with pytest.raises(MetricsError, match="metric") as err:
            logger.log_metrics({"ok": 1.0, key: 2.0})
        assert "\n" not in str(err.value)
        logger.log_metrics({"ok": 3.0})
    assert [r["ok"] for r in strict_rows(tmp_path / "run" / "metrics" / "train.jsonl")] == [3.0]


# --------------------------------------------------------------------- checkpoints
def test_loading_a_checkpoint_mid_run_keeps_the_rows_this_run_logged(tmp_path: Path) -> None:
    from runlab.record.logger import RunLogger

    with RunLogger(tmp_path / "run") as logger:
        for step in range(4):
            logger.log_metrics({"x": step})
        logger.log_checkpoint({"best": 3}, name="best")
        for step in range(4, 8):
            logger.log_metrics({"x": step})
        assert logger.load_checkpoint("best") == {"best": 3}  # mid-run
        logger.log_checkpoint({"next": 8})
        for step in range(8, 12):
            logger.log_metrics({"x": step})
        assert logger.load_checkpoint("best") == {"best": 3}  # at the end
        assert logger.load_checkpoint() == {"next": 8}
        logger.log_metrics({"x": 12})
    assert steps(tmp_path / "run" / "metrics" / "train.jsonl") == list(range(13))


def previous_attempt(run: Path) -> None:
    """An attempt that logged 0..7, checkpointed 'last' after 4 and 'best' after 2, then died."""
    from runlab.record.logger import RunLogger

    with RunLogger(run) as logger:
        for step in range(8):
            logger.log_metrics({"x": step})
            logger.log_metrics({"acc": step}, name="eval")
            if step == 2:
                logger.log_checkpoint({"next": 3}, name="best")
            if step == 4:
                logger.log_checkpoint({"next": 5})


def test_resuming_cuts_only_at_the_first_load_of_last(tmp_path: Path) -> None:
    from runlab.record.logger import RunLogger

    run = tmp_path / "run"
    previous_attempt(run)
    with RunLogger(run) as logger:  # reopened: resumes by default
        assert logger.load_checkpoint("best") == {"next": 3}  # read only
        assert steps(run / "metrics" / "train.jsonl") == list(range(8))
        assert logger.load_checkpoint() == {"next": 5}  # the resume point: rows 5..7 go
        assert steps(run / "metrics" / "train.jsonl") == list(range(5))
        assert steps(run / "metrics" / "eval.jsonl") == list(range(5))
        logger.log_metrics({"x": 5})
        logger.load_checkpoint()  # a second load is read only
        logger.log_metrics({"x": 6})
    assert steps(run / "metrics" / "train.jsonl") == list(range(7))


def test_a_logger_that_logged_or_does_not_resume_never_cuts(tmp_path: Path) -> None:
    from runlab.record.logger import RunLogger

    run = tmp_path / "run"
    previous_attempt(run)
    with RunLogger(run, resume=False) as logger:  # e.g. evaluating a finished run
        assert logger.load_checkpoint() == {"next": 5}
    assert steps(run / "metrics" / "train.jsonl") == list(range(8))
    with RunLogger(run) as logger:
        logger.log_metrics({"x": 8})
        assert logger.load_checkpoint() == {"next": 5}
        logger.log_metrics({"x": 9})
    assert steps(run / "metrics" / "train.jsonl") == list(range(10))


def test_temporaries_of_a_killed_checkpoint_write_are_removed_at_start(tmp_path: Path) -> None:
    from runlab.record.logger import RunLogger

    run = tmp_path / "run"
    with RunLogger(run) as logger:
        logger.log_checkpoint({"next": 1})
    # A process killed inside torch.save leaves its temporary file behind.
    code = (
        "import os, signal, sys, torch\n"
        "class Die:\n"
        "    def __reduce__(self):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "from runlab.record.logger import RunLogger\n"
        "RunLogger(sys.argv[1]).log_checkpoint({'w': torch.zeros(1000), 'die': Die()})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")] == [
        ".last.pt.tmp"
    ]
    with RunLogger(run) as logger:
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]
        assert logger.load_checkpoint() == {"next": 1}


def test_a_torn_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    from runlab.record.logger import RunLogger

    run = tmp_path / "run"
    (run / "metrics").mkdir(parents=True)
    (run / "metrics" / "train.jsonl").write_bytes(
        b'{"step":0,"time":1.0,"x":0}\n{"step":1,"time":1.0,"x":1}\n{"step":2,"ti'
    )
    (run / "metrics" / "eval.jsonl").write_bytes(b'{"step":0,"time":1.0,"x":0}')  # whole, no \n
    with RunLogger(run) as logger:
        logger.log_metrics({"x": 2})
        logger.log_metrics({"x": 1}, name="eval")
    assert steps(run / "metrics" / "train.jsonl") == [0, 1, 2]
    assert steps(run / "metrics" / "eval.jsonl") == [0, 1]


def test_metric_files_respect_the_umask(tmp_path: Path) -> None:
    from runlab.record.logger import RunLogger

    old = os.umask(0o027)
    try:
        with RunLogger(tmp_path / "run") as logger:
            logger.log_metrics({"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "run" / "metrics" / "train.jsonl").stat().st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------- full disk
@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 2 MiB tmpfs, so that writes fail with ENOSPC as on a full disk."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not permitted here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` with a ballast file until the kernel says ENOSPC."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as fh:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return ballast


PAD = "p" * 150  # makes rows big enough to outgrow the last page of the file


def log_until_error(logger, first: int, timeout: float = 30.0) -> tuple[int, Exception]:
    """Log rows from step ``first`` until a call raises; return the next step and the error."""
    step = first
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            logger.log_metrics({"x": step, "pad": PAD})
        except OSError as exc:
            return step, exc
        step += 1
        time.sleep(0.002)
    raise AssertionError("no error reached the task although the disk is full")


def test_a_full_disk_raises_at_the_next_call_and_at_close_once(
    small_disk: Path, capfd: pytest.CaptureFixture
) -> None:
    from runlab.record.logger import RecordWriteError, RunLogger

    run = small_disk / "run"
    logger = RunLogger(run, flush_interval=0.05)
    for step in range(10):
        logger.log_metrics({"x": step})
    logger.flush()
    fill(small_disk)
    next_step, err = log_until_error(logger, 10)
    message = str(err)
    assert isinstance(err, RecordWriteError) and err.__cause__.errno == errno.ENOSPC
    assert "train.jsonl: No space left on device" in message and "\n" not in message
    missing_from = int(re.search(r"rows from step (\d+) on", message).group(1))
    on_disk = steps(run / "metrics" / "train.jsonl")  # every line whole and valid
    assert on_disk == list(range(missing_from))
    with pytest.raises(RecordWriteError, match=r"checkpoint|No space"):
        logger.log_checkpoint({"next": next_step})
    assert not (run / "checkpoints" / "last.pt").exists()
    with pytest.raises(RecordWriteError, match=r"train.jsonl: No space left.*not written"):
        logger.close()
    logger.close()  # once
    rows = steps(run / "metrics" / "train.jsonl")
    assert rows == list(range(len(rows))) and len(rows) >= 10
    assert "Traceback" not in capfd.readouterr().err


def test_a_full_disk_then_freed_writes_every_row_once_in_order(small_disk: Path) -> None:
    from runlab.record.logger import RunLogger

    run = small_disk / "run"
    logger = RunLogger(run, flush_interval=0.05)
    for step in range(10):
        logger.log_metrics({"x": step})
    logger.flush()
    ballast = fill(small_disk)
    step, _ = log_until_error(logger, 10)
    step, _ = log_until_error(logger, step)  # the task caught it and goes on: raised again
    ballast.unlink()  # space comes back
    for _ in range(300):
        logger.log_metrics({"x": step, "pad": PAD})
        step += 1
    logger.log_checkpoint({"next": step})
    fill(small_disk)  # full again: the checkpoint is refused, the previous one kept
    with pytest.raises(OSError, match="No space left on device"):
        for _ in range(5000):
            logger.log_metrics({"x": step, "pad": PAD})
            step += 1
            time.sleep(0.001)
        logger.log_checkpoint({"next": step})
    (small_disk / "ballast").unlink()
    logger.close()
    rows = strict_rows(run / "metrics" / "train.jsonl")
    assert [r["step"] for r in rows] == list(range(len(rows)))
    assert [r["x"] for r in rows] == list(range(len(rows)))
    assert len(rows) > 310
    with RunLogger(run) as again:  # the last good checkpoint is intact
        assert again.load_checkpoint()["next"] > 300


def test_a_full_disk_during_a_checkpoint_is_a_record_write_error_not_torchs(
    small_disk: Path,
) -> None:
    """torch.save turns ENOSPC into 'RuntimeError: [enforce fail at inline_container.cc]';
    the task must learn that the disk is full, and the previous checkpoint stays."""
    import torch

    from runlab.record.logger import RecordWriteError, RunLogger

    logger = RunLogger(small_disk / "run")
    try:
        logger.log_checkpoint({"w": torch.zeros(10)})
        fill(small_disk)
        with pytest.raises(RecordWriteError, match="No space left on device") as e:
            logger.log_checkpoint({"w": torch.zeros(200_000)})
        assert "last.pt" in str(e.value)
        assert logger.load_checkpoint()["w"].shape == (10,)  # the previous one, whole
        assert not list((small_disk / "run" / "checkpoints").glob(".*"))
    finally:
        (small_disk / "ballast").unlink(missing_ok=True)
        logger.close()


@pytest.mark.parametrize("kind", ["bytes", "object", "file", "figure"])
def test_an_artifact_that_does_not_fit_leaves_no_part_under_its_name(
    small_disk: Path, tmp_path: Path, kind: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runlab.record.logger import RecordWriteError, RunLogger

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    fig = plt.figure(figsize=(40, 40), dpi=100)  # a PNG of several MB
    fig.gca().imshow(np.random.default_rng(0).random((800, 800)))
    objs = {
        "bytes": big.read_bytes(),
        "object": {"blob": big.read_bytes()},
        "file": big,
        "figure": fig,
    }
    logger = RunLogger(small_disk / "run")
    try:
        logger.log_artifact(b"old", name="a.png")  # a previous artifact of that name
        with pytest.raises(RecordWriteError, match="No space left on device"):
            logger.log_artifact(objs[kind], name="a.png")
        assert (small_disk / "run" / "artifacts" / "a.png").read_bytes() == b"old"
        assert not list((small_disk / "run" / "artifacts").glob(".*"))
    finally:
        plt.close(fig)
        logger.close()


def test_a_logger_outside_a_session_is_the_runs_only_writer(tmp_path: Path) -> None:
    from runlab.record.logger import RunLogger

    first = RunLogger(tmp_path / "run")
    code = (
        "import sys\nfrom runlab.record.logger import RunLogger\n"
        "from runlab.record.rundir import RunBusyError\n"
        f"try:\n    RunLogger({str(tmp_path / 'run')!r})\nexcept RunBusyError as e:\n"
        "    print('busy', e)\n    sys.exit(3)\n"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode == 3 and "busy" in other.stdout, other.stdout + other.stderr
    first.log_metrics({"x": 1})
    first.close()
    again = RunLogger(tmp_path / "run")  # the lock went with close()
    again.close()
