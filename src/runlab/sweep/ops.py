"""A sweep as a thing: keeping its runs true to the scheduler, cancelling, retrying.

The record itself (``<logs>/.sweeps/<sweep_id>.json``), its lock and its loading are
:mod:`runlab.sweep.record`'s. Every ``runlab submit`` writes it beside a folder
``<logs>/.sweeps/<sweep_id>/`` holding the jobs files and, in ``logs/``, submitit's
folder: its sbatch scripts (``<array>_submission.sh``), small pickles
(``<array>_<task>_submitted.pkl``) and the jobs' stdout/stderr
(``<array>_<task>_<rank>_log.out``/``.err``). A run's current job is given by the last
submission that holds it.

:func:`reconcile` compares the runs that still say ``QUEUED``/``RUNNING``/
``PREEMPTED`` with what the scheduler knows (``squeue`` first, then ``sacct``,
which lags; or the local workers' pids) and closes the ones whose job is gone:
``INTERRUPTED`` when it was cancelled, ``LOST`` when it ended or vanished
without the run recording an end, with the reason in ``info.error`` and
``info.reconciled``. A run a live process may still write is never touched.
"""

from __future__ import annotations

import getpass
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from runlab.record.files import dumps_json, flock_held, now_iso, read_yaml, write_atomic
from runlab.record.rundir import RunDir, live_holder
from runlab.status import ACTIVE, Status
from runlab.sweep import backends
from runlab.sweep.backends.base import Ending, JobState, LauncherError, Target
from runlab.sweep.jobs import CLAIM
from runlab.sweep.record import (
    FORMAT,
    Cancel,
    Code,
    Submission,
    SweepId,
    SweepOpsError,
    SweepRecord,
    SweepRecordError,
    exclusive,
    folder,
    held,
    load,
    record_path,
    save,
    sweep_ids,
    update,
)

__all__ = [
    "FORMAT",
    "Cancel",
    "SweepId",
    "SweepOpsError",
    "SweepRecord",
    "SweepRecordError",
    "exclusive",
    "folder",
    "load",
    "record_path",
    "save",
    "sweep_ids",
    "update",
]

# A job neither squeue nor sacct knows is taken as vanished only this long after its
# submission: sacct lags the controller, and a fresh job may not be listed yet.
VANISH_GRACE_S = 120.0


def latest(logs: Path) -> str | None:
    ids = sweep_ids(logs)
    return ids[-1] if ids else None


def new_record(
    sweep_id: SweepId | str,
    task: Path | str,
    overrides: list[str],
    logs: Path | str,
    launcher: dict[str, Any],
    runs: list[int],
    limits: dict[str, Any] | None = None,
    tune: str | None = None,
    code: list[Code] | None = None,
) -> SweepRecord:
    """The record of a sweep just made here (nothing submitted yet); ``code``: the code
    its runs were made for, pinned."""
    return SweepRecord(
        sweep_id=str(sweep_id),
        created=now_iso(),
        host=socket.gethostname(),
        user=getpass.getuser(),
        cwd=str(Path.cwd()),
        command=["runlab", *sys.argv[1:]],
        task=str(task),
        overrides=[str(o) for o in overrides],
        logs=str(logs),
        launcher=dict(launcher),
        limits=limits,
        runs=[int(r) for r in runs],
        tune=tune,
        code=list(code or []),
    )


def _run_dir(logs: Path, run_id: Any) -> RunDir:
    return RunDir(Path(logs) / str(run_id))


def submit(
    logs: Path,
    record: SweepRecord,
    run_ids: list[Any],
    codes: list[Code],
    limits: Any = None,
    code_of: list[int] | None = None,
    kind: str = "submit",
    overrides: list[list[str]] | None = None,
) -> SweepRecord:
    """Write the jobs file of ``run_ids`` and hand it to the launcher; record the submission
    (under the sweep's lock, into the record as it is then). Returns the record as saved,
    its new submission last; ``record`` (the caller's copy) is left as it was."""
    with exclusive(logs, record.sweep_id, by=f"runlab {kind}") as fresh:
        merged = _merged(record, fresh)
        _submit(logs, merged, run_ids, codes, limits, code_of, kind, overrides)
        return merged


