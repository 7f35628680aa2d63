"""The fault matrix: process model x event x phase (issue 19, item 3b).

Each cell is a real run of ``tests/tasks/faults.py``: at a PHASE of the run, a
process of a MODEL meets an EVENT; the cell then checks that the run's final status
tells the truth about the job as a whole (every rank, not only rank 0), and that
``runlab verify --deep`` finds nothing wrong in its logs directory, except where a
run legitimately stays RUNNING because no process was left to write it: then verify
names it (invariant 3), ``verify --repair`` marks it LOST, and a second verify passes.

**Process models**: ``main`` (the run's process), ``thread`` (a thread of it),
``fork`` (a bare ``os.fork()`` child, which ends as multiprocessing's children do),
``spawn`` (a multiprocessing spawn child), ``pool`` (a fork ``Pool`` worker),
``dataloader`` (a torch DataLoader worker, two workers), ``nested`` (a subprocess
that runs another task: a run of its own), ``torchrun0``/``torchrun1`` (rank 0 or
rank 1 of a two-rank ``torchrun`` job, Gloo on the CPU), ``slurm`` (task 1 of a
two-task ``sbatch --array`` job; task 0 is its healthy twin).

**Events**: ``return``; ``exception`` (``RuntimeError``); ``exit`` (``sys.exit(3)``);
``os_exit`` (``os._exit(3)``); ``sigterm``/``sigint``/``sigkill`` (sent by the process
to itself); ``hang`` (it stops progressing: the scenario sends SIGTERM to the run's
process, or to torchrun, or cancels the SLURM task, then SIGKILL to every process
left 5 s later, as a launcher's time limit does).

**Phases**: ``startup`` (inside the run session's start: its first record is written,
the task has not begun; for rank 1, the task's first statement), ``logging`` (after
10 of 20 rows), ``checkpoint`` (while ``log_checkpoint`` pickles the state),
``close`` (while the session ends the run: it closes the logger with stop signals
held), ``after_collective`` (torchrun only: after the last all-reduce and barrier).

**The rule** (:func:`expected`), the run's status as the record holds it:

- ``return`` -> COMPLETE.
- A child (``fork``, ``spawn``, ``pool``, ``dataloader``, ``nested``) meeting any
  other event ends only itself: COMPLETE; the nested task's own run has the status
  ``main`` x event x ``logging`` gives. A child's hang holds the run's process, which
  the scenario stops: INTERRUPTED (at ``close``: RUNNING, see below).
- ``thread`` x ``exception``/``exit`` ends only the thread: COMPLETE.
- Otherwise the event reaches the run's process, or a rank of the job:
  ``exception``/``exit`` -> FAILED; ``sigterm``/``sigint`` -> INTERRUPTED, but
  COMPLETE at ``close`` in the run's own process (the stop waits until the status is
  written, then stops the process); ``hang`` -> INTERRUPTED; ``os_exit``/``sigkill``
  of the run's process (``main``, ``thread``, ``torchrun0``, ``slurm``) -> RUNNING,
  which verify names and ``--repair`` marks LOST; of rank 1 -> FAILED (the job failed
  with it: rank 0 finds it gone without a word).
- At ``close`` a hang in the run's process (any model but ``torchrun1``, whose close
  is its own) holds the end of the run with stop signals held: only SIGKILL ends it,
  and the run stays RUNNING (verify -> LOST).

**Count**: 10 models x 8 events x 5 phases = 400 cells; 276 run, 124 are skipped
(:data:`SKIPPED_CELLS`: 64 have no collective outside torchrun, 24 SLURM cells
beyond the logging phase, 21 torchrun start-up and checkpoint cells for time, 8
checkpoint cells of rank 1, 7 torchrun returns before the last collective); 80 run
in the default suite.

**Found by the matrix** (each fixed, each with a test that failed before):
``sys.exit`` while the run ends left it RUNNING (main-exit-close); ``verify --repair``
left a killed checkpoint write's temporary behind (main-sigkill-checkpoint); rank 1
failing after the last collective or in its close left the run COMPLETE, rank 1
stopped by a signal made it FAILED, rank 1 killed was not counted
(torchrun1-*-close, -after_collective, -sigterm-logging); a task started by a rank
took itself for a rank (``test_a_task_started_by_a_rank_is_a_run_of_its_own``).

**Cost.** Cells whose run's process survives run several to a process (a Hydra
sweep, ``-m cell=A,B,...``); launches run in parallel (``RUNLAB_MATRIX_WORKERS``,
default 3). The default suite runs one cell per model x event (the ``logging`` phase,
or the first phase that runs); the rest is marked ``matrix``:
``python -m pytest -m matrix tests/test_fault_matrix.py`` (``.ci/run`` runs it).
:data:`SKIPPED_CELLS` lists every cell left out, with its reason;
``test_every_cell_is_run_or_skipped_with_a_reason`` checks that cells = run + skipped.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import TASKS, needs_slurm, task_env
from runlab.logs import Logs
from runlab.results.verify import Verdict, verify
from runlab.status import Status

MODELS = (
    "main",
    "thread",
    "fork",
    "spawn",
    "pool",
    "dataloader",
    "nested",
    "torchrun0",
    "torchrun1",
    "slurm",
)
EVENTS = ("return", "exception", "exit", "os_exit", "sigterm", "sigint", "sigkill", "hang")
PHASES = ("startup", "logging", "checkpoint", "close", "after_collective")
CHILDREN = {"fork", "spawn", "pool", "dataloader", "nested"}
TORCHRUN = {"torchrun0", "torchrun1"}
ROWS = 20
TORCHRUN_BIN = Path(sys.executable).with_name("torchrun")
WORKERS = int(os.environ.get("RUNLAB_MATRIX_WORKERS") or 3)
GRACE_S = 5.0  # after the SIGTERM that stops a hang, SIGKILL to every process left


@dataclass(frozen=True)
class Cell:
    model: str
    event: str
    phase: str

    @property
    def id(self) -> str:
        return f"{self.model}-{self.event}-{self.phase}"


ALL_CELLS = [Cell(m, e, p) for m in MODELS for e in EVENTS for p in PHASES]


def skip_reason(cell: Cell) -> str | None:
    """Why a cell is left out of the matrix (``None``: it runs)."""
    model, event, phase = cell.model, cell.event, cell.phase
    if phase == "after_collective" and model not in TORCHRUN:
        return "there is no collective outside a torchrun job"
    if model == "slurm" and phase != "logging":
        return "SLURM cells are few (each is a batch job): the logging phase only"
    if model == "torchrun1" and phase == "checkpoint":
        return "a rank > 0 writes no checkpoint (PeerLogger.log_checkpoint returns rank 0's path)"
    if model in TORCHRUN and event == "return" and phase != "after_collective":
        return (
            "a rank returning before collectives the other rank still calls is a collective "
            "mismatch (torch's to report); every rank returns in the after_collective cell"
        )
    if model in TORCHRUN and phase in ("startup", "checkpoint"):
        return (
            "cost (a torchrun job takes ~15 s here): rank 0's start and checkpoint are the "
            "main model's code; logging, close and after_collective stand for the rest"
        )
    return None


SKIPPED_CELLS: dict[str, str] = {c.id: r for c in ALL_CELLS if (r := skip_reason(c)) is not None}
CELLS = [c for c in ALL_CELLS if c.id not in SKIPPED_CELLS]


def expected(cell: Cell) -> str:
    """The run's status as the record holds it after the cell (the rule of the docstring)."""
    model, event, phase = cell.model, cell.event, cell.phase
    if event == "return":
        return Status.COMPLETE
    held = phase == "close" and model != "torchrun1"  # rank 0 ends the run, signals held
    if event == "hang":
        return Status.RUNNING if held else Status.INTERRUPTED
    if model in CHILDREN:
        return Status.COMPLETE
    if model == "thread" and event in ("exception", "exit"):
        return Status.COMPLETE
    if event in ("os_exit", "sigkill"):
        return Status.FAILED if model == "torchrun1" else Status.RUNNING
    if event in ("sigterm", "sigint"):
        return Status.COMPLETE if held else Status.INTERRUPTED
    return Status.FAILED


