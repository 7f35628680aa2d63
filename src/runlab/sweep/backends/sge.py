"""Grid Engine (SGE, Son of Grid Engine, UGE, Altair Grid Engine): a sweep as array jobs.

**Submitting.** A sweep becomes array jobs ``qsub -t 1-N`` of one job script written
in the submission's log folder (``<log_dir>/sge-job.sh``), at most ``max_aj_tasks``
tasks each (``qconf -sconf``; more points make more arrays). Task ``t`` of the array
that starts at ``OFFSET`` runs entry ``OFFSET + t - 1`` of the jobs file through
``python -m runlab.sweep.backends.sge task JOBS_FILE OFFSET``. Jobs are submitted with
``-S /bin/bash`` and ``-r y`` (rerunnable), and the environment they see is an explicit
allowlist written into the job script (:data:`PASSED_ENV`, plus ``launcher.env``):
never ``-V``, which would copy every variable of the submitting shell, credentials
included, into the scheduler's spool. Each task's output is
``<log_dir>/<job>.<task>.out`` and ``.err``.

**Before anything is written** the submission is verified with ``qsub -w v`` (the
scheduler's own check of queues, resources and the task range), so a submission Grid
Engine would refuse leaves no run behind.

**States.** ``qstat -xml -u *`` lists pending and running tasks (``qw``, ``r``, ``t``,
suspended ``s``/``S``/``T``, rescheduled ``Rr``/``Rq``, error ``Eqw``); a task that
has left it is asked of accounting (``qacct -j JOB``, the last record of each task). A
task in an error state (``Eqw``) is ``FAILED`` with the reason ``qstat -j`` gives; a
suspended one lives (its run stays ``RUNNING``); one that ended without its run
recording an end is ``LOST``, with its exit status and Grid Engine's ``failed`` reason.

**Preemption and time limits.** Grid Engine preempts by suspending a task (``SIGSTOP``,
then ``SIGCONT``: the run stays ``RUNNING``) or by rescheduling it (``qmod -rj``: the
task is killed and, being rerunnable, started again: the run resumes from its last
checkpoint as its next attempt). The time limit is runlab's own: at ``timeout_min`` the
task is asked to stop (``SIGUSR2``: it saves its checkpoint and ends ``TIMEOUT``) and
exits 99, which Grid Engine answers by running the task again, at most
``max_num_timeout`` times. ``h_rt`` (``timeout_min`` plus :data:`HARD_MARGIN_MIN`) is
the scheduler's hard stop. ``qdel`` kills the task; ``runlab cancel`` records the
cancel first, so its runs end ``INTERRUPTED``.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from runlab.record import secrets
from runlab.record.files import write_atomic
from runlab.record.rundir import RESTARTED_JOB_ENV
from runlab.status import Status
from runlab.sweep.backends.base import (
    Ending,
    JobState,
    LauncherError,
    Limits,
    Placed,
    Target,
    first_line,
    plan_arrays,
    probe,
)
from runlab.sweep.jobs import TaskRun, load
from runlab.sweep.record import Array, Submission, SweepRecord

NAME = "sge"
#: exit status that makes Grid Engine run a task again
REQUEUE_EXIT = 99
#: minutes between runlab's own time limit and the scheduler's hard one (h_rt)
HARD_MARGIN_MIN = 5
#: the variables of the submitting shell a task sees (where they are set), besides the
#: code's own (RUNLAB_LOGS, PYTHONPATH: in the jobs file) and ``launcher.env``
PASSED_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PIXI_PROJECT_ROOT",
    "PIXI_ENVIRONMENT_NAME",
    "CUDA_HOME",
    "HF_HOME",
    "TORCH_HOME",
)
_ENV_PREFIX = "RUNLAB_"  # and every runlab setting (RUNLAB_HEARTBEAT_S, ...)
_SCRIPT = "sge-job.sh"
# qstat state letters: E error, s/S/T suspended (by qmod, a subordinate queue, a threshold)
_ALIVE = re.compile(r"^[a-zA-Z]+$")


class SgeError(LauncherError):
    """A Grid Engine command failed, or a limit makes the sweep impossible."""


def _run(args: list[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SgeError(f"{args[0]} is not on PATH: is this a Grid Engine submit host?") from None
    except subprocess.TimeoutExpired:
        raise SgeError(f"`{shlex.join(args[:3])} ...` did not answer in {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        said = " ".join((proc.stderr or proc.stdout).split())
        raise SgeError(f"`{shlex.join(args[:3])} ...` failed: {said}")
    return proc


def _task(submission: Submission, position: int) -> tuple[str, int] | None:
    """``(job_id, task)`` of the run at ``position`` (Grid Engine counts tasks from 1)."""
    for array in submission.arrays:
        if array.first <= position < array.first + array.count:
            return array.job_id, position - array.first + 1
    return None


def _expand(spec: str) -> list[int]:
    """qstat's task list (``3``, ``3,4``, ``5-20:1``, ``1-9:2``) as task ids."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            continue
        lo = int(m[1])
        hi = int(m[2] or lo)
        out.extend(range(lo, hi + 1, int(m[3] or 1)))
    return out


