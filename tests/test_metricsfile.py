"""The metrics file format (runlab.record.metricsfile): defined once, and round-trips."""

from __future__ import annotations

import ast
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runlab.record import metricsfile
from runlab.record.logger import RunLogger
from runlab.results.reader import Reader
from runlab.results.reader import _metrics as reader_metrics

SRC = Path(__file__).resolve().parents[1] / "src" / "runlab"
OWNER = SRC / "record" / "metricsfile.py"


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(SRC.rglob("*.py"))]


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants of ``tree`` (text for people, not code)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def test_only_metricsfile_defines_the_nonfinite_encoding_and_the_torn_line_rule() -> None:
    """A second copy of the format's rules is how readers and writers drift apart."""
    found = []
    for path, tree in _modules():
        if path == OWNER:
            continue
        docs = _docstrings(tree)
        name = path.relative_to(SRC).as_posix()
        for node in ast.walk(tree):
            # The non-finite spellings ("Infinity", b'Infinity"'...) outside docstrings.
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, (str, bytes))
                and id(node) not in docs
                and (
                    "Infinity" in node.value
                    if isinstance(node.value, str)
                    else b"Infinity" in node.value
                )
            ):
                found.append(f"{name}:{node.lineno}: non-finite spelling {node.value!r}")
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            # The torn-line rule: where the last newline is, whether data ends in one.
            args = node.args
            if (
                node.func.attr in ("rfind", "endswith", "rpartition", "rsplit")
                and len(args) == 1
                and isinstance(args[0], ast.Constant)
                and args[0].value == b"\n"
            ):
                found.append(f"{name}:{node.lineno}: .{node.func.attr}(b'\\n')")
            # Splitting a file's bytes into lines by hand.
            recv = node.func.value
            if (
                node.func.attr == "splitlines"
                and isinstance(recv, ast.Call)
                and isinstance(recv.func, ast.Attribute)
                and recv.func.attr == "read_bytes"
            ):
                found.append(f"{name}:{node.lineno}: .read_bytes().splitlines()")
    assert found == []


def test_no_module_of_record_imports_from_results_or_above() -> None:
    """record is the bottom layer of runlab's own packages (imports in functions too)."""
    found = []
    for path, tree in _modules():
        if path.parent.name != "record":
            continue
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for mod in names:
                if mod.split(".")[:2] in (
                    ["runlab", "results"],
                    ["runlab", "sweep"],
                    ["runlab", "cli"],
                ):
                    found.append(f"{path.name}:{node.lineno}: {mod}")
    assert found == []


def test_the_readers_and_writers_take_the_format_from_metricsfile() -> None:
    """The five places that parsed metrics files import the one module instead."""
    users = [
        "results/reader/_metrics.py",
        "sweep/tune.py",
        "results/reproduce.py",
        "record/distributed.py",
        "record/logger.py",
    ]
    for rel in users:
        tree = ast.parse((SRC / rel).read_text())
        imported = {
            node.module + "." + a.name if node.module == "runlab.record" else node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            for a in node.names
        }
        assert "runlab.record.metricsfile" in imported, rel


