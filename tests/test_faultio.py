"""Fault injection at the I/O layer (issue 19): fail the k-th I/O call of a run, for every k.

A small real task (``@runlab.launch``: it logs three rows, flushing each, saves a
checkpoint, a bytes artifact and a file artifact, then logs one more row and returns) runs
under the hooks of ``tests/faultio.py``, which count every open, mkdir, write, fsync and
rename under the logs directory. A clean run gives N, the number of such calls; then for
every k in 1..N the task runs again with its k-th call failing, in three ways:

- ``ENOSPC``, that call only (a disk full for a moment: later calls succeed);
- ``EROFS``, that call and every later one (the disk became read-only, or stays full;
  removing a file is not failed);
- ``EIO``, that call only, reads counted too (a failing disk fails reads as well).

After each: the task's process ends (no hang); when there is a run, its status tells the
truth: ``COMPLETE`` only when the task returned and every row, checkpoint and artifact it
was told were stored is on disk, whole; ``FAILED`` when the task ended by an error; a run
left ``RUNNING`` only by a process that could not write its final status; rows flushed
before the failure are still there, once each; every file that is there is whole; and
``runlab verify --deep`` passes, or names what ``--repair`` fixes, after which it passes.

Each run forks from a server that has imported Hydra and runlab once (about 0.7 s a run,
nearly all of it Hydra composing the config). Every k of the three ways takes a few
minutes: ``python -m pytest -m slow_io tests/test_faultio.py``; the default suite runs
six evenly spaced k's of each.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, task_env
from runlab.logs import Logs, is_run_id
from runlab.record import metricsfile
from runlab.record.files import read_yaml
from runlab.record.rundir import RunDir
from runlab.results.verify import verify
from runlab.status import Status

FAULTIO = Path(__file__).resolve().parent / "faultio.py"

TASK = """
from pathlib import Path

import runlab


@runlab.launch(config_path=".", config_name="faulty")
def main(ctx):
    log = ctx.logger
    for i in range(3):
        log.log_metrics({"loss": 1.0 / (i + 1)}, step=i)
        log.flush()
        print("LOGGED train", i, flush=True)
    log.log_checkpoint({"epoch": 3})
    print("SAVED checkpoints/last.pt", flush=True)
    log.log_artifact(b"weights", name="weights.bin")
    print("SAVED artifacts/weights.bin", flush=True)
    src = Path("notes.txt")
    src.write_text("notes")
    log.log_artifact(src)
    print("SAVED artifacts/notes.txt", flush=True)
    log.log_metrics({"acc": 0.5}, name="val", step=3)  # buffered: written at the close
    print("LOGGED val 3", flush=True)


if __name__ == "__main__":
    main()