def _merged(record: SweepRecord, fresh: SweepRecord | None) -> SweepRecord:
    """A new record: ``fresh`` (read under the lock, with what other commands appended
    since), plus the runs and launcher settings of the caller's ``record``."""
    if fresh is None:
        return replace(record, runs=list(record.runs), submissions=list(record.submissions))
    seen = set(fresh.runs)
    runs = [*fresh.runs, *(r for r in record.runs if r not in seen)]
    return replace(fresh, runs=runs, launcher=dict(record.launcher))


def _jobs_spec(logs, record, n, log_dir, codes, run_ids, code_of, overrides) -> dict[str, Any]:
    cfg = record.launcher
    return {
        "sweep_id": record.sweep_id,
        "submission": n,
        "python": sys.executable,  # this environment's (pixi's, through pixi)
        "cwd": record.cwd or str(Path.cwd()),
        "timeout_min": cfg.get("timeout_min"),
        "max_num_timeout": cfg.get("max_num_timeout", 0),
        "tasks_per_node": cfg.get("tasks_per_node")
        or 1,  # ranks per run (runlab.record.distributed)
        "cpus_per_task": cfg.get("cpus_per_task"),
        "log_dir": str(log_dir),
        **backends.get(record.launcher_name).spec_fields(cfg, log_dir, len(run_ids)),
        "codes": [{"script": c.script, "env": c.env} for c in codes],
        "jobs": [
            {
                "run_dir": str(Path(logs) / str(rid)),
                "overrides": overrides[i],
                "code": code_of[i] if code_of else 0,
            }
            for i, rid in enumerate(run_ids)
        ],
    }


def _submit(logs, record, run_ids, codes, limits, code_of, kind, overrides) -> Submission:
    cfg = record.launcher
    n = len(record.submissions) + 1
    base = folder(logs, record.sweep_id)
    log_dir = base / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    jobs_file = base / f"jobs-{n}.json"
    if overrides is None:
        overrides = _overrides(logs, run_ids)
    spec = _jobs_spec(logs, record, n, log_dir, codes, run_ids, code_of, overrides)
    write_atomic(jobs_file, dumps_json(spec))
    submission = Submission(
        n=n,
        kind=kind,
        time=now_iso(),
        runs=[int(r) for r in run_ids] if kind != "submit" else None,
        code=list(codes),
        jobs_file=str(jobs_file),
        log_dir=str(log_dir),
    )
    backend = backends.get(record.launcher_name)
    if limits is None:  # a retry: the cluster's limits now
        limits = backend.limits(cfg)
        try:
            backend.plan(len(run_ids), limits)
        except LauncherError as exc:
            raise SweepOpsError(exc.line()) from None
    placed = backend.submit(jobs_file, len(run_ids), cfg, log_dir, limits)
    submission.arrays, submission.workers = placed.arrays, placed.workers
    record.submissions.append(submission)
    save(logs, record)
    return submission


def _overrides(logs: Path, run_ids: list[Any]) -> list[list[str]]:
    out = []
    for rid in run_ids:
        path = Path(logs) / str(rid) / "metadata" / "overrides.yaml"
        data = read_yaml(path) if path.exists() else []
        out.append([str(x) for x in data or []])
    return out


# ------------------------------------------------------------------- location
def locate(record: SweepRecord) -> dict[int, tuple[Submission, int]]:
    """Each run's current submission and its position in it (the last submission wins)."""
    where: dict[int, tuple[Submission, int]] = {}
    for sub in record.submissions:
        for pos, rid in enumerate(sub.runs if sub.runs is not None else record.runs):
            where[rid] = (sub, pos)
    return where


