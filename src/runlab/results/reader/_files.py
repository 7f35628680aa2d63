"""Parse the files of run directories: which folders are runs, and their metadata.

Each metadata record (``config``, ``info``, ``env``) is read from its JSON twin
(``metadata/<name>.json``, written by runlab next to the YAML for people). Only
when the twin is absent (runs made by hand or by older versions) is the YAML
parsed, with bounded cost: files over 1 MiB and documents with anchors or
aliases are refused, and the run is marked with the reason. So is a record
nested deeper than ``MAX_DEPTH`` levels (JSON allows 1,024, more than Python's
own recursion can walk). Integers beyond 64 bits are kept as their digits (text).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import orjson
import yaml

from runlab.errors import UserError
from runlab.logs import is_run_id
from runlab.results.reader._columns import plain
from runlab.status import Status

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader

RECORDS = ("config", "info", "env")
_SCALARS = frozenset((str, int, float, bool, type(None)))
ENV_SKIP = ("packages", "conda_packages")
MAX_JSON = 16 << 20
MAX_YAML = 1 << 20
MAX_DEPTH = 128  # levels of nesting in a metadata record (and a metric row)
_INT64 = range(-(2**63), 2**63)


class Refused(UserError, ValueError):
    """A metadata file that is not read (too large, aliases, not a mapping, ...)."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def scan(logs: str) -> tuple[list[int], list[str]]:
    """The run ids under ``logs`` (sorted), and the other visible folders (ignored)."""
    ids: list[int] = []
    other: list[str] = []
    with os.scandir(logs) as it:
        for entry in it:
            name = entry.name
            if is_run_id(name):
                if entry.is_dir():
                    ids.append(int(name))
            elif not name.startswith(".") and entry.is_dir():
                other.append(name)
    ids.sort()
    return ids, sorted(other)


def stat_sig(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}.{st.st_mtime_ns}"


def run_sig(run: str) -> str:
    """What the metadata of a run looks like on disk: the size and mtime of each
    record's JSON twin, or of its YAML where the twin is absent."""
    parts = []
    for name in RECORDS:
        sig = stat_sig(f"{run}/metadata/{name}.json")
        parts.append(f"j{sig}" if sig else f"y{stat_sig(f'{run}/metadata/{name}.yaml') or '-'}")
    return "|".join(parts)


def _read(path: str, limit: int) -> bytes:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise Refused(f"{size} bytes, over the {limit >> 20} MiB limit: not read")
        # Not read(limit): that would allocate the whole limit for every small file.
        data = fh.read(min(size, limit) + 65536)
        if len(data) > limit:
            raise Refused(f"over the {limit >> 20} MiB limit: not read")
        return data


def safe_yaml(raw: bytes) -> Any:
    """Parse YAML with bounded cost: anchors and aliases (the way to a "billion laughs"
    bomb) are refused before anything is built."""
    if len(raw) > MAX_YAML:
        raise Refused(f"{len(raw)} bytes, over the {MAX_YAML >> 20} MiB limit: not read")
    if b"&" in raw or b"*" in raw:  # only then can there be an anchor or an alias
        for token in yaml.scan(raw, Loader=_Loader):
            if isinstance(token, (yaml.AliasToken, yaml.AnchorToken)):
                raise Refused("YAML anchors and aliases are not read")
    return yaml.load(raw, Loader=_Loader)


