"""`runlab verify`: one planted violation of each invariant is named, repairs are safe.

Real runs are recorded once (the quadratic task, in a child process) and copied
for each test; each test breaks the copy the way a crash, a copy, a hand edit or
a stray process would, and checks what `runlab verify` says and does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SLURM_UP, TASKS, make_project, run_task, runlab_cli
from runlab.logs import Logs
from runlab.record import secrets
from runlab.results.verify import INVARIANTS, verify


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logs = tmp_path_factory.mktemp("recorded") / "logs"
    for x in ("0", "1"):
        run_task(TASKS / "quadratic.py", f"x={x}", "interval=0", RUNLAB_LOGS=str(logs))
    return logs


@pytest.fixture
def project(tmp_path: Path, recorded: Path) -> Path:
    """A project folder whose logs/ holds two COMPLETE runs."""
    shutil.copytree(recorded, tmp_path / "logs", symlinks=True)
    return tmp_path


def _info(project: Path, rid: int) -> Path:
    return project / "logs" / str(rid) / "metadata" / "info.json"


def _edit_info(project: Path, rid: int, **fields: object) -> None:
    path = _info(project, rid)
    info = json.loads(path.read_text())
    info.update(fields)
    path.write_text(json.dumps(info))


def _verify(project: Path, *args: str) -> tuple[int, str]:
    proc = runlab_cli(project, "verify", "--logs", str(project / "logs"), *args, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout


def _named(out: str, invariant: int, where: str) -> bool:
    return any(line.startswith(f"{where}: [{invariant}]") for line in out.splitlines())


def test_a_healthy_record_passes(project: Path) -> None:
    code, out = _verify(project, "--deep")
    assert code == 0, out
    assert "2 runs checked" in out and "every invariant holds" in out


def test_1_unreadable_or_unknown_status(project: Path) -> None:
    (project / "logs/1/metadata/info.json").unlink()
    (project / "logs/1/metadata/info.yaml").write_text("status: [unclosed\n")
    _edit_info(project, 2, status="DONE")
    code, out = _verify(project)
    assert code == 1
    assert _named(out, 1, "run 1") and _named(out, 1, "run 2")
    assert "'DONE'" in out


def test_2_written_after_the_final_status(project: Path) -> None:
    metrics = project / "logs/1/metrics/test.jsonl"
    later = time.time() + 100
    os.utime(metrics, (later, later))
    code, out = _verify(project)
    assert code == 1 and _named(out, 2, "run 1"), out
    assert "after the run ended COMPLETE" in out


def test_3_running_without_a_live_writer_is_repaired_to_lost(project: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    _edit_info(project, 1, status="RUNNING", pid=dead.pid, host=host)
    code, out = _verify(project)
    assert code == 1 and _named(out, 3, "run 1"), out
    code, out = _verify(project, "--repair")
    assert code == 0, out
    assert "run 1: marked LOST" in out
    info = json.loads(_info(project, 1).read_text())
    assert info["status"] == "LOST" and info["error"]["type"] == "JobLost"
    assert _verify(project)[0] == 0  # (its output holds its own running time)


def test_3_repair_of_a_killed_writer_also_moves_its_torn_files_aside(project: Path) -> None:
    """A run killed while it wrote a checkpoint (found by the fault matrix, cell
    main-sigkill-checkpoint): --repair marks it LOST and, in the same pass, moves the
    checkpoint's temporary aside, so that the next verify passes (it said [7] before)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _edit_info(project, 1, status="RUNNING", pid=dead.pid, host=socket.gethostname())
    tmp = project / "logs/1/checkpoints/.last.pt.tmp"
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_bytes(b"PK\x03\x04 half a checkpoint")
    code, out = _verify(project)
    assert code == 1 and _named(out, 3, "run 1") and not _named(out, 7, "run 1"), out
    code, out = _verify(project, "--repair")
    assert code == 0 and "run 1: marked LOST" in out and "checkpoints/.last.pt.tmp" in out, out
    assert not tmp.exists() and list((project / "logs/.aside").rglob(tmp.name))
    code, out = _verify(project, "--deep")
    assert code == 0, out


