"""A sweep's record, typed: :class:`SweepRecord`, its id (:class:`SweepId`), its JSON Schema,
and its one loader and saver, under the sweep's lock.

Every ``runlab submit`` (and ``runlab tune``) writes ``<logs>/.sweeps/<sweep_id>.json``
atomically, beside a folder ``<logs>/.sweeps/<sweep_id>/`` holding the jobs files and
the jobs' logs. The record (format 3, :data:`SCHEMA`)::

    format: 3, sweep_id, created, host, user, cwd, command (argv as typed), task,
    overrides, logs, launcher (the launcher config, with its name), limits (or null),
    runs: [run ids, in sweep order], tune (the study's name, for `runlab tune`),
    submissions: [                       # the submit, then one per `runlab retry`
      {n, kind: submit|retry|tune, time, runs (ids; null: all of the sweep's),
       code: [{commit, branch, dirty, snapshot, script, env}],   # a job's "code" indexes it
       jobs_file, log_dir,
       arrays: [{job_id, first, count}]  # SLURM: run i of the submission is task
                                         # i-first of the array holding it
       workers: [{pid}]}                 # local: the worker processes
    ],
    cancelled: [{time, runs}]            # `runlab cancel`
    code: [{commit, ...}]                # the code pinned when the runs were made (absent
                                         # in older records): what `runlab retry` runs
                                         # for a run that no submission placed

``runlab submit`` saves the record, with its runs and pinned ``code``, before it writes the
runs, and holds the sweep's lock until its submission is recorded: a submit killed at
any point leaves its runs in a record (``runlab status`` closes those no job will run:
:func:`runlab.sweep.ops.reconcile`).

**Paths into the logs directory** (``jobs_file``, ``log_dir``, a code entry's
``snapshot`` and ``script``, and each part of an ``env`` value, split at ``:``, such as
the jobs' ``RUNLAB_LOGS``) are written as ``<logs>`` or ``<logs>/...``: a literal prefix
that stands for the logs directory the record is read from. A moved or renamed logs
directory therefore needs no rewriting, however often it moves and whatever saved the
record in between. ``logs`` keeps where the sweep was submitted, as ``cwd`` and
``host`` do; it is only shown. Loaded, a record holds absolute paths again.

Format 2 held those paths absolute; :func:`relocated` moves them from its ``logs``
field to the directory it is read from. That field is the submit's place, so a format-2
record saved after a move (the next save writes format 3) would have been misread
after the next one. Format 1 (runlab before the typed record) kept the code entry as
two parallel lists (``code``: commit, branch, dirty, snapshot; ``codes``: script,
env). Both still load, and are saved back as format 3.
A record that is damaged, hand-edited to a wrong type or a missing field, or of an
unknown format is one :class:`SweepRecordError` naming the file and the field.

Commands that change a record hold an ``flock`` on ``<logs>/.sweeps/<sweep_id>.lock``
(:func:`exclusive`; the file names the holder) and work on the record as read under
it (:func:`update`), so two of them at once neither lose an update nor submit one run
twice.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from runlab.errors import UserError
from runlab.logs import SWEEPS
from runlab.record import secrets
from runlab.record.files import flock_held, write_atomic

FORMAT = 3
OLD_FORMATS = (1, 2)
#: How a format-3 record writes the logs directory it is in, at the start of a path.
LOGS_MARK = "<logs>"
TODO = "fix or delete it"


class SweepOpsError(UserError):
    """A sweep operation that cannot be done as asked; one line for the user."""


class SweepRecordError(SweepOpsError):
    """A sweep (or study) record that cannot be read: the file, the field, what to do."""

    def __init__(self, path: Path | str, field_: str, problem: str, todo: str = TODO) -> None:
        self.path = str(path)
        self.field = field_
        self.problem = problem
        what = f"damaged record: {field_} {problem}" if field_ else f"damaged record: {problem}"
        super().__init__(what, where=path, todo=todo)


# ------------------------------------------------------------------------ id
_ID = re.compile(r"(?P<stamp>\d{8}-\d{6})-(?P<label>\S+)\Z")


@dataclass(frozen=True)
class SweepId:
    """``YYYYmmdd-HHMMSS-<label>``: when the sweep was made, then its first run id (a
    submit) or ``tune-<study>`` (a tune study). Ids sort by time, then first run."""

    stamp: str
    label: str

    @classmethod
    def new(cls, first_run: int | None = None, study: str | None = None) -> SweepId:
        """A fresh id for a sweep whose first run is ``first_run``, or for ``study``."""
        if (first_run is None) == (study is None):
            raise ValueError("a sweep id needs either its first run or its study")
        label = str(int(first_run)) if first_run is not None else f"tune-{study}"
        return cls(f"{datetime.now():%Y%m%d-%H%M%S}", label)

    @classmethod
    def parse(cls, text: str) -> SweepId:
        """The id ``text`` (both formats runlab has written); ``ValueError`` otherwise."""
        found = _ID.match(str(text))
        if found is None or "/" in text:
            raise ValueError(f"{text!r} is not a sweep id (YYYYmmdd-HHMMSS-FIRSTRUN)")
        return cls(found["stamp"], found["label"])

    @property
    def first_run(self) -> int | None:
        return int(self.label) if self.label.isdigit() else None

    @property
    def study(self) -> str | None:
        return self.label[len("tune-") :] if self.label.startswith("tune-") else None

    def sort_key(self) -> tuple[str, int]:
        return (self.stamp, self.first_run or 0)

    def __str__(self) -> str:
        return f"{self.stamp}-{self.label}"


def sort_key(name: str) -> tuple[str, int]:
    """Sort key of a record's file name: a name that is no id sorts first."""
    try:
        return SweepId.parse(name).sort_key()
    except ValueError:
        return ("", 0)


