"""SLURM: a sweep as job arrays, submitted through submitit (its engine here).

Each array is one submitit submission of a light
:class:`~runlab.sweep.jobs.ArrayEntry` ``(JOBS_FILE, OFFSET)``: task ``i`` runs entry
``OFFSET + i`` of the sweep's jobs file. Arrays are 0-based (``--array=0-(N-1)%P``), at
most ``MaxArraySize`` tasks each. submitit writes its sbatch scripts, pickles and the
tasks' output (``<array>_<task>_<rank>_log.out``/``.err``) in the submission's log folder.
Preemption and the coming time limit are SIGUSR2 (``signal_delay_s`` ahead); the run
stops at its checkpoint and submitit requeues the task (``max_num_timeout`` times for a
time limit). The queries submitit does not make (limits, ``squeue``, ``sacct``,
``scancel``) are :mod:`._slurm`'s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from runlab.sweep.backends import _slurm
from runlab.sweep.backends.base import (
    Ending,
    JobState,
    LauncherError,
    Placed,
    Target,
)
from runlab.sweep.backends.base import (
    first_line as _first_line,
)
from runlab.sweep.backends.base import (
    probe as _probe,
)
from runlab.sweep.jobs import ArrayEntry
from runlab.sweep.record import Array, Submission, SweepRecord

NAME = "slurm"


def _array_task(submission: Submission, position: int) -> tuple[str, int] | None:
    """``(array_job_id, task)`` of the run at ``position`` (tasks count from 0)."""
    for array in submission.arrays:
        if array.first <= position < array.first + array.count:
            return array.job_id, position - array.first
    return None


def parameters(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``submitit.SlurmExecutor.update_parameters`` arguments (sbatch options) for the config."""
    params: dict[str, Any] = {
        "job_name": cfg.get("job_name") or "runlab",
        "time": int(cfg["timeout_min"]),
        "nodes": int(cfg.get("nodes") or 1),
        "ntasks_per_node": int(cfg.get("tasks_per_node") or 1),  # one rank per srun task
        "cpus_per_task": cfg["cpus_per_task"],
        "array_parallelism": int(cfg.get("array_parallelism") or 256),
        "signal_delay_s": int(cfg["signal_delay_s"]),
        "additional_parameters": dict(cfg.get("additional_parameters") or {}),
        "setup": [str(line) for line in cfg.get("setup") or []],
    }
    if cfg.get("gpus_per_node"):
        params["gpus_per_node"] = cfg["gpus_per_node"]
    if cfg.get("mem_gb"):
        params["mem"] = f"{cfg['mem_gb']}G"
    for key in ("partition", "account", "qos"):
        if cfg.get(key):
            params[key] = cfg[key]
    return params


def _message(exc: Exception) -> str:
    text = str(exc)
    for attr in ("stderr", "output"):
        extra = getattr(exc, attr, None)
        if extra:
            text += "\n" + (extra.decode() if isinstance(extra, bytes) else str(extra))
    return text.strip()


def _link_tasks(pickle: Path, count: int, pattern: Path) -> None:
    """One name per array task for the array's pickle: hard links, so that no task depends
    on another name surviving; symlinks where the file system has no hard links."""
    names = [str(pattern).format(task) for task in range(count)]
    try:
        os.link(pickle, names[0])
    except OSError:
        for name in names:
            os.symlink(pickle.name, name)
        return
    for name in names[1:]:
        os.link(pickle, name)


