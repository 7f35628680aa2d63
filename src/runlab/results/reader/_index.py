"""The index: a cache of run tables and metric rows inside the logs directory.

Layout of ``<logs>/.runlab-index/`` (format 3)::

    runs.json                        pointer: {"format": 3, "file": "runs.<uid>.parquet",
                                               "sum": <digest of that file>,
                                               "mixed": [columns kept as JSON text]}
    runs.<uid>.parquet               the run table (with each run's file signatures)
    metrics/<name>/<block>.json      pointer: {"format": 3, "file": "<block>.<uid>.parquet",
                                               "sum": <digest of that file>,
                                               "runs": {run_id: {sig, rows, inc, problem,
                                                                 summary, meta}}}
    metrics/<name>/<block>.<uid>.parquet   the rows of those runs (256 runs per block)
    changed/<run_id>.<ns>.<pid>.<x>  made by runlab.logs.note_change when the run's end
                                     changed; read by ``refresh="changes"``, whose stamp
                                     runs.json keeps as "changes": {time, ino, dev, id}
    changed/.id                      a random token, made with the folder (its identity)

Data files are immutable: each is written once under a fresh unique name and
never changed. A pointer is small JSON replaced atomically (``os.replace``), so
a reader sees the old or the new one whole, and every file a pointer names is
complete. Readers read a data file whole, in one ``read`` of one open file, and
never go back to the path. A data file that no pointer names any more is
deleted by a later writer once ``GRACE_S`` has passed since it was retired (its
mtime is set when it is retired); a reader that finds a file gone just reads
the runs' own files. Nothing in the index is needed: delete it at any time.

A data file damaged on disk (a bad sector, a torn copy: Parquet pages overwritten
under an intact footer, which Polars reads as an error or, worse, as other
values) no longer matches the digest its pointer holds. It is then bypassed: the
read goes to the runs' own files, says so once in an :class:`IndexDamagedWarning`,
and writes a new generation in its place. Pointers of older formats are ignored
the same way (without a warning): the index is rebuilt.

Writing it is best-effort: a write that fails (a read-only or full file system,
no permission) is abandoned, and the read goes on without it. Its files get the
mode the run's own files get (``0o666`` less the umask).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from runlab.logs import CHANGED, changed_file
from runlab.logs import INDEX as INDEX_DIR
from runlab.record.files import write_atomic

FORMAT = 3
BLOCK = 256  # runs per metrics block
GRACE_S = 120.0  # how long a retired data file stays readable
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}\Z")
# A change is looked for from this long before the index's stamp: clocks of the hosts
# writing runs and the file server's may differ, and a slow read may still be writing.
CHANGE_MARGIN_S = 600.0
# A read that took longer than this (from its stamp to its index write) records no stamp:
# the change files it may need could be pruned meanwhile (they are kept for the margin).
MAX_READ_S = CHANGE_MARGIN_S / 2


class Stamp:
    """When a read began (the time, compared with the times in the names of the change
    files, made by the writers' clocks: the margin covers their differences), the change
    folder's identity (a folder deleted and made again has lost its files), and this
    process's monotonic time, to refuse recording a stamp older than ``MAX_READ_S``."""

    __slots__ = ("dev", "ino", "mono", "time", "token")

    def __init__(self, time_: float, ino: int, dev: int, mono: float, token: str) -> None:
        self.time, self.ino, self.dev, self.mono, self.token = time_, ino, dev, mono, token

    def fresh(self) -> bool:
        return time.monotonic() - self.mono < MAX_READ_S

    def fields(self) -> dict[str, Any]:
        return {"time": self.time, "ino": self.ino, "dev": self.dev, "id": self.token}


def _token(path: Path) -> str | None:
    """The random token in ``path``, written there first if the file is new; ``None``
    when it holds no token (damaged: the reader then checks every run)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        pass
    else:
        try:
            os.write(fd, uuid.uuid4().hex.encode())
        finally:
            os.close(fd)
    raw = _read_whole(path)
    text = raw.decode("ascii", "replace").strip() if raw else ""
    return text if len(text) == 32 else None  # a reader racing the writer: next time


def _remove(path: Path | str) -> None:
    """Delete ``path`` if it can be (on a read-only file system even that fails)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_atomic(dest: Path, data: bytes) -> bool:
    """Replace ``dest`` with ``data`` through the record's one atomic writer; ``False`` where
    it cannot be written (the index is a cache: the reader goes on without it)."""
    try:
        write_atomic(dest, data)
    except OSError:
        return False
    return True


def _read_whole(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _pointer(path: Path) -> dict[str, Any] | None:
    raw = _read_whole(path)
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data


class IndexDamagedWarning(UserWarning):
    """A file of the reader's index was damaged on disk: bypassed, and rebuilt."""


_WARNED: set[str] = set()


def _digest(data: bytes) -> str:
    """The digest a pointer holds of its data file (BLAKE2b: about 1 GB/s)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _damaged(path: Path) -> None:
    """Say once per process that the index file ``path`` was damaged and bypassed."""
    if str(path) in _WARNED:
        return
    _WARNED.add(str(path))
    warnings.warn(
        f"the reader's index file {path} is damaged (its bytes no longer match the "
        "digest recorded when it was written): the runs' own files were read instead, "
        "and the index is rebuilt",
        IndexDamagedWarning,
        stacklevel=2,
    )


def _checked(path: Path, pointer: Mapping[str, Any]) -> bytes | None:
    """The bytes of the data file ``path`` that ``pointer`` names, if they are those
    it was written with (else None, with a warning when they differ)."""
    raw = _read_whole(path)
    if raw is None:
        return None
    if _digest(raw) != pointer.get("sum"):
        _damaged(path)
        return None
    return raw


def _unique(slot: str) -> str:
    return f"{slot}.{uuid.uuid4().hex[:16]}.parquet"


def _write_data(folder: Path, slot: str, df: pl.DataFrame) -> tuple[str, str] | None:
    """Write ``df`` to a new immutable file in ``folder``; its name and digest, or None
    on failure."""
    name = _unique(slot)
    path = folder / name
    try:
        buf = io.BytesIO()
        df.write_parquet(buf, compression="lz4", statistics=False)
        data = buf.getvalue()
        folder.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as fh:
            fh.write(data)
        return name, _digest(data)
    except (OSError, pl.exceptions.PolarsError):
        _remove(path)
        return None


def _retire(folder: Path, slot: str, old: str | None, keep: str) -> None:
    """After a pointer moved from ``old`` to ``keep``: mark ``old`` retired now, and
    delete this slot's data and temporary files retired more than GRACE_S ago."""
    if old and old != keep:
        try:
            os.utime(folder / old)
        except OSError:
            pass
    limit = time.time() - GRACE_S
    prefixes = (f"{slot}.", f".{slot}.")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if name in (keep, old) or not name.startswith(prefixes):
            continue
        if not name.endswith((".parquet", ".tmp")):
            continue
        try:
            if entry.stat().st_mtime < limit:
                os.unlink(entry.path)
        except OSError:
            pass


class Index:
    """Reads and writes the index of one logs directory (see the module docstring)."""

    def __init__(self, logs: Path) -> None:
        self.root = logs / INDEX_DIR

    # ------------------------------------------------------------ run table
    def read_runs(self) -> tuple[pl.DataFrame, set[str], dict[str, Any]] | None:
        """The run table, its mixed columns and its pointer (``None`` where there is none
        that can be used)."""
        for _ in range(3):  # a data file retired between the two reads: look again
            pointer = _pointer(self.root / "runs.json")
            if pointer is None or not isinstance(pointer.get("file"), str):
                return None
            path = self.root / pointer["file"]
            if not path.exists():
                continue
            raw = _checked(path, pointer)
            if raw is None:
                return None
            try:
                df = pl.read_parquet(raw)
            except Exception:  # a damaged index is only a cache: rebuild it
                return None
            if "run_id" not in df.columns or "_sig" not in df.columns:
                return None
            return df, set(pointer.get("mixed") or []), pointer
        return None

    def write_runs(self, df: pl.DataFrame, mixed: set[str], since: Stamp | None = None) -> bool:
        """Write a new generation of the run table; whether it was written (never raises
        for the file system: see the module docstring). ``since``: the change folder's
        stamp taken before the runs were read (:meth:`stamp`), for ``refresh="changes"``."""
        try:
            return self._write_runs(df, mixed, since)
        except OSError:
            return False

    def _write_runs(self, df: pl.DataFrame, mixed: set[str], since: Stamp | None) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        written = _write_data(self.root, "runs", df)
        if written is None:
            return False
        name, digest = written
        old = _pointer(self.root / "runs.json")
        pointer: dict[str, Any] = {"format": FORMAT, "file": name, "sum": digest}
        pointer["mixed"] = sorted(mixed)
        if since is not None and since.fresh():
            pointer["changes"] = since.fields()
        if not _write_atomic(self.root / "runs.json", orjson.dumps(pointer)):
            _remove(self.root / name)
            return False
        _retire(self.root, "runs", (old or {}).get("file"), name)
        return True

    def advance(self, pointer: Mapping[str, Any], since: Stamp) -> bool:
        """Point the same run table at a newer change stamp (nothing in it changed)."""
        if not since.fresh():
            return False
        return _write_atomic(
            self.root / "runs.json", orjson.dumps({**pointer, "changes": since.fields()})
        )

    # ------------------------------------------------------------ changes
    def stamp(self) -> Stamp | None:
        """Make the change folder (``note_change`` makes a file there per change of a
        run's end) and take the time and the folder's identity: its inode and a random
        token in its ``.id`` file, made with it (an inode may be used again by a folder
        made anew). ``None`` where it cannot be made (the reader then checks every run)."""
        folder = self.root / CHANGED
        try:
            folder.mkdir(parents=True, exist_ok=True)
            token = _token(folder / ".id")
            st = os.stat(folder)
        except OSError:
            return None
        if token is None:
            return None
        return Stamp(time.time(), st.st_ino, st.st_dev, time.monotonic(), token)

    def changed(self, pointer: Mapping[str, Any], now: Stamp, prune: bool) -> set[int] | None:
        """The runs whose end changed since the index was built (``pointer``'s stamp, less
        :data:`CHANGE_MARGIN_S`), or ``None`` when that cannot be known: no stamp, a
        stamp from the future, or a change folder made again since (the files of the
        runs changed between are lost). With ``prune``, files older than both stamps by
        the margin are deleted: every index written from now on was read after them."""
        held = pointer.get("changes")
        if not isinstance(held, dict) or [held.get(k) for k in ("ino", "dev", "id")] != [
            now.ino, now.dev, now.token,
        ]:  # fmt: skip
            return None
        since = held.get("time")
        if not isinstance(since, (int, float)) or not since <= now.time + CHANGE_MARGIN_S:
            return None  # not a time this reader's clock could have taken
        out: set[int] = set()
        recent = float(since) - CHANGE_MARGIN_S
        old = min(float(since), now.time) - CHANGE_MARGIN_S
        try:
            with os.scandir(self.root / CHANGED) as it:
                for entry in it:
                    made = changed_file(entry.name)
                    if made is None:
                        continue
                    if made[1] >= recent:
                        out.add(made[0])
                    elif prune and made[1] < old:
                        _remove(entry.path)
        except OSError:
            return None
        return out

    # -------------------------------------------------------------- metrics
    def _folder(self, name: str) -> Path:
        safe = name if _SAFE_NAME.match(name) and ".." not in name else None
        if safe is None:
            safe = "_" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        return self.root / "metrics" / safe

    def read_block(self, name: str, block: int) -> dict[str, Any]:
        """The pointer of one metrics block (``{}`` when there is none)."""
        return _pointer(self._folder(name) / f"{block:06d}.json") or {}

    def block_rows(self, name: str, pointer: Mapping[str, Any]) -> bytes | None:
        """The whole Parquet file of a block's rows, or None when it is gone or damaged."""
        file = pointer.get("file")
        if not isinstance(file, str) or "/" in file:
            return None
        return _checked(self._folder(name) / file, pointer)

    def write_block(
        self, name: str, block: int, rows: pl.DataFrame | None, runs: dict[str, Any]
    ) -> bool:
        folder = self._folder(name)
        slot = f"{block:06d}"
        file = digest = None
        if rows is not None and rows.height:
            written = _write_data(folder, slot, rows)
            if written is None:
                return False
            file, digest = written
        else:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError:
                return False
        pointer = {"format": FORMAT, "file": file, "sum": digest, "runs": runs}
        data = orjson.dumps(pointer, default=str)
        old = (_pointer(folder / f"{slot}.json") or {}).get("file")
        if not _write_atomic(folder / f"{slot}.json", data):
            if file:
                _remove(folder / file)
            return False
        _retire(folder, slot, old, file or "")
        return True


# ------------------------------------------------------------ background
_PENDING: list[threading.Thread] = []
_PENDING_LOCK = threading.Lock()


def background(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` (an index write) in a thread that the interpreter joins at exit.

    Writes are safe to interrupt at any point: a killed writer leaves at most an
    unreferenced file, which a later writer deletes.
    """

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
