"""Read many runs at once: one Polars row per run, lazy metrics, grouping over seeds.

    >>> runs = runlab.Reader("logs")          # or runlab.runs("logs")
    >>> done = runs.filter("info.status == 'COMPLETE' & config.method in ['GD', 'GN']")
    >>> done.group_by("config.method", "config.std").curves("train.loss")

The run table (``Reader.df``) has one row per run directory of ``logs``:

- ``run_id`` (int), then ``config.*``, ``info.*`` and ``env.*``: the flattened
  ``metadata/config.yaml``, ``info.yaml`` and ``env.yaml`` (``env.packages`` and
  ``env.conda_packages`` are left out: read them from the file).
- metric summaries, per metrics file ``<name>.jsonl``: ``<name>.step.max``, and
  for every other key ``k`` but ``time``: ``<name>.<k>.last`` (the last non-null
  value) and, for numbers, ``<name>.<k>.min`` and ``<name>.<k>.max``.
- ``problem``: why a run could not be read fully (null when it could).

``info.status`` is ``LOST`` for a ``RUNNING`` run whose heartbeat is older than
``max(60 s, 4 x heartbeat_interval_s)``, and ``CORRUPT`` for a run whose
``info.yaml`` is missing or unreadable. Unreadable runs and metric files never
raise: they are marked, and listed once per read in a :class:`CorruptRunWarning`.

Speed comes from an index kept inside the logs directory, ``<logs>/.runlab-index/``:
``runs.parquet`` (the run table without the summaries, with each run's file
sizes and mtimes) and ``metrics/<name>/<block>.parquet`` (the rows of
``<name>.jsonl`` of 256 runs, with the sizes, mtimes and summaries of the files
they came from in the Parquet footer). Each read stats the files and rereads
only what changed; metric files are read only for the runs and names asked for,
and the metric files read are added to the cache by a background thread (which
the interpreter waits for at exit; :func:`wait_for_index` waits for it too). The
rows of running runs are never cached: they change all the time.
Every index file is written whole to a temporary file and renamed into place,
so concurrent readers never see a partial file and need no lock (the last
writer wins; a stale entry is just reread). Delete the directory at any time.

``Reader.stats`` counts what a read did (``meta_parsed``, ``meta_reused``,
``metric_files_parsed``, ``metric_files_cached``, ``index_writes``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import yaml

from runlab.query import Node, QueryError, compile_query, keys_of, parse, suggest

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = ["CorruptRunWarning", "Grouped", "Reader", "runs", "to_pandas", "wait_for_index"]

INDEX_DIR = ".runlab-index"
INDEX_VERSION = "1"
BLOCK = 256  # runs per metrics cache file
LOST_AFTER_S = 60.0
LIVE = "RUNNING"
_ENV_SKIP = ("packages", "conda_packages")
_META = ("config", "info", "env")
_PRIVATE = ("_sig", "_hb")
_BATCH_BYTES = 32 << 20


class CorruptRunWarning(UserWarning):
    """Some runs or metric files could not be read fully (the message lists them)."""


def runs(logs: str | os.PathLike[str] | None = None, **kwargs: Any) -> Reader:
    """The runs under ``logs`` (default ``$RUNLAB_LOGS`` or ``./logs``): ``Reader(logs)``."""
    return Reader(logs, **kwargs)


# ---------------------------------------------------------------- utilities
def _sig(path: str | Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_size}.{st.st_mtime_ns}"


def _flatten(
    prefix: str, obj: Mapping[Any, Any], out: dict[str, Any], skip: Sequence[str] = ()
) -> None:
    for key, value in obj.items():
        if key in skip:
            continue
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            if value:
                _flatten(name, value, out)
            else:
                out[name] = None
        else:
            out[name] = value


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(_plain(value), option=orjson.OPT_NON_STR_KEYS).decode()


def _series(name: str, values: list[Any]) -> pl.Series:
    """A column from Python values of possibly mixed types, never failing."""
    types = {type(v) for v in values if v is not None}
    if not types:
        return pl.Series(name, values, dtype=pl.Null)
    try:
        if types <= {bool}:
            return pl.Series(name, values, dtype=pl.Boolean)
        if types <= {int}:
            return pl.Series(name, values, dtype=pl.Int64)
        if types <= {int, float}:
            return pl.Series(name, values, dtype=pl.Float64)
        if types <= {str}:
            return pl.Series(name, values, dtype=pl.String)
        if types <= {datetime, date}:
            return pl.Series(name, [_plain(v) for v in values], dtype=pl.String)
        if types <= {list, tuple}:
            return pl.Series(name, [_plain(v) for v in values], strict=True)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        pass
    return pl.Series(name, [_json_text(v) for v in values], dtype=pl.String)


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A DataFrame from dicts with differing keys and types (first-seen column order)."""
    n = len(rows)
    cols: dict[str, list[Any]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            col = cols.get(key)
            if col is None:
                col = cols[key] = [None] * n
            col[i] = value
    return (
        pl.DataFrame([_series(k, v) for k, v in cols.items()], height=n)
        if cols
        else pl.DataFrame(height=n)
    )


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.width]
    if not frames:
        return pl.DataFrame()
    if len(frames) == 1:
        return frames[0]
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError:
        # Columns whose types cannot be reconciled (a list here, a number there): as text.
        dtypes: dict[str, set[Any]] = {}
        for f in frames:
            for name, dtype in f.schema.items():
                dtypes.setdefault(name, set()).add(dtype)
        clash = [n for n, d in dtypes.items() if len(d - {pl.Null}) > 1]
        fixed = [
            f.with_columns(
                pl.Series(c, [_json_text(v) for v in f[c].to_list()], dtype=pl.String)
                for c in clash
                if c in f.columns
            )
            for f in frames
        ]
        return pl.concat(fixed, how="diagonal_relaxed")


