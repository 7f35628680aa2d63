"""A sweep's launcher settings: the backend's defaults, its YAML file, then overrides.

The settings come from ``configs/launcher/<name>.yaml`` beside the task's configs
(the backend's defaults otherwise), overridden by ``launcher.KEY=VALUE`` on the
command line. Which scheduler they go to is :mod:`runlab.sweep.backends`'s business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from runlab.sweep import backends
from runlab.sweep.backends.base import LauncherError

__all__ = ["LauncherError", "check_launcher", "default_launcher", "load_config"]


def default_launcher() -> str:
    """The first scheduler whose commands are on PATH; local processes otherwise."""
    return backends.default()


def load_config(name: str, config_dir: Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """The launcher's settings: defaults, then its YAML file, then ``launcher.*`` overrides."""
    from omegaconf import DictConfig, OmegaConf

    defaults = backends.get(name).defaults
    cfg = OmegaConf.create(dict(defaults))
    path = config_dir / "launcher" / f"{name}.yaml" if config_dir else None
    if path is not None and path.exists():
        try:
            cfg = cast(DictConfig, OmegaConf.merge(cfg, OmegaConf.load(path)))  # as the first
        except Exception as exc:
            raise LauncherError(f"bad launcher file {path}: {exc}") from None
    if overrides:
        try:
            cfg = cast(DictConfig, OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides))))
        except Exception as exc:
            raise LauncherError(f"bad launcher override {' '.join(overrides)}: {exc}") from None
    unknown: set[Any] = set(cfg.keys()) - set(defaults)  # a YAML key may be no str
    if unknown:
        raise LauncherError(
            f"unknown {name} launcher setting(s) {', '.join(sorted(unknown))}"
            f"{f' in {path}' if path and path.exists() else ''}; known: {', '.join(defaults)}"
        )
    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    out = cast(dict[str, Any], raw)  # its keys are those of the defaults (checked above)
    check_launcher(out, path if path is not None and path.exists() else None)
    return out


def check_launcher(cfg: Mapping[str, Any], path: Path | None = None) -> None:
    """Refuse resources no launcher can give (``tasks_per_node=0``), then those its own
    backend cannot (``launcher.nodes=2`` locally)."""
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
    # Time and counts: a string would fail inside a backend, a negative time would be
    # taken by SLURM as no limit at all and by Grid Engine as none left.
    time_limit = cfg.get("timeout_min")
    if time_limit is not None and (
        isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
        or not time_limit > 0
    ):  # fmt: skip
        raise LauncherError(f"launcher.timeout_min={time_limit!r}{where}: give minutes > 0")
    for key, low in (("array_parallelism", 1), ("max_num_timeout", 0)):
        value = cfg.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise LauncherError(f"launcher.{key}={value!r}{where}: give an integer >= {low}")
    backends.get(str(cfg["name"])).check(cfg, where)