# ------------------------------------------------------------------ round trips
_KEYS = st.text(min_size=1, max_size=12).filter(lambda k: k not in ("step", "time"))
_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    _FLOATS,
    st.text(max_size=12),
)
_ROWS = st.lists(st.dictionaries(_KEYS, _VALUES, max_size=5), min_size=1, max_size=6)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A row with non-finite strings as the floats they stand for (a string that
    spells one reads back as that float: the format cannot tell them apart)."""
    return {k: metricsfile.decode_value(v) for k, v in row.items()}


@given(_ROWS)
def test_rows_round_trip_through_encode_and_parse(rows: list[dict[str, Any]]) -> None:
    data = b"".join(metricsfile.encode_row(r) for r in rows)
    assert data.count(b"\n") == len(rows)  # one line a row, whatever the keys hold
    got, bad = metricsfile.parse_rows(data)
    assert bad == []
    assert len(got) == len(rows)
    for want, row in zip(rows, got, strict=True):
        assert list(row) == list(want)  # key order kept
        back, exp = _decoded(row), _decoded(want)
        assert all(_same(exp[k], back[k]) for k in want), (want, row)


@given(_ROWS)
@settings(max_examples=50)
def test_a_torn_tail_at_any_byte_is_left_out(rows: list[dict[str, Any]]) -> None:
    lines = [metricsfile.encode_row(r) for r in rows]
    blob = b"".join(lines)
    ends = [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    for cut in range(len(blob) + 1):
        part = blob[:cut]
        whole = sum(1 for e in ends if e <= cut)
        assert len(metricsfile.complete_lines(part)) == whole
        got, bad = metricsfile.parse_rows(part)
        assert bad == [] and len(got) == whole
        assert metricsfile.split_torn(part)[0] == blob[: ends[whole - 1] if whole else 0]


@given(_ROWS, st.integers(min_value=0, max_value=400))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
def test_the_writer_repairs_a_torn_tail_to_whole_rows(
    tmp_path: Path, rows: list[dict[str, Any]], cut: int
) -> None:
    blob = b"".join(metricsfile.encode_row(r) for r in rows)
    cut = min(cut, len(blob))
    path = tmp_path / "m.jsonl"
    path.write_bytes(blob[:cut])
    before = metricsfile.parse_rows(blob[:cut])[0]
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        size = metricsfile.repair_tail(fd)
    finally:
        os.close(fd)
    repaired = path.read_bytes()
    assert len(repaired) == size and (not repaired or repaired.endswith(b"\n"))
    after, bad = metricsfile.parse_rows(repaired)
    assert bad == []
    # The rows before the tear are kept; a tail that was a whole row is kept too.
    assert len(after) - len(before) in (0, 1)
    assert after[: len(before)] == before


_SCALAR_COLUMNS = st.sampled_from(["int", "float", "bool", "str"])


@st.composite
def _table(draw: Any) -> list[dict[str, Any]]:
    """Rows of one shape (as a logger writes): a column of one kind each, nulls and
    non-finite floats among them, odd key names."""
    keys = draw(
        st.lists(_KEYS.filter(lambda k: k != "run_id"), min_size=1, max_size=4, unique=True)
    )
    kinds = {k: draw(_SCALAR_COLUMNS) for k in keys}
    n = draw(st.integers(min_value=1, max_value=8))
    vals = {
        "int": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "float": _FLOATS,
        "bool": st.booleans(),
        "str": st.text(max_size=8).filter(lambda s: s not in metricsfile.NONFINITE),
    }
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"step": i, "time": float(i)}
        for k in keys:
            row[k] = draw(st.none() | vals[kinds[k]]) if 0 < i < n - 1 else draw(vals[kinds[k]])
        rows.append(row)
    return rows


@given(_table())
@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=25, deadline=None
)
def test_a_twin_holds_what_the_reader_reads_from_the_json_lines(
    tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"".join(metricsfile.encode_row(r) for r in rows))
    Path(metricsfile.twin_path(str(path))).unlink(missing_ok=True)
    assert metricsfile.write_twin(path)
    plain = reader_metrics.read_metric_files([(1, str(path), False)], Counter(), use_twins=False)
    want = plain.frame()
    twin = pl.read_parquet(metricsfile.twin_path(str(path)))
    assert twin.schema == want.drop("run_id").schema
    assert twin.equals(want.drop("run_id"))


def test_a_logged_run_reads_the_same_with_and_without_its_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_metrics, "TWIN_MIN_BYTES", 0)
    logs = tmp_path / "logs"
    with RunLogger(logs / "1") as lg:
        for i in range(20):
            lg.log_metrics(
                {"loss": 1 / (i + 1) if i != 5 else math.nan, "tag": f"é{i}", "ok": i % 2 == 0}
            )
    assert (logs / "1/metrics/train.parquet").exists()
    with_twin = Reader(logs, index=False)
    rows = with_twin.metrics("train").collect()
    assert with_twin.stats["metric_twins"] == 1
    (logs / "1/metrics/train.parquet").unlink()
    plain = Reader(logs, index=False)
    assert rows.equals(plain.metrics("train").collect())
    assert plain.stats.get("metric_twins", 0) == 0


def _twin_columns_value_by_value(rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """The twin's column kinds, by the rule written one value at a time: what the
    column-at-a-time code (C speed for a column of one type) must give."""
    kind = metricsfile._kind
    order = list(dict.fromkeys([*rows[0], *rows[-1]]))
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.items():
            k = kind(value)
            if k is not None:
                kinds.setdefault(key, set()).add(k)
    if metricsfile.RUN_ID in kinds or set(kinds) - set(order):
        return None
    out: dict[str, str] = {}
    for key in order:
        ends = {kind(rows[0].get(key)), kind(rows[-1].get(key))} - {None}
        got = kinds.get(key, set())
        if not ends or "other" in got:
            return None
        if got <= {"int", "float"}:
            out[key] = "float" if "float" in got else "int"
        elif len(got) == 1:
            out[key] = got.pop()
        else:
            return None
    return out


_CELL = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(sorted(metricsfile.NONFINITE)),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)


@given(
    rows=st.lists(
        st.dictionaries(st.sampled_from(["step", "loss", "acc", "run_id", "x"]), _CELL),
        min_size=1,
        max_size=8,
    )
)
@settings(max_examples=500, deadline=None)
@example(rows=[{"step": 0, "loss": 1}, {"step": 1, "loss": 2**63}])
@example(rows=[{"step": 0, "loss": "NaN"}, {"step": 1, "loss": "x"}, {"step": 2, "loss": 1.0}])
def test_twin_columns_follow_the_value_by_value_rule(rows: list[dict[str, Any]]) -> None:
    """Any rows (every type a line can hold, missing keys, big integers, non-finite
    spellings, the reserved run_id): the twin's columns are the ones the one-value-at-a-time
    rule gives, and its frame holds the values decoded."""
    kinds = metricsfile._twin_columns(rows)
    assert kinds == _twin_columns_value_by_value(rows)
    if kinds:
        df = metricsfile._twin_frame(rows, kinds)
        for key, k in kinds.items():
            want = [row.get(key) for row in rows]
            if k == "float":
                want = [None if v is None else float(metricsfile.decode_value(v)) for v in want]
            got = df[key].to_list()
            assert [str(v) for v in got] == [str(v) for v in want], key