def default_cells() -> set[str]:
    """One cell per model x event: the logging phase, else the first phase that runs."""
    chosen = set()
    for model in MODELS:
        for event in EVENTS:
            row = [c for c in CELLS if (c.model, c.event) == (model, event)]
            if row:
                pick = next((c for c in row if c.phase == "logging"), row[0])
                chosen.add(pick.id)
    return chosen


DEFAULT = default_cells()


def _param(cell: Cell) -> object:
    marks = [] if cell.id in DEFAULT else [pytest.mark.matrix]
    if cell.model == "slurm":
        marks += [pytest.mark.slurm, needs_slurm]
    return pytest.param(cell, id=cell.id, marks=marks)


# ------------------------------------------------------------------ launching
def batchable(cell: Cell) -> bool:
    """Whether the cell leaves the run's process alive (it can share it with others)."""
    if cell.model in TORCHRUN or cell.model == "slurm" or cell.event == "hang":
        return False
    if cell.event == "return" or cell.model in CHILDREN:
        return True
    return cell.model == "thread" and cell.event in ("exception", "exit")


@dataclass
class Launch:
    """One process tree: a task running one cell, or several as a Hydra sweep."""

    name: str
    cells: list[Cell]
    kind: str  # plain | torchrun | slurm

    @property
    def hang(self) -> bool:
        return any(c.event == "hang" for c in self.cells)


