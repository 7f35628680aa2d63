"""A sweep from the command line to the queue: expand, pin the code, pre-create runs, submit.

Order matters for safety: everything that can fail on bad input (overrides,
configs, launcher settings, the git state) is checked before the first run
directory is created, and a refused submission marks its runs ``FAILED``
instead of leaving them ``QUEUED`` forever.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from runlab.errors import UserError
from runlab.logs import LOGS_ENV, Logs, note_change
from runlab.record import environment, secrets
from runlab.record.files import dumps_json, now_iso
from runlab.record.rundir import RunDir, allocate
from runlab.record.yamlfast import Emitter
from runlab.status import Status, written
from runlab.sweep import backends, launcher, ops
from runlab.sweep.backends.base import Placed
from runlab.sweep.expand import Job, task_spec
from runlab.sweep.points import expand
from runlab.sweep.record import Code, SweepId, SweepRecord, exclusive
from runlab.sweep.snapshot import CodeState, CodeStateError, code_state, snapshot


@dataclass
class Sweep:
    """A prepared sweep: its jobs, launcher settings and pinned code, nothing written yet.
    (``code`` is replaced when ``runlab submit`` commits the tree for the user.)"""

    script: Path
    jobs: list[Job]
    launcher: dict[str, Any]
    code: CodeState
    logs: Path
    arguments: list[str]


@dataclass(frozen=True)
class Created:
    """A sweep whose runs exist (``QUEUED``) and whose record is saved, not yet submitted;
    ``hold`` holds the sweep's lock until :func:`launch` or :func:`abandon` ends."""

    record: SweepRecord
    runs: list[RunDir]
    code: Code
    limits: Any
    hold: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


@dataclass(frozen=True)
class Launched:
    """A submitted sweep: its record as saved, and the jobs or workers running it."""

    record: SweepRecord
    runs: list[RunDir]
    placed: Placed


def split_arguments(arguments: list[str]) -> tuple[str | None, list[str], list[str]]:
    """Separate ``launcher=NAME`` and ``launcher.KEY=VALUE`` from the task's overrides."""
    name, launcher_overrides, task_overrides = None, [], []
    for arg in arguments:
        if arg.startswith("launcher="):
            name = arg.split("=", 1)[1]
        elif arg.startswith("launcher."):
            launcher_overrides.append(arg[len("launcher.") :])
        else:
            task_overrides.append(arg)
    return name, launcher_overrides, task_overrides


def refuse_credentials(overrides: list[str]) -> None:
    """A credential on the command line would be kept in clear in the sweep's job files,
    and a redacted one could not be retried: refuse it, and say how to pass it."""
    for override in overrides:
        if any(True for _ in secrets.find([override])):
            key = override.partition("=")[0] or "an override"
            raise UserError(
                f"{key}: this override holds a credential (runlab keeps no credential in clear)",
                todo="pass it through the environment: export NAME=... and set "
                f"{key.lstrip('+~')}=${{oc.env:NAME}} in the task's config",
            )


def prepare(
    script: Path | str,
    arguments: list[str],
    launcher_name: str | None = None,
    logs: Path | str | None = None,
    allow_dirty: bool = False,
) -> Sweep:
    """Expand and check a sweep. Raises with a message a user can act on; writes nothing."""
    name_arg, launcher_overrides, overrides = split_arguments(arguments)
    refuse_credentials(overrides)
    spec = task_spec(script)
    name = launcher_name or name_arg or launcher.default_launcher()
    cfg = launcher.load_config(name, spec.config_dir, launcher_overrides)
    jobs = expand(spec, overrides)
    if logs is None:
        logs = jobs[0].config.get("runlab", {}).get("logs") if jobs else None
    logs = Logs.resolve(logs).path
    code = code_state(spec.script, exclude=(logs,))
    if code.dirty and not allow_dirty:
        listing = "\n".join(f"  {line}" for line in code.changes[:30])
        more = f"\n  ... and {len(code.changes) - 30} more" if len(code.changes) > 30 else ""
        raise CodeStateError(
            f"the git tree at {code.root} has uncommitted changes:\n{listing}{more}\n"
            "Jobs are pinned to a commit so that results can be traced to code. Commit them "
            "(git add -A && git commit), or pass --allow-dirty to record the diff in every run."
        )
    return Sweep(
        script=spec.script, jobs=jobs, launcher=cfg, code=code, logs=logs, arguments=overrides
    )


