"""Runs into MLflow, through its client (``mlflow.tracking.MlflowClient``), to any tracking URI.

One MLflow run per runlab run, in one experiment:

- **params**: the run's config, flattened to dotted keys (``model.name``); lists and
  mappings as JSON. A value over MLflow's limit (``MAX_PARAM_VAL_LENGTH`` of the
  installed client: 6000 characters in MLflow 3) is cut and ends in ``...[sha256:<12>]``
  of the whole value. Null values are left out.
- **metrics**: each series (``train/loss``) with its steps and times (milliseconds), in
  ``log_batch`` calls within MLflow's batch limits (1000 entities a call, 100 params).
  MLflow's SQL stores keep an infinite value as the largest float (their own rule).
- **tags**: ``runlab.run_id``, ``runlab.path``, ``runlab.status``, ``runlab.commit`` (also
  ``mlflow.source.git.commit``), ``runlab.sweep_id``, ``runlab.task``; ``runlab.renamed``
  lists the names that were mapped (see :mod:`._names`) and ``runlab.skipped`` the keys
  left out (strings). The MLflow run's status follows runlab's: COMPLETE is FINISHED;
  FAILED, LOST, TIMEOUT and CORRUPT are FAILED; INTERRUPTED, PREEMPTED and PRUNED are
  KILLED; QUEUED and RUNNING are RUNNING.

**Exporting again updates, never duplicates.** Each MLflow run holds ``runlab.key``, a
hash of the run directory's absolute path, symbolic links resolved (it ends in the run
id), and is found by it
(one search of the experiment, on the tag ``runlab.logs_key``). Its tag ``runlab.export``
records, for each metric, how many points were sent and a hash of them. On a later export:

- the points already sent are unchanged (a run that logged more since): only the new
  points are appended, and the tags and status updated. Nothing new: nothing is sent.
- the points sent are no longer a prefix of the run's (its metrics were cut and logged
  again on a resume), or its params differ (MLflow cannot change a parameter), or an
  earlier export stopped halfway (``runlab.export`` is ``pending`` while points are
  sent): the MLflow run is deleted (MLflow's soft delete: ``mlflow gc`` purges it, and
  it can be restored) and the run is logged again whole, into a new MLflow run.

A run with more metrics than one tag can list records only a fingerprint of all its
points: exported again, it is unchanged when the fingerprint is, and logged again whole
when not.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from runlab.results.export._names import NameMap
from runlab.results.export._runs import Run, param_text, short_hash
from runlab.status import ACTIVE, Status

KEY_TAG = "runlab.key"
LOGS_TAG = "runlab.logs_key"
STATE_TAG = "runlab.export"
PENDING = "pending"
# The export state of a run with too many metrics for one tag: its fingerprint alone.
WHOLE = "*"
# Milliseconds MLflow's stores take (a signed 64-bit integer), with room to spare; a time
# beyond them (a hand-edited row, inf) is sent as 0, as a missing time is.
_MAX_MS = 2**62


def mlflow_state(status: Status | None) -> str:
    """runlab's status as MLflow's run state: RUNNING while the run may go on (queued,
    running, preempted and to be resumed), FINISHED when complete, KILLED when stopped on
    purpose (cancelled, pruned), FAILED otherwise."""
    if status is None or status in ACTIVE:
        return "RUNNING"
    if status is Status.COMPLETE:
        return "FINISHED"
    if status is Status.INTERRUPTED or status is Status.PRUNED:
        return "KILLED"
    return "FAILED"


@dataclass(frozen=True)
class Limits:
    """MLflow's limits, as the installed client has them."""

    key: int = 250
    param_value: int = 6000
    tag_value: int = 8000
    metrics_batch: int = 1000
    params_batch: int = 100
    entities_batch: int = 1000


def limits() -> Limits:
    from mlflow.utils import validation as v

    d = Limits()
    return Limits(
        key=getattr(v, "MAX_ENTITY_KEY_LENGTH", d.key),
        param_value=getattr(v, "MAX_PARAM_VAL_LENGTH", d.param_value),
        tag_value=getattr(v, "MAX_TAG_VAL_LENGTH", d.tag_value),
        metrics_batch=getattr(v, "MAX_METRICS_PER_BATCH", d.metrics_batch),
        params_batch=getattr(v, "MAX_PARAMS_TAGS_PER_BATCH", d.params_batch),
        entities_batch=getattr(v, "MAX_ENTITIES_PER_BATCH", d.entities_batch),
    )