# -------------------------------------------------------------------- record
@dataclass
class Code:
    """The code a submission's jobs run: the pinned commit, its snapshot, and how to run it."""

    commit: str | None
    branch: str | None
    dirty: bool
    snapshot: str
    script: str
    env: dict[str, str]


@dataclass
class Array:
    """A SLURM job array: runs ``first .. first+count-1`` of the submission."""

    job_id: str
    first: int
    count: int


@dataclass
class Worker:
    """A local worker process."""

    pid: int


@dataclass
class Submission:
    """One handing of runs to the launcher: the submit, a retry, a wave of tune trials."""

    n: int
    kind: str
    time: str
    runs: list[int] | None  # None: every run of the sweep (the submit)
    code: list[Code]
    jobs_file: str
    log_dir: str
    arrays: list[Array] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)


@dataclass
class Cancel:
    """A `runlab cancel`: when, and which runs."""

    time: str
    runs: list[int]


@dataclass
class SweepRecord:
    """What ``<logs>/.sweeps/<sweep_id>.json`` holds (see the module)."""

    sweep_id: str
    created: str
    host: str
    user: str
    cwd: str
    command: list[str]
    task: str
    overrides: list[str]
    logs: str
    launcher: dict[str, Any]
    limits: dict[str, Any] | None
    runs: list[int]
    submissions: list[Submission] = field(default_factory=list)
    cancelled: list[Cancel] = field(default_factory=list)
    tune: str | None = None
    code: list[Code] = field(default_factory=list)  # pinned when the runs were made
    format: int = FORMAT  # the format it was read in (it is written in FORMAT)

    @property
    def launcher_name(self) -> str:
        return str(self.launcher["name"])

    def to_json(self) -> dict[str, Any]:
        """The record as this runlab writes it: the current format, whichever it was read
        in (paths as they are: :func:`save` writes those into the logs directory marked)."""
        data = asdict(self)
        data["format"] = FORMAT
        if data["tune"] is None:
            del data["tune"]
        if not data["code"]:
            del data["code"]
        return data


# -------------------------------------------------------------------- schema
def _obj(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [k for k in props if k not in optional],
        "properties": props,
    }


