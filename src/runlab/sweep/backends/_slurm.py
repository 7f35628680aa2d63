"""Talking to SLURM where submitit does not: its limits, the queue, scancel.

A sweep becomes one or more job arrays, submitted through submitit
(:meth:`runlab.sweep.backends.slurm.Backend.submit`). The sweep's job descriptions are
written once (a JSON list) and task ``i`` of an array runs entry ``OFFSET + i``
(:class:`runlab.sweep.jobs.ArrayEntry`, two fields in submitit's pickle), so submitting
10,000 points is one file, 10,000 tiny pickles and a few ``sbatch`` calls.

Limits, read before anything is written (:func:`read_limits`):

- an array holds at most ``MaxArraySize`` tasks (indices ``0..MaxArraySize-1``), and
  the controller at most ``MaxJobCount`` job records (``scontrol show config``);
- where SLURM enforces them (``AccountingStorageEnforce`` holds ``limits`` or
  ``safe``), the jobs one may have queued: the association's ``MaxSubmitJobs``
  and ``GrpSubmitJobs`` (``sacctmgr show assoc``), and the QOS's
  ``MaxSubmitJobsPerUser``, ``MaxSubmitJobsPerAccount`` and ``GrpSubmitJobs``
  (``sacctmgr show qos``; the launcher's ``qos``, else the association's default).
  Each counts the jobs already queued in its own scope (array tasks one each,
  as SLURM counts them); the one leaving the least room is the one that binds.
  Where they are not enforced they are not read: they could not refuse a job.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any

from runlab.sweep.backends.base import LauncherError

# Job states that mean the job will not run (again) on its own.
ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
    "REVOKED",
    "SPECIAL_EXIT",
}
DEFAULT_MAX_ARRAY_SIZE = 1001


class SlurmError(LauncherError):
    """A SLURM command failed, or a limit makes the sweep impossible."""


def _run(args: list[str], timeout: float = 60) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SlurmError(f"{args[0]} is not on PATH: is this a SLURM login node?") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(
            f"`{shlex.join(args[:3])} ...` did not answer in {timeout:.0f} s"
        ) from None
    if proc.returncode != 0:
        raise SlurmError(f"`{shlex.join(args[:3])} ...` failed: {proc.stderr.strip()}")
    return proc.stdout


def _run_all(*commands: list[str], timeout: float = 30) -> list[str]:
    """Several SLURM queries run side by side; their outputs, in order."""
    try:
        procs = [
            subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for c in commands
        ]
    except FileNotFoundError as exc:
        raise SlurmError(f"{exc.filename} is not on PATH: is this a SLURM login node?") from None
    outs = []
    for args, proc in zip(commands, procs, strict=True):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise SlurmError(
                f"`{shlex.join(args[:3])} ...` did not answer in {timeout:.0f} s"
            ) from None
        if proc.returncode != 0:
            raise SlurmError(f"`{shlex.join(args[:3])} ...` failed: {err.strip()}")
        outs.append(out)
    return outs


# --------------------------------------------------------------------- limits
@dataclass
class Limits:
    max_array_size: int = DEFAULT_MAX_ARRAY_SIZE
    max_submit: int | None = None  # jobs a user may have queued at once
    max_submit_source: str = ""
    queued: int = 0  # the user's jobs already in the queue (counted when max_submit is set)
    max_job_count: int | None = None  # job records the controller holds at once (MaxJobCount)
    in_system: int = 0  # job records it holds now, every user's (ended ones for MinJobAge too)
    enforced: bool | None = None  # AccountingStorageEnforce has limits (None: not known)

    def as_dict(self) -> dict[str, Any]:
        return {
            "MaxArraySize": self.max_array_size,
            "MaxSubmitJobs": self.max_submit,
            "MaxSubmitJobs_from": self.max_submit_source or None,
            "queued_before": self.queued if self.max_submit is not None else None,
            "MaxJobCount": self.max_job_count,
            "jobs_in_system_before": self.in_system if self.max_job_count else None,
            "submit_limits_enforced": self.enforced,
        }


def submit_limits(
    assoc_out: str, qos_out: str, account: str | None = None, qos: str | None = None
) -> list[tuple[int, str, str]]:
    """``[(limit, source, scope)]`` from ``sacctmgr -n -P show assoc ...
    format=account,user,maxsubmit,grpsubmit,qos,defaultqos`` and ``sacctmgr -n -P show qos
    format=name,maxsubmitpu,maxsubmitpa,grpsubmit``; scope is ``user``, ``account:<a>``,
    ``qos-user:<q>``, ``qos-account:<q>:<a>`` or ``qos:<q>``: whose queued jobs count."""
    out: list[tuple[int, str, str]] = []
    qos_names: set[str] = set()
    accounts: list[str] = []
    for line in assoc_out.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 6 or (account and parts[0] != account):
            continue
        acct, user, maxsubmit, grpsubmit, allowed, default = parts[:6]
        accounts.append(acct)
        if maxsubmit.isdigit():
            out.append((int(maxsubmit), f"MaxSubmitJobs of association {user}/{acct}", "user"))
        if grpsubmit.isdigit():
            out.append(
                (int(grpsubmit), f"GrpSubmitJobs of association {user}/{acct}", f"account:{acct}")
            )
        if qos:
            qos_names.add(qos)
        elif default:
            qos_names.add(default)
        elif allowed and "," not in allowed:
            qos_names.add(allowed)
    for line in qos_out.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 4 or parts[0] not in qos_names:
            continue
        name, per_user, per_account, group = parts[:4]
        if per_user.isdigit():
            out.append((int(per_user), f"MaxSubmitJobsPerUser of QOS {name}", f"qos-user:{name}"))
        if per_account.isdigit():
            for acct in dict.fromkeys(accounts):
                out.append(
                    (
                        int(per_account),
                        f"MaxSubmitJobsPerAccount of QOS {name}",
                        f"qos-account:{name}:{acct}",
                    )
                )
        if group.isdigit():
            out.append((int(group), f"GrpSubmitJobs of QOS {name}", f"qos:{name}"))
    return out


def _queued_in(scope: str, user: str) -> int:
    """Jobs queued (pending or running, array tasks one each) in a limit's scope."""
    kind, _, rest = scope.partition(":")
    args = {
        "user": ["-u", user],
        "account": ["-A", rest],
        "qos-user": ["-u", user, "-q", rest],
        "qos": ["-q", rest],
    }.get(kind)
    if kind == "qos-account":
        name, _, acct = rest.partition(":")
        args = ["-A", acct, "-q", name]
    out = _run(["squeue", "-h", "-r", "-t", "PD,R,CG,S,CF,RQ", *(args or []), "-o", "%i"])
    return len(out.split())


