"""Run a recorded run again, exactly, or refuse and say why; then say whether its
numbers came out the same.

:func:`plan` reads the record and refuses (:class:`ReproduceError`, one line) whatever
cannot be restored exactly: a patch that is missing or not the recorded one, a commit
that is not at hand, untracked files the record left out, a dirty submodule, a config
folder outside the code that changed, a redacted variable not given again, a run of
several nodes. :func:`code_dir` rebuilds the code from the commit and the patch
(:mod:`runlab.record.codetree`: every recorded hash checked), or uses the run's snapshot
once it checks out file by file. :func:`rerun` starts the task with its recorded config
source, overrides, job number and variables (:mod:`runlab.record.inputs`); the task
checks the config it composes against the recorded one before it runs. :func:`compare`
gives the verdict; :func:`compare_inputs` says whether two runs were run the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runlab.errors import UserError
from runlab.logs import LOGS_ENV, Logs
from runlab.record import codetree, environment, secrets
from runlab.record import inputs as inputs_record
from runlab.record.files import read_yaml, write_atomic
from runlab.record.metricsfile import read_rows
from runlab.record.rundir import RUN_DIR_ENV, RunDir, allocate
from runlab.status import Status
from runlab.sweep.snapshot import share


class ReproduceError(UserError, RuntimeError):
    """The run cannot be reproduced as recorded; the message says why and what to do."""


@dataclass
class Verdict:
    """How two runs' metrics compare: ``identical``, ``close`` or ``diverged``."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


def load_run(logs: Path, run_id: str | int) -> tuple[RunDir, dict[str, Any], dict[str, Any]]:
    run = RunDir(Path(logs) / str(run_id))
    if not run.info_file.exists():
        raise ReproduceError(f"no run {run_id} in {logs} (no {run.info_file})")
    env = read_yaml(run.env_file) if run.env_file.exists() else {}
    return run, run.read_info(), shaped(env)


# The parts of env.yaml that are mappings of text, as runlab writes them.
_ENV_MAPPINGS = ("git", "pixi", "python", "packages", "conda_packages")


# The parts of env.yaml's git record that are mappings: the code's file hashes and submodules.
_GIT_MAPPINGS = ("files", "submodules")


def shaped(env: Any) -> dict[str, Any]:
    """``env`` as runlab writes it: a mapping whose mapping parts are mappings and whose
    ``git`` values are text, flags, counts or lists (``files`` and ``submodules``: mappings). A hand-edited record of another shape loses only those
    parts (as if not recorded) instead of failing every reader that compares them."""
    if not isinstance(env, dict):
        return {}
    out = {k: v for k, v in env.items() if k not in _ENV_MAPPINGS or isinstance(v, dict)}
    if "git" in out:
        out["git"] = {
            k: v
            for k, v in out["git"].items()
            if v is None
            or isinstance(v, (str, bool, list, int))
            or (k in _GIT_MAPPINGS and isinstance(v, dict))
        }
    return out


def recorded_snapshot(run: RunDir, info: dict[str, Any], env: dict[str, Any]) -> Path | None:
    """The run's code snapshot where it is now, or ``None`` where it has none.

    The record holds the snapshot's absolute path at submission; a logs directory moved
    (or mounted elsewhere) since keeps it under the same name in its own ``.snapshots``,
    so that is looked for where the recorded path no longer exists.
    """
    snap = info.get("code_snapshot") or (env.get("git") or {}).get("snapshot")
    if not snap or not isinstance(snap, str):
        return None
    for place in (Path(snap), Logs(run.path.parent).snapshots / Path(snap).name):
        if place.is_dir():
            return place
    return None


def record_problems(env: dict[str, Any]) -> list[str]:
    """What the run's environment capture could not record (``env.yaml`` ``problems``).

    A record written before ``problems`` existed holds ``error`` instead; it is
    reported the same way.
    """
    lines = [str(p) for p in env.get("problems") or []]
    if env.get("error"):
        lines.append(f"environment not recorded: {env['error']}")
    return lines


