"""``Reader(logs, refresh="changes")``: a warm read that looks only at the runs that
have not ended, the new ones, and those whose end changed (``runlab.logs.note_change``),
and answers every other run from the index, for a logs directory on a shared file
system. Its invariant: after any sequence of runlab's own writes, it answers what a
read of every file answers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from polars.testing import assert_frame_equal
from test_reader import make_run

from runlab.logs import CHANGED, INDEX
from runlab.record.files import write_record
from runlab.record.logger import RunLogger
from runlab.record.rundir import RunDir
from runlab.results.reader import Reader, _index, wait_for_index


def read(logs: Path, refresh: Any = "changes") -> Reader:
    reader = Reader(logs, refresh=refresh)
    if any(logs.glob("*/metrics/train.jsonl")):
        reader.final("train.loss")  # the metric files too
    wait_for_index()
    return reader


def rows(reader: Reader) -> pl.DataFrame:
    """Every row of the runs' ``train`` metric files (the columns all runs share)."""
    out = reader.metrics("train").collect()
    return out.select("run_id", "step", "loss").sort("run_id", "step")


def attempt(run: RunDir, values: list[float], end: str = "COMPLETE") -> None:
    """A new attempt of an ended run: rows logged into it (the logger counts an attempt),
    then its new end."""
    with RunLogger(run) as logger:
        for v in values:
            logger.log_metrics({"loss": v}, name="train")
    run.update_info(status=end)


def append_row(run: RunDir, value: float) -> None:
    """A row written by the live writer of a RUNNING run (whose lock it holds)."""
    path = run.metrics / "train.jsonl"
    step = len(path.read_text().splitlines()) if path.exists() else 0
    with open(path, "a") as fh:
        fh.write(orjson.dumps({"step": step, "time": 1.0, "loss": value}).decode() + "\n")


def test_a_warm_read_looks_only_at_the_runs_whose_end_changed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for seed in range(6):
        make_run(logs, {"seed": seed}, [{"loss": float(seed)}, {"loss": seed / 2}])
    read(logs, True)  # the default: every run's files checked, no change folder made
    assert not (logs / INDEX / CHANGED).exists()

    first = read(logs)  # the first read in this mode checks every run once
    assert first.stats["runs_checked"] == 6
    warm = read(logs)
    assert warm.stats["runs_checked"] == 0 and warm.stats["metric_files_checked"] == 0
    assert warm.stats["meta_reused"] == 6 and warm.stats["metric_files_cached"] == 6

    attempt(RunDir(logs / "4"), [9.0])  # a retry that ran again: its end changed
    make_run(logs, {"seed": 6}, [{"loss": 6.0}])  # a new run
    shutil.rmtree(logs / "2")  # a deleted one
    after = read(logs)
    assert after.stats["runs_checked"] == 2  # runs 4 and 7
    assert after.stats["metric_files_checked"] == 2
    assert after.run_ids == [1, 3, 4, 5, 6, 7]
    assert rows(after).filter(pl.col("run_id") == 4)["loss"].to_list() == [3.0, 1.5, 9.0]

    # A record edited by hand is not a change runlab notes: this mode keeps the index's
    # answer, and the default mode (a stat of every file) sees it.
    info = RunDir(logs / "5").read_info()
    write_record(RunDir(logs / "5").info_file, {**info, "note": "by hand"})
    assert "info.note" not in read(logs).df.columns
    assert read(logs, True).filter("info.note == 'by hand'").run_ids == [5]

    # The change folder deleted (its files with it): every run is checked again.
    shutil.rmtree(logs / INDEX / CHANGED)
    assert read(logs).stats["runs_checked"] == 6
    assert read(logs).stats["runs_checked"] == 0


def test_refresh_takes_three_values(tmp_path: Path) -> None:
    make_run(tmp_path / "logs", {"seed": 1}, [{"loss": 1.0}])
    with pytest.raises(ValueError, match="refresh='sometimes'"):
        Reader(tmp_path / "logs", refresh="sometimes")  # type: ignore[arg-type]


