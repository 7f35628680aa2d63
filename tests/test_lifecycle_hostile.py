"""The run record under attack: hostile run ids, a second writer, early signals, full and
read-only disks, umasks, sweeps in a git tree, temporaries of killed writes.

Every test runs real task processes (and real signals, real tmpfs mounts).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TASKS, run_task, start_task, task_env
from runlab.record.rundir import is_run_id

SLOW = TASKS / "slow.py"
FINAL = {"COMPLETE", "FAILED", "INTERRUPTED", "PREEMPTED"}


def read_info(run: Path) -> dict:
    """Both twins of a run's info parse (strictly), and agree."""
    info_json = json.loads((run / "metadata" / "info.json").read_text())
    info_yaml = yaml.safe_load((run / "metadata" / "info.yaml").read_text())
    assert info_json == info_yaml
    return info_json


def runs_in(logs: Path) -> list[Path]:
    if not logs.exists():
        return []
    return sorted((p for p in logs.iterdir() if is_run_id(p.name)), key=lambda p: int(p.name))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("runlab: error:")]


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def wait_line(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"exited before printing {prefix!r}: {proc.stderr.read()}")


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ------------------------------------------------------------------ run ids


@pytest.mark.parametrize("value", ["../escape", "ABSOLUTE", "007", "1.5", "'²'", "'١٢'", "5", "-3"])
def test_run_id_override_must_name_an_existing_run(logs: Path, tmp_path: Path, value: str) -> None:
    run_task(SLOW, "steps=2", "interval=0")  # run 1 exists; 5 does not
    before = tree(tmp_path)
    if value == "ABSOLUTE":
        value = str(tmp_path / "escape-abs")
    proc = run_task(SLOW, "steps=2", "interval=0", f"runlab.run_id={value}", check=False)
    assert_one_line_error(proc, "runlab.run_id")
    assert proc.returncode == 2
    assert tree(tmp_path) == before  # nothing created, anywhere under the test's folder
    assert read_info(logs / "1")["attempts"] == 1


def test_run_id_error_shows_the_traceback_with_runlab_debug(logs: Path) -> None:
    proc = run_task(SLOW, "runlab.run_id=../x", check=False, RUNLAB_DEBUG="1")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "RunDirError" in proc.stderr


@pytest.mark.parametrize("name", ["escape", "007", "0"])
def test_run_dir_env_must_be_a_run_directory(tmp_path: Path, name: str) -> None:
    target = tmp_path / "logs" / name
    target.mkdir(parents=True)
    proc = run_task(SLOW, "steps=2", "interval=0", check=False, RUNLAB_RUN_DIR=str(target))
    assert_one_line_error(proc, "RUNLAB_RUN_DIR")
    assert list(target.iterdir()) == []


def test_folders_that_are_not_run_ids_do_not_stop_new_runs(logs: Path) -> None:
    for name in ("²", "007", "١٢", "0", "12abc"):
        (logs / name).mkdir(parents=True)
    run_task(SLOW, "steps=2", "interval=0")
    run_task(SLOW, "steps=2", "interval=0")
    assert [p.name for p in runs_in(logs)] == ["1", "2"]
    assert all(read_info(run)["status"] == "COMPLETE" for run in runs_in(logs))


# ---------------------------------------------------------------- one writer


