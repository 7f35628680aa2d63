"""The run directory: where each run's record lives, and how run ids are handed out.

Layout (the interface between writers and readers, documented in the README)::

    <logs>/<run_id>/
        metadata/config.yaml     resolved config
        metadata/overrides.yaml  command-line overrides, as given
        metadata/info.yaml       status, times, host, job ids, heartbeat, error
        metadata/env.yaml        code version and software environment
        metadata/git.diff        uncommitted changes, when the tree was dirty
        metadata/traceback.txt   the traceback of a failed run
        metrics/<name>.jsonl     one JSON object per logged row
        artifacts/               files, figures and objects logged by the task
        checkpoints/             atomically written checkpoints
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import orjson

from runlab.files import now_iso, read_yaml, write_record

LOGS_ENV = "RUNLAB_LOGS"
RUN_DIR_ENV = "RUNLAB_RUN_DIR"

STATUSES = ("QUEUED", "RUNNING", "COMPLETE", "FAILED", "INTERRUPTED", "PREEMPTED", "TIMEOUT")
FINAL_STATUSES = ("COMPLETE", "FAILED", "INTERRUPTED")


# A run id is a canonical positive decimal integer in ASCII: `7`, never `007`, `²` or `١٢`.
# Anything else in a logs directory is not a run, whoever made it.
_RUN_ID = re.compile(r"[1-9][0-9]{0,17}\Z", re.ASCII)


def is_run_id(name: str) -> bool:
    """Whether a folder name is a canonical run id (``[1-9][0-9]*``, ASCII, at most 18 digits)."""
    return _RUN_ID.match(name) is not None


def default_logs() -> Path:
    """The logs directory when nothing else names one: ``$RUNLAB_LOGS`` or ``./logs``."""
    return Path(os.environ.get(LOGS_ENV) or "logs")


def _max_id(logs: Path) -> int:
    best = 0
    with os.scandir(logs) as it:
        for entry in it:
            name = entry.name
            if is_run_id(name) and int(name) > best:
                best = int(name)
    return best


def allocate(logs: Path | str, count: int = 1) -> list[Path]:
    """Create ``count`` new run directories under ``logs`` with fresh integer ids.

    Each id is claimed by an atomic ``mkdir``, so any number of processes may
    allocate at once in one directory: none gets an id twice and none waits.
    """
    logs = Path(logs)
    logs.mkdir(parents=True, exist_ok=True)
    claimed: list[Path] = []
    candidate = _max_id(logs) + 1
    while len(claimed) < count:
        path = logs / str(candidate)
        try:
            path.mkdir()
        except FileExistsError:
            # Someone else took it: jump past everything taken meanwhile.
            candidate = max(candidate + 1, _max_id(logs) + 1)
            continue
        claimed.append(path)
        candidate += 1
    return claimed


class RunDir:
    """Paths of one run's record, and the read-modify-write of its ``info.yaml``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def metadata(self) -> Path:
        return self.path / "metadata"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics"

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def info_file(self) -> Path:
        return self.metadata / "info.yaml"

    @property
    def config_file(self) -> Path:
        return self.metadata / "config.yaml"

    @property
    def env_file(self) -> Path:
        return self.metadata / "env.yaml"

    def create(self) -> RunDir:
        for sub in (self.metadata, self.metrics, self.artifacts, self.checkpoints):
            sub.mkdir(parents=True, exist_ok=True)
        return self

    def read_info(self) -> dict[str, Any]:
        """The run's info mapping: from ``info.json``, else ``info.yaml``, else empty."""
        twin = self.info_file.with_suffix(".json")
        try:
            data = orjson.loads(twin.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            data = read_yaml(self.info_file) if self.info_file.exists() else None
        return data if isinstance(data, dict) else {}

    def update_info(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``info.yaml`` (atomically; ``None`` values remove keys)."""
        with self._lock:
            info = self.read_info()
            for key, value in fields.items():
                if value is None:
                    info.pop(key, None)
                else:
                    info[key] = value
            write_record(self.info_file, info)
            return info

    def heartbeat(self) -> None:
        self.update_info(heartbeat=now_iso())