def code_entry(code: CodeState, script: Path, logs: Path) -> Code:
    """Snapshot ``code`` (once per version) and describe how jobs run ``script`` from it."""
    code_dir = snapshot(code, Logs(Path(logs)).snapshots)
    src = code_dir / "src"
    pythonpath = os.pathsep.join(
        p for p in (str(src) if src.is_dir() else "", os.environ.get("PYTHONPATH", "")) if p
    )
    env = {
        LOGS_ENV: str(logs),
        environment.CODE_COMMIT_ENV: code.commit,
        environment.CODE_BRANCH_ENV: code.branch or "",
        environment.CODE_DIRTY_ENV: "1" if code.dirty else "0",
        environment.CODE_SNAPSHOT_ENV: str(code_dir),
    }
    if code.record().get("problems"):  # untracked files left out: every run says so
        env[environment.CODE_RECORD_ENV] = code.record_json()
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return Code(
        commit=code.commit,
        branch=code.branch,
        dirty=bool(code.dirty),
        snapshot=str(code_dir),
        script=str(code_dir / script.relative_to(code.root)),
        env=env,
    )


def check_limits(sweep: Sweep) -> Any:
    """Read the scheduler's limits, plan the arrays and have the scheduler validate the
    submission: raise before anything is written. Returns the limits (``None``: none)."""
    backend = backends.get(sweep.launcher["name"])
    limits = backend.limits(sweep.launcher)
    backend.plan(len(sweep.jobs), limits)
    backend.validate(sweep.launcher, len(sweep.jobs), limits)
    return limits


