"""`runlab submit` killed (SIGKILL) just before each of its writes: nothing is lost for good.

A two-point local sweep is submitted under the hooks of ``tests/faultio.py`` in mode
``kill``: the command dies just before its k-th I/O call under the logs directory (a
``kill -9``, or a machine gone down, at that point). A clean submit gives N such calls;
for each k, once the jobs it had started have ended and the clock has moved past the
graces (the files' times are set back ten minutes: a command that died is told from one
at work by the age of what it left):

- ``runlab status --all``, ``verify`` and ``ls`` print no traceback and no internal error;
- after ``runlab status --all`` no run is ``QUEUED`` (no job will ever run it);
- ``runlab verify --repair`` leaves a logs directory where ``runlab verify`` passes;
- ``runlab retry`` (where a run is ``INTERRUPTED``) then runs the rest: every run left is
  ``COMPLETE``, each point of the sweep at most once, with its own config.

The default suite kills the submit at the first call of each of its phases (the run
folders, the sweep's record, a run's files, its info, the jobs file, a worker's start);
``python -m pytest -m slow_io tests/test_killed_submit.py`` kills it at every k. The same
is done to ``runlab retry`` of a failed run (its record and info rewritten, its jobs file,
its worker, its submission recorded).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TASKS, make_project, runlab_cli, task_env

FAULTIO = Path(__file__).resolve().parent / "faultio.py"
MAIN = ROOT / "src" / "runlab" / "__main__.py"
SUBMIT = ["submit", "tasks/slow.py", "steps=2,3", "interval=0", "--launcher", "local"]
#: The first call of each phase of a submit, by the path it writes.
PHASES = [
    r"/logs/\d+$",  # a run folder's id claimed
    r"/\.sweeps/[^/]+\.json$",  # the sweep's record
    r"/metadata/config\.json$",  # a run's files
    r"/metadata/info\.json$",  # a run's info record (its last file)
    r"/jobs-\d+\.json$",  # the jobs file
    r"/worker-\d+\.out$",  # a worker started
]
ENDED = {"COMPLETE", "FAILED", "INTERRUPTED", "LOST", "TIMEOUT"}


def submit(project: Path, spec: dict, args: list[str] = SUBMIT) -> subprocess.CompletedProcess:
    """``runlab ARGS`` (the two-point sweep's submit) under the I/O hooks of ``spec``."""
    return subprocess.run(
        [sys.executable, str(FAULTIO), json.dumps(spec), str(MAIN), *args],
        cwd=project,
        env=task_env(RUNLAB_LOGS=str(project / "logs")),
        capture_output=True,
        text=True,
        timeout=120,
    )


def statuses(logs: Path) -> dict[int, str | None]:
    """Each run folder's status as written (``None``: no readable info record)."""
    out: dict[int, str | None] = {}
    for path in logs.glob("[0-9]*") if logs.is_dir() else []:
        try:
            out[int(path.name)] = json.loads((path / "metadata/info.json").read_text())["status"]
        except (OSError, ValueError, KeyError):
            out[int(path.name)] = None
    return out


def settle(logs: Path, active: frozenset[str] = frozenset({"RUNNING"})) -> None:
    """Wait until no run is ``active`` (by default: until the jobs a submit started
    before it died have ended), at most a minute."""
    deadline = time.time() + 60
    while time.time() < deadline and active & set(statuses(logs).values()):
        time.sleep(0.2)
    time.sleep(0.5)  # a worker between two runs


def age(logs: Path, seconds: float = 600) -> None:
    """Set every file's times under ``logs`` back by ``seconds`` (time passing)."""
    then = time.time() - seconds
    for path in [logs, *logs.rglob("*")] if logs.exists() else []:
        os.utime(path, (then, then), follow_symlinks=False)


def clean_calls(tmp_path: Path) -> list[list[str]]:
    project = make_project(tmp_path / "clean", TASKS / "slow.py", TASKS / "slow.yaml")
    report = tmp_path / "clean.json"
    done = submit(project, {"root": str(project / "logs"), "mode": "count", "report": str(report)})
    assert done.returncode == 0, done.stderr
    settle(project / "logs")
    return json.loads(report.read_text())["calls"]


def no_crash(proc: subprocess.CompletedProcess, what: str) -> None:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "internal error" not in text, (what, text)


def check_killed_at(tmp_path: Path, k: int) -> None:
    project = make_project(tmp_path / str(k), TASKS / "slow.py", TASKS / "slow.yaml")
    logs = project / "logs"
    spec = {"root": str(logs), "mode": "kill", "k": k, "report": str(tmp_path / f"{k}.json")}
    killed = submit(project, spec)
    where = json.loads((tmp_path / f"{k}.json").read_text())["calls"][-1]
    assert killed.returncode == -9, (k, where, killed.stderr)
    settle(logs)
    age(logs)
    for args in (["status", "--all"], ["verify"], ["ls"]):
        no_crash(runlab_cli(project, *args, check=False), (k, where, args))
    if not logs.exists():
        return  # killed before it made anything (the commands say there is no logs folder)
    after = statuses(logs)
    assert "QUEUED" not in after.values(), (k, where, after)
    no_crash(runlab_cli(project, "verify", "--repair", check=False), (k, where, "repair"))
    checked = runlab_cli(project, "verify", check=False)
    assert checked.returncode == 0, (k, where, checked.stdout + checked.stderr)
    if "INTERRUPTED" in statuses(logs).values():
        runlab_cli(project, "retry")
        settle(logs, frozenset({"RUNNING", "QUEUED"}))
    final = statuses(logs)
    assert set(final.values()) <= {"COMPLETE"}, (k, where, final)
    points = [yaml.safe_load((logs / f"{r}/metadata/config.yaml").read_text()) for r in final]
    steps = [p["steps"] for p in points]
    assert sorted(steps) == sorted(set(steps)) and set(steps) <= {2, 3}, (k, where, points)
    shutil.rmtree(project)


def test_a_submit_killed_in_each_phase_loses_nothing_for_good(tmp_path: Path) -> None:
    calls = clean_calls(tmp_path)
    ks = []
    for pattern in PHASES:
        k = next(i for i, c in enumerate(calls, 1) if re.search(pattern, c[2]))
        ks.append(k)
    for k in ks:
        check_killed_at(tmp_path, k)


@pytest.mark.slow_io
def test_a_submit_killed_before_any_write_loses_nothing_for_good(tmp_path: Path) -> None:
    for k in range(1, len(clean_calls(tmp_path)) + 1):
        check_killed_at(tmp_path, k)


def test_status_and_verify_leave_the_runs_of_a_submit_at_work_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs no submission placed yet are closed only when their submit is surely gone:
    not while it holds the sweep's lock (however old its record), not while its record
    is younger than a minute (a submit on a host the lock does not reach), never one a
    worker has claimed or one of another sweep (an id used again). An empty run folder
    (one a submit has not reached yet) is not moved aside while the lock is held."""
    from runlab.record.rundir import RunDir
    from runlab.sweep import submission

    project = make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")
    logs = project / "logs"
    monkeypatch.chdir(project)
    sweep = submission.prepare("tasks/slow.py", ["steps=2,3,4,5", "launcher=local"], logs=logs)
    created = submission.create_runs(sweep)  # the lock held, as until its launch ends
    shutil.rmtree(logs / "4" / "metadata")  # a folder the submit has not reached yet
    age(logs)
    runlab_cli(project, "status", "--all")
    assert statuses(logs) == {1: "QUEUED", 2: "QUEUED", 3: "QUEUED", 4: None}  # at work
    repair = runlab_cli(project, "verify", "--repair", check=False)
    assert (logs / "4").is_dir() and "being changed now" in repair.stdout, repair.stdout
    created.hold.close()  # the submit is gone (its lock with it)...
    (logs / ".sweeps" / f"{created.record.sweep_id}.json").touch()  # ...a moment ago
    runlab_cli(project, "status", "--all")
    assert set(statuses(logs).values()) == {"QUEUED", None}  # too young to tell
    (logs / "2" / "metadata" / ".claimed").write_text("12345")  # a worker has it
    RunDir(logs / "3").update_info(sweep_id="20260101-000000-9")  # another sweep's run 3
    age(logs)
    out = runlab_cli(project, "status", "--all").stdout
    assert statuses(logs) == {1: "INTERRUPTED", 2: "QUEUED", 3: "QUEUED", 4: None}, out
    assert "before it recorded" in out, out
    runlab_cli(project, "verify", "--repair", check=False)
    assert not (logs / "4").exists() and list(logs.glob(".aside/*/4"))  # moved, not deleted
    record = json.loads((logs / ".sweeps" / f"{created.record.sweep_id}.json").read_text())
    assert record["runs"] == [1, 2, 3]


# ------------------------------------------------------------------ runlab retry
def failed_sweep(tmp_path: Path) -> Path:
    """A project whose sweep has run 1 COMPLETE and run 2 FAILED (at its step 1)."""
    project = make_project(tmp_path / "base", TASKS / "slow.py", TASKS / "slow.yaml")
    runlab_cli(project, *SUBMIT[:2], "steps=3", "interval=0", "fail_at=-1,1", "--launcher",
               "local", "--wait", check=False)  # fmt: skip
    assert statuses(project / "logs") == {1: "COMPLETE", 2: "FAILED"}
    return project


def check_retry_killed_at(base: Path, tmp_path: Path, k: int) -> None:
    """``runlab retry`` of run 2 killed before its k-th write: afterwards no command
    crashes, no run is left QUEUED, ``verify --repair`` leaves ``verify`` passing, and
    a new ``runlab retry`` runs run 2 to its own outcome (FAILED again: its config fails)."""
    project = tmp_path / str(k)
    shutil.copytree(base, project, symlinks=True)  # the logs directory moves with it
    logs = project / "logs"
    spec = {"root": str(logs), "mode": "kill", "k": k, "report": str(tmp_path / f"{k}.json")}
    killed = submit(project, spec, ["retry"])
    where = json.loads((tmp_path / f"{k}.json").read_text())["calls"][-1]
    assert killed.returncode == -9, (k, where, killed.stderr)
    settle(logs)
    age(logs)
    for args in (["status", "--all"], ["verify"]):
        no_crash(runlab_cli(project, *args, check=False), (k, where, args))
    assert "QUEUED" not in statuses(logs).values(), (k, where, statuses(logs))
    runlab_cli(project, "verify", "--repair", check=False)
    checked = runlab_cli(project, "verify", check=False)
    assert checked.returncode == 0, (k, where, checked.stdout + checked.stderr)
    runlab_cli(project, "retry")  # whatever the killed one left: FAILED, LOST, INTERRUPTED
    settle(logs, frozenset({"RUNNING", "QUEUED"}))
    assert statuses(logs) == {1: "COMPLETE", 2: "FAILED"}, (k, where, statuses(logs))
    shutil.rmtree(project)


def retry_writes(base: Path, tmp_path: Path) -> list[list[str]]:
    project = tmp_path / "count"
    shutil.copytree(base, project, symlinks=True)
    report = tmp_path / "count.json"
    done = submit(project, {"root": str(project / "logs"), "mode": "count",
                            "report": str(report)}, ["retry"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    settle(project / "logs", frozenset({"RUNNING", "QUEUED"}))
    return json.loads(report.read_text())["calls"]


def test_a_retry_killed_after_it_requeued_a_run_loses_nothing(tmp_path: Path) -> None:
    base = failed_sweep(tmp_path)
    calls = retry_writes(base, tmp_path)
    # after run 2 says QUEUED again, before its job is recorded
    k = next(i for i, c in enumerate(calls, 1) if re.search(r"/jobs-\d+\.json$", c[2]))
    check_retry_killed_at(base, tmp_path, k)


@pytest.mark.slow_io
def test_a_retry_killed_before_any_write_loses_nothing(tmp_path: Path) -> None:
    base = failed_sweep(tmp_path)
    for k in range(1, len(retry_writes(base, tmp_path)) + 1):
        check_retry_killed_at(base, tmp_path, k)


def test_a_retry_alone_runs_the_runs_of_a_killed_submit(tmp_path: Path) -> None:
    """Straight after a killed submit (no ``runlab status`` first), ``runlab retry`` finds
    its runs that no job will run, and runs them."""
    calls = clean_calls(tmp_path)
    k = next(i for i, c in enumerate(calls, 1) if re.search(r"/jobs-\d+\.json$", c[2]))
    project = make_project(tmp_path / "k", TASKS / "slow.py", TASKS / "slow.yaml")
    logs = project / "logs"
    spec = {"root": str(logs), "mode": "kill", "k": k, "report": str(tmp_path / "k.json")}
    assert submit(project, spec).returncode == -9
    age(logs)
    runlab_cli(project, "retry")
    settle(logs, frozenset({"RUNNING", "QUEUED"}))
    assert statuses(logs) == {1: "COMPLETE", 2: "COMPLETE"}
