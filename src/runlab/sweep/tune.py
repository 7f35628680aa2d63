"""``runlab tune``: a hyperparameter search with Optuna whose every trial is an ordinary run.

**Where the study lives.** ``<logs>/.studies/<name>.journal``, Optuna's journal
file storage (an append-only log with a lock file, written for concurrent
processes on shared file systems). Beside it the study is also a sweep
(``<logs>/.sweeps/<sweep_id>.json``, :mod:`runlab.sweep.ops`), so ``runlab status``,
``cancel`` and ``logs`` work on its runs. The study's user attribute ``runlab``
holds what defines it (task, metric, direction, objective, search space, fixed
overrides, sampler, seed, pruner, the sweep id and the pinned code); rerunning
the same command resumes it, and a command that differs in any of these is
refused with the difference named.

**One trial, one run.** The driver asks the study for a trial, pre-creates a run
directory (``QUEUED``, its config composed with the trial's parameters as Hydra
overrides, ``info.study``, ``info.trial``, ``info.tune``), records the run id on
the trial (user attribute ``run_id``) and submits it through the sweep machinery
(a SLURM array per wave of new trials, or local worker processes), at most
``--parallel`` at a time. When the run ends, the objective is read from its
logged metric (its ``last`` or ``best`` value) and told to the study:
``COMPLETE`` -> complete, ``PRUNED`` -> pruned, anything else (``FAILED``,
``INTERRUPTED``, ``LOST``, ``TIMEOUT``) -> failed, with the run's status in the
trial's ``run_status``. Complete and pruned trials count toward ``--trials``;
failed ones do not, and are replaced.

**Crashes.** One driver at a time holds ``<name>.lock`` (``flock``, released by
the kernel when the driver dies). Every step leaves the journal and the runs in
a state the next driver finishes: a trial asked but without a run gets one; a
run created but never submitted is submitted; runs still going (their jobs
outlive the driver) are waited for; runs whose job died are closed ``LOST`` by
:func:`runlab.sweep.ops.reconcile` and their trials failed. So no trial is lost and
none is run twice. Ctrl-C or SIGTERM cancels the running trials (their runs end
``INTERRUPTED``, their trials failed); ``kill -9`` leaves them running, for the
next driver to collect.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from runlab.errors import UserError
from runlab.logs import STUDIES
from runlab.record import metricsfile
from runlab.record.files import now_iso, write_atomic, write_record
from runlab.record.names import check_name as check
from runlab.record.rundir import RunDir, allocate
from runlab.record.trial import TRIAL_ENV, make_pruner, number, split_metric
from runlab.status import ACTIVE, Status
from runlab.sweep import backends, ops, submission, tune_space
from runlab.sweep.expand import expand, task_spec
from runlab.sweep.record import Code, SweepId, SweepRecord
from runlab.sweep.study import DEFINING, StudyRecord, check_journal, repair_tail

ATTR = "runlab"


class TuneError(UserError, ValueError):
    """A study that cannot be run or shown as asked; one line for the user."""


@dataclass
class Options:
    task: str
    metric: str
    direction: str = "maximize"
    trials: int = 20
    parallel: int = 2
    launcher: str | None = None
    study: str | None = None
    sampler: str = "tpe"
    seed: int | None = None
    pruner: Any = "none"
    objective: str = "last"
    arguments: list[str] = field(default_factory=list)
    logs: Path | None = None
    allow_dirty: bool = False
    poll_s: float = 1.0


# ------------------------------------------------------------------- presets
PRESET_KEYS = {
    "metric": "metric",
    "direction": "direction",
    "trials": "trials",
    "n_trials": "trials",
    "parallel": "parallel",
    "n_jobs": "parallel",
    "study": "study",
    "study_name": "study",
    "sampler": "sampler",
    "seed": "seed",
    "pruner": "pruner",
    "objective": "objective",
}


def load_preset(name: str, config_dir: Path | None) -> dict[str, Any]:
    """``configs/tune/<name>.yaml`` (or a path): the options and ``params`` of a study.

    The keys of Hydra's Optuna sweeper are accepted too (``n_trials``, ``n_jobs``,
    ``study_name``, ``sampler: {seed}``), and ``params`` in its syntax.
    """
    import yaml

    candidates = [Path(name)]
    if config_dir is not None:
        candidates.insert(0, config_dir / "tune" / f"{name}.yaml")
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        where = config_dir / "tune" if config_dir else Path("configs/tune")
        known = sorted(p.stem for p in where.glob("*.yaml")) if where.is_dir() else []
        raise TuneError(
            f"no tune preset {name!r} (looked for {candidates[0]}); "
            f"{'known: ' + ', '.join(known) if known else 'write one there'}"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TuneError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if "hydra" in data:  # a Hydra Optuna-sweeper config: hydra.sweeper.*
        data = (data.get("hydra") or {}).get("sweeper") or {}
    out: dict[str, Any] = {"params": {}, "overrides": []}
    for key, value in data.items():
        if key == "params":
            out["params"] = {str(k): str(v) for k, v in (value or {}).items()}
        elif key == "overrides":
            out["overrides"] = [str(v) for v in value or []]
        elif key == "sampler" and isinstance(value, dict):
            if value.get("seed") is not None:
                out["seed"] = value["seed"]
            target = str(value.get("_target_", value.get("name", "tpe"))).lower()
            out["sampler"] = next((s for s in ("tpe", "random", "grid") if s in target), "tpe")
        elif key in PRESET_KEYS:
            out[PRESET_KEYS[key]] = value
        elif key in ("_target_", "storage", "max_failure_rate", "custom_search_space"):
            continue
        else:
            raise TuneError(
                f"{path}: unknown key {key!r}; known: params, overrides, "
                + ", ".join(sorted(set(PRESET_KEYS)))
            )
    return out


# --------------------------------------------------------------------- paths
def studies_dir(logs: Path) -> Path:
    return Path(logs) / STUDIES


def journal_path(logs: Path, name: str) -> Path:
    return studies_dir(logs) / f"{name}.journal"


def storage(logs: Path, name: str) -> Any:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = journal_path(logs, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_journal(path)  # a torn line in the middle: one line, not Optuna's ValueError
    return JournalStorage(JournalFileBackend(str(path)))


def repair_journal(logs: Path, name: str) -> None:
    """Under the journal's own lock, end or cut a torn last line (see runlab.sweep.study)."""
    from optuna.storages.journal import JournalFileSymlinkLock

    path = journal_path(logs, name)
    if not path.exists():
        return
    lock = JournalFileSymlinkLock(str(path))
    while not lock.acquire():
        time.sleep(0.05)
    try:
        repair_tail(path)
    finally:
        lock.release()


