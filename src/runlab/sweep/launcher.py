"""Send a sweep's jobs to SLURM (job arrays, see :mod:`runlab.sweep.slurm`) or to local workers.

The launcher's resources come from ``configs/launcher/<name>.yaml`` beside the
task's configs (built-in defaults otherwise), overridden by ``launcher.KEY=VALUE``
on the command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runlab.errors import UserError
from runlab.sweep import slurm
from runlab.sweep.jobs import ArrayEntry

DEFAULTS: dict[str, dict[str, Any]] = {
    "local": {
        "name": "local",
        "max_parallel": 2,
        "timeout_min": 1440,
        "gpus": 0,
        **{"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": None},
        "mem_gb": None,
    },
    "slurm": {
        "name": "slurm",
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
    },
}


class LauncherError(UserError, RuntimeError):
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
    check_launcher(out, path if path is not None and path.exists() else None)
    return out


def check_launcher(cfg: Mapping[str, Any], path: Path | None = None) -> None:
    """Refuse resources a launcher cannot give (``launcher.nodes=2`` locally, ``tasks_per_node=0``)."""
    where = f" (in {path} or launcher.* overrides)" if path else ""
    for key in ("nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb"):
        value = cfg.get(key)
        if value is None:
            continue
        low = 0 if key == "gpus_per_node" else 1
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            raise LauncherError(
                f"launcher.{key}={value!r}{where}: give a number >= {low}"
                + ("" if key == "mem_gb" else " (an integer)")
            )
        if key != "mem_gb" and int(value) != value:
            raise LauncherError(f"launcher.{key}={value!r}{where}: give an integer")
    if cfg.get("name") == "local" and int(cfg.get("nodes") or 1) != 1:
        raise LauncherError(
            f"launcher.nodes={cfg['nodes']}{where}: the local launcher runs on this machine only; "
            "use launcher.nodes=1 (and launcher.tasks_per_node=N for N ranks), or --launcher slurm"
        )


def slurm_parameters(cfg: dict[str, Any]) -> dict[str, Any]:
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


@dataclass
class Handle:
    """A submitted unit: a SLURM job array, or a local worker process (``job_id`` is its pid)."""

    job_id: str
    first: int = 0  # index of its first run in the submission
    count: int = 0
    kind: str = "slurm"


def submit_slurm(
    jobs_file: Path, count: int, cfg: dict[str, Any], log_dir: Path, limits: Any
) -> list[Handle]:
    """Submit the ``count`` entries of ``jobs_file`` through submitit, one job array per
    ``(offset, size)`` of the plan, each one submission of a light :class:`~runlab.sweep.jobs.ArrayEntry`
    (``executor.map_array`` would pickle one entry per task: 10,000 files written and
    renamed, 4-10 s for 10,000 points on a loaded machine, against a link per task)."""

    import submitit

    executor = submitit.SlurmExecutor(
        folder=log_dir, max_num_timeout=int(cfg.get("max_num_timeout") or 0)
    )
    executor.update_parameters(**slurm_parameters(cfg))
    handles: list[Handle] = []
    try:
        for offset, size in slurm.plan_arrays(count, limits):
            # One submitit submission per array: submitit writes the sbatch script with
            # --array=0-(size-1)%parallelism (its own map_count, as map_array does) and one
            # pickle of the entry; each task runs entry offset + SLURM_ARRAY_TASK_ID.
            # submitit's task i reads <array>_<i>_submitted.pkl: a hard link to that pickle
            # (so no task depends on the array's own name surviving), which submitit
            # replaces by the task's own file when it checkpoints.
            executor.parameters["map_count"] = size
            try:
                job = executor.submit(ArrayEntry(jobs_file, offset))
            finally:
                del executor.parameters["map_count"]
            job_id = str(job.job_id)
            handles.append(Handle(job_id, offset, size))
            _link_tasks(job.paths.submitted_pickle, size, log_dir / f"{job_id}_{{}}_submitted.pkl")
    except Exception as exc:  # sbatch's refusal (submitit's error), or a limit
        if handles:  # an array was refused after others were queued: take those back
            try:
                slurm.scancel([h.job_id for h in handles])
            except slurm.SlurmError:
                pass
        raise LauncherError(f"sbatch refused the sweep: {_message(exc)}") from None
    return handles


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


def _message(exc: Exception) -> str:
    text = str(exc)
    for attr in ("stderr", "output"):
        extra = getattr(exc, attr, None)
        if extra:
            text += "\n" + (extra.decode() if isinstance(extra, bytes) else str(extra))
    return text.strip()


def start_local(jobs_file: Path, cfg: dict[str, Any], count: int, log_dir: Path) -> list[Handle]:
    """Start ``max_parallel`` detached worker processes sharing the runs of ``jobs_file``."""
    workers = max(1, min(int(cfg["max_parallel"]), count))
    gpus = int(cfg.get("gpus_per_node") or cfg.get("gpus") or 0)  # per run, all its ranks
    handles = []
    for worker in range(workers):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(
                str(g) for g in range(worker * gpus, (worker + 1) * gpus)
            )
        with open(log_dir / f"worker-{worker}.out", "ab") as out:
            proc = subprocess.Popen(
                [
                    python_executable(),
                    "-m",
                    "runlab.sweep.jobs",
                    "local",
                    str(jobs_file),
                    str(worker),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own process group: `runlab cancel` stops it all
            )
        handles.append(Handle(str(proc.pid), 0, count, "local"))
    return handles


def python_executable() -> str:
    """The interpreter jobs run: this environment's (pixi's, when run through pixi)."""
    return sys.executable
