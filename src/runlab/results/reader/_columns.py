"""Typed Polars columns from Python values whose types may disagree.

A column keeps the type its values agree on. In the run table, a column whose
values disagree (``lr: 0.01`` in most runs, ``lr: abc`` in one) is kept as JSON
text and marked *mixed* until every run is known (:func:`merge` keeps it so
across cached and fresh rows); :func:`resolve` then gives it the type of most of
its values and sets the others to null, naming them. The majority is counted
over the runs that are neither ``FAILED`` nor ``CORRUPT`` first (a sweep's
crashed runs, however many, do not retype the column of the runs that worked),
then over all runs; a tie goes to numbers, then booleans, strings, lists. The
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (how writers store
non-finite floats in JSON) are floats wherever the other values are numbers;
integers beyond 64 bits are other values (text, see ``_files.flatten``).

Metric rows are settled the same way, at two levels: within one metrics file
(:func:`metric_frame`) a key keeps the type of most of its values (a ``"diverged"``
among losses becomes null); across files (:func:`settle`, on every stack of
frames) numbers win, then booleans, strings, lists: a rule that gives the same
result whichever runs are stacked first, so that a read from the index and a
read of the files agree.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import orjson
import polars as pl

from runlab.record.metricsfile import NONFINITE, encode_float
from runlab.status import UNTRUSTED, Status

_NUMBER = ("int", "float", "nf")
# Which kind wins a tie between equally many values.
_RANK = {"number": 0, "bool": 1, "str": 2, "list": 3, "big": 4, "other": 5}
_WORD = {
    "number": "a number",
    "bool": "a boolean",
    "str": "a string",
    "list": "a list",
    "big": "an integer beyond 64 bits",
}
_INT64 = range(-(2**63), 2**63)


_TYPES: dict[type, str | None] = {
    type(None): None,
    bool: "bool",
    int: "int",
    float: "float",
    list: "list",
    tuple: "list",
}


def kind(value: Any) -> str | None:
    t = type(value)
    if t is str:
        return "nf" if value in NONFINITE else "str"
    try:
        return _TYPES[t]
    except KeyError:
        pass
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "nf" if value in NONFINITE else "str"
    if isinstance(value, (datetime, date)):
        return "date"
    if isinstance(value, (list, tuple)):
        return "list"
    return "other"


def plain(value: Any) -> Any:
    """``value`` with dates as ISO text and tuples as lists (what JSON can hold)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    return value


def json_text(value: Any) -> str | None:
    """``value`` as JSON text (``None`` stays ``None``); integers beyond 64 bits as
    their digits (orjson refuses them), anything deeper than JSON allows as ``null``
    (metadata that deep is refused before, see ``_files.too_deep``)."""
    if value is None:
        return None
    try:
        return orjson.dumps(json_safe(plain(value)), option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, ValueError, RecursionError):
        try:
            return json.dumps(json_safe(plain(value)), default=str)
        except (TypeError, ValueError, RecursionError):
            return "null"


def loose_text(value: Any) -> str | None:
    """Strings as they are, anything else as JSON text (metric columns of mixed types)."""
    return value if value is None or isinstance(value, str) else json_text(value)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return NONFINITE[value]
    return float(value)


def column(name: str, values: Sequence[Any]) -> tuple[pl.Series, bool]:
    """A typed column from ``values``, and whether its values disagree (then JSON text)."""
    types = {type(v) for v in values}
    types.discard(type(None))
    # The common cases first, by exact type (what a JSON parser returns).
    if types == {str}:
        if all(v in NONFINITE for v in values if v is not None):
            return pl.Series(name, [_float(v) for v in values], dtype=pl.Float64), False
        return pl.Series(name, values, dtype=pl.String), False
    if types == {float} or types == {int, float}:
        return pl.Series(name, values, dtype=pl.Float64), False
    if types == {bool}:
        return pl.Series(name, values, dtype=pl.Boolean), False
    kinds = {kind(v) for v in values} - {None}
    try:
        if not kinds:
            return pl.Series(name, values, dtype=pl.Null), False
        if kinds == {"bool"}:
            return pl.Series(name, values, dtype=pl.Boolean), False
        if kinds == {"int"}:
            return pl.Series(name, values, dtype=pl.Int64), False
        if kinds <= {"int", "float", "nf"}:
            return pl.Series(name, [_float(v) for v in values], dtype=pl.Float64), False
        if kinds <= {"str", "nf"}:
            return pl.Series(name, values, dtype=pl.String), False
        if kinds <= {"str", "nf", "date"}:  # dates (from YAML) as ISO text
            return pl.Series(name, [plain(v) for v in values], dtype=pl.String), False
        if kinds == {"list"}:
            try:
                return pl.Series(name, [plain(v) for v in values], strict=True), False
            except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
                return pl.Series(name, [json_text(v) for v in values], dtype=pl.String), False
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        pass  # e.g. an integer beyond 64 bits
    return pl.Series(name, [json_text(v) for v in values], dtype=pl.String), True


