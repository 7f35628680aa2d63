"""The Polars reader: run table, filters, aggregations (checked by hand), corrupt runs, index."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from runlab.record import metricsfile
from runlab.record.files import now_iso, write_record, write_yaml
from runlab.record.logger import RunLogger
from runlab.record.rundir import RunDir, allocate
from runlab.results.query import QueryError
from runlab.results.reader import (
    INDEX_DIR,
    CorruptRunWarning,
    IndexDamagedWarning,
    Reader,
    runs,
    wait_for_index,
)

ENV = {
    "git": {"commit": "abc123", "branch": "main", "dirty": False},
    "pixi": {"environment": "default", "lock_sha256": "f00d"},
    "python": {"version": "3.11.7", "implementation": "CPython"},
    "torch": {"version": "2.3.0", "cuda": None},
    "gpus": [],
    "packages": {"numpy": "2.0.0", "polars": "1.0.0"},
    "conda_packages": None,
}
METHODS = ("GD", "GN")
STDS = (0.1, 1.0)
SEEDS = (0, 1, 2)
STEPS = 5


def loss(method: str, std: float, seed: int, step: int) -> float:
    return (1.0 if method == "GN" else 0.0) + std + 0.37 * seed * (step + 1) + 1.0 / (step + 1)


def make_run(
    logs: Path,
    config: dict[str, Any],
    rows: list[dict[str, Any]] | None = None,
    name: str = "train",
    **info: Any,
) -> RunDir:
    """A run written through the writer API: metadata files, then metrics by RunLogger."""
    run = RunDir(allocate(logs)[0]).create()
    write_record(run.config_file, config)
    write_record(run.env_file, ENV)
    fields = {
        "status": "COMPLETE",
        "start_time": now_iso(),
        "heartbeat": now_iso(),
        "heartbeat_interval_s": 15.0,
    }
    fields.update(info)
    if rows:  # before its info: a RUNNING record with a fresh heartbeat has a writer already
        with RunLogger(run, flush_interval=60) as logger:
            for row in rows:
                logger.log_metrics(row, name=name)
    run.update_info(**fields)
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    for method in METHODS:
        for std in STDS:
            for seed in SEEDS:
                config = {"method": method, "std": std, "seed": seed, "optimizer": {"lr": 0.01}}
                run = make_run(
                    logs,
                    config,
                    [{"loss": loss(method, std, seed, s), "epoch": s // 2} for s in range(STEPS)],
                )
                with RunLogger(run) as logger:
                    logger.log_metrics({"loss": loss(method, std, seed, 99) / 2}, name="test")
    return logs


def hand(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
        "count": len(values),
    }


def close(row: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if not isinstance(value, float):
            assert row[key] == value, (key, row, want)
        else:
            assert math.isclose(row[key], value, rel_tol=1e-12), (key, row, want)


# -------------------------------------------------------------------- table
def test_one_row_per_run_with_flattened_columns(sweep: Path) -> None:
    (sweep / "notes").mkdir()  # not a run: not a number
    (sweep / ".snapshots").mkdir()
    (sweep / "README.txt").write_text("hello")
    with pytest.warns(CorruptRunWarning, match="'notes'"):
        r = Reader(sweep)
        assert len(r) == 12 and r.run_ids == list(range(1, 13))
        df = r.df
    assert df["run_id"].dtype == pl.Int64
    assert df.columns[0] == "run_id"
    for col in (
        "config.method",
        "config.optimizer.lr",
        "info.status",
        "info.start_time",
        "env.git.commit",
        "env.pixi.lock_sha256",
        "env.python.version",
        "env.torch.version",
        "train.loss.last",
        "train.loss.min",
        "train.loss.max",
        "train.step.max",
        "train.epoch.last",
        "test.loss.last",
    ):
        assert col in df.columns, col
    assert not [c for c in df.columns if "packages" in c]
    assert "train.time.last" not in df.columns
    row = df.filter(pl.col("run_id") == 1).row(0, named=True)
    assert row["config.method"] == "GD" and row["env.git.commit"] == "abc123"
    assert row["train.step.max"] == STEPS - 1
    values = [loss("GD", 0.1, 0, s) for s in range(STEPS)]
    assert row["train.loss.last"] == values[-1]
    assert row["train.loss.min"] == min(values) and row["train.loss.max"] == max(values)
    searchable = dict(r.searchable.iter_rows())
    assert searchable["config.optimizer.lr"] == "Float64"
    assert searchable["train.loss.last"] == "Float64"
    assert searchable["config.method"] == "String"
    assert (sweep / INDEX_DIR / "runs.json").exists()
    with pytest.warns(CorruptRunWarning, match="'notes'"):
        assert runs(sweep).run_ids == r.run_ids


def test_default_logs_and_missing_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="no logs directory"):
        Reader(tmp_path / "nope")
    make_run(tmp_path / "elsewhere", {"a": 1})
    monkeypatch.setenv("RUNLAB_LOGS", str(tmp_path / "elsewhere"))
    assert len(Reader()) == 1


def test_filters_compose_and_leave_the_reader_unchanged(sweep: Path) -> None:
    r = Reader(sweep)
    gd = r.filter("config.method == 'GD'")
    assert len(r) == 12 and len(gd) == 6
    both = gd.filter("config.std >= 1 & config.seed in [0, 2]")
    assert both.run_ids == [4, 6]
    assert r.filter(pl.col("config.seed") == 1).run_ids == [2, 5, 8, 11]
    # Filters on metric summaries read them on demand.
    best = r.filter("train.loss.last < 2.5")
    want = [
        i + 1
        for i, (m, s, seed) in enumerate((m, s, d) for m in METHODS for s in STDS for d in SEEDS)
        if loss(m, s, seed, STEPS - 1) < 2.5
    ]
    assert best.run_ids == want
    assert r.filter(pl.col("train.loss.last") < 2.5).run_ids == want
    with pytest.raises(QueryError, match=r"did you mean 'config\.method'"):
        r.filter("config.metod == 'GD'")
    with pytest.raises(QueryError):
        r.group_by("config.metod")


def test_curves_mean_std_min_max_count_by_hand(sweep: Path) -> None:
    r = Reader(sweep).filter("info.status == 'COMPLETE' & config.seed in [0, 1, 2]")
    out = r.group_by("config.method", "config.std").curves("train.loss")
    assert out.columns == [
        "config.method",
        "config.std",
        "step",
        "mean",
        "std",
        "min",
        "max",
        "count",
    ]
    assert out.height == len(METHODS) * len(STDS) * STEPS
    for row in out.iter_rows(named=True):
        values = [
            loss(row["config.method"], row["config.std"], seed, row["step"]) for seed in SEEDS
        ]
        close(row, hand(values))
    # Ungrouped: over all runs; and a subset of seeds.
    allruns = r.curves("train.loss")
    for row in allruns.iter_rows(named=True):
        values = [loss(m, s, d, row["step"]) for m in METHODS for s in STDS for d in SEEDS]
        close(row, hand(values))
    two = r.filter("config.seed < 2").group_by("config.method").curves("train.loss", ddof=0)
    for row in two.iter_rows(named=True):
        values = [loss(row["config.method"], s, d, row["step"]) for s in STDS for d in (0, 1)]
        assert math.isclose(row["std"], statistics.pstdev(values), rel_tol=1e-12)
    # Against another x: the last row of each (run, epoch).
    by_epoch = r.group_by("config.method").curves("train.loss", x="epoch")
    for row in by_epoch.iter_rows(named=True):
        last_step = min(2 * row["epoch"] + 1, STEPS - 1)
        values = [loss(row["config.method"], s, d, last_step) for s in STDS for d in SEEDS]
        close(row, hand(values))


def test_final_by_hand(sweep: Path) -> None:
    r = Reader(sweep)
    out = r.group_by("config.method").final("test.loss")
    assert out.columns == ["config.method", "mean", "std", "min", "max", "count"]
    for row in out.iter_rows(named=True):
        values = [loss(row["config.method"], s, d, 99) / 2 for s in STDS for d in SEEDS]
        close(row, hand(values))
    one = r.final("train.loss").row(0, named=True)
    values = [loss(m, s, d, STEPS - 1) for m in METHODS for s in STDS for d in SEEDS]
    close(one, hand(values))
    with pytest.raises(QueryError, match="no key 'los'"):
        r.final("train.los")
    with pytest.raises(QueryError, match=r"no metrics/valid\.jsonl"):
        r.curves("valid.loss")


def test_metrics_are_lazy_and_carry_run_ids(sweep: Path) -> None:
    r = Reader(sweep).filter("config.method == 'GN' & config.std == 1.0")
    lf = r.metrics("train", join=["config.seed"])
    assert isinstance(lf, pl.LazyFrame)
    df = lf.collect().sort("run_id", "step")
    assert set(df["run_id"].unique()) == set(r.run_ids)
    assert df.height == 3 * STEPS
    assert {"run_id", "step", "time", "loss", "epoch", "config.seed"} <= set(df.columns)
    row = df.row(0, named=True)
    assert row["loss"] == loss("GN", 1.0, row["config.seed"], row["step"])
    pdf = r.to_pandas()
    assert list(pdf["run_id"]) == r.run_ids
    assert r.select("config.seed", "train.loss.last").shape == (3, 2)


def test_a_step_logged_twice_counts_once(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    make_run(logs, {"m": "a"}, [{"loss": 1.0, "step": 0}, {"loss": 2.0, "step": 1}])
    run = make_run(logs, {"m": "a"}, [{"loss": 5.0, "step": 0}, {"loss": 7.0, "step": 1}])
    with RunLogger(run) as logger:  # a resumed run that re-logs step 1
        logger.log_metrics({"loss": 3.0}, step=1)
    out = Reader(logs).curves("train.loss")
    assert out.to_dicts() == [
        {"step": 0, "mean": 3.0, "std": math.sqrt(8.0), "min": 1.0, "max": 5.0, "count": 2},
        {"step": 1, "mean": 2.5, "std": math.sqrt(0.5), "min": 2.0, "max": 3.0, "count": 2},
    ]


def test_heterogeneous_metric_files(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    # A key that only some middle rows have, ints that become floats, strings.
    rows = [{"loss": 1}, {"loss": 2, "acc": 0.5}, {"loss": 2.5}, {"loss": 3}]
    make_run(logs, {"m": "a"}, rows)
    make_run(logs, {"m": "b"}, [{"loss": 4, "phase": "warmup"}, {"loss": 5, "phase": "main"}])
    r = Reader(logs)
    df = r.metrics("train").collect().sort("run_id", "step")
    assert df.filter(pl.col("run_id") == 1)["acc"].to_list() == [None, 0.5, None, None]
    assert df.filter(pl.col("run_id") == 1)["loss"].to_list() == [1.0, 2.0, 2.5, 3.0]
    assert df.filter(pl.col("run_id") == 2)["phase"].to_list() == ["warmup", "main"]
    table = r.df
    assert table["train.acc.last"].to_list() == [0.5, None]
    assert table["train.phase.last"].to_list() == [None, "main"]


# ------------------------------------------------------------------ corrupt
def test_corrupt_runs_are_marked_and_warned_once(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    good = make_run(logs, {"m": "a"}, [{"loss": 1.0}, {"loss": 0.5}])
    no_info = make_run(logs, {"m": "b"}, [{"loss": 1.0}])
    no_info.info_file.unlink()
    no_info.info_file.with_suffix(".json").unlink()
    bad_yaml = make_run(logs, {"m": "c"}, [{"loss": 1.0}])
    bad_yaml.config_file.with_suffix(".json").unlink()  # a run written by hand: YAML only
    bad_yaml.config_file.write_text("m: [unclosed\n  - x: {\n")
    empty = RunDir(allocate(logs)[0])  # allocated, nothing written yet
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = Reader(logs)
    ours = [w for w in caught if issubclass(w.category, CorruptRunWarning)]
    assert len(ours) == 1
    text = str(ours[0].message)
    for run in (no_info, bad_yaml, empty):
        assert str(run.path) in text
    assert str(good.path) not in text
    status = dict(r.df.select("run_id", "info.status").iter_rows())
    assert status == {1: "COMPLETE", 2: "CORRUPT", 3: "COMPLETE", 4: "CORRUPT"}
    problem = dict(r.df.select("run_id", "problem").iter_rows())
    assert problem[1] is None
    assert "missing metadata/info.yaml" in problem[2]
    assert "metadata/config.yaml: invalid YAML" in problem[3]
    assert len(r.problems) == 3
    # A query on config leaves them out, without raising.
    assert r.filter("config.m in ['a', 'b', 'c']").run_ids == [1, 2]


def test_half_written_and_invalid_metric_lines(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    torn = make_run(logs, {"m": "a"}, [{"loss": 1.0}, {"loss": 2.0}])
    with open(torn.metrics / "train.jsonl", "ab") as fh:
        fh.write(b'{"step": 2, "time": 1.0, "lo')  # killed mid-write
    garbled = make_run(logs, {"m": "a"}, [{"loss": 3.0}, {"loss": 4.0}])
    lines = (garbled.metrics / "train.jsonl").read_bytes().splitlines(keepends=True)
    (garbled.metrics / "train.jsonl").write_bytes(lines[0] + b"not json\n" + lines[1])
    live = make_run(logs, {"m": "a"}, [{"loss": 5.0}], status="RUNNING")
    with open(live.metrics / "train.jsonl", "ab") as fh:
        fh.write(b'{"step": 1, "ti')  # being written right now: not a problem
    make_run(logs, {"m": "a"})  # no metrics at all
    r = Reader(logs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = r.curves("train.loss")
    ours = [w for w in caught if issubclass(w.category, CorruptRunWarning)]
    assert len(ours) == 1
    text = str(ours[0].message)
    assert "half-written last line" in text and str(torn.path) in text
    assert "1 invalid line(s) skipped, the first at line 2" in text and str(garbled.path) in text
    assert str(live.path) not in text
    assert out.to_dicts() == [
        {"step": 0, "mean": 3.0, "std": 2.0, "min": 1.0, "max": 5.0, "count": 3},
        {"step": 1, "mean": 3.0, "std": math.sqrt(2.0), "min": 2.0, "max": 4.0, "count": 2},
    ]


def test_lost_runs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    old = (datetime.now().astimezone() - timedelta(seconds=300)).isoformat()
    make_run(logs, {"m": 1}, status="RUNNING", heartbeat=old)  # 300 s > max(60, 60): LOST
    make_run(logs, {"m": 2}, status="RUNNING")  # fresh heartbeat
    make_run(logs, {"m": 3}, status="RUNNING", heartbeat=old, heartbeat_interval_s=100.0)
    older = (datetime.now().astimezone() - timedelta(seconds=500)).isoformat()
    make_run(logs, {"m": 4}, status="RUNNING", heartbeat=older, heartbeat_interval_s=100.0)
    make_run(logs, {"m": 5}, status="COMPLETE", heartbeat=older)
    status = Reader(logs).df["info.status"].to_list()
    assert status == ["LOST", "RUNNING", "RUNNING", "LOST", "COMPLETE"]
    assert Reader(logs).filter("info.status == 'LOST'").run_ids == [1, 4]


# -------------------------------------------------------------------- index
def test_incremental_index_rereads_only_what_changed(sweep: Path) -> None:
    first = Reader(sweep)
    assert first.stats["meta_parsed"] == 12
    first.curves("train.loss")
    assert first.stats["metric_files_parsed"] == 12
    wait_for_index()
    warm = Reader(sweep)
    assert warm.stats["meta_parsed"] == 0 and warm.stats["meta_reused"] == 12
    warm.curves("train.loss")
    assert warm.stats.get("metric_files_parsed", 0) == 0
    assert warm.stats["metric_files_cached"] == 12
    # Touch one run's info and append to another run's metrics.
    RunDir(sweep / "5").update_info(note="looked at")
    with RunLogger(RunDir(sweep / "7")) as logger:
        logger.log_metrics({"loss": 123.0}, name="train")
    again = Reader(sweep)
    # Run 7 had ended: the rows logged into it by hand are a new attempt (its info too).
    assert again.stats["meta_parsed"] == 2 and again.stats["meta_reused"] == 10
    assert again.filter("info.note == 'looked at'").run_ids == [5]
    out = again.filter("config.seed == 0").curves("train.loss")
    assert again.stats["metric_files_parsed"] == 1
    assert again.stats["metric_files_cached"] == 3
    assert out.filter(pl.col("step") == STEPS)["max"].to_list() == [123.0]
    assert again.df.filter(pl.col("run_id") == 7)["train.loss.last"].item() == 123.0
    attempts = [r.df.filter(pl.col("run_id") == 7)["info.attempts"].item() for r in (warm, again)]
    assert attempts[1] == attempts[0] + 1
    # A new run and a deleted run.
    make_run(sweep, {"method": "GD", "std": 0.1, "seed": 7}, [{"loss": 1.0}])
    import shutil

    shutil.rmtree(sweep / "2")
    last = Reader(sweep)
    assert last.stats["meta_parsed"] == 1 and 2 not in last.run_ids and 13 in last.run_ids


def test_damaged_index_is_rebuilt_and_read_only_mode(sweep: Path) -> None:
    Reader(sweep).curves("train.loss")
    wait_for_index()
    for data in (sweep / INDEX_DIR).rglob("*.parquet"):  # data files damaged in place
        data.chmod(0o644)
        data.write_bytes(b"PAR1 nonsense")
    with pytest.warns(IndexDamagedWarning, match="is damaged"):
        r = Reader(sweep)
        assert r.stats["meta_parsed"] == 12
        assert r.curves("train.loss").height == STEPS
    other = sweep.parent / "other"
    make_run(other, {"a": 1}, [{"loss": 1.0}])
    r = Reader(other, write_index=False)
    r.curves("train.loss")
    wait_for_index()
    assert not (other / INDEX_DIR).exists()
    Reader(other).df  # noqa: B018
    wait_for_index()
    assert Reader(other, refresh=False).stats["meta_reused"] == 1


def _read_in_child(logs: str) -> list[dict[str, Any]]:
    r = Reader(logs)
    out = r.group_by("config.method", "config.std").curves("train.loss").to_dicts()
    r.df  # noqa: B018
    wait_for_index()
    return out


def test_concurrent_refreshes(sweep: Path) -> None:
    want = _read_in_child(str(sweep))
    import shutil

    shutil.rmtree(sweep / INDEX_DIR)
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map(_read_in_child, [str(sweep)] * 8)
    final = Reader(sweep).group_by("config.method", "config.std").curves("train.loss").to_dicts()
    for got in [*results, final]:
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            close(a, b)  # equal up to the order of floating-point sums
    leftovers = [p for p in (sweep / INDEX_DIR).rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_import_runlab_does_not_import_polars() -> None:
    code = "import sys, runlab; runlab.__version__; assert 'polars' not in sys.modules, 'polars'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_package_parts_load_as_attributes() -> None:
    """`import runlab` gives its parts on first use (`runlab.record`, `runlab.status`), as
    it gives its public names, and loads none of them (nor Hydra) before."""
    code = (
        "import sys, runlab\n"
        "assert 'runlab.record' not in sys.modules and 'hydra' not in sys.modules\n"
        "assert runlab.record.__name__ == 'runlab.record' and runlab.status.Status.COMPLETE\n"
        "try:\n    runlab.nothing\nexcept AttributeError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "module 'runlab' has no attribute 'nothing'"


def test_big_sweep_smoke(tmp_path: Path) -> None:
    """Many files written directly (not through the logger), read in one batch."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for rid in range(1, 301):
        run = logs / str(rid)
        (run / "metadata").mkdir(parents=True)
        (run / "metrics").mkdir()
        write_yaml(run / "metadata" / "config.yaml", {"g": rid % 3, "seed": rid})
        write_yaml(run / "metadata" / "info.yaml", {"status": "COMPLETE"})
        rows = b"".join(
            orjson.dumps({"step": s, "time": time.time(), "loss": float(rid + s)}) + b"\n"
            for s in range(50)
        )
        (run / "metrics" / "train.jsonl").write_bytes(rows)
    r = Reader(logs)
    out = r.group_by("config.g").curves("train.loss")
    assert out.height == 3 * 50
    row = out.filter((pl.col("config.g") == 1) & (pl.col("step") == 10)).row(0, named=True)
    close(row, hand([float(rid + 10) for rid in range(1, 301) if rid % 3 == 1]))
    assert r.stats["metric_fast_batches"] >= 1 and r.stats.get("metric_files_slow", 0) == 0
    assert os.path.isdir(logs / INDEX_DIR)


