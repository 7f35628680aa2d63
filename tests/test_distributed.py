"""Several ranks, one run: torchrun, the local launcher and SLURM (real processes, Gloo on CPU).

Each path gets the same three tests: a 2-rank job gives one COMPLETE run with each
step logged once; rank 1 raising gives a FAILED run with rank 1's traceback and no
process left; a preempted 2-rank job resumes from its checkpoint with no step twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TASKS, make_project, needs_slurm, runlab_cli, task_env

slurm = needs_slurm
TORCHRUN = Path(sys.executable).with_name("torchrun")
DDP = TASKS / "ddp.py"
TRAIN = ROOT / "tasks" / "train.py"


# ------------------------------------------------------------------- helpers
def info(run: Path) -> dict:
    return yaml.safe_load((run / "metadata" / "info.yaml").read_text())


def rows(run: Path, name: str = "train") -> list[dict]:
    path = run / "metrics" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def runs(logs: Path) -> list[Path]:
    return sorted((p for p in logs.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def wait_for(check, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def pids_with(tag: str) -> list[int]:
    """Live processes whose command line holds ``tag`` (zombies are not alive)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if tag.encode() not in (proc / "cmdline").read_bytes():
                continue
            if (proc / "stat").read_text().split(") ")[-1][:1] == "Z":
                continue
        except OSError:
            continue
        out.append(int(proc.name))
    return out


def assert_one_complete_run(logs: Path, steps: int) -> Path:
    (run,) = runs(logs)
    record = info(run)
    assert record["status"] == "COMPLETE", record
    assert record["world_size"] == 2 and record["nodes"] == 1 and record["backend"] == "gloo"
    assert len(record["rank_hosts"]) == 2
    assert [r["step"] for r in rows(run)] == list(range(steps))  # each step once, by rank 0
    assert {r["ranks"] for r in rows(run)} == {3.0}  # 1 + 2: both ranks took part
    for rank in (0, 1):  # all_ranks=True: one file per rank
        assert [r["rank"] for r in rows(run, f"own.rank{rank}")] == [rank] * steps
        assert f"rank {rank}/2 start 0" in (run / "ranks" / f"rank{rank}.out").read_text()
    return run


def assert_failed_by_rank_1(run: Path, tag: str) -> None:
    record = info(run)
    assert record["status"] == "FAILED", record
    assert record["error"]["rank"] == 1 and record["error"]["type"] == "ValueError"
    assert "rank 1 failing on purpose at step 3" in record["error"]["message"]
    text = (run / "metadata" / "traceback.txt").read_text()
    assert text.startswith("rank 1 ") and "ddp.py" in text and "failing on purpose" in text
    wait_for(lambda: not pids_with(tag), 30, f"the ranks of {tag} to end")


def assert_resumed(run: Path, steps: int) -> None:
    record = info(run)
    assert record["status"] == "COMPLETE", record
    assert record["attempts"] >= 2
    assert [r["step"] for r in rows(run)] == list(range(steps))  # resumed, no step twice
    for rank in (0, 1):
        assert [r["step"] for r in rows(run, f"own.rank{rank}")] == list(range(steps))


# ------------------------------------------------------------------ torchrun
def torchrun(logs: Path, script: Path, *args: str, check: bool = True, **popen):
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), *args]
    env = task_env(RUNLAB_LOGS=str(logs))
    if popen.pop("background", False):
        return subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, **popen)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_torchrun_two_ranks_make_one_complete_run(tmp_path: Path) -> None:
    torchrun(tmp_path / "logs", DDP, "steps=6")
    assert_one_complete_run(tmp_path / "logs", 6)


def test_torchrun_rank_1_raising_fails_the_run_with_its_traceback(tmp_path: Path) -> None:
    tag = f"+tag={uuid.uuid4().hex}"
    args = ("steps=100000", "interval=0.05", "fail_rank=1", "fail_at=3", tag)
    proc = torchrun(tmp_path / "logs", DDP, *args, check=False)
    assert proc.returncode != 0
    (run,) = runs(tmp_path / "logs")
    assert_failed_by_rank_1(run, tag)