def environment_differences(env: dict[str, Any]) -> list[str]:
    """What differs between the recorded environment and this process's, one line each."""
    lines = []
    then_pixi = env.get("pixi") or {}
    now_pixi = environment.pixi_state() or {}
    if then_pixi.get("environment") != now_pixi.get("environment"):
        lines.append(
            f"pixi environment: recorded {then_pixi.get('environment')!r}, now {now_pixi.get('environment')!r}"
        )
    if then_pixi.get("lock_sha256") != now_pixi.get("lock_sha256"):
        lines.append("pixi.lock: its sha256 differs from the recorded one")
    then_py = (env.get("python") or {}).get("version")
    if then_py and then_py != platform.python_version():
        lines.append(f"python: {then_py} -> {platform.python_version()}")
    then_pkgs = env.get("packages") or {}
    now_pkgs = environment.python_packages()
    for name in sorted(set(then_pkgs) | set(now_pkgs), key=str.lower):
        a, b = then_pkgs.get(name), now_pkgs.get(name)
        if a != b:
            lines.append(f"package {name}: {a or 'absent'} -> {b or 'absent'}")
    return lines


# --------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """How run ``run`` is run again: every input, and where each comes from.

    Made by :func:`plan`, which refuses (:class:`ReproduceError`) whatever cannot be
    restored exactly; nothing is written until :func:`rerun`.
    """

    run: RunDir
    info: dict[str, Any]
    env: dict[str, Any]
    inputs: dict[str, Any] | None
    repo: Path
    commit: str | None
    patch: bytes  # the recorded uncommitted changes (empty: a clean tree)
    snapshot: Path | None  # the run's own code snapshot, where it still exists
    task: str  # the task file, relative to the code's root
    cwd: str | None  # the working folder relative to the code's root (None: outside it)
    cwd_outside: Path | None  # the working folder outside the code, where it was there
    arguments: list[str]  # the command line after the task file, {code} for the code folder
    environ: dict[str, str | None]  # variables set (None: unset) for the rerun
    notes: list[str] = field(default_factory=list)  # what was not pinned: may explain a divergence
    # What the rerun runs without, by the user's choice (--skip-untracked).
    missing: str | None = None
    ranks: int = 1  # the run's ranks on one machine: the rerun starts as many (torchrun)

    @property
    def code_from(self) -> str:
        """Where the code comes from, in words."""
        if self.snapshot is not None:
            return f"the run's code snapshot {self.snapshot}"
        files = len((self.env.get("git") or {}).get("files") or {})
        what = f"commit {str(self.commit)[:12]} of {self.repo}"
        if self.patch:
            what += f" with the recorded patch ({len(self.patch):,} bytes"
            what += f", {files} file hash(es) checked)" if files else ")"
        return what


def load_inputs(run: RunDir) -> dict[str, Any] | None:
    """The run's ``metadata/inputs.yaml`` (JSON twin first), or ``None`` where it has none."""
    for name in (
        Path(inputs_record.INPUTS_FILE).with_suffix(".json").name,
        inputs_record.INPUTS_FILE,
    ):
        path = run.metadata / name
        if path.exists():
            data = read_yaml(path)  # YAML reads JSON too
            return data if isinstance(data, dict) else None
    return None


def _refuse(run: RunDir, what: str) -> ReproduceError:
    return ReproduceError(f"run {run.run_id} cannot be reproduced exactly: {what}")


