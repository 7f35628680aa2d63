"""Smoke test for the single-node SLURM cluster that scripts/slurm-local starts.

Skipped (with the reason) when SLURM is not installed or the cluster is not up.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

START_HINT = "start one with: scripts/slurm-local start"
TERMINAL = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
)


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def partitions() -> list[str]:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip(f"sinfo/sbatch not found: SLURM is not installed ({START_HINT})")
    try:
        r = _run("sinfo", "-h", "-o", "%P|%a", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.skip(f"sinfo timed out: the SLURM cluster is not responding ({START_HINT})")
    if r.returncode != 0:
        pytest.skip(
            f"SLURM cluster is not up: {r.stderr.strip() or r.stdout.strip()} ({START_HINT})"
        )
    return [line.split("|")[0].rstrip("*") for line in r.stdout.split()]


def test_sinfo_lists_debug_partition(partitions: list[str]) -> None:
    assert "debug" in partitions


def test_sbatch_wrap_completes_in_sacct(partitions: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    r = _run(
        "sbatch", "--parsable", "--partition=debug", f"--output={out}", "--wrap", "echo hello-slurm"
    )
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().split(";")[0]

    # sacct lags slurmctld by a moment: poll until the job reaches a final state there.
    state = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = _run("sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State")
        state = s.stdout.strip()
        if state.startswith(TERMINAL):
            break
        time.sleep(0.5)
    assert state == "COMPLETED", f"job {job_id}: sacct state {state!r}"
    assert out.read_text().strip() == "hello-slurm"
