"""Parse metric files (``metrics/<name>.jsonl``, one JSON object per line) into frames.

The format (rows, the non-finite encoding, the torn last line, the columnar twins)
is :mod:`runlab.record.metricsfile`'s; this module reads many runs' files at once.
A column of numbers holding the strings ``NONFINITE`` names is Float64 with NaN and
infinities (not text). A file whose twin covers it as it is now (and is at least
``TWIN_MIN_BYTES`` long) is read from the twin.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl

from runlab.record.metricsfile import (
    NONFINITE,
    NONFINITE_MARKS,
    RUN_ID,
    TWIN_COLUMNS,
    TWIN_COVERS,
    TWIN_INC,
    TWIN_ROWS,
    TWIN_SUM,
    TWIN_SUM_BY,
    parse_line,
    signature,
    split_torn,
    twin_path,
)
from runlab.results.reader._columns import concat, metric_frame
from runlab.results.reader._files import MAX_DEPTH, first_line, too_deep

BATCH_BYTES = 32 << 20

# ------------------------------------------------------------- metric files
_SIMPLE_KEY = frozenset('"\\')
# RUN_ID, the reader's own column: a key of that name in a row is left out (and reported).
_RUN_ID_NOTE = "key 'run_id' left out (the reader's own column)"


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
    """How many times ``byte`` occurs in ``data`` (no temporary as large as ``data``)."""
    return data.count(bytes((byte,)))


# ------------------------------------------------------------ columnar twins
# Below this size a .jsonl is parsed faster than its twin is opened (per-file cost of
# a Parquet footer ~0.2 ms vs ~11 ns a byte of JSON lines, measured on 10-row and
# 1,000-row files): small files are read from the .jsonl even when a twin exists.
TWIN_MIN_BYTES = 16 << 10


def _twin(path: str, st: os.stat_result) -> tuple[str, int, bool, str, str] | None:
    """(signature, rows, steps increase, schema, digest) of the twin of ``path``, if it
    covers the file as it is now (``st``) and has a digest."""
    try:
        sig = signature(st)
        meta = pl.read_parquet_metadata(twin_path(path))
        if meta.get(TWIN_COVERS) != sig or meta.get(TWIN_SUM_BY) != pl.__version__:
            return None  # out of date, or its digest made by another Polars: the .jsonl
        rows = int(meta[TWIN_ROWS])
        if rows <= 0:
            return None
        return (sig, rows, meta[TWIN_INC] == "1", meta[TWIN_COLUMNS], meta[TWIN_SUM])
    except Exception:
        return None


_Twin = tuple[int, str, int, bool, str, str]  # run id, path, rows, inc, schema, digest


def _intact(df: pl.DataFrame, group: list[_Twin]) -> list[bool]:
    """Whether each file's rows in ``df`` (one scan of ``group``) have the digest its
    twin recorded: damaged pages under an intact footer decode as other values."""
    counts = np.array([t[2] for t in group], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    hashes = df.hash_rows(seed=0).to_numpy()
    sums: npt.NDArray[np.uint64] | list[int] = (
        np.add.reduceat(hashes, starts, dtype=np.uint64) if len(hashes) else []
    )
    return [str(int(s)) == t[5] for s, t in zip(sums, group, strict=True)]


def _read_twins(out: Parsed, twins: list[_Twin], stats: Counter[str]) -> list[tuple[int, str]]:
    """Read the twins (files of one schema in one scan); the files that failed (gone,
    damaged, or decoded to values other than those written: read their .jsonl)."""
    by_schema: dict[str, list[_Twin]] = {}
    for item in twins:
        by_schema.setdefault(item[4], []).append(item)
    failed: list[tuple[int, str]] = []
    for group in by_schema.values():
        try:
            df = pl.scan_parquet([twin_path(t[1]) for t in group], glob=False).collect()
            if df.height != sum(t[2] for t in group):
                raise ValueError("rows")
            intact = _intact(df, group)
        except Exception:  # gone or damaged since its metadata was read
            failed.extend((t[0], t[1]) for t in group)
            continue
        if not all(intact):
            keep = np.repeat(np.array(intact), [t[2] for t in group])
            df = df.filter(pl.Series(keep))
            failed.extend((t[0], t[1]) for t, ok in zip(group, intact, strict=True) if not ok)
            group = [t for t, ok in zip(group, intact, strict=True) if ok]
        counts = [t[2] for t in group]
        ids = np.repeat(np.array([t[0] for t in group], dtype=np.int64), counts)
        if RUN_ID in df.columns:  # not runlab's twin: it never holds one
            df = df.drop(RUN_ID)
            for t in group:
                _note(out.files[t[0]], f"{os.path.basename(t[1])}: {_RUN_ID_NOTE}")
        out.frames.append(df.insert_column(0, pl.Series(RUN_ID, ids)))
        for rid, _, n, inc, _, _ in group:
            out.files[rid].update(rows=n, inc=inc)
        stats["metric_files_parsed"] += len(group)
        stats["metric_twins"] += len(group)
    return failed


def _parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int, int]:
    """Rows of a JSON-lines text, skipping bad lines: (rows, bad count, first bad line)."""
    rows: list[dict[str, Any]] = []
    bad = 0
    first_bad = 0
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        row = parse_line(line)
        if _deep(line) and too_deep(row):
            row = None  # more than a column, its JSON text or a summary can hold
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
            first_bad = first_bad or number
    return rows, bad, first_bad


def _deep(data: bytes) -> bool:
    """Whether a line of ``data`` may nest deeper than ``MAX_DEPTH`` (it has that many
    brackets; Polars' type inference overflows its stack on a few hundred levels)."""
    if data.count(b"{") + data.count(b"[") - data.count(b"\n") <= MAX_DEPTH:
        return False
    return any(line.count(b"{") + line.count(b"[") > MAX_DEPTH for line in data.split(b"\n"))


def _note(record: dict[str, Any], msg: str) -> None:
    record["problem"] = "; ".join(p for p in (record.get("problem"), msg) if p)


class Parsed:
    """The rows read from the metric files of some runs, with per-file records."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        # run_id -> {"sig", "rows", "problem", "inc", "file"; "nulled": values set
        # to null because other runs' files hold another type there}
        self.files: dict[int, dict[str, Any]] = {}

    def frame(self) -> pl.DataFrame:
        notes: dict[int, list[str]] = {}
        df = concat(self.frames, notes)
        for rid, lines in notes.items():
            record = self.files[rid]
            record["nulled"] = True
            _note(record, "; ".join(f"{record.get('file', 'metrics')}: {n}" for n in lines))
        if not df.width:
            return pl.DataFrame({RUN_ID: pl.Series([], dtype=pl.Int64)})
        return df


def read_metric_files(
    items: list[tuple[int, str, bool]], stats: Counter[str], use_twins: bool = True
) -> Parsed:
    """Read ``(run_id, path, live)`` JSON-lines files into one frame with a ``run_id`` column.

    A file whose columnar twin covers it as it is now is read from the twin.

    Fast path: the files of a batch are joined into one buffer and parsed once by
    Polars with a schema taken from each file's first and last rows, after
    checking (by counting ``"key":`` patterns) that no row holds another key.
    Anything unusual (other keys, mixed types, bad lines, blank lines) falls
    back to reading that file alone, line by line if need be. A half-written
    last line is left out (and reported unless the run is still running).
    """
    out = Parsed()
    parser = _BatchParser(out, stats)
    batch: list[tuple[int, bytes, int]] = []
    batch_bytes = 0
    keytypes: dict[str, str | None] = {}
    twins: list[_Twin] = []
    for run_id, path, live in items:
        name = os.path.basename(path)
        try:
            data, st, twin = _open(path, use_twins)
        except OSError as exc:
            problem = f"{name}: {first_line(exc)}"
            out.files[run_id] = {"sig": None, "rows": 0, "problem": problem, "file": name}
            continue
        if twin is not None:
            sig, rows, inc, schema, digest = twin
            out.files[run_id] = {"sig": sig, "rows": 0, "problem": None, "inc": True, "file": name}
            twins.append((run_id, path, rows, inc, schema, digest))
            continue
        stats["metric_files_parsed"] += 1
        record: dict[str, Any] = {
            "sig": f"{len(data)}.{st.st_mtime_ns}",
            "rows": 0,
            "problem": None,
            "inc": True,
            "file": name,
        }
        out.files[run_id] = record
        data, torn = split_torn(data)
        if torn.strip() and not live:
            record["problem"] = f"{name}: half-written last line ignored"
        if not data:
            continue
        merged = _batch_keytypes(data, keytypes)
        if merged is None:
            _read_one(out, run_id, data, record, stats)
            continue
        keytypes = merged
        batch.append((run_id, data, _count(data, 10)))
        batch_bytes += len(data)
        if batch_bytes >= BATCH_BYTES:
            parser.parse(batch, keytypes)
            batch, batch_bytes, keytypes = [], 0, {}
    if batch:
        parser.parse(batch, keytypes)
    parser.wait()
    failed = _read_twins(out, twins, stats) if twins else []
    if failed:
        live_ids = {r for r, _, lv in items if lv}
        again = read_metric_files([(r, p, r in live_ids) for r, p in failed], stats, False)
        out.frames.extend(again.frames)
        out.files.update(again.files)
    return out


def _open(path: str, use_twins: bool) -> tuple[bytes, os.stat_result, Any]:
    """A metric file's bytes and stat, or (no bytes) its twin where one covers it as it is."""
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        twin = _twin(path, st) if use_twins and st.st_size >= TWIN_MIN_BYTES else None
        data = fh.read(st.st_size) if twin is None else b""
    return data, st, twin


def _batch_keytypes(data: bytes, keytypes: dict[str, str | None]) -> dict[str, str | None] | None:
    """The batch's key types merged with those of the file's first and last rows, or
    ``None`` when the file must be read alone (rows that are not flat objects of plain
    keys and JSON scalars, a ``run_id`` key, or a type that conflicts with the batch's)."""
    first = data[: data.find(b"\n")]
    last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]
    try:
        a, b = orjson.loads(first), orjson.loads(last)
    except orjson.JSONDecodeError:
        return None
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return None
    merged = dict(keytypes)
    for row in (a, b):
        for k, v in row.items():
            t = _jtype(v)
            if t == "other" or not isinstance(k, str) or _SIMPLE_KEY & set(k):
                return None
            merged[k] = _merge_types(merged.get(k), t)
    if RUN_ID in merged or "conflict" in merged.values():
        return None
    return merged