_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_IN_LOGS = f"a path; {LOGS_MARK}/... is relative to the logs directory the record is in"
_IDS = {"type": "array", "items": _INT}
_CODE = _obj(
    {
        "commit": {"type": ["string", "null"]},
        "branch": {"type": ["string", "null"]},
        "dirty": _BOOL,
        "snapshot": {**_STR, "description": _IN_LOGS},
        "script": {**_STR, "description": _IN_LOGS},
        "env": {
            "type": "object",
            "additionalProperties": _STR,
            "description": f"a part of a value ({LOGS_MARK}, or {LOGS_MARK}/... up to a ':') "
            "names the logs directory the record is in",
        },
    }
)
_SUBMISSION = _obj(
    {
        "n": _INT,
        "kind": _STR,
        "time": _STR,
        "runs": {"type": ["array", "null"], "items": _INT},
        "code": {"type": "array", "items": _CODE},
        "jobs_file": {**_STR, "description": _IN_LOGS},
        "log_dir": {**_STR, "description": _IN_LOGS},
        "arrays": {
            "type": "array",
            "items": _obj(
                {"job_id": {"type": ["string", "integer"]}, "first": _INT, "count": _INT}
            ),
        },
        "workers": {"type": "array", "items": _obj({"pid": _INT})},
    },
    optional=("arrays", "workers"),
)
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "runlab sweep record (<logs>/.sweeps/<sweep_id>.json)",
    **_obj(
        {
            "format": {"const": FORMAT},
            "sweep_id": _STR,
            "created": _STR,
            "host": _STR,
            "user": _STR,
            "cwd": _STR,
            "command": {"type": "array", "items": _STR},
            "task": _STR,
            "overrides": {"type": "array", "items": _STR},
            "logs": {**_STR, "description": "where the sweep was submitted (shown only)"},
            "launcher": _obj({"name": _STR}),
            "limits": {"type": ["object", "null"]},
            "runs": _IDS,
            "submissions": {"type": "array", "items": _SUBMISSION},
            "cancelled": {"type": "array", "items": _obj({"time": _STR, "runs": _IDS})},
            "tune": {"type": ["string", "null"]},
            "code": {
                "type": "array",
                "items": _CODE,
                "description": "the code pinned when the runs were made (what `runlab retry` "
                "runs for a run that no submission placed)",
            },
        },
        optional=("tune", "code"),
    ),
}


# ------------------------------------------------------------------- parsing
T = TypeVar("T")
_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    dict: "an object",
    list: "a list",
}