def earlier_outputs(record: SweepRecord, run_id: int, err: bool = False) -> list[tuple[Path, str]]:
    """Where the run's earlier attempts wrote their stdout (or stderr), newest first, with
    each one's job: the submissions before :func:`locate`'s that handed the run over."""
    backend = backends.get(record.launcher_name)
    placed = []
    for sub in record.submissions:
        runs = sub.runs if sub.runs is not None else record.runs
        if int(run_id) in runs:
            placed.append((sub, runs.index(int(run_id))))
    return [
        (backend.log_file(sub, pos, int(run_id), err), backend.job_label(sub, pos))
        for sub, pos in reversed(placed[:-1])
    ]


def job_label(record: SweepRecord, sub: Submission, pos: int) -> str:
    """The job of the run at ``pos`` of ``sub``, as the sweep's scheduler names it."""
    return backends.get(record.launcher_name).job_label(sub, pos)


def log_file(logs: Path, record: SweepRecord, run_id: int, err: bool = False) -> Path | None:
    """Where the run's current job writes its stdout (or stderr)."""
    located = locate(record).get(int(run_id))
    if located is None:
        return None
    sub, pos = located
    return backends.get(record.launcher_name).log_file(sub, pos, int(run_id), err)


def sweep_of_run(logs: Path, run_id: int) -> SweepRecord | None:
    info = _run_dir(logs, run_id).read_info()
    sid = info.get("sweep_id")
    if not sid or not record_path(logs, sid).exists():
        return None
    return load(logs, sid)


# ------------------------------------------------------------------ liveness
def _may_be_written(run: RunDir, info: dict[str, Any]) -> bool:
    if flock_held(run.metadata / ".lock"):  # a process on this host writes it
        return True
    return info.get("host") == socket.gethostname() and live_holder(info)


def _age_s(iso: str | None) -> float:
    from datetime import datetime

    try:
        return time.time() - datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return float("inf")


# ----------------------------------------------------------------- reconcile
def targets(logs: Path, record: SweepRecord, run_ids: list[int] | None = None) -> list[Target]:
    """The sweep's runs (or ``run_ids``) that still say ``QUEUED``/``RUNNING``/``PREEMPTED``,
    each with the submission that placed it: what a backend is asked about."""
    located = locate(record)
    out = []
    for rid in run_ids if run_ids is not None else record.runs:
        rid = int(rid)
        run = _run_dir(logs, rid)
        info = run.read_info()
        if Status.of(info.get("status")) in ACTIVE and rid in located:
            sub, pos = located[rid]
            out.append(Target(rid, run, info, sub, pos))
    return out


def reconcile(
    logs: Path, record: SweepRecord, by: str = "runlab status", run_ids: list[int] | None = None
) -> list[dict]:
    """Close the runs whose job is gone; return ``[{run_id, status, reason}]`` for each change.

    ``run_ids``: only these runs of the sweep are looked at (``runlab status --watch``
    passes the ones it last saw active, so that it reads no ended run's record).
    """
    logs = Path(logs)
    changes = _never_queued(logs, record, by, run_ids)
    found = targets(logs, record, run_ids)
    if not found:
        return changes
    # Runs cancelled since their current submission (a retry after a cancel is not cancelled).
    cancelled = {
        t.run_id
        for t in found
        for c in record.cancelled
        if t.run_id in c.runs and c.time >= t.submission.time
    }
    backend = backends.get(record.launcher_name)
    states = backend.states(record, found)
    for t in found:
        state = states.get(t.run_id)
        if state is None or state.alive:
            continue
        verdict = _verdict(t, state, t.run_id in cancelled, backend.vanish_grace_s)
        if verdict is None:
            continue
        status, kind, reason = verdict
        info = t.run.read_info()  # again: the job may have written since
        if Status.of(info.get("status")) not in ACTIVE or _may_be_written(t.run, info):
            continue
        t.run.update_info(
            status=status,
            error={"type": kind, "message": reason},
            end_time=info.get("end_time") or now_iso(),
            reconciled={"time": now_iso(), "by": by, "was": info.get("status"), "job": state.word},
        )
        changes.append({"run_id": t.run_id, "status": status, "reason": reason})
    return changes


