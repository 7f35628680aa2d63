"""One run's record, whole: what ``runlab show`` prints and the report's per-run panel.

Read from the run's files alone (JSON twins, else bounded YAML; metric files parsed
as the reader parses them), so a half-written or hostile run gives ``problems``, not
an exception.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from runlab.errors import UserError
from runlab.record.files import tail
from runlab.record.process import writer_alive
from runlab.results.reader._files import Refused, iso_epoch, load_record, load_yaml_file
from runlab.results.reader._metrics import read_metric_files, summaries
from runlab.results.reader._store import LOST_AFTER_S
from runlab.status import Status


class NoSuchRun(UserError, LookupError):
    """No run directory of that id in the logs directory."""


def writer_gone(info: dict[str, Any]) -> bool:
    """Whether a RUNNING run's writer is gone, by the reader's rule: on this host its
    process decides (:func:`writer_alive`, as ``runlab verify``), elsewhere its heartbeat."""
    live = writer_alive(info)
    if live is not None:
        return not live
    beat = iso_epoch(info.get("heartbeat") or info.get("start_time"))
    interval = info.get("heartbeat_interval_s")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        interval = None  # not a number (a list, text): the default, as the reader
    limit = max(LOST_AFTER_S, 4 * float(interval or 15.0))
    return beat is not None and time.time() - beat > limit


def read_run(logs: Path, run_id: int) -> dict[str, Any]:
    """One run's whole record, read from its directory: nested ``config``, ``overrides``,
    ``info``, ``env``, a summary per metrics file, the artifacts and checkpoints, the
    traceback's tail, ``status`` (``LOST`` for a dead ``RUNNING`` run) and ``problems``
    (what could not be read, never raised). :class:`NoSuchRun` if there is no such run."""

    path = logs / str(run_id)
    if not path.is_dir():
        raise NoSuchRun(f"no run {run_id} in {logs}")
    record: dict[str, Any] = {"run_id": run_id, "path": str(path)}
    problems: list[str] = []
    for name in ("config", "overrides", "info", "env"):
        # The JSON twin, else the YAML with bounded cost (an alias bomb is refused).
        try:
            if name == "overrides":  # a list, without a JSON twin
                rel = f"metadata/{name}.yaml"
                data = load_yaml_file(str(path / rel), rel)
            else:
                data = dict(load_record(str(path), name)[0])
        except FileNotFoundError:
            data = None
            if name in ("config", "info"):
                problems.append(f"missing metadata/{name}.yaml")
        except Refused as exc:
            data = None
            problems.append(str(exc))
        if name == "env" and isinstance(data, dict):
            # what capture could not record (runlab.record.environment): printed as problems
            for line in data.get("problems") or []:
                problems.append(f"environment: {line}")
            if data.get("error"):  # records made before `problems` existed
                problems.append(f"environment: not recorded ({data['error']})")
            for key in ("packages", "conda_packages"):
                if isinstance(data.get(key), dict):
                    data[key] = f"{len(data[key])} packages (see metadata/env.yaml)"
        record[name] = data
    info = got if isinstance(got := record.get("info"), dict) else {}
    status = info.get("status") if info else Status.CORRUPT.value
    if status == Status.RUNNING and writer_gone(info):
        status = Status.LOST.value
    record["status"] = status
    metrics: dict[str, Any] = {}
    for file in sorted((path / "metrics").glob("*.jsonl")):
        parsed = read_metric_files([(run_id, str(file), status == Status.RUNNING)], Counter())
        rec = parsed.files.get(run_id, {})
        rows = parsed.frame()
        last: dict[str, Any] = {}
        if rows.height:
            summary = summaries(file.stem, rows)
            if summary.height:
                last = {
                    k.removeprefix(file.stem + "."): v
                    for k, v in summary.row(0, named=True).items()
                    if k != "run_id"
                }
        metrics[file.stem] = {"rows": rec.get("rows", 0), **last}
        if rec.get("problem"):
            problems.append(f"metrics/{rec['problem']}")
    record["metrics"] = metrics
    for sub in ("artifacts", "checkpoints"):
        folder = path / sub
        record[sub] = (
            sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
            if folder.is_dir()
            else []
        )
    record["traceback"] = tail(path / "metadata" / "traceback.txt", 10)
    record["problems"] = problems
    return record
