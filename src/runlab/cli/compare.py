"""``runlab compare RUN... | --where QUERY``: runs side by side.

    runlab compare 3 4 7 [--metrics train.loss,test.acc] [--best auto|min|max] [--all-keys] [--json]
    runlab compare --where "config.lr < 0.1" [--limit 20]

One column per run: its status, duration and commit, the config keys whose values
differ among the runs (``--all-keys``: every key), then the final (last logged) and
best value of each metric. The best is the smallest for a metric whose name says
it is a loss or an error (``loss``, ``err``, ``mse``, ``mae``, ``nll``, ``perplexity``
in its key, or ``regret``), the largest otherwise; ``--best min|max`` sets it for every metric.
Everything comes from the reader's run table (``runlab.results.reader``): its
metric summaries (``<file>.<key>.last``/``.min``/``.max``), never the files again.
Exit status: 0; 1 for a run that is not there; 2 for a bad query or metric.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from runlab.cli._logs import add_logs_option, logs_from
from runlab.cli._text import cell, m
from runlab.cli.results import (
    _cell,
    _console,
    _print_json,
    _reader,
    _run,
    _split,
    _where_argument,
)
from runlab.errors import UserError
from runlab.logs import is_run_id
from runlab.results.query import suggest
from runlab.status import colour

# A metric whose key says it is a loss or an error is best when smallest.
_SMALLER_IS_BETTER = re.compile(r"loss|err|mse|mae|nll|perplexity|regret", re.IGNORECASE)
# Keys left out of the default metrics: counters, not results.
_COUNTERS = {"epoch", "step", "iteration", "iter"}


def configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run ids (or --where QUERY)")
    _where_argument(parser)
    parser.add_argument(
        "-m",
        "--metrics",
        action="append",
        metavar="M,...",
        help="metrics to show, as <metrics file>.<key> (default: every metric the runs "
        "logged but counters such as epoch)",
    )
    parser.add_argument(
        "--best",
        choices=("auto", "min", "max"),
        default="auto",
        help="which value of a metric is best (default auto: min for a name holding "
        "loss, err, mse, mae, nll, perplexity or regret, max otherwise)",
    )
    parser.add_argument(
        "--all-keys", action="store_true", help="every config key, not only those that differ"
    )
    parser.add_argument(
        "-n", "--limit", type=int, default=20, help="runs shown in the table (default 20)"
    )
    add_logs_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def run_compare(args: argparse.Namespace) -> int:
    return _run(_compare, args)


def direction(metric: str, best: str = "auto") -> str:
    """``"min"`` or ``"max"``: which value of ``metric`` is its best."""
    if best in ("min", "max"):
        return best
    key = metric.rsplit(".", 1)[-1] if "." in metric else metric
    return "min" if _SMALLER_IS_BETTER.search(key) else "max"


def _compare(args: argparse.Namespace) -> int:
    import polars as pl

    if not args.runs and not args.where:
        raise UserError("name the runs to compare: RUN ids, or --where QUERY")
    bad = [r for r in args.runs if not is_run_id(r)]
    if bad:
        raise UserError(f"{bad[0]!r} is not a run id: give run numbers (see `runlab ls`)")
    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: give a number of runs of at least 1")
    logs = logs_from(args).path
    runs = _reader(logs, args.where)
    ids = list(dict.fromkeys(int(r) for r in args.runs))
    if ids:
        missing = [i for i in ids if i not in set(runs.run_ids)]
        if missing:
            where = " matching the query" if args.where else ""
            raise UserError(
                f"no run {missing[0]}{where} in {logs}: see `runlab ls`",
                code=1,
            )
        runs = runs.filter(pl.col("run_id").is_in(ids))
    if len(runs) == 0:
        raise UserError(f"no runs match the query in {logs}", code=1)
    table = runs.df
    order = ids or sorted(table["run_id"].to_list())
    rows = {r["run_id"]: r for r in table.iter_rows(named=True)}
    records = [rows[i] for i in order]
    metrics = _metrics(args, table.columns)
    keys = _config_keys(table.columns, records, args.all_keys)
    data = _data(records, keys, metrics, args.best, logs)
    data["all_keys"] = bool(args.all_keys)
    if args.json:
        _print_json(data)
        return 0
    _print_table(data, args.limit)
    return 0


def _metrics(args: argparse.Namespace, columns: list[str]) -> list[str]:
    known = sorted({c[: -len(".last")] for c in columns if c.endswith(".last")})
    named = _split(args.metrics)
    if not named:
        return [k for k in known if k.rsplit(".", 1)[-1] not in _COUNTERS]
    for metric in named:
        if metric not in known:
            names = suggest(metric, known)
            hint = f"; did you mean {' or '.join(repr(n) for n in names)}?" if names else ""
            listing = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise UserError(
                f"none of the runs logged metric {metric!r}{hint}",
                todo=f"they logged: {listing}" if known and not names else None,
            )
    return list(dict.fromkeys(named))


def _config_keys(columns: list[str], records: list[dict[str, Any]], every: bool) -> list[str]:
    keys = [c for c in columns if c.startswith("config.") and not c.startswith("config.runlab.")]
    if every or len(records) < 2:
        return keys
    return [k for k in keys if len({repr(r.get(k)) for r in records}) > 1]


def _commit(record: dict[str, Any]) -> str | None:
    commit = record.get("info.code_commit") or record.get("env.git.commit")
    if not commit:
        return None
    return str(commit)[:10] + (" +dirty" if record.get("env.git.dirty") else "")


def _data(
    records: list[dict[str, Any]], keys: list[str], metrics: list[str], best: str, logs: Path
) -> dict[str, Any]:
    runs = []
    for r in records:
        values = {}
        for metric in metrics:
            way = direction(metric, best)
            values[metric] = {"final": r.get(f"{metric}.last"), "best": r.get(f"{metric}.{way}")}
        runs.append(
            {
                "run_id": r["run_id"],
                "status": r.get("info.status"),
                "duration_s": r.get("info.duration_s"),
                "commit": _commit(r),
                "config": {k.removeprefix("config."): r.get(k) for k in keys},
                "metrics": values,
            }
        )
    return {
        "logs": str(logs),
        "run_ids": [r["run_id"] for r in records],
        "keys": [k.removeprefix("config.") for k in keys],
        "best": {metric: direction(metric, best) for metric in metrics},
        "runs": runs,  # NaN kept for the table; --json turns it into null
    }


def _duration(value: Any) -> str:
    if not isinstance(value, (int, float)) or value != value:
        return _cell(value)
    seconds = float(value)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _print_table(data: dict[str, Any], limit: int) -> None:
    from rich.table import Table

    runs = data["runs"][:limit]
    out = Table(box=None, header_style="bold", pad_edge=False)
    out.add_column("")
    for run in runs:
        out.add_column(cell(f"run {run['run_id']}"), overflow="fold", max_width=32)

    def row(label: Any, cells: list[Any], style: str = "") -> None:
        out.add_row(cell(label, style=style), *cells)

    row("status", [cell(r["status"], style=colour(r["status"]) or "") for r in runs], "bold")
    row("duration", [cell(_duration(r["duration_s"])) for r in runs], "bold")
    row("commit", [cell(r["commit"] or "") for r in runs], "bold")
    if data["keys"]:
        out.add_section()
    for key in data["keys"]:
        row(key, [cell(_cell(r["config"].get(key))) for r in runs])
    if data["best"]:
        out.add_section()
    for metric, way in data["best"].items():
        finals = [r["metrics"][metric]["final"] for r in runs]
        bests = [r["metrics"][metric]["best"] for r in runs]
        row(f"{metric} final", [_number(v, finals, way) for v in finals])
        row(f"{metric} best ({way})", [_number(v, bests, way) for v in bests])
    console = _console()
    console.print(out)
    shown = len(runs)
    total = len(data["runs"])
    more = f" (the first {shown} of {total}: --limit N, or --json)" if shown < total else ""
    keys = "every config key" if data["all_keys"] else "the config keys that differ"
    if not data["keys"] and not data["all_keys"]:
        keys = "no config key differs"
    console.print(f"[dim]{m(total)} run(s) in {m(data['logs'])}; {m(keys)}{m(more)}[/]")


def _number(value: Any, column: list[Any], way: str) -> Any:
    """A metric's cell, in bold where it is the best of its row."""
    numbers = [v for v in column if isinstance(v, (int, float)) and v == v]
    top = (min if way == "min" else max)(numbers) if len(numbers) > 1 else None
    style = "bold green" if top is not None and value == top else ""
    return cell(_cell(value), style=style)
