"""Parse metric files (``metrics/<name>.jsonl``, one JSON object per line) into frames.

Non-finite floats are stored by the logger as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``; a column of numbers holding them is Float64
with NaN and infinities (not text).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from typing import Any

import numpy as np
import orjson
import polars as pl

from runlab.files import NONFINITE
from runlab.reader._columns import concat, frame
from runlab.reader._files import first_line

BATCH_BYTES = 32 << 20
# What a non-finite float looks like in a row: "NaN", "Infinity" or "-Infinity".
_NONFINITE_BYTES = (b'"NaN"', b'Infinity"')

# ------------------------------------------------------------- metric files
_SIMPLE_KEY = frozenset('"\\')


def _jtype(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "float" if value in NONFINITE else "str"
    return "other"


_PL_TYPES = {"int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean, "str": pl.String}


def _merge_types(a: str | None, b: str | None) -> str | None:
    if a is None or a == b:
        return b
    if b is None:
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    return "conflict"


def _count(data: bytes, byte: int) -> int:
    """How many times ``byte`` occurs in ``data`` (vectorised: ~2x ``bytes.count``)."""
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == byte))


def _parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int, int]:
    """Rows of a JSON-lines text, skipping bad lines: (rows, bad count, first bad line)."""
    rows: list[dict[str, Any]] = []
    bad = 0
    first_bad = 0
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:  # Python's json writes bare NaN and Infinity, which orjson refuses
                row = json.loads(line)
            except (ValueError, RecursionError):
                row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
            first_bad = first_bad or number
    return rows, bad, first_bad


class Parsed:
    """The rows read from the metric files of some runs, with per-file records."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.files: dict[int, dict[str, Any]] = {}  # run_id -> {"sig", "rows", "problem"}

    def frame(self) -> pl.DataFrame:
        df = concat(self.frames)
        if not df.width:
            return pl.DataFrame({"run_id": pl.Series([], dtype=pl.Int64)})
        return df


def read_metric_files(items: list[tuple[int, str, bool]], stats: Counter[str]) -> Parsed:
    """Read ``(run_id, path, live)`` JSON-lines files into one frame with a ``run_id`` column.

    Fast path: the files of a batch are joined into one buffer and parsed once by
    Polars with a schema taken from each file's first and last rows, after
    checking (by counting ``"key":`` patterns) that no row holds another key.
    Anything unusual (other keys, mixed types, bad lines, blank lines) falls
    back to reading that file alone, line by line if need be. A half-written
    last line is left out (and reported unless the run is still running).
    """
    out = Parsed()
    batch: list[tuple[int, bytes, int]] = []
    batch_bytes = 0
    # Polars parses one batch (in its threads, without the GIL) while this thread
    # reads the files of the next one.
    parsing: threading.Thread | None = None
    failed: list[BaseException] = []

    def work(batch: list[tuple[int, bytes, int]], keytypes: dict[str, str | None]) -> None:
        try:
            _read_batch(out, batch, keytypes, stats)
        except BaseException as exc:  # re-raised in the reading thread
            failed.append(exc)

    def wait() -> None:
        if parsing is not None:
            parsing.join()
        if failed:
            raise failed[0]

    def parse(batch: list[tuple[int, bytes, int]], keytypes: dict[str, str | None]) -> None:
        nonlocal parsing
        wait()
        parsing = threading.Thread(target=work, args=(batch, keytypes))
        parsing.start()

    keytypes: dict[str, str | None] = {}
    for run_id, path, live in items:
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                data = fh.read(st.st_size)
        except OSError as exc:
            out.files[run_id] = {
                "sig": None,
                "rows": 0,
                "problem": f"{os.path.basename(path)}: {first_line(exc)}",
            }
            continue
        stats["metric_files_parsed"] += 1
        record: dict[str, Any] = {
            "sig": f"{len(data)}.{st.st_mtime_ns}",
            "rows": 0,
            "problem": None,
            "inc": True,
        }
        out.files[run_id] = record
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            if not live and data[cut:].strip():
                record["problem"] = f"{os.path.basename(path)}: half-written last line ignored"
            data = data[:cut]
        if not data:
            continue
        lines = _count(data, 10)
        first = data[: data.find(b"\n")]
        last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]
        try:
            a, b = orjson.loads(first), orjson.loads(last)
        except orjson.JSONDecodeError:
            a = b = None
        simple = isinstance(a, dict) and isinstance(b, dict)
        if simple:
            merged = dict(keytypes)
            for row in (a, b):
                for k, v in row.items():
                    t = _jtype(v)
                    if t == "other" or not isinstance(k, str) or _SIMPLE_KEY & set(k):
                        simple = False
                    merged[k] = _merge_types(merged.get(k), t)
            if simple and "conflict" not in merged.values():
                keytypes = merged
            else:
                simple = False
        if not simple:
            _read_one(out, run_id, data, record, stats)
            continue
        batch.append((run_id, data, lines))
        batch_bytes += len(data)
        if batch_bytes >= BATCH_BYTES:
            parse(batch, keytypes)
            batch, batch_bytes, keytypes = [], 0, {}
    if batch:
        parse(batch, keytypes)
    wait()
    return out


