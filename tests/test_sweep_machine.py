"""Sweep operations as a state machine: random sequences of what users (and crashes) do to
a sweep, with the same invariants checked after every step.

Hypothesis' rule-based state machine drives the real CLI (``python -m runlab ...``) on
a real git project holding the slow test task: it submits small sweeps, cancels and
retries them, kills workers and tasks with SIGKILL, damages or hand-edits a sweep
record (and restores it), moves the logs directory (later commands name the new place
with ``--logs``), and runs two drivers at once. After each step:

- no command printed a traceback or an internal error; a refusal is one line
  ``runlab <cmd>: error: ...``;
- ``runlab verify`` passes, or names only what ``--repair`` then fixes (and the damaged
  sweep records this machine made, invariant 6);
- every run's status is one runlab knows; no run is COMPLETE without all its rows;
- after ``verify --repair``, a run that says RUNNING has a live process;
- ``runlab status --all`` counts every run directory once, and a loader and the JSON
  Schema agree on whether a hand-edited record is damaged.

The default run is small (a few examples, a few steps); ``-m slow_sweeps`` searches more
broadly, and ``-m slurm`` runs a few derandomized examples on the real SLURM cluster.
See docs/invariants.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from conftest import SLURM_UP, TASKS, make_project, task_env
from runlab.record.process import alive
from runlab.status import ACTIVE, Status
from runlab.sweep.record import SCHEMA, SweepRecordError, load

ENDED = {s.value for s in Status if s not in ACTIVE and s is not Status.CORRUPT}
#: Fields of a sweep record a hand edit removes or sets to null (some may be, most not).
FIELDS = ["runs", "submissions", "launcher", "cancelled", "task", "host", "tune", "limits"]
QUIET_S = 40.0  # at most this long to wait for a sweep's processes to end


def _pids_alive(pids: set[int]) -> set[int]:
    return {p for p in pids if alive(p)}


class SweepMachine(RuleBasedStateMachine):
    """One git project, one logs directory (which may move), the CLI as the user types it."""

    LAUNCHER: ClassVar[str] = "local"

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="runlab-sweepsm-"))
        self.project = make_project(self.root, TASKS / "slow.py", TASKS / "slow.yaml")
        self.logs = self.project / "logs"
        self.damaged: dict[str, bytes] = {}  # sweep id -> its record before the damage
        self.moves = 0
        self.history: list[str] = []

    # ------------------------------------------------------------------ helpers
    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """``runlab ARGS --logs <the current logs>``, its output checked (no traceback, no
        internal error, a refusal in one line)."""
        cmd = [sys.executable, "-m", "runlab", *args, "--logs", str(self.logs)]
        self.history.append(" ".join(["runlab", *args]))
        proc = subprocess.run(
            cmd,
            cwd=self.project,
            env=task_env(RUNLAB_LOGS=str(self.logs)),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        check_output(args[0], proc)
        return proc

    def runs(self) -> dict[int, dict[str, Any]]:
        """Every run directory's info (``{}`` where it has none yet)."""
        out = {}
        for path in self.logs.iterdir() if self.logs.is_dir() else []:
            if path.name.isdigit():
                out[int(path.name)] = read_json(path / "metadata" / "info.json") or {}
        return out

    def records(self) -> dict[str, Path]:
        folder = self.logs / ".sweeps"
        return {p.stem: p for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}

    def processes(self) -> set[int]:
        """The pids this machine's sweeps started that still live: workers and tasks."""
        pids: set[int] = set()
        for sid, path in self.records().items():
            data = read_json(path) if sid not in self.damaged else json.loads(self.damaged[sid])
            for sub in (data or {}).get("submissions") or []:
                pids |= {w["pid"] for w in sub.get("workers") or [] if isinstance(w, dict)}
        for info in self.runs().values():
            for key in ("pid", "worker_pid"):
                if isinstance(info.get(key), int):
                    pids.add(info[key])
        return _pids_alive(pids)

    def quiesce(self, timeout: float = QUIET_S) -> bool:
        """Wait until the sweeps' processes have ended; whether they did."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.processes():
                return True
            time.sleep(0.3)
        return False

    # Every choice among things on disk is an index drawn beforehand (``pick``), so that
    # what Hypothesis draws never depends on the state (which timing may change).
    def sweep_target(self, pick: int) -> list[str]:
        choices = [[], *([sid] for sid in sorted(self.records()))]
        return choices[pick % len(choices)]

    def run_target(self, pick: int) -> list[str]:
        rids = sorted(self.runs())
        return [str(rids[pick % len(rids)])] if rids else []

    def submit_args(self, points: int, steps: int, interval: float, fail: bool) -> list[str]:
        return [
            "submit",
            "tasks/slow.py",
            f"steps={steps}",
            f"interval={interval}",
            "ckpt_every=1",
            f"fail_at={'-1,1' if fail else '-1'}",
            f"+k=range({points})",
            "--launcher",
            self.LAUNCHER,
            "launcher.max_parallel=2" if self.LAUNCHER == "local" else "launcher.timeout_min=10",
        ]

    # -------------------------------------------------------------------- rules
    @initialize(points=st.integers(1, 2), steps=st.integers(2, 5), fail=st.booleans())
    def first_sweep(self, points: int, steps: int, fail: bool) -> None:
        """Every example starts with a sweep whose runs take a few seconds."""
        self.submit(points, steps, 0.4, fail)

    @rule(
        points=st.integers(1, 2),
        steps=st.integers(2, 5),
        interval=st.sampled_from([0.0, 0.4]),
        fail=st.booleans(),
    )
    def submit(self, points: int, steps: int, interval: float, fail: bool) -> None:
        proc = self.cli(*self.submit_args(points, steps, interval, fail))
        assert proc.returncode == 0, proc.stderr

    @rule(pick=st.integers(0, 99), by_run=st.booleans())
    def cancel(self, pick: int, by_run: bool) -> None:
        targets = self.run_target(pick) if by_run else self.sweep_target(pick)
        proc = self.cli("cancel", *targets, "--json")
        if proc.returncode != 0:
            return  # one line (checked): no sweep, a damaged record, not a run of a sweep
        done = json.loads(proc.stdout)
        runs = self.runs()
        still = {r: runs[r].get("status") for r in done["runs"] if runs[r].get("status") in ACTIVE}
        assert not still, f"after `runlab cancel` these runs are still active: {still}"

    @rule(pick=st.integers(0, 99), by_run=st.booleans(), failed_only=st.booleans())
    def retry(self, pick: int, by_run: bool, failed_only: bool) -> None:
        targets = self.run_target(pick) if by_run else self.sweep_target(pick)
        status = ["--status", "FAILED"] if failed_only else []
        self.cli("retry", *targets, *status, "--json")

    @rule(pick=st.integers(0, 99), how=st.sampled_from(["task", "worker", "group"]))
    def kill9(self, pick: int, how: str) -> None:
        """SIGKILL the process of a running run: the task, its worker, or both."""
        deadline = time.time() + 8
        running: dict[int, dict] = {}
        while time.time() < deadline and not running:
            running = {
                r: i
                for r, i in self.runs().items()
                if i.get("status") == "RUNNING" and alive(i.get("pid"))
            }
            time.sleep(0.2)
        if not running:
            return
        info = running[sorted(running)[pick % len(running)]]
        worker = info.get("worker_pid") if self.LAUNCHER == "local" else None
        self.history.append(f"kill -9 ({how}) run {info.get('pid')}/{worker}")
        if self.LAUNCHER == "slurm" and how != "task":  # the scheduler's SIGKILL
            subprocess.run(["scancel", "-s", "KILL", str(info.get("job_id"))], capture_output=True)
            return
        with contextlib.suppress(ProcessLookupError, TypeError):
            if how == "task" or worker is None:
                os.kill(info["pid"], signal.SIGKILL)
            elif how == "worker":
                os.kill(worker, signal.SIGKILL)
            else:
                os.killpg(worker, signal.SIGKILL)

    @rule(
        pick=st.integers(0, 99),
        how=st.sampled_from(["truncate", "empty", "drop", "null", "unknown", "wrong type"]),
        field=st.sampled_from(FIELDS),
    )
    def damage_record(self, pick: int, how: str, field: str) -> None:
        """A hand edit of a sweep record; the schema says whether it is damage, and the
        loader must agree."""
        ids = [s for s in self.records() if s not in self.damaged]
        if not ids:
            return
        sid = ids[pick % len(ids)]
        path = self.records()[sid]
        before = path.read_bytes()
        self.history.append(f"edit {sid}: {how} {field}")
        path.write_bytes(edited(before, how, field))
        valid = schema_valid(path.read_bytes())
        try:
            load(self.logs, sid)
            loads = True
        except SweepRecordError:
            loads = False
        assert loads == valid, f"{how} {field}: the schema says valid={valid}, the loader {loads}"
        if not valid:
            self.damaged[sid] = before

    @precondition(lambda self: bool(self.damaged))
    @rule()
    def restore_record(self) -> None:
        sid = sorted(self.damaged)[0]
        self.history.append(f"restore {sid}")
        (self.logs / ".sweeps" / f"{sid}.json").write_bytes(self.damaged.pop(sid))

    @rule()
    def move_logs(self) -> None:
        """Rename the logs directory once its sweeps are quiet; later commands say --logs."""
        if not self.quiesce():
            return
        self.moves += 1
        new = self.root / f"moved-{self.moves}" / "logs"
        new.parent.mkdir()
        self.history.append(f"mv {self.logs} {new}")
        if self.logs.exists():
            os.rename(self.logs, new)
        self.logs = new
        for rid, info in self.runs().items():
            if info.get("sweep_id") in self.damaged:
                continue  # its record is damaged: `runlab logs` says so in one line
            if info.get("attempts") and (self.logs / str(rid) / "metrics").is_dir():
                out = self.cli("logs", str(rid))
                assert out.returncode == 0 and "start " in out.stdout, (rid, out.stderr)
                break

    @rule(pair=st.sampled_from(["retry+retry", "submit+retry", "cancel+retry", "submit+submit"]))
    def second_driver(self, pair: str) -> None:
        """Two commands at once, from two processes: neither loses the other's update, and
        no run is handed to the launcher twice."""
        before = {
            sid: len((read_json(p) or {}).get("submissions") or [])
            for sid, p in self.records().items()
        }
        argv = {
            "retry": ["retry", "--json"],
            "cancel": ["cancel", "--json"],
            "submit": self.submit_args(1, 2, 0.0, False),
        }
        procs = []
        for name in pair.split("+"):
            self.history.append(f"(at once) runlab {' '.join(argv[name])}")
            procs.append(
                (name, subprocess.Popen(
                    [sys.executable, "-m", "runlab", *argv[name], "--logs", str(self.logs)],
                    cwd=self.project,
                    env=task_env(RUNLAB_LOGS=str(self.logs)),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                ))
            )  # fmt: skip
        for name, proc in procs:
            out, err = proc.communicate(timeout=180)
            check_output(name, subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        for sid, path in self.records().items():
            if sid in self.damaged:
                continue
            subs = (read_json(path) or {}).get("submissions") or []
            new = [
                r for s in subs[before.get(sid, 0) :] if s.get("kind") == "retry" for r in s["runs"]
            ]
            assert len(new) == len(set(new)), f"sweep {sid}: runs retried twice at once: {new}"

    @rule()
    def status_all(self) -> None:
        """``runlab status --all`` counts each run directory once; after it, no run waits
        QUEUED for workers that are gone."""
        proc = self.cli("status", "--all", "--json")
        if not self.records():
            return
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        counted = 0
        for sweep in report["sweeps"]:
            sid = sweep["sweep_id"]
            if "damaged" in sweep:
                assert sid in self.damaged, sweep
                counted += len(json.loads(self.damaged[sid])["runs"])
                continue
            assert sum(sweep["counts"].values()) == sweep["runs"], sweep
            counted += sweep["runs"]
        assert counted == len(self.runs()), (counted, sorted(self.runs()))
        if self.LAUNCHER == "local":
            self.check_no_orphan_queued()

    def check_no_orphan_queued(self) -> None:
        runs = self.runs()
        for sid, path in self.records().items():
            data = read_json(path)
            if sid in self.damaged or not data:
                continue
            current: dict[int, list[int]] = {}
            for sub in data["submissions"]:
                for rid in sub["runs"] if sub["runs"] is not None else data["runs"]:
                    current[rid] = [w["pid"] for w in sub.get("workers") or []]
            for rid, workers in current.items():
                if runs.get(rid, {}).get("status") == "QUEUED":
                    assert _pids_alive(set(workers)), f"run {rid} QUEUED, its workers are gone"

    # --------------------------------------------------------------- invariants
    @invariant()
    def verify_passes_or_repairs(self) -> None:
        if not self.logs.exists():
            return
        expected = {f".sweeps/{sid}.json" for sid in self.damaged}
        first = json.loads(self.cli("verify", "--json").stdout)
        unexpected = [
            v for v in first["violations"] if not v["repairable"] and v["where"] not in expected
        ]
        assert not unexpected, unexpected
        if not first["ok"]:
            self.cli("verify", "--repair", "--json")
            again = json.loads(self.cli("verify", "--json").stdout)
            left = [v for v in again["violations"] if v["where"] not in expected]
            assert not left, f"verify --repair left: {left}"
        for rid, info in self.runs().items():
            if info.get("status") == "RUNNING" and info.get("host") == socket.gethostname():
                assert alive(info.get("pid")) or self.ended_meanwhile(rid), (
                    f"run {rid} says RUNNING after verify --repair; its pid {info.get('pid')} is gone"
                )

    def ended_meanwhile(self, rid: int) -> bool:
        time.sleep(0.5)
        return (self.runs().get(rid) or {}).get("status") != "RUNNING"

    @invariant()
    def statuses_known_and_complete_runs_whole(self) -> None:
        for rid, info in self.runs().items():
            if not info:
                continue  # being created by a submit right now: the allocator's
            status = Status.of(info.get("status"))
            assert status is not None and status is not Status.CORRUPT, (rid, info.get("status"))
            if status is Status.COMPLETE:
                config = read_json(self.logs / str(rid) / "metadata" / "config.json") or {}
                path = self.logs / str(rid) / "metrics" / "train.jsonl"
                steps = [json.loads(x)["step"] for x in path.read_text().splitlines()]
                assert steps == list(range(config["steps"])), (rid, steps, config)

    def teardown(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.LAUNCHER == "slurm":
            jobs = [str(i["job_id"]) for i in self.runs().values() if i.get("job_id")]
            arrays = {
                str(a["job_id"])
                for p in self.records().values()
                for s in (read_json(p) or {}).get("submissions") or []
                for a in s.get("arrays") or []
            }
            if jobs or arrays:
                subprocess.run(["scancel", *jobs, *arrays], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------- helpers
def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def check_output(command: str, proc: subprocess.CompletedProcess) -> None:
    """No traceback, no internal error; a failure is one line naming the command."""
    text = f"{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    if command == "verify" and proc.returncode == 1 and proc.stdout.strip():
        return  # violations found: the verdict is on stdout
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"runlab {command}: error: "), (
            proc.returncode,
            proc.stderr,
        )


def edited(raw: bytes, how: str, field: str) -> bytes:
    """The record's bytes after a hand edit."""
    if how == "empty":
        return b""
    if how == "truncate":
        return raw[: len(raw) // 2]
    data = json.loads(raw)
    if how == "drop":
        data.pop(field, None)
    elif how == "null":
        data[field] = None
    elif how == "unknown":
        data[f"my_{field}_note"] = {"by": "hand"}
    else:  # "wrong type"
        data[field] = "a string" if not isinstance(data.get(field), str) else 7
    return json.dumps(data, indent=1).encode()


def schema_valid(raw: bytes) -> bool:
    try:
        jsonschema.validate(json.loads(raw), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


# ------------------------------------------------------------------- the tests
_SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck), "print_blob": True}