def test_a_read_only_reader_checks_every_run(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    make_run(logs, {"seed": 1}, [{"loss": 1.0}])
    read(logs)
    read(logs)
    quiet = Reader(logs, refresh="changes", write_index=False)  # cannot stamp a folder
    assert quiet.stats["runs_checked"] == 1


class ChangesMatchAFullRead(RuleBasedStateMachine):
    """Runs made, appended to, ended, run again, retried and deleted through runlab's
    writers, in any order, with warm reads in between: the warm read in ``changes``
    mode always answers what a read of every file (no index) answers."""

    @initialize()
    def setup(self) -> None:
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="runlab-changes-"))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.saved = (_index.CHANGE_MARGIN_S, _index.MAX_READ_S)
        # No margin: a change a moment after a read is looked for exactly from its stamp.
        _index.CHANGE_MARGIN_S, _index.MAX_READ_S = 0.0, 60.0
        self.values = 0.0

    def teardown(self) -> None:
        if hasattr(self, "saved"):
            _index.CHANGE_MARGIN_S, _index.MAX_READ_S = self.saved
            shutil.rmtree(self.dir, ignore_errors=True)

    def _runs(self, status: set[str] | None = None) -> list[int]:
        out = []
        for p in sorted(self.logs.iterdir()):
            if p.name.isdigit() and (status is None or RunDir(p).read_info()["status"] in status):
                out.append(int(p.name))
        return out

    def _next(self) -> float:
        self.values += 1.0
        return self.values

    @rule(end=st.sampled_from(["COMPLETE", "FAILED", "RUNNING"]), rows=st.integers(0, 3))
    def new_run(self, end: str, rows: int) -> None:
        make_run(
            self.logs, {"seed": len(self._runs())}, [{"loss": self._next()}] * rows, status=end
        )

    @rule(pick=st.integers(0, 50), end=st.sampled_from(["COMPLETE", "FAILED", "INTERRUPTED"]))
    def run_again(self, pick: int, end: str) -> None:
        ended = self._runs({"COMPLETE", "FAILED", "INTERRUPTED"})
        if ended:
            attempt(RunDir(self.logs / str(ended[pick % len(ended)])), [self._next()], end)

    @rule(pick=st.integers(0, 50), end=st.sampled_from([None, "COMPLETE", "FAILED"]))
    def running_run_logs(self, pick: int, end: str | None) -> None:
        running = self._runs({"RUNNING"})
        if running:
            run = RunDir(self.logs / str(running[pick % len(running)]))
            append_row(run, self._next())
            if end:
                run.update_info(status=end)

    @rule(pick=st.integers(0, 50))
    def retry(self, pick: int) -> None:
        failed = self._runs({"FAILED"})
        if failed:
            RunDir(self.logs / str(failed[pick % len(failed)])).update_info(status="QUEUED")

    @rule(pick=st.integers(0, 50))
    def delete(self, pick: int) -> None:
        runs = self._runs()
        if runs:
            shutil.rmtree(self.logs / str(runs[pick % len(runs)]))

    @rule()
    def rows_match(self) -> None:
        """The metric rows, read in this mode (and cached), are every file's rows."""
        if any(self.logs.glob("*/metrics/train.jsonl")):
            warm = Reader(self.logs, refresh="changes")
            assert_frame_equal(rows(warm), rows(Reader(self.logs, index=False)))
            wait_for_index()

    @invariant()
    def the_table_is_what_every_file_says(self) -> None:
        """After every step, a read of the run table alone (which moves the index's stamp
        on, while the metric rows it holds may be older)."""
        if not hasattr(self, "logs") or not self._runs():
            return
        warm = Reader(self.logs, refresh="changes")
        wait_for_index()
        full = Reader(self.logs, index=False)
        assert warm.run_ids == full.run_ids
        cols = [c for c in full.df.columns if c.startswith(("config.", "info.status"))]
        assert_frame_equal(warm.df.select("run_id", *cols), full.df.select("run_id", *cols))