def study_names(logs: Path) -> list[str]:
    """The studies of ``logs``, the most recently written last."""
    try:
        paths = sorted(studies_dir(logs).glob("*.journal"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return []
    return [p.name[: -len(".journal")] for p in paths]


def check_name(name: str) -> None:
    try:
        check(name, "--study")
    except ValueError as exc:
        raise TuneError(str(exc)) from None


def default_name(definition: dict[str, Any]) -> str:
    blob = json.dumps({k: definition[k] for k in DEFINING}, sort_keys=True, default=str)
    return f"{Path(definition['task']).stem}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


class DriverLock:
    """One driver per study: an exclusive ``flock`` on ``<name>.lock``."""

    def __init__(self, logs: Path, name: str) -> None:
        self.path = studies_dir(logs) / f"{name}.lock"
        self.fd: int | None = None

    def __enter__(self) -> DriverLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # 0o666 less the umask: a group sharing the logs directory can take the lock too
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise TuneError(
                f"the study is being run by {holder} ({self.path}): wait for it, or follow it "
                "with `runlab tune --show`"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -------------------------------------------------------------------- study
def make_sampler(name: str, seed: int | None, space: dict[str, str]) -> Any:
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(tune_space.grid(space), seed=seed)
    raise TuneError(f"unknown sampler {name!r}: use tpe, random or grid")


def distributions(space: dict[str, str]) -> dict[str, Any]:
    return {k: tune_space.distribution(k, v) for k, v in space.items()}


def find_study(store: Any, name: str) -> Any:
    for summary in store.get_all_studies():
        if summary.study_name == name:
            return summary
    return None


def objective_value(run: RunDir, metric: str, objective: str, direction: str) -> float | None:
    """The run's ``last`` or ``best`` logged value of ``metric`` (``None``: never logged)."""
    name, key = split_metric(metric)
    values: list[float] = []
    try:
        rows = metricsfile.read_rows(metricsfile.jsonl_path(run.metrics, name))
    except OSError:
        return None
    for row in rows:
        if key in row:
            value = number(row[key])
            if value is not None:
                values.append(value)
    if not values:
        return None
    if objective == "last":
        return values[-1]
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return float("nan")
    return max(finite) if direction == "maximize" else min(finite)


# ------------------------------------------------------------------- driver
def say(text: str, out: Any = None) -> None:
    """One line of the driver's progress, on stderr."""
    print(f"[tune] {text}", file=out or sys.stderr, flush=True)


@dataclass
class Plan:
    """A tune command checked, its search space parsed and its sweep prepared; nothing is
    written yet, so that it can run before the study's lock is taken (:func:`plan`)."""

    opts: Options  # with ``trials`` lowered to a grid's size
    fixed: list[str]  # the task's fixed overrides
    space: dict[str, str]  # name -> search-space expression
    dists: dict[str, Any]  # name -> optuna distribution
    sweep: submission.Sweep  # the launcher and code, checked with one point of the space
    definition: dict[str, Any]  # what defines the study (DEFINING)
    name: str  # the study's name

    @property
    def logs(self) -> Path:
        return self.sweep.logs


@dataclass
class Session:
    """The study as one driver opened it, under its lock (:func:`open_study`)."""

    store: Any  # optuna's JournalStorage of the study
    study: Any  # optuna.Study, with this session's sampler and pruner
    study_id: int  # the study's id in ``store``
    attrs: StudyRecord
    record: SweepRecord  # the study's sweep, with this session's launcher settings
    code: Code  # the pinned code every trial runs
    limits: Any  # the SLURM limits (None for local workers)


def _check_options(o: Options) -> None:
    if o.direction not in ("maximize", "minimize"):
        raise TuneError(f"--direction {o.direction!r}: use maximize or minimize")
    if o.objective not in ("last", "best"):
        raise TuneError(f"--objective {o.objective!r}: use last or best")
    if o.trials < 1 or o.parallel < 1:
        raise TuneError("--trials and --parallel must be at least 1")
    try:
        split_metric(o.metric)
    except ValueError as exc:
        raise TuneError(str(exc)) from None
    try:
        make_pruner(o.pruner)
    except (ValueError, TypeError) as exc:
        raise TuneError(f"--pruner: {exc}") from None


def plan(o: Options, out: Any = None) -> Plan:
    """Check the options, parse the search space and prepare the sweep (writes nothing)."""
    _check_options(o)
    name_arg, launcher_overrides, task_args = submission.split_arguments(o.arguments)
    fixed, space = tune_space.parse(task_args)
    if not space:
        raise TuneError(
            "nothing to search: give the search space as overrides in Hydra's Optuna-sweeper "
            "syntax, e.g. lr='tag(log, interval(1e-4, 1e-1))' model='choice(mlp,cnn)', "
            "or a preset (--preset NAME for configs/tune/NAME.yaml)"
        )
    spec = task_spec(o.task)
    dists = distributions(space)
    if o.sampler == "grid":
        size = math.prod(len(v) for v in tune_space.grid(space).values())
        if o.trials > size:
            say(f"the grid has {size} points: --trials {o.trials} lowered to {size}", out)
            o = replace(o, trials=size)
    # Validate the config with one point, check the code and launcher (writes nothing).
    probe = [tune_space.override(k, _first(d)) for k, d in dists.items()]
    sweep = submission.prepare(
        spec.script,
        [*launcher_overrides_args(name_arg, launcher_overrides), *fixed, *probe],
        o.launcher,
        o.logs,
        allow_dirty=True,
    )
    root = sweep.code.root
    definition = {
        "task": str(spec.script.relative_to(root))
        if spec.script.is_relative_to(root)
        else str(spec.script),
        "metric": o.metric,
        "direction": o.direction,
        "objective": o.objective,
        "space": dict(space),
        "overrides": list(fixed),
        "sampler": o.sampler,
        "pruner": o.pruner,
    }
    name = o.study or default_name(definition)
    check_name(name)
    return Plan(o, fixed, space, dists, sweep, definition, name)


def _resume(p: Plan, summary: Any, out: Any) -> tuple[StudyRecord, SweepRecord, int]:
    """The study's record, its sweep and this session's seed, once the command is found to
    define the same study as the one in the journal."""
    o, journal = p.opts, journal_path(p.logs, p.name)
    attrs = StudyRecord.parse(summary.user_attrs.get(ATTR), journal).found_in(p.logs)
    made = attrs.definition()
    for key in DEFINING:
        if made[key] != p.definition[key]:
            raise TuneError(
                f"study {p.name!r} in {journal} was made "
                f"with {key}={_show(made[key])}, not {_show(p.definition[key])}: "
                "rerun its own command to resume it, or give a new --study NAME"
            )
    if o.seed is not None and attrs.seed != o.seed:
        raise TuneError(
            f"study {p.name!r} was made with --seed {attrs.seed}: resume it "
            "with that seed (or none), or give a new --study NAME"
        )
    record = ops.load(p.logs, attrs.sweep_id)
    if not Path(attrs.code.snapshot).is_dir():
        raise TuneError(
            f"study {p.name!r} runs the code snapshot {attrs.code.snapshot}, which "
            "is gone: start a new --study"
        )
    resumed = len(summary.user_attrs.get("sessions") or [])
    seed = (attrs.seed + 1000003 * resumed) % 2**32  # a resumed session samples afresh
    if record.launcher_name != p.sweep.launcher["name"]:
        raise TuneError(
            f"study {p.name!r} runs its trials with the "
            f"{record.launcher_name} launcher: resume it with --launcher "
            f"{record.launcher_name}"
        )
    say(f"resuming study {p.name} ({journal})", out)
    return attrs, record, seed


def _create(
    p: Plan, store: Any, out: Any, made: bool = False
) -> tuple[StudyRecord, SweepRecord, int]:
    """A new study in the journal, its sweep record and its seed, its code pinned; with
    ``made``, the study is in the journal already, without its record (its driver was
    killed between the two writes)."""
    import optuna

    o, code = p.opts, p.sweep.code
    if code.dirty and not o.allow_dirty:
        listing = ", ".join(code.changes[:10])
        raise TuneError(
            f"the git tree at {code.root} has uncommitted changes ({listing}): trials are "
            "pinned to a commit; commit them, or pass --allow-dirty to record the diff"
        )
    seed = o.seed if o.seed is not None else random.SystemRandom().randrange(2**31)
    pinned = submission.code_entry(code, p.sweep.script, p.logs)
    sweep_id = str(SweepId.new(study=p.name))
    record = ops.new_record(
        sweep_id, p.sweep.script, list(o.arguments), p.logs, p.sweep.launcher, [], tune=p.name
    )
    ops.save(p.logs, record)
    attrs = StudyRecord(
        **p.definition,
        seed=seed,
        sweep_id=sweep_id,
        code=pinned,
        logs=str(p.logs),
        created=now_iso(),
        command=["runlab", *sys.argv[1:]],
        launcher=p.sweep.launcher["name"],
    )
    direction = cast(Literal["minimize", "maximize"], o.direction)  # checked by plan()
    if made:
        study = optuna.load_study(study_name=p.name, storage=store)
        if study.direction.name.lower() != direction:
            raise TuneError(
                f"study {p.name!r} was made with --direction {study.direction.name.lower()}: "
                "rerun its own command to resume it, or give a new --study NAME"
            )
    else:
        study = optuna.create_study(study_name=p.name, storage=store, direction=direction)
    study.set_user_attr(ATTR, attrs.to_json())
    say(f"study {p.name}: {journal_path(p.logs, p.name)} (seed {seed})", out)
    return attrs, record, seed


def open_study(p: Plan, out: Any = None) -> Session:
    """Open the study of ``p`` (resumed, or created), with this session's sampler and
    seed recorded in its ``sessions``, and its sweep set to this command's parallelism."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    o = p.opts
    repair_journal(p.logs, p.name)
    store = storage(p.logs, p.name)
    summary = find_study(store, p.name)
    half_made = (
        summary is not None
        and ATTR not in summary.user_attrs
        and not store.get_n_trials(store.get_study_id_from_name(p.name))
    )
    if summary is not None and not half_made:
        attrs, record, seed = _resume(p, summary, out)
    else:
        attrs, record, seed = _create(p, store, out, made=half_made)
    study = optuna.load_study(
        study_name=p.name,
        storage=store,
        sampler=make_sampler(o.sampler, seed, p.space),
        pruner=make_pruner(o.pruner),
    )
    sessions = list(study.user_attrs.get("sessions") or [])
    sessions.append(
        {"time": now_iso(), "host": socket.gethostname(), "pid": os.getpid(), "seed": seed}
    )
    study.set_user_attr("sessions", sessions)
    launcher = dict(record.launcher)
    if "max_parallel" in launcher:  # local workers: as many as trials in flight
        launcher["max_parallel"] = o.parallel
    record.launcher = launcher
    backend = backends.get(launcher["name"])
    limits = backend.limits(launcher)
    backend.validate(launcher, o.parallel, limits)  # a refusal now, before any trial's run
    study_id = store.get_study_id_from_name(p.name)
    return Session(store, study, study_id, attrs, record, attrs.code, limits)


def run(opts: Options) -> int:
    """Run the study of ``opts`` to its ``--trials`` counted trials (``runlab tune``)."""
    p = plan(opts)
    with DriverLock(p.logs, p.name):
        return Driver(p, open_study(p)).loop()


class Driver:
    """Runs one opened study to ``--trials`` counted trials (see the module docstring)."""

    def __init__(self, p: Plan, session: Session, out: Any = None) -> None:
        self.opts = p.opts
        self.out = out or sys.stderr
        self.name = p.name
        self.logs = p.logs
        self.fixed, self.space, self.dists = p.fixed, p.space, p.dists
        self.sweep = p.sweep
        self.store = session.store
        self.study = session.study
        self.study_id = session.study_id
        self.record = session.record  # replaced by each submission and cancel
        self.code = session.code
        self.limits = session.limits
        self.trial_ids: dict[int, int] = {}  # trial number -> the storage's trial id

    def say(self, text: str) -> None:
        say(text, self.out)

    def trial_id(self, number_: int) -> int:
        """The storage's id of trial ``number_`` (public storage API, cached: ids never change)."""
        if number_ not in self.trial_ids:
            self.trial_ids[number_] = self.store.get_trial_id_from_study_id_trial_number(
                self.study_id, number_
            )
        return self.trial_ids[number_]

    def set_attr(self, number_: int, key: str, value: Any) -> None:
        """Set a user attribute of trial ``number_`` (a FrozenTrial's ``set_user_attr``
        would change only the local copy)."""
        self.store.set_trial_user_attr(self.trial_id(number_), key, value)

    # ---------------------------------------------------------------- trials
    def trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def create_run(self, trial: Any) -> RunDir:
        """Pre-create the ``QUEUED`` run of ``trial`` (its config composed now)."""
        overrides = [
            *self.fixed,
            *(tune_space.override(k, trial.params[k]) for k in self.space),
        ]
        spec = task_spec(self.code.script)  # the pinned code's configs
        (job,) = expand(spec, overrides)
        info = {
            "status": Status.QUEUED,
            "task": self.code.script,
            "study": self.name,
            "trial": trial.number,
            "tune": {
                "storage": str(journal_path(self.logs, self.name)),
                "study": self.name,
                "trial": trial.number,
                "trial_id": self.trial_id(trial.number),
                "metric": self.opts.metric,
                "direction": self.opts.direction,
                "objective": self.opts.objective,
                "pruner": self.opts.pruner,
            },
            "sweep_id": self.record.sweep_id,
            "sweep_index": trial.number,
            "launcher": self.record.launcher_name,
            "submitted_time": now_iso(),
            "submit_command": [sys.executable, "-m", "runlab", *sys.argv[1:]],
            "code_commit": self.code.commit,
            "code_snapshot": self.code.snapshot,
        }
        (path,) = allocate(self.logs, 1, info=info)
        run = RunDir(path)
        write_record(run.config_file, job.config)
        write_record(run.metadata / "overrides.yaml", job.overrides)
        if self.code.dirty and self.sweep.code.diff:
            write_atomic(run.metadata / "git.diff", self.sweep.code.diff)
        self.set_attr(trial.number, "run_id", int(run.run_id))
        return run

    def submit(self, runs: list[RunDir]) -> None:
        if not runs:
            return
        ids = [int(r.run_id) for r in runs]
        self.record.runs = [*self.record.runs, *(i for i in ids if i not in self.record.runs)]
        code = replace(self.code, env={**self.code.env, TRIAL_ENV: self.name})
        self.record = ops.submit(self.logs, self.record, ids, [code], self.limits, kind="tune")
        sub = self.record.submissions[-1]
        where = ", ".join(f"array {a.job_id}" for a in sub.arrays) or (
            f"{len(sub.workers)} local worker(s)"
        )
        self.say(
            f"trials {', '.join(str(r.read_info().get('trial')) for r in runs)} -> runs "
            f"{', '.join(map(str, ids))} ({where})"
        )

    def submitted(self) -> set[int]:
        return set(ops.locate(self.record))

    def orphan_run(self, number_: int) -> RunDir | None:
        """The run a killed driver made for trial ``number_`` before recording it, if any."""
        for path in self.logs.iterdir():
            if not path.name.isdigit():
                continue
            info = RunDir(path).read_info()
            if info.get("study") == self.name and info.get("trial") == number_:
                return RunDir(path)
        return None

    def settle(self) -> tuple[list[Any], list[RunDir]]:
        """Tell the study about ended runs; return (running trials, runs to submit)."""
        from optuna.trial import TrialState

        try:
            ops.reconcile(self.logs, self.record, by="runlab tune")
        except Exception as exc:  # the next round tries again
            self.say(f"warning: could not check the jobs ({exc})")
        submitted = self.submitted()
        running, pending = [], []
        for t in self.trials():
            if t.state != TrialState.RUNNING:
                continue
            rid = t.user_attrs.get("run_id")
            if rid is None and not set(self.space) <= set(t.params):
                self.fail_half_asked(t)
                continue
            if rid is None:
                run = self.orphan_run(t.number) or self.create_run(t)
                if run.read_info().get("status") == Status.QUEUED:
                    self.set_attr(t.number, "run_id", int(run.run_id))
                rid = int(run.run_id)
            run = RunDir(self.logs / str(rid))
            info = run.read_info()
            status = info.get("status")
            if status == Status.QUEUED and rid not in submitted:
                pending.append(run)
                running.append(t)
                continue
            ended = (info.get("error") or {}).get("type") in ("TimeoutError", "JobTimeout")
            requeues = backends.get(self.record.launcher_name).requeues_timeouts
            requeued = status == Status.TIMEOUT and requeues and not ended  # its job requeued
            if Status.of(status) in ACTIVE or requeued:
                running.append(t)
                continue
            self.tell(t, run, status, info)
        return running, pending

    def fail_half_asked(self, t: Any) -> None:
        """Fail trial ``t``, which a killed driver made but gave only some of its parameters
        (``ask`` writes the trial, then each parameter, to the journal): it has no run and
        cannot get one; failed, it is not counted, and the loop asks another."""
        from optuna.trial import TrialState

        missing = ", ".join(k for k in self.space if k not in t.params)
        reason = f"its driver was killed while choosing its parameters ({missing} missing)"
        try:
            self.set_attr(t.number, "fail_reason", reason)
            self.study.tell(t.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError) as exc:  # told already (a second driver's race)
            self.say(f"warning: trial {t.number}: {exc}")
            return
        self.say(f"trial {t.number} FAILED (not counted): {reason}")

    def tell(self, t: Any, run: RunDir, status: str | None, info: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        o = self.opts
        self.set_attr(t.number, "run_status", status)
        label = f"trial {t.number} (run {run.run_id})"
        params = " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        try:
            if status == Status.COMPLETE:
                value = objective_value(run, o.metric, o.objective, o.direction)
                if value is None or math.isnan(value):
                    self.set_attr(t.number, "fail_reason", f"{o.metric} was not logged (or NaN)")
                    self.study.tell(t.number, state=TrialState.FAIL)
                    self.say(f"{label} FAILED: the run completed without a value of {o.metric}")
                    return
                self.study.tell(t.number, value)
                self.say(f"{label} COMPLETE {o.metric}={value:g}  {params}{self._best()}")
            elif status == Status.PRUNED:
                self.study.tell(t.number, state=TrialState.PRUNED)
                self.say(f"{label} PRUNED  {params}")
            else:
                err = (info.get("error") or {}).get("message", "")
                self.set_attr(t.number, "fail_reason", f"{status}: {err}"[:500])
                self.study.tell(t.number, state=TrialState.FAIL)
                self.say(f"{label} {status} (not counted): {err}")
        except (RuntimeError, ValueError) as exc:  # told already (a second driver's race)
            self.say(f"warning: {label}: {exc}")

    def _best(self) -> str:
        try:
            best = self.study.best_trial
        except ValueError:
            return ""
        return f"  [best {best.value:g}, trial {best.number}]"

    def counts(self) -> tuple[int, int]:
        from optuna.trial import TrialState

        trials = self.trials()
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        failed = sum(t.state == TrialState.FAIL for t in trials)
        return done, failed

    # ------------------------------------------------------------------ loop
    def loop(self) -> int:
        o = self.opts
        stop: list[int] = []

        def on_signal(signum: int, frame: Any) -> None:
            stop.append(signum)

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        started = time.time()
        failed_here = 0
        try:
            while not stop:
                running, pending = self.settle()
                done, failed = self.counts()
                if done >= o.trials and not running:
                    break
                free = min(o.parallel - len(running), o.trials - done - len(running))
                new = []
                for _ in range(max(0, free)):
                    trial = self.study.ask(self.dists)
                    new.append(self.create_run(trial))
                self.submit(pending + new)
                failed_here = failed
                if failed > 3 * o.trials:
                    raise TuneError(
                        f"{failed} trials failed: stopping (see `runlab status`, `runlab logs RUN`)"
                    )
                if not new and not pending:
                    time.sleep(o.poll_s)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if stop:
            self.cancel_running()
            self.say("stopped: rerun the same command to resume the study")
            return 128 + stop[0]
        done, failed = self.counts()
        self.say(
            f"study {self.name}: {done} trials counted, {failed_here} failed, "
            f"in {time.time() - started:.1f} s{self._best()}"
        )
        return 0

    def cancel_running(self) -> None:
        running, _ = self.settle()
        ids = [t.user_attrs["run_id"] for t in running if t.user_attrs.get("run_id") is not None]
        if ids:
            self.say(f"cancelling runs {', '.join(map(str, ids))}")
            try:
                ops.cancel(self.logs, self.record, ids, wait_s=30)
            except Exception as exc:
                self.say(f"warning: cancel: {exc}")
            with contextlib.suppress(ops.SweepOpsError):  # with its cancel, for reconcile
                self.record = ops.load(self.logs, self.record.sweep_id)
            deadline = time.time() + 30
            while self.settle()[0] and time.time() < deadline:  # until their ends are told
                time.sleep(0.5)


def launcher_overrides_args(name: str | None, overrides: list[str]) -> list[str]:
    return ([f"launcher={name}"] if name else []) + [f"launcher.{o}" for o in overrides]


def _first(dist: Any) -> Any:
    choices = getattr(dist, "choices", None)
    return choices[0] if choices else dist.low


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


# --------------------------------------------------------------------- show
def summary(logs: Path, name: str | None, top: int = 10) -> dict[str, Any]:
    """The study's state, best trials and their runs, as plain data."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = study_names(logs)
    if not names:
        raise TuneError(f"no study in {studies_dir(logs)}: start one with `runlab tune TASK ...`")
    if name is None:
        name = names[-1]
    elif name not in names:
        raise TuneError(f"no study {name!r} in {studies_dir(logs)}; known: {', '.join(names)}")
    study = optuna.load_study(study_name=name, storage=storage(logs, name))
    attrs = StudyRecord.parse(study.user_attrs.get(ATTR), journal_path(logs, name)).found_in(logs)
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    # each of them has a value (just checked)
    done.sort(key=lambda t: cast(float, t.value), reverse=attrs.direction == "maximize")

    def row(t: Any) -> dict[str, Any]:
        return {
            "trial": t.number,
            "run_id": t.user_attrs.get("run_id"),
            "value": t.value,
            "state": t.state.name,
            "params": dict(t.params),
            "duration_s": round(t.duration.total_seconds(), 2) if t.duration else None,
        }

    return {
        "study": name,
        "journal": str(journal_path(logs, name)),
        "metric": attrs.metric,
        "direction": attrs.direction,
        "objective": attrs.objective,
        "space": attrs.space,
        "sampler": attrs.sampler,
        "seed": attrs.seed,
        "pruner": attrs.pruner,
        "sweep_id": attrs.sweep_id,
        "states": states,
        "best": row(done[0]) if done else None,
        "top": [row(t) for t in done[:top]],
        "trials": [row(t) for t in trials],
    }


def study_figures(logs: Path, name: str) -> list[dict[str, Any]]:
    """Optuna's optimisation history and parameter importances as Plotly JSON, for the
    report page (``runlab report --study NAME``); a figure that cannot be drawn is left out."""
    import optuna
    from optuna import visualization as vis

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage(logs, name))
    found = []
    for title, plot in (
        ("optimisation history", vis.plot_optimization_history),
        ("parameter importances", vis.plot_param_importances),
    ):
        try:
            fig = json.loads(plot(study).to_json())
        except (ValueError, RuntimeError):  # too few trials for importances
            continue
        found.append({"title": title, "data": fig.get("data", []), "layout": fig.get("layout", {})})
    return found


def write_plots(logs: Path, name: str, out: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances as HTML files in ``out``."""
    import optuna
    from optuna import visualization as vis

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage(logs, name))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    figures: dict[str, Callable[[optuna.Study], Any]] = {
        "history": vis.plot_optimization_history,
        "importance": vis.plot_param_importances,
    }
    for stem, plot in figures.items():
        try:
            fig = plot(study)
        except (ValueError, RuntimeError) as exc:  # too few trials for importances
            print(f"[tune] {stem}: not drawn ({exc})", file=sys.stderr)
            continue
        path = out / f"{name}-{stem}.html"
        fig.write_html(str(path), include_plotlyjs=True, full_html=True)
        written.append(path)
    written += _history_png(study, out / f"{name}-history.png")
    return written


def _history_png(study: Any, path: Path) -> list[Path]:
    """The optimisation history as a PNG too (matplotlib), for papers and READMEs."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as mvis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" warnings of optuna's matplotlib plots
        try:
            ax = mvis.plot_optimization_history(study)
        except (ValueError, RuntimeError):
            return []
    from matplotlib.figure import Figure

    fig = cast(Figure, ax.figure)  # a plot of its own: a Figure, not a SubFigure
    fig.set_size_inches(7, 4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return [path]