def launches(cells: list[Cell], batch: int = 8) -> list[Launch]:
    out: list[Launch] = []
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if batchable(cell):
            groups.setdefault(cell.model, []).append(cell)
        else:
            kind = (
                "torchrun"
                if cell.model in TORCHRUN
                else "slurm"
                if cell.model == "slurm"
                else "plain"
            )
            out.append(Launch(cell.id, [cell], kind))
    for model, group in groups.items():
        for i in range(0, len(group), batch):
            out.append(Launch(f"{model}-batch{i // batch}", group[i : i + batch], "plain"))
    # the slowest first, so that the pool of workers ends together
    cost = {"torchrun": 0, "slurm": 1, "plain": 2}
    return sorted(out, key=lambda launch: (cost[launch.kind], -len(launch.cells)))


@dataclass
class Outcome:
    """What a launch left: each cell's run, the verdicts, the output."""

    output: str = ""
    runs: dict[str, Path] = field(default_factory=dict)  # cell id -> run directory
    before: dict[str, dict] = field(default_factory=dict)  # run dir name -> info before repair
    first: Verdict | None = None
    repaired: Verdict | None = None
    final: Verdict | None = None
    error: str | None = None


def info(run: Path) -> dict:
    return json.loads((run / "metadata" / "info.json").read_text())