def plan(
    logs: Path, run_id: str | int, repo: Path | None = None, skip_untracked: bool = False
) -> Plan:
    """Everything :func:`rerun` will do for ``run_id``; refuses what cannot be restored.

    ``skip_untracked``: rerun a run whose record left untracked files out (above the
    limits) without them; the rerun's record and verdict say so (``Plan.missing``)."""
    logs = Path(logs).absolute()
    run, info, env = load_run(logs, run_id)
    git = env.get("git") or {}
    root = git.get("root")  # gone where the project moved: look here
    repo = Path(repo or (root if isinstance(root, str) and Path(root).is_dir() else Path.cwd()))
    inputs = load_inputs(run)
    snapshot = recorded_snapshot(run, info, env)
    commit, patch = _recorded_code(run, env, snapshot, repo, skip_untracked)
    notes: list[str] = []
    missing = None
    if skip_untracked and (env.get("git") or {}).get("untracked_skipped_files"):
        count = int((env.get("git") or {}).get("untracked_skipped_files") or 0)
        missing = f"without {count:,} untracked file(s) that its record left out"
    if inputs is not None:
        task, cwd, cwd_outside, arguments, environ = _from_inputs(run, inputs, notes)
    else:
        task = _task_in_code(run, info, env)
        cwd, cwd_outside = None, None
        arguments = _recorded_overrides(run)
        _refuse_hidden(run, arguments)
        environ = {}
        notes.append(
            "the run recorded no launch inputs (made before runlab recorded them): its "
            "overrides are replayed and its config is checked before the task runs"
        )
    arguments = [a for a in arguments if not _runlab_override(a)]
    return Plan(
        run=run,
        info=info,
        env=env,
        inputs=inputs,
        repo=repo,
        commit=commit,
        patch=patch,
        snapshot=snapshot,
        task=task,
        cwd=cwd,
        cwd_outside=cwd_outside,
        arguments=arguments,
        environ=environ,
        notes=notes,
        missing=missing,
        ranks=_ranks(run, info),
    )


def _recorded_code(
    run: RunDir, env: dict[str, Any], snapshot: Path | None, repo: Path, skip_untracked: bool
) -> tuple[str | None, bytes]:
    """The run's commit and patch, after every check that they are what the run ran."""
    git = env.get("git") or {}
    commit = git.get("commit") if isinstance(git.get("commit"), str) else None
    patch = b""
    diff_file = run.metadata / "git.diff"
    for problem in record_problems(env):
        if "not recorded" in problem and ("uncommitted" in problem or "patch" in problem):
            raise _refuse(run, f"its record says {problem}")
        if "ran different code" in problem:
            raise _refuse(run, problem.removeprefix("git: "))
        if "untracked file(s) left out" in problem and not skip_untracked:
            raise _refuse(
                run,
                f"{problem.split(';')[0].removeprefix('git: ')}, so its code cannot be "
                "restored whole; rerun without them with --skip-untracked",
            )
    if git.get("dirty"):
        if diff_file.exists():
            patch = diff_file.read_bytes()
        elif snapshot is None:
            raise _refuse(run, f"it ran with uncommitted changes and {diff_file} is missing")
        want = git.get("patch_sha256")
        if patch and want and hashlib.sha256(patch).hexdigest() != want:
            raise _refuse(
                run, f"{diff_file} is not the patch the run recorded (its sha256 differs)"
            )
    for line in codetree.refusals(git):
        raise _refuse(run, line)
    if snapshot is not None:
        return commit, patch
    if not commit:
        why = "; ".join(record_problems(env)) or "the run ran outside a git work tree"
        raise _refuse(run, f"it recorded no git commit and has no code snapshot ({why})")
    if not _has_commit(repo, commit):
        raise _refuse(
            run,
            f"its commit {commit[:12]} is not in the repository at {repo} and it has no code "
            "snapshot; fetch it (git fetch --all) or name a clone that has it (--repo DIR)",
        )
    return commit, patch


def _recorded_overrides(run: RunDir) -> list[str]:
    """``metadata/overrides.yaml`` as text; empty where the run has none (a run made by
    hand with a ``RunLogger``) or it is not a list."""
    path = run.metadata / "overrides.yaml"
    data = read_yaml(path) if path.exists() else None
    return [str(o) for o in data] if isinstance(data, list) else []


def _ranks(run: RunDir, info: dict[str, Any]) -> int:
    """How many ranks the rerun starts: the run's, where they ran on one machine.

    A run of several nodes cannot be started again from one command here: refused."""
    try:
        world = int(info.get("world_size") or 1)
        nodes = int(info.get("nodes") or 1)
    except (TypeError, ValueError):
        return 1
    if nodes > 1:
        raise _refuse(
            run,
            f"it ran as {world} ranks on {nodes} nodes, and reproduce starts ranks on one "
            "machine only: submit the same config with the same launcher instead, and compare "
            "the two runs with `runlab reproduce --check`",
        )
    return max(world, 1)