def test_3_repair_of_a_killed_writer_names_its_torn_line_in_the_same_pass(
    project: Path,
) -> None:
    """A writer killed in the middle of a metrics line: while the run said RUNNING the
    line was a live writer's; once --repair marks it LOST, the same ``--deep`` pass names
    the torn line (invariant 4), instead of passing and leaving it to the next verify."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _edit_info(project, 1, status="RUNNING", pid=dead.pid, host=socket.gethostname())
    jsonl = project / "logs/1/metrics/test.jsonl"
    with open(jsonl, "ab") as fh:
        fh.write(b'{"step": 99, "acc"')
    code, out = _verify(project, "--deep", "--repair")
    assert code == 1 and "run 1: marked LOST" in out and _named(out, 4, "run 1"), out
    assert "metrics/test.jsonl ends in a torn line (18 bytes)" in out


def test_3_a_run_taken_over_while_verify_ran_is_not_marked_lost(project: Path) -> None:
    """verify reads a run's status, later marks it LOST under its lock (after asking the
    scheduler, after a --deep scan: minutes). A retry that started a new attempt in
    between owns the run: it is left RUNNING, with a note."""
    from runlab.results.verify import Verdict, _mark_lost, _Run

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _edit_info(project, 1, status="RUNNING", pid=dead.pid, host="node7", job_id="100")
    run = _Run(project / "logs/1", "1", socket.gethostname(), frozenset())
    run.info = json.loads(_info(project, 1).read_text())  # what the scan saw
    run.lost_reason = "its SLURM job 100 is CANCELLED"
    _edit_info(project, 1, job_id="200", attempt_start_time="2099-01-01T00:00:00+00:00")
    verdict = Verdict(project / "logs")
    assert _mark_lost(run, verdict, writer_gone=True)
    assert json.loads(_info(project, 1).read_text())["status"] == "RUNNING"
    assert verdict.repaired == [] and "a new attempt began while verify ran" in verdict.notes[0]


def test_3_a_live_writer_or_another_host_is_never_lost(project: Path) -> None:
    now = "2000-01-01T00:00:00+00:00"  # long before this test process started
    host = socket.gethostname()
    # This pytest process lives, but started after that attempt: a reused pid.
    _edit_info(project, 1, status="RUNNING", pid=os.getpid(), host=host, attempt_start_time=now)
    # Another host: only its scheduler can tell.
    _edit_info(project, 2, status="RUNNING", pid=1, host="elsewhere.example")
    code, out = _verify(project)
    assert _named(out, 3, "run 1"), out
    assert not _named(out, 3, "run 2"), out
    # The same process, recorded as starting after it did: alive, never LOST.
    _edit_info(project, 1, attempt_start_time="2999-01-01T00:00:00+00:00")
    code, out = _verify(project, "--repair")
    assert code == 0, out
    assert json.loads(_info(project, 1).read_text())["status"] == "RUNNING"


def test_4_duplicated_and_torn_rows_are_found_by_deep(project: Path) -> None:
    metrics = project / "logs/1/metrics/test.jsonl"
    rows = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join([*rows, rows[2]]))
    torn = project / "logs/2/metrics/test.jsonl"
    torn.write_bytes(torn.read_bytes() + b'{"step": 9, "ti')
    _edit_info(project, 1, end_time=None)  # keep invariant 2 out of it
    _edit_info(project, 2, end_time=None)
    assert _verify(project)[0] == 0  # rows are read only with --deep
    code, out = _verify(project, "--deep")
    assert code == 1
    assert _named(out, 4, "run 1") and "repeats step 2" in out
    assert _named(out, 4, "run 2") and "torn line" in out


def test_5_caches_without_their_record_are_moved_aside(project: Path) -> None:
    runlab_cli(project, "ls", "--logs", str(project / "logs"))  # builds the index
    index = project / "logs/.runlab-index"
    pointer = index / "runs.json"
    assert pointer.exists()
    pointer.write_text("{not json")
    orphan = project / "logs/1/metrics/gone.parquet"
    orphan.write_bytes(b"PAR1")
    code, out = _verify(project)
    assert code == 1
    assert _named(out, 5, "run 1") and _named(out, 5, ".runlab-index"), out
    code, out = _verify(project, "--repair")
    assert code == 0, out
    assert not orphan.exists() and not index.exists()
    aside = list((project / "logs/.aside").rglob("gone.parquet"))
    assert aside and aside[0].read_bytes() == b"PAR1"  # moved, never deleted
    assert runlab_cli(project, "ls", "--logs", str(project / "logs")).returncode == 0


def test_6_a_damaged_sweep_record(project: Path) -> None:
    sweeps = project / "logs/.sweeps"
    sweeps.mkdir()
    (sweeps / "20261205-101500-1.json").write_text('{"sweep_id": "20261205-1015')
    # Hand-edited: valid JSON, a field of the wrong type.
    (sweeps / "20261205-101600-2.json").write_text(json.dumps({"sweep_id": "x", "runs": "1,2"}))
    studies = project / "logs/.studies"
    studies.mkdir()
    (studies / "s.journal").write_bytes(b'{"op_code": 0}\n{"op_co\n{"op_code": 1}\n')
    (studies / "fine.journal").write_bytes(b'{"op_code": 0}\n{"op_co')  # a write under way
    code, out = _verify(project)
    assert code == 1 and _named(out, 6, ".sweeps/20261205-101500-1.json"), out
    assert _named(out, 6, ".sweeps/20261205-101600-2.json"), out
    assert _named(out, 6, ".studies/s.journal") and "line 2" in out, out
    assert not _named(out, 6, ".studies/fine.journal"), out


def test_7_torn_temporaries_and_linked_runs(project: Path) -> None:
    tmp = project / "logs/1/metadata/.info.json.abc123.tmp"
    tmp.write_text('{"status": "COMP')
    os.symlink(project / "logs/2", project / "logs/3")
    code, out = _verify(project)
    assert code == 1
    assert _named(out, 7, "run 1") and "torn temporary" in out
    assert _named(out, 7, "run 3") and "symbolic link" in out
    code, out = _verify(project, "--repair")
    assert not tmp.exists()
    assert list((project / "logs/.aside").rglob(tmp.name))
    assert _named(out, 7, "run 3") and code == 1  # not safe to repair: still said


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("config", {"wandb": {"api_key": "0123456789abcdef0123456789abcdef01234567"}}),
        ("config", {"data": {"url": "https://alice:s3cr3tpassw0rd@example.org/data.tar"}}),
        ("config", {"note": "ghp_" + "a1B2" * 9}),
        ("info", {"command": ["python", "train.py", "hub.token=hf_" + "x" * 34]}),
    ],
)
def test_8_a_credential_in_clear(project: Path, where: str, value: dict) -> None:
    if where == "config":
        path = project / "logs/1/metadata/config.json"
        config = json.loads(path.read_text())
        config.update(value)
        path.write_text(json.dumps(config))
    else:
        _edit_info(project, 1, **value)
    code, out = _verify(project)
    assert code == 1 and _named(out, 8, "run 1"), out
    assert "s3cr3t" not in out and "hf_x" not in out  # the report never repeats the secret


@pytest.mark.parametrize("threads", [False, True], ids=["warm-serial", "cold-threads"])
def test_many_runs_read_ahead_find_what_one_run_at_a_time_finds(
    project: Path, threads: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify reads runs' files a batch ahead of its checks, with threads where the
    reads wait on a disk: in a logs directory of several batches, each planted
    violation is named once, in its run, whichever way the files were read."""
    from runlab.results import verify as verify_module

    logs = project / "logs"
    for rid in range(3, 3 * verify_module._BATCH):  # three batches
        shutil.copytree(logs / "1", logs / str(rid), symlinks=True)
    late = 3 * verify_module._BATCH - 7
    (logs / "700/metadata/.info.json.abc123.tmp").write_text('{"status": "COMP')
    _edit_info(project, 900, status="DONE")
    config = logs / f"{late}/metadata/config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "note": "ghp_" + "a1B2" * 9}))
    os.symlink(logs / "2", logs / "20000")
    # 0: every batch after the first is read by threads; inf: none is.
    monkeypatch.setattr(verify_module, "_SLOW_S", 0.0 if threads else float("inf"))
    verdict = verify(Logs(logs))
    lines = sorted(v.line() for v in verdict.violations)
    assert verdict.runs == 3 * verify_module._BATCH  # with the linked one
    assert [(v.where, v.invariant) for v in verdict.violations] == [
        ("run 700", 7),
        ("run 900", 1),
        (f"run {late}", 8),
        ("run 20000", 7),
    ], lines