TestSweepMachine = SweepMachine.TestCase
TestSweepMachine.settings = settings(max_examples=4, stateful_step_count=5, **_SETTINGS)


class BroadSweepMachine(SweepMachine):
    pass


TestSweepMachineBroadly = pytest.mark.slow_sweeps(BroadSweepMachine.TestCase)
TestSweepMachineBroadly.settings = settings(max_examples=20, stateful_step_count=10, **_SETTINGS)


class SlurmSweepMachine(SweepMachine):
    LAUNCHER = "slurm"


TestSlurmSweepMachine = pytest.mark.skipif(not SLURM_UP, reason="no SLURM cluster is running")(
    pytest.mark.slurm(SlurmSweepMachine.TestCase)
)
TestSlurmSweepMachine.settings = settings(
    max_examples=3, stateful_step_count=5, derandomize=True, **_SETTINGS
)


# ------------------------------------------------- what the machine found, one test each
@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")


def runlab(project: Path, logs: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "runlab", *args, "--logs", str(logs)],
        cwd=project,
        env=task_env(RUNLAB_LOGS=str(logs)),
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    check_output(args[0], proc)
    return proc


def wait_ended(logs: Path, rid: int, timeout: float = 90) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = read_json(logs / str(rid) / "metadata" / "info.json") or {}
        if info.get("status") in ENDED:
            return info
        time.sleep(0.3)
    raise AssertionError(f"run {rid} did not end: {info}")