"""

CONFIG = "lr: 0.1\nrunlab:\n  logs: ${oc.env:RUNLAB_LOGS,logs}\n  run_id: null\n"

# What a complete run holds: each file's content.
ROWS = {"train": [{"step": i, "loss": 1.0 / (i + 1)} for i in range(3)], "val": []}
ROWS["val"] = [{"step": 3, "acc": 0.5}]
FILES = {"artifacts/weights.bin": b"weights", "artifacts/notes.txt": b"notes"}

# name -> (errno, mode, whether reads count)
WAYS = {
    "enospc_once": ("ENOSPC", "once", False),
    "erofs_from": ("EROFS", "from", False),
    "eio_once": ("EIO", "once", True),
}
SAMPLE = 6  # k's of each way in the default suite


@dataclass
class Outcome:
    root: Path  # the logs directory
    rc: int | None  # None: it hung and was killed
    output: str
    calls: list[list[str]]
    failed: list[int]


class Server:
    """``tests/faultio.py serve``: runs each job in a child forked from it."""

    def __init__(self, work: Path) -> None:
        self.work = work
        (work / "faulty.py").write_text(TASK)
        (work / "faulty.yaml").write_text(CONFIG)
        env = task_env(RUNLAB_HEARTBEAT_S="3600")
        env["PYTHONPATH"] = f"{ROOT / 'src'}:{env.get('PYTHONPATH', '')}"
        self.proc = subprocess.Popen(
            [sys.executable, str(FAULTIO), "serve", str(work / "faulty.yaml")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.jobs = 0

    def run(self, way: str | None, k: int = 0) -> Outcome:
        self.jobs += 1
        folder = self.work / f"job{self.jobs}"
        folder.mkdir()
        root = folder / "logs"
        if way is None:
            spec: dict[str, Any] = {"mode": "count", "reads": True}
        else:
            err, mode, reads = WAYS[way]
            spec = {"mode": mode, "k": k, "errno": err, "reads": reads}
        spec |= {"root": str(root), "report": str(folder / "calls.json")}
        job = {
            "spec": spec,
            "script": str(self.work / "faulty.py"),
            "cwd": str(folder),
            "env": {"RUNLAB_LOGS": str(root)},
            "out": str(folder / "output.txt"),
            "timeout": 60,
        }
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        report = folder / "calls.json"
        calls = json.loads(report.read_text()) if report.exists() else {"calls": [], "failed": []}
        return Outcome(
            root,
            answer["rc"],
            (folder / "output.txt").read_text(errors="replace"),
            calls["calls"],
            calls["failed"],
        )

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("faultio"))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def clean(server: Server) -> Outcome:
    """A run without faults: every check passes, and its calls are the same each time (so
    that the k-th call is the same call in every run)."""
    first, second = server.run(None), server.run(None)
    assert first.rc == 0, first.output
    assert check(first) == [], check(first)
    assert _shape(first) == _shape(second), "the calls of two clean runs differ"
    return first


def _shape(out: Outcome) -> list[tuple[str, str, str]]:
    """The calls of a run, their paths without the logs directory and the random part of
    temporary names (``mkstemp``'s, ``mkdtemp``'s)."""
    shape = []
    for kind, function, path in out.calls:
        path = path.replace(str(out.root), "<logs>")
        path = re.sub(r"\.new-run-\w+", ".new-run-*", re.sub(r"\.\w{8}\.tmp$", ".*.tmp", path))
        shape.append((kind, function, path))
    return shape


def counted(clean: Outcome, way: str) -> list[list[str]]:
    """The calls of a clean run that ``way`` counts (its k-th is the one it fails)."""
    if WAYS[way][2]:
        return clean.calls
    return [call for call in clean.calls if call[0] != "read"]


# ------------------------------------------------------------------ the checks
def _lines(output: str, prefix: str) -> list[str]:
    return [line[len(prefix) :].strip() for line in output.splitlines() if line.startswith(prefix)]


def _rows(run: Path, name: str) -> list[dict[str, Any]]:
    path = metricsfile.jsonl_path(run / "metrics", name)
    if not path.exists():
        return []
    return [{k: v for k, v in r.items() if k != "time"} for r in metricsfile.read_rows(path)]


def check(out: Outcome) -> list[str]:
    """What the run's record says that is not true (empty when all of it is)."""
    if out.rc is None:
        return ["the task hung (killed after 60 s)"]
    runs = [p for p in out.root.iterdir() if is_run_id(p.name)] if out.root.is_dir() else []
    if not runs:
        return [] if out.rc != 0 else ["the task ended well, but there is no run"]
    if len(runs) > 1:
        return [f"{len(runs)} runs made by one task: {sorted(p.name for p in runs)}"]
    run = runs[0]
    problems = _check_status(out, run) + _check_files(out, run)
    return problems + _check_verify(out.root)


def _check_status(out: Outcome, run: Path) -> list[str]:
    info = RunDir(run).read_info()
    status = info.get("status")
    if out.rc == 0 and status != Status.COMPLETE:
        return [f"the task ended well (exit 0), but its status is {status}"]
    if status == Status.COMPLETE:  # the task returned; its exit may still report an error
        # of the record's own (the YAML twin of its final status not written, say)
        missing = [n for n, rows in ROWS.items() if _rows(run, n) != rows]
        missing += [f for f, data in FILES.items() if _read(run / f) != data]
        if _checkpoint(run) != {"epoch": 3}:
            missing.append("checkpoints/last.pt")
        return [f"status COMPLETE, but {m} is not what the task stored" for m in missing]
    if status == Status.FAILED:
        return [] if info.get("error") else ["status FAILED without its error"]
    if status == Status.RUNNING:
        return []  # a writer that could not write its final status: verify names it
    return [f"status {status!r} after a failed write"]