def frame(rows: list[dict[str, Any]]) -> tuple[pl.DataFrame, set[str]]:
    """A DataFrame from dicts with differing keys and types (first-seen column order),
    and the names of its mixed columns (JSON text)."""
    n = len(rows)
    cols: dict[str, list[Any]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            col = cols.get(key)
            if col is None:
                col = cols[key] = [None] * n
            col[i] = value
    series: list[pl.Series] = []
    mixed: set[str] = set()
    for key, values in cols.items():
        s, bad = column(key, values)
        if bad:
            mixed.add(key)
        series.append(s)
    return (pl.DataFrame(series, height=n) if series else pl.DataFrame(height=n)), mixed


def _compatible(dtypes: set[Any]) -> bool:
    dtypes = dtypes - {pl.Null}
    if len(dtypes) <= 1:
        return True
    return all(d.is_numeric() and d != pl.Boolean for d in dtypes)


def _as_json(s: pl.Series) -> pl.Series:
    return pl.Series(s.name, [json_text(v) for v in s.to_list()], dtype=pl.String)


def merge(parts: Iterable[tuple[pl.DataFrame, set[str]]]) -> tuple[pl.DataFrame, set[str]]:
    """Stack frames with their mixed columns; a column whose types disagree across
    frames becomes mixed (JSON text) in all of them."""
    parts = [(f, m) for f, m in parts if f.width]
    if not parts:
        return pl.DataFrame(), set()
    mixed = set().union(*(m for _, m in parts))
    dtypes: dict[str, set[Any]] = {}
    for f, _ in parts:
        for name, dtype in f.schema.items():
            dtypes.setdefault(name, set()).add(dtype)
    mixed |= {n for n, d in dtypes.items() if not _compatible(d)}
    frames = []
    for f, m in parts:
        fix = [c for c in f.columns if c in mixed and c not in m and f.schema[c] != pl.Null]
        frames.append(f.with_columns(_as_json(f[c]) for c in fix) if fix else f)
    if len(frames) == 1:
        return frames[0], mixed
    return pl.concat(frames, how="diagonal_relaxed"), mixed


def _dkind(dtype: Any) -> str | None:
    """The kind of a column type, as :func:`_coarse` names values."""
    if dtype == pl.Null:
        return None
    if dtype.is_numeric():
        return "number"
    if dtype == pl.Boolean:
        return "bool"
    if dtype == pl.String:
        return "str"
    if isinstance(dtype, (pl.List, pl.Array)):
        return "list"
    return "other"


def settle(frames: Sequence[Any], notes: dict[int, list[str]] | None = None) -> list[Any]:
    """``frames`` (DataFrames or LazyFrames with a ``run_id`` column) with every
    column whose kinds disagree across them kept in the first kind by ``_RANK``
    (numbers first); the others set to null there. With ``notes``, a line per run
    whose values were set to null (collected: only where kinds disagree)."""
    if len(frames) < 2:
        return list(frames)
    schemas = [f.collect_schema() if isinstance(f, pl.LazyFrame) else f.schema for f in frames]
    kinds: dict[str, set[str]] = {}
    for schema in schemas:
        for name, dtype in schema.items():
            k = _dkind(dtype)
            if k is not None:
                kinds.setdefault(name, set()).add(k)
    clash = {n: min(k, key=_RANK.__getitem__) for n, k in kinds.items() if len(k) > 1}
    if not clash:
        return list(frames)
    out = []
    for f, schema in zip(frames, schemas, strict=True):
        lose = [
            n for n, win in clash.items() if n in schema and _dkind(schema[n]) not in (None, win)
        ]
        if lose and notes is not None:
            for n in lose:
                hit = f.filter(pl.col(n).is_not_null()).select(pl.col("run_id").unique())
                rids = (hit.collect() if isinstance(hit, pl.LazyFrame) else hit)["run_id"]
                for rid in rids.to_list():
                    notes.setdefault(rid, []).append(
                        f"{n} set to null: other runs have {_WORD[clash[n]]} there"
                    )
        out.append(f.with_columns(pl.lit(None).alias(n) for n in lose) if lose else f)
    return out


def concat(frames: list[pl.DataFrame], notes: dict[int, list[str]] | None = None) -> pl.DataFrame:
    """Stack metric frames (see :func:`settle`, which fills ``notes``); columns of one
    kind whose types still cannot be reconciled become text."""
    frames = [f for f in frames if f.width]
    if not frames:
        return pl.DataFrame()
    if len(frames) == 1:
        return frames[0]
    frames = settle(frames, notes)
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError:
        dtypes: dict[str, set[Any]] = {}
        for f in frames:
            for name, dtype in f.schema.items():
                dtypes.setdefault(name, set()).add(dtype)
        clash = [n for n, d in dtypes.items() if not _compatible(d)]
        fixed = [
            f.with_columns(
                pl.Series(c, [loose_text(v) for v in f[c].to_list()], dtype=pl.String)
                for c in clash
                if c in f.columns
            )
            for f in frames
        ]
        return pl.concat(fixed, how="diagonal_relaxed")


def _short(value: Any) -> str:
    raw = json_text(value) or ""
    return raw if len(raw) <= 60 else raw[:57] + "..."


def _one_kind(
    rows: list[dict[str, Any]], most: bool
) -> tuple[pl.DataFrame, dict[str, tuple[str | None, list[tuple[int, Any]]]]]:
    """A frame of ``rows`` whose every column holds values of one kind: with ``most``
    the kind of most of its values (a tie: by ``_RANK``), else the first by ``_RANK``;
    the other values become null. Values that no column type holds (dicts) are JSON
    text. Also, per such column, the kind kept and the ``(row, value)`` set to null."""
    df, mixed = frame(rows)
    if not mixed:
        return df, {}
    odd: dict[str, tuple[str | None, list[tuple[int, Any]]]] = {}
    new: list[pl.Series] = []
    for col in mixed:
        values = [row.get(col) for row in rows]
        counts = Counter(_coarse(v) for v in values if v is not None)
        if most:
            win = min(counts, key=lambda k: (-counts[k], _RANK.get(k or "other", 9)))
        else:
            win = min(counts, key=lambda k: _RANK.get(k or "other", 9))
        gone = [(i, v) for i, v in enumerate(values) if v is not None and _coarse(v) != win]
        for i, _ in gone:
            values[i] = None
        if gone:
            odd[col] = (win, gone)
        s, still = column(col, values)
        new.append(pl.Series(col, [loose_text(v) for v in values], dtype=pl.String) if still else s)
    return df.with_columns(new), odd


def metric_frame(rows: list[dict[str, Any]]) -> tuple[pl.DataFrame, list[str]]:
    """The frame of one metrics file's rows: a key whose values disagree in type keeps
    the kind of most of its values, the others become null; and a line per such key."""
    df, odd = _one_kind(rows, most=True)
    notes = []
    for col, (win, gone) in odd.items():
        row, value = gone[0]
        more = f" and {len(gone) - 1} other value(s)" if len(gone) > 1 else ""
        notes.append(
            f"{col} = {_short(value)} (row {row + 1}){more} set to null: most of its "
            f"values are {_WORD.get(win or '', 'of another type')}"
        )
    return df, notes


def summary_frame(rows: list[dict[str, Any]], notes: dict[int, list[str]]) -> pl.DataFrame:
    """The frame of summary rows (one per run, with ``run_id``) kept in the index: kinds
    that disagree are settled as :func:`settle` does, naming the runs in ``notes``."""
    df, odd = _one_kind(rows, most=False)
    for col, (win, gone) in odd.items():
        for row, value in gone:
            notes.setdefault(rows[row]["run_id"], []).append(
                f"{col} = {_short(value)} set to null: other runs have "
                f"{_WORD.get(win or '', 'another type')} there"
            )
    return df


def _coarse(value: Any) -> str | None:
    k = kind(value)
    if k == "int" and value not in _INT64:
        return "big"
    return "number" if k in _NUMBER else ("str" if k == "date" else k)


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. an integer beyond 64 bits
        return json.loads(text)


def resolve(df: pl.DataFrame, mixed: Iterable[str]) -> tuple[pl.DataFrame, dict[int, list[str]]]:
    """Type each mixed column by most of its values (those of runs neither FAILED nor
    CORRUPT first, see the module docstring); the others become null.

    Returns the table and, per ``run_id``, lines naming the values set to null.
    """
    notes: dict[int, list[str]] = {}
    cols = [c for c in mixed if c in df.columns]
    if not cols:
        return df, notes
    run_ids = df["run_id"].to_list()
    if "info.status" in df.columns and df.schema["info.status"] == pl.String:
        sure = [Status.of(s) not in UNTRUSTED for s in df["info.status"].to_list()]
    else:
        sure = [True] * len(run_ids)
    new: list[pl.Series] = []
    for col in cols:
        values = [None if t is None else _loads(t) for t in df[col].to_list()]
        counts: Counter[str | None] = Counter()
        good: Counter[str | None] = Counter()
        for value, ok in zip(values, sure, strict=True):
            if value is not None:
                k = _coarse(value)
                counts[k] += 1
                good[k] += ok
        if not counts:  # every run that disagreed is gone
            new.append(pl.Series(col, values, dtype=pl.Null))
            continue
        win = min(counts, key=lambda k: (-good[k], -counts[k], _RANK.get(k or "other", 9)))
        kept = []
        for rid, value in zip(run_ids, values, strict=True):
            if value is not None and _coarse(value) != win:
                notes.setdefault(rid, []).append(
                    f"{col} = {_short(value)} set to null: the other runs have "
                    f"{_WORD.get(win or '', 'another type')} there"
                )
                value = None
            kept.append(value)
        s, still = column(col, kept)
        new.append(
            s if not still else pl.Series(col, [json_text(v) for v in kept], dtype=pl.String)
        )
    return df.with_columns(new), notes
