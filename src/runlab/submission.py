"""A sweep from the command line to the queue: expand, pin the code, pre-create runs, submit.

Order matters for safety: everything that can fail on bad input (overrides,
configs, launcher settings, the git state) is checked before the first run
directory is created, and a refused submission marks its runs ``FAILED``
instead of leaving them ``QUEUED`` forever.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from runlab import environment, launcher
from runlab.files import now_iso, write_atomic, write_record, write_yaml
from runlab.jobs import TaskJob
from runlab.rundir import LOGS_ENV, RunDir, allocate
from runlab.snapshot import CodeState, code_state, snapshot
from runlab.sweep import Job, expand, task_spec


@dataclass
class Sweep:
    """A prepared sweep: its jobs, launcher settings and pinned code, nothing written yet."""

    script: Path
    jobs: list[Job]
    launcher: dict[str, Any]
    code: CodeState
    logs: Path
    runs: list[RunDir] = field(default_factory=list)
    task_jobs: list[TaskJob] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)
    sweep_id: str = ""


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


def prepare(
    script: Path | str,
    arguments: list[str],
    launcher_name: str | None = None,
    logs: Path | str | None = None,
    allow_dirty: bool = False,
) -> Sweep:
    """Expand and check a sweep. Raises with a message a user can act on; writes nothing."""
    from runlab.snapshot import CodeStateError

    name_arg, launcher_overrides, overrides = split_arguments(arguments)
    spec = task_spec(script)
    name = launcher_name or name_arg or launcher.default_launcher()
    cfg = launcher.load_config(name, spec.config_dir, launcher_overrides)
    jobs = expand(spec, overrides)
    code = code_state(spec.script)
    if code.dirty and not allow_dirty:
        listing = "\n".join(f"  {line}" for line in code.changes[:30])
        more = f"\n  ... and {len(code.changes) - 30} more" if len(code.changes) > 30 else ""
        raise CodeStateError(
            f"the git tree at {code.root} has uncommitted changes:\n{listing}{more}\n"
            "Jobs are pinned to a commit so that results can be traced to code. Commit them "
            "(git add -A && git commit), or pass --allow-dirty to record the diff in every run."
        )
    if logs is None:
        logs = jobs[0].config.get("runlab", {}).get("logs") if jobs else None
    logs = Path(logs or os.environ.get(LOGS_ENV) or "logs").absolute()
    return Sweep(script=spec.script, jobs=jobs, launcher=cfg, code=code, logs=logs)


def create_runs(sweep: Sweep) -> None:
    """Snapshot the code and pre-create one ``QUEUED`` run directory per job."""
    code_dir = snapshot(sweep.code, sweep.logs / ".snapshots")
    script_in_snapshot = code_dir / sweep.script.relative_to(sweep.code.root)
    sweep.runs = [RunDir(p) for p in allocate(sweep.logs, len(sweep.jobs))]
    sweep.sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{sweep.runs[0].run_id}" if sweep.runs else ""
    src = code_dir / "src"
    pythonpath = os.pathsep.join(
        p for p in (str(src) if src.is_dir() else "", os.environ.get("PYTHONPATH", "")) if p
    )
    job_env = {
        LOGS_ENV: str(sweep.logs),
        environment.CODE_COMMIT_ENV: sweep.code.commit,
        environment.CODE_BRANCH_ENV: sweep.code.branch or "",
        environment.CODE_DIRTY_ENV: "1" if sweep.code.dirty else "0",
        environment.CODE_SNAPSHOT_ENV: str(code_dir),
    }
    if sweep.code.record().get("problems"):  # untracked files left out: every run says so
        job_env[environment.CODE_RECORD_ENV] = sweep.code.record_json()
    if pythonpath:
        job_env["PYTHONPATH"] = pythonpath
    command = [sys.executable, "-m", "runlab", "submit", *sys.argv[2:]]
    submitted = now_iso()
    sweep.task_jobs = []
    for index, (run, job) in enumerate(zip(sweep.runs, sweep.jobs, strict=True)):
        run.create()
        write_record(run.config_file, job.config)
        write_yaml(run.metadata / "overrides.yaml", job.overrides)
        if sweep.code.dirty:
            write_atomic(run.metadata / "git.diff", sweep.code.diff)
        run.update_info(
            run_id=run.run_id,
            status="QUEUED",
            task=str(sweep.script),
            sweep_id=sweep.sweep_id,
            sweep_index=index,
            launcher=sweep.launcher["name"],
            submitted_time=submitted,
            submit_command=command,
            code_commit=sweep.code.commit,
            code_snapshot=str(code_dir),
        )
        sweep.task_jobs.append(
            TaskJob(
                python=launcher.python_executable(),
                script=str(script_in_snapshot),
                overrides=list(job.overrides),
                run_dir=str(run.path),
                cwd=str(Path.cwd()),
                env=job_env,
                timeout_min=sweep.launcher.get("timeout_min"),
            )
        )


def launch(sweep: Sweep) -> None:
    """Submit the pre-created runs; on refusal mark them ``FAILED`` with the reason."""
    folder = sweep.logs / ".submitit"
    try:
        sweep.handles = launcher.submit(sweep.task_jobs, sweep.launcher, folder)
    except Exception as exc:
        reason = str(exc)
        for run in sweep.runs:
            run.update_info(status="FAILED", error={"type": "SubmissionError", "message": reason})
        raise
    if sweep.launcher["name"] == "slurm":
        for run, handle in zip(sweep.runs, sweep.handles, strict=True):
            job_id = str(handle.job_id)
            array_job, _, task = job_id.partition("_")
            run.update_info(
                job_id=job_id,
                array_job_id=array_job if task else None,
                array_task_id=int(task) if task else None,
                **launcher.log_paths(handle),
            )
    else:
        worker_logs = [launcher.log_paths(h) for h in sweep.handles]
        for run in sweep.runs:
            run.update_info(local_workers=[p["log_out"] for p in worker_logs])