def _wait_for(check, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _read(paths: list[Path]) -> str:
    return "".join(p.read_text(errors="replace") for p in paths if p.exists())


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _tree(root: int) -> set[int]:
    """``root`` and its living descendants (torchrun starts its ranks in sessions of
    their own: a process group does not hold them)."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents[int(proc.name)] = int(fields[1])
    found, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return {pid for pid in found if pid in parents}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _lock_held(run: Path) -> bool:
    """Whether a process still holds ``run``'s writer lock (a killed process's is
    dropped by the kernel once it has died: verify must not race a dying writer)."""
    try:
        fd = os.open(run / "metadata" / ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _kill_tree(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _run_local(launch: Launch, script: Path, logs: Path, out: Path) -> str:
    cells = ",".join(c.id for c in launch.cells)
    args = ["-m", f"cell={cells}"] if len(launch.cells) > 1 else [f"cell={cells}"]
    if launch.kind == "torchrun":
        cmd = [str(TORCHRUN_BIN), "--standalone", "--nproc_per_node=2", str(script), *args]
    else:
        cmd = [sys.executable, str(script), *args]
    env = task_env(RUNLAB_LOGS=str(logs), RUNLAB_DIST_TIMEOUT_S="60")
    with open(out, "w") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=script.parent,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    tree: set[int] = set()
    try:
        if launch.hang:
            if not _wait_for(lambda: "HANG" in _read([out]), 120):
                return "the hang never began"
            time.sleep(0.5)
            tree = _tree(proc.pid)
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                pass
            tree |= _tree(proc.pid)
            _kill_tree(tree)  # what is left, as a time limit's SIGKILL
        try:
            proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            return "the launch did not end in 240 s"
    finally:
        _killpg(proc.pid, signal.SIGKILL)  # orphans of a hang, a killed rank's children
        proc.wait()
        if launch.hang:  # SIGKILL takes a moment: verify must not see a dying writer
            _wait_for(lambda: not any(_alive(p) for p in tree), 30)
    return ""


def _run_slurm(launch: Launch, script: Path, logs: Path, out: Path) -> str:
    (cell,) = launch.cells
    cmd = [
        "sbatch",
        "--parsable",
        "--array=0-1",
        "--partition=debug",
        "--time=5",
        f"--output={out.parent}/slurm-%a.out",
        "--chdir",
        str(script.parent),
        "--wrap",
        f"{sys.executable} {script} cell={cell.id}",
    ]
    env = task_env(RUNLAB_LOGS=str(logs))
    sub = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if sub.returncode != 0:
        return f"sbatch: {sub.stderr}"
    job = sub.stdout.strip().split(";")[0]
    outs = [out.parent / "slurm-0.out", out.parent / "slurm-1.out"]

    def gone() -> bool:
        q = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True)
        return q.returncode == 0 and not q.stdout.strip()

    if cell.event == "hang":
        if not _wait_for(lambda: "HANG" in _read(outs), 300):
            subprocess.run(["scancel", job])
            return "the hang never began"
        time.sleep(0.5)
        subprocess.run(["scancel", f"{job}_1"], check=True)
    if not _wait_for(gone, 300):
        subprocess.run(["scancel", job])
        return f"job {job} did not end in 300 s"
    time.sleep(1)  # the output files of the last task
    return ""


def run_launch(launch: Launch, script: Path, root: Path) -> Outcome:
    folder = root / launch.name
    folder.mkdir(parents=True)
    logs, out = folder / "logs", folder / "out.txt"
    outcome = Outcome()
    runner = _run_slurm if launch.kind == "slurm" else _run_local
    outcome.error = runner(launch, script, logs, out) or None
    outcome.output = _read([*sorted(folder.glob("*.out")), out])
    if not logs.is_dir():
        outcome.error = outcome.error or "no logs directory"
        return outcome
    for run in sorted(p for p in logs.iterdir() if p.name.isdigit()):
        try:
            cfg = json.loads((run / "metadata" / "config.json").read_text())
            outcome.before[run.name] = info(run)
        except (OSError, ValueError):
            continue
        key = cfg["cell"] if cfg["cell"] not in outcome.runs else f"{cfg['cell']}#2"
        outcome.runs[key] = run
    if any(c.event == "hang" for c in launch.cells):  # a killed writer's lock: gone
        _wait_for(lambda: not any(_lock_held(run) for run in outcome.runs.values()), 30)
    outcome.first = verify(Logs(logs), deep=True)
    outcome.repaired = verify(Logs(logs), deep=True, repair=True)
    outcome.final = verify(Logs(logs), deep=True)
    return outcome


class Matrix:
    """The launches of the selected cells, run in parallel when the first cell asks."""

    def __init__(self, cells: list[Cell], script: Path, root: Path) -> None:
        self.script, self.root = script, root
        self.plan = launches(cells)
        self.of = {c.id: launch for launch in self.plan for c in launch.cells}
        self.pool = ThreadPoolExecutor(max_workers=WORKERS)
        self.futures: dict[str, Future[Outcome]] = {}
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            if self.futures:
                return
            for launch in self.plan:
                self.futures[launch.name] = self.pool.submit(
                    run_launch, launch, self.script, self.root
                )

    def outcome(self, cell: Cell) -> Outcome:
        self.start()
        return self.futures[self.of[cell.id].name].result()


@pytest.fixture(scope="module")
def matrix(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matrix]:
    folder = tmp_path_factory.mktemp("faults")
    script = folder / "faults.py"
    shutil.copy(TASKS / "faults.py", script)
    shutil.copy(TASKS / "faults.yaml", folder / "faults.yaml")
    selected = [
        item.callspec.params["cell"]
        for item in request.session.items
        if item.module is request.module
        and hasattr(item, "callspec")
        and "cell" in item.callspec.params
    ]
    found = Matrix(selected, script, folder / "launches")
    yield found
    found.pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ the checks
def steps(run: Path) -> list[int]:
    path = run / "metrics" / "train.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def violations(verdict: Verdict | None, run: Path) -> list[str]:
    assert verdict is not None
    return [v.line() for v in verdict.violations if v.where in (f"run {run.name}",)]


def check_run(run: Path, status: str, outcome: Outcome, what: str) -> None:
    """The run's record says ``status``; verify agrees, or names a dead RUNNING run."""
    out = f"{what}\n--- output ---\n{outcome.output[-6000:]}"
    record = outcome.before[run.name]
    assert record["status"] == status, f"{run.name}: {record['status']} != {status}\n{out}"
    got = steps(run)
    assert got == list(range(len(got))), f"steps {got}\n{out}"  # each once, in order
    if status == Status.COMPLETE:
        assert got == list(range(ROWS)), out
    found = violations(outcome.first, run)
    if status == Status.RUNNING:
        assert any("[3]" in v for v in found) and len(found) == 1, f"{found}\n{out}"
        assert outcome.repaired is not None
        mine = f"run {run.name}: marked LOST"  # (a batch's other runs share the verify)
        (lost,) = [r for r in outcome.repaired.repaired if r.startswith(mine)]
        assert lost.startswith(f"{mine} (its process ") and "gone" in lost
        assert info(run)["status"] == Status.LOST, out
    else:
        assert found == [], f"{found}\n{out}"
    assert violations(outcome.final, run) == [], out


