"""``@runlab.launch``: turn a function of a context into a Hydra app that records its runs.

The decorated function receives a :class:`Context` with the resolved config and
a logger bound to a fresh run directory. ``python task.py a=1`` runs it once;
``python task.py -m a=1,2`` runs Hydra's sweep, one run directory per job.
Hydra's own output folders are turned off: the run directory is the record
(a sweep's ``multirun.yaml`` goes to a temporary folder, removed at the end).

runlab's own errors (a run id that is not a run, a run another process writes,
a config that differs from the run's, a logs directory that cannot be written)
print one line and exit with status 2; ``RUNLAB_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from runlab.logs import INDEX, LOGS_ENV, SWEEPS, default_path, is_run_id
from runlab.record import distributed, environment, inputs
from runlab.record import logger as _logger
from runlab.record.files import record_form
from runlab.record.lifecycle import (
    RecordError,
    RunSession,
    install_stop_handlers,
    restore_stop_handlers,
    stop_if_asked,
    stops_wait,
)
from runlab.record.logger import RunLogger
from runlab.record.rundir import (
    RUN_DIR_ENV,
    RunDir,
    RunDirError,
    existing_run,
    run_dir_from_env,
)
from runlab.record.stops import Interrupted
from runlab.record.trial import TRIAL_ENV

DEBUG_ENV = "RUNLAB_DEBUG"

# The logger raises this at the call after a write of the record failed (a full disk).
_RECORD_WRITE_ERRORS: tuple[type[BaseException], ...] = tuple(
    e for e in (getattr(_logger, "RecordWriteError", None),) if isinstance(e, type)
)

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
_INJECTED: list[str] = []  # the overrides runlab added to it


@dataclass
class Context:
    """What a task gets: its resolved config and the logger of its run directory."""

    config: Any
    logger: RunLogger
    run_dir: Path
    run_id: str
    dist: distributed.Dist = field(default_factory=distributed.Dist)  # ranks (one: 0 of 1)


def launch(
    config_path: str | None = None,
    config_name: str | None = None,
    version_base: str | None = "1.3",
    schema: type | None = None,
) -> Callable[[Callable[[Context], Any]], Callable[..., Any]]:
    """Decorate ``task(ctx)`` into a Hydra command-line app that records each run.

    ``config_path`` is relative to the file that defines the task, as in
    ``hydra.main``. The logs directory is ``config.runlab.logs`` when the config
    has it, else ``$RUNLAB_LOGS``, else ``logs/`` in the project root (the nearest
    directory up holding ``pixi.toml``, ``pyproject.toml`` or ``.git``: see
    `runlab.logs`); ``runlab.run_id=N`` reopens run ``N`` so that the task can
    resume from its last checkpoint.

    ``schema``, a dataclass, declares the config's types (an OmegaConf structured
    config): the composed config is merged into it before anything else, so a value of
    the wrong type (``lr=abc``, ``epochs=1.5``) is one line
    naming the key and the type, exit 2, before a run directory is made. The task gets
    the typed config (``lr=1`` is ``1.0``). Fields without a default take their values
    from the YAML files, which stay the one place of the values (``runlab submit``
    composes them without the task); a field typed ``Any`` is not checked.
    """

    if schema is not None:
        _check_schema(schema)

    def decorator(task_fn: Callable[[Context], Any]) -> Callable[..., Any]:
        task_file = Path(inspect.getfile(task_fn)).resolve()
        path = config_path
        if path is not None and not os.path.isabs(path) and "://" not in path:
            path = str((task_file.parent / path).resolve())

        @functools.wraps(task_fn)
        def hydra_task(cfg: Any) -> Any:
            # runlab's code from here: a stop that came while Hydra composed stops it
            # now (no run is made), and one that comes later raises as it comes
            with stops_wait(False):
                return _run(task_fn, _typed(cfg, schema), task_file, schema)

        @functools.wraps(task_fn)
        def main(cfg_passthrough: Any = None) -> Any:
            # Stop signals are caught before anything else, and from then until they are
            # put back a stop waits for runlab's own code (Hydra's could drop it), except
            # in the task's function, where it raises as it comes (runlab.record.lifecycle).
            with stops_wait():
                installed = install_stop_handlers()
                try:
                    return _hydra_app(hydra_task, cfg_passthrough, path, config_name, version_base)
                except Interrupted as exc:  # before a run was made, or between a sweep's runs
                    print(f"[runlab] {exc.status.lower()}: {exc}", file=sys.stderr)
                    raise SystemExit(128 + exc.signum) from None
                except KeyboardInterrupt:
                    print("[runlab] interrupted", file=sys.stderr)
                    raise SystemExit(130) from None
                finally:
                    if installed:
                        restore_stop_handlers()

        main.task_function = task_fn  # type: ignore[attr-defined]
        return main

    return decorator


def _hydra_app(
    hydra_task: Callable[[Any], Any],
    cfg_passthrough: Any,
    path: str | None,
    config_name: str | None,
    version_base: str | None,
) -> Any:
    """Run the Hydra app of ``hydra_task``, then raise a stop that came meanwhile (it is
    why the command ends), Hydra's exit too; Hydra's argument list and sweep folder
    are put back and removed whatever happens (with stops waiting)."""
    argv = sys.argv
    sweep_dir: str | None = None
    ending: SystemExit | None = None
    try:
        import hydra

        app = hydra.main(config_path=path, config_name=config_name, version_base=version_base)(
            hydra_task
        )
        if cfg_passthrough is not None:
            result = app(cfg_passthrough)
        else:
            sys.argv, sweep_dir = _hydra_argv(argv, path)
            result = app()
    except SystemExit as exc:
        ending = exc
    finally:
        sys.argv = argv
        if sweep_dir is not None:
            shutil.rmtree(sweep_dir, ignore_errors=True)
    stop_if_asked()
    if ending is not None:
        raise ending
    return result


def _hydra_argv(argv: list[str], path: str | None) -> tuple[list[str], str | None]:
    """The command line Hydra gets, once the user's overrides, sweep and YAML files are
    checked: runlab's defaults beside the user's overrides; and the sweep folder made
    for it (removed when the command ends), if any."""
    global _COMMAND, _INJECTED
    first = _check_overrides(argv[1:]) + 1  # where the user's overrides begin
    _check_sweep(argv[1:])
    if path is not None and "://" not in path:
        _check_yaml(Path(path))
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in argv[1:] if "=" in arg}
    extra = [f"{k}={v}" for k, v in _HYDRA_DEFAULTS.items() if k not in given]
    sweep_dir = None
    if "hydra.sweep.dir" not in given:
        # A sweep writes multirun.yaml into its sweep dir: keep it out of the tree.
        # Only a sweep makes it (a single run never does); a killed sweep's is
        # removed by a later one after a day.
        sweep_dir = _sweep_dir()
        extra = [e for e in extra if not e.startswith("hydra.sweep.dir=")]
        extra.append(f"hydra.sweep.dir='{_quote(sweep_dir)}'")
    _COMMAND = [sys.executable, *argv]
    _INJECTED = list(extra)
    # Beside the user's overrides: Hydra takes them as one positional list, so a flag
    # after them (`steps=2 -m`, `--cfg job`) still parses.
    return [*argv[:first], *extra, *argv[first:]], sweep_dir


# Hydra's own options that take a value in the next argument.
_VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}
_VALUE_FLAGS |= {"--cfg", "-c", "--package", "-p", "--info", "-i", "--experimental-rerun"}


def override_key(argument: str) -> str | None:
    """The key an override sets (``lr`` of ``+lr=0.1``, ``a`` of ``~a``), stripped; ``""``
    for none (``=3``, which Hydra reads as a config group); ``None`` without ``=`` or ``~``.
    Shared with ``runlab submit`` (:mod:`runlab.sweep.expand`)."""
    if argument.startswith("~"):
        return argument[1:].split("=", 1)[0].strip()
    if "=" in argument:
        return argument.split("=", 1)[0].lstrip("+").strip()
    return None


def _check_overrides(args: list[str]) -> int:
    """The index of the first override in ``args`` (``len(args)`` if none); an override
    without a key (``=3``), which Hydra reads as a config group and fails on with a
    traceback, is one line and exit 2."""
    first = len(args)
    after_flag = False
    for i, arg in enumerate(args):
        if arg.startswith("-") or after_flag:
            after_flag = arg in _VALUE_FLAGS
            continue
        first = min(first, i)
        if override_key(arg) == "":
            raise _fail(
                f"override {arg!r} has no key before '=': write KEY=VALUE (lr=0.01), "
                "KEY=A,B for a sweep with -m, +KEY=VALUE to add a key",
                2,
            )
    return first


def _check_sweep(flags: list[str]) -> None:
    """``RUNLAB_RUN_DIR`` names one run (made by ``runlab submit`` for this job); a Hydra
    sweep (``-m``) makes one run per job, which that one run cannot hold: exit 2."""
    if os.environ.get(RUN_DIR_ENV) and any(f in ("-m", "--multirun") for f in flags):
        raise _fail(
            f"{RUN_DIR_ENV} names one run directory, and -m runs a sweep of runs: unset "
            f"{RUN_DIR_ENV} to sweep (each job makes its own run), or leave out -m",
            2,
        )


def _config_files(config_dir: Path, limit: int, budget: int = 5000) -> list[Path]:
    """The YAML files Hydra may read under ``config_dir`` (at most ``limit``), leaving
    out what is not config: hidden folders (``.git``, ``.venv``), a logs directory (the
    default one, or any holding runlab's ``.runlab-index`` or ``.sweeps``) and run
    folders. A config folder that is the project root holds the logs: their records are
    no config, and a damaged one must not stop new runs. Folders are taken level by
    level (the config groups first) and at most ``budget`` entries are looked at."""
    skip = {os.path.realpath(default_path())}

    def keep(path: str, name: str) -> bool:
        if name.startswith(".") or os.path.realpath(path) in skip:
            return False
        if is_run_id(name) and os.path.isdir(os.path.join(path, "metadata")):
            return False
        return not any(os.path.isdir(os.path.join(path, h)) for h in (INDEX, SWEEPS))

    out: list[Path] = []
    level = [str(config_dir)]
    while level and budget > 0 and len(out) < limit:
        deeper: list[str] = []
        for folder in level:
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries[:budget]:
                budget -= 1
                if entry.is_dir(follow_symlinks=False):
                    if keep(entry.path, entry.name):
                        deeper.append(entry.path)
                elif entry.name.endswith(".yaml"):
                    out.append(Path(entry.path))
            if budget <= 0:
                break
        level = deeper
    return out[:limit]


def _check_yaml(config_dir: Path, limit: int = 500) -> None:
    """A config file that is not YAML is one line and exit 2 (Hydra prints a traceback
    of some 70 lines for it). Reads at most ``limit`` files of under 1 MB
    (:func:`_config_files`) with OmegaConf's own YAML loader, the one Hydra reads
    them with, so that a file is refused here exactly when Hydra would refuse it."""
    import yaml
    from omegaconf._utils import get_yaml_loader

    loader = get_yaml_loader()
    for file in _config_files(config_dir, limit):
        try:
            if file.stat().st_size > 1 << 20:
                continue
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # Hydra says what is wrong with a file it cannot read
        try:
            yaml.load(text, Loader=loader)  # OmegaConf's loader: a SafeLoader
        except yaml.YAMLError as exc:
            if isinstance(exc, yaml.constructor.ConstructorError):
                continue  # a tag Hydra's loader may know
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise _fail(f"{where}: not valid YAML ({what}); fix the config file", 2) from None
        except Exception:  # a value its constructors refuse: Hydra says what it is
            continue


_SWEEP_PREFIX = "runlab-sweep-"


def _sweep_dir() -> str:
    """A fresh path for Hydra's sweep dir (its ``multirun.yaml``), outside the work tree."""
    import secrets
    import time

    tmp = tempfile.gettempdir()
    try:
        with os.scandir(tmp) as it:
            old = [e.path for e in it if e.name.startswith(_SWEEP_PREFIX)]
        for path in old:
            if time.time() - os.stat(path).st_mtime > 86400 and os.stat(path).st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass
    return os.path.join(tmp, f"{_SWEEP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def take_job_env() -> dict[str, str]:
    """Take the variables set for this process alone out of ``os.environ``.

    ``RUNLAB_RUN_DIR`` (the run ``runlab submit`` or ``reproduce`` made for this job)
    and ``RUNLAB_TRIAL`` (this job is a trial of ``runlab tune``) are meant for the
    task process they were set for, not for a task it starts in turn (a subprocess
    running another task): that one is a run of its own, which it could not be with
    them (refused as a second writer of this run, or taken for a trial). Returns the
    values taken (absent: not set)."""
    return {name: os.environ.pop(name) for name in (RUN_DIR_ENV, TRIAL_ENV) if name in os.environ}


def resolve_run_dir(
    config: dict[str, Any], run_dir: str | None = None
) -> tuple[RunDir | None, Path]:
    """The run directory a job writes to (pre-allocated or reopened; ``None``: a new one)
    and its logs directory. ``run_dir``: the value of ``RUNLAB_RUN_DIR`` taken for this
    job (:func:`take_job_env`). Raises :class:`RunDirError` for a run id that is not a run."""
    if run_dir:
        run = run_dir_from_env(run_dir)
        return run, run.path.parent
    section = config.get("runlab")
    section = section if isinstance(section, dict) else {}  # none, or `runlab: Any` unset
    logs = Path(section.get("logs") or default_path())
    if section.get("run_id") is not None:
        return existing_run(logs, section["run_id"]), logs
    return None, logs


def _say_stopped(message: str) -> None:
    """Print a stopped run's last line on stderr, on a line of its own.

    A stop signal's exception can leave the task's last ``print`` half done: its text
    written, its newline not (unbuffered output writes them apart). Where stdout and
    stderr are one file (``task.py > run.out 2>&1``, a scheduler's output file), the
    message would be glued to that text; a file that does not end a line gets one first.
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stdout.flush()
        out, err = sys.stdout.fileno(), sys.stderr.fileno()
        stat = os.fstat(err)
        glued = os.path.samestat(os.fstat(out), stat) and stat.st_size > 0
        if glued and _last_byte(err, stat.st_size) != b"\n":
            sys.stderr.write("\n")
    print(message, file=sys.stderr, flush=True)


def _last_byte(fd: int, size: int) -> bytes:
    """The last byte of the regular file open at ``fd``, even where ``fd`` is write-only
    (a shell's ``> file``): then through ``/proc/self/fd``, which opens the file anew."""
    try:
        return os.pread(fd, 1, size - 1)
    except OSError:
        with open(f"/proc/self/fd/{fd}", "rb") as fh:
            fh.seek(size - 1)
            return fh.read(1)


def _fail(message: str, code: int) -> SystemExit:
    """runlab's error line for a task's command line: one line of printable text, whatever
    the config held (a control character, a line separator, an escape sequence is shown
    as its escape)."""
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message)
    print(f"runlab: error: {text}", file=sys.stderr, flush=True)
    return SystemExit(code)


def _check_schema(schema: Any) -> None:
    """A ``schema`` OmegaConf can type a config with: a dataclass (or attrs) class, whose
    field types it supports. A task's own mistake: said when the task is defined."""
    import dataclasses

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(schema, type) or not (
        dataclasses.is_dataclass(schema) or hasattr(schema, "__attrs_attrs__")
    ):
        raise TypeError(
            f"runlab.launch(schema=...) takes a dataclass (the class, not an instance), "
            f"not {schema!r}"
        )
    try:
        OmegaConf.structured(schema)
    except OmegaConfBaseException as exc:
        first = str(exc).strip().splitlines()[0]
        raise TypeError(f"runlab.launch(schema={schema.__name__}): {first}") from None


def _resolved(cfg: Any, typing: bool = False) -> Any:
    """The config as plain values, interpolations resolved (enums as their names); a value
    that does not resolve (``${nope}``, an unset ``${oc.env:X}``) is one line and exit 2.
    With ``typing``, a wrong type through an interpolation is raised
    (``ValidationError``) for :func:`_typed` to say."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException, ValidationError

    try:
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except OmegaConfBaseException as exc:
        typed = isinstance(exc, ValidationError)
        if (typed and typing) or os.environ.get(DEBUG_ENV):
            raise
        key = getattr(exc, "full_key", None) or "?"
        first = str(getattr(exc, "msg", exc)).strip().split("\n")[0]
        what = "" if typed else " does not resolve"
        raise _fail(f"config key {key!r}{what}: {first}", 2) from None


def _retyped(schema: type) -> Callable[[Mapping[str, Any]], Any]:
    """How a saved config is read to compare it with the config of a task with ``schema``:
    typed as the task typed its own (a run ``runlab submit`` made holds the config it
    composed without the task; ``epochs='1'`` there is ``1`` here). A saved config the
    schema cannot type is compared as it is."""

    def retype(saved: Mapping[str, Any]) -> Any:
        from omegaconf import OmegaConf

        try:
            base = OmegaConf.structured(schema)
            OmegaConf.set_struct(base, False)
            typed = OmegaConf.merge(base, OmegaConf.create(dict(saved)))
            return OmegaConf.to_container(typed, resolve=True, enum_to_str=True)
        except Exception:
            return saved

    return retype


def _typed(cfg: Any, schema: type | None) -> Any:
    """``cfg`` merged into the structured config ``schema`` (``None``: ``cfg`` as it is);
    a value of the wrong type, or a declared key left without a value (``???``), is one
    line and exit 2."""
    if schema is None:
        return cfg
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, ValidationError

    base = OmegaConf.structured(schema)
    # Keys the dataclass does not declare pass (`+tag=x` adds one, as Hydra lets it); a
    # misspelt override of a declared key is refused by Hydra itself, before this.
    OmegaConf.set_struct(base, False)
    try:
        typed = OmegaConf.merge(base, cfg)
        _resolved(typed, typing=True)  # a wrong type through an interpolation (${name})
    except ValidationError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        raise _fail(_type_error(exc, schema), 2) from None
    except ConfigKeyError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        key = exc.full_key or exc.key
        raise _fail(
            f"config key {key!r} is not declared in {schema.__name__}: "
            "check its spelling, or add it to the dataclass",
            2,
        ) from None
    missing = sorted(k for k in OmegaConf.missing_keys(typed) if not k.startswith("runlab"))
    if missing:
        raise _fail(
            f"config key {missing[0]!r} has no value (??? in {schema.__name__} or the "
            f"config files): give it, e.g. {missing[0]}=VALUE",
            2,
        )
    OmegaConf.set_struct(typed, bool(OmegaConf.is_struct(cfg)))  # as Hydra gave it
    return typed


_TYPE_NAMES = {"Float": "float", "Integer": "int", "Boolean": "bool", "String": "str"}


def _type_error(exc: Exception, schema: type) -> str:
    """OmegaConf's ValidationError as one line: the key, the value, the expected type."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    value = getattr(exc, "value", None)
    msg = str(getattr(exc, "msg", exc)).split("\n")[0]  # not splitlines: U+2028 is text
    want = msg.rsplit(" to ", 1)[-1] if "could not be converted to" in msg else ""
    want = _TYPE_NAMES.get(want, want)
    if want:
        return (
            f"config key {key!r}: {value!r} is not a valid {want} "
            f"({schema.__name__} declares {key} as {want}; fix the override or the config file)"
        )
    return f"config key {key!r}: {msg} (declared in {schema.__name__})"


def _config_differs(container: dict[str, Any], expected: Path) -> str | None:
    """How the config composed now differs from the recorded one (``runlab`` keys aside),
    in one line; ``None`` when they are equal."""
    try:
        want = json.loads(expected.read_bytes())
    except (OSError, ValueError) as exc:
        return f"the recorded config {expected} is not readable ({exc})"
    have = record_form(container)  # in the record's own encoding (inf as "Infinity")
    if not isinstance(want, dict):
        return f"the recorded config {expected} is not a mapping"
    want.pop("runlab", None)
    have.pop("runlab", None)
    if have == want:
        return None
    flat_a, flat_b = _flat(want), _flat(have)
    for key in sorted(set(flat_a) | set(flat_b)):
        if flat_a.get(key, _MISSING) != flat_b.get(key, _MISSING):
            was = repr(flat_a[key]) if key in flat_a else "absent"
            now = repr(flat_b[key]) if key in flat_b else "absent"
            return f"the config composed now differs from the run's at {key}: {was} then, {now} now"
    return "the config composed now differs from the run's"


_MISSING = object()


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _inputs(cfg: Any, task_file: Path) -> dict[str, Any] | None:
    """The run's inputs record (:mod:`runlab.record.inputs`); ``None`` where it cannot be
    made (the record then says nothing of them, and reproduce says so)."""
    try:
        snapshot = os.environ.get(environment.CODE_SNAPSHOT_ENV)
        root = Path(snapshot).resolve() if snapshot else None
        if root is None or not task_file.is_relative_to(root):
            root = environment.git_root(task_file.parent)
        argv = (_COMMAND or [sys.executable, *sys.argv])[1:]
        return inputs.capture(cfg, task_file, argv, _INJECTED, root)
    except Exception as exc:  # the record must not stop the run
        print(f"runlab: warning: the run's launch inputs are not recorded: {exc}", file=sys.stderr)
        return None


def _checked_inputs(cfg: Any, container: dict[str, Any], task_file: Path) -> dict[str, Any] | None:
    """The run's inputs record; first, for a rerun of ``runlab reproduce``, the check that
    the config composed now is the recorded one (else exit 2: nothing ran)."""
    from hydra.core.hydra_config import HydraConfig

    expected = os.environ.pop(inputs.EXPECT_CONFIG_ENV, None)  # this job's, not a child's
    if expected:
        problem = _config_differs(container, Path(expected))
        if problem:
            raise _fail(f"{inputs.REFUSED}{problem}", 2)
    return _inputs(cfg, task_file) if HydraConfig.initialized() else None


def _run(
    task_fn: Callable[[Context], Any], cfg: Any, task_file: Path, schema: type | None = None
) -> Any:
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    container = cast(dict[str, Any], _resolved(cfg))  # a mapping, whose keys are text
    debug = bool(os.environ.get(DEBUG_ENV))
    run_inputs = _checked_inputs(cfg, container, task_file)

    def announce(run: RunDir) -> None:
        print(f"[runlab] run {run.run_id}: {run.path}", file=sys.stderr, flush=True)
        if dist is not None:  # several ranks: the others learn the run directory
            distributed.share_run(dist, run)

    session: RunSession | None = None
    dist: distributed.Dist | None = None
    ended_well = False
    job_env = take_job_env()  # this job's own: a task it starts is a run of its own
    logs_before = os.environ.get(LOGS_ENV)
    try:
        dist = distributed.setup()  # torchrun's / SLURM's ranks; ranks > 0 leave the record to 0
        if not dist.is_main:
            result = distributed.run_peer(task_fn, functools.partial(Context, cfg, dist=dist), dist)
            ended_well = True
            return result
        run, logs = resolve_run_dir(container, job_env.get(RUN_DIR_ENV))
        if isinstance(container.get("runlab"), dict):  # the record says where it went
            container["runlab"]["logs"] = str(logs)
        # A task this one starts (a subprocess) writes its own run in the same logs directory.
        os.environ[LOGS_ENV] = str(logs)
        session = RunSession(
            run,
            container,
            overrides,
            code_path=task_file.parent,
            task=str(task_file),
            command=_COMMAND,
            logs=logs,
            announce=announce,
            trial=bool(job_env.get(TRIAL_ENV)),
            inputs=run_inputs,
            same_config=_retyped(schema) if schema is not None else None,
        )
        with session as s:
            assert s.logger is not None and s.run is not None
            result = task_fn(Context(cfg, s.logger, s.run.path, s.run.run_id, dist=dist))
            dist.meet()  # the other ranks end their task before the run's status is written
        ended_well = True
        return result
    except (Interrupted, KeyboardInterrupt) as exc:
        which = f"run {session.run.run_id} " if session and session.run else ""  # none made yet
        if isinstance(exc, Interrupted):
            _say_stopped(f"[runlab] {which}{exc.status.lower()}: {exc}")
            raise SystemExit(128 + exc.signum) from None
        _say_stopped(f"[runlab] {which}interrupted")
        raise SystemExit(130) from None
    except RecordError as exc:  # the run ended, its record could not be completed
        if debug:
            raise
        raise _fail(str(exc), 1) from None
    except RunDirError as exc:  # refused before the task ran: nothing of the run changed
        if debug:
            raise
        raise _fail(str(exc), 2) from None
    except _RECORD_WRITE_ERRORS as exc:  # the task's logging call found the disk full
        if debug:
            raise
        run = session.run if session and session.run else None
        where = f"run {run.run_id} ({run.path}): " if run else ""
        todo = f"; free space, then resume it with runlab.run_id={run.run_id}" if run else ""
        raise _fail(f"{where}{exc}; the run is marked FAILED{todo}", 1) from None
    finally:
        if logs_before is None:
            os.environ.pop(LOGS_ENV, None)
        else:
            os.environ[LOGS_ENV] = logs_before
        if dist is not None:
            dist.teardown(wait=ended_well)  # every rank leaves the group before it exits
