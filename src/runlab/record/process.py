"""Whether the process that wrote a run still lives: one answer for every command.

A pid alone is not enough: pids are reused, so a run's writer counts as alive
only while a process with its pid exists, is not a zombie, and started no later
than the run's attempt did (read from ``/proc``; where there is none, the pid's
existence is all that can be known).

:func:`writer_alive` is the one rule for a RUNNING run's record: ``runlab verify``
(invariant 3) and the readers (``runlab ls``, ``status``, ``show``, the report) ask
it, so they agree on which runs are LOST. Only a run recorded on this host can be
answered; for the others the heartbeat or the scheduler decides.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

#: Seconds of clock slack between a process's start and the attempt's recorded start.
START_SLACK_S = 2.0


@functools.cache
def _boot_time() -> float | None:
    """The epoch at which this host booted (read once: a reader asks it for many runs)."""
    try:
        return next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def process_start(pid: int) -> float | None:
    """The epoch at which process ``pid`` started, or ``None`` where /proc cannot tell."""
    boot = _boot_time()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if boot is None:
        return None
    ticks = float(stat.rsplit(")", 1)[1].split()[19])
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def alive(pid: object, since: float | None = None) -> bool:
    """Whether ``pid`` lives on this host (not a zombie) and, given ``since`` (an epoch),
    started no later than that, so that a reused pid is not taken for the writer."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it lives, as another user
    if _zombie(pid):
        return False
    if since is None:
        return True
    started = process_start(pid)
    return started is None or started <= since + START_SLACK_S


def epoch(value: object) -> float | None:
    """An ISO time (text, as in ``info.json``, or a ``datetime``) as an epoch."""
    if isinstance(value, datetime):
        return value.timestamp()
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def attempt_start(info: Mapping[str, Any]) -> float | None:
    """When the run's current attempt started (``attempt_start_time``, else
    ``start_time``), as an epoch; ``None`` where the record does not say."""
    return epoch(info.get("attempt_start_time") or info.get("start_time"))


def writer_alive(info: Mapping[str, Any], host: str | None = None) -> bool | None:
    """Whether the process that writes a run (its ``info``: ``host``, ``pid``, the
    attempt's start) lives: ``True`` or ``False`` for a run recorded on this host
    (``host``: this host's name, asked once by a caller that checks many runs), by
    :func:`alive`; ``None`` where this host cannot tell (another host, no pid or no
    start time in the record)."""
    host = socket.gethostname() if host is None else host
    pid = info.get("pid")
    since = attempt_start(info)
    if info.get("host") != host or type(pid) is not int or since is None:
        return None
    return alive(pid, since)