def _write(path: str, data: bytes) -> None:
    # A brand-new directory that no reader takes for a run before info.json exists:
    # plain writes, no temporary file and rename per file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class _Json:
    """``dumps_json`` for many configs sharing sub-dicts: the strict-JSON check is remembered."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, bool]] = {}

    def _plain(self, obj: Any) -> bool:
        if isinstance(obj, (dict, list)):
            hit = self._memo.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1]
            if isinstance(obj, dict):
                ok = all(type(k) is str for k in obj) and all(self._plain(v) for v in obj.values())
            else:
                ok = all(self._plain(v) for v in obj)
            self._memo[id(obj)] = (obj, ok)
            return ok
        if isinstance(obj, float):
            return math.isfinite(obj)
        if isinstance(obj, int) and not isinstance(obj, bool):
            return -(2**63) <= obj < 2**64
        return obj is None or isinstance(obj, (str, bool))

    def dumps(self, data: Any) -> bytes:
        if self._plain(data):
            return orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)
        return dumps_json(data)


def create_runs(sweep: Sweep) -> Created:
    """Snapshot the code and pre-create one ``QUEUED`` run directory per job.

    The sweep's record, naming the runs and the pinned code, is saved first, and its
    lock held until the submission is recorded (:class:`Created`): a submit killed at
    any point leaves its runs in a record, which ``runlab status`` closes when no job
    will run them (``runlab.sweep.ops.reconcile``) and ``runlab retry`` reruns.

    One write per file, in an order that keeps every reader safe: ``config``
    (JSON, then YAML), ``overrides.yaml``, ``info.yaml``, and ``info.json`` last,
    so a directory is a run with its whole record or not a run yet (a reader that
    catches ``info.json`` half-written falls back to the complete ``info.yaml``).
    The configs of a sweep share their unchanged parts (:mod:`runlab.sweep.points`), and
    so does the writing of their YAML and JSON (:mod:`runlab.record.yamlfast`).
    """
    limits = check_limits(sweep)
    code = code_entry(sweep.code, sweep.script, sweep.logs)
    hold = contextlib.ExitStack()
    try:
        return _create(sweep, limits, code, hold)
    except BaseException:
        hold.close()
        raise


def _create(sweep: Sweep, limits: Any, code: Code, hold: contextlib.ExitStack) -> Created:
    paths = allocate(sweep.logs, len(sweep.jobs))
    runs = [RunDir(p) for p in paths]
    sweep_id = SweepId.new(first_run=int(runs[0].run_id)) if runs else ""
    record = ops.new_record(
        sweep_id,
        sweep.script,
        sweep.arguments,
        sweep.logs,
        sweep.launcher,
        [int(r.run_id) for r in runs],
        limits.as_dict() if limits is not None else None,
        code=[code],
    )
    if runs:
        hold.enter_context(exclusive(sweep.logs, str(sweep_id), by="runlab submit"))
        ops.save(sweep.logs, record)
    submitted = now_iso()
    common = {
        "status": written(Status.QUEUED),  # written here, not through RunDir: checked the same
        "task": str(sweep.script),
        "sweep_id": str(sweep_id),
        "sweep_index": 0,
        "launcher": sweep.launcher["name"],
        "submitted_time": submitted,
        "submit_command": [sys.executable, "-m", "runlab", "submit", *sys.argv[2:]],
        "code_commit": sweep.code.commit,
        "code_snapshot": code.snapshot,
    }
    diff = sweep.code.diff if sweep.code.dirty else None
    yml, jsn = Emitter(), _Json()
    env = secrets.env_values()
    for index, (path, job) in enumerate(zip(paths, sweep.jobs, strict=True)):
        meta = f"{path}/metadata"
        os.mkdir(meta)
        config = job.config
        if any(True for _ in secrets.find(config, env=env)):  # ${oc.env:...} resolved here
            config = secrets.redact(config)  # (only then: the configs share their parts)
        _write(f"{meta}/config.json", jsn.dumps(config))
        _write(f"{meta}/config.yaml", yml.dump(config).encode())
        _write(f"{meta}/overrides.yaml", yml.dump(job.overrides).encode())
        if diff is not None:
            _write(f"{meta}/git.diff", diff)
        info = {"run_id": path.name, **common, "sweep_index": index}
        _write(f"{meta}/info.yaml", yml.dump(info).encode())
        _write(f"{meta}/info.json", jsn.dumps(info))
        note_change(path)  # a new run, perhaps under the id of one an index knew
    return Created(record, runs, code, limits, hold)


def launch(sweep: Sweep, created: Created) -> Launched:
    """Submit the pre-created runs and record the sweep; on refusal mark them ``FAILED``."""
    with created.hold:
        return _launch(sweep, created)


def _launch(sweep: Sweep, created: Created) -> Launched:
    try:
        record = ops.submit(
            sweep.logs,
            created.record,
            [r.run_id for r in created.runs],
            [created.code],
            created.limits,
            overrides=[job.overrides for job in sweep.jobs],
        )
    except Exception as exc:
        reason = str(exc)
        for run in created.runs:
            run.update_info(
                status=Status.FAILED, error={"type": "SubmissionError", "message": reason}
            )
        ops.save(sweep.logs, created.record)
        raise
    last = record.submissions[-1]
    return Launched(record, created.runs, Placed(last.arrays, last.workers))


def abandon(sweep: Sweep, created: Created, reason: str) -> None:
    """Close runs pre-created for a submission that will not happen (the user stopped
    ``runlab submit`` before any job was queued): ``INTERRUPTED`` with ``reason``, in a
    saved sweep record, so that ``runlab status`` shows them and ``runlab retry`` runs them."""
    with created.hold:
        for run in created.runs:
            run.update_info(
                status=Status.INTERRUPTED, error={"type": "Interrupted", "message": reason}
            )
        ops.save(sweep.logs, created.record)


def code_json(code: Code) -> dict[str, Any]:
    """A code entry as plain data (a tune study keeps it in its journal)."""
    return asdict(code)