def test_many_batches_match_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runlab.results.reader._metrics as reader_module

    logs = tmp_path / "logs"
    for i in range(20):
        rows = [{"loss": float(i * 10 + s)} for s in range(30)]
        if i == 7:
            rows[10]["extra"] = "x:y"  # a ':' in a string and a new key: the slow path
        make_run(logs, {"i": i % 4}, rows)
    for twin in logs.glob("*/metrics/*.parquet"):  # this test is about the JSON lines
        twin.unlink()
    want = Reader(logs, write_index=False).group_by("config.i").curves("train.loss")
    monkeypatch.setattr(reader_module, "BATCH_BYTES", 2000)
    r = Reader(logs, write_index=False)
    got = r.group_by("config.i").curves("train.loss")
    assert r.stats["metric_fast_batches"] > 5 and r.stats["metric_files_slow"] >= 1
    assert got.equals(want)
    assert (
        r.metrics("train").collect().filter(pl.col("run_id") == 8)["extra"].to_list()[10] == "x:y"
    )


def test_index_generations_are_immutable_and_collected_after_a_grace(
    sweep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runlab.results.reader._index as index_module

    Reader(sweep).curves("train.loss")
    wait_for_index()
    folder = sweep / INDEX_DIR / "metrics" / "train"
    first = sorted(p.name for p in folder.glob("*.parquet"))
    assert len(first) == 1
    data = (folder / first[0]).read_bytes()
    held = Reader(sweep).filter("config.seed == 0")  # holds the first generation
    held.df  # noqa: B018 - summaries from its pointer; rows not read yet

    def new_generation(run_id: int) -> list[str]:
        with RunLogger(RunDir(sweep / str(run_id))) as logger:
            logger.log_metrics({"loss": 9.0 + run_id})
        Reader(sweep).curves("train.loss")
        wait_for_index()
        return sorted(p.name for p in folder.glob("*.parquet"))

    second = new_generation(1)
    assert len(second) == 2 and first[0] in second  # retired, kept for GRACE_S
    assert (folder / first[0]).read_bytes() == data  # never rewritten
    monkeypatch.setattr(index_module, "GRACE_S", 0.0)
    third = new_generation(2)
    assert first[0] not in third and len(third) == 2  # the first is gone, the second retired
    # The reader that held the first generation reads the runs' files instead.
    want = Reader(sweep, index=False).filter("config.seed == 0").curves("train.loss").to_dicts()
    got = held.curves("train.loss").to_dicts()
    assert len(got) == len(want) == STEPS + 1
    for a, b in zip(got, want, strict=True):
        close(a, b)  # equal up to the order of floating-point sums


# ------------------------------------------------------------ columnar twins
def _twin_rows() -> list[dict[str, Any]]:
    nan, inf = float("nan"), float("inf")
    rows: list[dict[str, Any]] = []
    for s in range(40):
        row: dict[str, Any] = {"loss": 1.0 / (s + 1), "acc": s % 3, "phase": f"p{s % 2}"}
        if s == 5:
            row["loss"] = nan
        if s == 6:
            row["loss"] = -inf
        if s == 7:
            row["acc"] = inf
        if s % 10 == 9:
            row["extra"] = s  # a key only some rows have
        rows.append(row)
    return rows


def _without_twins(logs: Path) -> Path:
    import shutil

    copy = logs.parent / (logs.name + "-jsonl")
    shutil.copytree(logs, copy, copy_function=shutil.copy2)
    for twin in copy.glob("*/metrics/*.parquet"):
        twin.unlink()
    return copy


def test_twin_written_at_close_and_read_like_the_json_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runlab.results.reader._metrics as metrics_module

    logs = tmp_path / "logs"
    for seed in range(3):
        make_run(logs, {"seed": seed}, _twin_rows())
    make_run(logs, {"seed": 9}, [{"loss": 2.0}], name="val")
    twins = sorted(p.relative_to(logs).as_posix() for p in logs.glob("*/metrics/*.parquet"))
    assert twins == ["1/metrics/train.parquet", "2/metrics/train.parquet",
                     "3/metrics/train.parquet", "4/metrics/val.parquet"]  # fmt: skip
    jsonl = pl.read_ndjson(logs / "1/metrics/train.jsonl", infer_schema_length=None)
    twin = pl.read_parquet(logs / "1/metrics/train.parquet")
    assert twin.height == jsonl.height == 40
    assert math.isnan(twin["loss"][5]) and twin["loss"][6] == -math.inf
    assert twin["acc"][7] == math.inf and twin["acc"].dtype == pl.Float64
    meta = pl.read_parquet_metadata(logs / "1/metrics/train.parquet")
    st = (logs / "1/metrics/train.jsonl").stat()
    assert meta["runlab.covers"] == f"{st.st_size}.{st.st_mtime_ns}"

    plain = _without_twins(logs)
    # Small files are parsed from the .jsonl (faster than opening a twin) ...
    assert Reader(logs, index=False).curves("train.loss").height == 40
    assert Reader(logs, index=False).stats.get("metric_twins", 0) == 0
    # ... larger ones from their twins.
    monkeypatch.setattr(metrics_module, "TWIN_MIN_BYTES", 0)
    with_twins = Reader(logs, index=False)
    want = Reader(plain, index=False)
    got_rows = with_twins.metrics("train").collect().sort("run_id", "step")
    assert with_twins.stats["metric_twins"] == 3
    want_rows = want.metrics("train").collect().sort("run_id", "step")
    assert want.stats.get("metric_twins", 0) == 0
    assert got_rows.select(want_rows.columns).equals(want_rows)
    assert with_twins.curves("train.loss").equals(want.curves("train.loss"))
    assert with_twins.df.equals(want.df)


def test_a_twin_is_not_used_once_the_json_lines_moved_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runlab.results.reader._metrics as metrics_module

    monkeypatch.setattr(metrics_module, "TWIN_MIN_BYTES", 0)  # twins for small files too
    logs = tmp_path / "logs"
    run = make_run(logs, {"seed": 0}, [{"loss": 1.0}, {"loss": 2.0}])
    path = run.metrics / "train.jsonl"
    with open(path, "ab") as fh:  # a resumed run appending, before its next close
        fh.write(b'{"step":2,"time":1.0,"loss":"NaN"}\n')
    r = Reader(logs, index=False)
    loss = r.metrics("train").collect()["loss"].to_list()
    assert loss[:2] == [1.0, 2.0] and math.isnan(loss[2]) and len(loss) == 3
    assert r.stats.get("metric_twins", 0) == 0
    # A resumed logger that closes writes a new twin covering every row.
    with RunLogger(run, flush_interval=60) as logger:
        logger.log_metrics({"loss": 4.0})
    r = Reader(logs, index=False)
    assert r.metrics("train").collect()["step"].to_list() == [0, 1, 2, 3]
    assert r.stats["metric_twins"] == 1


def test_a_twin_that_cannot_be_written_or_read_fails_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runlab.results.reader._metrics as metrics_module

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics_module, "TWIN_MIN_BYTES", 0)  # twins for small files too
    logs = tmp_path / "logs"
    with monkeypatch.context() as m:
        m.setattr(pl.DataFrame, "write_parquet", refuse)
        run = make_run(logs, {"seed": 0}, [{"loss": 1.0}, {"loss": 2.0}])
    assert sorted(p.name for p in run.metrics.iterdir()) == ["train.jsonl"]  # no twin, no temp
    # A bad line: no twin either (the reader reports it from the JSON lines).
    bad = make_run(logs, {"seed": 1}, [{"loss": 1.0}])
    (bad.metrics / "train.parquet").unlink()
    with open(bad.metrics / "train.jsonl", "ab") as fh:
        fh.write(b"{not json\n")
    assert not metricsfile.write_twin(bad.metrics / "train.jsonl")
    assert not (bad.metrics / "train.parquet").exists()
    # A twin gone (or damaged) after its metadata was read: the JSON lines are read.
    good = make_run(logs, {"seed": 2}, [{"loss": 5.0}])
    assert (good.metrics / "train.parquet").exists()

    def gone(*args: Any, **kwargs: Any) -> None:
        raise FileNotFoundError("gone")

    monkeypatch.setattr(metrics_module.pl, "scan_parquet", gone)
    r = Reader(logs, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptRunWarning)
        rows = r.metrics("train").collect().sort("run_id")
    assert rows.select("run_id", "loss").rows() == [(1, 1.0), (1, 2.0), (2, 1.0), (3, 5.0)]
    assert r.stats.get("metric_twins", 0) == 0