def parse_qstat(xml: str) -> dict[tuple[str, int], str]:
    """``qstat -xml`` -> ``{(job_id, task): state}`` (a job without tasks is task 1... as
    Grid Engine names a plain job's one task: ``undefined``, kept here as 0)."""
    states: dict[tuple[str, int], str] = {}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise SgeError(f"qstat -xml gave what is not XML: {exc}") from None
    for job in root.iter("job_list"):
        number = (job.findtext("JB_job_number") or "").strip()
        state = (job.findtext("state") or "").strip()
        tasks = (job.findtext("tasks") or "").strip()
        for task in _expand(tasks) if tasks else [0]:
            states[(number, task)] = state
    return states


def parse_qacct(text: str) -> dict[tuple[str, int], dict[str, str]]:
    """``qacct -j`` -> ``{(job_id, task): record}``, the last record of each task (a
    rescheduled or requeued task has one per attempt)."""
    out: dict[tuple[str, int], dict[str, str]] = {}
    for block in text.split("=" * 62):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(" ")
            if name:
                fields[name] = value.strip()
        if "jobnumber" not in fields:
            continue
        task = fields.get("taskid", "")
        out[(fields["jobnumber"], int(task) if task.isdigit() else 0)] = fields  # later wins
    return out


class Backend:
    """Grid Engine array jobs (see the module)."""

    name: ClassVar[str] = NAME
    title: ClassVar[str] = "Grid Engine"
    cluster: ClassVar[bool] = True
    defaults: ClassVar[Mapping[str, Any]] = {
        "name": NAME,
        "timeout_min": 60,
        "queue": None,  # -q
        "project": None,  # -P
        "pe": None,  # -pe NAME SLOTS: the parallel environment that gives a task its cores
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": 1,
        "gpus_per_node": 0,
        "gpu_resource": "gpu",  # -l gpu=N, as the cluster names its GPUs
        "mem_gb": None,
        "memory_resource": "h_vmem",  # -l h_vmem=XG (per slot), as the cluster meters memory
        "resources": {},  # more -l NAME=VALUE
        "array_parallelism": None,  # -tc: tasks of one array running at once
        "max_num_timeout": 3,
        "job_name": "runlab",
        "env": [],  # names of more variables of the submitting shell the tasks see
        "additional_parameters": [],  # more qsub arguments, as a list
    }
    preemption: ClassVar[str] = (
        "suspension (the run stays RUNNING) or rescheduling with `qmod -rj` (the task is "
        "killed and run again: the run resumes from its last checkpoint as its next "
        "attempt); at timeout_min runlab stops the run (SIGUSR2: checkpoint, TIMEOUT) and "
        f"exits {REQUEUE_EXIT}, which Grid Engine answers by running it again (at most "
        "max_num_timeout times)"
    )
    requeues_timeouts: ClassVar[bool] = True
    # qacct sees an ended task once accounting is flushed (accounting_flush_time, whose
    # default is flush_time: 15 s)
    vanish_grace_s: ClassVar[float] = 20.0

    def available(self) -> bool:
        from shutil import which

        return which("qsub") is not None and which("qstat") is not None

    # ---------------------------------------------------------------- settings
    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        if int(cfg.get("nodes") or 1) != 1:
            raise LauncherError(
                f"launcher.nodes={cfg['nodes']}{where}: runlab runs a Grid Engine task on one "
                "host; use launcher.nodes=1 (and launcher.tasks_per_node=N for N ranks)"
            )
        slots = int(cfg.get("cpus_per_task") or 1) * int(cfg.get("tasks_per_node") or 1)
        if slots > 1 and not cfg.get("pe"):
            raise LauncherError(
                f"{slots} cores per task{where} need a parallel environment: set "
                "launcher.pe=NAME (`qconf -spl` lists them), or cpus_per_task=1"
            )
        for key, kind in (("resources", Mapping), ("env", list), ("additional_parameters", list)):
            value = cfg.get(key)
            if value is not None and not isinstance(value, kind):
                shape = "a mapping NAME: VALUE" if kind is Mapping else "a list"
                raise LauncherError(f"launcher.{key}={value!r}{where}: give {shape}")
        for name in cfg.get("env") or []:
            if secrets.secret_key(str(name)):
                raise LauncherError(
                    f"launcher.env names {name}, a credential{where}: runlab never copies one "
                    "into a job script; let the task read it on the compute node"
                )

    def _qsub_args(self, cfg: Mapping[str, Any], log_dir: Path | None) -> list[str]:
        """The qsub options of every array of the sweep (the task range comes apart)."""
        hard = int(cfg["timeout_min"]) + HARD_MARGIN_MIN
        args = ["-S", "/bin/bash", "-r", "y", "-N", str(cfg.get("job_name") or "runlab")]
        args += ["-l", f"h_rt={hard // 60}:{hard % 60:02d}:00"]
        if log_dir is not None:  # -wd: a task never starts in a home that may not exist
            args += ["-wd", str(log_dir), "-o", f"{log_dir}/$JOB_ID.$TASK_ID.out"]
            args += ["-e", f"{log_dir}/$JOB_ID.$TASK_ID.err"]
        if cfg.get("queue"):
            args += ["-q", str(cfg["queue"])]
        if cfg.get("project"):
            args += ["-P", str(cfg["project"])]
        slots = int(cfg.get("cpus_per_task") or 1) * int(cfg.get("tasks_per_node") or 1)
        if cfg.get("pe"):
            args += ["-pe", str(cfg["pe"]), str(slots)]
        if cfg.get("mem_gb"):
            per_slot = float(cfg["mem_gb"]) / slots
            args += ["-l", f"{cfg.get('memory_resource') or 'h_vmem'}={per_slot:g}G"]
        if cfg.get("gpus_per_node"):
            args += ["-l", f"{cfg.get('gpu_resource') or 'gpu'}={int(cfg['gpus_per_node'])}"]
        for key, value in (cfg.get("resources") or {}).items():
            args += ["-l", f"{key}={value}"]
        if cfg.get("array_parallelism"):
            args += ["-tc", str(int(cfg["array_parallelism"]))]
        return args + [str(a) for a in cfg.get("additional_parameters") or []]

    # ------------------------------------------------------------------ limits
    def limits(self, cfg: Mapping[str, Any]) -> Limits:
        """``max_aj_tasks`` (tasks per array), and ``max_u_jobs``/``max_jobs`` (jobs
        queued per user / in all; an array counts once) from ``qconf -sconf``."""
        text = _run(["qconf", "-sconf"], timeout=30).stdout
        conf = dict(re.findall(r"^(max_\w+)\s+(\d+)", text, re.MULTILINE))
        limits = Limits(max_array_size=int(conf.get("max_aj_tasks", 75000)) or None)
        for key, scope in (("max_u_jobs", "user"), ("max_jobs", "all")):
            value = int(conf.get(key, 0))
            if not value:
                continue  # 0: no limit
            queued = self._queued(scope)
            if limits.max_submit is None or value - queued < limits.max_submit - limits.queued:
                limits.max_submit, limits.queued = value, queued
                limits.max_submit_source = f"{key} in `qconf -sconf`"
        limits.extra = {"max_aj_tasks": limits.max_array_size}
        return limits

    def _queued(self, scope: str) -> int:
        who = getpass.getuser() if scope == "user" else "*"
        states = parse_qstat(_run(["qstat", "-xml", "-u", who], timeout=30).stdout)
        return len({job for job, _task in states})

    def plan(self, count: int, limits: Any) -> list[tuple[int, int]]:
        arrays = plan_arrays(count, limits.max_array_size if limits else None)
        if limits is not None and limits.max_submit is not None:
            room = limits.max_submit - limits.queued
            if len(arrays) > room:
                raise SgeError(
                    f"the sweep needs {len(arrays)} array job(s) of at most "
                    f"{limits.max_array_size} tasks, but Grid Engine lets you have at most "
                    f"{limits.max_submit} jobs ({limits.max_submit_source}) and "
                    f"{limits.queued} are there: wait for the queue to drain, or split the "
                    "sweep; nothing was written"
                )
        return arrays

    def validate(self, cfg: Mapping[str, Any], count: int, limits: Any) -> None:
        """``qsub -w v``: Grid Engine checks the queue, resources and task range."""
        size = self.plan(count, limits)[0][1] if count else 1
        args = ["qsub", "-w", "v", "-t", f"1-{size}", *self._qsub_args(cfg, None)]
        proc = _run([*args, "-b", "y", "true"], check=False)
        if proc.returncode != 0:
            said = " ".join((proc.stderr or proc.stdout).replace("Exiting.", "").split())
            raise LauncherError(
                f"Grid Engine would refuse the sweep (qsub -w v: {said})",
                todo="fix the launcher settings; no run was created",
            )

    def spec_fields(self, cfg: Mapping[str, Any], log_dir: Path, count: int) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ submit
    def _script(self, cfg: Mapping[str, Any], jobs_file: Path) -> str:
        names = [*PASSED_ENV, *(str(n) for n in cfg.get("env") or [])]
        names += sorted(n for n in os.environ if n.startswith(_ENV_PREFIX) and n not in names)
        env = {n: os.environ[n] for n in names if n in os.environ}
        env = {
            n: v
            for n, v in env.items()
            if not secrets.is_secret(n, v) and not secrets.secret_key(n)
        }
        lines = [
            "#!/bin/bash",
            "# A task of a runlab sweep: entry OFFSET + SGE_TASK_ID - 1 of the jobs file.",
            "# The environment is this allowlist, never the submitting shell's (-V).",
            *(f"export {n}={shlex.quote(v)}" for n, v in env.items()),
            f"exec {shlex.quote(sys.executable)} -m runlab.sweep.backends.sge task "
            f'{shlex.quote(str(jobs_file))} "$1"',
        ]
        return "\n".join(lines) + "\n"

    def submit(
        self, jobs_file: Path, count: int, cfg: Mapping[str, Any], log_dir: Path, limits: Any
    ) -> Placed:
        script = log_dir / f"{jobs_file.stem}-{_SCRIPT}"
        write_atomic(script, self._script(cfg, jobs_file).encode())
        args = self._qsub_args(cfg, log_dir)
        placed = Placed()
        try:
            for offset, size in self.plan(count, limits):
                out = _run(
                    ["qsub", "-terse", "-t", f"1-{size}", *args, str(script), str(offset)]
                ).stdout
                job = out.strip().split(".")[0]
                if not job.isdigit():
                    raise SgeError(f"qsub answered {out.strip()!r}, not a job id")
                placed.arrays.append(Array(job, offset, size))
        except SgeError as exc:
            if placed.arrays:  # refused after others were queued: take those back
                _run(["qdel", *(a.job_id for a in placed.arrays)], check=False)
            raise LauncherError(f"qsub refused the sweep: {exc.line()}") from None
        return placed

    # ------------------------------------------------------------------ states
    def _queue(self, jobs: Iterable[str]) -> dict[tuple[str, int], str]:
        wanted = set(jobs)
        states = parse_qstat(_run(["qstat", "-xml", "-u", "*"], timeout=30).stdout)
        return {k: v for k, v in states.items() if k[0] in wanted}

    def _accounting(self, jobs: Iterable[str]) -> dict[tuple[str, int], dict[str, str]]:
        out: dict[tuple[str, int], dict[str, str]] = {}
        for job in sorted(set(jobs)):
            proc = _run(["qacct", "-j", job], timeout=60, check=False)
            if proc.returncode == 0:  # not found (yet, or accounting is off): nothing
                out.update(parse_qacct(proc.stdout))
        return out

    def _error_reason(self, job: str) -> str:
        proc = _run(["qstat", "-j", job], check=False)
        for line in proc.stdout.splitlines():
            if line.startswith("error reason"):
                return line.split(":", 1)[1].strip()
        return "no reason given"

    def _state(
        self, job: str, task: int, queue: dict, acct: dict, was: Any, label: str
    ) -> JobState:
        state = queue.get((job, task))
        if state is not None:
            if "E" in state:
                why = self._error_reason(job)
                said = f"{label} is in Grid Engine's error state {state}: {why} (qdel {job} to "
                said += "remove it)"
                return JobState(state, Ending.ERROR, said, label)
            return JobState(state, label=label)  # pending, running, suspended, rescheduled
        record = acct.get((job, task))
        if record is None and was == Status.QUEUED:
            said = (
                f"{label} left the queue before the run started (deleted while pending: Grid "
                "Engine keeps no accounting record of a task that never ran)"
            )
            return JobState("DELETED", Ending.DELETED, said, label)
        if record is None:
            said = f"{label} is known neither to qstat nor to qacct"
            return JobState("VANISHED", Ending.VANISHED, said, label)
        # qacct pads its columns: "137                  (Killed)" reads "137 (Killed)"
        exit_status, failed = (
            " ".join(str(record.get(k, d)).split())
            for k, d in (("exit_status", "?"), ("failed", "0"))
        )
        word = f"exit {exit_status}, failed {failed}"
        if "h_rt" in failed or "h_rt" in record.get("deleted_by", ""):
            said = f"{label} reached its hard time limit (h_rt) ({word}); the run was {was}"
            return JobState(word, Ending.TIMEOUT, said, label)
        said = f"{label} ended ({word}) without the run recording an end (it was {was})"
        return JobState(word, Ending.ENDED, said, label)

    def states(self, record: SweepRecord, targets: list[Target]) -> dict[int, JobState]:
        tasks = {t.run_id: _task(t.submission, t.position) for t in targets}
        jobs = {job[0] for job in tasks.values() if job}
        if not jobs:
            return {}
        queue = self._queue(jobs)
        gone = {job[0] for job in tasks.values() if job and job not in queue}
        acct = self._accounting(gone) if gone else {}
        out = {}
        for t in targets:
            job = tasks[t.run_id]
            if job is not None:
                label = f"job {job[0]}.{job[1]}"
                was = t.info.get("status")
                out[t.run_id] = self._state(job[0], job[1], queue, acct, was, label)
        return out

    def job_states(self, job_ids: list[str]) -> dict[str, JobState]:
        pairs: dict[str, tuple[str, int]] = {}
        for text in job_ids:
            number, _, task = str(text).partition(".")
            pairs[text] = (number, int(task) if task.isdigit() else 0)
        queue = self._queue({p[0] for p in pairs.values()})
        gone = {p[0] for p in pairs.values() if p not in queue}
        acct = self._accounting(gone) if gone else {}
        label = "its Grid Engine job"
        return {
            text: self._state(number, n, queue, acct, Status.RUNNING, f"{label} {text}")
            for text, (number, n) in pairs.items()
        }

    # ------------------------------------------------------------------ cancel
    def cancel(
        self, record: SweepRecord, targets: list[Target], whole: bool, wait_s: float
    ) -> None:
        tasks = [pair for t in targets if (pair := _task(t.submission, t.position))]
        if whole:
            ids = sorted({a.job_id for sub in record.submissions for a in sub.arrays})
            if ids:
                _run(["qdel", *ids], timeout=120, check=False)
        else:
            for number, task in tasks:
                _run(["qdel", number, "-t", str(task)], timeout=120, check=False)
        jobs = {number for number, _task in tasks}
        deadline = time.time() + wait_s
        while jobs and time.time() < deadline:  # until the tasks have left the queue
            queue = self._queue(jobs)
            if not any(pair in queue for pair in tasks):
                break
            time.sleep(0.5)

    # ------------------------------------------------------------------ doctor
    def doctor(self) -> tuple[str, str, str]:
        """Does the cell answer (``qstat -g c``), and has it a queue with slots?"""
        qstat = shutil.which("qstat")
        if qstat is None:
            return (
                "skip",
                "qstat not found: no Grid Engine client on this machine",
                "`runlab submit --launcher local` runs sweeps as local processes",
            )
        code, out, err = probe([qstat, "-g", "c"])
        if code != 0:
            why = first_line(err) or first_line(out) or f"qstat exited {code}"
            return (
                "fail",
                f"Grid Engine unreachable: {why}",
                "check SGE_ROOT and SGE_CELL, and that sge_qmaster runs on the master host",
            )
        queues = []  # CLUSTER QUEUE  CQLOAD  USED  RES  AVAIL  TOTAL ...
        for line in out.splitlines()[2:]:
            parts = line.split()
            if len(parts) >= 6 and parts[5].isdigit():
                queues.append(f"{parts[0]} ({parts[4]}/{parts[5]} slots free)")
        if not queues:
            return ("warn", "qstat -g c lists no cluster queue", "ask the cluster's admins")
        return ("ok", f"queues: {', '.join(queues)}", "")

    # ------------------------------------------------------------------ output
    def log_file(self, submission: Submission, position: int, run_id: int, err: bool) -> Path:
        job = _task(submission, position)
        suffix = ".err" if err else ".out"
        name = f"{job[0]}.{job[1]}{suffix}" if job else f"{run_id}{suffix}"
        return Path(submission.log_dir) / name

    def job_label(self, submission: Submission, position: int) -> str:
        job = _task(submission, position)
        return f"{job[0]}.{job[1]}" if job else "?"

    def describe(self, cfg: Mapping[str, Any]) -> list[str]:
        return [
            "qsub options (array jobs of at most max_aj_tasks tasks each, -t 1-N):",
            f"  {shlex.join(self._qsub_args(cfg, Path('<log_dir>')))}",
        ]