def test_after_the_logs_directory_moved_logs_and_retry_work_from_the_new_place(
    project: Path, tmp_path: Path
) -> None:
    """Found by the machine (move_logs, then `runlab logs`): the record's paths named the
    old directory. On the old code `runlab logs 1 --logs NEW` said "run 1 is COMPLETE: its
    job has not written stdout yet (<old logs>/.sweeps/<id>/logs/1.out)", and a retry ran
    the task from the old snapshot path: the run ended FAILED (exit code 2)."""
    logs = project / "logs"
    args = ["tasks/slow.py", "steps=15", "interval=0.1", "ckpt_every=1", "+k=range(2)"]
    runlab(project, logs, "submit", *args, "--launcher", "local", "launcher.max_parallel=1")
    deadline = time.time() + 60
    while (read_json(logs / "1" / "metadata" / "info.json") or {}).get("status") != "RUNNING":
        assert time.time() < deadline
        time.sleep(0.2)
    assert runlab(project, logs, "cancel").returncode == 0
    assert wait_ended(logs, 1)["status"] == "INTERRUPTED"
    new = tmp_path / "elsewhere" / "logs"
    new.parent.mkdir()
    os.rename(logs, new)
    out = runlab(project, new, "logs", "1")
    assert out.returncode == 0 and "start 0" in out.stdout, out.stderr
    assert runlab(project, new, "retry").returncode == 0
    for rid in (1, 2):
        assert wait_ended(new, rid)["status"] == "COMPLETE", read_json(
            new / str(rid) / "metadata" / "info.json"
        )
    assert "step 14" in runlab(project, new, "logs", "2").stdout
    assert not logs.exists()  # nothing was written to the old place