def test_a_logger_that_logs_nothing_does_not_import_polars(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from runlab.record.logger import RunLogger\n"
        f"RunLogger({str(tmp_path / 'run')!r}).close()\n"
        "assert 'polars' not in sys.modules, 'polars imported'\n"
        f"lg = RunLogger({str(tmp_path / 'run2')!r})\n"
        "lg.log_metrics({'loss': 1.0})\n"
        "lg.close()\n"
        "print('polars' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert not list((tmp_path / "run" / "metrics").glob("*"))
    assert (tmp_path / "run2" / "metrics" / "train.parquet").exists()


# ------------------------------------------------------------ curves: numpy path
def _curves_both(
    r: Reader, monkeypatch: pytest.MonkeyPatch, *keys: str, ddof: int = 1
) -> tuple[pl.DataFrame, pl.DataFrame, bool]:
    import runlab.results.reader._api as api

    used: list[bool] = []
    real = api._curves_numpy

    def spy(*args: Any) -> pl.DataFrame | None:
        out = real(*args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(api, "_curves_numpy", spy)
    fast = r.group_by(*keys).curves("train.loss", ddof=ddof)
    monkeypatch.setattr(api, "_NUMPY_CURVES", False)
    slow = r.group_by(*keys).curves("train.loss", ddof=ddof)
    monkeypatch.setattr(api, "_NUMPY_CURVES", True)
    return fast, slow, bool(used and used[-1])


@pytest.mark.parametrize("ddof", [0, 1])
def test_numpy_curves_equal_the_group_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ddof: int
) -> None:
    from polars.testing import assert_frame_equal

    nan, inf = float("nan"), float("inf")
    logs = tmp_path / "logs"
    # method a: 3 runs, same steps, NaN and infinities in places; b: 1 run (std null
    # for ddof 1); c: 2 runs whose values are all NaN at step 1.
    values = {
        ("a", 0): [1.0, nan, 3.0, inf, 5.0],
        ("a", 1): [2.0, 2.5, nan, 1.0, -inf],
        ("a", 2): [3.0, 3.5, 4.0, inf, 6.0],
        ("b", 0): [0.5, 0.25, nan, 0.1, 0.0],
        ("c", 0): [1.0, nan, 1.0, 2.0, 3.0],
        ("c", 1): [2.0, nan, 3.0, 2.0, 1.0],
    }
    for (method, seed), vs in values.items():
        make_run(logs, {"method": method, "seed": seed}, [{"loss": v} for v in vs])
    r = Reader(logs, index=False)
    for keys in (("config.method",), (), ("config.method", "config.seed")):
        fast, slow, used = _curves_both(r, monkeypatch, *keys, ddof=ddof)
        assert used, keys  # the numpy path ran
        assert_frame_equal(fast, slow, check_exact=False, rel_tol=1e-12)
    fast, _, _ = _curves_both(r, monkeypatch, "config.method", ddof=ddof)
    a1 = fast.filter((pl.col("config.method") == "a") & (pl.col("step") == 1)).row(0, named=True)
    assert math.isnan(a1["mean"]) and a1["min"] == 2.5 and a1["max"] == 3.5 and a1["count"] == 3
    c1 = fast.filter((pl.col("config.method") == "c") & (pl.col("step") == 1)).row(0, named=True)
    assert math.isnan(c1["min"]) and math.isnan(c1["max"]) and c1["count"] == 2
    b0 = fast.filter(pl.col("config.method") == "b")["std"].to_list()
    if ddof == 1:
        assert b0 == [None] * 5  # one run: no spread over seeds
    else:
        assert b0[:2] + b0[3:] == [0.0] * 4 and math.isnan(b0[2])

    # Unequal lengths, gaps (a null value) and a step logged twice: the group_by path.
    make_run(logs, {"method": "a", "seed": 3}, [{"loss": 1.0}, {"loss": 2.0}])  # shorter
    r = Reader(logs, index=False)
    fast, slow, used = _curves_both(r, monkeypatch, "config.method", ddof=ddof)
    assert not used
    assert_frame_equal(fast, slow)
    gap = make_run(logs, {"method": "d", "seed": 0}, [{"loss": 1.0}, {"loss": None}, {"loss": 2.0}])
    make_run(logs, {"method": "d", "seed": 1}, [{"loss": 4.0}, {"loss": 5.0}, {"loss": 6.0}])
    r = Reader(logs, index=False).filter("config.method == 'd'")
    fast, slow, used = _curves_both(r, monkeypatch, "config.method", ddof=ddof)
    assert not used
    assert_frame_equal(fast, slow)
    assert fast["count"].to_list() == [2, 1, 2]
    with RunLogger(gap, flush_interval=60, resume=False) as logger:
        logger.log_metrics({"loss": 9.0}, step=1)  # step 1 again: its last value counts
    r = Reader(logs, index=False).filter("config.method == 'd'")
    fast, slow, used = _curves_both(r, monkeypatch, "config.method", ddof=ddof)
    assert_frame_equal(fast, slow)
    assert fast["max"].to_list()[1] == 9.0