def read_limits(account: str | None = None, qos: str | None = None) -> Limits:
    """The limits that shape a submission, read from ``scontrol`` and ``sacctmgr``."""
    limits = Limits()
    try:
        config = _run(["scontrol", "show", "config"], timeout=30)
    except SlurmError:
        config = ""
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    if m:
        limits.max_array_size = int(m.group(1))
    m = re.search(r"^MaxJobCount\s*=\s*(\d+)", config, re.MULTILINE)
    if m:
        limits.max_job_count = int(m.group(1))
        try:  # every task of a pending array holds a record, and so does an ended job
            limits.in_system = len(_run(["squeue", "-h", "-r", "-t", "all", "-o", "%i"]).split())
        except SlurmError:
            pass
    m = re.search(r"^AccountingStorageEnforce\s*=\s*(.*)$", config, re.MULTILINE)
    if m:
        flags = set(m.group(1).strip().lower().split(","))
        limits.enforced = bool(flags & {"limits", "safe"})
    if not limits.enforced:
        return limits  # submit limits, if any are set, refuse nothing here
    user = getpass.getuser()
    try:  # three questions to slurmdbd at once (each takes a round trip)
        default_account, assoc, qos_out = _run_all(
            ["sacctmgr", "-n", "-P", "show", "user", user, "format=defaultaccount"],
            [
                *("sacctmgr", "-n", "-P", "show", "assoc", f"user={user}"),
                "format=account,user,maxsubmit,grpsubmit,qos,defaultqos",
            ],
            [
                *("sacctmgr", "-n", "-P", "show", "qos"),
                "format=name,maxsubmitpu,maxsubmitpa,grpsubmit",
            ],
        )
    except SlurmError:
        return limits
    account = account or default_account.strip().split("\n")[0].strip() or None
    best: tuple[int, int, str] | None = None  # (room, limit, source)
    for limit, source, scope in submit_limits(assoc, qos_out, account, qos):
        try:
            queued = _queued_in(scope, user)
        except SlurmError:
            queued = 0
        if best is None or limit - queued < best[0]:
            best = (limit - queued, limit, source)
            limits.queued = queued
    if best is not None:
        limits.max_submit, limits.max_submit_source = best[1], best[2]
    return limits


def plan_arrays(count: int, limits: Limits) -> list[tuple[int, int]]:
    """Split ``count`` points into arrays: ``[(offset, size), ...]``; ``SlurmError`` if impossible."""
    if limits.max_submit is not None and count > limits.max_submit - limits.queued:
        room = max(0, limits.max_submit - limits.queued)
        raise SlurmError(
            f"the sweep has {count} points but SLURM lets you have at most {limits.max_submit} "
            f"jobs queued ({limits.max_submit_source}), and {limits.queued} are queued already: "
            f"submit at most {room} points now (split the sweep), or ask your admins for a "
            "higher limit; nothing was written"
        )
    if limits.max_job_count and count + limits.in_system > limits.max_job_count:
        room = max(0, limits.max_job_count - limits.in_system)
        raise SlurmError(
            f"the sweep has {count} points but this SLURM cluster holds at most "
            f"{limits.max_job_count} jobs at once (MaxJobCount in `scontrol show config`; every "
            f"array task counts) and {limits.in_system} are there now (ended jobs stay for "
            f"MinJobAge): submit at most {room} points now, wait for the queue to drain, or ask "
            "your admins for a higher MaxJobCount; nothing was written"
        )
    size = max(1, limits.max_array_size)
    return [(start, min(size, count - start)) for start in range(0, count, size)]


