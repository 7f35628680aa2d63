"""What one read of a logs directory knows: the run table, and the metric rows it loaded.

The run table is refreshed from the index at once (rereading only the runs whose
metadata files changed); metric rows are loaded per metrics file name, for the
runs asked for only, from this read's memory, else the index, else the files.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import polars as pl

from runlab.record.process import writer_alive
from runlab.results.reader._columns import (
    concat,
    frame,
    json_safe,
    merge,
    resolve,
    settle,
    summary_frame,
)
from runlab.results.reader._files import read_metas, run_sig, scan
from runlab.results.reader._index import BLOCK, Index, background, wait_for_index
from runlab.results.reader._metrics import Parsed, read_metric_files, summaries
from runlab.status import ACTIVE, Status

LOST_AFTER_S = 60.0
Refresh = bool | Literal["changes"]
_META = ("config", "info", "env")


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:  # os.scandir's surrogate escapes of other bytes
        return False
    return True


def _ended(table: pl.DataFrame) -> set[int]:
    """The runs of an index's table whose recorded status is one of a run that ended:
    only ``note_change`` can tell that one of them changed (see ``refresh="changes"``)."""
    if "info.status" not in table.columns:
        return set()
    # CORRUPT is the reader's word for a record it could not read (or not yet written):
    # no writer notes a change from it, so such a run is looked at every time
    ended = [s.value for s in Status if s not in ACTIVE and s != Status.CORRUPT]
    status = pl.col("info.status").cast(pl.String, strict=False)
    return set(table.filter(status.is_in(ended))["run_id"].to_list())


def _empty_ids() -> pl.DataFrame:
    return pl.DataFrame({"run_id": pl.Series([], dtype=pl.Int64)})


class Store:
    """The run table of ``logs`` (read now) and the metric rows loaded on demand."""

    def __init__(self, logs: Path, refresh: Refresh, write: bool, use_index: bool = True) -> None:
        wait_for_index()  # this process's pending index writes first
        self.logs = logs
        self.index = Index(logs)
        self.use_index = use_index
        self.write = write and use_index
        self.stats: Counter[str] = Counter()
        self.trusted: set[int] = set()  # ended runs answered from the index unchecked
        self._meta_sig: dict[int, str] | None = None
        self.now = time.time()
        self.ignored: list[str] = []
        self.meta = self._load_meta(refresh)
        self.meta_problems = self._meta_problems()
        self._chunks: dict[str, list[Chunk]] = {}
        self._names: dict[int, list[str]] = {}
        self.bad_names: dict[int, list[tuple[str, str]]] = {}  # run_id -> problems
        self._pointers: dict[tuple[str, int], dict[str, Any]] = {}
        self._rows: dict[tuple[str, int], bytes | None] = {}
        # name -> (the trusted runs asked, what the index gave them, those found): a
        # second load of the same runs (curves, then final) takes it as it is
        self._trusted_loads: dict[str, tuple[list[int], Loaded, set[int]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ run table
    def _load_meta(self, refresh: Refresh) -> pl.DataFrame:
        cached = self.index.read_runs() if self.use_index else None
        old, old_mixed, pointer = cached if cached is not None else (None, set(), {})
        if old is not None and refresh is False:
            self.stats["meta_reused"] += old.height
            return self._finish(old, old_mixed)
        stamp = self.index.stamp() if refresh == "changes" and self.write else None
        changed = (
            self.index.changed(pointer, stamp, self.write) if stamp and old is not None else None
        )
        root = str(self.logs)
        ids, self.ignored = scan(root)
        known: dict[int, str] = {}
        if old is not None:
            known = dict(zip(old["run_id"].to_list(), old["_sig"].to_list(), strict=True))
        if changed is not None and old is not None:
            self.trusted = _ended(old) - changed
            self.stats["changes_noted"] += len(changed)
        sigs = [known[r] if r in self.trusted else run_sig(f"{root}/{r}") for r in ids]
        self.stats["runs_checked"] += sum(1 for r in ids if r not in self.trusted)
        keep = [rid for rid, sig in zip(ids, sigs, strict=True) if known.get(rid) == sig]
        todo = [
            (rid, f"{root}/{rid}", sig)
            for rid, sig in zip(ids, sigs, strict=True)
            if known.get(rid) != sig
        ]
        self.stats["meta_reused"] += len(keep)
        self.stats["meta_parsed"] += len(todo)
        parts: list[tuple[pl.DataFrame, set[str]]] = []
        if old is not None and keep:
            kept = old.filter(pl.col("run_id").is_in(keep)) if len(keep) < old.height else old
            parts.append((kept, old_mixed))
        if todo:
            parts.append(frame(read_metas(todo)))
        df, mixed = merge(parts)
        if not df.width:
            df = pl.DataFrame(
                schema={"run_id": pl.Int64, "_sig": pl.String, "_hb": pl.Float64},
            )
        if todo:
            df = df.sort("run_id")
        df = self._order(df)
        differs = bool(todo) or old is None or len(keep) != old.height
        if differs:
            if self.write and self.index.write_runs(df, mixed, stamp):
                self.stats["index_writes"] += 1
        elif stamp is not None and (changed or changed is None):
            self.index.advance(pointer, stamp)  # the same table, checked up to now
        return self._finish(df, mixed)

    def _finish(self, df: pl.DataFrame, mixed: set[str]) -> pl.DataFrame:
        """Type the mixed columns (naming the runs whose values were set to null) and
        mark lost runs."""
        df, notes = resolve(df, mixed)
        if notes:
            rids = df["run_id"].to_list()
            old = df["problem"].to_list() if "problem" in df.columns else [None] * len(rids)
            new = [
                "; ".join([p, *notes[r]] if p else notes[r]) if r in notes else p
                for r, p in zip(rids, old, strict=True)
            ]
            df = df.with_columns(pl.Series("problem", new, dtype=pl.String))
        return self._with_status(df)

    @staticmethod
    def _order(df: pl.DataFrame) -> pl.DataFrame:
        """``run_id``, then the ``config.``, ``info.``, ``env.`` columns, the others, and
        ``problem`` last (each group in its order; linear in the number of columns)."""
        cols = df.columns
        groups: dict[str, list[str]] = {p: [] for p in _META}
        first: list[str] = []
        rest: list[str] = []
        for c in cols:
            head, dot, _ = c.partition(".")
            if dot and head in groups:
                groups[head].append(c)
            elif c == "run_id":
                first.append(c)
            elif c != "problem":
                rest.append(c)
        order = first + [c for p in _META for c in groups[p]] + rest
        if "problem" in cols:
            order.append("problem")
        return df.select(order) if order != cols else df

    def _with_status(self, df: pl.DataFrame) -> pl.DataFrame:
        """Mark RUNNING runs whose writer is gone as LOST (relative to now).

        A run recorded on this host is gone when its process is
        (:func:`runlab.record.process.writer_alive`, the rule of ``runlab verify``:
        only these runs pay a look in ``/proc``); any other when its heartbeat stopped.
        """
        if "info.status" not in df.columns:
            return df.with_columns(pl.lit(None, dtype=pl.String).alias("info.status"))
        running = pl.col("info.status") == Status.RUNNING.value
        here = self._liveness(df.filter(running)) if "info.host" in df.columns else {}
        dtype = df.schema.get("info.heartbeat_interval_s")
        if dtype is not None and dtype.is_numeric():
            interval = pl.col("info.heartbeat_interval_s").cast(pl.Float64, strict=False)
        else:  # absent, or not a number (a list, a mapping): the default
            interval = pl.lit(None, dtype=pl.Float64)
        limit = pl.max_horizontal(pl.lit(LOST_AFTER_S), 4 * interval.fill_null(15.0))
        stale = (self.now - pl.col("_hb")) > limit
        if here:  # this host's runs: their process decides, not their heartbeat
            gone = [rid for rid, live in here.items() if not live]
            known = pl.col("run_id").is_in(list(here))
            dead = pl.col("run_id").is_in(gone)
            stale = pl.when(known).then(dead).otherwise(stale)
        lost = running & stale
        return df.with_columns(
            pl.when(lost.fill_null(False))
            .then(pl.lit(Status.LOST.value))
            .otherwise(pl.col("info.status").cast(pl.String))
            .alias("info.status")
        )

    @staticmethod
    def _liveness(running: pl.DataFrame) -> dict[int, bool]:
        """``run_id -> whether its writer lives`` for the RUNNING runs recorded on this
        host whose record names a pid and a start time; the others are left out."""
        host = socket.gethostname()
        mine = running.filter(pl.col("info.host").cast(pl.String, strict=False) == host)
        if not mine.height:
            return {}
        keys = [
            k
            for k in ("info.pid", "info.attempt_start_time", "info.start_time")
            if k in mine.columns
        ]
        out: dict[int, bool] = {}
        for row in mine.select("run_id", *keys).iter_rows(named=True):
            info = {k.removeprefix("info."): v for k, v in row.items()}
            live = writer_alive({**info, "host": host}, host)
            if live is not None:
                out[row["run_id"]] = live
        return out

    def _meta_problems(self) -> list[tuple[str, str]]:
        if "problem" not in self.meta.columns:
            return []
        bad = self.meta.filter(pl.col("problem").is_not_null()).select("run_id", "problem")
        return [(str(self.logs / str(r)), p) for r, p in bad.iter_rows()]

    # -------------------------------------------------------------- metrics
    def names(self, run_ids: Iterable[int]) -> list[str]:
        """Names of the metric files (``metrics/<name>.jsonl``) of these runs; a name
        that is not valid UTF-8 (no column can be named by it) is left out, in
        :attr:`bad_names`."""
        seen: dict[str, None] = {}
        for rid in run_ids:
            names = self._names.get(rid)
            if names is None:
                folder = self.logs / str(rid) / "metrics"
                try:
                    with os.scandir(folder) as it:
                        names = sorted(
                            e.name[:-6] for e in it if e.name.endswith(".jsonl") and len(e.name) > 6
                        )
                except OSError:
                    names = []
                bad = [n for n in names if not _utf8(n)]
                if bad:
                    names = [n for n in names if n not in bad]
                    self.bad_names[rid] = [
                        (str(folder), f"{n + '.jsonl'!a} ignored: its name is not valid UTF-8")
                        for n in bad
                    ]
                self._names[rid] = names
            for n in names:
                seen[n] = None
        return sorted(seen)

    def _pointer(self, name: str, block: int) -> dict[str, Any]:
        key = (name, block)
        with self._lock:
            pointer = self._pointers.get(key)
            if pointer is None:
                pointer = self._pointers[key] = (
                    self.index.read_block(name, block) if self.use_index else {}
                )
            return pointer

    def block_rows(self, name: str, block: int) -> bytes | None:
        """The rows file of a block as it was when this read first looked (read once)."""
        key = (name, block)
        with self._lock:
            if key not in self._rows:
                self._rows[key] = self.index.block_rows(name, self._pointers.get(key, {}))
            return self._rows[key]

    def load(self, name: str, run_ids: Sequence[int], live: set[int]) -> Loaded:
        """The rows of ``metrics/<name>.jsonl`` of ``run_ids``, as they are on disk now.

        Each file's rows come from this read's memory, else from the index when the
        file is unchanged (same size and mtime), else from the file itself; files
        read are then added to the index in the background (except those of running
        runs, which change all the time).
        """
        root = str(self.logs)
        remaining: dict[int, str] = {}
        out = Loaded(self, name)
        trusted = [rid for rid in run_ids if rid in self.trusted]
        if trusted:  # ended runs no change was noted for: their index entry, unchecked
            run_ids = self._entries(name, trusted, out, run_ids)
        self.stats["metric_files_checked"] += len(run_ids)
        for rid in run_ids:
            try:
                st = os.stat(f"{root}/{rid}/metrics/{name}.jsonl")
            except OSError:
                continue
            remaining[rid] = f"{st.st_size}.{st.st_mtime_ns}"
        for chunk in self._chunks.get(name, []):
            hit = [r for r, sig in remaining.items() if chunk.files.get(r, {}).get("sig") == sig]
            if hit:
                out.add_chunk(chunk, hit)
                for r in hit:
                    del remaining[r]
        # the index's entry of each file unchanged since (same size and mtime)
        for r in self._cached(
            name, list(remaining), out, lambda r, e: e.get("sig") == remaining[r]
        ):
            del remaining[r]
        if remaining:
            out.add_chunk(self.parse(name, list(remaining), live), list(remaining))
        return out

    def _entries(
        self, name: str, trusted: list[int], out: Loaded, run_ids: Sequence[int]
    ) -> list[int]:
        """Add to ``out`` the index's entries of the ``trusted`` runs (no ``stat``);
        return ``run_ids`` less those found (the others are looked at)."""
        with self._lock:
            memo = self._trusted_loads.get(name)
        if memo is not None and memo[0] == trusted:  # trusted entries never change in a read
            part, found = memo[1], memo[2]
            self.stats["metric_files_cached"] += len(found)
        else:
            meta = self._meta_sigs()

            def usable(rid: int, entry: dict[str, Any]) -> bool:
                # only an entry made while the run's records were as they are now
                return entry.get("meta") == meta.get(rid) and isinstance(entry.get("sig"), str)

            part = Loaded(self, name)
            found = self._cached(name, trusted, part, usable)
            with self._lock:
                self._trusted_loads[name] = (trusted, part, found)
        out.take(part)
        return [rid for rid in run_ids if rid not in found]

    def _cached(
        self,
        name: str,
        rids: list[int],
        out: Loaded,
        usable: Callable[[int, dict[str, Any]], bool],
    ) -> set[int]:
        """Add to ``out`` the index's entry (and block) of each of ``rids`` whose entry is
        ``usable``; return those runs."""
        by_block: dict[int, list[int]] = {}
        for rid in rids:
            by_block.setdefault(rid // BLOCK, []).append(rid)
        found: set[int] = set()
        for block, members in by_block.items():
            entries = self._pointer(name, block).get("runs") or {}
            fresh = []
            for rid in members:
                entry = entries.get(str(rid))
                if isinstance(entry, dict) and usable(rid, entry):
                    fresh.append(rid)
                    out.add_entry(rid, entry)
            if fresh:
                self.stats["metric_files_cached"] += len(fresh)
                out.add_block(block, fresh, any(entries[str(r)].get("rows") for r in fresh))
                found.update(fresh)
        return found

    def _meta_sigs(self) -> dict[int, str]:
        """``run_id ->`` the signature of its records as this read found them."""
        with self._lock:
            if self._meta_sig is None:
                t = self.meta
                sigs = t["_sig"].to_list() if "_sig" in t.columns else [""] * t.height
                made: dict[int, str] = dict(zip(t["run_id"].to_list(), sigs, strict=True))
                self._meta_sig = made
            return self._meta_sig

    def parse(self, name: str, rids: list[int], live: set[int]) -> Chunk:
        """Read the metric files of ``rids`` (and cache the settled ones)."""
        root = str(self.logs)
        items = [(r, f"{root}/{r}/metrics/{name}.jsonl", r in live) for r in rids]
        chunk = Chunk(name, read_metric_files(items, self.stats))
        with self._lock:
            self._chunks.setdefault(name, []).append(chunk)
        if self.write:
            # Not the runs whose values other runs' types set to null: what they hold
            # is decided at each read, among the runs it reads.
            settled = [
                r
                for r in rids
                if r not in live and chunk.files[r]["sig"] and not chunk.files[r].get("nulled")
            ]
            if settled:
                background(self._update_blocks, name, chunk, settled)
        return chunk

    def _update_blocks(self, name: str, chunk: Chunk, settled: list[int]) -> None:
        """Write new generations of the index blocks holding the ``settled`` runs."""
        by_block: dict[int, list[int]] = {}
        for rid in settled:
            by_block.setdefault(rid // BLOCK, []).append(rid)
        summary = chunk.summary()
        summ = {r["run_id"]: r for r in summary.iter_rows(named=True)} if summary.height else {}
        meta = self._meta_sigs()
        rows = chunk.rows
        if rows.height and len(settled) < len(chunk.files):
            rows = rows.filter(pl.col("run_id").is_in(settled))
        new_rows: dict[int, pl.DataFrame] = {}
        if rows.height:
            if len(by_block) == 1:
                new_rows = {next(iter(by_block)): rows}
            else:
                split = rows.with_columns((pl.col("run_id") // BLOCK).alias("_block"))
                for key, part in split.partition_by(
                    "_block", as_dict=True, include_key=False
                ).items():
                    new_rows[int(key[0])] = part
        for block, rids in by_block.items():
            current = self.index.read_block(name, block)  # the newest generation
            entries: dict[str, Any] = dict(current.get("runs") or {})
            replaced = {str(r) for r in rids}
            keep = [int(r) for r, e in entries.items() if r not in replaced and e.get("rows")]
            parts: list[pl.DataFrame] = []
            if keep:
                raw = self.index.block_rows(name, current)
                try:
                    old = pl.read_parquet(raw).filter(pl.col("run_id").is_in(keep)) if raw else None
                except Exception:
                    old = None
                if old is None:  # gone or damaged: keep only the entries without rows
                    entries = {r: e for r, e in entries.items() if not e.get("rows")}
                elif old.height:
                    parts.append(old)
            for rid in rids:
                rec = chunk.files[rid]
                summary_row = {k: v for k, v in summ.get(rid, {}).items() if k != "run_id"}
                entries[str(rid)] = {
                    "sig": rec["sig"],
                    "rows": rec["rows"],
                    "inc": rec["inc"],
                    "problem": rec["problem"],
                    "summary": json_safe(summary_row),
                    "meta": meta.get(rid),  # the run's records when these rows were read
                }
            if block in new_rows:
                parts.append(new_rows[block])
            if any(a is not b for a, b in zip(settle(parts), parts, strict=True)):
                continue  # the old rows and the new disagree in type: cache neither
            df = concat(parts)
            if self.index.write_block(name, block, df if df.width else None, entries):
                self.stats["index_writes"] += 1


class Chunk:
    """Metric rows read from files by one ``load``, kept for the life of the read."""

    def __init__(self, name: str, parsed: Parsed) -> None:
        self.name = name
        self.rows = parsed.frame()
        self.files = parsed.files
        self._summary: pl.DataFrame | None = None
        self._lock = threading.Lock()

    def summary(self) -> pl.DataFrame:
        with self._lock:
            if self._summary is None:
                self._summary = (
                    summaries(self.name, self.rows) if self.rows.height else _empty_ids()
                )
            return self._summary


class Loaded:
    """The metric rows of some runs: frames, summaries, problems, runs to deduplicate."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.lazies: list[pl.LazyFrame] = []
        self.blocks: dict[int, list[int]] = {}  # block -> the runs whose rows it gives
        self.entries: list[dict[str, Any]] = []
        self.chunks: list[tuple[Chunk, list[int]]] = []
        self.problems: list[tuple[str, str]] = []
        self.dedupe: set[int] = set()

    def _note(self, rid: int, record: Mapping[str, Any]) -> None:
        if record.get("problem"):
            self.problems.append((f"{self.store.logs}/{rid}/metrics", record["problem"]))
        if record.get("inc") is False:
            self.dedupe.add(rid)

    def add_entry(self, rid: int, entry: Mapping[str, Any]) -> None:
        summary = entry.get("summary")
        self.entries.append({"run_id": rid, **(summary if isinstance(summary, dict) else {})})
        self._note(rid, entry)

    def take(self, part: Loaded) -> None:
        """Add what ``part`` (of the same metric file, made by ``add_entry`` and
        ``add_block`` only) holds."""
        self.entries.extend(part.entries)
        self.problems.extend(part.problems)
        self.dedupe.update(part.dedupe)
        for block, rids in part.blocks.items():
            self.blocks.setdefault(block, []).extend(rids)

    def add_block(self, block: int, rids: list[int], has_rows: bool) -> None:
        if has_rows:
            self.blocks.setdefault(block, []).extend(rids)  # each block scanned once

    def add_chunk(self, chunk: Chunk, rids: list[int]) -> None:
        self.chunks.append((chunk, rids))
        if chunk.rows.height:
            whole = len(rids) == len(chunk.files)
            rows = chunk.rows if whole else chunk.rows.filter(pl.col("run_id").is_in(rids))
            self.lazies.append(rows.lazy())
        for rid in rids:
            self._note(rid, chunk.files[rid])

    def frame(self) -> pl.LazyFrame:
        """All rows, as a LazyFrame over memory only (never over a file that may go)."""
        lazies = list(self.lazies)
        scanned: list[int] = []  # positions in lazies of whole blocks' rows
        selected: list[int] = []  # the runs wanted from those blocks
        partial = False  # some block holds rows of runs not wanted (not selected, stale)
        for block, rids in self.blocks.items():
            raw = self.store.block_rows(self.name, block)
            lf = None
            if raw is not None:
                try:
                    pl.read_parquet_schema(raw)
                    lf = pl.scan_parquet(raw)
                except Exception:
                    lf = None
            if lf is None:  # retired and deleted since, or damaged: read the files
                chunk = self.store.parse(self.name, rids, set())
                lazies.append(chunk.rows.lazy())
                continue
            partial = partial or not self._whole(block, rids)
            scanned.append(len(lazies))
            selected += rids
            lazies.append(lf)
        if not lazies:
            return _empty_ids().lazy()
        notes: dict[int, list[str]] = {}
        if len(lazies) > 1:
            lazies = settle(lazies, notes)
            if partial:  # the blocks' other runs are not this read's to speak of
                wanted = {r for _, rids in self.chunks for r in rids} | set(selected)
                notes = {r: n for r, n in notes.items() if r in wanted}
            self._settled(notes)
        if partial:  # one semi join over all blocks: a filter per block costs 20 times more
            keep = pl.LazyFrame({"run_id": selected}, schema={"run_id": pl.Int64})
            blocks = pl.concat([lazies[i] for i in scanned], how="diagonal_relaxed")
            at = set(scanned)
            lazies = [lf for i, lf in enumerate(lazies) if i not in at]
            lazies.append(blocks.join(keep, on="run_id", how="semi"))
        if len(lazies) == 1:
            return lazies[0]
        return pl.concat(lazies, how="diagonal_relaxed")

    def _whole(self, block: int, rids: list[int]) -> bool:
        """Whether ``rids`` are all the runs whose rows the block's file holds."""
        entries = self.store._pointer(self.name, block).get("runs") or {}
        held = {r for r, e in entries.items() if isinstance(e, dict) and e.get("rows")}
        return held <= {str(r) for r in rids}

    def _settled(self, notes: dict[int, list[str]]) -> None:
        """Note the runs whose values other runs' types set to null (see ``settle``)."""
        for rid, lines in sorted(notes.items()):
            item = (
                f"{self.store.logs}/{rid}/metrics",
                "; ".join(f"{self.name}.jsonl: {line}" for line in lines),
            )
            if item not in self.problems:
                self.problems.append(item)

    def summary(self) -> pl.DataFrame:
        notes: dict[int, list[str]] = {}
        parts = [summary_frame(self.entries, notes)] if self.entries else []
        for chunk, rids in self.chunks:
            summ = chunk.summary()
            if summ.height:
                whole = len(rids) == len(chunk.files)
                parts.append(summ if whole else summ.filter(pl.col("run_id").is_in(rids)))
        if not parts:
            return _empty_ids()
        df = concat(parts, notes)
        self._settled(notes)
        return df