class FieldReader:
    """Typed reads of a JSON document; each failure a :class:`SweepRecordError` naming
    the field's path (``submissions[0].code[1].commit``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> SweepRecordError:
        return SweepRecordError(self.path, where, problem)

    def get(self, obj: dict[str, Any], key: str, kind: type, where: str, null: bool = False):
        name = f"{where}.{key}" if where else key
        if key not in obj:
            raise self.fail(name, "is missing")
        value = obj[key]
        if value is None and null:
            return None
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            shown = "null" if value is None else type(value).__name__
            raise self.fail(name, f"is {shown}, not {_NAMES[kind]}")
        return value

    def items(self, obj: dict[str, Any], key: str, kind: type, where: str, null: bool = False):
        """A list of ``kind`` (``(name, item)`` pairs)."""
        values = self.get(obj, key, list, where, null)
        if values is None:
            return None
        name = f"{where}.{key}" if where else key
        out = []
        for i, value in enumerate(values):
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                shown = "null" if value is None else type(value).__name__
                raise self.fail(f"{name}[{i}]", f"is {shown}, not {_NAMES[kind]}")
            out.append((f"{name}[{i}]", value))
        return out


def read_code(r: FieldReader, obj: dict[str, Any], where: str) -> Code:
    env = r.get(obj, "env", dict, where)
    for key, value in env.items():
        if not isinstance(value, str):
            raise r.fail(f"{where}.env.{key}", f"is {type(value).__name__}, not a string")
    return Code(
        commit=r.get(obj, "commit", str, where, null=True),
        branch=r.get(obj, "branch", str, where, null=True),
        dirty=r.get(obj, "dirty", bool, where),
        snapshot=r.get(obj, "snapshot", str, where),
        script=r.get(obj, "script", str, where),
        env=dict(env),
    )


def _submission(r: FieldReader, obj: dict[str, Any], where: str, old: bool) -> Submission:
    if old:  # format 1: code (commit, branch, dirty, snapshot) and codes (script, env)
        metas = r.items(obj, "code", dict, where)
        entries = r.items(obj, "codes", dict, where)
        if len(metas) != len(entries):
            raise r.fail(f"{where}.codes", f"has {len(entries)} entries, code {len(metas)}")
        codes = [read_code(r, {**m, **e}, n) for (n, m), (_, e) in zip(metas, entries, strict=True)]
    else:
        codes = [read_code(r, c, n) for n, c in r.items(obj, "code", dict, where)]
    arrays = []
    for name, a in r.items(obj, "arrays", dict, where) if "arrays" in obj else []:
        job_id = a.get("job_id")
        if not isinstance(job_id, (str, int)) or isinstance(job_id, bool):
            raise r.fail(f"{name}.job_id", "is missing or not a job id")
        arrays.append(
            Array(str(job_id), r.get(a, "first", int, name), r.get(a, "count", int, name))
        )
    workers = [
        Worker(r.get(w, "pid", int, name))
        for name, w in (r.items(obj, "workers", dict, where) if "workers" in obj else [])
    ]
    runs = r.items(obj, "runs", int, where, null=True) if "runs" in obj else None
    return Submission(
        n=r.get(obj, "n", int, where),
        kind=r.get(obj, "kind", str, where),
        time=r.get(obj, "time", str, where),
        runs=None if runs is None else [v for _, v in runs],
        code=codes,
        jobs_file=r.get(obj, "jobs_file", str, where),
        log_dir=r.get(obj, "log_dir", str, where),
        arrays=arrays,
        workers=workers,
    )


def parse(data: Any, path: Path) -> SweepRecord:
    """The record in ``data`` (decoded JSON of ``path``); a :class:`SweepRecordError` names
    the first field that is missing, null where it may not be, or of the wrong type."""
    r = FieldReader(path)
    if not isinstance(data, dict):
        raise r.fail("", f"it holds a JSON {type(data).__name__}, not a sweep record (an object)")
    version = r.get(data, "format", int, "")
    if version != FORMAT and version not in OLD_FORMATS:
        raise r.fail("format", f"is {version}: written by another runlab version; update runlab")
    old = version == 1  # the code entry as two lists
    launcher = r.get(data, "launcher", dict, "")
    r.get(launcher, "name", str, "launcher")
    limits = r.get(data, "limits", dict, "", null=True)
    subs = r.items(data, "submissions", dict, "")
    cancelled = r.items(data, "cancelled", dict, "")
    tune = r.get(data, "tune", str, "", null=True) if "tune" in data else None
    pinned = (
        [read_code(r, c, n) for n, c in r.items(data, "code", dict, "")] if "code" in data else []
    )
    return SweepRecord(
        sweep_id=r.get(data, "sweep_id", str, ""),
        created=r.get(data, "created", str, ""),
        host=r.get(data, "host", str, ""),
        user=r.get(data, "user", str, ""),
        cwd=r.get(data, "cwd", str, ""),
        command=[v for _, v in r.items(data, "command", str, "")],
        task=r.get(data, "task", str, ""),
        overrides=[v for _, v in r.items(data, "overrides", str, "")],
        logs=r.get(data, "logs", str, ""),
        launcher=dict(launcher),
        limits=None if limits is None else dict(limits),
        runs=[v for _, v in r.items(data, "runs", int, "")],
        submissions=[_submission(r, s, n, old) for n, s in subs],
        cancelled=[
            Cancel(r.get(c, "time", str, n), [v for _, v in r.items(c, "runs", int, n)])
            for n, c in cancelled
        ],
        tune=tune,
        code=pinned,
        format=version,
    )


# ------------------------------------------------------------------ on disk
def folder(logs: Path | str, sweep_id: str) -> Path:
    """``<logs>/.sweeps/<sweep_id>/``: the sweep's jobs files and job logs."""
    return Path(logs) / SWEEPS / str(sweep_id)


