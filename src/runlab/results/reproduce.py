"""Run a recorded run again, exactly, and say whether its numbers came out the same.

The code comes from the run's snapshot or, failing that, from its commit in the
git history (with its recorded patch applied when it ran dirty); the config is
its resolved one, passed as its recorded overrides; the environment is checked
against the recorded one and every difference is listed before the rerun.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runlab.errors import UserError
from runlab.logs import LOGS_ENV, Logs
from runlab.record import environment, secrets
from runlab.record.files import read_yaml, write_atomic
from runlab.record.metricsfile import read_rows
from runlab.record.rundir import RUN_DIR_ENV, RunDir, allocate
from runlab.status import Status
from runlab.sweep.snapshot import CodeState, snapshot


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


def shaped(env: Any) -> dict[str, Any]:
    """``env`` as runlab writes it: a mapping whose mapping parts are mappings and whose
    ``git`` values are text. A hand-edited record of another shape loses only those
    parts (as if not recorded) instead of failing every reader that compares them."""
    if not isinstance(env, dict):
        return {}
    out = {k: v for k, v in env.items() if k not in _ENV_MAPPINGS or isinstance(v, dict)}
    if "git" in out:
        out["git"] = {
            k: v for k, v in out["git"].items() if v is None or isinstance(v, (str, bool, list))
        }
    return out


def code_dir(run: RunDir, info: dict[str, Any], env: dict[str, Any], repo: Path) -> Path:
    """A directory holding the run's code: its snapshot, or its commit checked out anew."""
    found = recorded_snapshot(run, info, env)
    if found is not None:
        return found
    commit = (env.get("git") or {}).get("commit")
    if not commit:
        why = "; ".join(record_problems(env)) or "the run ran outside a git work tree"
        raise ReproduceError(
            f"run {run.run_id} recorded no git commit and has no code snapshot, so its code "
            f"cannot be found ({why})"
        )
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo, capture_output=True
    )
    if found.returncode != 0:
        raise ReproduceError(
            f"commit {commit[:12]} of run {run.run_id} is not in the repository at {repo} and the "
            "run has no code snapshot. Fetch it (git fetch --all) or run from a clone that has it."
        )
    diff_file = run.metadata / "git.diff"
    dirty = bool((env.get("git") or {}).get("dirty")) and diff_file.exists()
    diff = diff_file.read_bytes() if dirty else b""  # bytes: binary files, any file name
    state = CodeState(root=repo, commit=commit, branch=None, changes=[], diff=b"")
    store = Logs(run.path.parent).snapshots
    clean = snapshot(state, store)
    if not dirty:
        return clean
    import hashlib
    import shutil

    dest = store / f"{commit}-dirty-{hashlib.sha256(diff).hexdigest()[:12]}"
    if not dest.is_dir():
        tmp = store / f".{dest.name}.tmp{os.getpid()}"
        shutil.copytree(clean, tmp)
        proc = subprocess.run(
            ["git", "apply", "--binary", "-"], cwd=tmp, input=diff, capture_output=True
        )
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            why = " ".join(proc.stderr.decode("utf-8", "replace").split())
            raise ReproduceError(f"the recorded patch of run {run.run_id} does not apply: {why}")
        os.rename(tmp, dest)
    if not environment.snapshot_patch(dest).exists():  # as submit keeps it: a task the
        write_atomic(environment.snapshot_patch(dest), diff)  # rerun starts records it
    return dest


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
    if then_py and then_py != environment.platform.python_version():
        lines.append(f"python: {then_py} -> {environment.platform.python_version()}")
    then_pkgs = env.get("packages") or {}
    now_pkgs = environment.python_packages()
    for name in sorted(set(then_pkgs) | set(now_pkgs), key=str.lower):
        a, b = then_pkgs.get(name), now_pkgs.get(name)
        if a != b:
            lines.append(f"package {name}: {a or 'absent'} -> {b or 'absent'}")
    return lines


def task_path(info: dict[str, Any], env: dict[str, Any], code: Path) -> Path:
    """The run's task script inside ``code``."""
    task = Path(info.get("task") or "")
    for base in (
        info.get("code_snapshot"),
        (env.get("git") or {}).get("snapshot"),
        (env.get("git") or {}).get("root"),
    ):
        if base:
            try:
                return code / task.relative_to(base)
            except ValueError:
                continue
    raise ReproduceError(f"cannot place the task {task} inside the run's code at {code}")


def rerun(logs: Path, run_id: str, repo: Path | None = None) -> tuple[RunDir, int]:
    """Re-run ``run_id`` into a new run directory; returns it and the task's exit code."""
    logs = Path(logs).absolute()
    run, info, env = load_run(logs, run_id)
    root = (env.get("git") or {}).get("root")  # gone where the project moved: look here
    repo = Path(repo or (root if isinstance(root, str) and Path(root).is_dir() else Path.cwd()))
    code = code_dir(run, info, env, repo)
    script = task_path(info, env, code)
    overrides = read_yaml(run.metadata / "overrides.yaml") or []
    overrides = [o for o in overrides if not o.lstrip("+~").startswith("runlab.")]
    hidden = [o for o in overrides if secrets.REDACTED in o.partition("=")[2]]
    if hidden:
        raise ReproduceError(
            f"run {run_id} was started with a credential on its command line "
            f"({hidden[0].partition('=')[0]}), which its record keeps redacted: pass it through "
            "the environment (${oc.env:NAME} in the config) and run the task again"
        )
    new = RunDir(allocate(logs)[0]).create()
    new.update_info(
        run_id=new.run_id, status=Status.QUEUED, reproduces=str(run.run_id), task=str(script)
    )
    git = env.get("git") or {}
    child_env = {
        **os.environ,
        RUN_DIR_ENV: str(new.path),
        LOGS_ENV: str(logs),
        environment.CODE_COMMIT_ENV: git.get("commit") or "",
        environment.CODE_BRANCH_ENV: git.get("branch") or "",
        environment.CODE_DIRTY_ENV: "1" if git.get("dirty") else "0",
        environment.CODE_SNAPSHOT_ENV: str(code),
    }
    if (code / "src").is_dir():
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(code / "src"), os.environ.get("PYTHONPATH")])
        )
    if (run.metadata / "git.diff").exists():
        write_atomic(new.metadata / "git.diff", (run.metadata / "git.diff").read_bytes())
    proc = subprocess.run([sys.executable, str(script), *overrides], env=child_env)
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
                numeric = isinstance(u, (int, float)) and isinstance(v, (int, float))
                if numeric and abs(u - v) <= atol + rtol * abs(v):
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