def test_every_invariant_is_planted_by_a_test() -> None:
    names = {n for n in globals() if n.startswith("test_")}
    for number in INVARIANTS:
        assert any(n.startswith(f"test_{number}_") for n in names), number


def test_json_and_one_line_per_violation(project: Path) -> None:
    _edit_info(project, 1, status="DONE\x1b[31m")
    _, out = _verify(project)
    assert "\x1b" not in out  # user text never reaches the terminal as control characters
    proc = runlab_cli(project, "verify", "--json", "--logs", str(project / "logs"), check=False)
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and data["violations"][0]["invariant"] == 1


def test_a_missing_logs_directory_is_one_line(tmp_path: Path) -> None:
    proc = runlab_cli(tmp_path, "verify", "--logs", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runlab verify: error: no logs directory")


def test_the_api_counts_runs(project: Path) -> None:
    verdict = verify(Logs(project / "logs"), deep=True)
    assert verdict.ok and verdict.runs == 2


# ------------------------------------------------------------------ secrets
_secretish = st.one_of(
    st.text(max_size=30),
    st.builds(lambda s: "ghp_" + s, st.text("abcdefXYZ0123456789", min_size=36, max_size=40)),
    st.builds(
        lambda u, p: f"https://{u}:{p}@host.example/x",
        st.text("abcdef", min_size=1, max_size=8),
        st.text("abcdef0123!$", min_size=1, max_size=20),
    ),
)
_keys = st.one_of(
    st.text(max_size=12), st.sampled_from(["api_key", "password", "db.token", "max_tokens"])
)
_json = st.recursive(
    _secretish | st.integers() | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_redacted_data_holds_no_secret(data: object) -> None:
    clean = secrets.redact(data)
    assert list(secrets.find(clean)) == []
    assert secrets.redact(clean) == clean  # redaction is idempotent


def test_innocent_keys_are_not_secrets() -> None:
    config = {"max_tokens": 512, "tokenizer": "bpe-tokenizer", "token_type": "bpe", "seed": 7}
    config["git"] = {"commit": "0123456789abcdef0123456789abcdef01234567"}
    assert list(secrets.find(config)) == []


@pytest.mark.parametrize("fault", ["pages", "rows"])
def test_5_deep_finds_a_twin_that_disagrees_with_its_rows(project: Path, fault: str) -> None:
    """A columnar twin is a cache of its .jsonl: ``--deep`` compares them row by row.
    ``pages``: the twin's data pages overwritten under an intact footer (a bad sector, a
    torn copy); ``rows``: the .jsonl edited in place with its size and mtime kept, so
    that the twin still says it covers it. ``--repair`` moves the twin aside."""
    jsonl = project / "logs/1/metrics/test.jsonl"
    twin = jsonl.with_suffix(".parquet")
    assert twin.is_file(), "the logger writes a twin at close"
    if fault == "pages":
        data = bytearray(twin.read_bytes())
        data[8:40] = bytes(b ^ 0x5A or 1 for b in data[8:40])
        twin.write_bytes(bytes(data))
    else:
        st = jsonl.stat()
        text = jsonl.read_text()
        first = text.splitlines()[0]
        row = json.loads(first)
        key = next(k for k, v in row.items() if isinstance(v, float) and k != "time")
        edited = first.replace(json.dumps(row[key]), json.dumps(row[key])[:-1] + "7", 1)
        assert edited != first and len(edited) == len(first)
        jsonl.write_text(text.replace(first, edited, 1))
        os.utime(jsonl, ns=(st.st_atime_ns, st.st_mtime_ns))
    code, out = _verify(project)
    assert code == 0, out  # the fast pass reads no rows
    code, out = _verify(project, "--deep")
    assert code == 1 and _named(out, 5, "run 1"), out
    assert "metrics/test.parquet does not agree with metrics/test.jsonl" in out
    code, out = _verify(project, "--deep", "--repair")
    assert not twin.exists() and jsonl.is_file()
    code, out = _verify(project, "--deep")
    assert code == 0, out


def test_5_a_twin_digested_by_another_polars_is_out_of_date_not_damaged(project: Path) -> None:
    """Polars does not promise the same row hashes across versions: after an upgrade, a
    twin's digest cannot be checked. ``--deep`` compares its rows instead and passes;
    the reader reads the .jsonl and gets the same rows (before: [5] "its values do not
    match the digest it holds" for every twin)."""
    import polars as pl

    import runlab

    jsonl = project / "logs/1/metrics/test.jsonl"
    twin = jsonl.with_suffix(".parquet")
    rows = runlab.runs(project / "logs").metrics("test").collect()
    meta = pl.read_parquet_metadata(twin)
    st = jsonl.stat()
    meta.update({"runlab.sum": "12345", "runlab.sum_by": "0.0.1"})  # another version's
    pl.read_parquet(twin).write_parquet(twin, metadata=meta)
    os.utime(jsonl, ns=(st.st_atime_ns, st.st_mtime_ns))
    code, out = _verify(project, "--deep")
    assert code == 0, out
    shutil.rmtree(project / "logs" / ".runlab-index", ignore_errors=True)
    again = runlab.runs(project / "logs").metrics("test").collect()
    assert again.equals(rows, null_equal=True)


# ------------------------------------------------ invariant 3 by the scheduler's word
def test_3_another_hosts_slurm_job_with_no_scheduler_to_ask_is_a_note_never_lost(
    project: Path, tmp_path: Path
) -> None:
    _edit_info(project, 1, status="RUNNING", pid=1, host="node7.example", job_id="4242")
    bare = tmp_path / "bin"  # a PATH with python and git, but no squeue
    bare.mkdir()
    os.symlink(sys.executable, bare / "python")
    os.symlink(shutil.which("git"), bare / "git")
    proc = runlab_cli(
        project, "verify", "--repair", "--logs", str(project / "logs"), check=False, PATH=str(bare)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (note,) = [line for line in proc.stdout.splitlines() if line.startswith("note: ")]
    assert "1 RUNNING run(s) of cluster jobs on other hosts were not checked" in note
    assert "no cluster scheduler's commands are on PATH" in note
    assert json.loads(_info(project, 1).read_text())["status"] == "RUNNING"


needs_slurm = pytest.mark.skipif(not SLURM_UP, reason="no SLURM cluster is running")


@needs_slurm
@pytest.mark.slurm
def test_3_another_hosts_job_unknown_to_the_scheduler_is_lost(project: Path) -> None:
    """Before, verify never marked a run on another host LOST (only `runlab status` of its
    sweep could); now the scheduler's word decides."""
    _edit_info(project, 1, status="RUNNING", pid=1, host="node7.example", job_id="987654321")
    code, out = _verify(project)
    assert code == 1 and _named(out, 3, "run 1"), out
    assert "its SLURM job 987654321 is known neither to squeue nor to sacct" in out
    code, out = _verify(project, "--repair")
    assert code == 0 and "run 1: marked LOST (its SLURM job 987654321" in out, out
    info = json.loads(_info(project, 1).read_text())
    assert info["status"] == "LOST" and "SLURM job 987654321" in info["error"]["message"]


def _running_slurm_run(tmp_path: Path) -> tuple[Path, dict]:
    """A project whose one-run SLURM sweep is RUNNING on the cluster: (project, info)."""
    proj = make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")
    runlab_cli(proj, "submit", "tasks/slow.py", "steps=100000", "interval=0.05", "--launcher",
               "slurm")  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        info = json.loads(_info(proj, 1).read_text()) if _info(proj, 1).exists() else {}
        if info.get("status") == "RUNNING" and info.get("job_id"):
            return proj, info
        time.sleep(0.3)
    raise AssertionError(f"the job did not start: {info}")


def _job_state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"],
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip()


@needs_slurm
@pytest.mark.slurm
@pytest.mark.parametrize("host", ["this host", "another host"])
def test_3_a_suspended_job_stays_running_and_one_killed_by_scancel_becomes_lost(
    tmp_path: Path, host: str
) -> None:
    proj, info = _running_slurm_run(tmp_path)
    job = str(info["job_id"])
    try:
        subprocess.run(["scontrol", "suspend", job], check=True)
        while _job_state(job) != "SUSPENDED":
            time.sleep(0.2)
        if host == "another host":  # only the scheduler can speak for it
            _edit_info(proj, 1, host="node7.example")
        code, out = _verify(proj, "--repair")
        assert code == 0 and "marked LOST" not in out, out
        assert json.loads(_info(proj, 1).read_text())["status"] == "RUNNING"
        subprocess.run(["scontrol", "resume", job], check=True)
        # SIGKILL to the job's processes (the task and submitit's process, one process
        # group: on this cluster scancel's own KILL reaches the task as SIGTERM, which it
        # would answer by recording INTERRUPTED), then to the job: the run cannot record
        # its end.
        os.killpg(os.getpgid(info["pid"]), signal.SIGKILL)
        subprocess.run(["scancel", "-s", "KILL", job], check=True)
        deadline = time.time() + 60
        while _job_state(job) not in ("", "CANCELLED", "FAILED", "COMPLETED"):
            assert time.time() < deadline, _job_state(job)
            time.sleep(0.3)
        if host == "another host":
            _edit_info(proj, 1, host="node7.example")
        assert json.loads(_info(proj, 1).read_text())["status"] == "RUNNING"
        code, out = _verify(proj, "--repair")
        assert code == 0 and "run 1: marked LOST" in out, out
        after = json.loads(_info(proj, 1).read_text())
        assert after["status"] == "LOST", after
        gone = f"its SLURM job {job} is" if host == "another host" else "its process"
        assert after["error"]["message"].startswith(gone), after["error"]
    finally:
        subprocess.run(["scancel", job], capture_output=True)