def _write_parquet(df: pl.DataFrame, dest: Path, metadata: dict[str, str] | None = None) -> bool:
    """Write ``df`` to ``dest`` whole (temporary file + rename); False if the disk refuses."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as fh:
            df.write_parquet(fh, compression="lz4", statistics=False, metadata=metadata)
        os.replace(tmp, dest)
        return True
    except (OSError, pl.exceptions.PolarsError):
        Path(tmp).unlink(missing_ok=True)
        return False


def _strip_top_level(text: bytes, keys: Sequence[str]) -> bytes:
    """Drop the top-level ``key:`` blocks of a block-style YAML document (unparsed)."""
    heads = tuple(f"{k}:".encode() for k in keys)
    out: list[bytes] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if line[:1] not in (b" ", b"-", b"\t", b"\n", b"\r", b"#", b""):
            skipping = line.startswith(heads)
        if not skipping:
            out.append(line)
    return b"".join(out)


def _iso_epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# ---------------------------------------------------------------- fast YAML
class _Fallback(Exception):
    """The fast YAML reader met something it does not handle: use PyYAML."""


_KEY = re.compile(r"[A-Za-z_][\w.\-/]*\Z")
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+][0-9]+)?\Z")
_WORDS = {
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    "true": True,
    "True": True,
    "TRUE": True,
    "yes": True,
    "Yes": True,
    "YES": True,
    "on": True,
    "On": True,
    "ON": True,
    "false": False,
    "False": False,
    "FALSE": False,
    "no": False,
    "No": False,
    "NO": False,
    "off": False,
    "Off": False,
    "OFF": False,
    ".inf": float("inf"),
    ".Inf": float("inf"),
    ".INF": float("inf"),
    "+.inf": float("inf"),
    "+.Inf": float("inf"),
    "+.INF": float("inf"),
    "-.inf": float("-inf"),
    "-.Inf": float("-inf"),
    "-.INF": float("-inf"),
    ".nan": float("nan"),
    ".NaN": float("nan"),
    ".NAN": float("nan"),
}
_KEYS_OK: set[str] = set()
_SPECIAL = frozenset("&*!|>%@`{[\"'#,?:-<=")


def _scalar(text: str) -> Any:
    if text.isdigit() and (text[0] != "0" or text == "0"):
        return int(text)
    if text in _WORDS:
        return _WORDS[text]
    c = text[0]
    if c == "'":
        if len(text) < 2 or not text.endswith("'"):
            raise _Fallback
        body = text[1:-1]
        if "'" in body.replace("''", ""):
            raise _Fallback
        return body.replace("''", "'")
    if c == '"':
        body = text[1:-1]
        if len(text) < 2 or not text.endswith('"') or "\\" in body or '"' in body:
            raise _Fallback
        return body
    if text == "{}":
        return {}
    if text == "[]":
        return []
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if (
        c in _SPECIAL
        or c.isdigit()
        or c in "+."
        or " #" in text
        or ": " in text
        or text.endswith(":")
    ):
        # numbers with underscores, sexagesimals, timestamps, flow collections, anchors...
        raise _Fallback
    if text.rstrip() != text:
        raise _Fallback
    return text


def _fast_yaml(text: str) -> dict[str, Any]:
    """Block-style YAML as written by ``yaml.dump`` (mappings, lists of scalars, plain and
    quoted scalars resolved as PyYAML does), about 4x faster than the C loader;
    raises :class:`_Fallback` on anything else."""
    if "\t" in text or "\r" in text or text.startswith(("%", "---")):
        raise _Fallback
    root = {}
    stack = [(0, root, True)]  # indent, container, is_map
    pending = None  # (map, key, indent)
    for line in text.split("\n"):
        body = line.lstrip(" ")
        if not body:
            continue
        if body[0] == "#":
            raise _Fallback
        indent = len(line) - len(body)
        item = body.startswith("- ") or body == "-"
        if pending is not None:
            m, k, pi = pending
            pending = None
            if item and indent >= pi:
                new = []
                m[k] = new
                stack.append((indent, new, False))
            elif indent > pi and not item:
                new = {}
                m[k] = new
                stack.append((indent, new, True))
            else:
                m[k] = None
        while stack[-1][0] > indent:
            stack.pop()
        top_indent, top, is_map = stack[-1]
        if not is_map and not item:
            stack.pop()
            top_indent, top, is_map = stack[-1]
        if top_indent != indent:
            raise _Fallback
        if not is_map:
            value = body[2:]
            if not value or ": " in value or value.endswith(":") or value.startswith("- "):
                raise _Fallback
            top.append(_scalar(value))
            continue
        if item:
            raise _Fallback
        pos = body.find(": ")
        if pos < 0:
            if not body.endswith(":"):
                raise _Fallback
            key, value = body[:-1], ""
        else:
            key, value = body[:pos], body[pos + 2 :].lstrip(" ")
        if key not in _KEYS_OK:
            if not _KEY.match(key) or key in _WORDS or key == "<<":
                raise _Fallback
            _KEYS_OK.add(key)
        if value:
            top[key] = _scalar(value)
        else:
            pending = (top, key, indent)
    if pending is not None:
        pending[0][pending[1]] = None
    return root


def _load_yaml(raw: bytes) -> Any:
    """Parse a YAML document: the fast reader where it applies, else PyYAML's C loader."""
    try:
        return _fast_yaml(raw.decode())
    except (_Fallback, UnicodeDecodeError):
        return yaml.load(raw, Loader=_Loader)


