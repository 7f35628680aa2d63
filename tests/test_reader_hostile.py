"""The reader on hostile files and queries: nothing hangs, crashes or spreads to other runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from runlab.cli import main
from runlab.record.files import now_iso, write_record
from runlab.record.logger import RunLogger
from runlab.record.rundir import RunDir, allocate
from runlab.results.query import QueryError
from runlab.results.reader import CorruptRunWarning, Reader, wait_for_index

ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)


def make_run(
    logs: Path, config: dict[str, Any], losses: list[Any] = (1.0, 0.5), **info: Any
) -> RunDir:
    """A run as runlab writes it: JSON twins of config, env and info; metrics by RunLogger."""
    run = RunDir(allocate(logs)[0]).create()
    write_record(run.config_file, config)
    write_record(run.env_file, {"python": {"version": "3.11"}})
    run.update_info(**{"status": "COMPLETE", "start_time": now_iso(), **info})
    with RunLogger(run) as logger:
        for value in losses:
            logger.log_metrics({"loss": value}, name="train")
    return run


def read(logs: Path, **kwargs: Any) -> tuple[Reader, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = Reader(logs, **kwargs)
        r.df  # noqa: B018
    return r, [str(w.message) for w in caught if issubclass(w.category, CorruptRunWarning)]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    for i in range(6):
        make_run(logs, {"lr": [0.01, 0.1, 1.0][i % 3], "seed": i, "model": "mlp"}, [1.0, i])
    return logs


# ------------------------------------------------------------------- queries
def test_deep_nesting_and_long_chains_work(sweep: Path) -> None:
    r = Reader(sweep)
    assert r.filter("(" * 500 + "config.seed == 2" + ")" * 500).run_ids == [3]
    assert r.filter("~(" * 500 + "config.seed == 2" + ")" * 500).run_ids == [3]
    assert r.filter("~(" * 499 + "config.seed == 2" + ")" * 499).run_ids == [1, 2, 4, 5, 6]
    nested = "config.seed == 0"  # alternating & and |, 500 levels deep (innermost first)
    for i in range(500):
        nested = f"(config.seed == {i % 6} {'|' if i % 2 else '&'} {nested})"

    def by_hand(seed: int) -> bool:
        value = seed == 0
        for i in range(500):
            value = (seed == i % 6 or value) if i % 2 else (seed == i % 6 and value)
        return value

    want = [s + 1 for s in range(6) if by_hand(s)]
    assert 0 < len(want) < 6
    assert r.filter(nested).run_ids == want
    chain = " | ".join(f"config.seed == {i}" for i in range(1000, 0, -1))
    assert r.filter(chain).run_ids == [2, 3, 4, 5, 6]
    both = " & ".join(f"config.seed != {i}" for i in range(7, 1007))
    assert r.filter(both).run_ids == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    "query",
    [
        "(" * 10_000,
        "(" * 10_000 + "config.seed == 1" + ")" * 10_000,
        "~" * 10_000 + "config.seed == 1",
        "config.seed == 1 | " * 60_000,  # about 1 MB
        "config." + "x" * 1_000_000,
        "config.seed == '" + "y" * 1_000_000,
    ],
)
def test_absurd_queries_give_a_short_query_error(sweep: Path, query: str) -> None:
    with pytest.raises(QueryError) as caught:
        Reader(sweep).filter(query)
    text = str(caught.value)
    assert len(text) < 500 and "^" in text, text[:1000]


def test_absurd_query_through_the_cli(
    sweep: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli(capsys, "ls", str(sweep), "--where", "(" * 10_000 + "config.lr < 1")
    assert code == 2 and out == ""
    assert "invalid query" in err and "Traceback" not in err and len(err) < 500


# --------------------------------------------------------------------- files
def test_yaml_alias_bomb_is_refused_and_hangs_nothing(sweep: Path) -> None:
    bomb = make_run(sweep, {"lr": 0.1, "seed": 99})
    bomb.config_file.with_suffix(".json").unlink()  # a config written by hand: YAML only
    bomb.config_file.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 500
    code = (
        "import warnings, runlab\n"
        "warnings.simplefilter('ignore')\n"
        f"r = runlab.Reader({str(sweep)!r})\n"
        "print(r.df.height, r.df.filter(r.df['problem'].is_not_null())['run_id'].to_list())\n"
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert time.monotonic() - start < 60
    assert proc.stdout.split(maxsplit=1) == ["7", f"[{bomb.run_id}]\n"]
    r, warned = read(sweep)
    row = r.df.filter(pl.col("run_id") == 7).row(0, named=True)
    assert "metadata/config.yaml: YAML anchors and aliases are not read" in row["problem"]
    assert row["info.status"] == "COMPLETE" and row["config.lr"] is None
    assert len(warned) == 1 and str(bomb.path) in warned[0]
    assert r.filter("config.lr < 0.5").run_ids == [1, 2, 4, 5]


def test_oversized_yaml_and_bad_json_are_refused(sweep: Path) -> None:
    big = make_run(sweep, {"lr": 0.1, "seed": 7})
    big.config_file.with_suffix(".json").unlink()
    big.config_file.write_text("x: " + "a" * (2 << 20) + "\n")
    bad = make_run(sweep, {"lr": 0.1, "seed": 8})
    bad.config_file.with_suffix(".json").write_text('{"lr": 0.1, "seed": ')  # torn by hand
    r, warned = read(sweep)
    problem = dict(r.df.select("run_id", "problem").iter_rows())
    assert "metadata/config.yaml" in problem[7] and "over the 1 MiB limit" in problem[7]
    assert "metadata/config.json: invalid JSON" in problem[8]
    assert len(warned) == 1


def test_empty_info_is_corrupt(sweep: Path) -> None:
    run = make_run(sweep, {"lr": 0.1, "seed": 9})
    run.info_file.with_suffix(".json").unlink()
    run.info_file.write_text("")
    r, warned = read(sweep)
    row = r.df.filter(pl.col("run_id") == 7).row(0, named=True)
    assert row["info.status"] == "CORRUPT"
    assert "metadata/info.yaml: empty" in row["problem"]
    assert len(warned) == 1 and str(run.path) in warned[0]


def test_folders_that_are_not_run_ids_are_ignored_with_one_warning(sweep: Path) -> None:
    for name in ("²", "007", "١٢", "0", "notes"):
        folder = sweep / name / "metadata"
        folder.mkdir(parents=True)
        write_record(folder / "info.yaml", {"status": "COMPLETE"})
        write_record(folder / "config.yaml", {"lr": 0.5, "seed": 100})
    (sweep / ".snapshots").mkdir()  # runlab's own hidden folders are not mentioned
    r, warned = read(sweep)
    assert r.run_ids == [1, 2, 3, 4, 5, 6]
    assert len(warned) == 1
    for name in ("²", "007", "١٢", "0", "notes"):
        assert repr(name) in warned[0]
    assert ".snapshots" not in warned[0]


def test_a_conflicting_value_does_not_change_the_column_type(
    sweep: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    r0 = Reader(sweep)  # an index of the good runs first: the conflict comes later
    r0.curves("train.loss")
    wait_for_index()
    odd = make_run(sweep, {"lr": "abc", "seed": 6, "model": "mlp"}, status="FAILED")
    for attempt in ("fresh", "indexed"):
        r, warned = read(sweep)
        assert r.df.schema["config.lr"] == pl.Float64, attempt
        row = r.df.filter(pl.col("run_id") == 7).row(0, named=True)
        assert row["config.lr"] is None and 'config.lr = "abc"' in row["problem"]
        assert len(warned) == 1 and str(odd.path) in warned[0] and '"abc"' in warned[0]
        assert r.filter("config.lr < 0.5").run_ids == [1, 2, 4, 5]
        curves = r.group_by("config.lr").curves("train.loss")
        assert curves.schema["config.lr"] == pl.Float64
        assert curves.filter(pl.col("config.lr").is_null())["count"].to_list() == [1, 1]
        wait_for_index()
    code, out, err = cli(capsys, "ls", str(sweep), "--where", "config.lr < 0.1", "--json")
    assert code == 0 and [row["run_id"] for row in json.loads(out)] == [1, 4]
    assert "config.lr" in err and "abc" in err  # the warning names the run and the value


def test_broken_runs_do_not_make_every_key_vary(
    sweep: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    RunDir(allocate(sweep)[0]).create()  # allocated, nothing written: no config at all
    odd = make_run(sweep, {"lr": 0.1, "seed": 8, "model": 3})  # model: a number here
    code, out, _ = cli(capsys, "ls", str(sweep), "--json")
    assert code == 0
    columns = list(json.loads(out)[0])
    assert columns[0] == "run_id"
    assert "config.lr" in columns and "config.seed" in columns
    assert "config.model" not in columns  # one value in every readable run
    code, out, _ = cli(capsys, "ls", str(sweep), "--columns", "config.lr")
    assert code == 0 and out.splitlines()[0].split() == ["run_id", "lr"]
    from runlab.results.report import default_by

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert default_by(Reader(sweep)) == ["config.lr"]
    assert odd.run_id == "8"


# -------------------------------------------------------------- non-finite
def test_non_finite_metric_values(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    inf = math.inf
    make_run(logs, {"g": "a"}, [1.0, math.nan, 2.0, -inf])  # written by RunLogger
    make_run(logs, {"g": "a"}, [3.0, 4.0, inf, math.nan])
    make_run(logs, {"g": "b"}, [1, 2, 3])  # integers only
    hand = RunDir(allocate(logs)[0]).create()  # rows written by another tool
    write_record(hand.config_file, {"g": "b"})
    hand.update_info(status="COMPLETE")
    (hand.metrics / "train.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "loss": v}) + "\n"
            for s, v in enumerate(["NaN", 5.0, "Infinity", "-Infinity"])
        )
    )
    assert '"NaN"' in (logs / "1" / "metrics" / "train.jsonl").read_text()
    for attempt in ("fresh", "indexed"):
        r = Reader(logs)
        rows = r.metrics("train").collect().sort("run_id", "step")
        assert rows.schema["loss"] == pl.Float64, attempt
        by_run = {k[0]: v["loss"].to_list() for k, v in rows.group_by("run_id")}
        assert str(by_run[1]) == str([1.0, math.nan, 2.0, -inf])
        assert str(by_run[2]) == str([3.0, 4.0, inf, math.nan])
        assert str(by_run[4]) == str([math.nan, 5.0, inf, -inf])
        df = r.df.sort("run_id")
        assert df.schema["train.loss.last"] == pl.Float64
        last = df["train.loss.last"].to_list()
        assert last[0] == -inf and math.isnan(last[1]) and last[2] == 3.0 and last[3] == -inf
        assert df["train.loss.max"].to_list()[2] == 3.0
        assert df["train.loss.min"].to_list()[0] == -inf
        curves = r.group_by("config.g").curves("train.loss").sort("config.g", "step")
        a = curves.filter(pl.col("config.g") == "a")["mean"].to_list()
        assert a[0] == 2.0 and math.isnan(a[1]) and a[2] == inf and math.isnan(a[3])
        final = r.group_by("config.g").final("train.loss").sort("config.g")
        assert final.schema["mean"] == pl.Float64 and math.isnan(final["mean"][0])
        wait_for_index()


def test_non_finite_config_values_are_floats(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    make_run(logs, {"lr": math.nan, "clip": math.inf})
    make_run(logs, {"lr": 0.1, "clip": 1.0})
    assert '"NaN"' in (logs / "1" / "metadata" / "config.json").read_text()
    df = Reader(logs).df
    assert df.schema["config.lr"] == pl.Float64 and df.schema["config.clip"] == pl.Float64
    assert math.isnan(df["config.lr"][0]) and df["config.clip"].to_list() == [math.inf, 1.0]


def test_metric_file_names_never_leave_the_index(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    run = make_run(logs, {"g": 1})
    (run.metrics / "...jsonl").write_text('{"step": 0, "x": 1.0}\n')  # the name ".."
    r = Reader(logs)
    assert r.metrics("..").collect()["x"].to_list() == [1.0]
    r.df  # noqa: B018
    wait_for_index()
    inside = logs / ".runlab-index"
    assert list(inside.glob("000000*")) == []  # not metrics/../000000.*
    assert list(logs.glob("000000*")) == []
    assert all(p.resolve().is_relative_to(inside) for p in inside.rglob("*"))