#: How long a sweep's record, or a jobs file, may wait for its submission to be recorded
#: (or the backend's grace, if longer) before the runs no submission placed are taken for
#: never queued.
SUBMIT_GRACE_S = 60.0


def _never_queued(
    logs: Path, record: SweepRecord, by: str, run_ids: list[int] | None
) -> list[dict]:
    """Close the runs of ``record`` that no submission placed and none will: a ``runlab
    submit`` killed after it saved the record (runs and pinned code) and before it
    recorded the jobs. While a command holds the sweep's lock (the submit at work), or
    the record or a jobs file of a submission not recorded is younger than the grace (a
    submit on a host the lock does not reach; a launcher that may have the jobs) nothing
    is closed; each run closed is ``INTERRUPTED``, and ``runlab retry`` runs it."""
    if record.tune is not None:  # a study's driver places its own runs
        return []
    located = locate(record)
    ids = [int(r) for r in (run_ids if run_ids is not None else record.runs)]
    unplaced = [r for r in ids if r not in located]
    if not unplaced or held(logs, record.sweep_id):
        return []
    queued = [r for r in unplaced if _run_dir(logs, r).read_info().get("status") == Status.QUEUED]
    if not queued:
        return []
    fresh = load(logs, record.sweep_id)  # a submission recorded since this copy was read
    jobs = folder(logs, record.sweep_id) / f"jobs-{len(fresh.submissions) + 1}.json"
    grace = max(backends.get(record.launcher_name).vanish_grace_s, SUBMIT_GRACE_S)
    for path in (record_path(logs, record.sweep_id), jobs):
        try:  # a record saved just now: its submit may be at work where locks do not reach
            if time.time() - path.stat().st_mtime < grace:
                return []
        except OSError:
            pass  # no jobs file: nothing was handed to a launcher
    located = locate(fresh)
    reason = (
        "its runlab submit ended (killed?) before it recorded the run's job: `runlab retry` runs it"
    )
    changes = []
    for rid in queued:
        run = _run_dir(logs, rid)
        info = run.read_info()
        ours = info.get("sweep_id") == record.sweep_id  # not another sweep's, under a reused id
        taken = (run.metadata / CLAIM).exists()  # a worker of the unrecorded jobs has it
        if rid in located or not ours or taken or info.get("status") != Status.QUEUED:
            continue
        if _may_be_written(run, info):
            continue
        run.update_info(
            status=Status.INTERRUPTED,
            error={"type": "Interrupted", "message": reason},
            end_time=now_iso(),
            reconciled={"time": now_iso(), "by": by, "was": Status.QUEUED, "job": "never queued"},
        )
        changes.append({"run_id": rid, "status": Status.INTERRUPTED, "reason": reason})
    return changes


def _verdict(
    t: Target, state: JobState, cancelled: bool, grace_s: float
) -> tuple[Status, str, str] | None:
    """What a run whose job has ended becomes: ``(status, error type, reason)``; ``None``
    while a job nobody knows may still be listed (within the backend's grace)."""
    was = t.info.get("status")
    if state.ending in (Ending.VANISHED, Ending.DELETED) and not cancelled:
        age = _age_s(t.submission.time)
        if age < grace_s:
            return None  # accounting may not list it yet
        if state.ending == Ending.DELETED:
            return Status.INTERRUPTED, "Cancelled", state.reason
        return (
            Status.LOST,
            "JobLost",
            f"{state.reason} ({age:.0f} s after it was submitted) and the run was still {was}",
        )
    if state.ending == Ending.CANCELLED or cancelled:
        if state.label:
            when = "before the run started" if was == Status.QUEUED else f"while the run was {was}"
            return Status.INTERRUPTED, "Cancelled", f"{state.label} was cancelled {when}"
        if was == Status.QUEUED:
            return Status.INTERRUPTED, "Cancelled", "the sweep was cancelled before the run started"
        return Status.INTERRUPTED, "Cancelled", state.reason
    if state.ending == Ending.TIMEOUT:
        return Status.TIMEOUT, "JobTimeout", state.reason
    if state.ending == Ending.ERROR:
        return Status.FAILED, "JobError", state.reason
    return Status.LOST, "JobLost", state.reason


