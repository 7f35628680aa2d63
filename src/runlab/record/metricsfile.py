"""The metrics file format: the one interface between a run's writers and its readers.

**Files.** A run's metrics are ``<run>/metrics/<name>.jsonl`` (:func:`jsonl_path`),
one file per name (``train``, ``val``...); a distributed run's per-rank rows
(``all_ranks=True``) go to ``<name>.rank<k>.jsonl`` (:func:`rank_name`). A name is
one plain file name (:func:`runlab.record.names.check_name`).

**Rows.** Each line is one row: a JSON object, UTF-8, ending in ``\\n``. Its first
two keys are runlab's own, ``step`` (an integer within 64 bits) and ``time``
(seconds since the epoch, a float); then the task's keys in the order given.
Values are JSON numbers (integers within 64 bits, finite floats),
``true``/``false``, strings or ``null``. The key ``run_id`` is the reader's own
column: a row holding it keeps it on disk and the reader leaves it out.

**Non-finite floats** are stored as the JSON strings ``"NaN"``, ``"Infinity"``
and ``"-Infinity"`` (:func:`encode_float`), so that a strict JSON parser reads
every line; readers turn them back into floats (:data:`NONFINITE`) in numeric
columns. Lines written by Python's ``json`` with bare ``NaN``/``Infinity`` are
read too (:func:`parse_line`).

**The torn last line.** A writer appends whole lines, but a killed process or a
full disk can leave a last line without its ``\\n``. Readers ignore it
(:func:`complete_lines`, :func:`read_rows`): it is not a row until its newline is
written. A writer reopening the file repairs it first (:func:`repair_tail`): a
complete row that only lacks its newline gets one, anything else is cut. A
damaged line elsewhere (not JSON, not an object) is skipped by the readers, which
report it.

**Columnar twins.** When a logger closes, each metrics file it appended to gets a
twin ``metrics/<name>.parquet`` (:func:`twin_path`, :func:`write_twin`): the same
rows as the reader reads them from the ``.jsonl`` (same columns and types,
non-finite values as floats), in plain Parquet whose key-value metadata says
which version of the ``.jsonl`` it covers (``runlab.covers``:
``"<size>.<mtime_ns>"``, :func:`signature`), how many rows it holds
(``runlab.rows``), whether ``step`` strictly increases (``runlab.inc``) and its
schema as JSON (``runlab.columns``). A reader uses the twin only while the
``.jsonl`` still has that size and mtime; the ``.jsonl`` stays the record. A twin
is written to a temporary name and renamed into place, or not at all: only for a
file of whole, valid lines whose every column holds one kind of scalar present in
its first or last row (others are read from the ``.jsonl``, as they always can be).

Nothing here imports Polars at module level: it is imported by :func:`write_twin`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import orjson

SUFFIX = ".jsonl"
TWIN_SUFFIX = ".parquet"
NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# Bytes found in a file holding a non-finite value (a quick test before parsing it).
NONFINITE_MARKS = (b'"NaN"', b'Infinity"')

TWIN_COVERS = "runlab.covers"  # "<size>.<mtime_ns>" of the .jsonl the twin holds
TWIN_ROWS = "runlab.rows"
TWIN_INC = "runlab.inc"  # "1": steps strictly increase (no step logged twice)
TWIN_COLUMNS = "runlab.columns"  # the schema, as JSON: files alike are scanned together
# A digest of the values (see twin_sum): a twin whose pages were damaged under an
# intact footer reads as other values, or fails; either way the reader then reads
# the .jsonl. A twin without it (older runlab) is not used.
TWIN_SUM = "runlab.sum"
# The Polars version that made the digest: Polars does not promise the same row hashes
# across versions, so a twin from another version cannot be checked. The reader then
# reads the .jsonl (as for a twin that does not cover it), and verify --deep compares
# the rows themselves: such a twin is out of date, not damaged.
TWIN_SUM_BY = "runlab.sum_by"
# The reader's own column (a key of that name in a row is left out by the reader).
RUN_ID = "run_id"


# ------------------------------------------------------------------- names
def jsonl_path(metrics_dir: str | os.PathLike[str], name: str) -> Path:
    """``<metrics_dir>/<name>.jsonl``."""
    return Path(metrics_dir) / f"{name}{SUFFIX}"


def rank_name(name: str, rank: int) -> str:
    """The name of rank ``rank``'s own metrics file of ``name`` (``all_ranks=True``)."""
    return f"{name}.rank{rank}"


def twin_path(jsonl: str) -> str:
    """``metrics/<name>.parquet`` of ``metrics/<name>.jsonl``."""
    return jsonl[: -len(SUFFIX)] + TWIN_SUFFIX


