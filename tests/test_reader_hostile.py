"""The reader on hostile files and queries: nothing hangs, crashes or spreads to other runs."""

from __future__ import annotations

import json
import math
import os
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
    # The rows first, then how the run ended: rows logged into an ended run would be a
    # new attempt of it (RunLogger by hand).
    with RunLogger(run) as logger:
        for value in losses:
            logger.log_metrics({"loss": value}, name="train")
    run.update_info(**{"status": "COMPLETE", "start_time": now_iso(), **info})
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
    code, out, err = cli(
        capsys, "ls", "--logs", str(sweep), "--where", "(" * 10_000 + "config.lr < 1"
    )
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
    code, out, err = cli(capsys, "ls", "--logs", str(sweep), "--where", "config.lr < 0.1", "--json")
    assert code == 0 and [row["run_id"] for row in json.loads(out)] == [1, 4]
    assert "config.lr" in err and "abc" in err  # the warning names the run and the value


def test_broken_runs_do_not_make_every_key_vary(
    sweep: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    RunDir(allocate(sweep)[0]).create()  # allocated, nothing written: no config at all
    odd = make_run(sweep, {"lr": 0.1, "seed": 8, "model": 3})  # model: a number here
    code, out, _ = cli(capsys, "ls", "--logs", str(sweep), "--json")
    assert code == 0
    columns = list(json.loads(out)[0])
    assert columns[0] == "run_id"
    assert "config.lr" in columns and "config.seed" in columns
    assert "config.model" not in columns  # one value in every readable run
    code, out, _ = cli(capsys, "ls", "--logs", str(sweep), "--columns", "config.lr")
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


# ------------------------------------------------------ audit: hostile records
def test_a_run_id_key_in_metric_rows_is_left_out(
    sweep: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    odd = make_run(sweep, {"lr": 0.1, "seed": 6, "model": "mlp"}, [])
    rows = [{"step": s, "loss": v, "run_id": 99} for s, v in enumerate([2.0, 0.25])]
    (odd.metrics / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    middle = make_run(sweep, {"lr": 0.1, "seed": 7, "model": "mlp"}, [])  # in one row only
    rows = [
        {"step": 0, "loss": 3.0},
        {"step": 1, "loss": 2.0, "run_id": 1},
        {"step": 2, "loss": 1.0},
    ]
    (middle.metrics / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for attempt in ("fresh", "indexed"):
        r, warned = read(sweep)
        last = dict(r.df.select("run_id", "train.loss.last").iter_rows())
        assert last[7] == 0.25 and last[8] == 1.0 and last[1] == 0.0, attempt
        rows = r.metrics("train").collect()
        assert rows.filter(pl.col("run_id") == 7)["loss"].to_list() == [2.0, 0.25]
        assert rows.filter(pl.col("run_id") == 1)["loss"].to_list() == [1.0, 0.0]
        assert r.curves("train.loss").height == 3
        assert len(warned) == 1 and str(odd.path) in warned[0] and "'run_id'" in warned[0]
        wait_for_index()
    assert cli(capsys, "ls", "--logs", str(sweep), "--json")[0] == 0
    code, out, _ = cli(capsys, "show", "--logs", str(sweep), "7")
    assert code == 0 and "run_id" in out
    assert cli(capsys, "report", str(sweep), "--out", str(tmp_path / "rep"))[0] == 0


def test_one_odd_metric_value_keeps_the_column_numeric(
    sweep: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    odd = make_run(sweep, {"lr": 0.1, "seed": 6, "model": "mlp"}, [1.0, "diverged", 0.3])
    tables = {}
    for attempt, kwargs in (("fresh", {}), ("indexed", {}), ("no index", {"index": False})):
        r, warned = read(sweep, **kwargs)
        df = r.df
        assert df.schema["train.loss.last"] == pl.Float64, attempt
        assert {"train.loss.min", "train.loss.max"} <= set(df.columns)
        row = df.filter(pl.col("run_id") == 7).row(0, named=True)
        assert row["train.loss.last"] == 0.3 and row["train.loss.max"] == 1.0
        assert len(warned) == 1 and str(odd.path) in warned[0] and '"diverged"' in warned[0]
        rows = r.metrics("train").collect().filter(pl.col("run_id") == 7)
        assert rows["loss"].to_list() == [1.0, None, 0.3]
        curves = r.group_by("config.lr").curves("train.loss")
        assert curves.schema["mean"] == pl.Float64
        final = r.group_by("config.lr").final("train.loss").sort("config.lr")
        assert final["count"].to_list() == [2, 3, 2]
        assert r.filter("train.loss.last < 0.4").run_ids == [1, 7]
        tables[attempt] = df.drop("problem")
        wait_for_index()
    assert tables["indexed"].equals(tables["no index"]) and tables["fresh"].equals(
        tables["indexed"]
    )
    assert cli(capsys, "report", str(sweep), "--out", str(tmp_path / "rep"))[0] == 0


def test_a_run_of_text_metric_values_does_not_turn_the_others_to_text(sweep: Path) -> None:
    Reader(sweep).curves("train.loss")  # an index of the good runs first
    wait_for_index()
    odd = make_run(sweep, {"lr": 0.1, "seed": 6, "model": "mlp"}, ["nan?", "diverged"])
    frames = {}
    for attempt, kwargs in (("indexed", {}), ("again", {}), ("no index", {"index": False})):
        r, warned = read(sweep, **kwargs)
        assert r.df.schema["train.loss.last"] == pl.Float64, attempt
        assert r.df.filter(pl.col("run_id") == 7)["train.loss.last"].to_list() == [None]
        assert len(warned) == 1 and str(odd.path) in warned[0], attempt
        with warnings.catch_warnings(record=True) as caught:  # the same run named again
            warnings.simplefilter("always", CorruptRunWarning)
            rows = r.metrics("train").collect().sort("run_id", "step")
        assert all(str(odd.path) in str(w.message) for w in caught), attempt
        assert rows.schema["loss"] == pl.Float64
        assert r.group_by("config.lr").curves("train.loss")["count"].max() == 2
        frames[attempt] = (r.df.drop("problem"), rows)
        wait_for_index()
    for attempt in ("again", "no index"):
        assert frames[attempt][0].equals(frames["indexed"][0]), attempt
        assert frames[attempt][1].equals(frames["indexed"][1]), attempt


def test_metadata_nested_deeper_than_json_allows_python_is_refused(
    sweep: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    deep = make_run(sweep, {"lr": 0.1, "seed": 6})
    nested = '{"a": ' * 1000 + "1" + "}" * 1000
    deep.config_file.with_suffix(".json").write_text('{"lr": 0.1, "deep": ' + nested + "}")
    r, warned = read(sweep)
    row = r.df.filter(pl.col("run_id") == 7).row(0, named=True)
    assert "metadata/config.json: nested deeper than" in row["problem"]
    assert len(warned) == 1 and str(deep.path) in warned[0]
    assert r.filter("config.lr < 0.5").run_ids == [1, 2, 4, 5]
    for argv in (
        ["ls", "--logs", str(sweep)],
        ["show", "--logs", str(sweep), "7"],
        ["status", "--logs", str(sweep)],
    ):
        assert cli(capsys, *argv)[0] == 0, argv
    assert cli(capsys, "report", str(sweep), "--out", str(tmp_path / "rep"))[0] == 0
    # A metric row that deep (Polars' type inference overflowed its stack: a crash).
    with open(deep.metrics / "train.jsonl", "a") as fh:
        fh.write('{"step": 9, "loss": 0.1, "x": ' + nested + "}\n")
    code = (
        "import warnings, runlab\n"
        "warnings.simplefilter('ignore')\n"
        f"r = runlab.Reader({str(sweep)!r})\n"
        "print(r.df.height, r.metrics('train').collect().height)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split() == ["7", "14"], proc.stderr[-2000:]


def test_integers_beyond_64_bits_are_out_of_range_values(
    sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    yaml_only = make_run(sweep, {"lr": 0.1, "seed": 6})
    yaml_only.config_file.with_suffix(".json").unlink()
    yaml_only.config_file.write_text("lr: 0.1\nseed: 123456789012345678901234567890\n")
    edge = make_run(sweep, {"lr": 0.1, "seed": 7})
    edge.config_file.with_suffix(".json").write_text('{"lr": 0.1, "seed": 9223372036854775808}')
    for _ in ("fresh", "indexed"):
        r, warned = read(sweep)
        assert r.df.schema["config.seed"] == pl.Int64
        seeds = dict(r.df.select("run_id", "config.seed").iter_rows())
        assert [seeds[i] for i in range(1, 9)] == [0, 1, 2, 3, 4, 5, None, None]
        assert len(warned) == 1
        assert str(yaml_only.path) in warned[0] and "123456789012345678901234567890" in warned[0]
        assert str(edge.path) in warned[0] and "9223372036854775808" in warned[0]
        assert r.filter("config.seed < 3").run_ids == [1, 2, 3]
        wait_for_index()
    assert cli(capsys, "ls", "--logs", str(sweep), "--where", "config.seed < 3", "--json")[0] == 0
    alone = sweep.parent / "alone"  # the only value there: kept, as its digits
    only = make_run(alone, {"lr": 0.1})
    only.config_file.with_suffix(".json").unlink()
    only.config_file.write_text("lr: 0.1\nseed: 123456789012345678901234567890\n")
    assert Reader(alone).df["config.seed"].to_list() == ["123456789012345678901234567890"]


def test_a_metric_file_name_that_is_not_utf8_is_ignored(sweep: Path) -> None:
    run1 = sweep / "1" / "metrics"
    with open(os.fsencode(run1) + b"/\xff\xfe.jsonl", "wb") as fh:
        fh.write(b'{"step": 0, "x": 1.0}\n')
    r, warned = read(sweep)
    assert r.df["train.loss.last"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(warned) == 1 and "not valid UTF-8" in warned[0] and str(run1) in warned[0]


def test_a_read_only_logs_directory_with_a_stale_index(
    sweep: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    Reader(sweep).curves("train.loss")
    wait_for_index()
    make_run(sweep, {"lr": 0.1, "seed": 6, "model": "mlp"})  # the index is now stale
    ro = tmp_path / "ro"
    ro.mkdir()
    bind = subprocess.run(["mount", "--bind", str(sweep), str(ro)], capture_output=True)
    if bind.returncode:
        pytest.skip(f"cannot bind-mount here: {bind.stderr.decode().strip()}")
    try:
        remount = ["mount", "-o", "remount,bind,ro", str(ro)]
        if subprocess.run(remount, capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        with pytest.raises(OSError):
            (ro / "x").write_text("")
        before = sorted(p.name for p in (ro / ".runlab-index").rglob("*"))
        r = Reader(ro)
        assert r.run_ids == [1, 2, 3, 4, 5, 6, 7]
        assert r.curves("train.loss")["count"].to_list() == [7, 7]
        wait_for_index()
        assert sorted(p.name for p in (ro / ".runlab-index").rglob("*")) == before
        code, out, _ = cli(capsys, "ls", "--logs", str(ro), "--json")
        assert code == 0 and len(json.loads(out)) == 7
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_a_config_of_100000_keys_is_read_in_linear_time(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for seed in range(2):
        make_run(logs, {"seed": seed, **{f"k{i}": i for i in range(100_000)}})
    code = (
        "import runlab\n"
        f"r = runlab.Reader({str(logs)!r})\n"
        "print(r.df.width, r.filter('config.k99999 == 99999').run_ids)\n"
    )
    # Quadratic in the keys before (about a minute here); seconds now: a generous bound.
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    width, ids = proc.stdout.split(maxsplit=1)
    assert int(width) > 100_001 and ids.strip() == "[1, 2]"


def test_a_heartbeat_interval_that_is_not_a_number_is_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    make_run(logs, {"lr": 0.1}, heartbeat_interval_s=[1])
    old = "2020-01-01T00:00:00+00:00"
    make_run(  # on another host, where only its heartbeat tells
        logs, {"lr": 0.2}, status="RUNNING", heartbeat=old, heartbeat_interval_s=[1], host="n7"
    )
    r, _ = read(logs)
    assert r.df["info.status"].to_list() == ["COMPLETE", "LOST"]
    assert cli(capsys, "status", "--logs", str(logs))[0] == 0
    code, out, _ = cli(capsys, "show", "--logs", str(logs), "2")
    assert code == 0 and "LOST" in out


def test_failed_runs_do_not_retype_the_column_of_the_runs_that_worked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    for lr in (0.01, 0.05, 0.1, 0.5):
        make_run(logs, {"lr": lr})
    for _ in range(5):  # more of them than good runs
        make_run(logs, {"lr": "abc"}, status="FAILED")
    r, warned = read(logs)
    assert r.df.schema["config.lr"] == pl.Float64
    assert r.df["config.lr"].to_list() == [0.01, 0.05, 0.1, 0.5, *[None] * 5]
    assert len(warned) == 1 and warned[0].count('config.lr = "abc"') == 5
    code, out, _ = cli(capsys, "ls", "--logs", str(logs), "--where", "config.lr < 0.1", "--json")
    assert code == 0 and [row["run_id"] for row in json.loads(out)] == [1, 2]


def test_metric_names_passed_to_the_reader_are_checked(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    make_run(logs, {"lr": 0.1})
    (tmp_path / "evil.jsonl").write_text('{"step": 0, "secret": 1.0}\n')
    assert (logs / "1" / "metrics" / "../../../evil.jsonl").exists()
    r = Reader(logs)
    for name in ("../../../evil", "/etc/passwd", "a\0b", ""):
        with pytest.raises(ValueError, match="name=") as caught:
            r.metrics(name)
        assert "not a valid name" in str(caught.value)
    with pytest.raises(QueryError):
        r.curves("../../../evil.secret")
    assert r.metrics("train").collect()["loss"].to_list() == [1.0, 0.5]


def test_summary_and_join_columns_never_clash(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    run = make_run(logs, {"lr": 0.1, "steps": 3})
    with RunLogger(run) as logger:
        logger.log_metrics({"acc.top1": 0.5}, name="train")
        logger.log_metrics({"top1": 0.9}, name="train.acc")
        logger.log_metrics({"config.steps": 5}, name="ev")
    r, warned = read(logs)
    df = r.df
    assert not [c for c in df.columns if c.endswith("_right")]
    assert df["train.acc.top1.last"].to_list() == [0.9]  # as curves("train.acc.top1") reads
    assert r.curves("train.acc.top1")["mean"].to_list() == [0.9]
    assert len(warned) == 1 and "'train.acc.top1.last'" in warned[0] and "train.jsonl" in warned[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = r.metrics("ev", join=["config.steps"]).collect()
    assert not [c for c in rows.columns if c.endswith("_right")]
    assert rows["config.steps"].to_list() == [3]
    assert len(caught) == 1 and "'config.steps'" in str(caught[0].message)


def test_index_files_get_the_mode_the_umask_gives(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    make_run(logs, {"lr": 0.1})
    code = (
        "import os\n"
        "os.umask(0o007)\n"
        "import runlab\n"
        f"runlab.Reader({str(logs)!r}).curves('train.loss')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    files = [p for p in (logs / ".runlab-index").rglob("*") if p.is_file()]
    assert {p.name.split(".")[-1] for p in files} == {"json", "parquet"}
    assert {p.stat().st_mode & 0o777 for p in files} == {0o660}
