"""The task of tests/test_fault_matrix.py: one cell of the fault matrix per run.

``cell=MODEL-EVENT-PHASE`` (see the test module's docstring): at PHASE, a process of
MODEL meets EVENT; the task logs 20 rows, writes a checkpoint, meets the other ranks
at a last all-reduce and barrier when there are several, and returns. ``-m cell=A,B``
runs several cells in one process (a Hydra sweep: one run each).

The phases inside runlab's own code are reached through hooks: ``startup`` runs when
the run session makes its logger (the run's first record is written, the task has not
begun); ``checkpoint`` runs while ``log_checkpoint`` pickles the state; ``close`` runs
when the session closes the logger, while it ends the run (stop signals wait then).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
import traceback

import runlab
import runlab.record.distributed as rdist
import runlab.record.lifecycle as lifecycle

HANG_S = 60.0  # a hang ends by itself after this long (no process outlives a test run)
CHILD_WAIT_S = 3.0  # a pool waits this long for a result a dead worker will never send


def act(event: str) -> None:
    """The event, in the process (or thread) that calls it."""
    if event == "exception":
        raise RuntimeError("cell-boom")
    if event == "exit":
        sys.exit(3)
    if event == "os_exit":
        os._exit(3)
    if event in ("sigterm", "sigint", "sigkill"):
        os.kill(os.getpid(), getattr(signal, event.upper()))
        time.sleep(0.5)  # a deferred stop signal (while the run ends) waits for its end
    if event == "hang":
        print(f"HANG {os.getpid()}", flush=True)
        deadline = time.time() + HANG_S
        while time.time() < deadline:
            time.sleep(0.05)


def forked(event: str) -> None:
    """``os.fork()``: the child meets the event and ends as multiprocessing's would."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            act(event)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("CHILD", os.waitstatus_to_exitcode(status), flush=True)


def pooled(event: str) -> None:
    """A fork pool of one worker runs the event; a result lost with its worker is waited
    for ``CHILD_WAIT_S`` (forever for a hang, as a pool does)."""
    with mp.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(act, (event,))
        try:
            result.get(timeout=None if event == "hang" else CHILD_WAIT_S)
            print("CHILD 0", flush=True)
        except (Exception, SystemExit) as exc:
            print("CHILD error", type(exc).__name__, flush=True)
        pool.terminate()


def loaded(event: str) -> None:
    """A torch DataLoader of two workers; the item 5 meets the event in its worker."""
    import torch

    class Data(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int):
            if i == 5:
                act(event)
            return torch.tensor([float(i)])

    batches = torch.utils.data.DataLoader(Data(), batch_size=2, num_workers=2)
    try:
        print("CHILD", sum(float(b.sum()) for b in batches), flush=True)
    except (Exception, SystemExit) as exc:
        print("CHILD error", type(exc).__name__, flush=True)


def perform(model: str, event: str) -> None:
    """A process (or thread) of ``model`` meets ``event``; called in the run's process."""
    if model in ("main", "torchrun0", "torchrun1", "slurm"):
        act(event)
    elif model == "thread":
        thread = threading.Thread(target=act, args=(event,), daemon=True)
        thread.start()
        thread.join()
    elif model == "fork":
        forked(event)
    elif model == "spawn":
        proc = mp.get_context("spawn").Process(target=act, args=(event,), daemon=True)
        proc.start()
        proc.join()
        print("CHILD", proc.exitcode, flush=True)
    elif model == "pool":
        pooled(event)
    elif model == "dataloader":
        loaded(event)
    elif model in ("nested", "ranknested"):  # another task, a run of its own, meets the event
        inner = subprocess.run([sys.executable, __file__, f"cell=inner-{event}-logging"])
        print("CHILD", inner.returncode, flush=True)
    else:
        raise ValueError(f"unknown model {model!r}")


def split(cell: str) -> tuple[str, str, str]:
    model, event, phase = cell.split("-")
    return model, event, phase


def mine(model: str, rank: int) -> bool:
    """Whether this rank's process is the one of ``model`` (rank 0 unless torchrun1;
    every rank for ``ranknested``: each rank starts a task of its own)."""
    return model == "ranknested" or rank == (1 if model == "torchrun1" else 0)


def rank_now() -> int:
    return int(os.environ.get("RANK") or 0)


def slurm_task() -> bool:
    """In a SLURM array, task 1 meets the event; task 0 is the healthy twin."""
    return os.environ.get("SLURM_ARRAY_TASK_ID", "1") == "1"


def cell_of(run_dir) -> str:
    import json

    return json.loads((run_dir / "metadata" / "config.json").read_text())["cell"]


def meet(cell: str, phase: str, rank: int) -> None:
    model, event, at = split(cell)
    if at == phase and mine(model, rank) and (model != "slurm" or slurm_task()):
        perform(model, event)


class Hooked(lifecycle.RunLogger):
    """The run session's logger, with the ``startup`` and ``close`` phases."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        meet(cell_of(self.run.path), "startup", 0)

    def close(self) -> None:
        if not getattr(self, "_met_close", False):
            self._met_close = True
            meet(cell_of(self.run.path), "close", 0)
        super().close()


lifecycle.RunLogger = Hooked
_peer_close = rdist.PeerLogger.close


def _hooked_peer_close(self) -> None:
    meet(cell_of(self.run.path), "close", self.rank)
    _peer_close(self)


rdist.PeerLogger.close = _hooked_peer_close


class Trigger:
    """A checkpoint's state that meets the cell's event while it is pickled."""

    def __init__(self, cell: str) -> None:
        self.cell = cell

    def __reduce__(self):
        meet(self.cell, "checkpoint", 0)
        return (int, (0,))


@runlab.launch(config_path=".", config_name="faults")
def main(ctx: runlab.Context) -> None:
    cell, rank = ctx.config.cell, ctx.dist.rank
    model, event, _ = split(cell)
    if model == "inner":  # a task started by the nested model's run
        for i in range(20):
            if i == 10:
                act(event)
            ctx.logger.log_metrics({"x": i})
        return
    if rank > 0:
        meet(cell, "startup", rank)
    for i in range(20):
        if i == 10:
            meet(cell, "logging", rank)
        ctx.logger.log_metrics({"x": i})
        ctx.logger.log_metrics({"r": rank}, name="own", all_ranks=True)
    ctx.logger.log_checkpoint({"step": 20, "cell": Trigger(cell)})
    if ctx.dist.is_distributed:
        import torch

        total = ctx.dist.all_reduce(torch.ones(1))
        ctx.dist.barrier()
        assert total.item() == ctx.dist.world_size
        meet(cell, "after_collective", rank)
    print(f"END {cell} rank {rank}", flush=True)


if __name__ == "__main__":
    main()
