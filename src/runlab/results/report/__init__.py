"""Reports of runs: a leaderboard and learning curves per group, as HTML, PNG and JSON.

    >>> from runlab.results.report import build_report, select_runs, write_report
    >>> runs, scope = select_runs("logs")        # the latest sweep (or every run)
    >>> report = build_report(runs, ["train.loss", "test.acc"], scope=scope)
    >>> write_report(report, "reports/latest")   # index.html, <metric>.png, report.json

What a report shows, and why:

- **Scope first.** By default one coherent set of runs: the latest sweep recorded in
  ``<logs>/.sweeps/`` (every run when there is none); ``sweep=`` picks one,
  ``all_runs=True`` takes the whole logs directory, ``where`` filters. What was left
  out is said: the runs outside the scope, and the runs kept out of the curves and the
  leaderboard (failed or unreadable ones, listed with their records).
- **Labels from differences.** Groups are made from the config keys that vary among the
  plotted runs (:mod:`._labels`); seeds are averaged, never grouped (unless ``by``
  names them): ``model=cnn · lr=0.001``.
- **Ranked.** Groups are ordered, and coloured, best first by the rank metric's final
  value (``rank``: default the first metric not logged in ``train``; ``:max``/``:min``
  or a guess from its name: acc, f1, auc, score... are maximised).

The package, one job per module (none imports this ``__init__``; no cycles):

- ``_format``: colours, value and label formatting (a leaf);
- ``_scope``: :func:`select_runs`; ``_labels``: :func:`differences`, labels, ranking;
- ``_model``: :class:`Report` and ``report.json``; ``_build``: :func:`build_report`;
- ``_html`` (with ``_records_html`` and ``templates/``): ``index.html``;
  ``_png``: the PNGs; ``_write``: :func:`write_report`.
"""

from __future__ import annotations

from runlab.results.report._build import NoRunsError, build_report
from runlab.results.report._format import PALETTE, TOP, fmt, palette, shorten
from runlab.results.report._html import write_html
from runlab.results.report._labels import default_by, differences, higher_is_better
from runlab.results.report._model import Report, write_json
from runlab.results.report._png import write_pngs
from runlab.results.report._scope import ScopeError, select_runs
from runlab.results.report._write import write_report
from runlab.status import FAILING

__all__ = [
    "FAILING",
    "PALETTE",
    "TOP",
    "NoRunsError",
    "Report",
    "ScopeError",
    "build_report",
    "default_by",
    "differences",
    "fmt",
    "higher_is_better",
    "palette",
    "select_runs",
    "shorten",
    "write_html",
    "write_json",
    "write_pngs",
    "write_report",
]