def _check_files(out: Outcome, run: Path) -> list[str]:
    """Rows flushed are there, once each; every file that is there is whole."""
    problems = []
    train = _rows(run, "train")
    flushed = [int(s) for s in _lines(out.output, "LOGGED train")]
    if train != ROWS["train"][: len(train)]:
        problems.append(f"metrics/train.jsonl holds {train}, not a prefix of what was logged")
    if len(train) < len(flushed):
        problems.append(f"rows {flushed} were flushed, but only {len(train)} are on disk")
    if _rows(run, "val") not in ([], ROWS["val"]):
        problems.append(f"metrics/val.jsonl holds {_rows(run, 'val')}")
    for saved in _lines(out.output, "SAVED"):
        if not (run / saved).exists():
            problems.append(f"{saved} was saved, but is not on disk")
    for name, data in FILES.items():
        if (run / name).exists() and _read(run / name) != data:
            problems.append(f"{name} is on disk, but is not what the task stored")
    if (run / "checkpoints/last.pt").exists() and _checkpoint(run) != {"epoch": 3}:
        problems.append("checkpoints/last.pt is on disk, but does not load")
    for meta in (run / "metadata").glob("*.json"):
        try:
            data = json.loads(meta.read_bytes())
        except ValueError:
            problems.append(f"metadata/{meta.name} is not whole JSON")
            continue
        twin = meta.with_suffix(".yaml")
        if twin.exists() and _yaml(twin) != data:
            problems.append(f"metadata/{twin.name} says other than metadata/{meta.name}")
    return problems


def _yaml(path: Path) -> Any:
    try:
        return json.loads(json.dumps(read_yaml(path)))
    except Exception as exc:
        return f"unreadable: {exc}"


def _check_verify(root: Path) -> list[str]:
    logs = Logs(root)
    verdict = verify(logs, deep=True)
    if verdict.ok:
        return []
    named = [v.line() for v in verdict.violations]
    verify(logs, deep=True, repair=True)
    again = verify(logs, deep=True)
    if not again.ok:
        return [f"verify --repair left: {[v.line() for v in again.violations]} (was {named})"]
    if any(v.invariant != 3 for v in verdict.violations):
        return []
    status = RunDir(next(root.glob("[0-9]*"))).read_info().get("status")
    return [] if status == Status.LOST else [f"verify --repair left the run {status}"]


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _checkpoint(run: Path) -> Any:
    try:
        with open(run / "checkpoints" / "last.pt", "rb") as fh:
            return pickle.load(fh)["state"]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------ the tests
def _every(server: Server, clean: Outcome, way: str, ks: list[int]) -> None:
    problems = []
    for k in ks:
        out = server.run(way, k)
        call = counted(clean, way)[k - 1]
        if k not in out.failed:
            problems.append(f"k={k} ({' '.join(call)}): the fault was not injected")
            continue
        problems += [f"k={k} ({' '.join(call)}): {p}" for p in check(out)]
    assert not problems, "\n".join(problems)


def _sample(n: int) -> list[int]:
    step = max(1, n // SAMPLE)
    return sorted({*range(1, n + 1, step), n})


@pytest.mark.parametrize("way", sorted(WAYS))
def test_sampled_k(server: Server, clean: Outcome, way: str) -> None:
    _every(server, clean, way, _sample(len(counted(clean, way))))


@pytest.mark.slow_io
@pytest.mark.parametrize("way", sorted(WAYS))
def test_every_k(server: Server, clean: Outcome, way: str) -> None:
    _every(server, clean, way, list(range(1, len(counted(clean, way)) + 1)))


# ------------------------------------------------------- found by fault injection
def _last(clean: Outcome, way: str, kind: str, suffix: str) -> int:
    """The k of the last call of ``kind`` on a path ending in ``suffix`` in a clean run."""
    calls = counted(clean, way)
    return max(i for i, (c, _, path) in enumerate(calls, 1) if c == kind and path.endswith(suffix))


def test_the_yaml_twin_of_a_final_status_never_contradicts_it(
    server: Server, clean: Outcome
) -> None:
    """EIO on the rename of the final ``info.yaml`` (after ``info.json`` said COMPLETE):
    the stale YAML is removed, so no file says RUNNING beside a COMPLETE. Before:
    ``metadata/info.yaml says other than metadata/info.json`` (RUNNING against COMPLETE)."""
    out = server.run("eio_once", _last(clean, "eio_once", "rename", "metadata/info.yaml"))
    assert check(out) == []
    run = out.root / "1"
    assert RunDir(run).read_info()["status"] == Status.COMPLETE
    assert not (run / "metadata" / "info.yaml").exists()