# ------------------------------------------------------------- run metadata
class _MetaReader:
    """Parses the metadata files of runs; env.yaml parsed once per distinct content."""

    def __init__(self) -> None:
        self._envs: dict[bytes, dict[str, Any] | str] = {}

    def env(self, raw: bytes) -> dict[str, Any] | str:
        cached = self._envs.get(raw)
        if cached is None:
            try:
                data = _load_yaml(_strip_top_level(raw, _ENV_SKIP))
                if data is None:
                    data = {}
                if not isinstance(data, Mapping):
                    raise ValueError("not a mapping")
                flat: dict[str, Any] = {}
                _flatten("env", data, flat, skip=_ENV_SKIP)
                cached = {
                    k: _plain(v) if isinstance(v, (list, datetime, date)) else v
                    for k, v in flat.items()
                }
            except (yaml.YAMLError, ValueError) as exc:
                cached = f"metadata/env.yaml: invalid YAML ({_first_line(exc)})"
            self._envs[raw] = cached
        return cached

    def read(self, run_id: int, path: str, sig: str) -> dict[str, Any]:
        row: dict[str, Any] = {"run_id": run_id, "_sig": sig, "_hb": None}
        problems: list[str] = []
        meta = f"{path}/metadata"
        docs: dict[str, Any] = {}
        for name in ("config", "info"):
            file = f"{meta}/{name}.yaml"
            try:
                with open(file, "rb") as fh:
                    raw = fh.read()
            except FileNotFoundError:
                problems.append(f"missing metadata/{name}.yaml")
                continue
            except OSError as exc:
                problems.append(f"metadata/{name}.yaml: {_first_line(exc)}")
                continue
            try:
                data = _load_yaml(raw)
            except yaml.YAMLError as exc:
                problems.append(f"metadata/{name}.yaml: invalid YAML ({_first_line(exc)})")
                continue
            if data is None:
                data = {}
            if not isinstance(data, Mapping):
                problems.append(f"metadata/{name}.yaml: not a mapping")
                continue
            docs[name] = data
        if "config" in docs:
            _flatten("config", docs["config"], row)
        info = docs.get("info")
        if info is not None:
            _flatten("info", {k: v for k, v in info.items() if k != "run_id"}, row)
            beat = info.get("heartbeat") or info.get("attempt_start_time") or info.get("start_time")
            row["_hb"] = _iso_epoch(beat)
            if row.get("info.status") is None:
                row["info.status"] = "CORRUPT" if problems else None
        else:
            row["info.status"] = "CORRUPT"
        try:
            with open(f"{meta}/env.yaml", "rb") as fh:
                env = self.env(fh.read())
        except FileNotFoundError:
            env = {}
        except OSError as exc:
            env = f"metadata/env.yaml: {_first_line(exc)}"
        if isinstance(env, str):
            problems.append(env)
        else:
            row.update(env)
        for key, value in list(row.items()):
            if isinstance(value, (datetime, date)):
                row[key] = value.isoformat()
        row["problem"] = "; ".join(problems) if problems else None
        return row


def _read_meta_chunk(args: tuple[list[tuple[int, str, str]]]) -> list[dict[str, Any]]:
    reader = _MetaReader()
    return [reader.read(rid, p, sig) for rid, p, sig in args[0]]