# --------------------------------------------------------------------- cancel
def cancel(
    logs: Path, record: SweepRecord, run_ids: list[int] | None = None, wait_s: float = 30.0
) -> list[dict]:
    """Cancel the jobs of the sweep (or of ``run_ids``); returns the runs closed here."""
    logs = Path(logs)
    ids = [int(r) for r in (run_ids or record.runs)]

    def add(fresh: SweepRecord) -> SweepRecord:
        fresh.cancelled.append(Cancel(now_iso(), ids))
        return fresh

    found = targets(logs, record, ids)
    record = update(logs, record.sweep_id, add, by="runlab cancel")
    start = time.time()
    try:
        backends.get(record.launcher_name).cancel(record, found, run_ids is None, wait_s)
    except LauncherError as exc:
        raise SweepOpsError(exc.line()) from None
    closed = reconcile(logs, record, by="runlab cancel")
    # The scheduler has let the jobs go, but a killed task's processes can take a moment
    # to end (and their lock with them): ask again until they have, within wait_s.
    while time.time() < start + wait_s and targets(logs, record, [t.run_id for t in found]):
        time.sleep(0.5)
        closed += reconcile(logs, record, by="runlab cancel")
    return closed


# ---------------------------------------------------------------------- retry
def retry_candidates(
    logs: Path, record: SweepRecord, statuses: list[str], run_ids: list[int] | None = None
) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for rid in run_ids or record.runs:
        info = _run_dir(logs, rid).read_info()
        if info.get("status") in statuses:
            out.append((int(rid), info))
    return out


def retry(
    logs: Path,
    record: SweepRecord,
    picked: list[tuple[int, dict[str, Any]]],
    current: Code | None = None,
) -> SweepRecord:
    """Resubmit ``picked`` runs into their own directories; with ``current`` (a code entry
    from :func:`runlab.sweep.submission.code_entry`) they run that code, else their own.
    Returns the record as saved, the retry its last submission."""
    logs = Path(logs)
    codes: list[Code] = []
    code_of: list[int] = []
    # By the snapshot's name (its content hash): the run's info keeps the path it was
    # started from, which names the old place if the logs directory has moved since.
    pinned = [*record.code, *(code for sub in record.submissions for code in sub.code)]
    known = {Path(code.snapshot).name: code for code in pinned}
    for rid, info in picked:
        snapshot = Path(str(info.get("code_snapshot") or "")).name
        code = current if current is not None else known.get(snapshot)
        if code is None:
            raise SweepOpsError(
                f"run {rid}: its code snapshot {info.get('code_snapshot')} is not in the "
                f"sweep record {record_path(logs, record.sweep_id)}: retry it with "
                "--code current"
            )
        if code not in codes:
            codes.append(code)
        code_of.append(codes.index(code))
    now = now_iso()
    for (rid, info), index in zip(picked, code_of, strict=True):
        run = _run_dir(logs, rid)
        code = codes[index]
        commits = list(info.get("code_commits") or [info.get("code_commit")])
        if code.commit != commits[-1]:
            commits.append(code.commit)
        (run.metadata / CLAIM).unlink(missing_ok=True)
        run.update_info(
            status=Status.QUEUED,
            previous_status=info.get("status"),
            previous_error=info.get("error"),
            error=None,
            reconciled=None,
            retries=int(info.get("retries") or 0) + 1,
            retried_time=now,
            code_commit=code.commit,
            code_commits=commits,
            code_snapshot=code.snapshot,
        )
    try:
        return submit(
            logs, record, [rid for rid, _ in picked], codes, code_of=code_of, kind="retry"
        )
    except Exception as exc:
        for rid, info in picked:
            _run_dir(logs, rid).update_info(
                status=info.get("status"),
                error={"type": "SubmissionError", "message": f"retry refused: {exc}"},
            )
        raise