def signature(st: os.stat_result) -> str:
    """What a twin's ``runlab.covers`` holds for a ``.jsonl`` in state ``st``."""
    return f"{st.st_size}.{st.st_mtime_ns}"


# ---------------------------------------------------------------- encoding
def encode_float(value: float) -> float | str:
    """A float as stored in JSON: itself when finite, else ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def encode_row(row: dict[str, Any]) -> bytes:
    """One row as its line: non-finite floats as their strings, ending in ``\\n``.

    Raises ``TypeError`` for what JSON cannot hold (an integer beyond 64 bits...).
    """
    safe = {k: encode_float(v) if type(v) is float else v for k, v in row.items()}
    return orjson.dumps(safe, option=orjson.OPT_APPEND_NEWLINE)


def decode_value(value: Any) -> Any:
    """A stored value as a number where it is a non-finite float's string."""
    if type(value) is str and value in NONFINITE:
        return NONFINITE[value]
    return value


# ------------------------------------------------------------- reading as it grows
# The first read of a file by a live view: its last bytes only (the latest value is shown).
TAIL_WINDOW = 64 * 1024
# At most this much of a file is read in one call (the rest in the next ones).
READ_CAP = 4 << 20


class Meter(Protocol):
    """What a reader of growing files counts: every ``stat`` and every byte read."""

    stats: int
    bytes_read: int