def _read_metas(todo: list[tuple[int, str, str]]) -> list[dict[str, Any]]:
    """Parse the metadata of ``todo`` runs; over two processes when there are many."""
    workers = min(os.cpu_count() or 1, 4)
    if len(todo) < 3000 or workers < 2 or os.environ.get("RUNLAB_READER_PROCESSES") == "0":
        reader = _MetaReader()
        return [reader.read(rid, p, sig) for rid, p, sig in todo]
    import multiprocessing as mp

    try:
        ctx = mp.get_context("fork")
    except ValueError:  # pragma: no cover - no fork on this platform
        reader = _MetaReader()
        return [reader.read(rid, p, sig) for rid, p, sig in todo]
    items = todo
    step = -(-len(items) // workers)
    chunks = [(items[i : i + step],) for i in range(0, len(items), step)]
    with ctx.Pool(len(chunks)) as pool:
        parts = pool.map(_read_meta_chunk, chunks)
    return [row for part in parts for row in part]


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
        return "str"
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
            try:  # Python's json writes NaN and Infinity, which orjson refuses
                row = json.loads(line)
            except ValueError:
                row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
            first_bad = first_bad or number
    return rows, bad, first_bad


class _Parsed:
    """The rows read from the metric files of some runs, with per-file records."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.files: dict[int, dict[str, Any]] = {}  # run_id -> {"sig", "rows", "problem"}

    def frame(self) -> pl.DataFrame:
        df = _concat(self.frames)
        if not df.width:
            return pl.DataFrame({"run_id": pl.Series([], dtype=pl.Int64)})
        return df


def _read_metric_files(items: list[tuple[int, str, bool]], stats: Counter[str]) -> _Parsed:
    """Read ``(run_id, path, live)`` JSON-lines files into one frame with a ``run_id`` column.

    Fast path: the files of a batch are joined into one buffer and parsed once by
    Polars with a schema taken from each file's first and last rows, after
    checking (by counting ``"key":`` patterns) that no row holds another key.
    Anything unusual (other keys, mixed types, bad lines, blank lines) falls
    back to reading that file alone, line by line if need be. A half-written
    last line is left out (and reported unless the run is still running).
    """
    out = _Parsed()
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
                "problem": f"{os.path.basename(path)}: {_first_line(exc)}",
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
        if batch_bytes >= _BATCH_BYTES:
            parse(batch, keytypes)
            batch, batch_bytes, keytypes = [], 0, {}
    if batch:
        parse(batch, keytypes)
    wait()
    return out


def _read_batch(
    out: _Parsed,
    batch: list[tuple[int, bytes, int]],
    keytypes: dict[str, str | None],
    stats: Counter[str],
) -> None:
    buf = b"".join(data for _, data, _ in batch)
    counts = [n for _, _, n in batch]
    schema = {k: _PL_TYPES.get(t or "float", pl.Float64) for k, t in keytypes.items()}
    try:
        df = pl.read_ndjson(buf, schema=schema)
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
    out: _Parsed, run_id: int, data: bytes, record: dict[str, Any], stats: Counter[str]
) -> None:
    stats["metric_files_slow"] += 1
    df: pl.DataFrame | None = None
    try:
        df = pl.read_ndjson(data, infer_schema_length=None)
    except pl.exceptions.PolarsError:
        df = None
    if df is None:
        rows, bad, first_bad = _parse_lines(data)
        if bad:
            msg = f"{bad} invalid line(s) skipped, the first at line {first_bad}"
            record["problem"] = "; ".join(p for p in (record["problem"], msg) if p)
        df = _frame(rows)
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


def _summaries(name: str, df: pl.DataFrame) -> pl.DataFrame:
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


# -------------------------------------------------------------------- store
class _Store:
    """What one read of a logs directory knows: the run table, and the metric caches."""

    def __init__(self, logs: Path, refresh: bool, write: bool) -> None:
        wait_for_index()  # this process's pending cache writes first
        self.logs = logs
        self.index = logs / INDEX_DIR
        self.write = write
        self.stats: Counter[str] = Counter()
        self.now = time.time()
        self.meta = self._load_meta(refresh)
        self.meta_problems = self._meta_problems()
        self._chunks: dict[str, list[_Chunk]] = {}
        self._names: dict[int, list[str]] = {}
        self._manifests: dict[Path, tuple[str, dict[str, Any]]] = {}

    # ------------------------------------------------------------ run table
    def _read_index(self) -> pl.DataFrame | None:
        path = self.index / "runs.parquet"
        if not path.exists():
            return None
        try:
            meta = pl.read_parquet_metadata(path)
            if meta.get("runlab-index") != INDEX_VERSION:
                return None
            df = pl.read_parquet(path)
        except Exception:  # a damaged or foreign index is only a cache: rebuild it
            return None
        if "run_id" not in df.columns or "_sig" not in df.columns:
            return None
        return df

    def _load_meta(self, refresh: bool) -> pl.DataFrame:
        old = self._read_index()
        if old is not None and not refresh:
            self.stats["meta_reused"] += old.height
            return self._with_status(old)
        ids: list[int] = []
        with os.scandir(self.logs) as it:
            for entry in it:
                if entry.name.isdigit() and entry.is_dir():
                    ids.append(int(entry.name))
        ids.sort()
        sigs = []
        root = str(self.logs)
        for rid in ids:
            meta = f"{root}/{rid}/metadata/"
            sigs.append(
                f"{_sig(meta + 'config.yaml')}|{_sig(meta + 'info.yaml')}|{_sig(meta + 'env.yaml')}"
            )
        known: dict[int, str] = {}
        if old is not None:
            known = dict(zip(old["run_id"].to_list(), old["_sig"].to_list(), strict=True))
        keep = [rid for rid, sig in zip(ids, sigs, strict=True) if known.get(rid) == sig]
        todo = [
            (rid, f"{root}/{rid}", sig)
            for rid, sig in zip(ids, sigs, strict=True)
            if known.get(rid) != sig
        ]
        self.stats["meta_reused"] += len(keep)
        self.stats["meta_parsed"] += len(todo)
        frames: list[pl.DataFrame] = []
        if old is not None and keep:
            frames.append(
                old.filter(pl.col("run_id").is_in(keep)) if len(keep) < old.height else old
            )
        if todo:
            frames.append(_frame(_read_metas(todo)))
        df = _concat(frames)
        if not df.width:
            df = pl.DataFrame(
                {"run_id": [], "_sig": [], "_hb": []},
                schema={"run_id": pl.Int64, "_sig": pl.String, "_hb": pl.Float64},
            )
        if todo:
            df = df.sort("run_id")
        df = self._order(df)
        changed = bool(todo) or old is None or len(keep) != old.height
        if (
            changed
            and self.write
            and _write_parquet(df, self.index / "runs.parquet", {"runlab-index": INDEX_VERSION})
        ):
            self.stats["index_writes"] += 1
        return self._with_status(df)

    @staticmethod
    def _order(df: pl.DataFrame) -> pl.DataFrame:
        cols = df.columns
        first = [c for c in ("run_id",) if c in cols]
        groups = [[c for c in cols if c.startswith(p + ".")] for p in _META]
        rest = [c for c in cols if c not in first and not any(c in g for g in groups)]
        rest = [c for c in rest if c != "problem"] + (["problem"] if "problem" in cols else [])
        order = first + [c for g in groups for c in g] + rest
        return df.select(order) if order != cols else df

    def _with_status(self, df: pl.DataFrame) -> pl.DataFrame:
        """Mark RUNNING runs whose heartbeat stopped as LOST (relative to now)."""
        if "info.status" not in df.columns:
            return df.with_columns(pl.lit(None, dtype=pl.String).alias("info.status"))
        if "info.heartbeat_interval_s" in df.columns:
            interval = pl.col("info.heartbeat_interval_s").cast(pl.Float64, strict=False)
        else:
            interval = pl.lit(None, dtype=pl.Float64)
        limit = pl.max_horizontal(pl.lit(LOST_AFTER_S), 4 * interval.fill_null(15.0))
        lost = (pl.col("info.status") == LIVE) & ((self.now - pl.col("_hb")) > limit)
        return df.with_columns(
            pl.when(lost.fill_null(False))
            .then(pl.lit("LOST"))
            .otherwise(pl.col("info.status").cast(pl.String))
            .alias("info.status")
        )

    def _meta_problems(self) -> list[tuple[str, str]]:
        if "problem" not in self.meta.columns:
            return []
        bad = self.meta.filter(pl.col("problem").is_not_null()).select("run_id", "problem")
        return [(str(self.logs / str(r)), p) for r, p in bad.iter_rows()]

    # -------------------------------------------------------------- metrics
    def names(self, run_ids: Iterable[int]) -> list[str]:
        """Names of the metric files (``metrics/<name>.jsonl``) of these runs."""
        seen: dict[str, None] = {}
        for rid in run_ids:
            names = self._names.get(rid)
            if names is None:
                try:
                    with os.scandir(self.logs / str(rid) / "metrics") as it:
                        names = sorted(e.name[:-6] for e in it if e.name.endswith(".jsonl"))
                except OSError:
                    names = []
                self._names[rid] = names
            for n in names:
                seen[n] = None
        return sorted(seen)

    def _block_path(self, name: str, block: int) -> Path:
        return self.index / "metrics" / name / f"{block:06d}.parquet"

    def _manifest(self, path: Path) -> dict[str, Any]:
        sig = _sig(path)
        if sig == "-":
            return {}
        cached = self._manifests.get(path)
        if cached is not None and cached[0] == sig:
            return cached[1]
        try:
            meta = pl.read_parquet_metadata(path)
            manifest = json.loads(meta["runlab-index"])
            if manifest.get("version") != INDEX_VERSION:
                manifest = {}
        except Exception:
            manifest = {}
        self._manifests[path] = (sig, manifest)
        return manifest

    def load(self, name: str, run_ids: Sequence[int], live: set[int]) -> _Loaded:
        """The rows of ``metrics/<name>.jsonl`` of ``run_ids``, as they are on disk now.

        Each file's rows come from this read's memory, else from the Parquet cache
        when the file is unchanged (same size and mtime), else from the file itself;
        files read are then written to the cache in the background (except those of
        running runs, which change all the time).
        """
        root = str(self.logs)
        remaining: dict[int, str] = {}
        for rid in run_ids:
            sig = _sig(f"{root}/{rid}/metrics/{name}.jsonl")
            if sig != "-":
                remaining[rid] = sig
        out = _Loaded(name, self.logs)
        for chunk in self._chunks.get(name, []):
            hit = [r for r, sig in remaining.items() if chunk.files.get(r, {}).get("sig") == sig]
            if hit:
                out.add_chunk(chunk, hit)
                for r in hit:
                    del remaining[r]
        blocks: dict[int, list[int]] = {}
        for rid in remaining:
            blocks.setdefault(rid // BLOCK, []).append(rid)
        manifests: dict[int, dict[str, Any]] = {}
        for block, rids in blocks.items():
            path = self._block_path(name, block)
            manifest = manifests[block] = self._manifest(path)
            entries = manifest.get("runs", {})
            fresh = []
            for rid in rids:
                entry = entries.get(str(rid))
                if entry is not None and entry.get("sig") == remaining[rid]:
                    fresh.append(rid)
                    out.add_entry(rid, entry)
            if fresh:
                self.stats["metric_files_cached"] += len(fresh)
                out.lazies.append(pl.scan_parquet(path).filter(pl.col("run_id").is_in(fresh)))
                for r in fresh:
                    del remaining[r]
        if remaining:
            items = [(r, f"{root}/{r}/metrics/{name}.jsonl", r in live) for r in remaining]
            chunk = _Chunk(name, _read_metric_files(items, self.stats))
            self._chunks.setdefault(name, []).append(chunk)
            out.add_chunk(chunk, list(remaining))
            if self.write:
                settled = [r for r in remaining if r not in live and chunk.files[r]["sig"]]
                if settled:
                    _background(self._update_blocks, name, chunk, settled, manifests)
        return out

    def _update_blocks(
        self, name: str, chunk: _Chunk, settled: list[int], manifests: dict[int, dict[str, Any]]
    ) -> None:
        """Rewrite the cache blocks holding the ``settled`` runs of ``chunk``."""
        by_block: dict[int, list[int]] = {}
        for rid in settled:
            by_block.setdefault(rid // BLOCK, []).append(rid)
        summary = chunk.summary()
        summ = {r["run_id"]: r for r in summary.iter_rows(named=True)} if summary.height else {}
        rows = chunk.rows
        if rows.height and len(settled) < len(chunk.files):
            rows = rows.filter(pl.col("run_id").is_in(settled))
        parts_new: dict[int, pl.DataFrame] = {}
        if rows.height:
            if len(by_block) == 1:
                parts_new = {next(iter(by_block)): rows}
            else:
                split = rows.with_columns((pl.col("run_id") // BLOCK).alias("_block"))
                for key, part in split.partition_by(
                    "_block", as_dict=True, include_key=False
                ).items():
                    parts_new[int(key[0])] = part
        for block, rids in by_block.items():
            path = self._block_path(name, block)
            entries: dict[str, Any] = dict((manifests.get(block) or {}).get("runs", {}))
            replaced = {str(r) for r in rids}
            keep = [int(r) for r in entries if r not in replaced]
            parts: list[pl.DataFrame] = []
            if keep:
                try:
                    old = pl.read_parquet(path).filter(pl.col("run_id").is_in(keep))
                    present = set(old["run_id"].unique().to_list())
                except Exception:
                    old, present, keep = None, set(), []
                # An entry whose rows are not in the file (a concurrent rewrite) is dropped.
                keep = [r for r in keep if r in present or not entries[str(r)].get("rows")]
                if old is not None and old.height:
                    parts.append(old)
            entries = {str(r): entries[str(r)] for r in keep}
            if block in parts_new:
                parts.append(parts_new[block])
            for rid in rids:
                rec = chunk.files[rid]
                entries[str(rid)] = {
                    "sig": rec["sig"],
                    "rows": rec["rows"],
                    "inc": rec["inc"],
                    "problem": rec["problem"],
                    "summary": {k: v for k, v in summ.get(rid, {}).items() if k != "run_id"},
                }
            df = _concat(parts)
            if not df.width:
                df = pl.DataFrame({"run_id": pl.Series([], dtype=pl.Int64)})
            manifest = orjson.dumps({"version": INDEX_VERSION, "runs": entries}, default=str)
            if _write_parquet(df, path, {"runlab-index": manifest.decode()}):
                self.stats["index_writes"] += 1


_PENDING: list[threading.Thread] = []
_PENDING_LOCK = threading.Lock()


def _background(fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` (a cache write) in a thread that the interpreter waits for at exit."""

    def run() -> None:
        try:
            fn(*args)
        except Exception:  # a cache that cannot be written is only a slower next read
            pass

    thread = threading.Thread(target=run, name="runlab-index-writer")
    with _PENDING_LOCK:
        _PENDING[:] = [t for t in _PENDING if t.is_alive()]
        _PENDING.append(thread)
    thread.start()


def wait_for_index() -> None:
    """Wait until the index writes started by this process are on disk."""
    with _PENDING_LOCK:
        pending = list(_PENDING)
    for thread in pending:
        thread.join()


class _Chunk:
    """Metric rows read from files by one ``load``, kept for the life of the read."""

    def __init__(self, name: str, parsed: _Parsed) -> None:
        self.name = name
        self.rows = parsed.frame()
        self.files = parsed.files
        self._summary: pl.DataFrame | None = None
        self._lock = threading.Lock()

    def summary(self) -> pl.DataFrame:
        with self._lock:
            if self._summary is None:
                self._summary = (
                    _summaries(self.name, self.rows)
                    if self.rows.height
                    else pl.DataFrame({"run_id": pl.Series([], dtype=pl.Int64)})
                )
            return self._summary


class _Loaded:
    """The metric rows of some runs: lazy frames, summaries, problems, runs to deduplicate."""

    def __init__(self, name: str, logs: Path) -> None:
        self.name = name
        self.logs = logs
        self.lazies: list[pl.LazyFrame] = []
        self.entries: list[dict[str, Any]] = []
        self.chunks: list[tuple[_Chunk, list[int]]] = []
        self.problems: list[tuple[str, str]] = []
        self.dedupe: set[int] = set()

    def _note(self, rid: int, record: Mapping[str, Any]) -> None:
        if record.get("problem"):
            self.problems.append((f"{self.logs}/{rid}/metrics", record["problem"]))
        if record.get("inc") is False:
            self.dedupe.add(rid)

    def add_entry(self, rid: int, entry: Mapping[str, Any]) -> None:
        self.entries.append({"run_id": rid, **entry.get("summary", {})})
        self._note(rid, entry)

    def add_chunk(self, chunk: _Chunk, rids: list[int]) -> None:
        self.chunks.append((chunk, rids))
        if chunk.rows.height:
            whole = len(rids) == len(chunk.files)
            rows = chunk.rows if whole else chunk.rows.filter(pl.col("run_id").is_in(rids))
            self.lazies.append(rows.lazy())
        for rid in rids:
            self._note(rid, chunk.files[rid])

    def frame(self) -> pl.LazyFrame:
        if not self.lazies:
            return pl.DataFrame({"run_id": pl.Series([], dtype=pl.Int64)}).lazy()
        if len(self.lazies) == 1:
            return self.lazies[0]
        return pl.concat(self.lazies, how="diagonal_relaxed")

    def summary(self) -> pl.DataFrame:
        parts = [_frame(self.entries)] if self.entries else []
        for chunk, rids in self.chunks:
            summ = chunk.summary()
            if summ.height:
                whole = len(rids) == len(chunk.files)
                parts.append(summ if whole else summ.filter(pl.col("run_id").is_in(rids)))
        if not parts:
            return pl.DataFrame({"run_id": pl.Series([], dtype=pl.Int64)})
        return _concat(parts)


# ------------------------------------------------------------------- reader
def _warn(problems: list[tuple[str, str]], what: str) -> None:
    if not problems:
        return
    lines = [f"  {path}: {msg}" for path, msg in problems[:50]]
    if len(problems) > 50:
        lines.append(f"  ... and {len(problems) - 50} more (see Reader.problems)")
    warnings.warn(
        f"{len(problems)} {what} could not be read fully:\n" + "\n".join(lines),
        CorruptRunWarning,
        stacklevel=3,
    )


class Reader:
    """The runs of a logs directory as a Polars table; immutable, each ``filter`` a new one.

    ``Reader(logs)`` reads (and refreshes) the index at once; metric files are
    read only when their rows or summaries are asked for, and only those of the
    selected runs. ``refresh=False`` trusts an existing index without looking at
    the run directories; ``write_index=False`` never writes into ``logs``.
    """

    def __init__(
        self,
        logs: str | os.PathLike[str] | None = None,
        *,
        refresh: bool = True,
        write_index: bool = True,
    ) -> None:
        if logs is None:
            from runlab.rundir import default_logs

            logs = default_logs()
        path = Path(logs).expanduser().absolute()
        if not path.is_dir():
            raise FileNotFoundError(f"no logs directory at {path}")
        store = _Store(path, refresh=refresh, write=write_index)
        _warn(store.meta_problems, "runs")
        self._store = store
        self._table = store.meta
        self._metric_problems: list[tuple[str, str]] = []

    @classmethod
    def _derive(cls, parent: Reader, table: pl.DataFrame) -> Reader:
        new = cls.__new__(cls)
        new._store = parent._store
        new._table = table
        new._metric_problems = []
        return new

    # ------------------------------------------------------------- basics
    @property
    def logs(self) -> Path:
        return self._store.logs

    @property
    def run_ids(self) -> list[int]:
        return self._table["run_id"].to_list()

    def __len__(self) -> int:
        return self._table.height

    def __repr__(self) -> str:
        return f"Reader({str(self.logs)!r}, {len(self)} runs)"

    def path(self, run_id: int) -> Path:
        """The run directory of ``run_id``."""
        return self.logs / str(int(run_id))

    @property
    def stats(self) -> dict[str, int]:
        """What this read did: runs parsed or reused, metric files parsed or cached, writes."""
        return dict(self._store.stats)

    @property
    def problems(self) -> list[tuple[str, str]]:
        """``(path, message)`` for every run or metric file that could not be read fully."""
        return [*self._store.meta_problems, *self._metric_problems]

    # ------------------------------------------------------- summary columns
    def _live(self) -> set[int]:
        t = self._table
        return set(t.filter(pl.col("info.status") == LIVE)["run_id"].to_list())

    def _load(self, name: str) -> _Loaded:
        loaded = self._store.load(name, self.run_ids, self._live())
        self._note(loaded.problems, "metric files")
        return loaded

    def _summary(self, name: str) -> pl.DataFrame:
        return self._load(name).summary()

    def _note(self, problems: list[tuple[str, str]], what: str) -> None:
        fresh = [p for p in problems if p not in self._metric_problems]
        self._metric_problems.extend(fresh)
        _warn(fresh, what)

    def _with_summaries(self, names: Iterable[str] | None = None) -> pl.DataFrame:
        table = self._table
        wanted = self._store.names(self.run_ids) if names is None else list(names)
        for name in wanted:
            summary = self._summary(name)
            if summary.width > 1:
                drop = [c for c in summary.columns if c.startswith("_")]
                table = table.join(summary.drop(drop), on="run_id", how="left")
        return table

    def _resolve_table(self, keys: Iterable[str]) -> pl.DataFrame:
        """The run table with the summary columns that ``keys`` name (if any) joined in."""
        missing = [k for k in keys if k not in self._table.columns]
        if not missing:
            return self._table
        names = self._store.names(self.run_ids)
        wanted = {n for k in missing for n in names if k.startswith(n + ".")}
        return self._with_summaries(sorted(wanted)) if wanted else self._table

    # ------------------------------------------------------------- tables
    @property
    def df(self) -> pl.DataFrame:
        """One row per selected run: config, info, env columns and metric summaries."""
        return self._public(self._with_summaries())

    def collect(self) -> pl.DataFrame:
        """Same as :attr:`df`."""
        return self.df

    def lazy(self) -> pl.LazyFrame:
        return self.df.lazy()

    @staticmethod
    def _public(df: pl.DataFrame) -> pl.DataFrame:
        return df.drop([c for c in df.columns if c.startswith("_")])

    def to_pandas(self) -> Any:
        """The run table as a pandas DataFrame."""
        return to_pandas(self.df)

    @property
    def searchable(self) -> pl.DataFrame:
        """Every column a query or ``group_by`` may name, with its type."""
        df = self.df
        return pl.DataFrame({"key": df.columns, "type": [str(t) for t in df.dtypes]}).sort("key")

    @property
    def columns(self) -> list[str]:
        """The run-table columns known without reading metric files (no summaries)."""
        return self._public(self._table).columns

    def select(self, *columns: str) -> pl.DataFrame:
        """These columns of the run table; metric files are read only for the summaries named."""
        flat = [c for col in columns for c in ([col] if isinstance(col, str) else col)]
        table = self._resolve_table(flat)
        self._check_keys(flat, table)
        return table.select(flat)

    # ------------------------------------------------------------- filter
    def filter(self, query: str | pl.Expr) -> Reader:
        """The runs matching ``query`` (the MLXP grammar, see :mod:`runlab.query`, or a
        Polars expression) as a new Reader."""
        if isinstance(query, pl.Expr):
            names = query.meta.root_names()
            table = self._resolve_table(names)
            self._check_keys(names, table)
            expr = query
        else:
            node: Node = parse(query)
            names = [k.name for k in keys_of(node)]
            table = self._resolve_table(names)
            expr = compile_query(node, self._public(table).schema, source=query)
        try:
            ids = table.filter(expr)["run_id"]
        except pl.exceptions.PolarsError as exc:
            raise QueryError(
                f"the query failed: {_first_line(exc)}", str(query), 0, len(str(query))
            ) from exc
        return Reader._derive(self, self._table.filter(pl.col("run_id").is_in(ids.to_list())))

    def _check_keys(self, keys: Iterable[str], table: pl.DataFrame | None = None) -> None:
        table = self._table if table is None else table
        for key in keys:
            if key not in table.columns:
                known = self._public(table).columns
                raise QueryError(f"unknown key {key!r}", key, 0, len(key), suggest(key, known))

    # ------------------------------------------------------------ metrics
    def metrics(self, name: str, join: Sequence[str] = ()) -> pl.LazyFrame:
        """The rows of ``metrics/<name>.jsonl`` of the selected runs, with a ``run_id``
        column (and the run-table columns named in ``join``), as a LazyFrame."""
        lf = self._load(name).frame()
        if join:
            table = self._resolve_table(join)
            self._check_keys(join, table)
            lf = lf.join(table.select("run_id", *join).lazy(), on="run_id", how="left")
        return lf

    def _split_metric(self, metric: str) -> tuple[str, str]:
        """``"train.loss"`` -> ``("train", "loss")``: the longest prefix naming a metrics file."""
        parts = metric.split(".")
        root = str(self.logs)
        for i in range(len(parts) - 1, 0, -1):
            name = ".".join(parts[:i])
            for rid in self.run_ids:
                if os.path.exists(f"{root}/{rid}/metrics/{name}.jsonl"):
                    return name, metric[len(name) + 1 :]
        names = self._store.names(self.run_ids)
        head, _, key = metric.partition(".")
        known = [f"{n}.<key>" for n in names]
        if not key:
            raise QueryError(
                f"name a metric as <file>.<key>, e.g. {names[0] if names else 'train'}.loss",
                metric,
                0,
                len(metric),
            )
        raise QueryError(
            f"no metrics/{head}.jsonl in the selected runs",
            metric,
            0,
            len(head),
            suggest(f"{head}.<key>", known),
        )

    def group_by(self, *keys: str) -> Grouped:
        """Group the selected runs by run-table columns (e.g. ``config.method``)."""
        flat: list[str] = []
        for k in keys:
            flat.extend([k] if isinstance(k, str) else list(k))
        table = self._resolve_table(flat)
        self._check_keys(flat, table)
        return Grouped(self, flat)

    def curves(self, metric: str, x: str = "step", ddof: int = 1) -> pl.DataFrame:
        """Mean, std, min, max and count of ``metric`` over all selected runs, per ``x``."""
        return Grouped(self, []).curves(metric, x=x, ddof=ddof)

    def final(self, metric: str, ddof: int = 1) -> pl.DataFrame:
        """Mean, std, min, max and count of each run's last value of ``metric``."""
        return Grouped(self, []).final(metric, ddof=ddof)


def _stats(col: str, ddof: int) -> list[pl.Expr]:
    c = pl.col(col)
    return [
        c.mean().alias("mean"),
        c.std(ddof=ddof).alias("std"),
        c.min().alias("min"),
        c.max().alias("max"),
        c.count().cast(pl.Int64).alias("count"),
    ]


class Grouped:
    """Runs grouped by run-table columns; aggregates over the runs of each group (seeds)."""

    def __init__(self, reader: Reader, keys: list[str]) -> None:
        self.reader = reader
        self.keys = keys

    def __repr__(self) -> str:
        return f"Grouped({self.reader!r}, by={self.keys})"

    def _keys_table(self) -> pl.DataFrame:
        table = self.reader._resolve_table(self.keys)
        return table.select("run_id", *self.keys)

    def groups(self) -> pl.DataFrame:
        """Each group's key values and number of runs."""
        t = self._keys_table()
        if not self.keys:
            return pl.DataFrame({"runs": [t.height]})
        return t.group_by(self.keys).agg(pl.len().alias("runs")).sort(self.keys, nulls_last=True)

    def curves(self, metric: str, x: str = "step", ddof: int = 1) -> pl.DataFrame:
        """Per group and per ``x``: ``mean``, ``std`` (``ddof`` 1: over seeds), ``min``,
        ``max`` of ``metric`` (``<file>.<key>``, e.g. ``train.loss``), and ``count``, the
        number of runs that logged it at that ``x``. A run that logged it twice at
        one ``x`` counts once, with its last value."""
        name, key = self.reader._split_metric(metric)
        reader = self.reader
        loaded = reader._load(name)
        lf = loaded.frame()
        schema = lf.collect_schema()
        for col in (key, x):
            if col not in schema:
                raise QueryError(
                    f"no key {col!r} in metrics/{name}.jsonl",
                    f"{name}.{col}",
                    len(name) + 1,
                    len(name) + 1 + len(col),
                    suggest(f"{name}.{col}", [f"{name}.{c}" for c in schema if c != "run_id"]),
                )
        rows = lf.select("run_id", x, key).filter(
            pl.col(key).is_not_null() & pl.col(x).is_not_null()
        )
        if x != "step":
            rows = rows.unique(subset=["run_id", x], keep="last")
        elif loaded.dedupe:  # runs that logged a step twice: keep its last row
            dup = pl.col("run_id").is_in(sorted(loaded.dedupe))
            rows = pl.concat(
                [rows.filter(~dup), rows.filter(dup).unique(subset=["run_id", x], keep="last")]
            )
        keys = self._keys_table()
        # Aggregate by a small integer group id, then attach the key values (faster
        # than grouping by several string and float columns).
        groups = keys.select(self.keys).unique().with_row_index("_g") if self.keys else None
        if groups is not None:
            ids = keys.join(groups, on=self.keys, how="inner", nulls_equal=True)
            ids = ids.select("run_id", "_g")
        else:
            ids = keys.select("run_id", pl.lit(0, dtype=pl.UInt32).alias("_g"))
        out = (
            rows.join(ids.lazy(), on="run_id", how="inner")
            .group_by("_g", x)
            .agg(_stats(key, ddof))
            .collect()
        )
        if groups is not None:
            out = out.join(groups, on="_g", how="left")
        return out.select(*self.keys, x, "mean", "std", "min", "max", "count").sort(
            [*self.keys, x], nulls_last=True
        )

    def final(self, metric: str, ddof: int = 1) -> pl.DataFrame:
        """Per group: ``mean``, ``std``, ``min``, ``max`` and ``count`` of each run's last
        (non-null) value of ``metric``; runs that never logged it are left out."""
        name, key = self.reader._split_metric(metric)
        summary = self.reader._summary(name)
        col = f"{name}.{key}.last"
        if col not in summary.columns:
            known = [c[: -len(".last")] for c in summary.columns if c.endswith(".last")]
            raise QueryError(
                f"no key {key!r} in metrics/{name}.jsonl",
                metric,
                len(name) + 1,
                len(metric),
                suggest(metric, known),
            )
        values = summary.select("run_id", col).filter(pl.col(col).is_not_null())
        joined = values.join(self._keys_table(), on="run_id", how="inner")
        if not self.keys:
            return joined.select(_stats(col, ddof))
        return joined.group_by(self.keys).agg(_stats(col, ddof)).sort(self.keys, nulls_last=True)


def to_pandas(df: pl.DataFrame) -> Any:
    """``df.to_pandas()``, without needing pyarrow."""
    try:
        return df.to_pandas()
    except ModuleNotFoundError:
        import pandas as pd

        return pd.DataFrame(
            {
                c: (s.to_numpy() if s.dtype.is_numeric() else s.to_list())
                for c, s in zip(df.columns, df.get_columns(), strict=True)
            },
            columns=df.columns,
        )
