"""The live progress bar of a sweep (``runlab submit --wait``): a terminal view of its runs.

It reads the runs' statuses and, every few polls, reconciles the sweep with the scheduler
through :mod:`runlab.sweep.ops`, as ``runlab status`` does. It lives in the command line,
above the sweep layer, so that the launcher (which ``ops`` submits through) never calls
back into ``ops``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from runlab.cli._text import console
from runlab.record.rundir import RunDir
from runlab.status import SETTLED, Status, colour
from runlab.sweep import backends, ops
from runlab.sweep.backends.base import Target


def wait(runs: Sequence[RunDir], poll_s: float = 2.0) -> list[RunDir]:
    """Show a live progress bar until every run has ended; return the runs that did not complete.

    Every few seconds the sweep is reconciled with the scheduler (``runlab
    status`` does the same), so that a run whose job ended without it (cancelled
    while pending, a node failure) ends ``INTERRUPTED`` or ``LOST`` and nothing
    waits forever.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    logs = runs[0].path.parent if runs else None
    sweep_id = runs[0].read_info().get("sweep_id") if runs else None
    last_check = time.time()
    with Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console(stderr=True),
    ) as bar:
        task = bar.add_task("", total=len(runs))
        while True:
            statuses = [run.read_info().get("status", Status.QUEUED) for run in runs]
            counts = Counter(statuses)
            done = sum(counts[s] for s in SETTLED)
            if counts[Status.TIMEOUT] and logs is not None and sweep_id:
                done += _timeouts_settled(logs, sweep_id, runs, statuses)
            bar.update(task, completed=done, description=_describe_counts(counts))
            if done == len(runs):
                break
            if logs is not None and sweep_id and time.time() - last_check > 5 * poll_s:
                last_check = time.time()
                try:
                    ops.reconcile(logs, ops.load(logs, sweep_id))
                except Exception:  # the next round tries again; status says what is wrong
                    pass
                continue
            time.sleep(poll_s)
    return [run for run in runs if run.read_info().get("status") != Status.COMPLETE]


def _timeouts_settled(
    logs: Path, sweep_id: str, runs: Sequence[RunDir], statuses: Sequence[str]
) -> int:
    """How many ``TIMEOUT`` runs will not start again: every one where the scheduler does
    not requeue a timed-out job (local workers), else those whose job has ended."""
    timed_out = [
        int(run.run_id) for run, s in zip(runs, statuses, strict=True) if s == Status.TIMEOUT
    ]
    try:
        record = ops.load(logs, sweep_id)
        backend = backends.get(record.launcher_name)
        if not backend.requeues_timeouts:
            return len(timed_out)  # a TIMEOUT is where the run stops
        located = ops.locate(record)
        found = [
            Target(rid, run, run.read_info(), *located[rid])
            for rid, run in ((rid, RunDir(logs / str(rid))) for rid in timed_out)
            if rid in located
        ]
        states = backend.states(record, found)
    except Exception:  # cannot tell now; the next round asks again
        return 0
    return sum(1 for rid in timed_out if rid not in states or not states[rid].alive)


def _describe_counts(counts: Counter[str]) -> str:
    parts: list[str] = []
    for status in Status:
        if counts.get(status) and f"{counts[status]} {status.lower()}" not in " ".join(parts):
            parts.append(f"[{colour(status)}]{counts[status]} {status.lower()}[/]")
    return "  ".join(parts)