@dataclass
class Tail:
    """A metrics file read a piece at a time: the offset reached, and the file it is in.

    The one incremental reader of metrics files, shared by ``runlab status --watch``
    (one :class:`Tail` per run, kept between refreshes) and ``runlab serve`` (a
    :class:`Tail` made from the offset and inode a browser sends back). ``restarted``:
    whether the last :meth:`read` began again (a first read, a file that shrank or was
    replaced), so what came before is to be dropped.
    """

    offset: int = -1  # -1: never read
    ino: int = 0
    restarted: bool = False

    def read(self, path: str, meter: Meter, window: int | None = TAIL_WINDOW) -> list[bytes]:
        """The whole lines appended to ``path`` since the last call (none if it is missing).

        A first read (or a restart) takes only the last ``window`` bytes (``None``: the
        whole file, from its start); at most :data:`READ_CAP` bytes are read per call.
        """
        try:
            st = os.stat(path)
        except OSError:
            return []
        meter.stats += 1
        first = False
        self.restarted = st.st_ino != self.ino or st.st_size < self.offset or self.offset < 0
        if self.restarted:
            self.ino = st.st_ino
            self.offset = max(0, st.st_size - window) if window is not None else 0
            first = self.offset > 0
        if st.st_size == self.offset:
            return []
        try:
            with open(path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(min(st.st_size - self.offset, READ_CAP))
                meter.bytes_read += len(data)
                whole, _torn = split_torn(data)
                if not whole and len(data) == READ_CAP:  # a line longer than one read:
                    self.offset = _past_line(fh, meter)  # skipped, as a damaged line is
                    return []
        except OSError:
            return []
        self.offset += len(whole)
        lines = whole.split(b"\n")[:-1]
        return lines[1:] if first else lines  # from the middle of a file: a piece first


def _past_line(fh: Any, meter: Meter) -> int:
    """The offset after the end of the line ``fh`` is in the middle of (where it ends in
    a newline; else where ``fh`` started: the line is still being written)."""
    start = fh.tell()
    while chunk := fh.read(READ_CAP):
        meter.bytes_read += len(chunk)
        end = chunk.find(b"\n")
        if end >= 0:
            return int(fh.tell() - len(chunk) + end + 1)
    return int(start - READ_CAP)  # the line has no end yet: read again from its start


# ----------------------------------------------------------------- parsing
def split_torn(data: bytes) -> tuple[bytes, bytes]:
    """``data`` cut into its whole lines and the torn last line (``b""`` if none)."""
    if not data or data.endswith(b"\n"):
        return data, b""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def complete_lines(data: bytes) -> list[bytes]:
    """The whole lines of ``data`` (without their ``\\n``); a torn last line is left out."""
    whole, _ = split_torn(data)
    return whole.split(b"\n")[:-1] if whole else []


def parse_line(line: bytes) -> Any:
    """The JSON value of one line, or ``None`` where it is not JSON.

    Strict JSON first; bare ``NaN``/``Infinity`` (Python's ``json``) are accepted.
    """
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            return json.loads(line)
        except (ValueError, RecursionError):
            return None


def parse_row(line: bytes) -> dict[str, Any] | None:
    """The row of one line, or ``None`` where it is blank, damaged or not an object."""
    if not line.strip():
        return None
    row = parse_line(line)
    return row if isinstance(row, dict) else None


def parse_rows(data: bytes) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of a metrics file's bytes, and the (1-based) numbers of damaged lines.

    A torn last line is left out (not counted as damaged); blank lines are skipped.
    """
    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    for number, line in enumerate(complete_lines(data), 1):
        row = parse_row(line)
        if row is not None:
            rows.append(row)
        elif line.strip():
            bad.append(number)
    return rows, bad


# Bytes read past a file's size when it was opened: what a live writer appended since.
_SLACK = 1 << 16


def read_sized(fh: Any) -> bytes:
    """The rest of the open file ``fh``, as much as its size said (and what a writer
    appended in the meantime, up to 64 KiB more): bounded where ``read()`` is not, for a
    file with no end (a link to ``/dev/zero`` reads as its first 64 KiB)."""
    size = os.fstat(fh.fileno()).st_size
    data: bytes = fh.read(max(0, size - fh.tell()) + _SLACK)
    return data


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The complete rows of a metrics file (damaged lines and a torn last line left out).

    Raises ``OSError`` where the file cannot be read.
    """
    with open(path, "rb") as fh:
        return parse_rows(read_sized(fh))[0]


def values(rows: Iterable[dict[str, Any]], key: str) -> list[Any]:
    """The values of ``key`` in ``rows`` that hold it, non-finite strings as floats."""
    return [decode_value(row[key]) for row in rows if key in row]


def last_row(path: str | os.PathLike[str], window: int = 65536) -> dict[str, Any] | None:
    """The last row of ``path`` as its writer sees it, read from its last ``window`` bytes.

    The writer's view: a torn last line that is a whole row counts (reopening the
    file gives it its newline, :func:`repair_tail`); any other torn tail does not.
    """
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        start = max(0, size - window)
        fh.seek(start)
        lines = read_sized(fh).split(b"\n")
    if start:
        lines = lines[1:]  # the first may be a part of a line
    for line in reversed(lines):
        row = parse_row(line)
        if row is not None:
            return row
    return None


def repair_tail(fd: int) -> int:
    """The length of the whole lines of an open metrics file, after repairing its tail.

    A torn last line that is a complete row gets its ``\\n``; anything else is cut.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            good = start + cut + 1
            break
        end = start
    else:
        good = 0
    tail = os.pread(fd, size - good, good)
    try:
        whole = isinstance(orjson.loads(tail), dict)
    except orjson.JSONDecodeError:
        whole = False
    if whole:  # a complete row that only lacks its newline
        os.write(fd, b"\n")
        return size + 1
    os.ftruncate(fd, good)
    return good


# -------------------------------------------------------------------- twins
_INT64 = range(-(2**63), 2**63)


def _kind(value: Any) -> str | None:
    """The column kind of one stored value (``None`` for null, ``"other"``: no twin)."""
    t = type(value)
    if value is None:
        return None
    if t is bool:
        return "bool"
    if t is int:
        return "int" if value in _INT64 else "other"
    if t is float:
        return "float"
    if t is str:
        return "float" if value in NONFINITE else "str"
    return "other"


def _kinds(values: list[Any]) -> set[str]:
    """The kinds of a column's values (:func:`_kind` of each, without null), found a type
    at a time: a column of one type, the common case, is looked at at C speed."""
    types = set(map(type, values))
    types.discard(type(None))
    out: set[str] = set()
    for t in types:
        if t is bool or t is float:
            out.add(t.__name__)
        elif t is int:
            ints = [v for v in values if type(v) is int]
            out.add("int" if min(ints) in _INT64 and max(ints) in _INT64 else "other")
        elif t is str:
            texts = {v for v in values if type(v) is str}
            if not texts.isdisjoint(NONFINITE):
                out.add("float")
            if not texts <= NONFINITE.keys():
                out.add("str")
        else:
            out.add("other")
    return out


def _twin_columns(rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """Each column's kind (in the reader's order: the first row's keys, then the last
    row's), or ``None`` where the file is not one a twin may hold (module docstring)."""
    order = list(dict.fromkeys([*rows[0], *rows[-1]]))
    known = set(order)
    for row in rows:  # a key of the middle rows only, with a value: no twin
        if not known.issuperset(row) and any(
            v is not None for k, v in row.items() if k not in known
        ):
            return None
    if RUN_ID in known and any(row.get(RUN_ID) is not None for row in rows):
        return None
    out: dict[str, str] = {}
    for key in order:
        ends = {_kind(rows[0].get(key)), _kind(rows[-1].get(key))} - {None}
        got = _kinds([row.get(key) for row in rows])
        if not ends or "other" in got:
            return None
        if got <= {"int", "float"}:
            out[key] = "float" if "float" in got else "int"
        elif len(got) == 1:
            out[key] = got.pop()
        else:
            return None
    return out


def _twin_frame(rows: list[dict[str, Any]], kinds: dict[str, str]) -> Any:
    import polars as pl

    types = {"int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean, "str": pl.String}
    cols = []
    for key, k in kinds.items():
        vals = [row.get(key) for row in rows]
        if k == "float" and not set(map(type, vals)) <= {float, type(None)}:
            vals = [None if v is None else float(decode_value(v)) for v in vals]
        cols.append(pl.Series(key, vals, dtype=types[k]))
    return pl.DataFrame(cols)


def _increasing(rows: list[dict[str, Any]]) -> bool:
    steps = [row.get("step") for row in rows]
    if any(type(s) is not int for s in steps):
        return False
    ints = cast(list[int], steps)  # each one checked just above
    return all(a < b for a, b in itertools.pairwise(ints))


def twin_sum(hashes: Any) -> str:
    """The digest of a twin's values that ``runlab.sum`` holds: the sum (wrapping, in
    64 bits) of the rows' Polars hashes with seed 0 (``df.hash_rows(seed=0)`` as a NumPy
    array), as text. A reader sums the rows it decoded the same way (per file, over one
    scan of many) and compares."""
    return str(int(hashes.sum(dtype=hashes.dtype)))


def twin_mismatch(jsonl: str | os.PathLike[str]) -> str | None:
    """Why the columnar twin of ``jsonl`` does not hold the file's rows, or ``None``.

    Only a twin that says it covers the ``.jsonl`` as it is now (``runlab.covers``) is
    compared: a stale twin is one no reader uses. It disagrees when it cannot be read,
    when its values no longer match its own digest (pages damaged under an intact
    footer), or when its rows differ from the ones the ``.jsonl`` holds (a file edited
    in place with its size and time kept). ``runlab verify --deep`` asks this of every
    metrics file; it reads both files whole.
    """
    import polars as pl

    path = os.fspath(jsonl)
    twin = twin_path(path)
    try:
        meta = pl.read_parquet_metadata(twin)
        covers = meta.get(TWIN_COVERS) == signature(os.stat(path))
    except FileNotFoundError:
        return None
    except Exception:
        return "it cannot be read"
    if not covers:
        return None
    try:
        df = pl.read_parquet(twin, glob=False)  # a name such as `[` is no pattern
    except Exception:
        return "its data pages cannot be read"
    checkable = TWIN_SUM in meta and meta.get(TWIN_SUM_BY) == pl.__version__
    if checkable and twin_sum(df.hash_rows(seed=0).to_numpy()) != meta[TWIN_SUM]:
        return "its values do not match the digest it holds"
    with open(path, "rb") as fh:
        rows, bad = parse_rows(fh.read())
    kinds = _twin_columns(rows) if rows and not bad else None
    if kinds is None or not df.equals(_twin_frame(rows, kinds), null_equal=True):
        return f"its rows differ from the {SUFFIX} file's"
    return None


def write_twin(jsonl: str | os.PathLike[str]) -> bool:
    """Write the columnar twin of a finished metrics file (see the module docstring).

    Never raises: a file that cannot be read cleanly (bad or half-written lines),
    one a twin may not hold, one that changes while it is read, or a twin that
    cannot be written is skipped (and no partial twin is left). Returns whether a
    twin was written.
    """
    import polars as pl

    path = os.fspath(jsonl)
    dest = twin_path(path)
    tmp = f"{os.path.dirname(dest)}/.{os.path.basename(dest)}.{os.getpid()}.tmp"
    try:
        with open(path, "rb") as fh:
            before = os.fstat(fh.fileno())
            data = fh.read(before.st_size)
        rows, bad = parse_rows(data)
        kinds = _twin_columns(rows) if rows else None
        after = os.stat(path)
        if (
            bad
            or kinds is None
            or split_torn(data)[1]
            or len(data) != before.st_size
            or signature(after) != signature(before)
        ):
            return False
        df = _twin_frame(rows, kinds)
        meta = {
            TWIN_COVERS: signature(before),
            TWIN_ROWS: str(df.height),
            TWIN_INC: "1" if _increasing(rows) else "0",
            TWIN_COLUMNS: json.dumps([[c, str(t)] for c, t in df.schema.items()]),
            TWIN_SUM: twin_sum(df.hash_rows(seed=0).to_numpy()),
            TWIN_SUM_BY: pl.__version__,
        }
        df.write_parquet(tmp, compression="lz4", statistics=False, metadata=meta)
        os.replace(tmp, dest)
        return True
    except Exception:
        return False
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