def test_cancelling_a_run_a_worker_has_just_taken_stops_its_task(project: Path) -> None:
    """A race the machine's `cancel RUN` can hit: a worker has claimed the queued run and
    is starting its task. On the old code `runlab cancel 2` found it QUEUED, could not claim
    it, marked it INTERRUPTED anyway and returned; the task then ran on (here: the
    stand-in task was never stopped: ``AssertionError: (None, ... "counts": {"INTERRUPTED": 1}``)."""
    from runlab.record.files import now_iso
    from runlab.record.rundir import RunDir

    logs = project / "logs"
    args = ["tasks/slow.py", "steps=2000", "interval=0.05", "+k=range(2)"]
    runlab(project, logs, "submit", *args, "--launcher", "local", "launcher.max_parallel=1")
    try:
        deadline = time.time() + 60
        while (read_json(logs / "1" / "metadata" / "info.json") or {}).get("status") != "RUNNING":
            assert time.time() < deadline
            time.sleep(0.2)
        # Another worker has just claimed run 2; its task is about to start.
        sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
        worker = subprocess.Popen([*sleeper, "runlab.sweep.jobs"])  # a worker, to `ps`
        task = subprocess.Popen(sleeper)
        (logs / "2" / "metadata" / ".claimed").write_text(str(worker.pid))
        cancel = subprocess.Popen(
            [sys.executable, "-m", "runlab", "cancel", "2", "--json", "--logs", str(logs)],
            cwd=project,
            env=task_env(RUNLAB_LOGS=str(logs)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        RunDir(logs / "2").update_info(
            status="RUNNING", pid=task.pid, host=socket.gethostname(), attempt_start_time=now_iso()
        )
        out, err = cancel.communicate(timeout=60)
        stopped = task.poll()  # the cancel returns once it has stopped the task
        for proc in (task, worker):
            proc.kill()
            proc.wait()
        check_output(
            "cancel", subprocess.CompletedProcess(cancel.args, cancel.returncode, out, err)
        )
        assert stopped == -signal.SIGTERM, (stopped, out, err)
        info = read_json(logs / "2" / "metadata" / "info.json")
        assert info["status"] == "INTERRUPTED" and info["error"]["type"] == "Cancelled", info
    finally:
        runlab(project, logs, "cancel")


def test_moves_then_two_retries_at_once_then_a_move_and_logs_finds_the_output(
    project: Path, tmp_path: Path
) -> None:
    """The broad search's case, replayed: a one-run failing sweep, the logs directory moved
    (here twice), two `runlab retry` at once, one more move. The record of format 2 kept
    absolute paths and the place of the submit; a retry saved it with paths into the
    second place, which the next move left behind: on the old code `runlab logs 1` said
    "run 1 is FAILED: its job has not written stdout yet (<a gone logs>/.sweeps/...)"."""
    logs = project / "logs"
    args = ["tasks/slow.py", "steps=3", "interval=0", "ckpt_every=1", "fail_at=1", "+k=range(1)"]
    runlab(project, logs, "submit", *args, "--launcher", "local", "launcher.max_parallel=1")
    assert wait_ended(logs, 1)["status"] == "FAILED"
    for n in (1, 2):
        new = tmp_path / f"moved-{n}" / "logs"
        new.parent.mkdir()
        os.rename(logs, new)
        logs = new
        assert "start 0" in runlab(project, logs, "logs", "1").stdout
    retries = [
        subprocess.Popen(
            [sys.executable, "-m", "runlab", "retry", "--json", "--logs", str(logs)],
            cwd=project,
            env=task_env(RUNLAB_LOGS=str(logs)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in retries:
        out, err = proc.communicate(timeout=180)
        check_output("retry", subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    time.sleep(1)
    assert wait_ended(logs, 1)["status"] == "FAILED"
    new = tmp_path / "moved-3" / "logs"
    new.parent.mkdir()
    os.rename(logs, new)
    out = runlab(project, new, "logs", "1")
    assert out.returncode == 0, out.stderr
    # The retry's own output (the latest attempt, named on stderr), resumed from the
    # checkpoint of step 0; the file found in the moved logs directory.
    assert out.stdout.startswith("start 1"), out.stdout
    assert "attempt 2" in out.stderr and str(new) in out.stderr, out.stderr
    assert not (tmp_path / "moved-2").joinpath("logs").exists()  # nothing written there


def test_logs_after_a_retry_cancelled_while_queued_shows_the_attempt_that_ran(
    project: Path, tmp_path: Path
) -> None:
    """The broad search's case (seed 0), replayed: a one-run sweep whose run ended,
    the logs directory moved, `runlab retry` then `runlab cancel` at once, so the retry's
    job never starts. On the old code `runlab logs 1` said "run 1 ended INTERRUPTED and its
    job wrote no stdout": the retry's file, which nothing will write. The output is the
    last attempt that ran, and the header says why."""
    logs = project / "logs"
    args = ["tasks/slow.py", "steps=3", "interval=0", "fail_at=1", "+k=range(1)"]
    runlab(project, logs, "submit", *args, "--launcher", "local", "launcher.max_parallel=1")
    assert wait_ended(logs, 1)["status"] == "FAILED"
    new = tmp_path / "moved-1" / "logs"
    new.parent.mkdir()
    os.rename(logs, new)
    logs = new
    # The cancel follows the retry at once: its worker has rarely claimed the run by then.
    runlab(project, logs, "retry", "1", "--json")
    runlab(project, logs, "cancel", "--json")
    info = wait_ended(logs, 1)
    out = runlab(project, logs, "logs", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("start "), out.stdout
    if info.get("attempts") == 1:  # the cancel came first: attempt 2 never started
        assert "attempt 1 " in out.stderr and "before its job started" in out.stderr, out.stderr
    assert str(new) in out.stderr, out.stderr


def test_logs_of_an_ended_run_whose_job_wrote_no_stdout_says_it_ended(project: Path) -> None:
    """A run that has ended with no job output (here the job's file was removed) is not
    waiting for one: on the old code `runlab logs 1` said "run 1 is COMPLETE: its job has
    not written stdout yet (...); `runlab logs 1 -f` waits for it"."""
    logs = project / "logs"
    args = ["tasks/slow.py", "steps=2", "interval=0", "+k=range(1)"]
    runlab(project, logs, "submit", *args, "--launcher", "local", "launcher.max_parallel=1")
    assert wait_ended(logs, 1)["status"] == "COMPLETE"
    (out_file,) = logs.glob(".sweeps/*/logs/1.out")
    assert "step 1" in runlab(project, logs, "logs", "1").stdout
    out_file.unlink()
    proc = runlab(project, logs, "logs", "1")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"runlab logs: error: run 1 ended COMPLETE and its job wrote no stdout ({out_file})"
    )