def record_path(logs: Path | str, sweep_id: str) -> Path:
    return Path(logs) / SWEEPS / f"{sweep_id}.json"


def sweep_ids(logs: Path | str) -> list[str]:
    """Every sweep of ``logs``, oldest first (ids start with their time)."""
    root = Path(logs) / SWEEPS
    try:
        names = [p.name[:-5] for p in root.iterdir() if p.name.endswith(".json")]
    except OSError:
        return []
    return sorted(names, key=lambda n: (sort_key(n), n))


def load(logs: Path | str, sweep_id: str) -> SweepRecord:
    """The record of ``sweep_id``, its paths into the logs directory naming files in
    ``logs``; a :class:`SweepOpsError` if there is none, a :class:`SweepRecordError` if it
    cannot be read."""
    path = record_path(logs, sweep_id)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        known = sweep_ids(logs)
        hint = f"; known: {', '.join(known[-5:])}" if known else ""
        raise SweepOpsError(
            f"no sweep {sweep_id!r} in {logs} (no {path}){hint}: see `runlab status --all`"
        ) from None
    except OSError as exc:
        raise SweepRecordError(path, "", f"cannot be read ({exc.strerror})", "check it") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        problem = "it is empty" if not raw.strip() else f"it is not valid JSON ({exc})"
        raise SweepRecordError(path, "", problem) from None
    record = parse(data, path)
    if record.format in OLD_FORMATS:
        return relocated(record, logs)
    here = os.path.abspath(logs)
    each_path(record, lambda text: rebased(text, LOGS_MARK, here))
    return record


def rebased(text: str, old: str, new: str) -> str:
    """``text`` with each part (split at ``:``, as in ``PYTHONPATH``) that is ``old`` or lies
    under it moved to ``new``; other parts as they were."""
    return os.pathsep.join(
        new + part[len(old) :] if part == old or part.startswith(old + os.sep) else part
        for part in text.split(os.pathsep)
    )


def each_path(record: SweepRecord, fn: Callable[[str], str]) -> None:
    """Replace, in place, every path of ``record`` that may point into the logs directory
    (jobs files, job logs, and each code entry's) by ``fn(path)``."""
    for sub in record.submissions:
        sub.jobs_file, sub.log_dir = fn(sub.jobs_file), fn(sub.log_dir)
        for code in sub.code:
            each_code_path(code, fn)
    for code in record.code:
        each_code_path(code, fn)


def each_code_path(code: Code, fn: Callable[[str], str]) -> None:
    """Replace, in place, a code entry's paths (snapshot, script, env values) by ``fn``."""
    code.snapshot, code.script = fn(code.snapshot), fn(code.script)
    code.env = {key: fn(value) for key, value in code.env.items()}


def places(logs: Path | str) -> list[str]:
    """The spellings a path into ``logs`` may start with: as given, and made absolute."""
    given = str(logs)
    given = given.rstrip(os.sep) or given
    return list(dict.fromkeys([given, os.path.abspath(given)]))


def marked(text: str, logs: Path | str) -> str:
    """``text`` with its paths into ``logs`` written ``<logs>/...`` (format 3)."""
    for place in places(logs):
        text = rebased(text, place, LOGS_MARK)
    return text