# ----------------------------------------------------------- on the compute node
def task_main(jobs_file: str, offset: int) -> int:
    """Run task ``SGE_TASK_ID`` of an array: entry ``offset + SGE_TASK_ID - 1``."""
    job_id = os.environ.get("JOB_ID", "")
    task = os.environ.get("SGE_TASK_ID", "undefined")
    index = int(task) - 1 if task.isdigit() else 0
    spec = load(jobs_file)
    entry = spec["jobs"][offset + index]
    log_dir = Path(spec.get("log_dir") or Path(jobs_file).parent)
    run = TaskRun(
        spec, entry, str(log_dir / f"{job_id}.{task}.out"), str(log_dir / f"{job_id}.{task}.err")
    )
    run.extra = {
        "job_id": f"{job_id}.{task}",
        "array_job_id": job_id,
        "array_task_id": int(task) if task.isdigit() else None,
        "sge_restarted": os.environ.get("RESTARTED") == "1" or None,
    }
    if os.environ.get("RESTARTED") == "1":  # rescheduled, or requeued by exit 99
        os.environ[RESTARTED_JOB_ENV] = f"{job_id}.{task}"  # the earlier attempt is gone
    signal.signal(signal.SIGTERM, run.on_signal)
    signal.signal(signal.SIGUSR2, run.on_signal)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a notice of suspension: nothing to do
    print(
        f"[runlab] job {job_id}.{task}: run {run.run.run_id} ({run.run.path})",
        file=sys.stderr,
        flush=True,
    )
    run.start()
    code = run.wait(local_timeout=True)
    requeued: list[bool] = []
    status = run.outcome(code, requeue=lambda: requeued.append(True))
    print(
        f"[runlab] run {run.run.run_id} {status}{', requeued' if requeued else ''}",
        file=sys.stderr,
        flush=True,
    )
    if requeued:
        return REQUEUE_EXIT
    return 0 if status == Status.COMPLETE else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "task":
        print("usage: python -m runlab.sweep.backends.sge task JOBS_FILE OFFSET", file=sys.stderr)
        return 2
    return task_main(argv[1], int(argv[2]))


if __name__ == "__main__":
    sys.exit(main())
