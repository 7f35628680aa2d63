"""The run record stays true however real training code runs (issue 19, families 1 and 2).

A matrix of process model x event: the task logs 100 rows, then a process of the given
model meets the event, then the task logs 100 more rows and returns (unless the event
ends the task's own process). Each scenario runs the task as a real process and checks
that the run's final status is the outcome of the run's own process, that no step is
written twice, and that no child process left its traceback (or its status) in the run.

Process models: ``main`` (the task's process), ``thread`` (a thread of it), ``fork``
(``os.fork()``, the child leaving the task function), ``mp_fork`` (multiprocessing,
fork start method), ``forkserver``, ``spawn``, ``pool`` (a fork pool), ``dataloader``
(torch DataLoader, 2 workers), ``nested`` (a subprocess that runs another task).

Events: ``return``, ``exception``, ``exit`` (``sys.exit(3)``), ``os_exit``
(``os._exit(3)``), ``sigterm``, ``sigkill``, and ``log`` (a child calls ``log_metrics``).

Cells left out, and why:

- ``thread`` x ``os_exit``/``sigterm``/``sigkill``: they end the whole process, as in
  ``main``; ``thread`` x ``return``: the 8-thread test below covers it.
- ``main`` x ``log``: logging in the run's own process is every other test.
- ``forkserver``/``spawn`` x ``log``: those children are fresh interpreters; a logger
  cannot reach them (it does not pickle); ``x os_exit``/``sigkill``: nothing of runlab
  runs in them, ``exception`` and ``sigterm`` stand for the rest.
- ``mp_fork`` x ``return``/``os_exit``/``sigkill``: multiprocessing's child leaves by
  ``os._exit`` already (``fork`` covers the bare ``os.fork`` child for each).
- ``pool`` x events other than ``return`` (a map) and ``sigterm`` (``Pool.terminate``):
  a worker's exception comes back to the parent as the task's own exception.
- ``dataloader`` x events other than ``return`` and ``exception`` (torch ends the
  iteration with its own error on a worker's death; that is the task's own outcome).
- ``nested`` x ``os_exit``/``sigterm``/``sigkill``/``log``: the inner task is a process
  of its own whose status these cases of ``main`` check; ``nested_job`` checks the same
  under a sweep's pre-made run (``RUNLAB_RUN_DIR``), a tune trial and a code snapshot.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import timeit
from pathlib import Path

import pytest

from conftest import ROOT, task_env
from runlab.record.logger import RunLogger
from runlab.record.rundir import RunDir, allocate, live_holder
from runlab.status import Status

TASK = """
import os, signal, subprocess, sys, threading, time
import multiprocessing as mp
import runlab


def act(event, logger=None):
    if event == "exception":
        raise RuntimeError("child-boom")
    if event == "exit":
        sys.exit(3)
    if event == "os_exit":
        os._exit(3)
    if event == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
    if event == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if event == "log":
        logger.log_metrics({"x": -1})


def square(i):
    return i * i


def sleeper(_):
    time.sleep(30)


def loader(event):
    import torch

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            if i == 5:
                act(event)
            return torch.tensor([float(i)])

    batches = torch.utils.data.DataLoader(Data(), batch_size=2, num_workers=2)
    return sum(float(b.sum()) for b in batches)


def child(ctx, model, event, logger):
    if model == "fork":
        pid = os.fork()
        if pid == 0:
            act(event, logger)
            return True  # the child leaves the task function
        _, status = os.waitpid(pid, 0)
        print("CHILD", os.waitstatus_to_exitcode(status), flush=True)
    elif model in ("mp_fork", "forkserver", "spawn"):
        ctx = mp.get_context("fork" if model == "mp_fork" else model)
        args = (event, logger) if model == "mp_fork" else (event,)
        proc = ctx.Process(target=act, args=args)
        proc.start()
        proc.join()
        print("CHILD", proc.exitcode, flush=True)
    elif model == "pool":
        with mp.get_context("fork").Pool(2) as pool:
            if event == "sigterm":
                pool.map_async(sleeper, range(2))
                time.sleep(0.5)
                pool.terminate()
            else:
                assert pool.map(square, range(4)) == [0, 1, 4, 9]
        print("CHILD 0", flush=True)
    elif model == "dataloader":
        try:
            print("CHILD", loader(event), flush=True)
        except RuntimeError as exc:
            print("CHILD error", type(exc).__name__, flush=True)
    elif model == "thread":
        thread = threading.Thread(target=act, args=(event,))
        thread.start()
        thread.join()
    elif model == "nested":
        script = ctx.config.inner or __file__
        inner = subprocess.run([sys.executable, script, "model=main", f"event={event}"])
        print("CHILD", inner.returncode, flush=True)
    return False