def test_a_running_run_cannot_be_reopened_by_a_second_process(logs: Path) -> None:
    first = start_task(SLOW, "steps=300", "interval=0.01", "ckpt_every=1000")
    try:
        wait_line(first, "step 5")
        second = run_task(
            SLOW, "steps=300", "interval=0.01", "ckpt_every=1000", "runlab.run_id=1", check=False
        )
        line = assert_one_line_error(second, "run 1", f"pid {first.pid}", os.uname().nodename)
        assert second.returncode == 2
        assert "wait" in line  # and what to do
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    rows = [
        json.loads(x) for x in (logs / "1" / "metrics" / "train.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == list(range(len(rows)))  # no step written twice
    info = read_info(logs / "1")
    assert info["attempts"] == 1 and info["pid"] == first.pid and info["status"] in FINAL


def test_two_processes_reopening_one_run_at_once_one_wins(logs: Path) -> None:
    args = ["steps=150", "interval=0.02", "ckpt_every=10"]
    first = start_task(SLOW, *args)
    wait_line(first, "step 25")
    first.kill()  # gone without a word: the run says RUNNING, its lock died with it
    first.wait(timeout=10)
    procs = [start_task(SLOW, *args, "runlab.run_id=1") for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)]
    assert len(error_lines(loser[1])) == 1 and "being written by pid" in loser[1], loser
    rows = [
        json.loads(x) for x in (logs / "1" / "metrics" / "train.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == list(range(150))  # each step once
    info = read_info(logs / "1")
    assert info["attempts"] == 2 and info["status"] == "COMPLETE"


def fake_running(run: Path, **fields) -> None:
    """Make a run's record say RUNNING, as a writer elsewhere would leave it."""
    from runlab.record.files import write_record

    info = read_info(run)
    info.update(status="RUNNING", **fields)
    write_record(run / "metadata" / "info.yaml", info)


def iso_ago(seconds: float) -> str:
    from datetime import datetime, timedelta

    return (datetime.now().astimezone() - timedelta(seconds=seconds)).isoformat()


def test_a_run_written_from_another_host_is_refused_while_its_heartbeat_is_fresh(
    logs: Path,
) -> None:
    run_task(SLOW, "steps=3", "interval=0")
    fake_running(logs / "1", host="node-17", pid=4242, heartbeat=iso_ago(2))
    proc = run_task(SLOW, "steps=3", "interval=0", "runlab.run_id=1", check=False)
    assert_one_line_error(proc, "pid 4242 on node-17")
    assert read_info(logs / "1")["host"] == "node-17"  # untouched
    fake_running(logs / "1", host="node-17", pid=4242, heartbeat=iso_ago(600))  # long gone
    run_task(SLOW, "steps=3", "interval=0", "runlab.run_id=1")
    assert read_info(logs / "1")["status"] == "COMPLETE"


def test_a_dead_writer_whose_pid_was_reused_does_not_block_the_run(logs: Path) -> None:
    run_task(SLOW, "steps=3", "interval=0")
    # killed with -9 a moment ago; its pid now names another live process (here: pid 1)
    fake_running(logs / "1", host=os.uname().nodename, pid=1, heartbeat=iso_ago(1))
    run_task(SLOW, "steps=3", "interval=0", "runlab.run_id=1")
    info = read_info(logs / "1")
    assert info["status"] == "COMPLETE" and info["previous_status"] == "RUNNING"


# ------------------------------------------------------------- early signals

SLOW_START = """\
import os, sys, time
import runlab
from runlab.record import environment

_capture = environment.capture


def capture(*args, **kwargs):
    print("capturing", flush=True)
    time.sleep(float(os.environ.get("CAPTURE_SLEEP", "1.0")))
    return _capture(*args, **kwargs)


environment.capture = capture  # stands for a slow environment capture (a big tree, a slow disk)


@runlab.launch(config_path=".", config_name="slow")
def main(ctx):
    print("body", flush=True)
    for step in range(ctx.config.steps):
        ctx.logger.log_metrics({"value": step}, step=step)
        time.sleep(ctx.config.interval)


if __name__ == "__main__":
    main()
"""


@pytest.fixture
def slow_start(tmp_path: Path) -> Path:
    script = tmp_path / "task" / "slow_start.py"
    script.parent.mkdir()
    script.write_text(SLOW_START)
    shutil.copy(TASKS / "slow.yaml", script.parent / "slow.yaml")
    return script


def check_every_run_has_a_final_record(logs: Path) -> list[str]:
    statuses = []
    for run in runs_in(logs):
        info = read_info(run)
        assert info["status"] in FINAL, (run, info)
        statuses.append(info["status"])
    for entry in logs.iterdir() if logs.exists() else []:
        assert is_run_id(entry.name) or entry.name.startswith(".new-run-"), entry
    return statuses


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_at_any_moment_leaves_a_final_record(
    tmp_path: Path, slow_start: Path, signum: int
) -> None:
    # Fixed delays from the process start (on a busy machine the early ones fall in the
    # imports, the later ones in config composition, run creation or capture), and last
    # one at a known moment, in the environment capture, so that a run surely exists.
    found = []
    for i, delay in enumerate((0.05, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0, "capturing")):
        logs = tmp_path / f"logs-{i}"
        proc = start_task(slow_start, "steps=100000", "interval=0.01", RUNLAB_LOGS=str(logs))
        if isinstance(delay, str):
            wait_line(proc, delay)
        else:
            time.sleep(delay)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0, (delay, out, err)
        found += check_every_run_has_a_final_record(logs)
    assert found and set(found) == {"INTERRUPTED"}


# The task of the scripts below: it prints "body" when its run's body starts.
TASK_BODY = """
@runlab.launch(config_path=".", config_name="slow")
def main(ctx):
    print("body", flush=True)


if __name__ == "__main__":
    main()
"""

# Hydra reads its own configs in `try: f = res.open(...) ... finally: f.close()`: a stop
# raised inside that open() becomes an UnboundLocalError, which `Hydra.get_mode` drops
# (`except Exception: return None`). The task lands the stop there, at the first read.
STOP_IN_HYDRA = """\
import os, signal, sys
import runlab
from hydra._internal import config_repository

SIGNUM = int(os.environ["STOP_SIGNUM"])
_load = config_repository.ConfigRepository.load_config
fired = []


def stop_in_open(read):  # Hydra's reader, with the stop sent from inside its open()
    def _read_config(self, res):
        if fired:
            return read(self, res)
        fired.append(1)
        opener = type(res).open

        def open_(*args, **kwargs):
            os.kill(os.getpid(), SIGNUM)
            return opener(*args, **kwargs)

        type(res).open = open_
        try:
            return read(self, res)
        finally:
            type(res).open = opener

    return _read_config


def load_config(self, config_path):
    # Hydra loads its config sources again when it scans its plugins: patched here.
    name = "hydra._internal.core_plugins.importlib_resources_config_source"
    source = sys.modules[name].ImportlibResourcesConfigSource
    if not hasattr(source, "_patched"):
        source._patched = True
        source._read_config = stop_in_open(source._read_config)
    return _load(self, config_path)


config_repository.ConfigRepository.load_config = load_config


@runlab.launch(config_path=".", config_name="slow")
def main(ctx):
    print("body", flush=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        print("stop sent" if fired else "no stop sent", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("sweep", [False, True])
def test_a_stop_that_lands_in_hydras_own_code_still_stops_the_task(
    tmp_path: Path, slow_start: Path, signum: int, sweep: bool
) -> None:
    script = slow_start.with_name("stop_in_hydra.py")
    script.write_text(STOP_IN_HYDRA)
    logs = tmp_path / "logs"
    args = ["steps=1,2"] if sweep else []
    proc = run_task(
        script,
        *args,
        "-m" if sweep else "steps=1",
        check=False,
        RUNLAB_LOGS=str(logs),
        STOP_SIGNUM=str(signum),
    )
    assert proc.returncode == 128 + signum, proc.stderr
    assert "body" not in proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("[runlab] interrupted"), proc.stderr
    assert runs_in(logs) == []  # stopped before any run was made
    assert "stop sent" in proc.stdout.splitlines(), proc.stdout  # sent where meant


STOP_IN_CLEANUP = (
    """\
import os, shutil, signal, sys
import runlab

SIGNUM = int(os.environ["STOP_SIGNUM"])
_rmtree = shutil.rmtree


def rmtree(path, *args, **kwargs):
    if sys._getframe(1).f_code.co_filename.endswith("launch.py"):  # the sweep folder's
        print("stop sent", flush=True)
        os.kill(os.getpid(), SIGNUM)
    return _rmtree(path, *args, **kwargs)


shutil.rmtree = rmtree

"""
    + TASK_BODY
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_a_sweep_cleans_up_ends_it_with_the_stops_code(
    tmp_path: Path, slow_start: Path, signum: int
) -> None:
    script = slow_start.with_name("stop_in_cleanup.py")
    script.write_text(STOP_IN_CLEANUP)
    logs = tmp_path / "logs"
    proc = run_task(script, "-m", "steps=1,2", check=False, RUNLAB_LOGS=str(logs),
                    STOP_SIGNUM=str(signum))  # fmt: skip
    assert "stop sent" in proc.stdout.splitlines(), proc.stdout
    assert proc.returncode == 128 + signum, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("[runlab] interrupted"), proc.stderr
    assert [read_info(run)["status"] for run in runs_in(logs)] == ["COMPLETE", "COMPLETE"]


HANG_IN_HYDRA = (
    """\
import time
import runlab
from hydra._internal import config_repository

_load = config_repository.ConfigRepository.load_config


def load_config(self, config_path):
    print("composing", flush=True)
    time.sleep(60)  # a config source on a file system that hangs
    return _load(self, config_path)


config_repository.ConfigRepository.load_config = load_config

"""
    + TASK_BODY
)


def test_a_second_stop_ends_a_task_whose_hydra_hangs(slow_start: Path, tmp_path: Path) -> None:
    script = slow_start.with_name("hang_in_hydra.py")
    script.write_text(HANG_IN_HYDRA)
    proc = start_task(script, RUNLAB_LOGS=str(tmp_path / "logs"))
    wait_line(proc, "composing")
    proc.send_signal(signal.SIGTERM)  # waits for runlab's code, which Hydra does not reach
    time.sleep(2.5)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - began < 20, err
    assert proc.returncode == 143, err
    assert "body" not in out and runs_in(tmp_path / "logs") == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_during_environment_capture_marks_the_run_interrupted(
    logs: Path, slow_start: Path, signum: int
) -> None:
    proc = start_task(slow_start, "steps=100000", "interval=0.01", CAPTURE_SLEEP="5")
    wait_line(proc, "capturing")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "body" not in out and "Traceback" not in err, err
    (run,) = runs_in(logs)
    info = read_info(run)
    assert info["status"] == "INTERRUPTED" and info["end_time"] >= info["start_time"]


def test_kill_9_at_any_moment_leaves_no_run_or_a_readable_one(
    tmp_path: Path, slow_start: Path
) -> None:
    found = 0
    for i, delay in enumerate((0.05, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0, "capturing")):
        logs = tmp_path / f"logs-{i}"
        proc = start_task(slow_start, "steps=100000", "interval=0.01", RUNLAB_LOGS=str(logs))
        if isinstance(delay, str):
            wait_line(proc, delay)
        else:
            time.sleep(delay)
        proc.kill()
        proc.communicate(timeout=60)
        for run in runs_in(logs):
            assert read_info(run)["status"] == "RUNNING"  # the heartbeat tells it is gone
            found += 1
    assert found


# --------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


FILL = """\
import time
import runlab


@runlab.launch(config_path=".", config_name="slow")
def main(ctx):
    for step in range(20000):  # 20 MB of rows for a 2 MiB disk
        ctx.logger.log_metrics({"pad": "x" * 1000}, step=step)
        if step % 100 == 0:
            time.sleep(0.02)
    print("logged everything", flush=True)


if __name__ == "__main__":
    main()
"""


def test_a_full_disk_ends_the_run_failed_with_the_error_recorded(
    tmp_path: Path, small_disk: Path
) -> None:
    script = tmp_path / "fill.py"
    script.write_text(FILL)
    shutil.copy(TASKS / "slow.yaml", tmp_path / "slow.yaml")
    logs = small_disk / "logs"
    proc = run_task(script, check=False, RUNLAB_LOGS=str(logs))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "No space left on device" in lines[0], proc.stderr
    (run,) = runs_in(logs)
    info = read_info(run)
    assert info["status"] == "FAILED"
    assert "No space left on device" in info["error"]["message"]
    assert not (run / "metadata" / ".reserve").exists()


def test_the_reserve_is_held_while_running_and_gone_after(logs: Path) -> None:
    proc = start_task(SLOW, "steps=100000", "interval=0.01")
    wait_line(proc, "step 3")
    (run,) = runs_in(logs)
    assert (run / "metadata" / ".reserve").stat().st_blocks * 512 >= 256 * 1024  # not sparse
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert not (run / "metadata" / ".reserve").exists()


# ----------------------------------------------------------------- file modes


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_every_file_of_a_run_gets_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(SLOW), "steps=12", "interval=0", "ckpt_every=5"],
        cwd=ROOT,
        env=task_env(RUNLAB_LOGS=str(logs)),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = runs_in(logs)
    files = [p for p in run.rglob("*") if p.is_file()]
    modes = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in files}
    assert "metadata/info.yaml" in modes and "metrics/train.jsonl" in modes
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
    dirs = {oct(p.stat().st_mode & 0o777) for p in [run, *run.rglob("*")] if p.is_dir()}
    assert dirs == {oct(0o777 & ~umask)}


# ------------------------------------------------------------ one-line errors


def test_resuming_with_another_config_is_one_line(logs: Path) -> None:
    run_task(SLOW, "steps=5", "interval=0")
    proc = run_task(SLOW, "steps=9", "interval=0", "runlab.run_id=1", check=False)
    line = assert_one_line_error(proc, "different config", "runlab.run_id")
    assert proc.returncode == 2 and str(logs / "1") in line
    debug = run_task(
        SLOW, "steps=9", "interval=0", "runlab.run_id=1", check=False, RUNLAB_DEBUG="1"
    )
    assert "ConfigMismatchError" in debug.stderr and "Traceback" in debug.stderr
    assert read_info(logs / "1")["status"] == "COMPLETE"


def test_logs_directory_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    proc = run_task(SLOW, check=False, RUNLAB_LOGS=str(tmp_path / "file" / "logs"))
    assert_one_line_error(proc, str(tmp_path / "file"), "writable logs directory")
    assert proc.returncode == 2


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs holding one finished run, then remounted read-only (root is refused too)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        run_task(SLOW, "steps=3", "interval=0", RUNLAB_LOGS=str(mnt / "logs"))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_read_only_logs_directory_is_one_line(read_only_disk: Path) -> None:
    logs = read_only_disk / "logs"
    before = {p: p.read_bytes() for p in logs.rglob("*") if p.is_file()}
    proc = run_task(SLOW, "steps=3", "interval=0", check=False, RUNLAB_LOGS=str(logs))
    assert_one_line_error(proc, "Read-only file system", str(logs))
    assert proc.returncode == 2
    reopen = run_task(
        SLOW, "steps=3", "interval=0", "runlab.run_id=1", check=False, RUNLAB_LOGS=str(logs)
    )
    assert_one_line_error(reopen, "Read-only file system", str(logs / "1"))
    assert {p: p.read_bytes() for p in logs.rglob("*") if p.is_file()} == before


def test_non_writable_logs_directory_is_one_line(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o555)
    # chmod does not stop root: as root, run the task without the capabilities that
    # let root write anywhere (uid stays 0, so it still reads the interpreter in /root).
    prefix = []
    if os.geteuid() == 0:
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, str(SLOW), "steps=2", "interval=0"],
            cwd=ROOT,
            env=task_env(RUNLAB_LOGS=str(logs)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert_one_line_error(proc, "Permission denied", str(logs))
        assert proc.returncode == 2
        assert list(logs.iterdir()) == []
    finally:
        logs.chmod(0o755)


# --------------------------------------------------------- a clean work tree


def test_a_sweep_leaves_nothing_in_the_work_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(SLOW, repo / "task.py")
    shutil.copy(TASKS / "slow.yaml", repo / "slow.yaml")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "task"], cwd=repo, check=True)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.run(
        [sys.executable, "task.py", "-m", "steps=1,2", "interval=0"],
        cwd=repo,
        env=task_env(RUNLAB_LOGS=str(tmp_path / "logs"), TMPDIR=str(tmpdir)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(runs_in(tmp_path / "logs")) == 2
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True, text=True
    )
    assert status.stdout == "", status.stdout
    assert list(tmpdir.iterdir()) == []  # the sweep's temporary folder is gone too


def test_a_killed_run_leaves_nothing_in_the_temporary_directory(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = start_task(SLOW, "steps=100000", RUNLAB_LOGS=str(tmp_path / "logs"), TMPDIR=str(tmpdir))
    wait_line(proc, "step 3")
    proc.kill()
    proc.wait(timeout=30)
    assert list(tmpdir.iterdir()) == []


# ------------------------------------------------- temporaries of killed writes


def test_temporaries_of_killed_writes_are_removed_at_the_next_start(logs: Path) -> None:
    run_task(SLOW, "steps=10", "interval=0", "ckpt_every=5")
    run = logs / "1"
    litter = [
        run / "metadata" / ".info.yaml.k2j3h4.tmp",
        run / "metadata" / ".info.json.a8s7d6.tmp",
        run / "metadata" / ".env.yaml.zz.tmp",
        run / "checkpoints" / ".last.pt.tmp",
    ]
    for path in litter:
        path.write_bytes(b"half")
    keep = run / "artifacts" / "notes.tmp"  # a task's own file, not a temporary of ours
    keep.write_text("mine")
    run_task(SLOW, "steps=10", "interval=0", "ckpt_every=5", "runlab.run_id=1")
    assert [p for p in litter if p.exists()] == []
    assert keep.read_text() == "mine"
    assert read_info(run)["status"] == "COMPLETE"


# --------------------------------------------------------------- runlab.launch twice

TWO_TASKS = """\
import sys

import runlab.record.launch  # the module that defines it: runlab.launch stays the function


@runlab.launch(config_path=".", config_name="slow")
def first(ctx):
    print("first", flush=True)


@runlab.launch(config_path=".", config_name="slow")
def second(ctx):
    print("second", ctx.run_id, flush=True)


if __name__ == "__main__":
    second()
"""


def test_runlab_launch_can_decorate_two_tasks_in_one_file(logs: Path, tmp_path: Path) -> None:
    script = tmp_path / "two.py"
    script.write_text(TWO_TASKS)
    shutil.copy(TASKS / "slow.yaml", tmp_path / "slow.yaml")
    proc = run_task(script)
    assert "second 1" in proc.stdout
    assert read_info(logs / "1")["status"] == "COMPLETE"


def test_show_refuses_an_id_that_only_looks_like_a_number(logs: Path) -> None:
    run_task(SLOW, "steps=2", "interval=0")
    (logs / "²").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "runlab", "show", str(logs), "²"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "'²'" in proc.stderr


# ------------------------------------------- the first checkpoint, reopening, run ids

FIRST_CHECKPOINT = """\
import time

import runlab


@runlab.launch(config_path=".", config_name="slow")
def main(ctx):
    print("checkpointing", flush=True)
    ctx.logger.log_checkpoint({"step": 0})  # the first checkpoint imports torch (seconds)
    print("saved", flush=True)
    for step in range(ctx.config.steps):
        ctx.logger.log_metrics({"value": step}, step=step)
        time.sleep(ctx.config.interval)


if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_while_torch_is_imported_stops_the_run(tmp_path: Path, signum: int) -> None:
    """A signal's exception raised in the middle of `import torch` was swallowed there:
    the run went on RUNNING and ignored every later signal (SIGINT: a TypeError)."""
    script = tmp_path / "first_checkpoint.py"
    script.write_text(FIRST_CHECKPOINT)
    shutil.copy(TASKS / "slow.yaml", tmp_path / "slow.yaml")
    for i, delay in enumerate((0.05, 0.3, 0.6)):
        logs = tmp_path / f"logs-{i}"
        proc = start_task(script, "steps=100000", "interval=0.01", RUNLAB_LOGS=str(logs))
        wait_line(proc, "checkpointing")
        time.sleep(delay)
        proc.send_signal(signum)
        try:
            err = proc.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            err = proc.communicate()[1]
            raise AssertionError(
                f"still running {delay} s into the import: {err[-2000:]}"
            ) from None
        assert proc.returncode == 128 + signum, err
        assert "Traceback" not in err, err
        (run,) = runs_in(logs)
        assert read_info(run)["status"] == "INTERRUPTED"


def test_a_reopened_run_that_starts_over_repeats_no_step(logs: Path) -> None:
    """Without a checkpoint to resume from, a new attempt logs from step 0 again: the
    previous attempt's rows are set aside (kept), not followed by a second copy."""
    proc = start_task(SLOW, "steps=300", "interval=0.01", "ckpt_every=100000")
    wait_line(proc, "step 20")
    time.sleep(1.5)  # the rows are flushed once a second
    proc.kill()
    proc.communicate()
    rows_before = (logs / "1" / "metrics" / "train.jsonl").read_bytes()
    run_task(SLOW, "steps=300", "interval=0.01", "ckpt_every=100000", "runlab.run_id=1")
    lines = (logs / "1" / "metrics" / "train.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == list(range(300))
    assert (logs / "1" / "metrics" / ".previous" / "1" / "train.jsonl").read_bytes() == rows_before
    info = read_info(logs / "1")
    assert info["status"] == "COMPLETE" and info["attempts"] == 2

    import runlab

    metrics = runlab.Reader(logs, write_index=False).metrics("train").collect()
    assert metrics.height == 300 and metrics["step"].n_unique() == 300


def test_a_refused_reopen_changes_nothing_in_the_run(logs: Path) -> None:
    run_task(SLOW, "steps=3", "interval=0")
    planted = logs / "1" / "metadata" / ".info.yaml.abc.tmp"
    planted.write_text("left by a killed write")
    lock = (logs / "1" / "metadata" / ".lock").read_bytes()
    proc = run_task(SLOW, "steps=9", "interval=0", "runlab.run_id=1", check=False)
    assert_one_line_error(proc, "different config")
    assert planted.exists() and (logs / "1" / "metadata" / ".lock").read_bytes() == lock


def test_a_run_folder_with_the_largest_id_is_one_line_not_unreadable_runs(logs: Path) -> None:
    (logs / "999999999999999999").mkdir(parents=True)
    proc = run_task(SLOW, "steps=2", "interval=0", check=False)
    assert_one_line_error(proc, "999999999999999999", "rename or move")
    assert sorted(p.name for p in logs.iterdir()) == ["999999999999999999"]


@pytest.mark.parametrize("flags", [["-m"], ["--cfg", "job"]])
def test_hydra_flags_after_the_overrides_still_parse(logs: Path, flags: list[str]) -> None:
    proc = run_task(SLOW, "steps=2", "interval=0", *flags)
    assert "unrecognized arguments" not in proc.stderr
    if flags == ["-m"]:
        assert read_info(logs / "1")["status"] == "COMPLETE"
    else:
        assert "steps: 2" in proc.stdout and not logs.exists()


def test_an_override_without_a_key_is_one_line(logs: Path) -> None:
    proc = run_task(SLOW, "=3", check=False)
    assert_one_line_error(proc, "'=3'", "KEY=VALUE")
    assert proc.returncode == 2


def test_a_run_folder_that_is_a_link_out_of_the_logs_is_not_reopened(
    logs: Path, tmp_path: Path
) -> None:
    run_task(SLOW, "steps=2", "interval=0")
    outside = tmp_path / "outside"
    shutil.copytree(logs / "1", outside)
    (logs / "2").symlink_to(outside)
    before = tree(outside)
    proc = run_task(SLOW, "steps=2", "interval=0", "runlab.run_id=2", check=False)
    assert_one_line_error(proc, "symbolic link")
    assert tree(outside) == before


def test_a_config_file_that_is_not_yaml_is_one_line(logs: Path, tmp_path: Path) -> None:
    shutil.copy(SLOW, tmp_path / "slow.py")
    (tmp_path / "slow.yaml").write_text("steps: [1\ninterval: 0\n")
    proc = run_task(tmp_path / "slow.py", check=False)
    line = assert_one_line_error(proc, "slow.yaml:", "not valid YAML")
    assert proc.returncode == 2 and "fix the config file" in line
    assert not logs.exists()


def test_the_yaml_check_reads_the_config_folder_not_the_runs_under_it(
    logs: Path, tmp_path: Path
) -> None:
    # A task whose config folder is the project root, with logs/ inside it: the check
    # of the config files parsed every run's YAML records at each start (slower with
    # every run), and a damaged record of one run stopped every new run.
    shutil.copy(SLOW, tmp_path / "slow.py")
    shutil.copy(TASKS / "slow.yaml", tmp_path / "slow.yaml")
    run_task(tmp_path / "slow.py", "steps=1", "interval=0")
    (logs / "1" / "metadata" / "info.yaml").write_text("status: [COMPLETE\n")  # damaged
    hidden = tmp_path / ".venv" / "lib"
    hidden.mkdir(parents=True)
    (hidden / "broken.yaml").write_text("a: [\n")  # a package's file, not a config
    run_task(tmp_path / "slow.py", "steps=1", "interval=0")
    assert read_info(logs / "2")["status"] == "COMPLETE"
    (tmp_path / "group").mkdir()
    (tmp_path / "group" / "bad.yaml").write_text("a: [\n")  # a config group's file
    proc = run_task(tmp_path / "slow.py", check=False)
    assert_one_line_error(proc, "bad.yaml:", "not valid YAML")


@pytest.mark.parametrize(
    ("text", "starts"),
    [
        ("steps: 1\ninterval: 0\n\ufeffnote: x\n", True),  # a BOM inside: OmegaConf reads it
        ("steps: 1\ninterval: 0\nwhen: 2001-13-45\n", True),  # not a date: a string
        ("steps:\t1\ninterval: 0\n", False),  # a tab: Hydra refuses it
    ],
)
def test_the_yaml_check_agrees_with_hydra(
    logs: Path, tmp_path: Path, text: str, starts: bool
) -> None:
    shutil.copy(SLOW, tmp_path / "slow.py")
    (tmp_path / "slow.yaml").write_text(
        (TASKS / "slow.yaml").read_text().replace("steps: 50\ninterval: 0.01\n", text)
    )
    proc = run_task(tmp_path / "slow.py", check=False)
    if starts:
        assert proc.returncode == 0, proc.stderr
    else:
        assert_one_line_error(proc, "slow.yaml:", "not valid YAML")


def test_the_yaml_check_finds_a_config_group_beside_a_big_folder(
    logs: Path, tmp_path: Path
) -> None:
    shutil.copy(SLOW, tmp_path / "slow.py")
    shutil.copy(TASKS / "slow.yaml", tmp_path / "slow.yaml")
    for i in range(3000):  # a data folder, sorted before the config group
        (tmp_path / "aaa" / str(i)).mkdir(parents=True)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "bad.yaml").write_text("a: [\n")
    proc = run_task(tmp_path / "slow.py", check=False)
    assert_one_line_error(proc, "bad.yaml:", "not valid YAML")


def test_sys_exit_while_the_run_ends_still_writes_its_final_status(tmp_path: Path) -> None:
    """``sys.exit(3)`` raised while the session closes the logger (found by the fault
    matrix, cell main-exit-close): the run ends FAILED and the exit goes on; it stayed
    RUNNING, with no process left to end it."""
    from runlab.record.lifecycle import RunSession

    session = RunSession(None, {"a": 1}, logs=tmp_path / "logs")
    with pytest.raises(SystemExit) as raised, session as s:
        assert s.logger is not None
        s.logger.log_metrics({"x": 1})
        close = s.logger.close

        def exit_while_closing() -> None:
            close()
            sys.exit(3)

        s.logger.close = exit_while_closing  # type: ignore[method-assign]
    assert raised.value.code == 3
    info = read_info(tmp_path / "logs" / "1")
    assert info["status"] == "FAILED" and info["error"]["type"] == "SystemExit", info
    assert info.get("end_time")


def test_a_sweep_under_a_run_dir_env_is_refused(tmp_path: Path) -> None:
    """RUNLAB_RUN_DIR names one run; a Hydra sweep (-m) of two jobs under it wrote the
    first job into it and made a new run for the second, unasked (issue 19, item 3b).
    Refused before anything runs: one line, exit 2, the run untouched."""
    from runlab.record.rundir import RunDir, allocate

    logs = tmp_path / "logs"
    made = RunDir(allocate(logs)[0]).create()
    made.update_info(run_id=made.run_id, status="QUEUED")
    before = tree(logs)
    proc = run_task(
        SLOW,
        "-m",
        "steps=2,3",
        "interval=0",
        check=False,
        RUNLAB_RUN_DIR=str(made.path),
        RUNLAB_LOGS=str(logs),
    )
    assert proc.returncode == 2
    assert_one_line_error(proc, "RUNLAB_RUN_DIR", "-m")
    assert tree(logs) == before
    assert read_info(made.path)["status"] == "QUEUED"


_CHATTY = """
import time

import runlab


@runlab.launch()
def main(ctx):
    for step in range(2000):
        print(f"step {step}", flush=True)
        ctx.logger.log_metrics({"step": step}, step=step)
        time.sleep(0.01)


if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("streams", ["stdout", "stdout and stderr"])
def test_a_task_piped_to_head_ends_interrupted_not_failed(
    logs: Path, tmp_path: Path, streams: str
) -> None:
    """`python task.py | head -1`: head exits after one line; the task's next print finds
    its output closed. The run ends as a SIGPIPE would end it: INTERRUPTED, exit 141, with
    no traceback, neither in the record nor on stderr."""
    task = tmp_path / "chatty.py"
    task.write_text(_CHATTY)
    both = streams == "stdout and stderr"
    proc = subprocess.Popen(
        [sys.executable, str(task)],
        cwd=tmp_path,
        env=task_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if both else subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert "step 0" in "".join(proc.stdout.readline() for _ in range(3 if both else 1))
    proc.stdout.close()  # head -1 exits
    err = ""
    if proc.stderr is not None:
        err = proc.stderr.read()
        proc.stderr.close()
    assert proc.wait(timeout=60) == 128 + signal.SIGPIPE, err
    if not both:
        assert "interrupted: its output was closed" in err
        assert "Traceback" not in err and "Exception ignored" not in err, err
    (run,) = runs_in(logs)
    info = read_info(run)
    assert info["status"] == "INTERRUPTED"
    assert "output was closed" in info["error"]["message"]
    assert not (run / "metadata" / "traceback.txt").exists()