class Backend:
    """SLURM job arrays through submitit (see the module)."""

    name: ClassVar[str] = NAME
    title: ClassVar[str] = "SLURM"
    cluster: ClassVar[bool] = True
    defaults: ClassVar[Mapping[str, Any]] = {
        "name": NAME,
        "partition": None,
        "timeout_min": 60,
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": 1,
        "gpus_per_node": 0,
        "mem_gb": None,
        "account": None,
        "qos": None,
        "array_parallelism": 256,
        "signal_delay_s": 90,
        "max_num_timeout": 3,
        "job_name": "runlab",
        "additional_parameters": {},
        "setup": [],
    }
    preemption: ClassVar[str] = (
        "SIGUSR2, signal_delay_s before preemption or the time limit: the run saves its "
        "checkpoint, ends PREEMPTED (or TIMEOUT) and submitit requeues the array task "
        "(a time limit at most max_num_timeout times); it resumes in the same run directory "
        "as its next attempt. scancel's SIGTERM leaves it INTERRUPTED."
    )
    requeues_timeouts: ClassVar[bool] = True
    vanish_grace_s: ClassVar[float] = 120.0  # sacct lags the controller

    def available(self) -> bool:
        return _slurm.available()

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        extra = cfg.get("additional_parameters")
        if extra is not None and not isinstance(extra, Mapping):
            raise LauncherError(
                f"launcher.additional_parameters={extra!r}{where}: give a mapping of sbatch "
                "options, e.g. {constraint: a100}"
            )

    def limits(self, cfg: Mapping[str, Any]) -> _slurm.Limits:
        return _slurm.read_limits(cfg.get("account"), cfg.get("qos"))

    def plan(self, count: int, limits: Any) -> list[tuple[int, int]]:
        return _slurm.plan_arrays(count, limits or _slurm.Limits())

    def validate(self, cfg: Mapping[str, Any], count: int, limits: Any) -> None:
        """``sbatch --test-only`` on the script submitit would write for the first array."""
        from submitit.slurm.slurm import _make_sbatch_string

        size = self.plan(count, limits)[0][1] if count else 1
        try:  # the script goes to sbatch on stdin: nothing is written
            text = _make_sbatch_string(
                command="true", folder=tempfile.gettempdir(), map_count=size, **parameters(cfg)
            )
        except (TypeError, ValueError) as exc:
            raise LauncherError(f"the SLURM settings cannot make an sbatch script: {exc}") from None
        try:
            proc = subprocess.run(
                ["sbatch", "--test-only"], input=text, capture_output=True, text=True, timeout=60
            )
        except FileNotFoundError:
            raise LauncherError("sbatch is not on PATH: is this a SLURM login node?") from None
        except subprocess.TimeoutExpired:
            raise LauncherError("`sbatch --test-only` did not answer in 60 s") from None
        if proc.returncode != 0:
            said = " ".join((proc.stderr or proc.stdout).split()) or f"exit {proc.returncode}"
            raise LauncherError(
                f"SLURM would refuse the sweep (sbatch --test-only: {said})",
                todo="fix the launcher settings; no run was created",
            )

    def spec_fields(self, cfg: Mapping[str, Any], log_dir: Path, count: int) -> dict[str, Any]:
        return {"log_pattern": str(log_dir / "%A_%a_0_log")}  # submitit's output of task 0

    def submit(
        self, jobs_file: Path, count: int, cfg: Mapping[str, Any], log_dir: Path, limits: Any
    ) -> Placed:
        """One submitit submission per ``(offset, size)`` of the plan, each one light
        :class:`ArrayEntry` (``executor.map_array`` would pickle one entry per task: 10,000
        files written and renamed, against a hard link per task)."""
        import submitit

        executor = submitit.SlurmExecutor(
            folder=log_dir, max_num_timeout=int(cfg.get("max_num_timeout") or 0)
        )
        executor.update_parameters(**parameters(cfg))
        placed = Placed()
        try:
            for offset, size in self.plan(count, limits):
                # submitit writes the sbatch script with --array=0-(size-1)%parallelism (its
                # own map_count, as map_array does) and one pickle of the entry. Task i reads
                # <array>_<i>_submitted.pkl: a hard link to that pickle, which submitit
                # replaces by the task's own file when it checkpoints.
                executor.parameters["map_count"] = size
                try:
                    job = executor.submit(ArrayEntry(jobs_file, offset))
                finally:
                    del executor.parameters["map_count"]
                job_id = str(job.job_id)
                placed.arrays.append(Array(job_id, offset, size))
                pattern = log_dir / f"{job_id}_{{}}_submitted.pkl"
                _link_tasks(job.paths.submitted_pickle, size, pattern)
        except Exception as exc:  # sbatch's refusal (submitit's error), or a limit
            if placed.arrays:  # an array was refused after others were queued: take those back
                try:
                    _slurm.scancel([a.job_id for a in placed.arrays])
                except _slurm.SlurmError:
                    pass
            raise LauncherError(f"sbatch refused the sweep: {_message(exc)}") from None
        return placed

    # ------------------------------------------------------------------ states
    def states(self, record: SweepRecord, targets: list[Target]) -> dict[int, JobState]:
        jobs = {t.run_id: _array_task(t.submission, t.position) for t in targets}
        arrays = sorted({job[0] for job in jobs.values() if job})
        if not arrays:
            return {}
        queue = _slurm.queue_states(arrays)
        missing = [job for job in jobs.values() if job and job not in queue]
        acct = _slurm.accounting_states(arrays) if missing else {}
        out: dict[int, JobState] = {}
        for t in targets:
            job = jobs[t.run_id]
            if job is None:
                continue
            state = queue.get(job) or acct.get(job)
            label = f"job {job[0]}_{job[1]}"
            was = t.info.get("status")
            if state and state not in _slurm.ENDED:
                out[t.run_id] = JobState(state, label=label)  # pending, running, requeued
            elif not state:
                said = f"{label} is known neither to squeue nor to sacct"
                out[t.run_id] = JobState("VANISHED", Ending.VANISHED, said, label)
            elif state == "CANCELLED":
                out[t.run_id] = JobState(state, Ending.CANCELLED, f"{label} was cancelled", label)
            elif state == "TIMEOUT":
                said = f"{label} reached its time limit and was not requeued; the run was {was}"
                out[t.run_id] = JobState(state, Ending.TIMEOUT, said, label)
            else:
                said = f"{label} ended {state} without the run recording an end (it was {was})"
                out[t.run_id] = JobState(state, Ending.ENDED, said, label)
        return out

    def job_states(self, job_ids: list[str]) -> dict[str, JobState]:
        out: dict[str, JobState] = {}
        for job, state in _slurm.job_states(job_ids).items():
            if state is None:
                said = f"its SLURM job {job} is known neither to squeue nor to sacct"
                out[job] = JobState("VANISHED", Ending.VANISHED, said)
            else:
                ending = Ending.ENDED if state in _slurm.ENDED else None
                out[job] = JobState(state, ending, f"its SLURM job {job} is {state}")
        return out

    # ------------------------------------------------------------------ cancel
    def cancel(
        self, record: SweepRecord, targets: list[Target], whole: bool, wait_s: float
    ) -> None:
        jobs = [j for t in targets if (j := _array_task(t.submission, t.position))]
        if whole:  # the whole sweep: each array at once
            ids = sorted({array for array, _task in jobs}, key=int)
        else:
            ids = [f"{array}_{task}" for array, task in jobs]
        _slurm.scancel(ids)
        arrays = sorted({array for array, _task in jobs})
        deadline = time.time() + wait_s
        while arrays and time.time() < deadline:  # until the jobs have left (KillWait)
            states = _slurm.queue_states(arrays)
            if all(states.get(j) in _slurm.ENDED or j not in states for j in jobs):
                break
            time.sleep(0.5)

    # ------------------------------------------------------------------ doctor
    def doctor(self) -> tuple[str, str, str]:
        """Is a SLURM controller reachable (``sinfo``), and which partition is the default?"""
        sinfo = shutil.which("sinfo")
        if sinfo is None:
            return (
                "skip",
                "sinfo not found: no SLURM client on this machine",
                "`runlab submit --launcher local` runs sweeps as local processes",
            )
        code, out, err = _probe([sinfo, "--noheader", "--format=%P %a"])
        if code != 0:
            why = _first_line(err) or _first_line(out) or f"sinfo exited {code}"
            return (
                "fail",
                f"SLURM unreachable: {why}",
                "check the controller (`scontrol ping`) and SLURM_CONF; meanwhile "
                "`runlab submit --launcher local`",
            )
        partitions: dict[str, str] = {}
        default = None
        for line in out.splitlines():
            parts = line.split()
            if not parts:
                continue
            name = parts[0]
            if name.endswith("*"):
                name = name[:-1]
                default = name
            partitions[name] = parts[1] if len(parts) > 1 else "?"
        if not partitions:
            return ("warn", "sinfo lists no partition", "ask the cluster's admins")
        listed = ", ".join(f"{p}{'*' if p == default else ''} ({a})" for p, a in partitions.items())
        if default is None:
            return (
                "warn",
                f"no default partition; partitions: {listed}",
                f"name one: `runlab submit ... launcher.partition={next(iter(partitions))}`",
            )
        if partitions[default] != "up":
            others = [p for p, a in partitions.items() if a == "up"]
            fix = f"launcher.partition={others[0]}" if others else "ask the cluster's admins"
            return ("warn", f"default partition {default!r} is {partitions[default]}", fix)
        return ("ok", f"default partition {default!r}; partitions: {listed}", "")

    # ------------------------------------------------------------------ output
    def log_file(self, submission: Submission, position: int, run_id: int, err: bool) -> Path:
        log_dir = Path(submission.log_dir)
        suffix = ".err" if err else ".out"
        job = _array_task(submission, position)
        if job is None:
            return log_dir / f"{run_id}{suffix}"
        path = log_dir / f"{job[0]}_{job[1]}_0_log{suffix}"  # submitit's <array>_<task>_<rank>
        older = log_dir / f"{job[0]}_{job[1]}{suffix}"  # sweeps submitted before submitit
        return older if not path.exists() and older.exists() else path

    def job_label(self, submission: Submission, position: int) -> str:
        job = _array_task(submission, position)
        return f"{job[0]}_{job[1]}" if job else "?"

    def describe(self, cfg: Mapping[str, Any]) -> list[str]:
        return [
            "submitit SlurmExecutor parameters (job arrays of at most MaxArraySize tasks each):",
            *(f"  {key}: {value}" for key, value in parameters(cfg).items()),
        ]