@runlab.launch(config_path=".", config_name="procs")
def main(ctx):
    logger, model, event = ctx.logger, ctx.config.model, ctx.config.event
    for i in range(100):
        logger.log_metrics({"x": i})  # buffered when a child is made
    if model == "main":
        act(event, logger)
    elif child(ctx, model, event, logger):
        return
    time.sleep(0.3)
    print("PARENT SEES", (ctx.run_dir / "metadata" / "info.json").read_text(), flush=True)
    for i in range(100, 200):
        logger.log_metrics({"x": i})


if __name__ == "__main__":
    main()
"""

# (model, event): (the run's status, the child's exit code printed, or None)
MATRIX = {
    ("main", "return"): Status.COMPLETE,
    ("main", "exception"): Status.FAILED,
    ("main", "exit"): Status.FAILED,
    ("main", "os_exit"): Status.RUNNING,  # no process left to write: readers say LOST
    ("main", "sigterm"): Status.INTERRUPTED,
    ("main", "sigkill"): Status.RUNNING,
    ("thread", "exception"): Status.COMPLETE,
    ("thread", "exit"): Status.COMPLETE,
    ("fork", "return"): Status.COMPLETE,
    ("fork", "exception"): Status.COMPLETE,
    ("fork", "exit"): Status.COMPLETE,
    ("fork", "os_exit"): Status.COMPLETE,
    ("fork", "sigterm"): Status.COMPLETE,
    ("fork", "sigkill"): Status.COMPLETE,
    ("fork", "log"): Status.COMPLETE,
    ("mp_fork", "exception"): Status.COMPLETE,
    ("mp_fork", "exit"): Status.COMPLETE,
    ("mp_fork", "sigterm"): Status.COMPLETE,
    ("mp_fork", "log"): Status.COMPLETE,
    ("forkserver", "sigterm"): Status.COMPLETE,
    ("spawn", "exception"): Status.COMPLETE,
    ("spawn", "sigterm"): Status.COMPLETE,
    ("pool", "return"): Status.COMPLETE,
    ("pool", "sigterm"): Status.COMPLETE,
    ("dataloader", "return"): Status.COMPLETE,
    ("dataloader", "exception"): Status.COMPLETE,
    ("nested", "return"): Status.COMPLETE,
    ("nested", "exception"): Status.COMPLETE,
}

CHILD_CODE = {"return": 0, "exception": 1, "exit": 3, "os_exit": 3, "sigterm": -15, "sigkill": -9}
CHILD_CODE["log"] = 1  # ForkedChildError
ENDS_PARENT = {"os_exit", "sigterm", "sigkill", "exception", "exit"}


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("procs")
    (folder / "procs.yaml").write_text("model: main\nevent: return\ninner: ''\n")
    script = folder / "procs.py"
    script.write_text(TASK)
    return script


def run(script: Path, logs: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        env=task_env(**{"RUNLAB_LOGS": str(logs), **env}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def info(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata" / "info.json").read_text())


def steps(run_dir: Path, name: str = "train") -> list[int]:
    path = run_dir / "metrics" / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("model", "event"), list(MATRIX), ids=["-".join(c) for c in MATRIX])
def test_the_record_tells_the_truth(task: Path, tmp_path: Path, model: str, event: str) -> None:
    logs = tmp_path / "logs"
    proc = run(task, logs, f"model={model}", f"event={event}")
    out = proc.stdout + proc.stderr
    run_dir = logs / "1"
    record = info(run_dir)
    assert record["status"] == MATRIX[model, event], out
    parent_ends = model == "main" and event != "return"
    # no step twice; all the parent's rows, once
    got = steps(run_dir)
    assert len(got) == len(set(got)), out
    if model == "main" and event in ("os_exit", "sigkill"):  # the last interval is lost
        assert got == list(range(len(got))), out
    else:
        assert got == list(range(100 if parent_ends else 200)), out
    if model != "main":  # the parent saw its run RUNNING after the child ended, and ends it
        assert '"status":"RUNNING"' in proc.stdout.replace(" ", ""), out
        assert proc.returncode == 0, out
        assert not (run_dir / "metadata" / "traceback.txt").exists(), out
        assert "Interrupted" not in proc.stderr, out  # runlab's handlers are not the child's
    if model in ("fork", "mp_fork", "forkserver", "spawn"):
        assert f"CHILD {CHILD_CODE[event]}" in proc.stdout, out
    if event == "log":
        assert "ForkedChildError" in proc.stderr and "only the run's own process" in out, out
    if model == "main" and event in ("os_exit", "sigkill"):
        assert not live_holder(record), record  # readers see it LOST, not RUNNING
    if model == "main" and event in ("exception", "exit"):
        assert (run_dir / "metadata" / "traceback.txt").exists()
    if model == "nested":  # the inner task is a run of its own, with its own outcome
        inner = info(logs / "2")
        assert inner["status"] == (Status.COMPLETE if event == "return" else Status.FAILED)
        assert steps(logs / "2") == list(range(200 if event == "return" else 100))


@pytest.mark.parametrize("case", ["run_dir", "code_snapshot", "logs_config"])
def test_a_task_started_by_a_job_is_its_own_run(task: Path, tmp_path: Path, case: str) -> None:
    """A task started by a sweep's job (its run made beforehand: RUNLAB_RUN_DIR), by a
    job run from a code snapshot (RUNLAB_CODE_*), or by a task given its logs directory
    in its config: it is a run of its own, in the same logs directory, with its own record."""
    logs = tmp_path / "logs"
    env: dict[str, str] = {}
    args = ["model=nested", "event=return", f"inner={task}"]
    outer = task
    if case == "run_dir":
        made = RunDir(allocate(logs)[0]).create()
        made.update_info(run_id=made.run_id, status="QUEUED")
        env["RUNLAB_RUN_DIR"] = str(made.path)
    if case == "code_snapshot":  # the job's snapshot holds its task, not the inner one
        snapshot = tmp_path / "snapshot"
        snapshot.mkdir()
        env.update(RUNLAB_CODE_COMMIT="f" * 40, RUNLAB_CODE_SNAPSHOT=str(snapshot))
        outer = snapshot / task.name
        outer.write_text(task.read_text())
        (snapshot / "procs.yaml").write_text((task.parent / "procs.yaml").read_text())
    if case == "logs_config":
        env["RUNLAB_LOGS"] = str(tmp_path / "elsewhere")
        args.append(f"+runlab.logs={logs}")
    proc = run(outer, logs, *args, **env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "CHILD 0" in proc.stdout, out
    assert info(logs / "1")["status"] == Status.COMPLETE, out
    assert info(logs / "2")["status"] == Status.COMPLETE, out
    assert steps(logs / "1") == steps(logs / "2") == list(range(200))
    if case == "code_snapshot":
        outer_env = json.loads((logs / "1" / "metadata" / "env.json").read_text())
        inner_env = json.loads((logs / "2" / "metadata" / "env.json").read_text())
        assert outer_env["git"]["commit"] == "f" * 40
        assert inner_env["git"].get("commit") != "f" * 40  # its code is not the snapshot's


def _dirty_snapshot(task: Path, logs: Path) -> tuple[Path, bytes]:
    """A dirty code snapshot of the test task under ``logs``, as submit makes one (its
    patch not yet beside it): (the snapshot, its patch)."""
    snapshot = logs / ".snapshots" / ("f" * 40 + "-dirty-0123456789ab")
    snapshot.mkdir(parents=True)
    for name in (task.name, "procs.yaml"):
        (snapshot / name).write_text((task.parent / name).read_text())
    return snapshot, b"diff --git a/procs.py b/procs.py\n+# a change not committed\n"


def test_a_task_started_in_a_dirty_snapshot_records_its_patch(task: Path, tmp_path: Path) -> None:
    """A job runs a dirty snapshot of the code; its task starts a second task of the same
    snapshot. Neither run was made by the submission, so neither had its ``git.diff``
    written for it: each records the snapshot's patch, kept beside the snapshot, so that
    its code can be rebuilt from the commit (it had ``dirty: true`` and no patch)."""
    logs = tmp_path / "logs"
    snapshot, patch = _dirty_snapshot(task, logs)
    (snapshot.parent / (snapshot.name + ".diff")).write_bytes(patch)
    env = {
        "RUNLAB_CODE_COMMIT": "f" * 40,
        "RUNLAB_CODE_DIRTY": "1",
        "RUNLAB_CODE_SNAPSHOT": str(snapshot),
    }
    inner = snapshot / task.name
    proc = run(inner, logs, "model=nested", "event=return", f"inner={inner}", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rid in ("1", "2"):
        record = json.loads((logs / rid / "metadata" / "env.json").read_text())["git"]
        assert record["commit"] == "f" * 40 and record["dirty"] is True, record
        assert (logs / rid / "metadata" / "git.diff").read_bytes() == patch, rid


def test_a_queued_run_of_a_snapshot_without_its_patch_beside_it_keeps_quiet(
    task: Path, tmp_path: Path
) -> None:
    """A sweep's pre-made run has its ``git.diff`` (written by submit); its snapshot may
    have no patch beside it (made before runlab kept one). The job's task neither warns
    that its code cannot be rebuilt nor records that problem, and keeps the patch."""
    logs = tmp_path / "logs"
    snapshot, patch = _dirty_snapshot(task, logs)
    meta = logs / "1" / "metadata"
    meta.mkdir(parents=True)
    (meta / "git.diff").write_bytes(patch)
    (meta / "info.json").write_text(json.dumps({"run_id": "1", "status": "QUEUED"}))
    env = {
        "RUNLAB_CODE_COMMIT": "f" * 40,
        "RUNLAB_CODE_DIRTY": "1",
        "RUNLAB_CODE_SNAPSHOT": str(snapshot),
        "RUNLAB_RUN_DIR": str(logs / "1"),
    }
    proc = run(snapshot / task.name, logs, "model=main", "event=return", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cannot be rebuilt" not in proc.stderr, proc.stderr
    record = json.loads((meta / "env.json").read_text())
    assert not [p for p in record["problems"] if "patch" in p], record["problems"]
    assert (meta / "git.diff").read_bytes() == patch
    assert info(logs / "1")["status"] == Status.COMPLETE


def test_a_task_started_late_for_a_run_cancelled_before_it_started_does_not_run(
    task: Path, tmp_path: Path
) -> None:
    """``runlab cancel RUN`` of a queued run that a worker has just taken waits for its
    task to start; a task slower than that wait (a slow import on a loaded node) finds the
    run cancelled before it started: it ends with one line and leaves the record as the
    cancel wrote it (before, it reopened the run as a new attempt and ran)."""
    logs = tmp_path / "logs"
    meta = logs / "1" / "metadata"
    meta.mkdir(parents=True)
    cancelled = {
        "run_id": "1",
        "status": "INTERRUPTED",
        "error": {"type": "Cancelled", "message": "cancelled before the run started"},
        "reconciled": {"by": "runlab cancel", "was": "QUEUED", "job": "CANCELLED"},
    }
    (meta / "info.json").write_text(json.dumps(cancelled))
    proc = run(task, logs, "model=main", "event=return", RUNLAB_RUN_DIR=str(logs / "1"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "was cancelled before its task started" in proc.stderr, proc.stderr
    assert info(logs / "1") == cancelled
    assert not (logs / "1" / "metrics").exists() or steps(logs / "1") == []


# --------------------------------------------------------------- threads, many names


def test_threads_logging_to_one_logger_get_distinct_steps(tmp_path: Path) -> None:
    """Eight threads log to one file: every logger-assigned step once, in file order."""
    logger = RunLogger(tmp_path / "run", flush_interval=0.01)
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for i in range(4000):
            logger.log_metrics({"v": i})

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.close()
    assert steps(tmp_path / "run") == list(range(32000))


def test_a_logging_call_stays_a_few_microseconds(tmp_path: Path) -> None:
    """The lock that makes steps thread-safe leaves a buffered call cheap (about 5 us;
    the bound here is loose, for a loaded machine)."""
    logger = RunLogger(tmp_path / "run", flush_interval=3600)
    row = {"loss": 0.5, "acc": 0.9, "lr": 1e-3, "epoch": 3, "gn": 1.25}
    best = min(timeit.repeat(lambda: logger.log_metrics(row), number=20000, repeat=3)) / 20000
    logger.close()
    assert best < 50e-6, best


MANY = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
from runlab.record.logger import RunLogger

with RunLogger(sys.argv[1]) as logger:  # made by hand: it writes the record
    for step in range(3):
        for k in range(300):
            logger.log_metrics({"v": step * k}, name=f"m{k}")
        logger.flush()
"""