def relocated(record: SweepRecord, logs: Path | str) -> SweepRecord:
    """A record of format 1 or 2 (absolute paths) as found in ``logs``: where the logs
    directory was moved or renamed since, every path the record holds into the old
    directory (job logs, jobs files, code snapshots, the jobs' ``RUNLAB_LOGS``) names the
    same file in ``logs``, so that ``runlab logs`` finds the output and ``runlab retry``
    runs the code that moved with it. The old directory is the ``logs`` field (the
    submit's place) and, as a format-2 record saved after a move kept that field but
    held paths into the place it was then, the one each submission's ``log_dir``
    (``<old>/.sweeps/<sweep_id>/logs``) names."""
    new = os.path.abspath(logs)
    olds = {os.path.abspath(record.logs)} if record.logs else set()
    tail = os.sep + os.path.join(SWEEPS, record.sweep_id, "logs")
    olds |= {
        os.path.abspath(s.log_dir[: -len(tail)])
        for s in record.submissions
        if s.log_dir.endswith(tail) and len(s.log_dir) > len(tail)
    }
    bases = sorted(olds | {new}, key=len, reverse=True)

    def moved(text: str) -> str:  # each part once, from the deepest base it lies under
        parts = []
        for part in text.split(os.pathsep):
            base = next((b for b in bases if part == b or part.startswith(b + os.sep)), new)
            parts.append(new + part[len(base) :] if base != new else part)
        return os.pathsep.join(parts)

    each_path(record, moved)
    return record


def save(logs: Path | str, record: SweepRecord) -> None:
    """Write ``record`` atomically (a reader sees the old record or the new one), in
    format 3: its paths into ``logs`` as ``<logs>/...``. ``record`` is left as it was."""
    path = record_path(logs, record.sweep_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = copy.deepcopy(record)
    each_path(stored, lambda text: marked(text, logs))
    data = secrets.redact(stored.to_json())  # submit refuses credentials; this is the net
    write_atomic(path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


_HELD: dict[str, int] = {}  # lock files this process holds, and how deeply


@contextlib.contextmanager
def exclusive(
    logs: Path | str, sweep_id: str, by: str = "runlab", wait_s: float = 60.0
) -> Iterator[SweepRecord | None]:
    """Hold the sweep's lock; yield its record as read under the lock (``None`` before the
    first save). Re-entrant within a process; another process waits up to ``wait_s``."""
    path = Path(logs) / SWEEPS / f"{sweep_id}.lock"
    key = str(path)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield _load_if_any(logs, sweep_id)
        finally:
            _HELD[key] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        why = "the logs directory is read-only" if exc.errno == errno.EROFS else exc.strerror
        raise SweepOpsError(
            f"cannot change sweep {sweep_id}: {path}: {why}; run this where the logs "
            "directory is writable"
        ) from None
    try:
        _lock(fd, sweep_id, wait_s)
        note = f"{by}, pid {os.getpid()} on {socket.gethostname()}".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
        _HELD[key] = 1
        try:
            yield _load_if_any(logs, sweep_id)
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # and with it the lock


def held(logs: Path | str, sweep_id: str) -> bool:
    """Whether another process holds the sweep's lock now: a command is changing the
    sweep, or a ``runlab submit`` is still making and queueing its runs. (This process's
    own hold is not counted: a command that holds it is not waiting on itself.)"""
    path = Path(logs) / SWEEPS / f"{sweep_id}.lock"
    return str(path) not in _HELD and flock_held(path)


def _lock(fd: int, sweep_id: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "?"
                raise SweepOpsError(
                    f"sweep {sweep_id} is being changed by another command ({holder}) "
                    f"for over {wait_s:.0f} s: wait for it to end, then try again"
                ) from None
            time.sleep(0.05)


def _load_if_any(logs: Path | str, sweep_id: str) -> SweepRecord | None:
    return load(logs, sweep_id) if record_path(logs, sweep_id).exists() else None


def update(
    logs: Path | str, sweep_id: str, fn: Callable[[SweepRecord], T], by: str = "runlab"
) -> T:
    """Under the sweep's lock: ``fn(record as read now)`` changes it, then it is saved;
    ``fn``'s result is returned. Two commands at once never lose an update."""
    with exclusive(logs, sweep_id, by=by) as fresh:
        if fresh is None:
            fresh = load(logs, sweep_id)  # no record: the one-line "no sweep" error
        result = fn(fresh)
        save(logs, fresh)
        return result
