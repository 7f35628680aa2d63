"""The exceptions that stop a run's task, each named for the status the run is left with.

They live apart from :mod:`runlab.record.lifecycle`, which catches them and writes the
status, so that the modules that raise them (a rank of a distributed job,
:mod:`runlab.record.distributed`; a trial's pruning hook, :mod:`runlab.record.trial`) and
the lifecycle that uses both import them from below, without an import cycle.
"""

from __future__ import annotations

import signal

from runlab.status import Status


class Interrupted(BaseException):
    """Raised in the task when the process is asked to stop (SIGTERM, or SIGINT)."""

    def __init__(self, signum: int, status: Status = Status.INTERRUPTED) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum
        self.status = status


class Pruned(Exception):  # named for the status it leaves
    """Raised in the task by a trial's pruning hook (runlab.record.trial): the run ends PRUNED."""