def test_metric_names_are_not_bounded_by_the_file_descriptor_limit(tmp_path: Path) -> None:
    """300 metric names under a limit of 48 open files: every row is written once, whole
    lines, and the run ends COMPLETE (it failed with 'Too many open files')."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", MANY, str(run_dir)],
        env=task_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert info(run_dir)["status"] == Status.COMPLETE
    for k in range(300):
        text = (run_dir / "metrics" / f"m{k}.jsonl").read_text()
        assert text.endswith("\n")
        assert [json.loads(line)["v"] for line in text.splitlines()] == [0, k, 2 * k]
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 48  # the test's own is untouched


# ------------------------------------------------------------------- forked children


def test_a_forked_child_neither_writes_nor_ends_a_logger_made_by_hand(tmp_path: Path) -> None:
    """A logger made by hand (it writes the run's record itself): a child forked from
    its process that closes it, or leaves its ``with`` block raising, changes nothing."""
    run_dir = tmp_path / "run"
    with RunLogger(run_dir) as logger:  # made by hand: it writes the run's record
        for i in range(50):
            logger.log_metrics({"x": i})
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                logger.log_metrics({"x": -1})
                code = 10
            except RuntimeError as exc:
                code = 0 if "only the run's own process" in str(exc) else 11
            try:
                logger.close()
                with logger:
                    raise ValueError("child")
            except ValueError:
                pass
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert info(run_dir)["status"] == Status.RUNNING
        for i in range(50, 100):
            logger.log_metrics({"x": i})
    assert info(run_dir)["status"] == Status.COMPLETE
    assert steps(run_dir) == list(range(100))
    assert not (run_dir / "metadata" / "traceback.txt").exists()


# What a forked child must get from each public method of the logger: "refused" (the
# call raises ForkedChildError), "nothing" (it returns and changes nothing) or "reads"
# (a read, allowed anywhere). A public method missing here fails the test below: a new
# writer must say how it keeps to the rule that only the run's own process writes it.
_CHILD_CALLS: dict[str, tuple[str, str]] = {
    "log_metrics": ("refused", "logger.log_metrics({'x': -1.0}, name='train')"),
    "log_artifact": ("refused", "logger.log_artifact(b'child', name='child.bin')"),
    "log_checkpoint": ("refused", "logger.log_checkpoint({'child': 1}, name='child')"),
    "flush": ("refused", "logger.flush()"),
    "close": ("nothing", "logger.close()"),
    "load_checkpoint": ("reads", "logger.load_checkpoint('last')"),
}


def _tree(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run but its heartbeat-bearing status, by relative path."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.parent.name != "metadata"
    }


def test_every_public_method_of_the_logger_keeps_a_forked_child_from_writing(
    tmp_path: Path,
) -> None:
    """One writer per run, enforced for every writing entry point: a child forked from
    the run's process calls each public method of the logger; writers refuse it
    (ForkedChildError), flush and close do nothing, and not one file of the run changes.
    A public method of ``RunLogger`` that this table does not list fails the test."""
    public = {
        name for name in dir(RunLogger) if not name.startswith("_")
        and callable(getattr(RunLogger, name))
    }  # fmt: skip
    assert public == set(_CHILD_CALLS), (
        f"public methods of RunLogger not in _CHILD_CALLS: {sorted(public - set(_CHILD_CALLS))}; "
        f"listed but gone: {sorted(set(_CHILD_CALLS) - public)}"
    )
    run_dir = tmp_path / "run"
    with RunLogger(run_dir) as logger:
        for i in range(20):
            logger.log_metrics({"x": float(i)})
        logger.log_checkpoint({"step": 19})
        logger.log_artifact(b"parent", name="parent.bin")
        logger.flush()
        before = _tree(run_dir)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read)
            got = {}
            for name, (_, call) in _CHILD_CALLS.items():
                try:
                    eval(call, {"logger": logger})
                    got[name] = "nothing"
                except Exception as exc:
                    got[name] = "refused" if type(exc).__name__ == "ForkedChildError" else repr(exc)
            os.write(write, json.dumps(got).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            got = json.loads(fh.read())
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        expected = {
            n: ("nothing" if want == "reads" else want) for n, (want, _) in _CHILD_CALLS.items()
        }
        assert got == expected
        assert _tree(run_dir) == before, "a forked child changed the run's files"
        assert info(run_dir)["status"] == Status.RUNNING
        logger.log_metrics({"x": 20.0})
    assert info(run_dir)["status"] == Status.COMPLETE
    assert steps(run_dir) == list(range(21))


FORKED = """
import multiprocessing as mp, os, signal, sys, time

ARMED = []
# Registered before runlab is imported, so it runs first in a forked child: a SIGTERM
# that lands while the child is still in its at-fork hooks (as Pool.terminate's can,
# on a worker forked an instant before).
os.register_at_fork(after_in_child=lambda: ARMED and os.kill(os.getpid(), signal.SIGTERM))

import runlab


def child():
    time.sleep(3)
    os._exit(0)


@runlab.launch(config_path=".", config_name="forked")
def main(ctx):
    ARMED.append(True)
    if ctx.config.how == "fork":
        pid = os.fork()
        if pid == 0:
            child()
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    else:
        proc = mp.get_context("fork").Process(target=child)
        proc.start()
        proc.join()
        code = proc.exitcode
    print("CHILD", code, flush=True)


if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("how", ["fork", "mp_fork"])
def test_a_stop_signal_that_reaches_a_child_as_it_is_forked_ends_it(
    tmp_path: Path, how: str
) -> None:
    """A SIGTERM that reaches a forked child before its at-fork hooks have put back the
    handlers runlab replaced ends the child as it would without runlab (a Pool's
    ``terminate`` right after its workers are forked: that CI run hung in ``join``). On
    the old code runlab's handler raised in the hook, Python dropped it ("Exception
    ignored"), and the child lived on."""
    (tmp_path / "forked.yaml").write_text(f"how: {how}\n")
    script = tmp_path / "forked.py"
    script.write_text(FORKED)
    proc = run(script, tmp_path / "logs")
    out = proc.stdout + proc.stderr
    assert f"CHILD {-signal.SIGTERM}" in proc.stdout, out
    assert "Exception ignored" not in proc.stderr and "Interrupted" not in proc.stderr, out
    assert proc.returncode == 0 and info(tmp_path / "logs" / "1")["status"] == Status.COMPLETE
