"""The same sweep suite on every backend: local processes, the real local SLURM cluster
and the real local Grid Engine cell (``scripts/slurm-local``, ``scripts/sge-local``).

Each backend must: run a sweep with one failing point and retry it after a fix; follow a
running job's output; cancel running and pending runs (all ``INTERRUPTED``, the queue
empty); refuse a submission its scheduler would refuse before any run exists; split a
sweep larger than the cluster's array limit and account for every run. Then what only
Grid Engine needs: ``Eqw``, rescheduling, suspension and the exit-99 requeue.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from test_sweep_ops import (
    FINAL,
    check_fail_then_retry,
    check_logs_follow,
    info,
    record,
    rows,
    runlab,
    wait_for,
)

from conftest import TASKS, make_project, needs_sge, needs_slurm

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("slurm", marks=[needs_slurm, pytest.mark.slurm], id="slurm"),
    pytest.param("sge", marks=needs_sge, id="sge"),
]
CLUSTERS = BACKENDS[1:]
#: per backend: one run at a time, so that the others wait in the queue
ONE_AT_A_TIME = {
    "local": "launcher.max_parallel=1",
    "slurm": "launcher.array_parallelism=1",
    "sge": "launcher.array_parallelism=1",
}
#: per backend: a setting its scheduler refuses (or runlab, for local processes)
REFUSED = {
    "local": ("launcher.nodes=2", "the local launcher runs on this machine only"),
    "slurm": (
        "launcher.partition=nosuchpartition",
        "SLURM would refuse the sweep (sbatch --test-only:",
    ),
    "sge": ("launcher.queue=nosuch.q", "Grid Engine would refuse the sweep (qsub -w v:"),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")


def queue_of(backend: str, job_ids: list[str]) -> list[str]:
    """The scheduler's pending or running tasks of ``job_ids``."""
    if backend == "slurm":
        out = subprocess.run(
            ["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i %T"],
            capture_output=True,
            text=True,
        )
        return out.stdout.split("\n")[:-1] if out.returncode == 0 else []
    out = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()[2:] if line.split()[0] in job_ids]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_point_shows_its_error_and_a_retry_after_a_fix_completes_it(
    project: Path, backend: str
) -> None:
    check_fail_then_retry(project, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_logs_follow_a_running_job(project: Path, backend: str) -> None:
    check_logs_follow(project, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancel_ends_running_and_pending_runs_interrupted_and_empties_the_queue(
    project: Path, backend: str
) -> None:
    runlab(
        project, "submit", "tasks/slow.py", "steps=100000", "interval=0.05", "+k=1,2,3",
        "--launcher", backend, ONE_AT_A_TIME[backend],
    )  # fmt: skip
    wait_for(project, [1], {"RUNNING"})
    assert [info(project, r)["status"] for r in (2, 3)] == ["QUEUED", "QUEUED"]
    result = json.loads(runlab(project, "cancel", "--json").stdout)
    assert result["counts"] == {"INTERRUPTED": 3}, result
    for run_id in (2, 3):
        message = info(project, run_id)["error"]["message"]
        assert message.endswith("cancelled before the run started"), message
    status = json.loads(runlab(project, "status", "--json").stdout)
    assert status["counts"] == {"INTERRUPTED": 3} and status["reconciled"] == []
    arrays = [a["job_id"] for a in record(project)["submissions"][0]["arrays"]]
    if backend != "local":
        assert arrays and queue_of(backend, arrays) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_submission_the_scheduler_would_refuse_leaves_no_run_behind(
    project: Path, backend: str
) -> None:
    setting, said = REFUSED[backend]
    out = runlab(
        project, "submit", "tasks/slow.py", "steps=range(1,30)", "--launcher", backend, setting,
        check=False,
    )  # fmt: skip
    assert out.returncode == 2 and said in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (project / "logs").exists()


HOLD = {
    "slurm": "launcher.additional_parameters.hold=true",
    "sge": "launcher.additional_parameters=[-h]",
}
DELETE = {"slurm": "scancel", "sge": "qdel"}


@pytest.mark.parametrize("backend", CLUSTERS)
def test_a_pending_array_cancelled_behind_runlabs_back_ends_interrupted(
    project: Path, backend: str
) -> None:
    """Deleted with the scheduler's own command: plain ``runlab status`` closes its runs
    (Grid Engine keeps no record of a task that never ran: once the backend's grace since
    the submission has passed, its absence is the deletion)."""
    runlab(project, "submit", "tasks/slow.py", "steps=1,2,3", "--launcher", backend, HOLD[backend])
    (job,) = [a["job_id"] for a in record(project)["submissions"][0]["arrays"]]
    before = json.loads(runlab(project, "status", "--json").stdout)
    assert before["counts"] == {"QUEUED": 3} and before["reconciled"] == []
    subprocess.run([DELETE[backend], job], check=True, capture_output=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        status = json.loads(runlab(project, "status", "--json").stdout)
        if status["counts"] != {"QUEUED": 3}:
            break
        time.sleep(1)
    assert status["counts"] == {"INTERRUPTED": 3}, status
    for run_id in (1, 2, 3):
        error = info(project, run_id)["error"]
        assert error["type"] == "Cancelled" and "before the run started" in error["message"]
    assert "INTERRUPTED 3" in runlab(project, "status").stdout


@pytest.mark.parametrize("backend", CLUSTERS)
def test_a_sweep_larger_than_the_array_limit_becomes_several_arrays(
    project: Path, backend: str, small_array_limit: int
) -> None:
    """Held, so that nothing runs: every point is one task of one array, then cancelled."""
    hold = HOLD[backend]
    count = 2 * small_array_limit + 1 if backend == "sge" else 2500
    runlab(
        project, "submit", "tasks/slow.py", f"steps=range(1,{count + 1})", "--launcher",
        backend, hold,
    )  # fmt: skip
    try:
        sweep = record(project)
        arrays = sweep["submissions"][0]["arrays"]
        size = small_array_limit if backend == "sge" else 1001
        sizes = [(a["first"], a["count"]) for a in arrays]
        assert sizes == [(0, size), (size, size), (2 * size, count - 2 * size)], sizes
        assert sweep["runs"] == list(range(1, count + 1))
        tasks = queue_of(backend, [a["job_id"] for a in arrays])
        assert len(tasks) >= len(arrays)  # (Grid Engine lists a pending array in one line)
        status = json.loads(runlab(project, "status", "--json").stdout)
        assert status["counts"] == {"QUEUED": count}
    finally:
        out = runlab(project, "cancel", "--json", check=False)
    assert json.loads(out.stdout)["counts"] == {"INTERRUPTED": count}
    assert queue_of(backend, [a["job_id"] for a in arrays]) == []


@pytest.fixture
def small_array_limit(request: pytest.FixtureRequest) -> int:
    """On Grid Engine, ``max_aj_tasks`` set to 3 for the test (put back after)."""
    if request.node.callspec.params.get("backend") != "sge":
        yield 0
        return
    before = _sge_conf("max_aj_tasks")
    _set_sge_conf("max_aj_tasks", "3")
    try:
        yield 3
    finally:
        _set_sge_conf("max_aj_tasks", before)


def _sge_conf(key: str) -> str:
    out = subprocess.run(["qconf", "-sconf"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith(key + " "):
            return line.split()[1]
    raise AssertionError(f"{key} not in qconf -sconf")


def _set_sge_conf(key: str, value: str) -> None:
    import tempfile

    text = subprocess.run(["qconf", "-sconf"], capture_output=True, text=True, check=True).stdout
    lines = [f"{key:<28} {value}" if ln.startswith(key + " ") else ln for ln in text.splitlines()]
    with tempfile.TemporaryDirectory() as tmp:  # qconf -Mconf names the object by the file
        path = Path(tmp) / "global"
        path.write_text("\n".join(lines) + "\n")
        subprocess.run(["qconf", "-Mconf", str(path)], capture_output=True, check=True)
    assert _sge_conf(key) == value


# ------------------------------------------------------------------ Grid Engine only
def _task_of(project: Path, run_id: int) -> str:
    arrays = record(project)["submissions"][-1]["arrays"]
    for a in arrays:
        if a["first"] < run_id <= a["first"] + a["count"]:
            return f"{a['job_id']}.{run_id - a['first']}"
    raise AssertionError(arrays)


@needs_sge
def test_sge_a_task_in_error_state_is_failed_with_its_reason(project: Path) -> None:
    runlab(
        project, "submit", "tasks/slow.py", "steps=2", "--launcher", "sge",
        "launcher.additional_parameters=[-wd,/nonexistent/dir]",
    )  # fmt: skip
    job = _task_of(project, 1).split(".")[0]
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            out = json.loads(runlab(project, "status", "--json").stdout)
            if out["counts"] != {"QUEUED": 1}:
                break
            time.sleep(1)
        assert out["counts"] == {"FAILED": 1}, out
        error = info(project, 1)["error"]
        assert error["type"] == "JobError" and "Eqw" in error["message"]
        assert "/nonexistent/dir" in error["message"] and f"qdel {job}" in error["message"]
    finally:
        subprocess.run(["qdel", job], capture_output=True)


@needs_sge
def test_sge_a_rescheduled_task_resumes_from_its_checkpoint_as_attempt_2(project: Path) -> None:
    runlab(
        project, "submit", "tasks/slow.py", "steps=30", "interval=0.2", "ckpt_every=1",
        "--launcher", "sge",
    )  # fmt: skip
    wait_for(project, [1], {"RUNNING"})
    deadline = time.time() + 60
    while time.time() < deadline and len(_rows_or_none(project, 1)) < 5:
        time.sleep(0.2)
    subprocess.run(["qmod", "-rj", _task_of(project, 1)], check=True, capture_output=True)
    wait_for(project, [1], FINAL, timeout=180)
    done = info(project, 1)
    assert done["status"] == "COMPLETE" and done["attempts"] == 2, done
    assert sorted({r["step"] for r in rows(project, 1)}) == list(range(30))
    assert done["sge_restarted"] is True


def _rows_or_none(project: Path, run_id: int) -> list[dict]:
    try:
        return rows(project, run_id)
    except (FileNotFoundError, json.JSONDecodeError):
        return []


@needs_sge
def test_sge_a_suspended_task_stays_running_and_is_never_lost(project: Path) -> None:
    runlab(
        project, "submit", "tasks/slow.py", "steps=40", "interval=0.1", "--launcher", "sge",
    )  # fmt: skip
    wait_for(project, [1], {"RUNNING"})
    task = _task_of(project, 1)
    subprocess.run(["qmod", "-sj", task], check=True, capture_output=True)
    try:
        for _ in range(6):  # status and verify ask the scheduler: suspended is alive
            status = json.loads(runlab(project, "status", "--json").stdout)
            assert status["counts"] == {"RUNNING": 1} and status["reconciled"] == [], status
            time.sleep(1)
        verify = runlab(project, "verify", "--repair", check=False)
        assert "LOST" not in verify.stdout and info(project, 1)["status"] == "RUNNING"
    finally:
        subprocess.run(["qmod", "-usj", task], check=True, capture_output=True)
    wait_for(project, [1], FINAL, timeout=120)
    assert info(project, 1)["status"] == "COMPLETE"


@needs_sge
def test_sge_the_time_limit_requeues_with_exit_99_and_the_run_resumes(project: Path) -> None:
    """At timeout_min the run stops at its checkpoint (TIMEOUT) and exits 99: Grid
    Engine runs the task again, which resumes; so on, until the run completes."""
    runlab(
        project, "submit", "tasks/slow.py", "steps=40", "interval=0.2", "ckpt_every=1",
        "--launcher", "sge", "launcher.timeout_min=0.1", "launcher.max_num_timeout=20",
    )  # fmt: skip  # 8 s of steps against 6 s per attempt: one requeue at least
    wait_for(project, [1], {"COMPLETE", "FAILED", "LOST", "INTERRUPTED"}, timeout=300)
    done = info(project, 1)
    assert done["status"] == "COMPLETE", done
    assert done["attempts"] >= 2 and done["timeouts"] >= 1
    assert sorted({r["step"] for r in rows(project, 1)}) == list(range(40))


def test_a_job_the_scheduler_ran_again_may_reopen_its_run_on_another_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The earlier attempt of a rescheduled job ran on another host and left a fresh
    heartbeat: it guards the run against a stranger, not against the job's next attempt."""
    from runlab.record.files import now_iso
    from runlab.record.rundir import RESTARTED_JOB_ENV, live_holder

    info = {
        "status": "RUNNING", "heartbeat": now_iso(), "heartbeat_interval_s": 15,
        "host": "node7.example", "pid": 4242, "job_id": "12.3",
    }  # fmt: skip
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(RESTARTED_JOB_ENV, raising=False)
    assert live_holder(info)  # another host's writer, heard from a moment ago
    monkeypatch.setenv(RESTARTED_JOB_ENV, "12.4")
    assert live_holder(info)  # another task's restart says nothing of this one
    monkeypatch.setenv(RESTARTED_JOB_ENV, "12.3")
    assert not live_holder(info)


@needs_sge
def test_sge_job_scripts_pass_an_allowlist_and_never_a_credential(project: Path) -> None:
    """Never ``-V``: the job script exports a list of names, and a credential is neither
    exported (even under a RUNLAB_ name) nor accepted in ``launcher.env``."""
    from conftest import runlab_cli

    secret = "hunter2-do-not-copy"
    runlab_cli(
        project, "submit", "tasks/slow.py", "steps=1", "--launcher", "sge",
        RUNLAB_SERVICE_TOKEN=secret, AWS_SECRET_ACCESS_KEY=secret, PLAIN_SETTING="x",
    )  # fmt: skip
    wait_for(project, [1], FINAL)
    (script,) = (project / "logs" / ".sweeps").glob("*/logs/*-sge-job.sh")
    text = script.read_text()
    assert secret not in text and "PLAIN_SETTING" not in text, text
    assert "export PATH=" in text
    dry = runlab_cli(project, "submit", "tasks/slow.py", "--launcher", "sge", "--dry-run")
    assert "-S /bin/bash -r y" in dry.stdout and " -V" not in dry.stdout
    refused = runlab_cli(
        project, "submit", "tasks/slow.py", "steps=1", "--launcher", "sge",
        "launcher.env=[AWS_SECRET_ACCESS_KEY]", check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "a credential" in refused.stderr, refused.stderr


def test_a_local_worker_is_alive_from_the_moment_it_is_started() -> None:
    """Right after ``Popen`` returns, the kernel may still be making the new program's
    argument list (``/proc/<pid>/cmdline`` reads empty): a reconcile that looked then
    took the worker for gone and closed its queued run (``WORKERS_GONE``), which the
    worker then ran anyway."""
    from runlab.sweep.backends.local import pid_alive

    for _ in range(300):  # the old check failed about 1 time in 13 here
        proc = subprocess.Popen(
            ["/bin/sh", "-c", "sleep 5", "runlab.sweep.jobs"], start_new_session=True
        )
        try:
            assert pid_alive(proc.pid)
        finally:
            proc.kill()
            proc.wait()
        assert not pid_alive(proc.pid)  # and gone once it has ended