def _parse_json(raw: bytes, file: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(f"{file}: invalid JSON ({first_line(exc)})") from None


def _parse_yaml(raw: bytes, file: str) -> Any:
    try:
        return safe_yaml(raw)
    except Refused as exc:
        raise Refused(f"{file}: {exc}") from None
    except yaml.YAMLError as exc:
        raise Refused(f"{file}: invalid YAML ({first_line(exc)})") from None
    except (ValueError, TypeError, RecursionError, OverflowError, MemoryError) as exc:
        raise Refused(f"{file}: {first_line(exc)}") from None


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists and mappings more than ``limit`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, (Mapping, list, tuple))
        )
    return False


def _checked(data: Any, raw: bytes, file: str, skip: Sequence[str]) -> Mapping[str, Any]:
    if data is None or not raw.strip():
        raise Refused(f"{file}: empty")
    if not isinstance(data, Mapping):
        raise Refused(f"{file}: not a mapping")
    # Only a text with that many brackets can nest that deep (YAML nests by indent too).
    if (raw.count(b"{") + raw.count(b"[") > MAX_DEPTH or file.endswith(".yaml")) and too_deep(data):
        raise Refused(f"{file}: nested deeper than {MAX_DEPTH} levels: not read")
    if skip:
        data = {k: v for k, v in data.items() if k not in skip}
    checked: Mapping[str, Any] = data
    return checked


def load_record(
    run: str, name: str, skip: Sequence[str] = (), raw_json: bytes | None = None
) -> tuple[Mapping[str, Any], str]:
    """The mapping of ``metadata/<name>`` (JSON twin, else YAML) and the file read.

    Raises :class:`FileNotFoundError` when neither exists and :class:`Refused`
    (naming the file) when it cannot be read.
    """
    base = f"{run}/metadata/{name}"
    file = f"metadata/{name}.json"
    try:
        raw = raw_json if raw_json is not None else _read(f"{base}.json", MAX_JSON)
        return _checked(_parse_json(raw, file), raw, file, skip), file
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise Refused(f"{file}: {first_line(exc)}") from None
    except Refused as exc:
        if str(exc).startswith("metadata/"):
            raise
        raise Refused(f"{file}: {exc}") from None
    file = f"metadata/{name}.yaml"
    try:
        raw = _read(f"{base}.yaml", MAX_YAML)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise Refused(f"{file}: {first_line(exc)}") from None
    except Refused as exc:
        raise Refused(f"{file}: {exc}") from None
    return _checked(_parse_yaml(raw, file), raw, file, skip), file


def load_yaml_file(path: str, file: str) -> Any:
    """A YAML document of any type (e.g. ``overrides.yaml``, a list), parsed with
    bounded cost. Raises :class:`FileNotFoundError`, or :class:`Refused` naming
    ``file``."""
    try:
        raw = _read(path, MAX_YAML)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise Refused(f"{file}: {first_line(exc)}") from None
    except Refused as exc:
        raise Refused(f"{file}: {exc}") from None
    return _parse_yaml(raw, file)


def flatten(prefix: str, obj: Mapping[Any, Any], out: dict[str, Any]) -> list[str]:
    """Add ``obj``'s values to ``out`` as ``<prefix>.<key>.<key>...`` columns; the clashes.

    Keys that name the same column (``a.b: 1`` beside ``a: {b: 2}``, or the keys
    ``1`` and ``"1"``) keep one value, whatever their order in the file: the key
    path with the most levels (the nested one, as OmegaConf reads a dotted key),
    then the smallest. Each clash is returned as a line naming the column and both
    keys, for the run's ``problem``.
    """
    seen: dict[str, tuple[Any, ...]] = {}
    clashes: list[str] = []
    _flatten(prefix, obj, out, 0, (), seen, clashes)
    return clashes


def _rank(path: tuple[Any, ...]) -> tuple[int, list[tuple[str, str]]]:
    return -len(path), [(str(k), type(k).__name__) for k in path]


def _put(
    name: str,
    value: Any,
    out: dict[str, Any],
    path: tuple[Any, ...],
    seen: dict[str, tuple[Any, ...]],
    clashes: list[str],
) -> None:
    other = seen.get(name)
    if other is None:
        seen[name] = path
        out[name] = value
        return
    keep, drop = (path, other) if _rank(path) < _rank(other) else (other, path)

    def show(p: tuple[Any, ...]) -> str:
        return " > ".join(repr(k) for k in p)

    clashes.append(
        f"keys {show(drop)} and {show(keep)} both flatten to column {name}: "
        f"kept the value of {show(keep)} (rename one of them)"
    )
    if keep is path:
        seen[name] = path
        out[name] = value


def _flatten(
    prefix: str,
    obj: Mapping[Any, Any],
    out: dict[str, Any],
    depth: int,
    path: tuple[Any, ...],
    seen: dict[str, tuple[Any, ...]],
    clashes: list[str],
) -> None:
    for key, value in obj.items():
        name = f"{prefix}.{key}"
        at = (*path, key)
        t = type(value)
        if t in _SCALARS:
            # beyond 64 bits: text (no column type holds it; see _columns.resolve)
            value = value if t is not int or value in _INT64 else str(value)
        elif (t is dict or isinstance(value, Mapping)) and depth < 64:
            if value:
                _flatten(name, value, out, depth + 1, at, seen, clashes)
                continue
            value = None
        elif t is list and all(type(v) in _SCALARS for v in value):
            pass
        elif isinstance(value, (datetime, date, list, tuple, Mapping)):
            value = plain(value)
        _put(name, value, out, at, seen, clashes)


def iso_epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


class MetaReader:
    """Reads the metadata of runs into flat rows; ``env`` parsed once per distinct file."""

    def __init__(self) -> None:
        self._envs: dict[bytes, dict[str, Any] | str | None] = {}

    def _env(self, run: str) -> dict[str, Any] | str | None:
        try:
            raw = _read(f"{run}/metadata/env.json", MAX_JSON)
        except FileNotFoundError:
            raw = None
        except (OSError, Refused) as exc:
            return f"metadata/env.json: {exc if isinstance(exc, Refused) else first_line(exc)}"
        if raw is not None:
            cached = self._envs.get(raw)
            if cached is None:
                cached = self._envs[raw] = self._flat_env(run, raw)
            return cached
        return self._flat_env(run, None)

    @staticmethod
    def _flat_env(run: str, raw: bytes | None) -> dict[str, Any] | str | None:
        try:
            data, _ = load_record(run, "env", skip=ENV_SKIP, raw_json=raw)
        except FileNotFoundError:
            return None
        except Refused as exc:
            return str(exc)
        flat: dict[str, Any] = {}
        flatten("env", data, flat)
        return flat

    def read(self, run_id: int, run: str, sig: str) -> dict[str, Any]:
        row: dict[str, Any] = {"run_id": run_id, "_sig": sig, "_hb": None, "_config_ok": False}
        problems: list[str] = []
        docs: dict[str, Mapping[str, Any]] = {}
        files: dict[str, str] = {}
        for name in ("config", "info"):
            try:
                docs[name], files[name] = load_record(run, name)
            except FileNotFoundError:
                problems.append(f"missing metadata/{name}.yaml")
            except Refused as exc:
                problems.append(str(exc))
        if "config" in docs:
            problems.extend(
                f"{files['config']}: {c}" for c in flatten("config", docs["config"], row)
            )
            row["_config_ok"] = True
        info = docs.get("info")
        if info is not None:
            info_keys = {k: v for k, v in info.items() if k != "run_id"}
            problems.extend(f"{files['info']}: {c}" for c in flatten("info", info_keys, row))
            beat = info.get("heartbeat") or info.get("attempt_start_time") or info.get("start_time")
            row["_hb"] = iso_epoch(beat)
            if not isinstance(row.get("info.status"), str):
                row["info.status"] = Status.CORRUPT.value
                problems.append(f"{files['info']}: no status")
        else:
            row["info.status"] = Status.CORRUPT.value
        env = self._env(run)
        if isinstance(env, str):
            problems.append(env)
        elif env:
            row.update(env)
        row["problem"] = "; ".join(problems) if problems else None
        return row


def _read_chunk(args: tuple[list[tuple[int, str, str]]]) -> list[dict[str, Any]]:
    reader = MetaReader()
    return [reader.read(rid, p, sig) for rid, p, sig in args[0]]


def read_metas(todo: list[tuple[int, str, str]]) -> list[dict[str, Any]]:
    """Rows for ``(run_id, run dir, sig)``; over several processes when there are many."""
    workers = min(os.cpu_count() or 1, 4)
    if len(todo) < 3000 or workers < 2 or os.environ.get("RUNLAB_READER_PROCESSES") == "0":
        return _read_chunk((todo,))
    import multiprocessing as mp

    try:
        ctx = mp.get_context("fork")
    except ValueError:  # pragma: no cover - no fork on this platform
        return _read_chunk((todo,))
    step = -(-len(todo) // workers)
    chunks = [(todo[i : i + step],) for i in range(0, len(todo), step)]
    with ctx.Pool(len(chunks)) as pool:
        parts = pool.map(_read_chunk, chunks)
    return [row for part in parts for row in part]
