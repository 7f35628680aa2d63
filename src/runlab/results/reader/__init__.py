"""Read many runs at once: one Polars row per run, lazy metrics, grouping over seeds.

    >>> runs = runlab.Reader("logs")          # or runlab.runs("logs")
    >>> done = runs.filter("info.status == 'COMPLETE' & config.method in ['GD', 'GN']")
    >>> done.group_by("config.method", "config.std").curves("train.loss")

The run table (``Reader.df``) has one row per run directory of ``logs`` (a folder
named by a canonical run id; other folders are ignored with a warning):

- ``run_id`` (int), then ``config.*``, ``info.*`` and ``env.*``: the flattened
  ``metadata/config``, ``info`` and ``env`` records, read from their JSON twins
  (``env.packages`` and ``env.conda_packages`` are left out: read them from the file).
- metric summaries, per metrics file ``<name>.jsonl``: ``<name>.step.max``, and
  for every other key ``k`` but ``time``: ``<name>.<k>.last`` (the last non-null
  value) and, for numbers, ``<name>.<k>.min`` and ``<name>.<k>.max``.
- ``problem``: why a run could not be read fully (null when it could).

Keys that flatten to the same column (``a.b: 1`` beside ``a: {b: 2}``) keep one
value whatever their order: the most nested key path's (as OmegaConf reads a
dotted key), then the smallest. The clash is the run's ``problem`` (so it is
named, with both keys, in the read's one :class:`CorruptRunWarning`); the other
value stays in the run's own config file.

``info.status`` is ``LOST`` for a ``RUNNING`` run whose writer is gone: on this
host, no process with its pid that started no later than its attempt (the rule of
``runlab verify``, :func:`runlab.record.process.writer_alive`); on another host, a
heartbeat older than ``max(60 s, 4 x heartbeat_interval_s)``; and ``CORRUPT`` for a run whose info
record is missing, empty or unreadable. Unreadable runs and metric files never
raise: they are marked, and listed once per read in a :class:`CorruptRunWarning`.

The package, one job per module:

- ``_files``: which folders are runs; their metadata (JSON twins, bounded YAML).
- ``_metrics``: metric files (JSON lines) into frames, and their summaries.
- ``_columns``: typed columns from values whose types may disagree.
- ``_index``: the on-disk index (immutable data files behind atomic pointers).
- ``_store``: what one read knows: the run table and the metric rows loaded.
- ``_api``: :class:`Reader` and :class:`Grouped`.
- ``_run``: one run's whole record (:func:`read_run`, for ``runlab show`` and the report).
"""

from __future__ import annotations

from runlab.logs import INDEX as INDEX_DIR
from runlab.results.reader._api import CorruptRunWarning, Grouped, Reader, runs, to_pandas
from runlab.results.reader._files import iso_epoch as _iso_epoch
from runlab.results.reader._index import IndexDamagedWarning, wait_for_index
from runlab.results.reader._run import NoSuchRun, read_run
from runlab.results.reader._store import LOST_AFTER_S

__all__ = [
    "CorruptRunWarning",
    "Grouped",
    "IndexDamagedWarning",
    "NoSuchRun",
    "Reader",
    "read_run",
    "runs",
    "to_pandas",
    "wait_for_index",
]
# Also importable, for runlab's own commands: INDEX_DIR, LOST_AFTER_S, _iso_epoch.
_ = (INDEX_DIR, LOST_AFTER_S, _iso_epoch)