def _read_batch(
    out: Parsed,
    batch: list[tuple[int, bytes, int]],
    keytypes: dict[str, str | None],
    stats: Counter[str],
) -> None:
    buf = b"".join(data for _, data, _ in batch)
    counts = [n for _, _, n in batch]
    schema = {k: _PL_TYPES.get(t or "float", pl.Float64) for k, t in keytypes.items()}
    # Non-finite floats are the strings "NaN", "Infinity", "-Infinity": read the
    # number columns as text, then parse them (strictly: any other text fails).
    floats = [k for k, t in schema.items() if t == pl.Float64 and k != "step"]
    nonfinite = bool(floats) and any(word in buf for word in _NONFINITE_BYTES)
    if nonfinite:
        schema = {k: pl.String if k in floats else t for k, t in schema.items()}
    try:
        df = pl.read_ndjson(buf, schema=schema)
        if nonfinite:
            df = df.with_columns(pl.col(floats).cast(pl.Float64, strict=True))
    except pl.exceptions.PolarsError:
        ok = False
    else:
        # Every ':' of a line written by a JSON encoder ends a key (unless inside a
        # string, which only sends the batch to the slow path): as many ':' as values
        # read (explicit nulls included) means that no row held a key outside the schema.
        nulls = sum(df.null_count().row(0))
        expected = df.height * df.width - nulls + (buf.count(b":null") if nulls else 0)
        ok = df.height == sum(counts) and _count(buf, 58) == expected
    del buf
    if not ok:
        for run_id, data, _ in batch:
            _read_one(out, run_id, data, out.files[run_id], stats)
        return
    runs = np.array([r for r, _, _ in batch], dtype=np.int64)
    ids = np.repeat(runs, counts)
    out.frames.append(df.insert_column(0, pl.Series("run_id", ids)))
    for run_id, _, n in batch:
        out.files[run_id]["rows"] = n
    # Runs whose steps do not strictly increase (a step logged twice) are deduplicated
    # by `curves`; find them here, where it costs one vectorised pass.
    step = df.get_column("step") if "step" in df.columns else None
    if step is None or step.null_count() or not step.dtype.is_integer():
        for run_id in runs.tolist():
            out.files[run_id]["inc"] = False
    else:
        bad = np.flatnonzero(np.diff(step.to_numpy()) <= 0) + 1
        if bad.size:
            starts = np.cumsum(counts)[:-1]
            bad = bad[~np.isin(bad, starts)]
            for run_id in np.unique(ids[bad]).tolist():
                out.files[run_id]["inc"] = False
    stats["metric_fast_batches"] += 1


def _read_one(
    out: Parsed, run_id: int, data: bytes, record: dict[str, Any], stats: Counter[str]
) -> None:
    stats["metric_files_slow"] += 1
    df: pl.DataFrame | None = None
    if not any(word in data for word in _NONFINITE_BYTES):  # else: Python decides the types
        try:
            df = pl.read_ndjson(data, infer_schema_length=None)
        except pl.exceptions.PolarsError:
            df = None
    if df is None:
        rows, bad, first_bad = _parse_lines(data)
        if bad:
            msg = f"{bad} invalid line(s) skipped, the first at line {first_bad}"
            record["problem"] = "; ".join(p for p in (record["problem"], msg) if p)
        df = frame(rows, loose=True)[0]
    record["rows"] = df.height
    step = df.get_column("step") if "step" in df.columns else None
    record["inc"] = bool(
        step is not None
        and not step.null_count()
        and step.dtype.is_integer()
        and (df.height < 2 or (np.diff(step.to_numpy()) > 0).all())
    )
    if df.height:
        out.frames.append(
            df.insert_column(0, pl.Series("run_id", [run_id] * df.height, dtype=pl.Int64))
        )


def summaries(name: str, df: pl.DataFrame) -> pl.DataFrame:
    """Per-run summary columns of one metrics file's rows (see the module docstring)."""
    aggs: list[pl.Expr] = []
    for col, dtype in df.schema.items():
        if col in ("run_id", "time"):
            continue
        if col == "step":
            aggs.append(pl.col("step").max().alias(f"{name}.step.max"))
            continue
        aggs.append(pl.col(col).last(ignore_nulls=True).alias(f"{name}.{col}.last"))
        if dtype.is_numeric():
            aggs.append(pl.col(col).min().alias(f"{name}.{col}.min"))
            aggs.append(pl.col(col).max().alias(f"{name}.{col}.max"))
    if not aggs or not df.height:
        return pl.DataFrame({"run_id": df["run_id"].unique()}) if df.height else df.select("run_id")
    return df.group_by("run_id").agg(aggs)
