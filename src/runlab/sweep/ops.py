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
import os
import signal
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from runlab.record.files import dumps_json, now_iso, read_yaml, write_atomic
from runlab.record.rundir import RunDir, live_holder
from runlab.status import ACTIVE, Status
from runlab.sweep import launcher, slurm
from runlab.sweep.jobs import CLAIM, claim
from runlab.sweep.record import (
    FORMAT,
    Array,
    Cancel,
    Code,
    Submission,
    SweepId,
    SweepOpsError,
    SweepRecord,
    SweepRecordError,
    Worker,
    exclusive,
    folder,
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
) -> SweepRecord:
    """The record of a sweep just made here (nothing submitted yet)."""
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
        "python": launcher.python_executable(),
        "cwd": record.cwd or str(Path.cwd()),
        "timeout_min": cfg.get("timeout_min"),
        "max_num_timeout": cfg.get("max_num_timeout", 0),
        "tasks_per_node": cfg.get("tasks_per_node")
        or 1,  # ranks per run (runlab.record.distributed)
        "cpus_per_task": cfg.get("cpus_per_task"),
        "log_dir": str(log_dir),
        "log_pattern": str(log_dir / "%A_%a_0_log"),  # submitit's stdout/stderr of task 0
        "worker_logs": [
            str(log_dir / f"worker-{w}.out")
            for w in range(max(1, min(int(cfg.get("max_parallel") or 1), len(run_ids))))
        ]
        if record.launcher_name == "local"
        else [],
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
    if record.launcher_name == "slurm":
        if limits is None:
            limits = slurm.read_limits(cfg.get("account"), cfg.get("qos"))
            try:
                slurm.plan_arrays(len(run_ids), limits)
            except slurm.SlurmError as exc:
                raise SweepOpsError(str(exc)) from None
        handles = launcher.submit_slurm(jobs_file, len(run_ids), cfg, log_dir, limits)
        submission.arrays = [Array(str(h.job_id), h.first, h.count) for h in handles]
    else:
        handles = launcher.start_local(jobs_file, cfg, len(run_ids), log_dir)
        submission.workers = [Worker(int(h.job_id)) for h in handles]
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


def job_of(sub: Submission, pos: int) -> tuple[str, int] | None:
    """``(array_job_id, task)`` of the run at ``pos`` of a SLURM submission."""
    for array in sub.arrays:
        if array.first <= pos < array.first + array.count:
            return array.job_id, pos - array.first
    return None


def job_label(sub: Submission, pos: int) -> str:
    job = job_of(sub, pos)
    if job:
        return f"{job[0]}_{job[1]}"
    pids = [str(w.pid) for w in sub.workers]
    return f"local workers {', '.join(pids)}" if pids else "?"


def log_file(logs: Path, record: SweepRecord, run_id: int, err: bool = False) -> Path | None:
    """Where the run's current job writes its stdout (or stderr)."""
    located = locate(record).get(int(run_id))
    if located is None:
        return None
    sub, pos = located
    suffix = ".err" if err else ".out"
    log_dir = Path(sub.log_dir)
    job = job_of(sub, pos)
    if job:  # submitit's files: <array>_<task>_<rank>_log.out
        path = log_dir / f"{job[0]}_{job[1]}_0_log{suffix}"
        older = log_dir / f"{job[0]}_{job[1]}{suffix}"  # sweeps submitted before submitit
        return older if not path.exists() and older.exists() else path
    return log_dir / f"{run_id}{suffix}"


def sweep_of_run(logs: Path, run_id: int) -> SweepRecord | None:
    info = _run_dir(logs, run_id).read_info()
    sid = info.get("sweep_id")
    if not sid or not record_path(logs, sid).exists():
        return None
    return load(logs, sid)


