"""Expand a Hydra sweep into jobs, each with its overrides and fully resolved config.

The expansion is Hydra's: its override grammar (lists, ranges, ``glob`` over
config groups, ``+``/``++``/``~``), ``hydra.sweeper.params`` presets and the
basic sweeper's cartesian product. Composing is Hydra's too, but done once per
distinct choice of config groups; plain value overrides are then applied to a
copy with OmegaConf under the same struct rules, which turns a 1,000-point sweep
from a minute of composing into a fraction of a second. Any invalid override
fails here, before anything is written or submitted.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from runlab.errors import UserError
from runlab.record.launch import override_key


class SweepError(UserError, ValueError):
    """The sweep or a job's config is invalid; the message is Hydra's, with context."""


@dataclass(frozen=True)
class TaskSpec:
    """A task script and where its Hydra config lives (read from its ``@runlab.launch``)."""

    script: Path
    config_dir: Path | None
    config_name: str | None


@dataclass
class Job:
    overrides: list[str]
    config: dict[str, Any]


def task_spec(script: Path | str) -> TaskSpec:
    """Find ``@runlab.launch(config_path=..., config_name=...)`` in a task without importing it."""
    script = Path(script).resolve()
    if not script.is_file():
        what = "a directory" if script.is_dir() else "nothing"
        raise SweepError(
            f"no task script at {script} ({what} there): give the path of a Python file "
            "decorated with @runlab.launch, e.g. tasks/train.py"
        )
    try:
        source = script.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SweepError(
            f"{script} is not a Python task: not UTF-8 text (byte {exc.object[exc.start]:#04x} "
            f"at offset {exc.start}); give the .py file of a task, e.g. tasks/train.py"
        ) from None
    try:
        tree = ast.parse(source, filename=str(script))
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL byte in the source
        lineno = getattr(exc, "lineno", None)  # a SyntaxError's
        where = f"{script}, line {lineno}" if lineno else str(script)
        why = getattr(exc, "msg", None) or str(exc)
        raise SweepError(
            f"{where}: {why}: fix the task's Python (`python {script.name}` shows the same error)"
        ) from None
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            if not isinstance(deco, ast.Call):
                continue
            name = ast.unparse(deco.func)
            if name.split(".")[-1] != "launch":
                continue
            args = dict(zip(("config_path", "config_name"), deco.args, strict=False))
            args.update({kw.arg: kw.value for kw in deco.keywords if kw.arg})
            values = {}
            for k, v in args.items():
                if k not in ("config_path", "config_name"):
                    continue
                try:
                    values[k] = ast.literal_eval(v)
                except ValueError:
                    raise SweepError(
                        f"{script}, line {v.lineno}: {k}={ast.unparse(v)} is not a literal; "
                        f"`runlab submit` reads the task without running it, so write {k} "
                        'as a string (e.g. config_path="../configs")'
                    ) from None
            path = values.get("config_path")
            config_dir = (script.parent / path).resolve() if path else None
            return TaskSpec(script, config_dir, values.get("config_name"))
    raise SweepError(
        f"{script} has no @runlab.launch(...) task; `runlab submit` runs tasks written with it"
    )


def expand(spec: TaskSpec, arguments: list[str]) -> list[Job]:
    """The jobs of a sweep given on the command line (Hydra's syntax)."""

    def build(parser: Any, loader: Any, compose: Any, batches: list[Any]) -> list[Job]:
        composed: dict[tuple[str, ...], Any] = {}
        return [_job(spec, job, parser, loader, composed, compose) for job in batches]

    return expand_with(spec, arguments, build)


def expand_with(spec: TaskSpec, arguments: list[str], build: Any) -> list[Job]:
    """Check and parse a sweep's overrides with Hydra, then ``build(parser, loader, compose,
    batches)`` its jobs inside Hydra's config context; Hydra's errors become one-line
    :class:`SweepError`. Shared by :func:`expand` and the faster :func:`runlab.sweep.points.expand`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if spec.config_dir is None:
        raise SweepError(f"{spec.script}: @runlab.launch needs a config_path for sweeps")
    for argument in arguments:
        _check_override(argument)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(spec.config_dir), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            parser = OverridesParser.create(config_loader=loader)
            for argument in arguments:  # one at a time, so that an error names its override
                try:
                    parser.parse_overrides([argument])
                except HydraException as exc:
                    lines = str(exc).splitlines()
                    if lines and lines[0].startswith("Error parsing override"):
                        lines = lines[1:]
                    raise SweepError(
                        f"invalid override {argument!r}: " + "\n".join(lines)
                    ) from None
            parsed = parser.parse_overrides(arguments)
            # input_line: the text the parser read it from, always set by parse_overrides
            fixed = [cast(str, o.input_line) for o in parsed if not o.is_sweep_override()]
            base = compose(spec.config_name, overrides=fixed, return_hydra_config=True)
            params = OmegaConf.select(base, "hydra.sweeper.params") or {}
            lines = [f"{k}={v}" for k, v in params.items()] + list(arguments)
            from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

            batches = BasicSweeper.split_arguments(parser.parse_overrides(lines), None)[0]
            jobs = build(parser, loader, compose, batches)
    except SweepError:
        raise
    except (HydraException, OmegaConfBaseException) as exc:
        raise SweepError(str(exc)) from None
    except (ValueError, TypeError) as exc:  # Hydra's own checks, outside its exception types
        raise SweepError(f"invalid overrides {' '.join(arguments)}: {exc}") from None
    finally:
        GlobalHydra.instance().clear()
    return jobs


OVERRIDE_HELP = (
    "write KEY=VALUE (lr=0.01), KEY=A,B for a sweep (seed=0,1,2), +KEY=VALUE to add a key, "
    "~KEY to delete one"
)


def _check_override(argument: str) -> None:
    """Refuse overrides without a key (``=3``, ``=``), which Hydra reads as a config group."""
    key = override_key(argument)
    if key is None:
        raise SweepError(f"override {argument!r} has no '=': {OVERRIDE_HELP}")
    if not key:
        raise SweepError(f"override {argument!r} has no key before '=': {OVERRIDE_HELP}")


def _is_structural(override: Any, loader: Any) -> bool:
    key = override.key_or_group
    return key.startswith("hydra") or loader.repository.group_exists(key)


def _job(spec, overrides, parser, loader, composed, compose) -> Job:
    from omegaconf import OmegaConf, open_dict

    # The same override strings recur across jobs: parse each distinct one once.
    cache = composed.setdefault(("__parsed__",), {})
    parsed = []
    for line in overrides:
        if line not in cache:
            cache[line] = parser.parse_overrides([line])[0]
        parsed.append(cache[line])
    groups = tuple(o.input_line for o in parsed if _is_structural(o, loader))
    if groups not in composed:
        composed[groups] = compose(spec.config_name, overrides=list(groups))
    cfg = composed[groups].copy()
    for o in parsed:
        if _is_structural(o, loader):
            continue
        key = o.get_key_element().lstrip("+~")
        if o.is_delete():
            with open_dict(cfg):
                if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                    raise SweepError(f"Could not delete from config. '{key}' does not exist.")
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(cfg, parent) if parent else cfg
                del node[leaf]
            continue
        value = o.value()
        if o.is_add():
            if OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING:
                raise SweepError(
                    f"Could not append to config. An item is already at '{key}'. "
                    f"Either remove + prefix: '{key}=...' or add a second + to force: '++{key}=...'"
                )
            with open_dict(cfg):
                OmegaConf.update(cfg, key, value, merge=True)
        elif o.is_force_add():
            with open_dict(cfg):
                OmegaConf.update(cfg, key, value, merge=True)
        else:
            if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                raise SweepError(
                    f"Could not override '{key}'. No match in config. "
                    f"To append to your config use +{key}={o.get_value_element_as_str()}"
                )
            OmegaConf.update(cfg, key, value, merge=True)
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:
        raise SweepError(f"job {' '.join(overrides)}: {exc}") from None
    assert isinstance(container, dict)
    # a task's config: its keys are names (Hydra's YAML and overrides)
    return Job(overrides=list(overrides), config=cast(dict[str, Any], container))


_MISSING = object()
