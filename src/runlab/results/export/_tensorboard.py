"""Runs into TensorBoard event files: one directory per run, ``<out>/<run_id>/``.

Each series is written with the ``tensorboard`` package's own writer
(``tensorboard.summary.Writer``: scalar summaries, float32, with the row's step and
wall time), under its tag ``<file>/<key>`` (TensorBoard groups the charts by the part
before the first ``/``: one section per metrics file).

Exporting again never duplicates: a run's directory is written whole into a
temporary directory beside it, then swapped in (an atomic exchange of the two names
where Linux offers it, ``renameat2(RENAME_EXCHANGE)``; else two renames), and the old
one removed. While a run is written, TensorBoard may list its temporary directory
(``.<id>.tmp-<pid>``) as a run of its own; one left by an export that was killed is
removed by the next export of that run. A run whose exported data did not change is
left as it is: its directory
holds ``runlab-export.json`` (ignored by TensorBoard) with the fingerprint of what was
written.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
from pathlib import Path
from typing import Any

from runlab.results.export._runs import Run

MARKER = "runlab-export.json"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
QUEUE = 1 << 16  # events the writer's thread may have pending


def write_run(out: Path, run: Run, writer_class: Any) -> bool:
    """Write ``run``'s directory under ``out`` unless it holds this data already; whether
    it was written."""
    final = out / str(run.run_id)
    _remove_stale(out, run.run_id)
    fingerprint = run.fingerprint()
    if _marker(final).get("fingerprint") == fingerprint:
        return False
    tmp = out / f".{run.run_id}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        writer = writer_class(_output(str(tmp)))
        try:
            for s in run.series:
                for step, value, wall in zip(
                    s.steps.tolist(), s.values.tolist(), s.times.tolist(), strict=True
                ):
                    writer.add_scalar(s.tag, value, step, wall_time=wall)
        finally:
            writer.close()
        marker = {"run": str(run.path), "run_id": run.run_id, "fingerprint": fingerprint}
        (tmp / MARKER).write_text(json.dumps(marker) + "\n")
        _swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the old directory, once swapped out
    return True


def _output(path: str) -> Any:
    """Where ``tensorboard.summary.Writer`` writes: its ``DirectoryOutput``, with a longer
    queue for its writing thread and each tag's metadata on the tag's first event only
    (as TensorFlow's writers do), which makes an export about twice as fast."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.summary import DirectoryOutput
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    class Output(DirectoryOutput):  # type: ignore[misc]  # tensorboard ships no type hints
        def __init__(self, path: str) -> None:
            self._ev_writer = EventFileWriter(path, max_queue_size=QUEUE)
            self._described: set[str] = set()

        def emit_scalar(
            self,
            *,
            plugin_name: str,
            tag: str,
            data: Any,
            step: Any,
            wall_time: float,
            tag_metadata: bytes | None = None,
            description: str | None = None,
        ) -> None:
            event = event_pb2.Event(wall_time=wall_time, step=int(step))
            tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[float(data)])
            tensor.tensor_shape.SetInParent()  # a scalar: a shape with no dimensions
            value = event.summary.value.add(tag=tag, tensor=tensor)
            if tag not in self._described:
                self._described.add(tag)
                value.metadata.plugin_data.plugin_name = plugin_name
                value.metadata.plugin_data.content = tag_metadata or b""
                if description:
                    value.metadata.summary_description = description
                value.metadata.data_class = summary_pb2.DataClass.DATA_CLASS_SCALAR
            self._ev_writer.add_event(event)

    try:
        return Output(path)
    except Exception:  # another version of tensorboard's internals: its own output
        return path


def _remove_stale(out: Path, run_id: int) -> None:
    """Remove the temporary directories of ``run_id`` that an export killed halfway left
    (``.<id>.tmp-<pid>``, ``.<id>.old-<pid>``, their process gone): TensorBoard would
    list each as a run of its own."""
    for pattern in (f".{run_id}.tmp-*", f".{run_id}.old-*"):
        for folder in out.glob(pattern):
            pid = folder.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _marker(final: Path) -> dict[str, Any]:
    try:
        data = json.loads((final / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _swap_in(tmp: Path, final: Path) -> None:
    """Put ``tmp`` at ``final``; what stood at ``final`` ends at ``tmp`` (to be removed)."""
    if not final.exists():
        os.rename(tmp, final)
        return
    if _exchange(tmp, final):
        return
    aside = final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(final, aside)
    os.rename(tmp, final)
    os.rename(aside, tmp)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux's renameat2); False where it is not offered."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
        renameat2.argtypes.append(ctypes.c_uint)
        renameat2.restype = ctypes.c_int
        done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        return bool(done == 0)
    return False
