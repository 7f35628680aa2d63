"""A run's status: the one definition of every status, its sets and its colours.

A status is what ``metadata/info.yaml`` says of a run (``status:``), or what a
reader concludes when that file cannot be trusted (``CORRUPT``; ``LOST`` for a
``RUNNING`` run whose writer is gone: its process, on this host; its heartbeat
stopped, on another). Every module that names a status
imports it from here, and its order is the order statuses are shown in. Every
writer of ``info.yaml`` passes the status through :func:`written`, which refuses
one outside :data:`WRITTEN`; ``tests/test_status.py`` fails on a status literal
anywhere in ``src/`` that this enum does not know, or on a set or colour table of
statuses spelled out elsewhere. The docs' status table is generated from
:data:`MEANING` and the sets (``python -m runlab.status --markdown``).

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
    Status.QUEUED: "created by `runlab submit`, `tune`, `retry` or `reproduce` and waiting "
    "for its job or a local worker; nothing has run yet.",
    Status.RUNNING: "the task is running now (its heartbeat in info.yaml is recent).",
    Status.PREEMPTED: "stopped by SIGUSR2 (a preemption, or the time limit ahead) after its "
    "last checkpoint; the scheduler requeues it and it resumes.",
    Status.COMPLETE: "the task returned normally.",
    Status.PRUNED: "a trial of `runlab tune` stopped early by the study's pruner; "
    "its rows up to then are kept.",
    Status.FAILED: "the task raised an exception or its process ended before recording an end "
    "(or its submission was refused); metadata/traceback.txt holds the traceback.",
    Status.TIMEOUT: "the time limit was reached (the job's, or the local launcher's "
    "`timeout_min`); a SLURM job is requeued and resumes (up to `max_num_timeout` times), "
    "a local run stops there.",
    Status.INTERRUPTED: "stopped by the user (Ctrl-C, SIGTERM, `scancel`, `runlab cancel`).",
    Status.LOST: "it was QUEUED, RUNNING or PREEMPTED but its job or process is gone "
    "without it recording an end: written by `runlab status`, `cancel`, `retry` and a "
    "sweep's progress (which ask the scheduler), shown by readers for a RUNNING run whose "
    "process is gone (on this host, as `runlab verify` finds it) or whose heartbeat "
    "stopped (on another host).",
    Status.CORRUPT: "metadata/info.yaml is missing, unreadable or has no status, so nothing "
    "about the run can be trusted (shown by readers, never written).",
}

# Ended, and nothing changes it on its own: only a new attempt (`runlab retry`, or the
# task rerun with runlab.run_id=N) writes it again. TIMEOUT is not in it: a SLURM job is
# requeued after it (a local run is not, which `runlab.cli._progress.wait` knows).
FINAL = frozenset({Status.COMPLETE, Status.FAILED, Status.INTERRUPTED, Status.PRUNED})
# No process works on the run any more (final, or its job is gone): it changes only by a retry.
SETTLED = FINAL | {Status.LOST}
# Waiting for, or held by, a scheduler or a process: it may still change on its own, and
# `reconcile` checks these against the scheduler (LOST when the job is gone).
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING, Status.PREEMPTED})
# Ended without a result: shown red or yellow, listed by `runlab status`, left out of reports.
FAILING = frozenset(
    {Status.FAILED, Status.TIMEOUT, Status.LOST, Status.CORRUPT, Status.INTERRUPTED}
)
# What `runlab retry` resubmits unless told otherwise (a CORRUPT run has no record to retry).
RETRYABLE = FAILING - {Status.CORRUPT}
# Ended with a result that counts (a tune study counts these as finished trials).
SUCCEEDED = frozenset({Status.COMPLETE, Status.PRUNED})
# Runs whose values may be garbage (a crash, an unreadable record): the reader types a
# column by the other runs' values first (runlab.results.reader._columns).
UNTRUSTED = frozenset({Status.FAILED, Status.CORRUPT})
# What runlab writes into info.yaml (CORRUPT is only ever concluded by readers).
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
    Status.PREEMPTED: "#bcbd22",
    Status.COMPLETE: "#2ca02c",
    Status.PRUNED: "#98df8a",
    Status.FAILED: "#d62728",
    Status.TIMEOUT: "#bcbd22",
    Status.INTERRUPTED: "#bcbd22",
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


def written(value: object) -> str:
    """``value`` as the plain text a writer puts in ``info.yaml``'s ``status:``.

    Every writer of a status (``RunDir.update_info``, ``allocate``, ``runlab
    submit``'s pre-created runs) passes it through here, so no status the enum
    does not know, and none that only readers conclude (``CORRUPT``), is ever
    written. Anything else is a programming error: ``ValueError``.
    """
    status = Status.of(value)
    if status is None or status not in WRITTEN:
        allowed = ", ".join(names(WRITTEN))
        raise ValueError(
            f"status {value!r} cannot be written to info.yaml: it must be one of {allowed}"
        )
    return status.value


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


def main(argv: list[str] | None = None) -> int:
    """``python -m runlab.status --markdown``: print the docs' status table (its page,
    ``docs/reference/statuses.md``, is generated by ``python -m runlab.cli.reference``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["--markdown"]:
        sys.stderr.write("usage: python -m runlab.status --markdown\n")
        return 2
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
