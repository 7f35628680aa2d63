"""``runlab status --watch``: the live view under a real pseudo-terminal, and the model's
incremental reading (a refresh reads only what changed since the last one)."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import orjson
import pytest

from conftest import TASKS, make_project, runlab_cli, task_env
from runlab.cli import _watch
from runlab.status import Status

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


# --------------------------------------------------------------------- a pty
class Screen:
    """``runlab status --watch`` in a pseudo-terminal of 100 x 40; its output as text."""

    def __init__(self, project: Path, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        env = task_env(RUNLAB_LOGS=str(project / "logs"), TERM="xterm-256color")
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runlab", "status", "--watch", *args],
            cwd=project,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,  # its own terminal: SIGINT as Ctrl-C sends it
        )
        os.close(slave)
        self.master = master
        self.raw = b""

    def pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.raw += os.read(self.master, 1 << 16)
            except OSError:  # the child has closed the terminal
                time.sleep(timeout)

    @property
    def text(self) -> str:
        return ANSI.sub(b"", self.raw).decode(errors="replace")

    def frames(self) -> list[str]:
        """The views drawn, in order (each starts with its title line)."""
        return [f for f in re.split(r"(?=sweep \d{8}-\d{6}-\d+: )", self.text) if f.strip()]

    def wait_for(self, pattern: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if re.search(pattern, self.text):
                return
            self.pump(0.2)
        raise AssertionError(f"{pattern!r} never shown:\n{self.text[-3000:]}")

    def wait_exit(self, timeout: float = 60) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            self.pump(0.2)
        for _ in range(5):
            self.pump(0.05)
        try:
            return self.proc.wait(timeout=1)
        finally:
            os.close(self.master)


def _infos(project: Path, runs: list[int]) -> dict[int, bytes]:
    return {r: (project / "logs" / str(r) / "metadata" / "info.json").read_bytes() for r in runs}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")


def test_watch_shows_a_sweep_until_it_ends(project: Path) -> None:
    runlab_cli(
        project, "submit", "tasks/slow.py", "steps=30", "interval=0.2", "ckpt_every=10",
        "fail_at=3,-1", "--launcher", "local",
    )  # fmt: skip
    screen = Screen(project)
    rc = screen.wait_exit(timeout=120)
    frames = screen.frames()
    assert rc == 0, screen.text[-3000:]
    assert re.search(r"(QUEUED|RUNNING) \d", frames[0]), frames[0]
    last = frames[-1]
    assert "COMPLETE 1  FAILED 1" in last and "2/2 ended (100%)  done" in last, last
    assert "ValueError: failing on purpose at step 3" in last
    assert "train.value" in last and "every run has ended" in last
    # The failure was shown while the other run still ran (6 s, beside it: max_parallel 2).
    assert any("failing on purpose" in f and "RUNNING" in f for f in frames), screen.text


def test_ctrl_c_leaves_the_view_and_the_runs_go_on(project: Path) -> None:
    runlab_cli(
        project, "submit", "tasks/slow.py", "steps=200", "interval=0.5", "ckpt_every=1000",
        "--launcher", "local", RUNLAB_HEARTBEAT_S="3600",
    )  # fmt: skip
    try:
        screen = Screen(project, "--interval", "0.5")
        screen.wait_for(r"RUNNING 1")
        before = _infos(project, [1])
        screen.proc.send_signal(signal.SIGINT)
        rc = screen.wait_exit(timeout=20)
        assert rc == 130, screen.text[-2000:]
        assert "stopped watching; the runs go on" in screen.text
        assert _infos(project, [1]) == before  # the watcher wrote nothing
        assert json.loads(before[1])["status"] == Status.RUNNING
    finally:
        runlab_cli(project, "cancel", check=False)


def test_watch_refuses_what_it_cannot_follow(project: Path) -> None:
    (project / "logs").mkdir()
    out = runlab_cli(project, "status", "--watch", check=False)
    assert out.returncode == 2 and "no sweep in" in out.stderr
    out = runlab_cli(project, "status", "--watch", "--json", check=False)
    assert out.returncode == 2 and "leave out --json" in out.stderr
    out = runlab_cli(project, "status", "--watch", "--metric", "loss", check=False)
    assert out.returncode == 2 and "is not FILE.KEY" in out.stderr


# ----------------------------------------------------------- incremental reads
ROW = b'{"step":%d,"time":1700000000.5,"loss":%f,"acc":0.5}\n'


def make_runs(logs: Path, n: int, rows: int, status: str = "RUNNING") -> None:
    """``n`` runs written directly in the record's format: info.json, and ``rows`` rows of
    ``metrics/train.jsonl``."""
    body = b"".join(ROW % (i, 1.0 / (i + 1)) for i in range(rows))
    for rid in range(1, n + 1):
        run = logs / str(rid)
        (run / "metadata").mkdir(parents=True)
        (run / "metrics").mkdir()
        info = {"run_id": rid, "status": status, "start_time": "2026-12-07T03:00:00+00:00"}
        (run / "metadata" / "info.json").write_bytes(orjson.dumps(info))
        (run / "metrics" / "train.jsonl").write_bytes(body)


def test_a_refresh_reads_only_new_bytes(tmp_path: Path) -> None:
    make_runs(tmp_path, 1000, 200)
    watch = _watch.Watch(tmp_path, range(1, 1001), None)
    cold = watch.refresh()
    assert watch.metric == "train.loss" and watch.metric_from == "the first metric logged"
    assert cold > 1000 * 200 * 40  # every file read once (each under the tail window)
    assert watch.runs[7].value == pytest.approx(1 / 200) and watch.runs[7].step == 199
    assert watch.refresh() == 0  # nothing changed: stats only

    row = ROW % (200, 0.25)
    with open(tmp_path / "500" / "metrics" / "train.jsonl", "ab") as fh:
        fh.write(row[:10])  # a torn line: read, not a row, read again when whole
    assert watch.refresh() == 10 and watch.runs[500].step == 199
    with open(tmp_path / "500" / "metrics" / "train.jsonl", "ab") as fh:
        fh.write(row[10:])
    assert watch.refresh() == len(row)
    assert watch.runs[500].value == 0.25 and watch.runs[500].step == 200
    assert watch.refresh() == 0

    info = tmp_path / "42" / "metadata" / "info.json"
    ended = {"status": "FAILED", "start_time": "2026-12-07T03:00:00+00:00",
             "end_time": "2026-12-07T03:01:40+00:00",
             "error": {"type": "ValueError", "message": "bad\nsecond line"}}  # fmt: skip
    tmp = info.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(ended))
    tmp.replace(info)  # as runlab writes it: a new file renamed into place
    assert watch.refresh() == len(orjson.dumps(ended))
    assert watch.counts() == {Status.RUNNING: 999, Status.FAILED: 1}
    (failure,) = watch.failures
    assert (failure.run_id, failure.status, failure.error) == (42, "FAILED", "ValueError: bad")
    assert watch.runs[42].duration == 100.0 and watch.eta() is not None
    assert watch.refresh() == 0


def test_the_first_read_of_a_long_file_is_its_end(tmp_path: Path) -> None:
    make_runs(tmp_path, 1, 20_000)  # about 1 MB
    watch = _watch.Watch(tmp_path, [1], "train.acc")
    assert watch.refresh() <= _watch.TAIL_WINDOW + 200
    assert watch.runs[1].step == 19_999 and watch.runs[1].value == 0.5
    path = tmp_path / "1" / "metrics" / "train.jsonl"
    path.write_bytes(ROW % (0, 3.0))  # replaced by a shorter file: read again
    assert watch.refresh() == len(ROW % (0, 3.0)) and watch.runs[1].step == 0


def test_ended_runs_are_not_read_again(tmp_path: Path) -> None:
    make_runs(tmp_path, 50, 10, status="COMPLETE")
    watch = _watch.Watch(tmp_path, range(1, 51), "train.loss")
    watch.refresh()
    stats = watch.stats
    with open(tmp_path / "3" / "metrics" / "train.jsonl", "ab") as fh:
        fh.write(ROW % (10, 0.1))
    assert watch.refresh() == 0 and watch.stats - stats == 50  # info.json only


def test_the_default_metric_is_the_first_logged_float(tmp_path: Path) -> None:
    make_runs(tmp_path, 2, 0, status="QUEUED")
    metrics = tmp_path / "2" / "metrics"
    (metrics / "test.jsonl").write_bytes(b'{"step":0,"time":20.0,"epoch":0,"acc":0.5}\n')
    (metrics / "train.jsonl").write_bytes(b'{"step":0,"time":10.0,"epoch":0,"loss":2.5}\n')
    watch = _watch.Watch(tmp_path, [1, 2], None)
    watch.refresh()
    assert watch.metric == "train.loss" and watch.runs[2].value == 2.5


def test_a_tune_sweep_is_ranked_by_its_study_metric(tmp_path: Path) -> None:
    from types import SimpleNamespace

    journal = tmp_path / ".studies" / "lr.journal"
    journal.parent.mkdir()
    lines = [
        {"op_code": 0, "worker_id": "w", "study_name": "lr", "directions": [1]},
        {"op_code": 2, "worker_id": "w", "study_id": 0, "user_attr": {"runlab": {"metric": "val.acc"}}},
        {"op_code": 7, "worker_id": "w", "trial_id": 0, "user_attr": {"runlab": {"metric": "x.y"}}},
    ]  # fmt: skip
    journal.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    record = SimpleNamespace(tune="lr")
    assert _watch.tune_metric(tmp_path, record) == "val.acc"  # type: ignore[arg-type]
    assert _watch.tune_metric(tmp_path, SimpleNamespace(tune=None)) is None  # type: ignore[arg-type]


def test_eta_from_the_durations_of_ended_runs() -> None:
    watch = _watch.Watch("/nonexistent", [1, 2, 3, 4], "train.loss")
    r = watch.runs
    r[1].status, r[1].start, r[1].end = Status.COMPLETE, 0.0, 100.0
    r[2].status, r[2].start = Status.RUNNING, 60.0
    r[3].status, r[3].start = Status.RUNNING, 90.0
    r[4].status = Status.QUEUED
    # running: 100-40 and 100-10 left; queued: 100; two at a time
    assert watch.eta(now=100.0) == pytest.approx((60 + 90 + 100) / 2)


def test_the_view_renders(tmp_path: Path) -> None:
    from rich.console import Console

    make_runs(tmp_path, 30, 5)
    watch = _watch.Watch(tmp_path, range(1, 31), None)
    watch.refresh()
    console = Console(width=100, height=20, record=True, color_system=None)
    console.print(_watch.view(watch, "[bold]sweep X[/]", height=20, footer="[dim]f[/]"))
    text = console.export_text()
    assert "RUNNING 30" in text and "0/30 ended (0%)" in text and "ETA ?" in text
    assert "train.loss" in text and "more" in text and len(text.splitlines()) <= 20


@pytest.mark.parametrize(
    "name", ["acc[/top1]", "[red]loss", "[bold]x[/bold]", "a\x1b[31mb", "l\u202eoss", ":smile:"]
)
def test_a_metric_name_is_drawn_as_text(tmp_path: Path, name: str) -> None:
    # The logger accepts any metric name; the view's column header shows it as written.
    make_runs(tmp_path, 2, 0)
    row = orjson.dumps({"step": 0, "time": 1.0, name: 0.5}) + b"\n"
    (tmp_path / "1" / "metrics" / "train.jsonl").write_bytes(row)
    watch = _watch.Watch(tmp_path, [1, 2], None)
    watch.refresh()
    assert watch.metric == f"train.{name}"
    from rich.console import Console

    console = Console(width=100, height=20, record=True, color_system="truecolor")
    console.print(_watch.view(watch, "sweep X", height=20, footer=""))
    text = console.export_text(styles=False)
    shown = name.replace("\x1b", "\\x1b").replace("\u202e", "\\u202e")
    assert f"train.{shown}" in text, text
    assert "\x1b" not in console.export_text(styles=False)


def test_reading_is_fast_enough_for_a_thousand_runs(tmp_path: Path) -> None:
    make_runs(tmp_path, 1000, 50)
    watch = _watch.Watch(tmp_path, range(1, 1001), "train.loss")
    watch.refresh()
    start = time.process_time()
    for _ in range(5):
        watch.refresh()
    per_refresh = (time.process_time() - start) / 5
    assert per_refresh < 0.1, per_refresh  # 10 % of a core at one refresh a second


# ------------------------------------------------------------------ the docs' screenshot
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "status-watch.svg"
REGENERATE = "python tests/test_status_watch.py --write"


def screenshot_svg() -> str:
    """The view of a sweep of 12 runs halfway through, drawn by :func:`_watch.view` from
    fixed values and exported by rich as SVG (its web font links left out: the page
    loads nothing from elsewhere)."""
    from rich.console import Console

    now = 1_765_000_000.0
    watch = _watch.Watch("/nonexistent", range(1, 13), "val.acc")
    watch.started = now - 754
    for rid, run in watch.runs.items():
        run.start = now - 700 + 40 * rid if rid <= 9 else None
        if rid <= 5:
            run.status, run.end = Status.COMPLETE, run.start + 290 + 7 * rid  # type: ignore[operator]
            run.step, run.value = 49, 0.80 + 0.017 * rid
        elif rid <= 9:
            run.status, run.step, run.value = Status.RUNNING, 5 * rid, 0.61 + 0.02 * rid
        else:
            run.status = Status.QUEUED
    failed = watch.runs[6]
    failed.status, failed.end = Status.FAILED, now - 200
    failed.error = "FloatingPointError: loss is NaN at step 17 (lr=0.3)"
    watch.failures.append(_watch.Failure(6, failed.status, failed.error, now - 200))
    console = Console(
        record=True, width=92, height=24, file=io.StringIO(), color_system="truecolor",
        force_terminal=True, legacy_windows=False,
    )  # fmt: skip
    title = "[bold]sweep 20261207-101500-1[/]: 12 run(s) of train.py on slurm (array 48211)"
    footer = (
        "[dim]refresh every 1 s   metric val.acc (study lr-search)   "
        "Ctrl-C: leave (the runs go on)[/]"
    )
    console.print(_watch.view(watch, title, height=24, now=now, footer=footer))
    svg = console.export_svg(title="runlab status --watch")
    return re.sub(r',\s*url\("https://[^"]*"\) format\("[^"]*"\)', "", svg)


def test_the_docs_screenshot_is_the_view_as_drawn_now() -> None:
    assert "https://cdnjs" not in screenshot_svg()
    assert SCREENSHOT.read_text(encoding="utf-8") == screenshot_svg(), (
        f"{SCREENSHOT.name} is out of date: run {REGENERATE}"
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {REGENERATE}")
    SCREENSHOT.write_text(screenshot_svg(), encoding="utf-8")
    print(SCREENSHOT)