def _refuse_hidden(run: RunDir, arguments: list[str]) -> None:
    """Refuse a run started with a credential on its command line: the record keeps it
    redacted, so no rerun can pass it again."""
    hidden = [a for a in arguments if secrets.REDACTED in a.partition("=")[2]]
    if hidden:
        raise _refuse(
            run,
            f"it was started with a credential on its command line "
            f"({hidden[0].partition('=')[0]}), which its record keeps redacted: pass it through "
            "the environment (${oc.env:NAME} in the config) and run the task again",
        )


def _runlab_override(argument: str) -> bool:
    return argument.lstrip("+~").startswith("runlab.")


def _task_in_code(run: RunDir, info: dict[str, Any], env: dict[str, Any]) -> str:
    """The task file relative to the code's root, from a record without inputs."""
    task = Path(info.get("task") or "")
    for base in (
        info.get("code_snapshot"),
        (env.get("git") or {}).get("snapshot"),
        (env.get("git") or {}).get("root"),
    ):
        if base:
            try:
                return task.relative_to(base).as_posix()
            except ValueError:
                continue
    raise _refuse(run, f"its task {task} lies outside its recorded code")


def _folder(run: RunDir, what: str, place: dict[str, Any]) -> str:
    """A config folder for the rerun: ``{code}/<in_code>``, or the recorded folder outside
    the code when its files are still those the run read."""
    if place.get("in_code") is not None:
        return "{code}/" + str(place["in_code"])
    path = str(place.get("path") or "")
    if "://" in path:
        return path  # a package's configs: part of the installed environment
    now = inputs_record.yaml_digest(Path(path))
    if now is None:
        raise _refuse(run, f"its {what} {path} lies outside its code and is gone")
    if now != place.get("sha256"):
        raise _refuse(
            run,
            f"its {what} {path} lies outside its code and its files changed since the run",
        )
    return path


def _from_inputs(
    run: RunDir, inputs: dict[str, Any], notes: list[str]
) -> tuple[str, str | None, Path | None, list[str], dict[str, str | None]]:
    """The task, working folder, command line and variables of a rerun, from the
    run's inputs record."""
    task = (inputs.get("task") or {}).get("in_code")
    if task is None:
        path = (inputs.get("task") or {}).get("path")
        raise _refuse(
            run, f"its task {path} lies outside its git repository, so no commit holds it"
        )
    where = inputs.get("cwd") or {}
    cwd = where.get("in_code")
    outside = None
    if cwd is None and where.get("path"):
        outside = Path(where["path"])
        if outside.is_dir():
            notes.append(
                f"it ran in {outside}, outside its code: files read there are not recorded"
            )
        else:
            notes.append(
                f"it ran in {outside}, outside its code, which is gone: it runs in its code folder"
            )
            outside = None
    config = inputs.get("config") or {}
    arguments: list[str] = []
    if config.get("path"):
        arguments += ["--config-path", _folder(run, "config folder", config)]
    if config.get("name"):
        arguments += ["--config-name", str(config["name"])]
    for extra in config.get("dirs") or []:
        arguments += ["--config-dir", _folder(run, "config folder (--config-dir)", extra)]
    overrides = inputs.get("overrides") or {}
    arguments += [str(o) for o in overrides.get("hydra") or []]
    multirun = inputs.get("multirun")
    if isinstance(multirun, dict):  # one job of a sweep: its place in it, as it ran
        arguments += [f"hydra.job.num={multirun.get('num')}", f"hydra.job.id={multirun.get('id')}"]
    arguments += [str(o) for o in overrides.get("task") or []]
    _refuse_hidden(run, arguments)
    environ: dict[str, str | None] = {}
    for name, recorded in (inputs.get("env") or {}).items():
        if name.startswith("RUNLAB_") or not isinstance(recorded, dict):
            continue  # runlab's own settings: where the logs go, not what the task computes
        value, digest = recorded.get("value"), recorded.get("sha256")
        if digest is None:
            environ[name] = None
        elif value is not None and secrets.REDACTED not in str(value):
            environ[name] = str(value)
        else:
            now = os.environ.get(name)
            if now is None or hashlib.sha256(now.encode()).hexdigest() != digest:
                raise _refuse(
                    run,
                    f"its config read ${name}, whose value the record keeps redacted: set "
                    f"{name} to the value the run had and run reproduce again",
                )
            environ[name] = now
    return task, cwd, outside, arguments, environ