TestChangesMatchAFullRead = ChangesMatchAFullRead.TestCase
TestChangesMatchAFullRead.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_runlab_refresh_sets_the_default_of_every_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    from conftest import task_env

    logs = tmp_path / "logs"
    make_run(logs, {"seed": 1}, [{"loss": 1.0}])
    monkeypatch.setenv("RUNLAB_REFRESH", "changes")
    read(logs)
    assert Reader(logs).stats["runs_checked"] == 0
    assert Reader(logs, refresh=True).stats["runs_checked"] == 1
    monkeypatch.setenv("RUNLAB_REFRESH", "all")
    assert Reader(logs).stats["runs_checked"] == 1
    out = subprocess.run(
        [sys.executable, "-m", "runlab", "ls", str(logs)],
        env=task_env(RUNLAB_REFRESH="sometimes"),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "RUNLAB_REFRESH='sometimes' is not a way to read runs" in line
    assert "set it to 'changes' or 'all'" in line


def test_rows_cached_before_a_change_are_not_answered_for_a_trusted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rows of run 2 are cached; it runs again; reads of the run table alone take the
    # change in and move the stamp on, so that run 2 is trusted again: its cached rows
    # are older than its records, and must not be answered.
    monkeypatch.setattr(_index, "CHANGE_MARGIN_S", 0.0)
    monkeypatch.setattr(_index, "MAX_READ_S", 60.0)
    logs = tmp_path / "logs"
    for seed in range(3):
        make_run(logs, {"seed": seed}, [{"loss": float(seed)}])
    read(logs)
    read(logs)  # stamped, rows cached
    attempt(RunDir(logs / "2"), [7.0])
    for _ in range(2):
        Reader(logs, refresh="changes")
        wait_for_index()
    warm = Reader(logs, refresh="changes")
    assert warm.stats["runs_checked"] == 0  # run 2 is trusted again
    assert rows(warm).filter(pl.col("run_id") == 2)["loss"].to_list() == [1.0, 7.0]


def test_runs_a_submit_makes_are_read_even_under_ids_an_index_knew(tmp_path: Path) -> None:
    # `runlab submit` writes its runs' records itself (not through update_info): runs 1
    # and 2 deleted, their ids taken again by a new sweep, showed the old, ended runs.
    from conftest import TASKS, make_project, runlab_cli

    project = make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")
    logs = project / "logs"
    for seed in range(2):
        make_run(logs, {"seed": seed}, [{"loss": 1.0}])
    read(logs)
    read(logs)
    shutil.rmtree(logs / "1")
    shutil.rmtree(logs / "2")
    runlab_cli(project, "submit", "tasks/slow.py", "steps=100", "interval=0.2", "fail_at=-1,-2",
               "--launcher", "local")  # fmt: skip
    try:
        warm = Reader(logs, refresh="changes")
        assert warm.run_ids == [1, 2]
        assert set(warm.df["info.status"].to_list()) <= {"QUEUED", "RUNNING"}
        assert warm.df["info.sweep_id"].null_count() == 0
    finally:
        runlab_cli(project, "cancel", check=False)


@pytest.mark.filterwarnings("ignore::runlab.results.reader.CorruptRunWarning")
def test_a_run_read_before_its_record_was_written_is_read_again(tmp_path: Path) -> None:
    # A read between a run's folder and its record (CORRUPT then) kept it CORRUPT.
    from runlab.record.rundir import allocate

    logs = tmp_path / "logs"
    make_run(logs, {"seed": 0}, [{"loss": 1.0}])
    read(logs)
    (path,) = allocate(logs, 1)
    assert read(logs).df.filter(pl.col("run_id") == 2)["info.status"].item() == "CORRUPT"
    write_record(RunDir(path).create().info_file, {"status": "QUEUED"})  # as submit writes it
    RunDir(path).update_info(status="RUNNING")  # an active status to an active one
    assert read(logs).df.filter(pl.col("run_id") == 2)["info.status"].item() == "RUNNING"


def test_a_warm_read_speaks_only_of_the_runs_it_selected(tmp_path: Path) -> None:
    # Runs 1 and 2 logged text where run 3 logs numbers: the values set to null are
    # named for the runs selected, not for every run of the index's block.
    logs = tmp_path / "logs"
    make_run(logs, {"seed": 1}, [{"acc": "a"}, {"acc": "b"}])
    make_run(logs, {"seed": 2}, [{"acc": "c"}])
    Reader(logs).metrics("train").collect()
    wait_for_index()  # runs 1 and 2 in the index's block
    make_run(logs, {"seed": 3}, [{"acc": 0.5}], status="RUNNING")
    selected = Reader(logs).filter("config.seed != 1")
    with pytest.warns(UserWarning, match="could not be read fully"):
        rows_read = selected.metrics("train").collect()
    assert sorted(set(rows_read["run_id"].to_list())) == [2, 3]
    assert [Path(p).parent.name for p, _ in selected.problems] == ["2"]