def test_torchrun_preempted_ranks_resume_from_the_checkpoint(tmp_path: Path) -> None:
    logs, tag = tmp_path / "logs", f"+tag={uuid.uuid4().hex}"
    args = ("steps=60", "interval=0.1", "ckpt_every=10", tag)
    proc = torchrun(logs, DDP, *args, background=True, stdout=subprocess.DEVNULL)
    run = wait_for(lambda: runs(logs) if logs.exists() else None, 120, "the run")[0]
    wait_for(lambda: len(rows(run)) >= 25, 120, "25 steps")
    ranks = [p for p in pids_with(tag) if "torchrun" not in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(ranks) == 2
    for pid in ranks:  # what SLURM does to every task of a job step it preempts
        os.kill(pid, signal.SIGUSR2)
    proc.wait(timeout=120)
    assert info(run)["status"] == "PREEMPTED"
    assert 25 <= len(rows(run)) < 60
    torchrun(logs, DDP, *args, f"runlab.run_id={run.name}")
    assert_resumed(run, 60)


def test_torchrun_example_replicates_bit_for_bit(tmp_path: Path) -> None:
    """Two 2-rank runs of tasks/train.py on the CPU log identical numbers."""
    logs = tmp_path / "logs"
    torchrun(logs, TRAIN, "epochs=2")
    torchrun(logs, TRAIN, "epochs=2")
    first, second = runs(logs)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    for name in ("train", "test"):
        assert len(rows(first, name)) == 2
        assert strip(rows(first, name)) == strip(rows(second, name))
    assert info(first)["world_size"] == 2
    import torch

    a = torch.load(first / "artifacts" / "model.pt")
    b = torch.load(second / "artifacts" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_example_resumes_bit_for_bit(tmp_path: Path) -> None:
    """A 2-rank run of tasks/train.py preempted after epoch 1 and resumed logs what an
    uninterrupted one does (each rank's RNG state is in the checkpoint)."""
    logs, tag = tmp_path / "logs", f"+tag={uuid.uuid4().hex}"
    torchrun(logs, TRAIN, "epochs=5", tag)
    proc = torchrun(logs, TRAIN, "epochs=5", tag, background=True, stdout=subprocess.PIPE)
    for line in proc.stdout:
        if line.startswith("epoch   1"):
            break
    for pid in pids_with(tag):
        if "torchrun" not in Path(f"/proc/{pid}/cmdline").read_text():
            os.kill(pid, signal.SIGUSR2)
    proc.communicate(timeout=120)
    full, cut = runs(logs)
    assert info(cut)["status"] == "PREEMPTED" and len(rows(cut)) < 5
    out = torchrun(logs, TRAIN, "epochs=5", tag, f"runlab.run_id={cut.name}")
    assert "resuming run 2 at epoch" in out.stdout
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    for name in ("train", "test"):
        assert strip(rows(cut, name)) == strip(rows(full, name))
    assert info(cut)["status"] == "COMPLETE" and info(cut)["attempts"] == 2


# ------------------------------------------------------- the launchers
@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh git project holding the distributed test task, committed."""
    return make_project(tmp_path, DDP, TASKS / "ddp.yaml")


runlab = runlab_cli


RANKS2 = ("launcher.tasks_per_node=2", "launcher.cpus_per_task=1")


def test_local_launcher_two_ranks_make_one_complete_run(project: Path) -> None:
    runlab(project, "submit", "tasks/ddp.py", "steps=6", "--launcher", "local", "--wait", *RANKS2)
    assert_one_complete_run(project / "logs", 6)


def test_local_launcher_rank_1_raising_fails_the_run(project: Path) -> None:
    tag = f"+tag={uuid.uuid4().hex}"
    args = ("steps=100000", "interval=0.05", "fail_rank=1", "fail_at=3", tag)
    out = runlab(
        project,
        "submit",
        "tasks/ddp.py",
        *args,
        "--launcher",
        "local",
        "--wait",
        *RANKS2,
        check=False,
    )
    assert out.returncode != 0
    (run,) = runs(project / "logs")
    assert_failed_by_rank_1(run, tag)


def test_local_launcher_time_limit_stops_every_rank_and_retry_resumes(project: Path) -> None:
    # The time limit (30 s) sends SIGUSR2 to both ranks: the run ends TIMEOUT with its last
    # checkpoint; `runlab retry` runs it again in its directory until it completes.
    # --wait returns when the run ends TIMEOUT (a local run is never requeued), naming it.
    args = ("steps=60", "interval=0.5", "ckpt_every=5", "launcher.timeout_min=0.5")
    out = runlab(
        project,
        "submit",
        "tasks/ddp.py",
        *args,
        "--launcher",
        "local",
        "--wait",
        *RANKS2,
        check=False,
    )
    (run,) = runs(project / "logs")
    ended = ("COMPLETE", "FAILED", "INTERRUPTED", "TIMEOUT")
    assert out.returncode != 0 and "TIMEOUT" in out.stderr, out.stderr
    assert info(run)["status"] == "TIMEOUT", info(run)
    assert len(rows(run)) < 60
    for _ in range(6):
        if info(run)["status"] == "COMPLETE":
            break
        assert info(run)["status"] == "TIMEOUT", info(run)
        runlab(project, "retry")
        wait_for(lambda: info(run)["status"] in ended, 120, "the retried run to end")
    assert_resumed(run, 60)


def test_local_launcher_refuses_several_nodes(project: Path) -> None:
    out = runlab(
        project, "submit", "tasks/ddp.py", "--launcher", "local", "launcher.nodes=2", check=False
    )
    assert out.returncode == 2
    assert "launcher.nodes=2" in out.stderr and "local launcher" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (project / "logs").exists()


# --------------------------------------------------------------------- SLURM
@slurm
@pytest.mark.slurm
def test_slurm_two_ranks_make_one_complete_run(project: Path) -> None:
    runlab(project, "submit", "tasks/ddp.py", "steps=6", "--launcher", "slurm", "--wait", *RANKS2)
    run = assert_one_complete_run(project / "logs", 6)
    assert info(run)["job_id"]
    # submitit's sbatch script: 2 tasks per node, and srun starts one submitit process per task
    script = next((project / "logs" / ".sweeps").glob("*/logs/*_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "srun --unbuffered" in script
    assert "submitit.core._submit" in script


@slurm
@pytest.mark.slurm
def test_slurm_rank_1_raising_fails_the_run_and_ends_the_job(project: Path) -> None:
    tag = f"+tag={uuid.uuid4().hex}"
    args = ("steps=100000", "interval=0.05", "fail_rank=1", "fail_at=3", tag)
    runlab(
        project,
        "submit",
        "tasks/ddp.py",
        *args,
        "--launcher",
        "slurm",
        "--wait",
        *RANKS2,
        check=False,
    )
    (run,) = runs(project / "logs")
    assert_failed_by_rank_1(run, tag)
    job = str(info(run)["job_id"])

    def gone() -> bool:
        out = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True)
        return not out.stdout.strip()

    wait_for(gone, 60, f"job {job} to leave the queue")


@slurm
@pytest.mark.slurm
def test_slurm_preempted_two_rank_job_resumes_from_its_checkpoint(project: Path) -> None:
    args = ("steps=80", "interval=0.1", "ckpt_every=10")
    runlab(project, "submit", "tasks/ddp.py", *args, "--launcher", "slurm", *RANKS2)
    (run,) = runs(project / "logs")
    wait_for(lambda: len(rows(run)) >= 25, 240, "25 steps")
    subprocess.run(["scancel", "--signal=USR2", str(info(run)["job_id"])], check=True)

    def preempted() -> bool:  # PREEMPTED, then requeued: the next attempt remembers it
        record = info(run)
        return "PREEMPTED" in (record["status"], record.get("previous_status"))

    wait_for(preempted, 60, "the run to be preempted")
    wait_for(lambda: info(run)["status"] in ("COMPLETE", "FAILED", "INTERRUPTED"), 300, "the end")
    assert_resumed(run, 80)
    assert info(run)["previous_status"] == "PREEMPTED"


# ---------------------------------------------------------------- the pieces
def test_ranks_come_from_torchrun_or_slurm_and_default_to_one() -> None:
    from runlab.record.distributed import from_env

    one = from_env({})
    assert (one.rank, one.world_size, one.is_main, one.source) == (0, 1, True, "single")
    tr = from_env(
        {
            "RANK": "3",
            "WORLD_SIZE": "4",
            "LOCAL_RANK": "1",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "n1",
            "MASTER_PORT": "1234",
        }
    )
    assert (tr.rank, tr.local_rank, tr.world_size, tr.nodes, tr.is_main) == (3, 1, 4, 2, False)
    assert (tr.master_addr, tr.master_port, tr.source) == ("n1", 1234, "torchrun")
    step = {
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_PROCID": "2",
        "SLURM_LOCALID": "0",
        "SLURM_STEP_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_JOB_ID": "77",
        "SLURM_STEP_NODELIST": "a",
    }
    sl = from_env(step)
    assert (sl.rank, sl.local_rank, sl.world_size, sl.nodes, sl.source) == (2, 0, 4, 2, "srun")
    assert sl.master_addr == "a" and sl.master_port == 20077
    # An allocation of several tasks that did not srun this process: one rank, no waiting.
    assert from_env({"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_ID": "7"}).world_size == 1


def test_sbatch_script_asks_for_every_rank(tmp_path: Path) -> None:
    # The script submitit writes from runlab's parameters: srun then starts
    # nodes x tasks_per_node tasks, one rank each.
    from submitit.slurm.slurm import _make_sbatch_string

    from runlab.sweep.backends.slurm import parameters as slurm_parameters
    from runlab.sweep.launcher import load_config

    cfg = load_config("slurm", ROOT / "configs", ["nodes=2", "tasks_per_node=4", "gpus_per_node=4"])
    script = _make_sbatch_string(
        command="python -c pass", folder=tmp_path, map_count=3, **slurm_parameters(cfg)
    )
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=4" in script
    assert "#SBATCH --gpus-per-node=4" in script and "#SBATCH --array=0-2" in script
    assert "\nsrun --unbuffered " in script


def test_doctor_checks_nccl_only_where_there_are_gpus() -> None:
    code = (
        "import sys\n"
        "from runlab.record.distributed import doctor_check\n"
        "print(doctor_check(False)[1], 'torch' in sys.modules)\n"
        "name, verdict, detail, fix = doctor_check(True)\n"
        "import torch\n"
        "print(verdict == ('ok' if torch.distributed.is_nccl_available() else 'fail'), detail)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "skip False"  # no GPU: torch is not even imported
    assert out[1].startswith("True") and "nccl" in out[1].lower()


def test_a_two_rank_run_is_reproduced_with_two_ranks(project: Path) -> None:
    """`runlab reproduce` of a torchrun run starts as many ranks as the run had, on one
    machine (a run of several nodes is refused: see test_reproduce_plan), and the two
    runs' numbers are identical."""
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "tasks/ddp.py", "steps=4"]
    env = task_env(RUNLAB_LOGS=str(project / "logs"))
    done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    plan = runlab(project, "reproduce", "1", "--dry-run")
    assert "-m torch.distributed.run --standalone --nproc_per_node=2" in plan.stdout
    out = runlab(project, "reproduce", "1", check=False)
    assert "run 2 reproduces run 1:" in out.stdout, out.stdout + out.stderr
    first, second = project / "logs" / "1", project / "logs" / "2"
    assert info(second)["world_size"] == 2 and info(second)["reproduces"] == "1"
    # the task logs its wall-clock time too: every other number is the same
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "wall")} for r in rs]  # noqa: E731
    assert strip(rows(first)) == strip(rows(second)) and len(rows(second)) == 4
