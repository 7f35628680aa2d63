"""A logs directory shared by a group: setgid and group-writable, with umask 002.

Everything runlab makes inside (run directories, code snapshots, claim and lock files,
sweep records, job output) must keep the directory's group and be group-writable, so
that another member of the group can read the runs and start new ones there.
"""

from __future__ import annotations

import functools
import grp
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, TASKS, make_project, task_env

GROUP, MATE = "runlabshare", "runlabmate"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("groupadd") is None or shutil.which("runuser") is None,
    reason="needs root, groupadd and runuser to make a group and a second user",
)


@pytest.fixture(scope="module")
def mate() -> str:
    """A group and a second user in it (made once; kept: they are harmless)."""
    subprocess.run(["groupadd", "-f", GROUP], check=True)
    if subprocess.run(["id", MATE], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-N", "-g", GROUP, MATE], check=True)
    return MATE


@pytest.fixture
def shared() -> Iterator[Path]:
    """A project whose ``logs`` is setgid, group-writable and owned by the group, in a
    folder the second user can reach (pytest's own tmp folders are private)."""
    base = Path(tempfile.mkdtemp(prefix="runlab-shared-", dir="/tmp"))
    try:
        base.chmod(0o755)
        project = make_project(base, TASKS / "quadratic.py", TASKS / "quadratic.yaml")
        logs = project / "logs"
        logs.mkdir()
        os.chown(logs, -1, grp.getgrnam(GROUP).gr_gid)
        logs.chmod(0o2775)
        yield project
    finally:
        shutil.rmtree(base, ignore_errors=True)


@functools.cache
def python_of(user: str) -> str:
    """A Python interpreter ``user`` may run, of this one's version (this one may lie in
    a home folder only its owner can enter); its packages come from ``PYTHONPATH``."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, shutil.which(version), f"/usr/bin/{version}"):
        if (
            python
            and subprocess.run(["runuser", "-u", user, "--", python, "-c", ""]).returncode == 0
        ):
            return python
    pytest.skip(f"no {version} that {user} may run")


def run(project: Path, *argv: str, user: str | None = None) -> subprocess.CompletedProcess:
    """``argv`` (a Python module or script and its arguments) in ``project`` with umask
    002, as root or as ``user``; fails the test where it fails."""
    cmd = [sys.executable, *argv]
    env = task_env(RUNLAB_LOGS=str(project / "logs"), PYTHONPATH=str(ROOT / "src"))
    if user:
        env["HOME"] = str(project.parent)
        env["PYTHONPATH"] += os.pathsep + sysconfig.get_paths()["purelib"]
        cmd = ["runuser", "-u", user, "--", python_of(user), *argv]
        for need in (ROOT / "src" / "runlab", Path(sysconfig.get_paths()["purelib"])):
            if subprocess.run(["runuser", "-u", user, "--", "test", "-r", str(need)]).returncode:
                pytest.skip(f"{user} cannot read {need}: the checkout or its venv is private")
    proc = subprocess.run(
        cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300, umask=0o002
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def not_shared(logs: Path) -> list[str]:
    """Each path under ``logs`` that lacks the group's gid or group write (dirs: setgid)."""
    gid = logs.stat().st_gid
    bad = []
    for path in [logs, *logs.rglob("*")]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        want = 0o070 | stat.S_ISGID if stat.S_ISDIR(st.st_mode) else 0o060
        if st.st_gid != gid or st.st_mode & want != want:
            bad.append(f"{path.relative_to(logs)} {stat.filemode(st.st_mode)} gid {st.st_gid}")
    return bad


def test_a_group_shares_a_setgid_logs_directory(shared: Path, mate: str) -> None:
    logs = shared / "logs"
    run(shared, "tasks/quadratic.py", "steps=2", "interval=0")
    run(
        shared,
        "-m",
        "runlab",
        "submit",
        "tasks/quadratic.py",
        "x=0,1",
        "steps=2",
        "interval=0",
        "--launcher",
        "local",
        "--wait",
    )
    made = {p.relative_to(logs).parts[0] for p in logs.iterdir()}
    assert {"1", "2", "3", ".snapshots", ".sweeps"} <= made, made
    assert any((logs / ".snapshots").rglob("quadratic.py"))
    assert not_shared(logs) == [], "\n".join(not_shared(logs))

    listed = run(shared, "-m", "runlab", "ls", user=mate).stdout
    assert [line.split()[0] for line in listed.splitlines()[1:4]] == ["1", "2", "3"], listed
    run(shared, "tasks/quadratic.py", "steps=2", "interval=0", user=mate)
    listed = run(shared, "-m", "runlab", "ls", "-w", "info.status == 'COMPLETE'").stdout
    assert "4 run(s)" in listed, listed
    assert (logs / "4").stat().st_uid == int(subprocess.check_output(["id", "-u", mate]))
    assert not_shared(logs) == [], "\n".join(not_shared(logs))