def rebuilt_path(plan: Plan) -> Path:
    """Where the code of ``plan`` is rebuilt from its commit: in the logs directory's
    snapshot store, under the key a submission would give it."""
    key = str(plan.commit)
    if plan.patch:
        key += f"-dirty-{hashlib.sha256(plan.patch).hexdigest()[:12]}"
    return Logs(plan.run.path.parent).snapshots / f"{key}-rebuilt"


def code_dir(plan: Plan) -> Path:
    """A folder holding the run's code, byte for byte as it ran.

    The run's own snapshot is used when it checks out against the commit and the
    recorded hashes (:func:`runlab.record.codetree.verify_tree`; only the hashes where
    the commit is not at hand); else the commit is rebuilt with its patch. A rebuilt
    tree is kept and checked the same way the next time; a damaged one is made anew.
    """
    git = plan.env.get("git") or {}
    have_commit = plan.commit is not None and _has_commit(plan.repo, plan.commit)
    try:
        if plan.snapshot is not None:
            try:
                if have_commit:
                    codetree.verify_tree(plan.repo, str(plan.commit), plan.snapshot, git)
                else:
                    codetree.check(plan.snapshot, git.get("files") or {}, git.get("filtered") or ())
                return plan.snapshot
            except codetree.RebuildError as exc:
                if not have_commit:
                    raise
                plan.notes.append(f"its snapshot is not the code it ran ({exc}): rebuilt")
        dest = rebuilt_path(plan)
        if dest.is_dir():
            try:
                codetree.verify_tree(plan.repo, str(plan.commit), dest, git)
                return dest
            except codetree.RebuildError:
                aside = dest.with_name(f".{dest.name}.damaged{os.getpid()}")
                os.rename(dest, aside)
                shutil.rmtree(aside, ignore_errors=True)
        return _rebuild(plan, dest)
    except codetree.RebuildError as exc:
        raise _refuse(plan.run, str(exc)) from None


def _has_commit(repo: Path, commit: str) -> bool:
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo, capture_output=True
    )
    return found.returncode == 0


def _rebuild(plan: Plan, dest: Path) -> Path:
    """Rebuild the run's code into ``dest`` (atomically), with its patch and code record
    beside it, as a submission keeps a snapshot's: the rerun records them as its own."""
    git = plan.env.get("git") or {}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    codetree.rebuild(plan.repo, str(plan.commit), tmp, plan.patch, git)
    share(tmp)
    try:
        os.rename(tmp, dest)
    except OSError:  # another reproduce made it first
        shutil.rmtree(tmp, ignore_errors=True)
    if plan.patch and not environment.snapshot_patch(dest).exists():
        write_atomic(environment.snapshot_patch(dest), plan.patch)
    record = {k: git[k] for k in ("files", "filtered", "submodules", "patch_sha256") if k in git}
    if record and not environment.snapshot_code_record(dest).exists():
        write_atomic(environment.snapshot_code_record(dest), json.dumps(record).encode())
    return dest


def command(plan: Plan, code: Path) -> tuple[list[str], Path]:
    """The rerun's command line (after the interpreter) and its working folder."""
    arguments = [
        str(code) + a[len("{code}") :].rstrip("/").removesuffix("/.")
        if a.startswith("{code}/")
        else a
        for a in plan.arguments
    ]
    if plan.cwd is not None:
        cwd = code / plan.cwd
        cwd = cwd if cwd.is_dir() else code
    else:
        cwd = plan.cwd_outside or code
    launcher = []
    if plan.ranks > 1:  # as many ranks as the run had, as torchrun starts them
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={plan.ranks}"]
    return [*launcher, str(code / plan.task), *arguments], cwd


_REFUSED = inputs_record.REFUSED  # how the rerun refuses to start


