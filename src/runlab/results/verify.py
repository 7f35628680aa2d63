"""``runlab verify``: check the record's invariants on a logs directory.

The invariants are numbered once, in :data:`INVARIANTS`, and the docs
(``docs/invariants.md``), the tests and every violation cite them by number.
The fast pass reads each run's ``info.json`` and lists its folders (a few system
calls a run); ``deep=True`` also reads every metrics row and every columnar twin.

``repair=True`` fixes only what is safe and never deletes data: it rebuilds the
reader's cache (the index, stale twins), marks a ``RUNNING`` run ``LOST`` when its
process is surely gone, and moves torn temporary files, and run folders a killed
``runlab submit`` left without their info record (nothing of a task's in them), into
``<logs>/.aside/``.

A ``RUNNING`` run is gone (invariant 3) only when, on this host, no process has its
recorded pid and start time, or when its SLURM job (``job_id`` in its info) is one the
scheduler says has ended or no longer knows (``squeue``, then ``sacct``): asked once for
all the runs on other hosts. A job the scheduler lists, running or suspended, on any
host, is never gone; where the scheduler cannot be asked, verify says so in a note and
leaves those runs as they are.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from runlab.logs import ASIDE, HIDDEN, INDEX, STUDIES, SWEEPS, Logs, is_run_id
from runlab.record import metricsfile, secrets
from runlab.record.files import TEMP_SUFFIX, loads_yaml, now_iso
from runlab.record.process import epoch, writer_alive
from runlab.record.rundir import RunBusyError, RunDir
from runlab.status import FINAL, Status
from runlab.sweep import backends, study
from runlab.sweep import record as sweep_record
from runlab.sweep.backends.base import LauncherError
from runlab.sweep.record import SweepRecordError

#: The invariants of a logs directory: number -> one sentence. Cited by the docs and tests.
INVARIANTS: dict[int, str] = {
    1: "every run directory has a readable status that runlab knows",
    2: "nothing is written into a run after its final status, except by a new attempt",
    3: "a run that says RUNNING has a live writer (one process, holding its lock)",
    4: "metrics files are whole JSON lines, and logger-assigned steps are never repeated",
    5: "caches (the index, columnar twins) agree with the record, or are not there",
    6: "sweep and study records validate against their schema",
    7: "a logs directory holds runs and runlab's own folders; no half-written file is left",
    8: "no credential is stored in clear",
}

#: Seconds of clock slack between a run's end_time and its files' modification times.
SLACK_S = 2.0
_TEXT_RECORDS = ("config.json", "overrides.yaml", "info.json")
#: Threads that read runs' files ahead of the checks on a cold cache, runs read per batch.
_READERS = 16
_BATCH = 512
_SLOW_S = 4e-4  # seconds of reads a run: slower, they waited on a disk (see _read_ahead)
_CHUNK = 1 << 16  # bytes per read of a record (most are read whole in one)
_MAX_RECORD = 16 << 20  # the most bytes of one record read, as the reader's limit
#: A run's folders that verify lists (with the run folder itself): each is read once.
_SUBDIRS = ("metadata", "metrics", "artifacts", "checkpoints")


@dataclass(frozen=True)
class Violation:
    """One broken invariant: where (a run id, a sweep, a path), which, what, what to do."""

    where: str
    invariant: int
    what: str
    todo: str
    repairable: bool = False

    def line(self) -> str:
        """The violation as one line of text."""
        return f"{self.where}: [{self.invariant}] {self.what} ({self.todo})"


@dataclass
class Verdict:
    """What :func:`verify` found and did."""

    logs: Path
    runs: int = 0
    violations: list[Violation] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {
            "logs": str(self.logs),
            "runs": self.runs,
            "ok": self.ok,
            "violations": [
                {
                    "where": v.where,
                    "invariant": v.invariant,
                    "rule": INVARIANTS[v.invariant],
                    "what": v.what,
                    "todo": v.todo,
                    "repairable": v.repairable,
                }
                for v in self.violations
            ],
            "repaired": self.repaired,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


def verify(logs: Logs, *, deep: bool = False, repair: bool = False) -> Verdict:
    """Check every invariant on ``logs``; with ``repair``, fix what is safe (see the module)."""
    start = time.perf_counter()
    verdict = Verdict(logs.path)
    host = socket.gethostname()
    env = secrets.env_values()  # the credential variables' values, read once
    extra = os.environ.get(secrets.SECRET_KEYS_ENV, "")  # and the user's own key names
    by_scheduler: list[_Run] = []  # RUNNING runs only their scheduler's job can speak for
    for entry, run in _read_ahead(_entries(logs), host, env, extra):
        if run is not None:
            verdict.runs += 1
            found = list(run.check(entry, deep))
            if repair:
                found = [v for v in found if not _repair_run(run, v, logs, verdict)]
                found += _torn_after_lost(run, logs, verdict, deep)
            verdict.violations.extend(found)
            if run.job_id is not None:
                by_scheduler.append(run)
        else:
            verdict.violations.extend(_stray(logs, entry, repair, verdict))
    if by_scheduler:
        verdict.violations.extend(_ask_scheduler(by_scheduler, repair, deep, logs, verdict))
    verdict.violations.extend(_records(logs))
    index = list(_index(logs, deep))
    if index and repair:
        _move_aside(logs, logs.index, verdict, "the reader's index (it is rebuilt on next read)")
        index = []
    verdict.violations.extend(index)
    verdict.seconds = time.perf_counter() - start
    return verdict


def _entries(logs: Logs) -> list[os.DirEntry[str]]:
    with os.scandir(logs.path) as it:
        return sorted(it, key=lambda e: (not is_run_id(e.name), len(e.name), e.name))


def _read_ahead(
    entries: list[os.DirEntry[str]], host: str, env: frozenset[str], extra: str
) -> Iterator[tuple[os.DirEntry[str], _Run | None]]:
    """Each entry with its run (``None`` for what is not a run), whose files the fast
    pass reads (:meth:`_Run.read`) have been read, a batch of :data:`_BATCH` runs at a
    time. Where a batch's reads waited on the disk (slower than :data:`_SLOW_S` a run:
    a cold cache), the next batch is read by :data:`_READERS` threads, many requests in
    flight; where they did not (a warm cache), by this thread alone, since threads then
    only add their contention for the interpreter. The checks run between batches, so
    that no reader waits for the interpreter while they run."""
    with ThreadPoolExecutor(_READERS, thread_name_prefix="runlab-verify") as pool:
        pooled = False  # threads are started only once a batch was slow
        for start in range(0, len(entries), _BATCH):
            batch = [
                (e, _Run(e.path, e.name, host, env, extra) if is_run_id(e.name) else None)
                for e in entries[start : start + _BATCH]
            ]
            todo = [r for e, r in batch if r is not None and not e.is_symlink() and e.is_dir()]
            began = time.perf_counter()
            for _ in pool.map(_Run.read, todo) if pooled else map(_Run.read, todo):
                pass
            pooled = time.perf_counter() - began > _SLOW_S * len(todo)
            yield from batch


# ----------------------------------------------------------------- one run
class _Run:
    """One run directory as verify sees it."""

    def __init__(
        self, path: str | Path, rid: str, host: str, env: frozenset[str], extra: str | None = None
    ) -> None:
        self.root, self.rid, self.host = os.fspath(path), rid, host  # text: a hot loop's path
        self.env, self.extra = env, extra  # secrets.env_values(), RUNLAB_SECRET_KEYS
        self.info: dict[str, Any] | None = None
        self.info_raw: bytes | None = None  # the bytes self.info was parsed from
        self.listed: dict[str, list[os.DirEntry[str]]] = {}  # folder ("" the run's) -> entries
        self.records: dict[str, bytes | None] = {}  # metadata/<name> -> its bytes, read ahead
        self.was_read = False
        self.status: Status | None = None
        self.marked_lost = False  # by --repair, in this pass
        self.job_id: str | None = None  # RUNNING, of a cluster job this host cannot see into
        self.launcher: str | None = None  # the scheduler its job is of, where it says
        self.lost_reason = ""  # why it is gone, when invariant 3 is broken

    @property
    def path(self) -> Path:
        return Path(self.root)

    def v(self, invariant: int, what: str, todo: str, repairable: bool = False) -> Violation:
        return Violation(f"run {self.rid}", invariant, what, todo, repairable)

    def read(self) -> None:
        """Every read the fast pass makes of the run (its info, its folders' entries with
        the metrics files' times, the records checked for credentials), ahead of
        :meth:`check`, which makes none of its own but ``--deep``'s."""
        self.was_read = True
        self.info, self.info_raw = _read_info(os.path.join(self.root, "metadata"))
        if self.info is None:
            return
        self.listed = self._list()
        present = {e.name for e in self.listed.get("metadata", ())}
        for name in _TEXT_RECORDS:
            if name != "info.json" and name in present:
                self.records[name] = _read(os.path.join(self.root, "metadata", name))
        for e in self.listed.get("metrics", ()):
            if e.name.endswith(".jsonl"):
                e.stat()  # kept by the entry for _metrics

    def check(self, entry: os.DirEntry[str], deep: bool) -> Iterator[Violation]:
        if entry.is_symlink():
            yield self.v(7, "the run folder is a symbolic link", "replace it with the run itself")
            return
        if not entry.is_dir():
            yield self.v(7, "a file where a run folder belongs", "move it out of the logs folder")
            return
        if not self.was_read:
            self.read()
        if self.info is None:
            if _never_made(self.root):
                yield self.v(
                    1,
                    "it holds no info record, only what `runlab submit` writes before it "
                    "(config, overrides): a submit killed while it made the run, which never ran",
                    "verify --repair moves it into .aside/ and out of its sweep; submit that "
                    "point again to run it",
                    True,
                )
                return
            yield self.v(
                1,
                "metadata/info.json and info.yaml are missing or unreadable",
                "restore the run from a backup, or move it out of the logs directory",
            )
            return
        self.status = Status.of(self.info.get("status"))
        if self.status is None or self.status is Status.CORRUPT:
            yield self.v(
                1,
                f"info.json says status {self.info.get('status')!r}, which runlab does not know",
                "restore metadata/info.json (hand edits belong nowhere in the record)",
            )
            return
        yield from self._metrics(deep)
        yield from self._temporaries(self.listed)
        if self.status is Status.RUNNING:
            yield from self._liveness()
        yield from self._secrets()

    def _list(self) -> dict[str, list[os.DirEntry[str]]]:
        """The entries of the run folder (key ``""``) and of each of :data:`_SUBDIRS` it
        has: one read of each, which the metrics, temporaries and records checks share."""
        listed = {"": _scan(self.root)}
        present = {e.name for e in listed[""]}
        for sub in _SUBDIRS:
            if sub in present:
                listed[sub] = _scan(os.path.join(self.root, sub))
        return listed

    def _metrics(self, deep: bool) -> Iterator[Violation]:
        entries = self.listed.get("metrics")
        if not entries:
            return
        assert self.info is not None  # checked by the caller before the metrics
        end = epoch(self.info.get("end_time")) if self.status in FINAL else None
        names = {e.name for e in entries}
        for e in entries:
            if e.name.endswith(".parquet") and e.name[:-8] + ".jsonl" not in names:
                yield self.v(
                    5,
                    f"metrics/{e.name} has no metrics/{e.name[:-8]}.jsonl beside it",
                    "it is a cache without its record: verify --repair moves it aside",
                    True,
                )
            if not e.name.endswith(".jsonl"):
                continue
            if end is not None and (mtime := e.stat().st_mtime) > end + SLACK_S:
                late = mtime - end
                yield self.v(
                    2,
                    f"metrics/{e.name} was written {late:.0f} s after the run ended {self.status}",
                    "another process wrote into a finished run (a forked child, a copy?): "
                    "check the rows; rerun the task to get a clean record",
                )
            if deep:
                yield from self._rows(Path(e.path))
                yield from self._twin(e.name)

    def _rows(self, path: Path) -> Iterator[Violation]:
        with open(path, "rb") as fh:
            data = metricsfile.read_sized(fh)
        lines = data.split(b"\n")
        torn = lines.pop() if lines else b""
        if torn and self.status is not Status.RUNNING:
            yield self._torn(path.name, len(torn))
        seen: set[tuple[Any, Any]] = set()
        for number, raw in enumerate(lines, 1):
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError:
                row = None
            if not isinstance(row, dict) or type(row.get("step")) is not int:
                yield self.v(
                    4,
                    f"metrics/{path.name} line {number} is not a row with an integer step",
                    "restore the file from a backup, or rerun the task",
                )
                return
            key = (row["step"], row.get("time"))
            if key in seen:
                yield self.v(
                    4,
                    f"metrics/{path.name} line {number} repeats step {row['step']} "
                    "of an earlier row",
                    "a row was written twice (a forked child?): rerun the task",
                )
                return
            seen.add(key)

    def _torn(self, name: str, size: int) -> Violation:
        return self.v(
            4,
            f"metrics/{name} ends in a torn line ({size} bytes)",
            "the run's next attempt cuts it; or rerun the task",
        )

    def _torn_lines(self) -> list[Violation]:
        """Invariant 4's torn last line, for a run the scan saw RUNNING (a live writer's
        line in progress then) that --repair has since marked LOST."""
        found = []
        for path in sorted((self.path / "metrics").glob("*.jsonl")):
            with open(path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - (1 << 16)))
                tail = metricsfile.read_sized(fh)
            torn = metricsfile.split_torn(tail)[1]
            if torn:
                found.append(self._torn(path.name, len(torn)))
        return found

    def _twin(self, name: str) -> Iterator[Violation]:
        """Invariant 5, row by row: the columnar twin holds the rows of its ``.jsonl``."""
        why = metricsfile.twin_mismatch(self.path / "metrics" / name)
        if why is not None:
            twin = metricsfile.twin_path(name)
            yield self.v(
                5,
                f"metrics/{twin} does not agree with metrics/{name}: {why}",
                "it is only a cache: verify --repair moves it aside (readers then use the .jsonl)",
                True,
            )

    def _temporaries(
        self, listed: dict[str, list[os.DirEntry[str]]] | None = None
    ) -> Iterator[Violation]:
        """Invariant 7 in the run: torn temporary files, in ``listed`` (:meth:`_list`'s,
        read again when not given: after --repair, the folders as they are now)."""
        if self.status is Status.RUNNING:
            return  # a live writer's atomic writes: not torn
        listed = self._list() if listed is None else listed
        for sub in (*_SUBDIRS, ""):
            for name in (e.name for e in listed.get(sub, ())):
                if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                    rel = f"{sub}/{name}" if sub else name
                    yield self.v(
                        7,
                        f"{rel} is a torn temporary file",
                        "verify --repair moves it into the logs folder's .aside/",
                        True,
                    )

    def _liveness(self) -> Iterator[Violation]:
        assert self.info is not None
        pid = self.info.get("pid")
        live = writer_alive(self.info, self.host)  # the readers' rule too: they agree
        if live is None:  # another host, or no pid or start time to check
            job = self.info.get("job_id")
            if job is not None and re.fullmatch(r"[0-9][0-9.]*", str(job)):
                self.job_id = str(job)  # only its scheduler can say: asked after the scan
                launcher = self.info.get("launcher")
                self.launcher = launcher if isinstance(launcher, str) else None
            return
        if not live:
            self.lost_reason = f"its process {pid} on {self.host} is gone"
            yield self.v(
                3,
                f"says RUNNING, but no process {pid} that started it lives on {self.host}",
                "verify --repair marks it LOST; `runlab retry` or reopen it to go on",
                True,
            )

    def _secrets(self) -> Iterator[Violation]:
        """Invariant 8: only a record whose text could hold a credential
        (:func:`secrets.could_hold`, a cheap screen) is parsed and walked."""
        for name in _TEXT_RECORDS:
            if name == "info.json":
                raw, data = self.info_raw, self.info
            elif name in self.records:
                raw, data = self.records[name], None
            else:
                continue
            if raw is None or not _could_hold(raw, self.env, self.extra):
                continue
            if data is None:
                data = _parse(name, raw)
            if data is None:
                continue
            for where in secrets.find(data, env=self.env):
                yield self.v(
                    8,
                    f"metadata/{name} holds a credential in clear at {where}",
                    "revoke that credential; remove it from the record by hand; pass "
                    "secrets through the environment, never the config",
                )


