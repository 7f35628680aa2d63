"""A sweep as a thing: its record, and keeping its runs true to the scheduler.

Every ``runlab submit`` writes ``<logs>/.sweeps/<sweep_id>.json`` (atomically)
beside a folder ``<logs>/.sweeps/<sweep_id>/`` holding the jobs files and, in
``logs/``, submitit's folder: its sbatch scripts (``<array>_submission.sh``), small
pickles (``<array>_<task>_submitted.pkl``) and the jobs' stdout/stderr
(``<array>_<task>_<rank>_log.out``/``.err``). The record (format 1)::

    sweep_id, created, host, user, cwd, command (argv as typed), task, overrides,
    logs, launcher (the launcher config), limits (MaxArraySize, MaxSubmitJobs),
    runs: [run ids, in sweep order],
    submissions: [                       # the submit, then one per `runlab retry`
      {n, kind: submit|retry, time, runs (ids; all of them for the submit),
       code: {commit, branch, dirty, snapshot}, jobs_file, log_dir,
       arrays: [{job_id, first, count}]  # SLURM: run i of the submission is task
                                         # i-first of the array holding it
       workers: [{pid}]}                 # local: the worker processes
    ],
    cancelled: [{time, runs}]            # `runlab cancel`

A run's current job is given by the last submission that holds it.

Commands that change a record (``cancel``, ``retry``, ``tune``, and ``submit`` when
it records a submission) hold an ``flock`` on ``<logs>/.sweeps/<sweep_id>.lock``
(:func:`exclusive`; the file names the holder) and work on the record as read under
it, so two of them at once neither lose an update nor submit one run twice.
:func:`reconcile` compares the runs that still say ``QUEUED``/``RUNNING``/
``PREEMPTED`` with what the scheduler knows (``squeue`` first, then ``sacct``,
which lags; or the local workers' pids) and closes the ones whose job is gone:
``INTERRUPTED`` when it was cancelled, ``LOST`` when it ended or vanished
without the run recording an end, with the reason in ``info.error`` and
``info.reconciled``. A run a live process may still write is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from runlab.errors import UserError
from runlab.logs import SWEEPS
from runlab.record.files import dumps_json, now_iso, write_atomic
from runlab.record.rundir import RunDir
from runlab.status import ACTIVE, Status

FORMAT = 1
# A job neither squeue nor sacct knows is taken as vanished only this long after its
# submission: sacct lags the controller, and a fresh job may not be listed yet.
VANISH_GRACE_S = 120.0


class SweepOpsError(UserError, RuntimeError):
    """A sweep operation that cannot be done as asked; one line for the user."""


# --------------------------------------------------------------------- record
def folder(logs: Path, sweep_id: str) -> Path:
    return Path(logs) / SWEEPS / sweep_id


def record_path(logs: Path, sweep_id: str) -> Path:
    return Path(logs) / SWEEPS / f"{sweep_id}.json"


def save(logs: Path, record: dict[str, Any]) -> None:
    path = record_path(logs, record["sweep_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, orjson.dumps(record, option=orjson.OPT_INDENT_2) + b"\n")


_HELD: dict[str, int] = {}  # lock files this process holds, and how deeply


@contextlib.contextmanager
def exclusive(
    logs: Path, sweep_id: str, by: str = "runlab", wait_s: float = 60.0
) -> Iterator[dict[str, Any] | None]:
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
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "?"
                    raise SweepOpsError(
                        f"sweep {sweep_id} is being changed by another command ({holder}) "
                        f"for over {wait_s:.0f} s: wait for it to end, then try again"
                    ) from None
                time.sleep(0.05)
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


def _load_if_any(logs: Path, sweep_id: str) -> dict[str, Any] | None:
    return load(logs, sweep_id) if record_path(logs, sweep_id).exists() else None


def _adopt(record: dict[str, Any], fresh: dict[str, Any] | None) -> dict[str, Any]:
    """``record`` (a caller's copy) brought up to date with ``fresh`` (read under the lock):
    what other commands appended since is kept, and so are the caller's new runs."""
    if fresh is None:
        return record
    runs = list(fresh["runs"])
    seen = set(runs)
    runs += [r for r in record["runs"] if r not in seen]
    fresh = {**fresh, "runs": runs, "launcher": record["launcher"]}
    record.clear()
    record.update(fresh)
    return record


def load(logs: Path, sweep_id: str) -> dict[str, Any]:
    path = record_path(logs, sweep_id)
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        known = sweep_ids(logs)
        hint = f"; known: {', '.join(known[-5:])}" if known else ""
        raise SweepOpsError(
            f"no sweep {sweep_id!r} in {logs} (no {path}){hint}: see `runlab status --all`"
        ) from None
    except orjson.JSONDecodeError as exc:
        raise SweepOpsError(f"the sweep record {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "runs" not in data:
        raise SweepOpsError(f"{path} is not a runlab sweep record")
    return data


def sweep_ids(logs: Path) -> list[str]:
    """Every sweep of ``logs``, oldest first (ids start with their time)."""
    root = Path(logs) / SWEEPS
    try:
        names = [p.name[:-5] for p in root.iterdir() if p.name.endswith(".json")]
    except OSError:
        return []

    def key(name: str) -> tuple[str, int]:
        stamp, _, first = name.rpartition("-")
        return (stamp, int(first) if first.isdigit() else 0)

    return sorted(names, key=key)


def latest(logs: Path) -> str | None:
    ids = sweep_ids(logs)
    return ids[-1] if ids else None


def new_record(sweep: Any) -> dict[str, Any]:
    """The record of a sweep just pre-created by :func:`runlab.sweep.submission.create_runs`."""
    from runlab.sweep.slurm import Limits

    limits = sweep.limits.as_dict() if isinstance(sweep.limits, Limits) else None
    return {
        "format": FORMAT,
        "sweep_id": sweep.sweep_id,
        "created": now_iso(),
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "cwd": str(Path.cwd()),
        "command": ["runlab", *sys.argv[1:]],
        "task": str(sweep.script),
        "overrides": list(sweep.arguments),
        "logs": str(sweep.logs),
        "launcher": sweep.launcher,
        "limits": limits,
        "runs": [int(r.run_id) for r in sweep.runs],
        "submissions": [],
        "cancelled": [],
    }


def _run_dir(logs: Path, run_id: Any) -> RunDir:
    return RunDir(Path(logs) / str(run_id))


def submit(
    logs: Path,
    record: dict[str, Any],
    run_ids: list[Any],
    codes: dict[str, Any] | list[dict[str, Any]],
    limits: Any = None,
    code_of: list[int] | None = None,
    kind: str = "submit",
    overrides: list[list[str]] | None = None,
) -> dict[str, Any]:
    """Write the jobs file of ``run_ids`` and hand it to the launcher; record the submission
    (under the sweep's lock, into the record as it is then: ``record`` is updated too)."""
    with exclusive(logs, record["sweep_id"], by=f"runlab {kind}") as fresh:
        _adopt(record, fresh)
        return _submit(logs, record, run_ids, codes, limits, code_of, kind, overrides)


def _submit(logs, record, run_ids, codes, limits, code_of, kind, overrides) -> dict[str, Any]:
    from runlab.sweep import launcher

    codes = [codes] if isinstance(codes, dict) else list(codes)
    cfg = record["launcher"]
    n = len(record["submissions"]) + 1
    base = folder(logs, record["sweep_id"])
    log_dir = base / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    jobs_file = base / f"jobs-{n}.json"
    if overrides is None:
        overrides = _overrides(logs, run_ids)
    spec = {
        "sweep_id": record["sweep_id"],
        "submission": n,
        "python": launcher.python_executable(),
        "cwd": record.get("cwd") or str(Path.cwd()),
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
        if cfg["name"] == "local"
        else [],
        "codes": [{"script": c["script"], "env": c["env"]} for c in codes],
        "jobs": [
            {
                "run_dir": str(Path(logs) / str(rid)),
                "overrides": overrides[i],
                "code": code_of[i] if code_of else 0,
            }
            for i, rid in enumerate(run_ids)
        ],
    }
    write_atomic(jobs_file, dumps_json(spec))
    submission: dict[str, Any] = {
        "n": n,
        "kind": kind,
        "time": now_iso(),
        "runs": [int(r) for r in run_ids] if kind != "submit" else None,
        "code": [{k: c.get(k) for k in ("commit", "branch", "dirty", "snapshot")} for c in codes],
        "codes": [{"script": c["script"], "env": c["env"]} for c in codes],
        "jobs_file": str(jobs_file),
        "log_dir": str(log_dir),
    }
    if cfg["name"] == "slurm":
        if limits is None:
            from runlab.sweep import slurm

            limits = slurm.read_limits(cfg.get("account"), cfg.get("qos"))
            try:
                slurm.plan_arrays(len(run_ids), limits)
            except slurm.SlurmError as exc:
                raise SweepOpsError(str(exc)) from None
        handles = launcher.submit_slurm(jobs_file, len(run_ids), cfg, log_dir, limits)
        submission["arrays"] = [
            {"job_id": h.job_id, "first": h.first, "count": h.count} for h in handles
        ]
    else:
        handles = launcher.start_local(jobs_file, cfg, len(run_ids), log_dir)
        submission["workers"] = [{"pid": int(h.job_id)} for h in handles]
    if submission["runs"] is None:
        del submission["runs"]
    record["submissions"].append(submission)
    save(logs, record)
    return submission


def _overrides(logs: Path, run_ids: list[Any]) -> list[list[str]]:
    from runlab.record.files import read_yaml

    out = []
    for rid in run_ids:
        path = Path(logs) / str(rid) / "metadata" / "overrides.yaml"
        data = read_yaml(path) if path.exists() else []
        out.append([str(x) for x in data or []])
    return out


# ------------------------------------------------------------------- location
def locate(record: dict[str, Any]) -> dict[int, tuple[dict[str, Any], int]]:
    """Each run's current submission and its position in it (the last submission wins)."""
    where: dict[int, tuple[dict[str, Any], int]] = {}
    for sub in record.get("submissions", []):
        ids = sub.get("runs") or record["runs"]
        for pos, rid in enumerate(ids):
            where[int(rid)] = (sub, pos)
    return where


def job_of(sub: dict[str, Any], pos: int) -> tuple[str, int] | None:
    """``(array_job_id, task)`` of the run at ``pos`` of a SLURM submission."""
    for array in sub.get("arrays", []):
        if array["first"] <= pos < array["first"] + array["count"]:
            return str(array["job_id"]), pos - array["first"]
    return None


def job_label(sub: dict[str, Any], pos: int) -> str:
    job = job_of(sub, pos)
    if job:
        return f"{job[0]}_{job[1]}"
    pids = [str(w["pid"]) for w in sub.get("workers", [])]
    return f"local workers {', '.join(pids)}" if pids else "?"


def log_file(logs: Path, record: dict[str, Any], run_id: int, err: bool = False) -> Path | None:
    """Where the run's current job writes its stdout (or stderr)."""
    located = locate(record).get(int(run_id))
    if located is None:
        return None
    sub, pos = located
    suffix = ".err" if err else ".out"
    log_dir = Path(sub["log_dir"])
    job = job_of(sub, pos)
    if job:  # submitit's files: <array>_<task>_<rank>_log.out
        path = log_dir / f"{job[0]}_{job[1]}_0_log{suffix}"
        older = log_dir / f"{job[0]}_{job[1]}{suffix}"  # sweeps submitted before submitit
        return older if not path.exists() and older.exists() else path
    return log_dir / f"{run_id}{suffix}"


def sweep_of_run(logs: Path, run_id: int) -> dict[str, Any] | None:
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
    try:
        from runlab.record.rundir import live_holder
    except ImportError:  # pragma: no cover
        return False
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
def reconcile(logs: Path, record: dict[str, Any], by: str = "runlab status") -> list[dict]:
    """Close the runs whose job is gone; return ``[{run_id, status, reason}]`` for each change."""
    logs = Path(logs)
    located = locate(record)
    candidates = []
    for rid in record["runs"]:
        run = _run_dir(logs, rid)
        info = run.read_info()
        if Status.of(info.get("status")) in ACTIVE and int(rid) in located:
            candidates.append((int(rid), run, info))
    if not candidates:
        return []
    # Runs cancelled since their current submission (a retry after a cancel is not cancelled).
    cancelled = {
        rid
        for c in record.get("cancelled", [])
        for rid in map(int, c.get("runs") or [])
        if rid in located and str(c.get("time", "")) >= str(located[rid][0].get("time", ""))
    }
    if record["launcher"]["name"] == "slurm":
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
    from runlab.sweep import slurm

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
            age = _age_s(sub.get("time"))
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
    if record.get("host") and record["host"] != socket.gethostname():
        return []  # its workers are on another machine: nothing to check from here
    out = []
    for rid, run, info in candidates:
        sub, _pos = located[rid]
        workers = [w["pid"] for w in sub.get("workers", [])]
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
    logs: Path, record: dict[str, Any], run_ids: list[int] | None = None, wait_s: float = 30.0
) -> list[dict]:
    """Cancel the jobs of the sweep (or of ``run_ids``); returns the runs closed here."""
    logs = Path(logs)
    located = locate(record)
    targets = [int(r) for r in (run_ids or record["runs"])]
    active = [
        r for r in targets if Status.of(_run_dir(logs, r).read_info().get("status")) in ACTIVE
    ]
    with exclusive(logs, record["sweep_id"], by="runlab cancel") as fresh:
        _adopt(record, fresh)
        record.setdefault("cancelled", []).append({"time": now_iso(), "runs": targets})
        save(logs, record)
    if record["launcher"]["name"] == "slurm":
        from runlab.sweep import slurm

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
    from runlab.sweep.jobs import claim

    stopped: list[int] = []
    if whole:
        for sub in record.get("submissions", []):
            for w in sub.get("workers", []):
                if pid_alive(w["pid"]):
                    try:
                        os.killpg(int(w["pid"]), signal.SIGTERM)  # the worker and its task
                        stopped.append(int(w["pid"]))
                    except (ProcessLookupError, PermissionError):
                        pass
    for rid in active:
        run = _run_dir(logs, rid)
        info = run.read_info()
        if info.get("status") == Status.QUEUED:
            claim(run.path)  # no worker may start it now
        elif not whole and info.get("pid") and info.get("host") == socket.gethostname():
            try:
                os.kill(int(info["pid"]), signal.SIGTERM)
                stopped.append(int(info["pid"]))
            except ProcessLookupError:
                pass
    deadline = time.time() + wait_s
    while time.time() < deadline and any(pid_alive(p, marker="") for p in stopped):
        time.sleep(0.2)
    for rid in active:  # queued runs this command claimed: nobody else will write them
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


# ---------------------------------------------------------------------- retry
def retry_candidates(
    logs: Path, record: dict[str, Any], statuses: list[str], run_ids: list[int] | None = None
) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for rid in run_ids or record["runs"]:
        info = _run_dir(logs, rid).read_info()
        if info.get("status") in statuses:
            out.append((int(rid), info))
    return out


def retry(
    logs: Path,
    record: dict[str, Any],
    picked: list[tuple[int, dict[str, Any]]],
    current: Any = None,
) -> dict[str, Any]:
    """Resubmit ``picked`` runs into their own directories; with ``current`` (a code entry
    from :func:`runlab.sweep.submission.code_entry`) they run that code, else their own."""
    logs = Path(logs)
    codes: list[dict[str, Any]] = []
    code_of: list[int] = []
    known = {}
    for sub in record.get("submissions", []):
        for meta, entry in zip(sub.get("code", []), sub.get("codes", []), strict=False):
            known[meta.get("snapshot")] = {**meta, **entry}
    for rid, info in picked:
        if current is not None:
            code = current
        else:
            code = known.get(info.get("code_snapshot"))
            if code is None:
                raise SweepOpsError(
                    f"run {rid}: its code snapshot {info.get('code_snapshot')} is not in the "
                    f"sweep record {record_path(logs, record['sweep_id'])}: retry it with "
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
        if code["commit"] != commits[-1]:
            commits.append(code["commit"])
        (run.metadata / ".claimed").unlink(missing_ok=True)
        run.update_info(
            status=Status.QUEUED,
            previous_status=info.get("status"),
            previous_error=info.get("error"),
            error=None,
            reconciled=None,
            retries=int(info.get("retries") or 0) + 1,
            retried_time=now,
            code_commit=code["commit"],
            code_commits=commits,
            code_snapshot=code["snapshot"],
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
