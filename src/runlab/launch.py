"""``@runlab.launch``: turn a function of a context into a Hydra app that records its runs.

The decorated function receives a :class:`Context` with the resolved config and
a logger bound to a fresh run directory. ``python task.py a=1`` runs it once;
``python task.py -m a=1,2`` runs Hydra's sweep, one run directory per job.
Hydra's own output folders are turned off: the run directory is the record.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runlab.lifecycle import Interrupted, RunSession
from runlab.logger import RunLogger
from runlab.rundir import RUN_DIR_ENV, RunDir, allocate, default_logs

# Hydra writes outputs/<date>/ folders and a log file by default; runlab's run
# directory replaces them. Each is added only when the user did not set it.
_HYDRA_DEFAULTS = {
    "hydra.output_subdir": "null",
    "hydra.run.dir": ".",
    "hydra.sweep.dir": ".",
    "hydra.sweep.subdir": ".",
    "hydra/job_logging": "stdout",
}


_COMMAND: list[str] | None = None  # the command line as typed, before Hydra's defaults are added


@dataclass
class Context:
    """What a task gets: its resolved config and the logger of its run directory."""

    config: Any
    logger: RunLogger
    run_dir: Path
    run_id: str


def launch(
    config_path: str | None = None,
    config_name: str | None = None,
    version_base: str | None = "1.3",
) -> Callable[[Callable[[Context], Any]], Callable[..., Any]]:
    """Decorate ``task(ctx)`` into a Hydra command-line app that records each run.

    ``config_path`` is relative to the file that defines the task, as in
    ``hydra.main``. The logs directory is ``config.runlab.logs`` when the config
    has it, else ``$RUNLAB_LOGS``, else ``./logs``; ``runlab.run_id=N`` reopens
    run ``N`` so that the task can resume from its last checkpoint.
    """

    def decorator(task_fn: Callable[[Context], Any]) -> Callable[..., Any]:
        task_file = Path(inspect.getfile(task_fn)).resolve()
        path = config_path
        if path is not None and not os.path.isabs(path) and "://" not in path:
            path = str((task_file.parent / path).resolve())

        @functools.wraps(task_fn)
        def hydra_task(cfg: Any) -> Any:
            return _run(task_fn, cfg, task_file)

        @functools.wraps(task_fn)
        def main(cfg_passthrough: Any = None) -> Any:
            import hydra

            app = hydra.main(config_path=path, config_name=config_name, version_base=version_base)(
                hydra_task
            )
            if cfg_passthrough is not None:
                return app(cfg_passthrough)
            argv = sys.argv
            given = {arg.split("=", 1)[0].lstrip("+~") for arg in argv[1:] if "=" in arg}
            extra = [f"{k}={v}" for k, v in _HYDRA_DEFAULTS.items() if k not in given]
            global _COMMAND
            _COMMAND = [sys.executable, *argv]
            sys.argv = [argv[0], *argv[1:], *extra]
            try:
                return app()
            finally:
                sys.argv = argv

        main.task_function = task_fn  # type: ignore[attr-defined]
        return main

    return decorator


def resolve_run_dir(config: dict[str, Any]) -> RunDir:
    """The run directory a job writes to: pre-allocated, reopened, or new."""
    if os.environ.get(RUN_DIR_ENV):
        return RunDir(os.environ[RUN_DIR_ENV])
    section = config.get("runlab") or {}
    logs = Path(section.get("logs") or default_logs())
    if section.get("run_id") is not None:
        return RunDir(logs / str(section["run_id"]))
    return RunDir(allocate(logs)[0])


def _run(task_fn: Callable[[Context], Any], cfg: Any, task_file: Path) -> Any:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    run = resolve_run_dir(container)
    print(f"[runlab] run {run.run_id}: {run.path}", file=sys.stderr, flush=True)
    session = RunSession(
        run, container, overrides, code_path=task_file.parent, task=str(task_file), command=_COMMAND
    )
    try:
        with session as s:
            assert s.logger is not None
            return task_fn(
                Context(config=cfg, logger=s.logger, run_dir=run.path, run_id=run.run_id)
            )
    except Interrupted as exc:
        print(f"[runlab] run {run.run_id} {exc.status.lower()}: {exc}", file=sys.stderr)
        raise SystemExit(128 + exc.signum) from None
    except KeyboardInterrupt:
        print(f"[runlab] run {run.run_id} interrupted", file=sys.stderr)
        raise SystemExit(130) from None