#: What ``runlab submit`` writes into a run folder before its info record (its last file).
_PRE_CREATED = frozenset({"config.json", "config.yaml", "overrides.yaml", "git.diff", "info.yaml"})
#: Seconds after which a run folder a submit left unfinished is taken for abandoned (a
#: live submit writes each run's few files within milliseconds).
NEVER_MADE_S = 60.0


def _never_made(root: str) -> bool:
    """Whether the run folder ``root``, without an info record, holds only what a submit
    writes before that record, untouched for :data:`NEVER_MADE_S`: no task ever ran it."""
    meta = os.path.join(root, "metadata")
    try:
        top = os.listdir(root)
        names = os.listdir(meta) if top == ["metadata"] else []
        if top not in ([], ["metadata"]) or not set(names) <= _PRE_CREATED:
            return False
        paths = [root, *([meta] if top else []), *(os.path.join(meta, n) for n in names)]
        newest = max(os.stat(p, follow_symlinks=False).st_mtime for p in paths)
    except OSError:
        return False
    return time.time() - newest > NEVER_MADE_S


def _read_info(meta: str) -> tuple[dict[str, Any] | None, bytes | None]:
    """A run's info and the bytes it was parsed from: ``info.json``, or where that is
    missing or unreadable its YAML twin (parsed only then); ``(None, None)`` if neither."""
    raw = _read(os.path.join(meta, "info.json"))
    data = _parse("info.json", raw) if raw is not None else None
    if data is None:
        raw = _read(os.path.join(meta, "info.yaml"))
        data = _parse("info.yaml", raw) if raw is not None else None
    return (data, raw) if isinstance(data, dict) else (None, None)


