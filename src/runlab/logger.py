"""Write a run's metrics, artifacts and checkpoints into its run directory.

Metrics are buffered in memory and appended to ``metrics/<name>.jsonl`` by a
background thread every ``flush_interval`` seconds (and on checkpoint and
close), so a call costs about a microsecond and a ``kill -9`` loses at most the
last interval of rows; each write ends on a whole line.
"""

from __future__ import annotations

import os
import pickle
import shutil
import threading
import time
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import Any

import orjson

from runlab.rundir import RunDir

_FAST_TYPES = frozenset((int, float, bool, str))
_CHECKPOINT_KEY = "__runlab_checkpoint__"


class MetricsError(TypeError):
    """A metric value that cannot be stored as a JSON scalar."""


def _scalar(name: str, key: Any, value: Any) -> Any:
    """Coerce numpy / torch scalars to Python ones; refuse anything else, naming it."""
    if not isinstance(key, str):
        raise MetricsError(
            f"metric names must be strings, got {key!r} in log_metrics(name={name!r})"
        )
    if value is None or type(value) in _FAST_TYPES:
        return value
    item = getattr(value, "item", None)
    size = getattr(value, "size", 1)
    size = size() if callable(size) else size
    if item is not None and (size == 1 or size == ()):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, Real):
        return float(value)
    raise MetricsError(
        f"metric {key!r} in log_metrics(name={name!r}) is a {type(value).__name__}, not a scalar; "
        "log numbers, booleans or strings (call .item() on a one-element tensor, and log "
        "arrays with log_artifact)"
    )