def quiet() -> None:
    """MLflow's and alembic's INFO lines (creating a database's tables) off the terminal."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _ms(value: Any) -> int | None:
    """An ISO 8601 time (the run record's) or seconds since the epoch, in milliseconds."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            ms = int(datetime.fromisoformat(value).timestamp() * 1000)
        else:
            ms = int(float(value) * 1000)
    except (ValueError, OverflowError):
        return None
    return ms if abs(ms) < _MAX_MS else None


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    end = f"...[sha256:{short_hash(text, 12)}]"
    return text[: limit - len(end)] + end


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MlflowExport:
    """Exports runs into one experiment of an MLflow tracking server (``client``)."""

    def __init__(
        self, client: Any, experiment_id: str, logs: Path, *, artifacts: bool = False
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.logs_key = short_hash(str(logs.resolve()), 32)  # one key, however reached
        self.artifacts = artifacts
        self.limits = limits()
        self.counts: Counter[str] = Counter()
        self.points = 0  # metric points sent
        self.existing = self._existing()

    def _existing(self) -> dict[str, Any]:
        """The experiment's MLflow runs exported from this logs directory, by key; a
        duplicate (two exports at once) is deleted."""
        found: dict[str, Any] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{LOGS_TAG}` = '{self.logs_key}'",
                max_results=1000,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            for run in page:
                key = run.data.tags.get(KEY_TAG)
                if key in found:
                    self.client.delete_run(run.info.run_id)
                else:
                    found[key] = run
            token = page.token
            if not token:
                return found

    # ------------------------------------------------------------- one run
    def export(self, run: Run) -> str:
        """Export ``run``: ``created``, ``updated``, ``replaced`` or ``unchanged``."""
        from mlflow.entities import Param

        key = short_hash(str(run.path.resolve()), 32)
        names = NameMap(self.limits.key).add([s.tag for s in run.series])
        params = self._params(run)
        old = self.existing.get(key)
        starts = self._starts(old, run, names, params) if old is not None else None
        outcome = "updated"
        if old is not None and starts is None:
            self.client.delete_run(old.info.run_id)
            outcome, old = "replaced", None
        if old is None:
            tags = {KEY_TAG: key, LOGS_TAG: self.logs_key, STATE_TAG: PENDING}
            made = self.client.create_run(
                self.experiment_id,
                start_time=_ms(run.facts.get("start_time")),
                tags=tags,
                run_name=f"runlab-{run.run_id}",
            )
            mlflow_id, starts, old_tags = made.info.run_id, {}, tags
            outcome = "created" if outcome != "replaced" else outcome
            items = [Param(k, v) for k, v in params.items()]
            for chunk in _chunks(items, self.limits.params_batch):
                self.client.log_batch(mlflow_id, params=chunk)
        else:
            mlflow_id, old_tags = old.info.run_id, dict(old.data.tags)
        sent = self._send(mlflow_id, run, names, starts or {}, old_tags)
        changed = self._tags(mlflow_id, run, names, params, old_tags)
        changed |= self._status(mlflow_id, run, old)
        if self.artifacts:
            self._artifacts(mlflow_id, run)
        if outcome == "updated" and not (sent or changed):
            outcome = "unchanged"
        self.counts[outcome] += 1
        return outcome

    def _params(self, run: Run) -> dict[str, str]:
        keys = NameMap(self.limits.key).add(list(run.config))
        return {
            keys(k): _clip(param_text(v), self.limits.param_value) for k, v in run.config.items()
        }

    def _starts(
        self, old: Any, run: Run, names: NameMap, params: dict[str, str]
    ) -> dict[str, int] | None:
        """Per metric, how many of its points the MLflow run ``old`` holds already; None
        when it must be logged again whole (see the module's docstring)."""
        if dict(old.data.params) != params:
            return None
        try:
            state = json.loads(old.data.tags.get(STATE_TAG) or "")
        except ValueError:
            return None
        if not isinstance(state, dict):
            return None
        series = {names(s.tag): s for s in run.series}
        if set(state) == {WHOLE}:  # too many metrics for the state: all sent, or none
            if state[WHOLE] != [0, run.fingerprint()]:
                return None
            return {name: len(s) for name, s in series.items()}
        starts: dict[str, int] = {}
        for name, sent in state.items():
            s = series.get(name)
            if not isinstance(sent, list) or len(sent) != 2 or s is None:
                return None
            n, digest = sent
            if not isinstance(n, int) or n > len(s) or s.digest(n) != digest:
                return None
            starts[name] = n
        return starts

    def _send(
        self,
        mlflow_id: str,
        run: Run,
        names: NameMap,
        starts: dict[str, int],
        old_tags: dict[str, str],
    ) -> bool:
        """Log the points not sent yet; whether there were any."""
        from mlflow.entities import Metric

        todo = [(s, starts.get(names(s.tag), 0)) for s in run.series]
        todo = [(s, n) for s, n in todo if n < len(s)]
        if not todo:
            return False
        if old_tags.get(STATE_TAG) != PENDING:
            self.client.set_tag(mlflow_id, STATE_TAG, PENDING)
        batch: list[Any] = []
        size = min(self.limits.metrics_batch, self.limits.entities_batch)
        for s, n in todo:
            key = names(s.tag)
            stamps = (s.times[n:] * 1000).tolist()
            for step, value, stamp in zip(
                s.steps[n:].tolist(), s.values[n:].tolist(), stamps, strict=True
            ):
                ms = int(stamp) if abs(stamp) < _MAX_MS else 0  # NaN, inf, out of range
                batch.append(Metric(key, value, ms, step))
                self.points += 1
                if len(batch) >= size:
                    self.client.log_batch(mlflow_id, metrics=batch)
                    batch = []
        if batch:
            self.client.log_batch(mlflow_id, metrics=batch)
        return True

    def _tags(
        self,
        mlflow_id: str,
        run: Run,
        names: NameMap,
        params: dict[str, str],
        old_tags: dict[str, str],
    ) -> bool:
        """Set the run's tags (the export state last); whether any changed."""
        from mlflow.entities import RunTag

        state = {names(s.tag): [len(s), s.digest()] for s in run.series}
        text = json.dumps(state, sort_keys=True)
        if len(text) > self.limits.tag_value:  # too many metrics to record: never appended
            text = json.dumps({WHOLE: [0, run.fingerprint()]})
        facts = run.facts
        commit = facts.get("commit") or facts.get("code_commit")
        tags = {
            "runlab.run_id": str(run.run_id),
            "runlab.path": str(run.path),
            "runlab.status": facts.get("status"),
            "runlab.commit": commit,
            "mlflow.source.git.commit": commit,
            "runlab.sweep_id": facts.get("sweep_id"),
            "runlab.task": facts.get("task"),
            "runlab.renamed": _json_or_none({**names.renamed, **_renamed_params(run, params)}),
            "runlab.skipped": _json_or_none(sorted(run.skipped)),
        }
        fresh = {
            k: _clip(str(v), self.limits.tag_value)
            for k, v in tags.items()
            if v is not None and old_tags.get(k) != _clip(str(v), self.limits.tag_value)
        }
        if old_tags.get(STATE_TAG) != text:
            fresh[STATE_TAG] = text  # last: it says the points above are all sent
        items = [RunTag(k, v) for k, v in fresh.items()]
        for chunk in _chunks(items, self.limits.params_batch):
            self.client.log_batch(mlflow_id, tags=chunk)
        return bool(fresh)

    def _status(self, mlflow_id: str, run: Run, old: Any) -> bool:
        """The MLflow run's status, as runlab's; whether it changed."""
        status = mlflow_state(Status.of(run.facts.get("status")))
        if old is not None and old.info.status == status:
            return False
        if status == "RUNNING":
            if old is None:
                return False  # a new run is RUNNING
            self.client.update_run(mlflow_id, status=status)
        else:
            end = _ms(run.facts.get("end_time"))
            self.client.set_terminated(mlflow_id, status=status, end_time=end)
        return True

    def _artifacts(self, mlflow_id: str, run: Run) -> None:
        """The run's ``artifacts/`` (at the root of the MLflow run's artifacts) and its
        visible ``metadata/`` files (under ``runlab-metadata/``)."""
        folder = run.path / "artifacts"
        if folder.is_dir() and any(folder.iterdir()):
            self.client.log_artifacts(mlflow_id, str(folder))
        metadata = run.path / "metadata"
        if metadata.is_dir():
            for file in sorted(metadata.iterdir()):
                if file.is_file() and not file.name.startswith("."):
                    self.client.log_artifact(mlflow_id, str(file), "runlab-metadata")


def _renamed_params(run: Run, params: dict[str, str]) -> dict[str, str]:
    mapped = list(params)
    return {k: m for k, m in zip(run.config, mapped, strict=True) if k != m}


def _json_or_none(value: Any) -> str | None:
    return json.dumps(value, ensure_ascii=False) if value else None