@pytest.mark.parametrize("cell", [_param(c) for c in CELLS])
def test_the_record_tells_the_truth(matrix: Matrix, cell: Cell) -> None:
    outcome = matrix.outcome(cell)
    what = f"cell {cell.id}: expected {expected(cell)}"
    assert outcome.error is None, f"{what}: {outcome.error}\n{outcome.output[-6000:]}"
    run = outcome.runs.get(cell.id)
    assert run is not None, f"{what}: no run\n{outcome.output[-6000:]}"
    if cell.model != "slurm":  # (two runs of one cell: by array task, below)
        check_run(run, expected(cell), outcome, what)
    assert outcome.final is not None and outcome.final.violations == [], outcome.final.as_json()
    if cell.model in TORCHRUN:
        assert outcome.before[run.name].get("world_size") == 2, outcome.before[run.name]
    if cell.model == "nested":  # the inner task: a run of its own, with its own outcome
        inner = outcome.runs.get(f"inner-{cell.event}-logging")
        assert inner is not None, outcome.output[-6000:]
        own = Cell("main", cell.event, "logging")
        status = Status.RUNNING if cell.event == "hang" else expected(own)
        check_run(inner, status, outcome, f"{what}, its inner task")
    if cell.model == "slurm":  # task 0 of the array: the healthy twin
        twin = outcome.runs.get(f"{cell.id}#2")
        assert twin is not None, outcome.output[-6000:]
        tasks = {str(outcome.before[p.name].get("array_task_id")): p for p in (run, twin)}
        assert set(tasks) == {"0", "1"}, outcome.before
        check_run(tasks["1"], expected(cell), outcome, f"{what}, array task 1")
        check_run(tasks["0"], Status.COMPLETE, outcome, f"{what}, array task 0 (the twin)")


def test_every_cell_is_run_or_skipped_with_a_reason() -> None:
    """cells = run + skipped; every model x event has a cell in the default suite."""
    assert len(ALL_CELLS) == len(MODELS) * len(EVENTS) * len(PHASES) == 400
    assert len(ALL_CELLS) == len(CELLS) + len(SKIPPED_CELLS)
    assert all(reason.strip() for reason in SKIPPED_CELLS.values())
    covered = {(c.model, c.event) for c in CELLS if c.id in DEFAULT}
    assert covered == {(m, e) for m in MODELS for e in EVENTS}
    print(f"fault matrix: {len(ALL_CELLS)} cells, {len(CELLS)} run ({len(DEFAULT)} by default)")
    print(f"{len(SKIPPED_CELLS)} skipped:")
    for cell_id, reason in sorted(SKIPPED_CELLS.items()):
        print(f"  {cell_id}: {reason}")


def test_a_task_started_by_a_rank_is_a_run_of_its_own(tmp_path: Path) -> None:
    """Each rank of a torchrun job starts another task (a subprocess): torchrun's
    variables (RANK, WORLD_SIZE, MASTER_ADDR...) reach it, yet it is one process, a run
    of its own that completes; it took itself for a rank of the job and tried to join
    its process group."""
    folder = tmp_path / "task"
    folder.mkdir()
    script = folder / "faults.py"
    shutil.copy(TASKS / "faults.py", script)
    shutil.copy(TASKS / "faults.yaml", folder / "faults.yaml")
    launch = Launch("ranknested", [Cell("ranknested", "return", "logging")], "torchrun")
    outcome = run_launch(launch, script, tmp_path / "launches")
    out = outcome.output[-6000:]
    assert outcome.error is None, f"{outcome.error}\n{out}"
    outer = outcome.runs["ranknested-return-logging"]
    check_run(outer, Status.COMPLETE, outcome, "the torchrun job")
    assert outcome.before[outer.name]["world_size"] == 2
    inner = [p for key, p in outcome.runs.items() if key.startswith("inner-return-logging")]
    assert len(inner) == 2, out  # one task started by each rank
    for run in inner:
        check_run(run, Status.COMPLETE, outcome, "a task started by a rank")
        assert "world_size" not in outcome.before[run.name], outcome.before[run.name]
        assert not (run / "ranks").exists()
    assert outcome.final is not None and outcome.final.ok, outcome.final.as_json()