def rerun(plan: Plan) -> tuple[RunDir, int]:
    """Run ``plan`` into a new run directory; returns it and the task's exit code.

    The rerun refuses to start (exit 2, its run directory removed) where the config it
    composes differs from the recorded one."""
    code = code_dir(plan)
    argv, cwd = command(plan, code)
    logs = plan.run.path.parent
    new = RunDir(allocate(logs)[0]).create()
    fields: dict[str, Any] = {
        "run_id": new.run_id,
        "status": Status.QUEUED,
        "reproduces": str(plan.run.run_id),
        "task": str(code / plan.task),
    }
    if plan.missing:
        fields["reproduces_without"] = plan.missing
    new.update_info(**fields)
    git = plan.env.get("git") or {}
    child_env = {
        **os.environ,
        RUN_DIR_ENV: str(new.path),
        LOGS_ENV: str(logs),
        environment.CODE_COMMIT_ENV: git.get("commit") or "",
        environment.CODE_BRANCH_ENV: git.get("branch") or "",
        environment.CODE_DIRTY_ENV: "1" if git.get("dirty") else "0",
        environment.CODE_SNAPSHOT_ENV: str(code),
    }
    for name, value in plan.environ.items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    expected = plan.run.config_file.with_suffix(".json")
    if expected.exists():
        child_env[inputs_record.EXPECT_CONFIG_ENV] = str(expected)
    if (code / "src").is_dir():
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(code / "src"), os.environ.get("PYTHONPATH")])
        )
    if plan.patch:
        write_atomic(new.metadata / "git.diff", plan.patch)
    refusal = None
    with subprocess.Popen(
        [sys.executable, *argv], env=child_env, cwd=cwd, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stderr is not None
        for raw in proc.stderr:  # passed on as it comes, but for a refusal to start
            line = raw.decode("utf-8", "replace")
            if _REFUSED in line:  # said by each rank alike: the first is the reason
                refusal = refusal or line.split(_REFUSED, 1)[1].strip()
                continue
            sys.stderr.write(line)
            sys.stderr.flush()
    if refusal is not None and proc.returncode == 2:
        if new.read_info().get("status") == Status.QUEUED:
            shutil.rmtree(new.path, ignore_errors=True)  # made here, never run
        raise _refuse(plan.run, refusal)
    return new, proc.returncode


def compare(a: RunDir, b: RunDir, rtol: float = 0.0, atol: float = 0.0) -> Verdict:
    """Compare every metric series of run ``a`` with run ``b`` (``time`` ignored)."""
    names = sorted(
        {p.name for p in a.metrics.glob("*.jsonl")} | {p.name for p in b.metrics.glob("*.jsonl")}
    )
    if not names:
        return Verdict("identical", "neither run logged metrics")
    close = False
    for name in names:
        pa, pb = a.metrics / name, b.metrics / name
        if not (pa.exists() and pb.exists()):
            return Verdict("diverged", f"metrics/{name} exists in only one run")
        ra, rb = read_rows(pa), read_rows(pb)
        for i in range(max(len(ra), len(rb))):
            if i >= len(ra) or i >= len(rb):
                return Verdict(
                    "diverged", f"metrics/{name}: one run stops after {min(len(ra), len(rb))} rows"
                )
            x, y = ra[i], rb[i]
            for key in sorted((set(x) | set(y)) - {"time"}):
                u, v = x.get(key), y.get(key)
                if u == v or (
                    isinstance(u, float)
                    and isinstance(v, float)
                    and math.isnan(u)
                    and math.isnan(v)
                ):
                    continue
                if (
                    isinstance(u, (int, float))
                    and isinstance(v, (int, float))
                    and abs(u - v) <= atol + rtol * abs(v)
                ):
                    close = True
                    continue
                step = x.get("step", i)
                return Verdict(
                    "diverged", f"first at step {step} of {name[:-6]}.{key}: {u!r} vs {v!r}"
                )
    if close:
        return Verdict("close", f"equal within rtol={rtol}, atol={atol}")
    return Verdict("identical", "every metric of every step is bit-for-bit equal")


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


# ------------------------------------------------------------------ --check


def _patch_sha(run: RunDir, git: dict[str, Any]) -> str | None:
    if not git.get("dirty"):
        return None
    if git.get("patch_sha256"):
        return str(git["patch_sha256"])
    diff = run.metadata / "git.diff"
    return hashlib.sha256(diff.read_bytes()).hexdigest() if diff.exists() else "(missing)"


def input_summary(run: RunDir, info: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """The inputs that decide what a run computed, in a form two runs can be compared in:
    places relative to the code, credentials as hashes, runlab's own settings left out."""
    git = env.get("git") or {}
    inputs = load_inputs(run) or {}
    config = inputs.get("config") or {}
    overrides = inputs.get("overrides") or {}
    hydra = [str(o) for o in overrides.get("hydra") or []]
    multirun = inputs.get("multirun")
    if isinstance(multirun, dict):
        hydra += [f"hydra.job.num={multirun.get('num')}", f"hydra.job.id={multirun.get('id')}"]
    if inputs:
        task_overrides = [str(o) for o in overrides.get("task") or []]
    else:
        task_overrides = _recorded_overrides(run)
    try:
        task = (inputs.get("task") or {}).get("in_code") or _task_in_code(run, info, env)
    except ReproduceError:
        task = str(info.get("task"))

    def place(p: dict[str, Any]) -> str:
        if p.get("in_code") is not None:
            return f"{p['in_code']} in the code"
        return f"{p.get('path')} (sha256 {str(p.get('sha256'))[:12]})"

    config_json = run.config_file.with_suffix(".json")
    resolved = read_yaml(config_json if config_json.exists() else run.config_file) or {}
    if isinstance(resolved, dict):
        resolved = {k: v for k, v in resolved.items() if k != "runlab"}
    return {
        "task": task,
        "commit": git.get("commit"),
        "patch": _patch_sha(run, git),
        "changed files": git.get("files") or {},
        "submodules": git.get("submodules") or {},
        "config folder": place(config) if config.get("path") else None,
        "config name": config.get("name"),
        "config dirs": [place(d) for d in config.get("dirs") or []],
        "hydra overrides": sorted(dict.fromkeys(hydra)),
        "overrides": sorted(o for o in task_overrides if not _runlab_override(o)),
        "config": flatten(resolved),
        "environment variables": {
            k: (v or {}).get("sha256") if isinstance(v, dict) else v
            for k, v in (inputs.get("env") or {}).items()
            if not k.startswith("RUNLAB_")
        },
    }


def _env_summary(env: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    pixi = env.get("pixi") or {}
    torch = env.get("torch") or {}
    return {
        "python": (env.get("python") or {}).get("version"),
        "pixi environment": pixi.get("environment"),
        "pixi.lock": pixi.get("lock_sha256"),
        "platform": flatten(env.get("platform") or {}),
        "torch": flatten(torch) if isinstance(torch, dict) else torch,
        "gpus": env.get("gpus"),
        "host": info.get("host"),
    }


def compare_inputs(logs: Path, a: str, b: str) -> tuple[list[str], list[str]]:
    """How runs ``a`` and ``b`` differ in what decided their results (first list) and in
    the environment they ran in (second list: what may explain a divergence)."""
    ra, ia, ea = load_run(logs, a)
    rb, ib, eb = load_run(logs, b)
    sa, sb = input_summary(ra, ia, ea), input_summary(rb, ib, eb)
    inputs: list[str] = []
    for key in sa:
        x, y = sa[key], sb[key]
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                if x.get(k, _ABSENT) != y.get(k, _ABSENT):
                    inputs.append(
                        f"{key} {k}: {_short(x.get(k, '(absent)'))} vs {_short(y.get(k, '(absent)'))}"
                    )
        else:
            inputs.append(f"{key}: {_short(x)} vs {_short(y)}")
    environ: list[str] = []
    xa, xb = _env_summary(ea, ia), _env_summary(eb, ib)
    for key in xa:
        if xa[key] != xb[key]:
            environ.append(f"{key}: {_short(xa[key])} vs {_short(xb[key])}")
    pa, pb = ea.get("packages") or {}, eb.get("packages") or {}
    for name in sorted(set(pa) | set(pb), key=str.lower):
        if pa.get(name) != pb.get(name):
            environ.append(
                f"package {name}: {pa.get(name) or 'absent'} vs {pb.get(name) or 'absent'}"
            )
    return inputs, environ


_ABSENT = object()


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