class _BatchParser:
    """Polars parses one batch (in its threads, without the GIL) while the reading
    thread reads the files of the next one; an error of the parse is raised by the next
    :meth:`parse` or :meth:`wait`."""

    def __init__(self, out: Parsed, stats: Counter[str]) -> None:
        self.out = out
        self.stats = stats
        self.thread: threading.Thread | None = None
        self.failed: list[BaseException] = []

    def _work(self, batch: list[tuple[int, bytes, int]], keytypes: dict[str, str | None]) -> None:
        try:
            _read_batch(self.out, batch, keytypes, self.stats)
        except BaseException as exc:  # re-raised in the reading thread
            self.failed.append(exc)

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()
        if self.failed:
            raise self.failed[0]

    def parse(self, batch: list[tuple[int, bytes, int]], keytypes: dict[str, str | None]) -> None:
        self.wait()
        self.thread = threading.Thread(target=self._work, args=(batch, keytypes))
        self.thread.start()


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
    nonfinite = bool(floats) and any(word in buf for word in NONFINITE_MARKS)
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


def _mixed_text(df: pl.DataFrame, data: bytes) -> bool:
    """Whether a String column that Polars inferred may hold other values too (Polars
    makes a column of strings and numbers text, numbers included)."""
    for col, dtype in df.schema.items():
        if dtype != pl.String:
            continue
        if not col.isascii() or not col.isprintable() or _SIMPLE_KEY & set(col):
            return True  # how a writer escaped it is unknown: look at the values
        if re.search(b'"' + re.escape(col.encode()) + rb'"\s*:\s*[^"\sn]', data):
            return True
    return False


def _read_one(
    out: Parsed, run_id: int, data: bytes, record: dict[str, Any], stats: Counter[str]
) -> None:
    stats["metric_files_slow"] += 1
    df: pl.DataFrame | None = None
    # Non-finite words: Python decides the types; deep rows: Polars would overflow.
    if not any(word in data for word in NONFINITE_MARKS) and not _deep(data):
        try:
            df = pl.read_ndjson(data, infer_schema_length=None)
        except pl.exceptions.PolarsError:
            df = None
        if df is not None and _mixed_text(df, data):
            df = None
    if df is None:
        rows, bad, first_bad = _parse_lines(data)
        if bad:
            _note(record, f"{bad} invalid line(s) skipped, the first at line {first_bad}")
        df, notes = metric_frame(rows)
        if notes:
            _note(record, "; ".join(f"{record.get('file', 'metrics')}: {n}" for n in notes))
    if RUN_ID in df.columns:
        df = df.drop(RUN_ID)
        _note(record, f"{record.get('file', 'metrics')}: {_RUN_ID_NOTE}")
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
            df.insert_column(0, pl.Series(RUN_ID, [run_id] * df.height, dtype=pl.Int64))
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