def _scan(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read(path: str) -> bytes | None:
    """A small file's bytes (``None`` if it cannot be read): open, read to the end, close,
    and no other system call (``open()`` adds a ``stat`` or two and a terminal check).
    Reading stops past :data:`_MAX_RECORD` (a damaged record, a link to ``/dev/zero``):
    the bytes so far, cut, do not parse, and the file is reported damaged."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks, size = [], 0
        while size <= _MAX_RECORD and (chunk := os.read(fd, _CHUNK)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _parse(name: str, raw: bytes) -> Any:
    """A record's bytes as data: YAML for a ``.yaml`` name, else JSON (``None`` if damaged)."""
    if name.endswith(".yaml"):
        try:
            return loads_yaml(raw)
        except Exception:  # damaged YAML of any kind
            return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _could_hold(raw: bytes, env: frozenset[str], extra: str | None) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return True  # another encoding (YAML may be UTF-16): parse it to know
    return secrets.could_hold(text, env, extra)


def _load(path: Path) -> Any:
    raw = _read(str(path))
    return None if raw is None else _parse(path.name, raw)


# ------------------------------------------------------------ the logs directory
def _stray(logs: Logs, entry: os.DirEntry[str], repair: bool, verdict: Verdict) -> list[Violation]:
    name = entry.name
    if name in HIDDEN or name.startswith(".new-run-"):
        return []  # runlab's own (a run being born is the allocator's to clean)
    if name.startswith(".") and name.endswith(TEMP_SUFFIX):
        if repair:
            _move_aside(logs, Path(entry.path), verdict, "a torn temporary file")
            return []
        return [
            Violation(
                name, 7, "a torn temporary file", "verify --repair moves it into .aside/", True
            )
        ]
    return []  # a user's own notes beside the runs are theirs (readers ignore them)


def _records(logs: Logs) -> Iterator[Violation]:
    """Invariant 6: every sweep record loads through its typed loader (the schema's checks),
    and every study journal holds whole JSON lines."""
    for sweep_id in sweep_record.sweep_ids(logs.path):
        try:
            sweep_record.load(logs.path, sweep_id)
        except SweepRecordError as exc:
            yield Violation(
                f"{SWEEPS}/{sweep_id}.json",
                6,
                f"does not load as a sweep record: {exc.what}",
                "restore it from a backup, or move it out of the logs directory",
            )
    try:
        journals = sorted(p for p in logs.studies.iterdir() if p.suffix == ".journal")
    except (FileNotFoundError, NotADirectoryError):
        journals = []
    for journal in journals:
        try:
            study.check_journal(journal)
        except SweepRecordError as exc:
            yield Violation(
                f"{STUDIES}/{journal.name}",
                6,
                f"{exc.what}",
                "restore it from a backup; `runlab tune` cannot resume this study as it is",
            )


def _index(logs: Logs, deep: bool) -> Iterator[Violation]:
    pointer = logs.index / "runs.json"
    if not pointer.exists():
        return
    data = _load(pointer)
    if not isinstance(data, dict) or not isinstance(data.get("file"), str):
        yield Violation(INDEX, 5, "runs.json is damaged", "verify --repair rebuilds it", True)
        return
    if not (logs.index / data["file"]).is_file():
        yield Violation(
            INDEX, 5, f"runs.json names {data['file']}, which is missing", "verify --repair", True
        )
    for name in _damaged_index_files(logs, deep):
        yield Violation(
            INDEX,
            5,
            f"{name} is damaged (its bytes do not match the digest its pointer holds)",
            "verify --repair moves the index aside (a read also bypasses and rebuilds it)",
            True,
        )


def _damaged_index_files(logs: Logs, deep: bool) -> list[str]:
    """The index's data files whose bytes no longer match the digest (``sum``) their
    pointer holds: the run table's, and with ``deep`` every metrics block's. The digest
    is the one ``results.reader._index`` writes (BLAKE2b, 16 bytes; checked alike by
    tests/test_caches.py), computed here so that verify does not load Polars."""
    pointers = [logs.index / "runs.json"]
    if deep:
        pointers += sorted((logs.index / "metrics").glob("*/*.json"))
    found = []
    for path in pointers:
        data = _load(path) if path.is_file() else None
        if not isinstance(data, dict):
            continue
        file = data.get("file")
        if not isinstance(file, str) or "/" in file or "sum" not in data:
            continue
        try:
            raw = (path.parent / file).read_bytes()
        except OSError:
            continue
        if hashlib.blake2b(raw, digest_size=16).hexdigest() != data["sum"]:
            found.append((path.parent / file).relative_to(logs.index).as_posix())
    return found


# -------------------------------------------------------------------- repair
def _ask_scheduler(
    runs: list[_Run], repair: bool, deep: bool, logs: Logs, verdict: Verdict
) -> Iterator[Violation]:
    """Invariant 3 for RUNNING runs of cluster jobs on other hosts: the scheduler's word
    (the one the run was submitted to; for a run started by hand in a job, this machine's)."""
    by_backend: dict[str | None, list[_Run]] = {}
    here = backends.default()  # started by hand in a job: this machine's scheduler, if any
    for run in runs:
        name: str | None = run.launcher if run.launcher in backends.NAMES else here
        by_backend.setdefault(name if name != backends.NAMES[-1] else None, []).append(run)
    for name, group in by_backend.items():
        try:
            if name is None:
                raise LauncherError("no cluster scheduler's commands are on PATH")
            backend = backends.get(name)
            states = backend.job_states([str(r.job_id) for r in group])
        except LauncherError as exc:
            title = backends.get(name).title if name else "cluster"
            verdict.notes.append(
                f"{len(group)} RUNNING run(s) of {title} jobs on other hosts were not checked "
                f"(not marked LOST): the scheduler cannot be asked: {exc.line()}"
            )
            continue
        for run in group:
            state = states.get(str(run.job_id))
            if state is None or state.alive:
                continue  # pending, running, suspended, completing: the job lives
            run.lost_reason = state.reason
            v = run.v(
                3,
                f"says RUNNING, but {state.reason}",
                "verify --repair marks it LOST; `runlab retry` or reopen it to go on",
                True,
            )
            if not (repair and _mark_lost(run, verdict, writer_gone=True)):
                yield v
            yield from _torn_after_lost(run, logs, verdict, deep)


def _torn_after_lost(run: _Run, logs: Logs, verdict: Verdict, deep: bool) -> list[Violation]:
    """A run --repair has just marked LOST: what the scan left to its live writer is torn
    now. Its temporary files are moved aside in the same pass (what cannot be, is
    returned); with ``deep``, a torn last metrics line is named (invariant 4)."""
    if not run.marked_lost:
        return []
    found = [v for v in run._temporaries() if not _repair_run(run, v, logs, verdict)]
    if deep:
        found += run._torn_lines()
    return found


def _repair_run(run: _Run, v: Violation, logs: Logs, verdict: Verdict) -> bool:
    """Fix ``v`` if it is safe to (then ``True``)."""
    if not v.repairable:
        return False
    if v.invariant == 3:
        return _mark_lost(run, verdict)
    if v.invariant == 1:  # a run folder a killed submit left unfinished
        if not _unlist(logs, int(run.rid), verdict):
            return False
        _move_aside(logs, run.path, verdict, f"run {run.rid} (never made)")
        return True
    rel = v.what.split(" ", 1)[0]
    target = run.path / rel
    if target.exists():
        _move_aside(logs, target, verdict, f"run {run.rid}: {rel}")
        return True
    return False


# What names one attempt of a run: when any of it changed since the scan, another
# process (a retry, a requeued job) took the run over, and it is not lost.
_ATTEMPT = ("pid", "host", "job_id", "start_time", "attempt_start_time")


def _unlist(logs: Logs, rid: int, verdict: Verdict) -> bool:
    """Take run ``rid``, about to be moved aside as never made, out of the sweep records
    that list it without having placed it, so that a later run given its id is not taken
    for that sweep's; ``False`` (nothing changed) while a command holds one of those
    sweeps' locks: a submit still at work on the run."""

    def drop(fresh: sweep_record.SweepRecord) -> None:
        placed = {r for s in fresh.submissions for r in (fresh.runs if s.runs is None else s.runs)}
        if rid not in placed:
            fresh.runs = [r for r in fresh.runs if r != rid]

    listing = []
    for sweep_id in sweep_record.sweep_ids(logs.path):
        try:
            if rid in sweep_record.load(logs.path, sweep_id).runs:
                listing.append(sweep_id)
        except sweep_record.SweepOpsError:
            continue  # a damaged record: invariant 6 names it
    busy = [s for s in listing if sweep_record.held(logs.path, s)]
    if busy:
        verdict.notes.append(f"run {rid}: sweep {busy[0]} is being changed now; not moved")
        return False
    for sweep_id in listing:
        sweep_record.update(logs.path, sweep_id, drop, by="runlab verify")
        verdict.repaired.append(f"run {rid}: left out of sweep {sweep_id} (it never ran)")
    return True


def _mark_lost(run: _Run, verdict: Verdict, writer_gone: bool = False) -> bool:
    """Mark ``run`` LOST under its lock, unless a new attempt took it over since the scan."""
    rd = RunDir(run.path)
    try:
        rd.acquire(writer_gone=writer_gone)
    except RunBusyError:
        return False  # a live writer after all
    try:
        info = rd.read_info()
        if info.get("status") != Status.RUNNING:
            return True
        seen = run.info or {}
        if any(info.get(k) != seen.get(k) for k in _ATTEMPT):
            verdict.notes.append(
                f"run {run.rid}: a new attempt began while verify ran; its writer speaks for "
                "it now (not marked LOST)"
            )
            return True
        reason = f"{run.lost_reason} (found by runlab verify)"
        rd.update_info(
            status=Status.LOST,
            error={"type": "JobLost", "message": reason},
            end_time=info.get("end_time") or now_iso(),
            reconciled={"time": now_iso(), "by": "runlab verify", "was": "RUNNING"},
        )
    finally:
        rd.release()
    verdict.repaired.append(f"run {run.rid}: marked LOST ({run.lost_reason})")
    run.status, run.marked_lost = Status.LOST, True
    return True


def _move_aside(logs: Logs, path: Path, verdict: Verdict, what: str) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rel = path.relative_to(logs.path)
    dest = logs.path / ASIDE / stamp / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(dest))
    verdict.repaired.append(f"{what}: moved to {dest.relative_to(logs.path)}")
