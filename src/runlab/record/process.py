"""Whether the process that wrote a run still lives: one answer for every command.

A pid alone is not enough: pids are reused, so a run's writer counts as alive
only while a process with its pid exists, is not a zombie, and started no later
than the run's attempt did (read from ``/proc``; where there is none, the pid's
existence is all that can be known).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Seconds of clock slack between a process's start and the attempt's recorded start.
START_SLACK_S = 2.0


def process_start(pid: int) -> float | None:
    """The epoch at which process ``pid`` started, or ``None`` where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
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
