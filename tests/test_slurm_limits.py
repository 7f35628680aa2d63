"""Submit limits of SLURM's accounting (associations and QOS), on the real cluster.

The local cluster enforces them (``AccountingStorageEnforce=associations,limits,qos`` in
scripts/slurm-local), so each test first shows that ``sbatch`` itself refuses what runlab
refuses, then that runlab says so in one line before writing anything. Every limit set
here is reset afterwards, whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TASKS, make_project, needs_slurm, runlab_cli

HELD = ("--launcher", "slurm", "launcher.additional_parameters.hold=true")


def sacctmgr(*args: str) -> None:
    subprocess.run(["sacctmgr", "-i", *args], check=True, capture_output=True)


def controller_shows(args: list[str], text: str, timeout: float = 30) -> None:
    """Wait until slurmctld's copy of the accounting data holds ``text`` (slurmdbd pushes it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["scontrol", "show", "assoc_mgr", *args], capture_output=True)
        if text in out.stdout.decode(errors="replace"):
            return
        time.sleep(0.3)
    raise AssertionError(f"the controller never showed {text!r}")


@pytest.fixture
def assoc_limit() -> Iterator[int]:
    sacctmgr("modify", "user", "root", "set", "MaxSubmitJobs=50")
    try:
        controller_shows(["users=root", "flags=assoc"], "MaxSubmitJobs=50(")
        yield 50
    finally:
        sacctmgr("modify", "user", "root", "set", "MaxSubmitJobs=-1")


@pytest.fixture
def qos_limit() -> Iterator[int]:
    sacctmgr("modify", "qos", "normal", "set", "MaxSubmitJobsPerUser=30")
    try:
        controller_shows(["flags=qos", "qos=normal"], "MaxSubmitJobsPU=30(")
        yield 30
    finally:
        sacctmgr("modify", "qos", "normal", "set", "MaxSubmitJobsPerUser=-1")


def queued() -> int:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-u", "root", "-t", "PD,R,CG,S,CF,RQ", "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(out.stdout.split())


def check_limit(project: Path, limit: int, source: str, slurm_error: str) -> None:
    room = limit - queued()
    assert room > 12, f"{queued()} jobs already queued: this test needs an idle cluster"
    # SLURM itself refuses an array of more tasks than the room left.
    sbatch = subprocess.run(
        ["sbatch", "--hold", f"--array=0-{room}", "--wrap", "true"], capture_output=True, text=True
    )
    assert sbatch.returncode != 0 and slurm_error in sbatch.stderr, sbatch.stderr
    # runlab refuses it first, in one line, and writes nothing.
    out = runlab_cli(
        project, "submit", "tasks/slow.py", f"steps=range(1,{room + 2})", *HELD, check=False
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert f"at most {limit} jobs queued ({source}" in line, line
    assert f"submit at most {room} points now" in line and "nothing was written" in line
    assert not (project / "logs").exists()
    # Within the limit: accepted, the limit recorded in the sweep.
    runlab_cli(project, "submit", "tasks/slow.py", "steps=range(1,11)", *HELD)
    try:
        (record,) = (project / "logs" / ".sweeps").glob("*.json")
        limits = json.loads(record.read_text())["limits"]
        assert limits["submit_limits_enforced"] is True
        assert limits["MaxSubmitJobs"] == limit and source in limits["MaxSubmitJobs_from"]
    finally:
        out = runlab_cli(project, "cancel", "--json")
    assert json.loads(out.stdout)["counts"] == {"INTERRUPTED": 10}


@needs_slurm
@pytest.mark.slurm
def test_an_association_limit_refuses_the_sweep_before_anything_is_written(
    tmp_path: Path, assoc_limit: int
) -> None:
    project = make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")
    check_limit(
        project, assoc_limit, "MaxSubmitJobs of association root/runlab", "AssocMaxSubmitJobLimit"
    )


@needs_slurm
@pytest.mark.slurm
def test_a_qos_limit_per_user_refuses_the_sweep_before_anything_is_written(
    tmp_path: Path, qos_limit: int
) -> None:
    project = make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")
    check_limit(
        project, qos_limit, "MaxSubmitJobsPerUser of QOS normal", "QOSMaxSubmitJobPerUserLimit"
    )


# ------------------------------------------------------------------ reading sacctmgr
ASSOC = "runlab|root|40||normal,high|normal\nroot|root|||normal|\n"
QOS = "normal|30|||\nhigh|5||2|\n"


def test_the_tightest_limit_of_the_jobs_account_and_qos_applies() -> None:
    from runlab.sweep.backends._slurm import submit_limits

    assert submit_limits(ASSOC, QOS, account="runlab") == [
        (40, "MaxSubmitJobs of association root/runlab", "user"),
        (30, "MaxSubmitJobsPerUser of QOS normal", "qos-user:normal"),
    ]
    # --qos high: that QOS's limits, not the default's.
    assert submit_limits(ASSOC, QOS, account="runlab", qos="high") == [
        (40, "MaxSubmitJobs of association root/runlab", "user"),
        (5, "MaxSubmitJobsPerUser of QOS high", "qos-user:high"),
        (2, "GrpSubmitJobs of QOS high", "qos:high"),
    ]
    # No limit of its own and no default QOS, but one QOS allowed: that is the job's.
    assert submit_limits(ASSOC, QOS, account="root") == [
        (30, "MaxSubmitJobsPerUser of QOS normal", "qos-user:normal")
    ]
    assert submit_limits("", "") == []


def test_limits_not_enforced_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from runlab.sweep.backends import _slurm as slurm

    calls: list[list[str]] = []

    def fake_run(args: list[str], timeout: float = 60) -> str:
        calls.append(args)
        return (
            "MaxArraySize = 1001\nAccountingStorageEnforce = none\n" if "scontrol" in args else ""
        )

    monkeypatch.setattr(slurm, "_run", fake_run)
    limits = slurm.read_limits()
    assert limits.enforced is False and limits.max_submit is None
    assert not [c for c in calls if c[0] == "sacctmgr"]
