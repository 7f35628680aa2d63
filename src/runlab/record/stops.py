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


class OutputClosed(Interrupted):
    """The task's output was closed under it: its stdout (or stderr) is a pipe whose reader
    exited (``python task.py | head -1``), and its next print raised ``BrokenPipeError``.

    The run ends as a SIGPIPE ends any other program of a shell pipeline (``yes | head``):
    INTERRUPTED, exit status 141. Not FAILED: the task did nothing wrong, the user stopped
    reading. Nor does the task go on with its output discarded: the shell waits for every
    program of the pipeline, so ``train.py | head`` would hold the prompt, silent, until
    training ended. Python ignores SIGPIPE and raises this error instead (see "Note on
    SIGPIPE" in the docs of its ``signal`` module); :mod:`runlab.record.lifecycle` turns it
    into this one.
    """

    def __init__(self) -> None:
        super().__init__(signal.SIGPIPE)
        self.args = ("its output was closed (the program reading it, such as head, exited)",)


class Pruned(Exception):  # named for the status it leaves
    """Raised in the task by a trial's pruning hook (runlab.record.trial): the run ends PRUNED."""
