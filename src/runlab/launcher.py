"""Send a sweep's jobs to SLURM (one job array) or to local processes, through submitit.

The launcher's resources come from ``configs/launcher/<name>.yaml`` beside the
task's configs (built-in defaults otherwise), overridden by ``launcher.KEY=VALUE``
on the command line.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runlab.jobs import LocalWorker, TaskJob
from runlab.rundir import FINAL_STATUSES, STATUSES, RunDir

DEFAULTS: dict[str, dict[str, Any]] = {
    "local": {"name": "local", "max_parallel": 2, "timeout_min": 1440, "gpus": 0},
    "slurm": {
        "name": "slurm",
        "partition": None,
        "timeout_min": 60,
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
    },
}


class LauncherError(RuntimeError):
    """The scheduler refused the sweep, or the launcher config is wrong."""


def default_launcher() -> str:
    """SLURM where ``sbatch`` is on PATH, local processes otherwise."""
    return "slurm" if shutil.which("sbatch") else "local"


def load_config(name: str, config_dir: Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """The launcher's settings: defaults, then its YAML file, then ``launcher.*`` overrides."""
    from omegaconf import OmegaConf

    if name not in DEFAULTS:
        raise LauncherError(f"unknown launcher {name!r}: use one of {', '.join(DEFAULTS)}")
    cfg = OmegaConf.create(DEFAULTS[name])
    path = config_dir / "launcher" / f"{name}.yaml" if config_dir else None
    if path is not None and path.exists():
        cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
    if overrides:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        except Exception as exc:
            raise LauncherError(f"bad launcher override {' '.join(overrides)}: {exc}") from None
    unknown = set(cfg.keys()) - set(DEFAULTS[name])
    if unknown:
        raise LauncherError(
            f"unknown {name} launcher setting(s) {', '.join(sorted(unknown))}"
            f"{f' in {path}' if path and path.exists() else ''}; known: {', '.join(DEFAULTS[name])}"
        )
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out


def slurm_parameters(cfg: dict[str, Any]) -> dict[str, Any]:
    """``submitit.SlurmExecutor.update_parameters`` arguments (sbatch options) for the config."""
    params: dict[str, Any] = {
        "time": int(cfg["timeout_min"]),
        "cpus_per_task": cfg["cpus_per_task"],
        "array_parallelism": cfg["array_parallelism"],
        "signal_delay_s": cfg["signal_delay_s"],
        "additional_parameters": dict(cfg.get("additional_parameters") or {}),
        "setup": list(cfg.get("setup") or []),
        "ntasks_per_node": 1,
        "nodes": 1,
        "job_name": cfg.get("job_name") or "runlab",
    }
    if cfg.get("gpus_per_node"):
        params["gpus_per_node"] = cfg["gpus_per_node"]
    if cfg.get("mem_gb"):
        params["mem"] = f"{cfg['mem_gb']}G"
    for key in ("partition", "account", "qos"):
        if cfg.get(key):
            params[key] = cfg[key]
    return params


def submit(jobs: list[TaskJob], cfg: dict[str, Any], folder: Path) -> list[Any]:
    """Submit ``jobs``; returns submitit's job handles (one per run for SLURM, per worker locally)."""
    import submitit

    if cfg["name"] == "slurm":
        executor = submitit.SlurmExecutor(
            folder=folder / "%j", max_num_timeout=cfg["max_num_timeout"]
        )
        executor.update_parameters(**slurm_parameters(cfg))
        try:
            with executor.batch():
                handles = [executor.submit(job) for job in jobs]
        except Exception as exc:  # sbatch's refusal, with its message
            raise LauncherError(f"sbatch refused the sweep: {_message(exc)}") from None
        return handles
    executor = submitit.LocalExecutor(folder=folder / "%j")
    executor.update_parameters(timeout_min=cfg["timeout_min"], gpus_per_node=cfg.get("gpus") or 0)
    workers = max(1, min(int(cfg["max_parallel"]), len(jobs)))
    return [executor.submit(LocalWorker(jobs)) for _ in range(workers)]


def _message(exc: Exception) -> str:
    text = str(exc)
    for attr in ("stderr", "output"):
        extra = getattr(exc, attr, None)
        if extra:
            text += "\n" + (extra.decode() if isinstance(extra, bytes) else str(extra))
    return text.strip()


def log_paths(handle: Any) -> dict[str, str]:
    paths = handle.paths
    return {"log_out": str(paths.stdout), "log_err": str(paths.stderr)}


def wait(runs: Sequence[RunDir], handles: Sequence[Any], poll_s: float = 2.0) -> list[RunDir]:
    """Show a live progress bar until every run has ended; return the runs that did not complete.

    A run whose scheduler job ended without it starting (a crash before Python
    began, a node failure) is marked ``FAILED`` with the job's state, so that
    nothing waits forever.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    final = set(FINAL_STATUSES)
    with Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("", total=len(runs))
        while True:
            statuses = [run.read_info().get("status", "QUEUED") for run in runs]
            counts = Counter(statuses)
            done = sum(counts[s] for s in final)
            bar.update(task, completed=done, description=_describe_counts(counts))
            if done == len(runs):
                break
            if handles and all(h.done() for h in handles):
                _reconcile(runs, statuses, handles)
                continue
            time.sleep(poll_s)
    return [run for run in runs if run.read_info().get("status") != "COMPLETE"]


def _reconcile(runs: Sequence[RunDir], statuses: list[str], handles: Sequence[Any]) -> None:
    time.sleep(1.0)  # let a job that just ended finish writing its record
    per_run = len(handles) == len(runs)  # SLURM: one handle per run; local: per worker
    for i, (run, status) in enumerate(zip(runs, statuses, strict=True)):
        if run.read_info().get("status") in FINAL_STATUSES:
            continue
        state = f"ended as {handles[i].state}" if per_run else "ended"
        run.update_info(
            status="FAILED",
            error={
                "type": "JobError",
                "message": f"the scheduler job {state} while the run was {status}",
            },
        )


def _describe_counts(counts: Counter[str]) -> str:
    colors = {"COMPLETE": "green", "FAILED": "red", "INTERRUPTED": "yellow", "RUNNING": "cyan"}
    parts = []
    for status in STATUSES:
        if counts.get(status):
            color = colors.get(status, "white")
            parts.append(f"[{color}]{counts[status]} {status.lower()}[/]")
    return "  ".join(parts)


def python_executable() -> str:
    """The interpreter jobs run: this environment's (pixi's, when run through pixi)."""
    return sys.executable
