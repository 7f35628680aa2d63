"""The :class:`Report`: the numbers of a report, typed, and its JSON (``report.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

# A curve panel's series, a group, a leaderboard row...: JSON-ready dicts, as in report.json.
Row = dict[str, Any]


@dataclass
class Report:
    """Everything a report shows, computed by :func:`runlab.results.report.build_report`.

    The fields are ``report.json``'s keys, in its order (``records``, each run's
    ``runlab show`` record, is on the page only). ``study`` is set by
    ``runlab report --study`` (Optuna's figures), ``png_layout`` by
    :func:`~runlab.results.report.write_pngs` (what the layout gave each figure's axes).
    """

    title: str
    logs: str
    where: str | None
    scope: dict[str, Any]
    x: str
    by: list[str]
    by_auto: bool
    folded: dict[str, str]
    seeds: list[str]  # the seed columns averaged over
    metrics: list[str]
    rank: dict[str, Any]  # {"metric": name, "maximise": bool}
    top: int
    runs: int  # runs in scope
    plotted: int  # runs in the curves and the leaderboard
    left_out: list[Row]  # {"run_id", "status", "why"}: failed or unreadable runs
    status: dict[str, int]  # runs per status, most first
    groups: list[Row]  # best first: group, label, full, index, keys, runs, seeds, shown
    curves: dict[str, list[Row]]  # per metric, per group: x, mean, std, min, max, count
    final: dict[str, list[Row]]  # per metric, per group: the runs' last values' stats
    missing: dict[str, list[int]]  # per metric: the plotted runs that never logged it
    leaderboard: list[Row]  # one row per plotted run, best first
    columns: list[str]  # the run table's columns
    run_table: list[Row]
    records: dict[str, Any] = field(repr=False)
    nonfinite: dict[str, dict[str, str]]  # run id -> metric -> "NaN"/"inf"/"-inf"
    study: dict[str, Any] | None = None
    png_layout: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # what could not be drawn, and why

    def to_dict(self) -> dict[str, Any]:
        """``report.json``'s content: the fields but ``records``; ``study``,
        ``png_layout`` and ``skipped`` only when set."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "records"}
        if self.study is None:
            del data["study"]
        if not self.png_layout:
            del data["png_layout"]
        if not self.skipped:
            del data["skipped"]
        return data

    @property
    def best(self) -> Row | None:
        """The leaderboard's first run, if it has a finite value of the rank metric."""
        return next((r for r in self.leaderboard if r["rank"] == 1), None)


def write_json(report: Report, path: Path | str) -> Path:
    """``report.json``: the numbers behind the page and the figures."""
    path = Path(path)
    path.write_bytes(
        orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        + b"\n"
    )
    return path
