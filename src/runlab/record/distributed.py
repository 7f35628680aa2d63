"""Several ranks, one run: torch.distributed set up from torchrun's or SLURM's environment.

Where the ranks come from (:func:`from_env`, first match wins):

- ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``: torchrun, or
  runlab's own launchers (the local spawner of :func:`spawn`, and the SLURM job of
  :mod:`runlab.sweep.jobs`, which set exactly what torchrun would);
- ``SLURM_PROCID``/``SLURM_LOCALID``/``SLURM_STEP_NUM_TASKS`` of an ``srun`` step with
  more than one task (submitit's ``tasks_per_node``): ``MASTER_ADDR`` is the first
  node of the step, ``MASTER_PORT`` one drawn from the job id (as submitit does);
- anything else: one process, rank 0 of 1 (nothing of torch is imported).

**One record per job.** Every rank runs the task; rank 0 opens the run directory
(``info.yaml``, heartbeat, metrics, checkpoints, artifacts) and sends its path to
the others over the process group. The other ranks get a :class:`PeerLogger`: its
``log_metrics`` does nothing unless ``all_ranks=True`` (then it writes
``metrics/<name>.rank<k>.jsonl``), its checkpoints and artifacts are rank 0's.
Each rank's stdout and stderr are copied to ``ranks/rank<k>.out`` and ``.err``
in the run directory; ``info.yaml`` notes ``world_size``, ``nodes``, ``backend``
and ``rank_hosts`` (the host of each rank, by rank).

**Failures.** A rank > 0 that raises writes ``ranks/rank<k>.failed.json`` (its
error and traceback) before it exits; every rank watches that folder (and the
others watch rank 0's status) and stops itself (SIGTERM) when another rank
failed, so nobody waits in a collective for a rank that is gone; the process
group's timeout (``RUNLAB_DIST_TIMEOUT_S``, 600 s) bounds the rest. Rank 0 then
records the run ``FAILED`` with that rank's error and traceback
(:func:`rank_outcome`, called by :mod:`runlab.record.lifecycle`). The local spawner and
torchrun also stop the other ranks when one exits with an error.

**The job's status, not rank 0's.** A rank > 0 stopped by a signal writes the same
file with its status (INTERRUPTED, PREEMPTED), and every rank > 0 that ends in
Python's hands writes ``ranks/rank<k>.end.json``: a rank of rank 0's host gone
without it (``os._exit``, SIGKILL, a crash) fails the run. Rank 0 meets the others
(:meth:`Dist.meet`) once its task returned, before it writes the status, so that a
rank failing after the last collective, or while closing its logger, is counted.
A process started by a rank (another task, run as a subprocess) inherits torchrun's
variables but is no rank: ``RUNLAB_RANK_PID`` names the rank's own process.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from runlab.record import metricsfile, secrets
from runlab.record.files import now_iso, write_atomic
from runlab.record.logger import RunLogger
from runlab.record.names import check_name
from runlab.record.process import alive
from runlab.record.rundir import RUN_DIR_ENV, RunDir, RunDirError
from runlab.record.stops import Interrupted
from runlab.status import Status

TIMEOUT_ENV = "RUNLAB_DIST_TIMEOUT_S"
BACKEND_ENV = "RUNLAB_DIST_BACKEND"
RANK_PID_ENV = "RUNLAB_RANK_PID"  # the pid of the process that is a rank (see from_env)
DEFAULT_TIMEOUT_S = 600.0
RANKS = "ranks"  # the folder of a run directory with each rank's output and failure
STOP_GRACE_S = 30.0  # a spawner waits this long after SIGTERM before SIGKILL


class DistError(RunDirError):
    """The ranks could not be set up or could not agree on a run; one line for the user."""


# ------------------------------------------------------------------ the ranks
@dataclass
class Dist:
    """What a task knows of its ranks (``ctx.dist``); one process is rank 0 of 1."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    nodes: int = 1
    master_addr: str | None = None
    master_port: int | None = None
    source: str = "single"  # what started the ranks: single | torchrun | srun
    backend: str | None = None  # gloo | nccl, once initialized
    hosts: list[str] = field(default_factory=list)  # rank -> host, once initialized
    pids: list[int] = field(default_factory=list)  # rank -> pid, once initialized
    met: bool = False  # the ranks met at the end of the task (meet()): no barrier at teardown

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device(self) -> Any:
        """``cuda:LOCAL_RANK`` where torch sees a GPU, else the CPU."""
        import torch

        if torch.cuda.is_available():
            return torch.device(f"cuda:{self.local_rank % max(1, torch.cuda.device_count())}")
        return torch.device("cpu")

    def init(self, backend: str | None = None, timeout_s: float | None = None) -> Dist:
        """Join the process group (NCCL on GPUs, Gloo on the CPU); nothing on one rank."""
        if self.world_size <= 1:
            return self
        import datetime

        import torch
        import torch.distributed as dist

        if dist.is_initialized():
            self.backend = dist.get_backend()
            return self
        backend = backend or os.environ.get(BACKEND_ENV) or choose_backend()
        if backend == "nccl":
            torch.cuda.set_device(self.device)
        os.environ.setdefault("MASTER_ADDR", self.master_addr or "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(self.master_port or 29500))
        timeout = float(timeout_s or os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
        try:
            dist.init_process_group(
                backend=backend,
                init_method="env://",
                rank=self.rank,
                world_size=self.world_size,
                timeout=datetime.timedelta(seconds=timeout),
            )
        except Exception as exc:
            raise DistError(
                f"rank {self.rank} of {self.world_size} could not join the process group at "
                f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({backend}): "
                f"{_first_line(exc)}; check that every rank started (runlab show, ranks/)"
            ) from exc
        self.backend = backend
        hosts: list[Any] = [None] * self.world_size
        dist.all_gather_object(hosts, (socket.gethostname(), os.getpid()))
        self.hosts = [str(h) for h, _ in hosts]
        self.pids = [int(p) for _, p in hosts]
        self.nodes = len(dict.fromkeys(self.hosts))
        return self

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def all_reduce(self, tensor: Any) -> Any:
        """Sum ``tensor`` over the ranks, in place (returned); itself on one rank."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, by rank, on every rank (``[obj]`` on one rank)."""
        if self.world_size <= 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def meet(self) -> None:
        """Rank 0, once its task returned: wait for every rank to end its task (the barrier
        the others reach in `teardown`), so that the run's final status, written
        next, knows how each of them ended. Raises when a rank ended otherwise."""
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            self.met = True
            dist.barrier()

    def teardown(self, wait: bool = True) -> None:
        """Leave the process group before the interpreter ends.

        A rank that exits with its group still alive can abort in Gloo's destructor
        ("terminate called without an active exception") while its peers still write,
        and torchrun then kills them all. With ``wait`` (the task ended well) the ranks
        first meet at a barrier, so none leaves while another still needs it; after a
        failure each leaves at once, since a peer may never reach the barrier.
        """
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        try:
            if wait and not self.met:
                dist.barrier()
        except Exception:
            pass  # a peer ended first: nothing left to wait for
        finally:
            try:
                dist.destroy_process_group()
            except Exception:
                pass

    def record(self) -> dict[str, Any]:
        """What ``info.yaml`` notes of the ranks."""
        return {
            "world_size": self.world_size,
            "nodes": self.nodes,
            "backend": self.backend,
            "rank_hosts": list(self.hosts) or None,
        }


def choose_backend() -> str:
    """``nccl`` where torch sees a GPU and has NCCL, else ``gloo``."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def _int(env: Mapping[str, str], *names: str, default: int = 0) -> int:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(str(value).split("(")[0])
            except ValueError:
                pass
    return default


def from_env(env: Mapping[str, str] | None = None) -> Dist:
    """The ranks this process belongs to, from torchrun's or SLURM's environment.

    A process started by a rank (a subprocess running another task) inherits that
    environment, yet is no rank of the job: the rank that set up the job's ranks
    notes its pid in ``RUNLAB_RANK_PID`` (:func:`setup`); another process that finds
    it is one process, rank 0 of 1."""
    env = os.environ if env is None else env
    owner = env.get(RANK_PID_ENV)
    if owner not in (None, "") and owner != str(os.getpid()):
        return Dist()
    if env.get("RANK") not in (None, "") and env.get("WORLD_SIZE") not in (None, ""):
        world = _int(env, "WORLD_SIZE", default=1)
        local_world = _int(env, "LOCAL_WORLD_SIZE", default=world)
        return Dist(
            rank=_int(env, "RANK"),
            local_rank=_int(env, "LOCAL_RANK"),
            world_size=world,
            local_world_size=local_world,
            node_rank=_int(env, "GROUP_RANK", "SLURM_NODEID"),
            nodes=max(1, -(-world // max(1, local_world))),
            master_addr=env.get("MASTER_ADDR"),
            master_port=_int(env, "MASTER_PORT", default=0) or None,
            source="torchrun",
        )
    tasks = _int(env, "SLURM_STEP_NUM_TASKS", default=1)
    if env.get("SLURM_STEP_ID") not in (None, "") and tasks > 1 and "SLURM_PROCID" in env:
        nodes = _int(env, "SLURM_STEP_NUM_NODES", "SLURM_NNODES", default=1)
        job = _int(env, "SLURM_JOB_ID")
        return Dist(
            rank=_int(env, "SLURM_PROCID"),
            local_rank=_int(env, "SLURM_LOCALID"),
            world_size=tasks,
            local_world_size=max(1, tasks // max(1, nodes)),
            node_rank=_int(env, "SLURM_NODEID"),
            nodes=nodes,
            master_addr=env.get("MASTER_ADDR") or _first_host(env.get("SLURM_STEP_NODELIST")),
            master_port=_int(env, "MASTER_PORT") or 20000 + job % 40000,
            source="srun",
        )
    return Dist()


def _first_host(nodelist: str | None) -> str:
    """The first host of a SLURM node list (``node[03-05,9]`` -> ``node03``)."""
    if not nodelist:
        return socket.gethostname()
    import subprocess

    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    head, _, rest = nodelist.partition("[")
    if not rest:
        return head.split(",")[0]
    return head + rest.split(",")[0].split("-")[0].rstrip("]")


_CURRENT: Dist | None = None


def setup() -> Dist:
    """This process's ranks, joined into the process group when there are several."""
    global _CURRENT
    if _CURRENT is not None and _CURRENT.world_size > 1:
        return _CURRENT
    dist = from_env()
    if dist.world_size > 1:
        os.environ[RANK_PID_ENV] = str(os.getpid())  # its children are not ranks (from_env)
        dist.init()
    _CURRENT = dist
    return dist


# -------------------------------------------------------- sharing the run dir
def share_run(dist: Dist, run: RunDir) -> None:
    """Rank 0, once its run is open: note the ranks, send the path, copy the output."""
    if dist.world_size <= 1:
        return
    import torch.distributed as dist_

    folder = run.path / RANKS
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("rank*.*.json"):  # an earlier attempt's failures
        stale.unlink(missing_ok=True)
    run.update_info(**dist.record())
    dist_.broadcast_object_list([str(run.path)], src=0)
    tee_output(run, dist.rank)
    _Watcher.start(run, dist.rank)


def _receive_run(dist: Dist) -> RunDir:
    import torch.distributed as dist_

    box: list[Any] = [None]
    try:
        dist_.broadcast_object_list(box, src=0)
    except Exception as exc:
        raise DistError(
            f"rank {dist.rank}: rank 0 ended before it opened the run ({_first_line(exc)}); "
            "see rank 0's output for why"
        ) from None
    return RunDir(box[0])


def run_peer(task_fn: Callable[[Any], Any], make_context: Callable[..., Any], dist: Dist) -> Any:
    """Run the task on a rank > 0, beside rank 0's record of the run.

    However the rank ends, rank 0 learns it before it writes the run's status: an
    error or a stop of its own is ``ranks/rank<k>.failed.json`` (not when it only
    follows rank 0's end), and every end that Python sees is ``ranks/rank<k>.end.json``;
    a rank that left neither (``os._exit``, SIGKILL) was lost (:func:`rank_outcome`)."""
    run = _receive_run(dist)
    tee_output(run, dist.rank)
    watcher = _Watcher.start(run, dist.rank)
    logger = PeerLogger(run, dist.rank)
    try:
        try:
            result = task_fn(make_context(logger=logger, run_dir=run.path, run_id=run.run_id))
        except BaseException:
            watcher.stop()
            try:
                logger.close()
            except Exception:
                pass
            raise
        watcher.stop()
        logger.close()  # its rows are the run's too: an error here fails the rank
        return result
    except (Interrupted, KeyboardInterrupt) as exc:
        if not watcher.stopped_by_peer:
            status = exc.status if isinstance(exc, Interrupted) else Status.INTERRUPTED
            _write_failure(run, dist, exc, exc.__traceback__, status=status)
        raise
    except SystemExit as exc:
        if exc.code not in (0, None):
            _write_failure(run, dist, exc, exc.__traceback__)
        raise
    except BaseException as exc:
        if not watcher.stopped_by_peer:
            _write_failure(run, dist, exc, exc.__traceback__)
        raise
    finally:
        _write_end(run, dist)


def _write_end(run: RunDir, dist: Dist) -> None:
    """``ranks/rank<k>.end.json``: this rank ended in Python's hands (see :func:`run_peer`)."""
    data = {"rank": dist.rank, "host": socket.gethostname(), "pid": os.getpid()}
    try:
        write_atomic(run.path / RANKS / f"rank{dist.rank}.end.json", orjson.dumps(data))
    except OSError:
        pass


def _write_failure(
    run: RunDir, dist: Dist, exc: BaseException, tb: Any, status: str = Status.FAILED
) -> None:
    """``ranks/rank<k>.failed.json``, unless rank 0 has ended the run already. ``status``:
    what it makes of the run (FAILED; INTERRUPTED or PREEMPTED for a stop signal)."""
    if run.read_info().get("status") not in (Status.RUNNING, None):
        return  # rank 0 ended first: this rank's error is its consequence, not the cause
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    data = {
        "rank": dist.rank,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": time.time(),
        "status": str(status),
        "error": {"type": type(exc).__name__, "message": str(exc), "rank": dist.rank},
        "traceback": f"rank {dist.rank} ({socket.gethostname()}, pid {os.getpid()}):\n{text}",
    }
    try:
        (run.path / RANKS).mkdir(exist_ok=True)
        # The error's text can hold a credential (an exception message): redacted, as the
        # traceback.txt and info that rank 0 makes of it are.
        data = secrets.redact(data)
        write_atomic(run.path / RANKS / f"rank{dist.rank}.failed.json", orjson.dumps(data))
    except OSError:
        pass


def failures(run: RunDir | Path) -> list[dict[str, Any]]:
    """The failures other ranks recorded in this attempt, first first."""
    folder = (run.path if isinstance(run, RunDir) else Path(run)) / RANKS
    out = []
    try:
        paths = list(folder.glob("rank*.failed.json"))
    except OSError:
        return []
    for path in paths:
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return sorted(out, key=lambda d: (d.get("time") or 0, d.get("rank") or 0))


def rank_outcome(run: RunDir) -> tuple[Status, dict[str, Any], str] | None:
    """For rank 0's end: ``(status, error, traceback)`` when another rank ended the job
    (the first that raised or was stopped; else one lost without a word), else None."""
    _Watcher.stop_all()
    if not (run.path / RANKS).is_dir():
        return None
    found = failures(run)
    if found:
        first = found[0]
        status = Status.of(first.get("status")) or Status.FAILED
        return status, dict(first.get("error") or {}), str(first.get("traceback") or "")
    return _lost_rank(run, _CURRENT)


def _lost_rank(
    run: RunDir, dist: Dist | None, wait_s: float = 1.0
) -> tuple[Status, dict[str, Any], str] | None:
    """``(FAILED, error, text)`` for a rank of this host whose process is gone without
    ``ranks/rank<k>.end.json`` (``os._exit``, SIGKILL, a crash): the job failed with it.
    A rank still alive is given ``wait_s`` to end or to say how it ends."""
    if dist is None or dist.world_size <= 1 or len(dist.pids) != dist.world_size:
        return None
    host = socket.gethostname()
    deadline = time.monotonic() + wait_s
    for rank in range(1, dist.world_size):
        pid = dist.pids[rank]
        if dist.hosts[rank] != host:
            continue  # only its own host can tell
        ended = run.path / RANKS / f"rank{rank}.end.json"
        while _pid_alive(pid) and not ended.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if ended.exists() or _pid_alive(pid):
            continue
        message = (
            f"rank {rank} (pid {pid} on {host}) ended without a word: killed (SIGKILL, out of "
            "memory) or os._exit"
        )
        return Status.FAILED, {"type": "RankLost", "message": message, "rank": rank}, message
    return None


def _pid_alive(pid: int) -> bool:
    return alive(pid)


def settle(run_dir: RunDir | Path | str | None) -> None:
    """After every rank ended: a run rank 0 left ``RUNNING`` (killed) takes a rank's failure."""
    if not run_dir:
        return
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    info = run.read_info()
    found = failures(run)
    if info.get("status") not in (Status.RUNNING, Status.QUEUED) or not found:
        return
    first = found[0]
    write_atomic(
        run.metadata / "traceback.txt",
        secrets.redact_text(str(first.get("traceback") or "")).encode(),
    )
    status = Status.of(first.get("status")) or Status.FAILED
    run.update_info(status=status, error=first.get("error"), end_time=_now())


def _now() -> str:
    return now_iso()


# ------------------------------------------------------------------ watching
class _Watcher(threading.Thread):
    """Stop this rank (SIGTERM to itself) when another rank failed, or rank 0 ended so."""

    active: list[_Watcher] = []  # noqa: RUF012

    def __init__(self, run: RunDir, rank: int, interval: float = 0.5) -> None:
        super().__init__(name="runlab-ranks", daemon=True)
        self.rundir, self.rank, self.interval = run, rank, interval
        self._stop_event = threading.Event()
        self.stopped_by_peer = False

    @classmethod
    def start(cls, run: RunDir, rank: int) -> _Watcher:  # type: ignore[override]
        watcher = cls(run, rank)
        cls.active.append(watcher)
        threading.Thread.start(watcher)
        return watcher

    @classmethod
    def stop_all(cls) -> None:
        for watcher in cls.active:
            watcher.stop()
        cls.active.clear()

    def stop(self) -> None:
        self._stop_event.set()

    def _peer_ended(self) -> bool:
        mine = f"rank{self.rank}.failed.json"
        try:
            folder = self.rundir.path / RANKS
            if any(p.name != mine for p in folder.glob("rank*.failed.json")):
                return True
        except OSError:
            return False
        if self.rank != 0:
            return self.rundir.read_info().get("status") in (Status.FAILED, Status.INTERRUPTED)
        return False

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            if self._peer_ended():
                if self._stop_event.is_set():
                    return
                self.stopped_by_peer = True
                os.kill(os.getpid(), signal.SIGTERM)
                return


# ----------------------------------------------------------------- the output
class _Tee(io.TextIOBase):
    """A text stream that writes to the original stream and to a file."""

    def __init__(self, stream: TextIO, path: Path) -> None:
        self.stream = stream
        self.file = open(path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115

    def write(self, text: str) -> int:
        try:
            self.stream.write(text)
        except (OSError, ValueError):
            pass
        try:
            self.file.write(text)
        except (OSError, ValueError):
            pass
        return len(text)

    def flush(self) -> None:
        for s in (self.stream, self.file):
            try:
                s.flush()
            except (OSError, ValueError):
                pass

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


def tee_output(run: RunDir, rank: int) -> None:
    """Copy this process's stdout and stderr to ``ranks/rank<k>.out`` and ``.err``."""
    folder = run.path / RANKS
    folder.mkdir(exist_ok=True)
    for name, suffix in (("stdout", "out"), ("stderr", "err")):
        current = getattr(sys, name)
        if isinstance(current, _Tee):
            current = current.stream
        setattr(sys, name, _Tee(current, folder / f"rank{rank}.{suffix}"))


# ----------------------------------------------------------------- the logger
class PeerLogger(RunLogger):
    """The logger of a rank > 0: rank 0 writes the run; this one only ``all_ranks`` rows.

    ``log_metrics(..., all_ranks=True)`` appends to ``metrics/<name>.rank<k>.jsonl``;
    without it the call does nothing. Checkpoints and artifacts are rank 0's: here
    they are not written (the path rank 0 writes is returned); ``load_checkpoint``
    reads rank 0's. After a resumed run loads its checkpoint, the first row of each
    of this rank's files replaces the rows of the previous attempt from its step on
    (rank 0 cuts its own files at the checkpoint; this rank's rows are cut here, by
    step, since this rank wrote them on its own clock).
    """

    writes_record = False  # rank 0 holds the run's lock

    def __init__(self, run_dir: Path | str | RunDir, rank: int, flush_interval: float = 1.0):
        self.rank = rank
        self._recut: set[str] | None = None  # files still to cut after a resume
        super().__init__(run_dir, flush_interval=flush_interval, resume=False)

    def _remove_temporaries(self) -> None:
        pass  # rank 0's checkpoint and artifact writes in flight: never touch them

    def log_metrics(
        self,
        metrics: Mapping[str, Any],
        name: str = "train",
        step: int | None = None,
        all_ranks: bool = False,
    ) -> None:
        if not all_ranks:
            return
        own = metricsfile.rank_name(name, self.rank)
        if self._recut is not None and own not in self._recut:
            self._recut.add(own)
            given = step if step is not None else metrics.get("step")
            if isinstance(given, int) and not isinstance(given, bool):
                self._cut_from(own, given)
        super().log_metrics(metrics, name=name, step=step, all_ranks=True)

    def _cut_from(self, stem: str, step: int) -> None:
        """Drop the rows of ``metrics/<stem>.jsonl`` from ``step`` on (a previous attempt's)."""
        path = metricsfile.jsonl_path(self.run.metrics, stem)
        if stem in self._fds or not path.exists():
            return
        keep = 0
        for line in metricsfile.complete_lines(path.read_bytes()):
            row = metricsfile.parse_row(line)
            if row is None or not isinstance(row.get("step"), int) or row["step"] >= step:
                break
            keep += len(line) + 1
        if path.stat().st_size > keep:
            with open(path, "r+b") as fh:
                fh.truncate(keep)

    def log_checkpoint(self, state: Any, name: str = "last") -> Path:
        check_name(name, "log_checkpoint(name=)")
        self.flush()
        return self.run.checkpoints / f"{name}.pt"

    def log_artifact(self, obj: Any, name: str | None = None) -> Path:
        if name is not None:
            check_name(name, "log_artifact(name=)")
        default = Path(obj).name if isinstance(obj, (str, os.PathLike)) else "artifact"
        return self.run.artifacts / (name or default)

    def load_checkpoint(self, name: str = "last", **load_kwargs: Any) -> Any:
        state = super().load_checkpoint(name, **load_kwargs)
        if name == "last" and state is not None and self._recut is None and not self._fds:
            self._recut = set()
        return state


# --------------------------------------------------------- starting the ranks
def free_store(host: str = "127.0.0.1") -> Any:
    """A TCPStore on a port the kernel picked (port 0: no race with other jobs).

    The ranks join it as torchrun's workers join its agent's store
    (``TORCHELASTIC_USE_AGENT_STORE``), so no rank has to bind a port that might
    be taken between its choice and its use.
    """
    import datetime

    import torch.distributed as dist

    timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    return dist.TCPStore(
        host,
        0,
        is_master=True,
        wait_for_workers=False,
        timeout=datetime.timedelta(seconds=timeout),
    )


def rank_env(
    rank: int,
    local_rank: int,
    world: int,
    local_world: int,
    addr: str,
    port: int,
    node_rank: int = 0,
    threads: int | None = None,
) -> dict[str, str]:
    """The environment torchrun gives a worker."""
    env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(local_world),
        "GROUP_RANK": str(node_rank),
        "MASTER_ADDR": addr,
        "MASTER_PORT": str(port),
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "TORCHELASTIC_RESTART_COUNT": "0",
    }
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


class RankGroup:
    """``tasks`` processes of one run on this machine, handled like one ``Popen``.

    A signal reaches every rank; when one rank exits with an error the others get
    SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`; ``returncode`` is the first
    non-zero exit code (0 when all succeed).
    """

    def __init__(
        self,
        args: list[str],
        tasks: int,
        env: Mapping[str, str],
        threads: int | None = None,
        **popen: Any,
    ) -> None:
        import subprocess

        self.store = free_store()
        self.run_dir = env.get(RUN_DIR_ENV)
        self.procs: list[subprocess.Popen[Any]] = []  # text or bytes: as **popen says
        port = int(self.store.port)
        # As torchrun: one thread per rank unless told (cpus_per_task, or OMP_NUM_THREADS).
        threads = threads or (None if env.get("OMP_NUM_THREADS") else 1)
        for rank in range(tasks):
            rank_vars = rank_env(rank, rank, tasks, tasks, "127.0.0.1", port, threads=threads)
            self.procs.append(subprocess.Popen(args, env={**env, **rank_vars}, **popen))
        self.pid = self.procs[0].pid
        self.returncode: int | None = None
        self._kill_at: float | None = None

    def send_signal(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def poll(self) -> int | None:
        codes = [p.poll() for p in self.procs]
        bad = [c for c in codes if c not in (None, 0)]
        if bad and None in codes:
            if self._kill_at is None:
                self._kill_at = time.time() + STOP_GRACE_S
                self.send_signal(signal.SIGTERM)
            elif time.time() > self._kill_at:
                self.kill()
            return None
        if None in codes:
            return None
        if self.returncode is None:
            self.returncode = next((c for c in codes if c != 0), 0)
            settle(self.run_dir)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        deadline = None if timeout is None else time.time() + timeout
        while True:
            code = self.poll()
            if code is not None:
                return code
            if deadline is not None and time.time() >= deadline:
                raise subprocess.TimeoutExpired(self.procs[0].args, timeout or 0)
            time.sleep(0.1)


def spawn(args: list[str], tasks: int, threads: int | None = None, **popen: Any) -> Any:
    """One process (``Popen``) for one task, a :class:`RankGroup` for several."""
    import subprocess

    if tasks <= 1:
        return subprocess.Popen(args, **popen)
    env = popen.pop("env", None) or dict(os.environ)
    return RankGroup(args, tasks, env, threads=threads, **popen)


def slurm_rank_env(run: RunDir) -> dict[str, str]:
    """In a SLURM job step of several tasks (runlab's job wrapper): the task's torchrun
    environment, with the rendezvous store hosted by the wrapper of task 0.

    Task 0 opens a store on a free port and writes its address to
    ``ranks/.master-<job>.<restart>.json`` in the run directory (a shared file
    system, as the run directory must be); the others wait for that file.
    Returns ``{}`` in a step of one task. The store is kept in :data:`_STORES`.
    """
    env = os.environ
    tasks = _int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", default=1)
    if tasks <= 1:
        return {}
    rank = _int(env, "SLURM_PROCID")
    nodes = _int(env, "SLURM_STEP_NUM_NODES", "SLURM_NNODES", default=1)
    key = f"{env.get('SLURM_JOB_ID', '0')}.{env.get('SLURM_RESTART_COUNT') or 0}"
    marker = run.path / RANKS / f".master-{key}.json"
    if rank == 0:
        store = free_store("0.0.0.0")
        _STORES.append(store)
        marker.parent.mkdir(exist_ok=True)
        addr: dict[str, Any] = {"addr": socket.gethostname(), "port": int(store.port)}
        write_atomic(marker, orjson.dumps(addr))
    else:
        deadline = time.time() + float(env.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
        while True:
            try:
                addr = orjson.loads(marker.read_bytes())
                break
            except (OSError, orjson.JSONDecodeError):
                if time.time() > deadline:
                    raise DistError(
                        f"task {rank}: no rendezvous address from task 0 in {marker}"
                    ) from None
                time.sleep(0.2)
    local_world = max(1, tasks // max(1, nodes))
    return rank_env(
        rank,
        _int(env, "SLURM_LOCALID"),
        tasks,
        local_world,
        str(addr["addr"]),
        int(addr["port"]),
        node_rank=_int(env, "SLURM_NODEID"),
    )


_STORES: list[Any] = []


def slurm_task() -> int:
    """This task's rank in its SLURM step (0 outside SLURM)."""
    return _int(os.environ, "SLURM_PROCID")


# -------------------------------------------------------------------- doctor
def doctor_check(gpus_present: bool) -> tuple[str, str, str, str]:
    """``(name, verdict, detail, fix)`` for ``runlab doctor``: torch.distributed, and NCCL
    where there are GPUs."""
    name = "torch.distributed"
    if not gpus_present:  # torch is imported only where there are GPUs (doctor stays fast)
        return name, "skip", "no GPU: several ranks on the CPU use Gloo", ""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        return name, "skip", "torch is not installed", ""
    if not dist.is_available():
        return (
            name,
            "fail",
            f"torch {torch.__version__} was built without torch.distributed: one rank per run",
            "install an official torch build (pip install torch)",
        )
    if not dist.is_nccl_available():
        return (
            name,
            "fail",
            f"torch {torch.__version__} has no NCCL backend: multi-GPU runs would use Gloo (slow)",
            "install a CUDA build of torch (pixi run -e cuda, or pip: "
            "https://pytorch.org/get-started/locally/)",
        )
    version = (
        # torch.cuda.nccl.version has no annotations
        ".".join(map(str, torch.cuda.nccl.version()))  # type: ignore[no-untyped-call]
        if torch.cuda.is_available()
        else "?"
    )
    return name, "ok", f"available (gloo, nccl {version}): runs on GPUs use NCCL", ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = ["Dist", "DistError", "PeerLogger", "from_env", "rank_outcome", "setup", "spawn"]
