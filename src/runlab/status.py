"""A run's status: the one definition of every status, its sets and its colours.

A status is what ``metadata/info.yaml`` says of a run (``status:``), or what a
reader concludes when that file cannot be trusted (``LOST``, ``CORRUPT``). Every
module that names a status imports it from here; a test fails on a status
written anywhere that this enum does not know, and the docs' status table is
generated from :data:`MEANING` (``python -m runlab.status --markdown``).

``Status`` is a ``str`` enum, so ``Status.COMPLETE == "COMPLETE"`` and the
files on disk keep their plain text.
"""

from __future__ import annotations

import sys
from enum import StrEnum


class Status(StrEnum):
    """The status of a run, as written in ``info.yaml`` or concluded by a reader."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PREEMPTED = "PREEMPTED"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    INTERRUPTED = "INTERRUPTED"
    LOST = "LOST"
    CORRUPT = "CORRUPT"

    @property
    def meaning(self) -> str:
        """What the status means, in one sentence."""
        return MEANING[self]

    @property
    def colour(self) -> str:
        """Its colour in the terminal (a rich style name)."""
        return COLOUR[self]

    @property
    def hex(self) -> str:
        """Its colour in HTML and figures."""
        return HEX[self]

    @classmethod
    def of(cls, value: object) -> Status | None:
        """``value`` as a Status, or ``None`` where it is not one (a hand-edited file, say)."""
        try:
            return cls(value) if isinstance(value, str) else None
        except ValueError:
            return None


MEANING: dict[Status, str] = {
    Status.QUEUED: "submitted to a scheduler and waiting for a worker; nothing has run yet.",
    Status.RUNNING: "the task is running now (its heartbeat in info.yaml is recent).",
    Status.PREEMPTED: "stopped by the scheduler (SIGUSR2 or a preemption) after a checkpoint; "
    "it will be requeued and resume.",
    Status.COMPLETE: "the task returned normally.",
    Status.PRUNED: "a trial of `runlab tune` stopped early by the study's pruner; "
    "its rows up to then are kept.",
    Status.FAILED: "the task raised an exception or exited non-zero; "
    "metadata/traceback.txt holds the traceback.",
    Status.TIMEOUT: "the scheduler's time limit was reached; a SLURM job is requeued "
    "and resumes, a local one stops there.",
    Status.INTERRUPTED: "stopped by the user (Ctrl-C, SIGTERM, `runlab cancel`).",
    Status.LOST: "recorded RUNNING or QUEUED, but its job or process is gone "
    "(concluded by a reader, `runlab status` or `runlab verify`, never by the task).",
    Status.CORRUPT: "metadata/info.yaml is missing or unreadable, so nothing about "
    "the run can be trusted (concluded by a reader).",
}

# The task wrote its last status: nothing is written after it but by a new attempt.
FINAL = frozenset({Status.COMPLETE, Status.FAILED, Status.INTERRUPTED, Status.PRUNED})
# No process works on the run any more (final, or its job is gone): it changes only by a retry.
SETTLED = FINAL | {Status.LOST}
# Waiting for, or held by, a scheduler or a process: it may still change on its own.
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING, Status.PREEMPTED})
# Ended without a result: shown red or yellow, listed by `runlab status`, retried by default.
FAILING = frozenset(
    {Status.FAILED, Status.TIMEOUT, Status.LOST, Status.CORRUPT, Status.INTERRUPTED}
)
# What `runlab retry` resubmits unless told otherwise (a CORRUPT run has no record to retry).
RETRYABLE = frozenset({Status.FAILED, Status.INTERRUPTED, Status.LOST, Status.TIMEOUT})
# Ended with a result that counts (a tune study counts these as finished trials).
SUCCEEDED = frozenset({Status.COMPLETE, Status.PRUNED})
# What the task writes into info.yaml (LOST and CORRUPT are concluded by readers).
WRITTEN = frozenset(set(Status) - {Status.CORRUPT})

COLOUR: dict[Status, str] = {
    Status.QUEUED: "blue",
    Status.RUNNING: "cyan",
    Status.PREEMPTED: "yellow",
    Status.COMPLETE: "green",
    Status.PRUNED: "green",
    Status.FAILED: "red",
    Status.TIMEOUT: "yellow",
    Status.INTERRUPTED: "yellow",
    Status.LOST: "red",
    Status.CORRUPT: "red",
}

HEX: dict[Status, str] = {
    Status.QUEUED: "#1f77b4",
    Status.RUNNING: "#17becf",
    Status.PREEMPTED: "#ff7f0e",
    Status.COMPLETE: "#2ca02c",
    Status.PRUNED: "#98df8a",
    Status.FAILED: "#d62728",
    Status.TIMEOUT: "#ff7f0e",
    Status.INTERRUPTED: "#ff7f0e",
    Status.LOST: "#d62728",
    Status.CORRUPT: "#d62728",
}

UNKNOWN_COLOUR = "white"
UNKNOWN_HEX = "#7f7f7f"


def colour(value: object) -> str:
    """The terminal colour of any value found in a status field (white if unknown)."""
    status = Status.of(value)
    return status.colour if status is not None else UNKNOWN_COLOUR


def hex_colour(value: object) -> str:
    """The HTML colour of any value found in a status field (grey if unknown)."""
    status = Status.of(value)
    return status.hex if status is not None else UNKNOWN_HEX


def names(statuses: frozenset[Status] | tuple[Status, ...]) -> list[str]:
    """The statuses of a set as plain strings, in the enum's order (for Polars' ``is_in``)."""
    return [s.value for s in Status if s in statuses]


def markdown_table() -> str:
    """The docs' status table, generated from :data:`MEANING` and the sets."""
    rows = ["| status | meaning | final | active | failing |", "|---|---|---|---|---|"]
    for s in Status:
        marks = ["yes" if s in group else "" for group in (FINAL, ACTIVE, FAILING)]
        rows.append(f"| `{s.value}` | {s.meaning} | {' | '.join(marks)} |")
    return "\n".join(rows) + "\n"


def _consistent() -> None:
    for table in (MEANING, COLOUR, HEX):
        missing = set(Status) - set(table)
        if missing:  # pragma: no cover - caught at import by every test
            raise AssertionError(f"status tables miss {sorted(missing)}")


_consistent()

if __name__ == "__main__":  # python -m runlab.status --markdown
    sys.stdout.write(markdown_table())