# ------------------------------------------------------------------ liveness
def _lock_held(run: RunDir) -> bool:
    """Whether a process on this host holds the run's writer lock (``metadata/.lock``)."""
    import fcntl

    try:
        fd = os.open(run.metadata / ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def _may_be_written(run: RunDir, info: dict[str, Any]) -> bool:
    if _lock_held(run):
        return True
    return info.get("host") == socket.gethostname() and live_holder(info)


def pid_alive(pid: Any, marker: str = "runlab.sweep.jobs") -> bool:
    """Whether ``pid`` is alive on this host and is a runlab process (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError, TypeError):
        try:
            os.kill(int(pid), 0)
        except (OSError, ValueError, TypeError):
            return False
        return True
    if Path(f"/proc/{int(pid)}/stat").read_text().split(") ")[-1][:1] == "Z":
        return False  # a zombie has ended
    return marker.encode() in cmdline


def _age_s(iso: str | None) -> float:
    from datetime import datetime

    try:
        return time.time() - datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return float("inf")


# ----------------------------------------------------------------- reconcile
def reconcile(logs: Path, record: SweepRecord, by: str = "runlab status") -> list[dict]:
    """Close the runs whose job is gone; return ``[{run_id, status, reason}]`` for each change."""
    logs = Path(logs)
    located = locate(record)
    candidates = []
    for rid in record.runs:
        run = _run_dir(logs, rid)
        info = run.read_info()
        if Status.of(info.get("status")) in ACTIVE and rid in located:
            candidates.append((rid, run, info))
    if not candidates:
        return []
    # Runs cancelled since their current submission (a retry after a cancel is not cancelled).
    cancelled = {
        rid
        for c in record.cancelled
        for rid in c.runs
        if rid in located and c.time >= located[rid][0].time
    }
    if record.launcher_name == "slurm":
        verdicts = _slurm_verdicts(candidates, located, cancelled)
    else:
        verdicts = _local_verdicts(candidates, located, cancelled, record)
    changes = []
    for rid, run, status, kind, reason, state in verdicts:
        info = run.read_info()  # again: the job may have written since
        if Status.of(info.get("status")) not in ACTIVE or _may_be_written(run, info):
            continue
        run.update_info(
            status=status,
            error={"type": kind, "message": reason},
            end_time=info.get("end_time") or now_iso(),
            reconciled={"time": now_iso(), "by": by, "was": info.get("status"), "job": state},
        )
        changes.append({"run_id": rid, "status": status, "reason": reason})
    return changes


def _slurm_verdicts(candidates, located, cancelled) -> list[tuple]:
    jobs = {}
    for rid, _run, _info in candidates:
        sub, pos = located[rid]
        job = job_of(sub, pos)
        if job:
            jobs[rid] = (job, sub)
    arrays = sorted({job[0] for job, _ in jobs.values()})
    if not arrays:
        return []
    queue = slurm.queue_states(arrays)
    missing = [rid for rid, (job, _) in jobs.items() if job not in queue]
    acct = slurm.accounting_states(arrays) if missing else {}
    out = []
    for rid, run, info in candidates:
        if rid not in jobs:
            continue
        (array, task), sub = jobs[rid]
        state = queue.get((array, task)) or acct.get((array, task))
        if state and state not in slurm.ENDED:
            continue  # pending, running, requeued, completing: the job lives
        label = f"job {array}_{task}"
        was = info.get("status")
        if not state:
            age = _age_s(sub.time)
            if age < VANISH_GRACE_S:
                continue  # accounting may not list it yet
            out.append(
                (
                    rid,
                    run,
                    Status.LOST,
                    "JobLost",
                    f"{label} is known neither to squeue nor to sacct ({age:.0f} s after it was "
                    f"submitted) and the run was still {was}",
                    "VANISHED",
                )
            )
        elif state == "CANCELLED" or rid in cancelled:
            when = "before the run started" if was == Status.QUEUED else f"while the run was {was}"
            out.append(
                (rid, run, Status.INTERRUPTED, "Cancelled", f"{label} was cancelled {when}", state)
            )
        elif state == "TIMEOUT":  # SLURM's state (its word), not the run's status
            out.append(
                (
                    rid,
                    run,
                    Status.TIMEOUT,
                    "JobTimeout",
                    f"{label} reached its time limit and was not requeued; the run was {was}",
                    state,
                )
            )
        else:
            out.append(
                (
                    rid,
                    run,
                    Status.LOST,
                    "JobLost",
                    f"{label} ended {state} without the run recording an end (it was {was})",
                    state,
                )
            )
    return out


def _local_verdicts(candidates, located, cancelled, record) -> list[tuple]:
    if record.host and record.host != socket.gethostname():
        return []  # its workers are on another machine: nothing to check from here
    out = []
    for rid, run, info in candidates:
        sub, _pos = located[rid]
        workers = [w.pid for w in sub.workers]
        alive = [p for p in workers if pid_alive(p)]
        was = info.get("status")
        if was == Status.QUEUED:
            if alive:
                continue
            if rid in cancelled:
                out.append(
                    (
                        rid,
                        run,
                        Status.INTERRUPTED,
                        "Cancelled",
                        "the sweep was cancelled before the run started",
                        "CANCELLED",
                    )
                )
            else:
                out.append(
                    (
                        rid,
                        run,
                        Status.LOST,
                        "JobLost",
                        f"the local workers (pids {', '.join(map(str, workers))}) ended "
                        "without running it",
                        "WORKERS_GONE",
                    )
                )
        else:  # RUNNING / PREEMPTED: its own process
            pid = info.get("pid")
            if info.get("host") != socket.gethostname() or pid is None:
                continue
            if pid_alive(pid, marker=""):
                continue
            status = Status.INTERRUPTED if rid in cancelled else Status.LOST
            kind = "Cancelled" if rid in cancelled else "JobLost"
            out.append(
                (
                    rid,
                    run,
                    status,
                    kind,
                    f"its process {pid} ended without the run recording an end (it was {was})",
                    "PROCESS_GONE",
                )
            )
    return out


# --------------------------------------------------------------------- cancel
def cancel(
    logs: Path, record: SweepRecord, run_ids: list[int] | None = None, wait_s: float = 30.0
) -> list[dict]:
    """Cancel the jobs of the sweep (or of ``run_ids``); returns the runs closed here."""
    logs = Path(logs)
    located = locate(record)
    targets = [int(r) for r in (run_ids or record.runs)]
    active = [
        r for r in targets if Status.of(_run_dir(logs, r).read_info().get("status")) in ACTIVE
    ]

    def add(fresh: SweepRecord) -> SweepRecord:
        fresh.cancelled.append(Cancel(now_iso(), targets))
        return fresh

    record = update(logs, record.sweep_id, add, by="runlab cancel")
    if record.launcher_name == "slurm":
        jobs = [job_of(*located[r]) for r in active if r in located]
        jobs = [j for j in jobs if j]
        if run_ids is None:  # the whole sweep: each array at once
            ids = sorted({array for array, _task in jobs}, key=int)
        else:
            ids = [f"{array}_{task}" for array, task in jobs]
        try:
            slurm.scancel(ids)
        except slurm.SlurmError as exc:
            raise SweepOpsError(str(exc)) from None
        arrays = sorted({array for array, _task in jobs})
        deadline = time.time() + wait_s
        while arrays and time.time() < deadline:  # until the jobs have left (KillWait)
            states = slurm.queue_states(arrays)
            if all(states.get(j) in slurm.ENDED or j not in states for j in jobs):
                break
            time.sleep(0.5)
    else:
        _cancel_local(logs, record, located, active, whole=run_ids is None, wait_s=wait_s)
    return reconcile(logs, record, by="runlab cancel")


def _cancel_local(logs, record, located, active, whole, wait_s) -> None:
    stopped: list[int] = []
    if whole:
        for sub in record.submissions:
            for w in sub.workers:
                if pid_alive(w.pid):
                    try:
                        os.killpg(w.pid, signal.SIGTERM)  # the worker and its task
                        stopped.append(w.pid)
                    except (ProcessLookupError, PermissionError):
                        pass
    claimed: list[int] = []  # queued runs this command took: no worker may start them now
    for rid in active:
        run = _run_dir(logs, rid)
        info = run.read_info()
        if info.get("status") == Status.QUEUED:
            if claim(run.path):
                claimed.append(rid)
                continue
            if whole:
                continue  # its worker was stopped above, and the task with it
            info = _started(run, wait_s)  # a worker took it a moment ago: stop its task
            if info.get("status") == Status.QUEUED:  # its worker died, or its task is slow
                claimed.append(rid)  # to start: a task refuses a run cancelled before it
                continue
        if not whole and info.get("pid") and info.get("host") == socket.gethostname():
            try:
                os.kill(int(info["pid"]), signal.SIGTERM)
                stopped.append(int(info["pid"]))
            except ProcessLookupError:
                pass
    deadline = time.time() + wait_s
    while time.time() < deadline and any(pid_alive(p, marker="") for p in stopped):
        time.sleep(0.2)
    for rid in claimed:  # nobody else will write them
        run = _run_dir(logs, rid)
        info = run.read_info()
        if info.get("status") == Status.QUEUED:
            run.update_info(
                status=Status.INTERRUPTED,
                error={"type": "Cancelled", "message": "cancelled before the run started"},
                end_time=now_iso(),
                reconciled={
                    "time": now_iso(),
                    "by": "runlab cancel",
                    "was": Status.QUEUED,
                    "job": "CANCELLED",
                },
            )


def _started(run: RunDir, wait_s: float) -> dict[str, Any]:
    """The info of a run a worker has claimed, once its task has started (RUNNING, with
    its pid) or ended; as it is after ``wait_s`` otherwise."""
    deadline = time.time() + wait_s
    info = run.read_info()
    while info.get("status") == Status.QUEUED and time.time() < deadline:
        try:
            worker = int((run.metadata / CLAIM).read_text() or 0)
        except (OSError, ValueError):
            worker = 0
        if worker and not pid_alive(worker):
            break  # the worker that took it is gone: it will never start
        time.sleep(0.2)
        info = run.read_info()
    return info


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
    known = {Path(code.snapshot).name: code for sub in record.submissions for code in sub.code}
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
        (run.metadata / ".claimed").unlink(missing_ok=True)
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
