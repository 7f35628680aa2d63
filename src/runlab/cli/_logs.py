"""The one ``--logs DIR`` option every command takes, and the :class:`~runlab.logs.Logs` it names.

Without ``--logs``: ``$RUNLAB_LOGS``, else the project root's ``logs/`` (see
:mod:`runlab.logs`). Commands that read use :meth:`Logs.existing` (a missing
directory is one line); commands that write use :meth:`Logs.resolve`.
``runlab report [LOGS]`` also takes the directory as a positional, and ``ls``,
``show``, ``status``, ``reproduce`` and ``diff`` still accept their old positional
for one release; giving it and ``--logs`` with different values is an error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runlab.errors import UserError
from runlab.logs import Logs

LOGS_HELP = "logs directory (default: $RUNLAB_LOGS, else logs/ in the project root)"
POSITIONAL = "logs_positional"


def add_logs_option(
    parser: argparse.ArgumentParser, *, positional: bool = False, help: str = LOGS_HELP
) -> None:
    """``--logs DIR`` (and, with ``positional``, an optional ``LOGS`` before it)."""
    if positional:
        parser.add_argument(POSITIONAL, nargs="?", metavar="LOGS", help=help)
    parser.add_argument("--logs", metavar="DIR", help=help)


def logs_value(args: argparse.Namespace, positional: str | None = None) -> str | None:
    """The directory the command line names (``--logs`` or the positional), or ``None``.

    ``positional``: a value taken from the command's positional arguments (``show``,
    ``reproduce``, ``diff``), when it is not the parser's ``LOGS``.
    """
    option = getattr(args, "logs", None)
    given = positional if positional is not None else getattr(args, POSITIONAL, None)
    if option and given and Path(option).absolute() != Path(given).absolute():
        raise UserError(
            "two logs directories given",
            where=f"{given} and --logs {option}",
            todo="give one",
        )
    return str(option or given) if (option or given) else None


def logs_from(
    args: argparse.Namespace, *, write: bool = False, positional: str | None = None
) -> Logs:
    """The :class:`Logs` of a command: it must exist unless the command writes there."""
    value = logs_value(args, positional)
    return Logs.resolve(value) if write else Logs.existing(value)


def split_positional(
    args: argparse.Namespace, values: list[str], ids: int, usage: str
) -> tuple[str | None, list[str]]:
    """``values`` as (the old positional LOGS or ``None``, the ``ids`` run ids): the
    positional is there when one more value than ``ids`` is given."""
    if len(values) == ids:
        return None, values
    if len(values) == ids + 1:
        return values[0], values[1:]
    raise UserError(f"give {ids} run id(s)", where=" ".join(values), todo=f"usage: {usage}")
