"""After `runlab submit`: the sweep record, status reconciled with the scheduler, cancel,
retry, logs, and sweeps split by SLURM's limits; on the real local cluster and locally."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import TASKS, git, make_project, needs_slurm, runlab_cli, task_env
from runlab.sweep.record import SCHEMA

slurm = needs_slurm
FINAL = {"COMPLETE", "FAILED", "INTERRUPTED", "LOST", "TIMEOUT"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh git project holding the slow test task, committed."""
    return make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")


def runlab(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return runlab_cli(project, *args, check=check, timeout=300)


def info(project: Path, run_id: int) -> dict:
    return json.loads((project / "logs" / str(run_id) / "metadata" / "info.json").read_text())


def record(project: Path) -> dict:
    """The sweep's record as written, checked against its JSON Schema."""
    (path,) = (project / "logs" / ".sweeps").glob("*.json")
    data = json.loads(path.read_text())
    jsonschema.validate(data, SCHEMA)
    return data


def wait_for(project: Path, run_ids: list[int], statuses: set[str], timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(info(project, r).get("status") in statuses for r in run_ids):
            return
        time.sleep(0.3)
    raise AssertionError({r: info(project, r).get("status") for r in run_ids})


def squeue(array: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-j", array, "-o", "%i %T"], capture_output=True, text=True
    )
    return out.stdout.splitlines() if out.returncode == 0 else []


def rows(project: Path, run_id: int) -> list[dict]:
    path = project / "logs" / str(run_id) / "metrics" / "train.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def fix_the_failure(project: Path) -> str:
    slow = project / "tasks" / "slow.py"
    slow.write_text(slow.read_text().replace("if step == cfg.fail_at:", "if False:"))
    git(project, "commit", "-qam", "fix the failure")
    return git(project, "rev-parse", "HEAD")


# ----------------------------------------------------------------- failing point, retry
def check_fail_then_retry(project: Path, launcher: str) -> None:
    first = git(project, "rev-parse", "HEAD")
    out = runlab(
        project,
        "submit",
        "tasks/slow.py",
        "steps=4",
        "interval=0",
        "ckpt_every=1",
        "fail_at=-1,2",
        "--launcher",
        launcher,
        "--wait",
        check=False,
    )
    assert out.returncode == 1, out.stderr  # one run did not complete
    sweep = record(project)
    assert sweep["runs"] == [1, 2] and sweep["launcher"]["name"] == launcher
    assert sweep["submissions"][0]["code"][0]["commit"] == first

    status = json.loads(runlab(project, "status", "--json").stdout)
    assert status["sweep_id"] == sweep["sweep_id"]
    assert status["counts"] == {"COMPLETE": 1, "FAILED": 1} and status["progress"] == 1.0
    (failed,) = status["failing"]
    assert failed["run_id"] == 2 and failed["error_type"] == "ValueError"
    assert failed["error_message"] == "failing on purpose at step 2"
    plain = runlab(project, "status").stdout
    assert "FAILED" in plain and "ValueError: failing on purpose at step 2" in plain

    dry = runlab(project, "retry", "--dry-run").stdout
    assert "would retry 1 run(s)" in dry and "     2  FAILED" in dry
    assert info(project, 2)["status"] == "FAILED" and len(record(project)["submissions"]) == 1

    fixed = fix_the_failure(project)
    out = runlab(project, "retry", "--code", "current")
    assert "retrying 1 run(s)" in out.stdout and fixed[:10] in out.stdout
    wait_for(project, [2], FINAL)
    again = info(project, 2)
    assert again["status"] == "COMPLETE", again
    assert again["attempts"] == 2 and again["previous_status"] == "FAILED"
    assert again["code_commits"] == [first, fixed] and again["code_commit"] == fixed
    assert again["previous_error"]["message"] == "failing on purpose at step 2"
    assert [r["step"] for r in rows(project, 2)] == [0, 1, 2, 3]  # resumed at its checkpoint
    env = yaml.safe_load((project / "logs" / "2" / "metadata" / "env.yaml").read_text())
    assert env["git"]["commit"] == fixed
    subs = record(project)["submissions"]
    assert [s["kind"] for s in subs] == ["submit", "retry"] and subs[1]["runs"] == [2]
    assert [c["commit"] for s in subs for c in s["code"]] == [first, fixed]
    assert info(project, 1)["attempts"] == 1  # the complete run was left alone
    assert "start 2" in runlab(project, "logs", "2").stdout  # the retry's own output
    final = json.loads(runlab(project, "status", "--json").stdout)
    assert final["counts"] == {"COMPLETE": 2} and final["submissions"] == 2


# ------------------------------------------------------- two commands on one sweep
def failed_sweep(project: Path) -> None:
    """A local sweep of three points, two of which failed (fixed since, and committed)."""
    out = runlab(
        project, "submit", "tasks/slow.py", "steps=3", "interval=0", "ckpt_every=1",
        "fail_at=-1,1,2", "--launcher", "local", "--wait", check=False,
    )  # fmt: skip
    assert out.returncode == 1 and sorted(info(project, r)["status"] for r in (1, 2, 3)) == [
        "COMPLETE", "FAILED", "FAILED",
    ]  # fmt: skip
    fix_the_failure(project)


def test_two_retries_at_once_submit_each_run_once(project: Path) -> None:
    failed_sweep(project)
    cmd = [sys.executable, "-m", "runlab", "retry", "--code", "current", "--json"]
    env = task_env(RUNLAB_LOGS=str(project / "logs"))
    procs = [
        subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(len(o["retried"]) for o in outs) == [0, 2]  # one of them found nothing
    subs = record(project)["submissions"]
    assert [s["kind"] for s in subs] == ["submit", "retry"] and subs[1]["runs"] == [2, 3]
    wait_for(project, [2, 3], FINAL)
    for rid in (2, 3):
        assert info(project, rid)["status"] == "COMPLETE" and info(project, rid)["retries"] == 1
    assert sorted(p.name for p in record_dir(project).glob("jobs-*.json")) == [
        "jobs-1.json", "jobs-2.json",
    ]  # fmt: skip


def record_dir(project: Path) -> Path:
    (path,) = (project / "logs" / ".sweeps").glob("*.json")
    return path.with_suffix("")


def test_a_cancel_waits_for_the_command_changing_the_sweep_and_loses_nothing(
    project: Path,
) -> None:
    from runlab.sweep import ops

    failed_sweep(project)
    logs, sid = project / "logs", record(project)["sweep_id"]
    with ops.exclusive(logs, sid, by="the test") as held:
        assert held is not None
        cancel = subprocess.Popen(
            [sys.executable, "-m", "runlab", "cancel", "1", "--json"],
            cwd=project,
            env=task_env(RUNLAB_LOGS=str(logs)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        assert cancel.poll() is None  # waiting for the lock
        assert "the test, pid" in (logs / ".sweeps" / f"{sid}.lock").read_text()
        held.cancelled.append(ops.Cancel("2026-01-01T00:00:00+00:00", [3]))
        ops.save(logs, held)
    _, err = cancel.communicate(timeout=60)
    assert cancel.returncode == 0, err
    assert [c["runs"] for c in record(project)["cancelled"]] == [[3], [1]]  # both kept


def test_a_read_only_logs_directory_is_one_line(project: Path, tmp_path: Path) -> None:
    failed_sweep(project)
    logs = project / "logs"
    subprocess.run(["mount", "--bind", str(logs), str(logs)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(logs)], check=True)
        for args in (("cancel",), ("retry",)):
            out = runlab(project, *args, check=False)
            assert out.returncode != 0 and "Traceback" not in out.stderr
            (line,) = out.stderr.strip().splitlines()
            assert "read-only" in line, line
    finally:
        subprocess.run(["umount", str(logs)], check=True)
    assert [s["kind"] for s in record(project)["submissions"]] == ["submit"]


# ----------------------------------------------------------------- reconcile, cancel
@slurm
@pytest.mark.slurm
def test_slurm_array_cancelled_while_pending_is_interrupted_in_plain_status(
    project: Path,
) -> None:
    hold = "launcher.additional_parameters.hold=true"
    runlab(project, "submit", "tasks/slow.py", "steps=1,2,3", "--launcher", "slurm", hold)
    sweep = record(project)
    (array,) = [a["job_id"] for a in sweep["submissions"][0]["arrays"]]
    assert len(squeue(array)) == 3
    before = json.loads(runlab(project, "status", "--json").stdout)
    assert before["counts"] == {"QUEUED": 3} and before["reconciled"] == []

    subprocess.run(["scancel", array], check=True)  # behind runlab's back
    status = runlab(project, "status")  # no --wait anywhere
    assert "INTERRUPTED 3" in status.stdout, status.stdout
    for run_id in (1, 2, 3):
        rec = info(project, run_id)
        assert rec["status"] == "INTERRUPTED"
        assert (
            rec["error"]["message"]
            == f"job {array}_{run_id - 1} was cancelled before the run started"
        )
        assert rec["reconciled"]["job"] == "CANCELLED" and rec["reconciled"]["was"] == "QUEUED"
    again = json.loads(runlab(project, "status", "--json").stdout)
    assert again["counts"] == {"INTERRUPTED": 3} and again["reconciled"] == []


@slurm
@pytest.mark.slurm
def test_slurm_job_unknown_to_the_scheduler_is_lost_with_the_reason(project: Path) -> None:
    hold = "launcher.additional_parameters.hold=true"
    runlab(project, "submit", "tasks/slow.py", "steps=1", "--launcher", "slurm", hold)
    sweep = record(project)
    array = sweep["submissions"][0]["arrays"][0]["job_id"]
    subprocess.run(["scancel", array], check=True)
    # A job id neither squeue nor sacct has seen: just submitted, accounting may lag...
    path = next((project / "logs" / ".sweeps").glob("*.json"))
    sweep["submissions"][0]["arrays"][0]["job_id"] = "987654321"
    path.write_text(json.dumps(sweep))
    young = json.loads(runlab(project, "status", "--json").stdout)
    assert young["counts"] == {"QUEUED": 1} and young["reconciled"] == []
    # ... but submitted long ago, it has vanished.
    sweep["submissions"][0]["time"] = "2026-01-01T00:00:00.000+00:00"
    path.write_text(json.dumps(sweep))
    out = json.loads(runlab(project, "status", "--json").stdout)
    assert out["counts"] == {"LOST": 1}
    (change,) = out["reconciled"]
    assert change["status"] == "LOST"
    assert change["reason"].startswith("job 987654321_0 is known neither to squeue nor to sacct")


def test_local_cancel_and_workers_killed_are_interrupted_and_lost(project: Path) -> None:
    runlab(
        project,
        "submit",
        "tasks/slow.py",
        "steps=100000",
        "interval=0.05",
        "+k=1,2",
        "--launcher",
        "local",
        "launcher.max_parallel=1",
    )
    wait_for(project, [1], {"RUNNING"})
    assert info(project, 2)["status"] == "QUEUED"
    result = json.loads(runlab(project, "cancel", "--json").stdout)
    assert result["counts"] == {"INTERRUPTED": 2}
    assert info(project, 2)["error"]["message"] == "cancelled before the run started"

    # A second sweep whose worker dies by SIGKILL (its task with it): nothing stays QUEUED.
    shutil.rmtree(project / "logs")
    runlab(
        project,
        "submit",
        "tasks/slow.py",
        "steps=100000",
        "interval=0.05",
        "+k=1,2",
        "--launcher",
        "local",
        "launcher.max_parallel=1",
    )
    wait_for(project, [1], {"RUNNING"})
    (worker,) = record(project)["submissions"][0]["workers"]
    os.killpg(worker["pid"], signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline:
        out = json.loads(runlab(project, "status", "--json").stdout)
        if out["counts"] == {"LOST": 2}:
            break
        time.sleep(0.5)
    assert out["counts"] == {"LOST": 2}, out
    assert "ended without running it" in info(project, 2)["error"]["message"]
    assert "ended without the run recording an end" in info(project, 1)["error"]["message"]


# ----------------------------------------------------------------------------- logs
def check_logs_follow(project: Path, launcher: str) -> None:
    runlab(project, "submit", "tasks/slow.py", "steps=40", "interval=0.1", "--launcher", launcher)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlab", "logs", "1", "-f"],
        cwd=project,
        env=task_env(RUNLAB_LOGS=str(project / "logs")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    while first and not first.startswith("step"):
        first = proc.stdout.readline()
    status_at_first_line = info(project, 1)["status"]
    rest = proc.stdout.read()  # to the end: `logs -f` exits when the run has ended
    err = proc.stderr.read() if proc.stderr else ""
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    assert proc.wait(timeout=60) == 0, err
    assert status_at_first_line == "RUNNING"  # it printed while the job ran
    steps = [line for line in [first, *rest.splitlines()] if line.startswith("step")]
    assert [s.strip() for s in steps] == [f"step {i}" for i in range(40)]
    assert info(project, 1)["status"] == "COMPLETE" and "ended COMPLETE" in err
    assert "[runlab] run 1" in runlab(project, "logs", "1", "--err").stdout
    data = json.loads(runlab(project, "logs", "1", "--json").stdout)
    assert data["status"] == "COMPLETE" and "step 39" in data["text"]


# ------------------------------------------------------------------------ scale, limits
def test_a_limit_that_makes_the_sweep_impossible_fails_before_anything_is_written(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runlab.sweep import launcher, submission
    from runlab.sweep.backends import _slurm as slurm

    monkeypatch.chdir(project)
    limits = slurm.Limits(
        max_array_size=1001,
        max_submit=100,
        queued=40,
        max_submit_source="MaxSubmit of association t/runlab",
    )
    monkeypatch.setattr(slurm, "read_limits", lambda account=None, qos=None: limits)
    sweep = submission.prepare(
        "tasks/slow.py", ["steps=range(1,62)", "launcher=slurm"], logs=project / "logs"
    )
    with pytest.raises(launcher.LauncherError) as err:
        submission.create_runs(sweep)
    assert "at most 100 jobs queued (MaxSubmit of association t/runlab)" in str(err.value)
    assert "submit at most 60 points now" in str(err.value)
    assert not (project / "logs").exists()
    assert slurm.plan_arrays(60, limits) == [(0, 60)]
    assert slurm.plan_arrays(2003, slurm.Limits(max_array_size=1001)) == [
        (0, 1001),
        (1001, 1001),
        (2002, 1),
    ]


# -------------------------------------------------------------- fast paths, bad input
def test_fast_expansion_gives_hydras_configs(project: Path) -> None:
    from runlab.sweep import expand, points

    root = Path(__file__).resolve().parents[1]
    spec = expand.task_spec(root / "tasks" / "train.py")
    args = ["model=mlp,cnn", "lr=0.1,0.01", "+extra=a,'b c'", "++seed=3", "optimizer.momentum=0.5"]
    slow = expand.expand(spec, args)
    fast = points.expand(spec, args)
    assert len(fast) == len(slow) == 8
    assert [j.overrides for j in fast] == [j.overrides for j in slow]
    assert [j.config for j in fast] == [j.config for j in slow]
    # Built copy-on-write from one resolved base, not by OmegaConf: untouched parts are shared.
    assert fast[0].config["model"] is fast[1].config["model"]
    assert slow[0].config["model"] is not slow[1].config["model"]
    with pytest.raises(expand.SweepError, match="Could not override 'nosuch'"):
        points.expand(spec, ["nosuch=1,2"])


def test_fast_yaml_reads_back_as_the_data() -> None:
    from runlab.record.yamlfast import Emitter

    shared = {"x": [1, 2.5, None, True], "y": {"z": "no"}}
    docs = [
        {"a": 1, "b": shared, "c": {}, "d": [], "e": [{"f": [{"g": 1}]}, [1, [2]]]},
        {"a": 2, "b": shared, "s": ["yes", "1e5", "~", "", " x", "a: b", "é\n", 'q"', "0x1f"]},
        {"f": [1e-5, 1e20, -0.0, float("inf")], "i": 10**20, "t": "2026-11-23"},
        ["steps=3", "+note='a b; c'"],
    ]
    emitter = Emitter()
    for doc in docs:
        assert yaml.safe_load(emitter.dump(doc)) == doc


def test_bad_input_is_one_line_without_traceback(project: Path) -> None:
    (project / "logs").mkdir()
    cases = [
        (["status", "--sweep", "nosuch"], "no sweep 'nosuch'"),
        (["retry", "--status", "COMPLETE"], "--status COMPLETE: a run can be retried when"),
        (["logs", "abc"], "'abc' is not a run id"),
        (["logs", "7"], "no run 7 in"),
        (["cancel"], "no sweep in"),
    ]
    for args, expected in cases:
        out = runlab(project, *args, check=False)
        assert out.returncode in (1, 2), (args, out)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, out.stderr)
        assert lines[0].startswith(f"runlab {args[0]}: error: ") and "Traceback" not in out.stderr


def test_a_second_job_of_a_run_leaves_the_live_runs_status_alone(tmp_path: Path) -> None:
    # A scheduler that runs a job twice (a requeue released while the first still runs):
    # the second job's task is turned away by the run's lock and ends with exit 2; its
    # wrapper must not write FAILED over the RUNNING of the job that writes the run.
    import socket

    from runlab.record.files import now_iso
    from runlab.record.rundir import RunDir, allocate
    from runlab.status import Status
    from runlab.sweep.jobs import TaskRun

    writer = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.05)
        run = RunDir(allocate(tmp_path / "logs", 1)[0]).create()
        run.update_info(status="RUNNING", pid=writer.pid, host=socket.gethostname(),
                        start_time=now_iso(), attempt_start_time=now_iso())  # fmt: skip
        spec = {"codes": [{"script": "task.py"}], "python": sys.executable}
        job = TaskRun(spec, {"run_dir": str(run.path), "overrides": []})
        assert job.outcome(2) == Status.RUNNING
        assert run.read_info()["status"] == "RUNNING"
        writer.kill()
        writer.wait()
        assert job.outcome(2) == Status.FAILED  # the writer is gone: the run ended badly
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def test_a_job_whose_run_was_retried_meanwhile_leaves_the_new_attempt_alone(
    tmp_path: Path,
) -> None:
    # A task that recorded FAILED is still shutting down when `runlab retry` requeues its
    # run: the old job's wrapper then saw QUEUED and wrote FAILED ("exit code 1 before
    # recording an end") over the retry, which a second retry then ran again.
    from runlab.record.rundir import RunDir, allocate
    from runlab.status import Status
    from runlab.sweep.jobs import TaskRun

    run = RunDir(allocate(tmp_path / "logs", 1)[0]).create()
    run.update_info(status="QUEUED")
    task = tmp_path / "task.py"
    task.write_text("import sys, time\ntime.sleep(0.5)\nsys.exit(1)\n")
    spec = {"codes": [{"script": str(task)}], "python": sys.executable}
    job = TaskRun(spec, {"run_dir": str(run.path), "overrides": []})
    job.start()
    run.update_info(status="FAILED", error={"type": "ValueError", "message": "by the task"})
    run.update_info(status="QUEUED", error=None, retries=1)  # `runlab retry`, meanwhile
    code = job.wait()
    assert code == 1
    assert job.outcome(code) == Status.QUEUED
    info = run.read_info()
    assert info["status"] == "QUEUED" and info.get("error") is None, info
    # the same job, with no retry in between, still records the ending it saw
    again = TaskRun(spec, {"run_dir": str(run.path), "overrides": []})
    again.start()
    assert again.outcome(again.wait()) == Status.FAILED
    assert run.read_info()["error"]["type"] == "JobError"


def _launcher_settings() -> list[tuple[str, str]]:
    from runlab.sweep import backends

    settings = ["timeout_min=abc", "timeout_min=-5", "timeout_min=0", "array_parallelism=0",
                "max_num_timeout=-1", "array_parallelism=x"]  # fmt: skip
    return [
        (name, s)
        for name in ("local", "slurm", "sge")
        for s in settings
        if s.split("=")[0] in backends.get(name).defaults
    ]


@pytest.mark.parametrize(("backend", "setting"), _launcher_settings())
def test_a_launcher_setting_out_of_range_is_one_line(backend: str, setting: str) -> None:
    # A string reached a backend's int() (an internal error); a negative time limit was
    # taken by SLURM as none at all, and by Grid Engine as none left.
    from runlab.sweep import launcher

    key = setting.split("=")[0]
    with pytest.raises(launcher.LauncherError, match=f"launcher.{key}="):
        launcher.load_config(backend, None, [setting])