class RunLogger:
    """The task's handle on its run directory: metrics, artifacts and checkpoints.

    Create it through :func:`runlab.launch` (as ``ctx.logger``) or directly with
    a run directory for use outside Hydra.
    """

    def __init__(self, run_dir: Path | str | RunDir, flush_interval: float = 1.0) -> None:
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.run.create()
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._buffers: dict[str, list[bytes]] = {}
        self._files: dict[str, Any] = {}
        self._next_step: dict[str, int] = {}
        self._resume_steps()
        self._stop = threading.Event()
        self._closed = False
        self._flusher = threading.Thread(target=self._flush_loop, name="runlab-flush", daemon=True)
        self._flusher.start()

    # ------------------------------------------------------------------ metrics
    def log_metrics(
        self, metrics: Mapping[str, Any], name: str = "train", step: int | None = None
    ) -> None:
        """Append one row of scalar metrics to ``metrics/<name>.jsonl``.

        Each row gets ``step`` (given, or one more than the previous row of this
        file) and ``time`` (seconds since the epoch).
        """
        row: dict[str, Any] = {}
        for key, value in metrics.items():
            row[key] = value if type(value) in _FAST_TYPES else _scalar(name, key, value)
        if step is None:
            step = row.pop("step", None)
        if step is None:
            step = self._next_step.get(name, 0)
        elif type(step) is not int:
            step = int(_scalar(name, "step", step))
        self._next_step[name] = step + 1
        line = orjson.dumps(
            {"step": step, "time": time.time(), **row}, option=orjson.OPT_APPEND_NEWLINE
        )
        with self._lock:
            buf = self._buffers.get(name)
            if buf is None:
                buf = self._buffers[name] = []
            buf.append(line)

    def flush(self) -> None:
        """Write every buffered row to disk now."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        for name, buf in self._buffers.items():
            if not buf:
                continue
            fh = self._files.get(name)
            if fh is None:
                fh = self._files[name] = open(self.run.metrics / f"{name}.jsonl", "ab")  # noqa: SIM115
            fh.write(b"".join(buf))
            fh.flush()
            buf.clear()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except OSError:  # a full disk must not kill the training loop; close() retries
                pass

    def _resume_steps(self) -> None:
        for path in self.run.metrics.glob("*.jsonl"):
            last = _last_row(path)
            if last is not None and isinstance(last.get("step"), int):
                self._next_step[path.stem] = last["step"] + 1

    # ---------------------------------------------------------------- artifacts
    def log_artifact(self, obj: Any, name: str | None = None) -> Path:
        """Store a file or directory (a ``Path``), a matplotlib figure, bytes, or any
        picklable object (torch objects through ``torch.save``) under ``artifacts/``.

        Returns the stored path.
        """
        if isinstance(obj, (str, os.PathLike)):
            src = Path(obj)
            if not src.exists():
                raise FileNotFoundError(f"log_artifact: no file or directory at {src}")
            dest = self.run.artifacts / (name or src.name)
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dest)
            return dest
        if hasattr(obj, "savefig"):
            dest = self.run.artifacts / (name or "figure.png")
            obj.savefig(dest, bbox_inches="tight")
            return dest
        if isinstance(obj, (bytes, bytearray)):
            if not name:
                raise ValueError("log_artifact needs a name for bytes")
            dest = self.run.artifacts / name
            dest.write_bytes(obj)
            return dest
        dest = self.run.artifacts / (name or f"{type(obj).__name__.lower()}.pt")
        _save(obj, dest)
        return dest

    # -------------------------------------------------------------- checkpoints
    def log_checkpoint(self, state: Any, name: str = "last") -> Path:
        """Save ``state`` to ``checkpoints/<name>.pt`` atomically.

        The metrics written so far are flushed and their lengths recorded, so that
        a run resumed from this checkpoint continues its metric files exactly
        where the checkpoint left them, with no duplicated rows.
        """
        with self._lock:
            self._flush_locked()
            sizes = {p.stem: p.stat().st_size for p in self.run.metrics.glob("*.jsonl")}
            meta = {"metrics_bytes": sizes, "next_step": dict(self._next_step), "time": time.time()}
        dest = self.run.checkpoints / f"{name}.pt"
        _save({_CHECKPOINT_KEY: meta, "state": state}, dest)
        return dest

    def load_checkpoint(self, name: str = "last", **load_kwargs: Any) -> Any:
        """The state of the last checkpoint called ``name``, or ``None`` when there is none.

        Rows logged after that checkpoint was taken (by a run that was then
        preempted or killed) are dropped from the metric files, since the resumed
        run will log them again.
        """
        path = self.run.checkpoints / f"{name}.pt"
        if not path.exists():
            return None
        payload = _load(path, **load_kwargs)
        if not (isinstance(payload, dict) and _CHECKPOINT_KEY in payload):
            return payload
        meta = payload[_CHECKPOINT_KEY]
        with self._lock:
            self._flush_locked()
            for fh in self._files.values():
                fh.close()
            self._files.clear()
            for path_ in self.run.metrics.glob("*.jsonl"):
                keep = meta["metrics_bytes"].get(path_.stem, 0)
                if path_.stat().st_size > keep:
                    with open(path_, "r+b") as fh:
                        fh.truncate(keep)
            self._next_step = dict(meta["next_step"])
        return payload["state"]

    # -------------------------------------------------------------------- close
    def close(self) -> None:
        """Flush everything and stop the background writer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._flusher.is_alive() and self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._lock:
            self._flush_locked()
            for fh in self._files.values():
                fh.close()
            self._files.clear()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def artifact_dir(self) -> Path:
        return self.run.artifacts


def _last_row(path: Path) -> dict[str, Any] | None:
    """The last complete JSON line of ``path`` (a torn final line is skipped)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 65536))
        lines = fh.read().splitlines()
    for line in reversed(lines):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict):
            return row
    return None


def _save(obj: Any, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        try:
            import torch
        except ImportError:
            with open(tmp, "wb") as fh:
                pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            torch.save(obj, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load(path: Path, **kwargs: Any) -> Any:
    try:
        import torch
    except ImportError:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    kwargs.setdefault("weights_only", False)
    return torch.load(path, **kwargs)