# ------------------------------------------------------------------- control
def scancel(ids: list[str]) -> None:
    if ids:
        _run(["scancel", *ids], timeout=120)


# --------------------------------------------------------------------- states
_TASK = re.compile(r"^(\d+)_(\d+|\[[^\]]*\])$")


def _expand_tasks(spec: str) -> list[int]:
    """``[0-3,7,9-10%4]`` -> ``[0, 1, 2, 3, 7, 9, 10]``."""
    out: list[int] = []
    for part in spec.strip("[]").split("%")[0].split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part.strip().isdigit():
            out.append(int(part))
    return out


def parse_states(text: str) -> dict[tuple[str, int], str]:
    """``JOBID|STATE`` lines (``123_4``, ``123_[5-9]``) -> ``{(array_id, task): state}``."""
    states: dict[tuple[str, int], str] = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        job, state = line.split("|", 1)
        state = state.strip().split()[0] if state.strip() else ""
        m = _TASK.match(job.strip())
        if not m:
            continue
        array, tasks = m.groups()
        for task in _expand_tasks(tasks) if tasks.startswith("[") else [int(tasks)]:
            states[(array, task)] = state
    return states


def queue_states(arrays: list[str]) -> dict[tuple[str, int], str]:
    """What the controller knows now (pending, running, and recently ended jobs)."""
    if not arrays:
        return {}
    try:
        out = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(arrays), "-o", "%i|%T"])
    except SlurmError as exc:
        if "Invalid job id" not in str(exc):
            raise
        # Every one of them has left the controller: ask for the user's jobs instead.
        out = _run(["squeue", "-h", "-r", "-t", "all", "-u", user(), "-o", "%i|%T"])
    wanted = set(arrays)
    return {k: v for k, v in parse_states(out).items() if k[0] in wanted}


def accounting_states(arrays: list[str]) -> dict[tuple[str, int], str]:
    """What accounting knows (``sacct``; it lags the controller by seconds)."""
    if not arrays:
        return {}
    try:
        out = _run(
            ["sacct", "-n", "-X", "-P", "-j", ",".join(arrays), "--format=JobID,State"],
            timeout=60,
        )
    except SlurmError:
        return {}
    return parse_states(out)


def job_states(job_ids: list[str]) -> dict[str, str | None]:
    """``{job_id: state}`` for jobs named by their own ids (``SLURM_JOB_ID``, which an
    array task has too): the controller's word (``squeue``), else accounting's
    (``sacct``), else ``None``: neither knows the job (it ended long ago, or never ran
    here). A :class:`SlurmError` when the scheduler cannot be asked at all."""
    ids = sorted({str(j) for j in job_ids if str(j).isdigit()}, key=int)
    states: dict[str, str | None] = {}
    for start in range(0, len(ids), 500):  # command lines of bounded length
        chunk = ids[start : start + 500]
        try:
            out = _run(["squeue", "-h", "-t", "all", "-j", ",".join(chunk), "-o", "%A|%T"])
        except SlurmError as exc:
            if "Invalid job id" not in str(exc):
                raise
            out = ""  # none of them is known to the controller any more
        states.update(_raw_states(out, chunk))
    missing = [j for j in ids if j not in states]
    for start in range(0, len(missing), 500):
        chunk = missing[start : start + 500]
        try:
            out = _run(
                ["sacct", "-n", "-X", "-P", "-j", ",".join(chunk), "--format=JobIDRaw,State"]
            )
        except SlurmError:
            out = ""  # no accounting here: the controller's word is all there is
        states.update(_raw_states(out, chunk))
    return {j: states.get(j) for j in ids}


def _raw_states(text: str, wanted: list[str]) -> dict[str, str]:
    """``JOBIDRAW|STATE`` lines -> ``{job_id: STATE}`` for the ``wanted`` ids."""
    keep = set(wanted)
    out = {}
    for line in text.splitlines():
        job, _, state = line.partition("|")
        words = state.split()
        if job.strip() in keep and words:
            out[job.strip()] = words[0]  # "CANCELLED by 0" -> CANCELLED
    return out


def available() -> bool:
    from shutil import which

    return which("sbatch") is not None and which("squeue") is not None


def user() -> str:
    return os.environ.get("USER") or getpass.getuser()
