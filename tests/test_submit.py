"""`runlab submit`: sweeps expanded by Hydra, pinned to their code, run locally or on SLURM."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import TASKS, git, make_project, needs_slurm, runlab_cli, task_env
from runlab.sweep.record import load

slurm = needs_slurm


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh git project holding the slow test task, committed."""
    return make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")


def submit(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return runlab_cli(project, "submit", "tasks/slow.py", *args, check=check, timeout=600)


def runs(project: Path) -> list[Path]:
    logs = project / "logs"
    return sorted((p for p in logs.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def info(run: Path) -> dict:
    return yaml.safe_load((run / "metadata" / "info.yaml").read_text())


def rows(run: Path, name: str = "train") -> list[dict]:
    path = run / "metrics" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_status(run: Path, statuses: set[str], timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        current = info(run)
        if current.get("status") in statuses:
            return current
        time.sleep(0.5)
    raise AssertionError(f"run {run.name} still {info(run).get('status')} after {timeout}s")


# ------------------------------------------------------------------------ local launcher
def test_local_sweep_runs_every_point_with_bounded_parallelism(project: Path) -> None:
    out = submit(
        project,
        "steps=3,4",
        "interval=0",
        "+tag=a,b",
        "--launcher",
        "local",
        "--wait",
        "launcher.max_parallel=2",
    )
    assert "all 4 runs complete" in out.stderr
    found = runs(project)
    assert len(found) == 4
    overrides = [yaml.safe_load((r / "metadata" / "overrides.yaml").read_text()) for r in found]
    assert overrides == [
        ["steps=3", "interval=0", "+tag=a"],
        ["steps=3", "interval=0", "+tag=b"],
        ["steps=4", "interval=0", "+tag=a"],
        ["steps=4", "interval=0", "+tag=b"],
    ]
    infos = [info(r) for r in found]
    assert {i["status"] for i in infos} == {"COMPLETE"}
    assert len({i["sweep_id"] for i in infos}) == 1
    assert len({i["pid"] for i in infos}) == 4
    assert len(infos[0]["local_workers"]) == 2  # two worker processes shared the queue
    assert [len(rows(r)) for r in found] == [3, 3, 4, 4]
    commit = git(project, "rev-parse", "HEAD")
    for run in found:
        env = yaml.safe_load((run / "metadata" / "env.yaml").read_text())
        assert env["git"]["commit"] == commit and env["git"]["dirty"] is False


def test_dry_run_prints_the_plan_and_writes_nothing(project: Path) -> None:
    out = submit(
        project, "steps=1,2,3", "--dry-run", "--launcher", "slurm", "launcher.partition=gpu"
    )
    assert "3 job(s)" in out.stdout and "steps=2" in out.stdout
    assert "partition: gpu" in out.stdout and "array_parallelism" in out.stdout
    assert not (project / "logs").exists()


def test_invalid_override_fails_before_anything_is_created(project: Path) -> None:
    out = submit(project, "steps=1,2", "nosuchkey=3", check=False)
    assert out.returncode == 2
    assert "Could not override 'nosuchkey'" in out.stderr
    out = submit(project, "steps=[1", check=False)
    assert out.returncode == 2 and "override_grammar" in out.stderr
    out = submit(project, "launcher.nosuch=1", "--launcher", "local", check=False)
    assert out.returncode == 2 and "unknown local launcher setting" in out.stderr
    assert not (project / "logs").exists()


def test_dirty_tree_is_refused_unless_allowed_and_then_recorded(project: Path) -> None:
    (project / "tasks" / "slow.yaml").write_text(
        (project / "tasks" / "slow.yaml").read_text().replace("steps: 50", "steps: 2")
    )
    (project / "notes.txt").write_text("untracked")
    out = submit(project, "interval=0", "--launcher", "local", check=False)
    assert out.returncode == 2
    assert "M tasks/slow.yaml" in out.stderr and "?? notes.txt" in out.stderr
    assert "--allow-dirty" in out.stderr
    assert not (project / "logs").exists()

    submit(project, "interval=0", "--launcher", "local", "--allow-dirty", "--wait")
    (run,) = runs(project)
    assert len(rows(run)) == 2  # the job ran the uncommitted config
    diff = (run / "metadata" / "git.diff").read_text()
    assert "-steps: 50" in diff and "+steps: 2" in diff and "notes.txt" in diff
    env = yaml.safe_load((run / "metadata" / "env.yaml").read_text())
    assert env["git"]["dirty"] is True
    # The snapshot's patch is kept beside it, for tasks a job starts from the snapshot.
    (snapshot,) = (project / "logs" / ".snapshots").glob("*-dirty-*.diff")
    assert snapshot.read_text() == diff


def test_overrides_reach_jobs_as_single_arguments(project: Path) -> None:
    value = 'a b; echo pwned > /tmp/runlab-pwned "d" $HOME'
    submit(project, "interval=0", "steps=1", f"+note='{value}'", "--launcher", "local", "--wait")
    (run,) = runs(project)
    config = yaml.safe_load((run / "metadata" / "config.yaml").read_text())
    assert config["note"] == value
    assert info(run)["command"][-1] == f"+note='{value}'"
    assert not Path("/tmp/runlab-pwned").exists()


def test_queued_jobs_run_the_code_they_were_submitted_with(project: Path) -> None:
    # One worker, two jobs: the second waits in the queue while the code changes.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runlab",
            "submit",
            "tasks/slow.py",
            "steps=20,21",
            "interval=0.1",
            "--launcher",
            "local",
            "launcher.max_parallel=1",
            "--wait",
        ],
        cwd=project,
        env=task_env(RUNLAB_LOGS=str(project / "logs")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while (
        time.time() < deadline and not (project / "logs" / "2" / "metadata" / "info.yaml").exists()
    ):
        time.sleep(0.1)
    submitted = git(project, "rev-parse", "HEAD")
    slow = project / "tasks" / "slow.py"
    slow.write_text(slow.read_text().replace('"value": step * 0.5', '"value": -1.0'))
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "change the code")
    assert info(project / "logs" / "2")["status"] == "QUEUED"
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    late = project / "logs" / "2"
    assert {r["value"] for r in rows(late)} != {-1.0}  # old code: value = step / 2
    env = yaml.safe_load((late / "metadata" / "env.yaml").read_text())
    assert env["git"]["commit"] == submitted != git(project, "rev-parse", "HEAD")


# ------------------------------------------------------------------------ SLURM
@slurm
@pytest.mark.slurm
def test_slurm_sweep_is_one_array_and_completes(project: Path) -> None:
    out = submit(project, "steps=2,3,4", "interval=0", "--launcher", "slurm", "--wait")
    assert "all 3 runs complete" in out.stderr
    infos = [info(r) for r in runs(project)]
    assert {i["status"] for i in infos} == {"COMPLETE"}
    assert len({i["array_job_id"] for i in infos}) == 1  # ONE job array
    assert sorted(i["array_task_id"] for i in infos) == [0, 1, 2]
    assert all(i["job_id"] for i in infos)
    deadline = time.time() + 60  # sacct's view lags the jobs by seconds
    while True:
        state = subprocess.run(
            ["sacct", "-n", "-X", "-j", str(infos[0]["array_job_id"]), "--format=State"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        # slurmdbd records the tasks one by one: wait for all three, not the first
        if (len(state) == 3 and set(state) == {"COMPLETED"}) or time.time() > deadline:
            break
        time.sleep(1)
    assert len(state) == 3 and set(state) == {"COMPLETED"}


@slurm
@pytest.mark.slurm
def test_slurm_tasks_run_though_the_arrays_own_pickle_was_removed(project: Path) -> None:
    """Each task's pickle is its own name (a hard link), not a pointer to the array's file:
    a cleanup that removes ``<array>_submitted.pkl`` while the array waits breaks nothing."""
    submit(
        project,
        "steps=2,3",
        "interval=0",
        "--launcher",
        "slurm",
        "launcher.additional_parameters.hold=true",
    )
    sweep = json.loads(next((project / "logs" / ".sweeps").glob("*.json")).read_text())
    (array,) = sweep["submissions"][0]["arrays"]
    log_dir = Path(load(project / "logs", sweep["sweep_id"]).submissions[0].log_dir)
    (log_dir / f"{array['job_id']}_submitted.pkl").unlink()
    assert all((log_dir / f"{array['job_id']}_{t}_submitted.pkl").stat().st_size for t in (0, 1))
    subprocess.run(["scontrol", "release", array["job_id"]], check=True)
    for run in runs(project):
        assert wait_status(run, {"COMPLETE", "FAILED", "LOST"})["status"] == "COMPLETE"


@slurm
@pytest.mark.slurm
def test_slurm_preempted_job_resumes_from_its_checkpoint(project: Path) -> None:
    submit(project, "steps=80", "interval=0.1", "ckpt_every=10", "--launcher", "slurm")
    (run,) = runs(project)
    deadline = time.time() + 120
    while time.time() < deadline and len(rows(run)) < 25:
        time.sleep(0.2)
    assert len(rows(run)) >= 25, info(run)
    job = str(info(run)["job_id"])
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    preempted = wait_status(run, {"PREEMPTED", "TIMEOUT"}, timeout=60)
    assert preempted["status"] == "PREEMPTED"
    final = wait_status(run, {"COMPLETE", "FAILED", "INTERRUPTED"}, timeout=300)
    assert final["status"] == "COMPLETE", final
    assert final["attempts"] == 2 and final["previous_status"] == "PREEMPTED"
    steps = [r["step"] for r in rows(run)]
    assert steps == list(range(80))  # resumed from the checkpoint, no step twice


@slurm
@pytest.mark.slurm
def test_slurm_cancelled_job_ends_interrupted(project: Path) -> None:
    submit(project, "steps=100000", "interval=0.05", "--launcher", "slurm")
    (run,) = runs(project)
    wait_status(run, {"RUNNING"}, timeout=120)
    time.sleep(1.0)
    subprocess.run(["scancel", str(info(run)["job_id"])], check=True)
    assert (
        wait_status(run, {"INTERRUPTED", "FAILED", "COMPLETE"}, timeout=180)["status"]
        == "INTERRUPTED"
    )


@slurm
@pytest.mark.slurm
def test_a_submission_sbatch_would_refuse_leaves_no_run_behind(project: Path) -> None:
    """Validated with ``sbatch --test-only`` before any run is pre-created: a malformed
    extra option or an unknown partition is one line, and the logs directory stays empty."""
    for bad in ("launcher.partition=nosuchpartition", "launcher.additional_parameters.bogus=1"):
        out = submit(project, "steps=range(1,200)", "--launcher", "slurm", bad, check=False)
        assert out.returncode == 2, out.stderr
        assert "SLURM would refuse the sweep (sbatch --test-only:" in out.stderr, out.stderr
        assert "no run was created" in out.stderr and "Traceback" not in out.stderr
        assert not (project / "logs").exists()  # not even the logs directory


@slurm
@pytest.mark.slurm
def test_a_refusal_at_submission_marks_the_precreated_runs_failed(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sbatch can still refuse after validation (the partition went away in between): the
    runs already pre-created end FAILED with its words, never QUEUED forever."""
    from runlab.sweep import submission

    monkeypatch.chdir(project)
    sweep = submission.prepare(
        "tasks/slow.py", ["steps=1,2", "launcher=slurm"], logs=project / "logs"
    )
    created = submission.create_runs(sweep)
    created.record.launcher["partition"] = "nosuchpartition"
    with pytest.raises(Exception, match="sbatch refused the sweep"):
        submission.launch(sweep, created)
    infos = [info(r) for r in runs(project)]
    assert len(infos) == 2 and {i["status"] for i in infos} == {"FAILED"}
    assert "sbatch refused" in infos[0]["error"]["message"]


def test_at_a_terminal_submit_offers_to_commit_first(project: Path) -> None:
    import os
    import pty

    (project / "notes.txt").write_text("new file")
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runlab",
            "submit",
            "tasks/slow.py",
            "steps=1",
            "interval=0",
            "--launcher",
            "local",
            "--wait",
        ],
        cwd=project,
        env=task_env(RUNLAB_LOGS=str(project / "logs")),
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(secondary)
    os.write(primary, b"y\n")
    out, err = proc.communicate(timeout=120)
    os.close(primary)
    assert proc.returncode == 0, err
    assert "Commit them now" in out + err and "committed" in err
    assert git(project, "status", "--porcelain") == ""
    assert "notes.txt" in git(project, "show", "--stat", "HEAD")
    (run,) = runs(project)
    env = yaml.safe_load((run / "metadata" / "env.yaml").read_text())
    assert env["git"]["commit"] == git(project, "rev-parse", "HEAD") and not env["git"]["dirty"]
