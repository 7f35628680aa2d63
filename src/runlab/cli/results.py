"""``runlab ls``, ``runlab show`` and ``runlab status``: the runs of a logs directory.

    runlab ls [--logs DIR] [--where QUERY] [--columns COL,...] [--metrics M,...] [--sort [-]COL,...]
              [--json|--csv]
    runlab show [--logs DIR] RUN_ID [--json]
    runlab status [--logs DIR] [--where QUERY] [--json|--csv]

``--logs`` defaults to ``$RUNLAB_LOGS``, else the project root's ``logs/`` (see
:mod:`runlab.logs`). Exit status: 0, 1 for a missing run, 2 for a missing logs
directory or a query or column that cannot be used.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runlab.cli._logs import add_logs_option, logs_from, logs_value
from runlab.cli._text import cell, clipped, console, m, safe
from runlab.errors import UserError
from runlab.logs import Logs, is_run_id
from runlab.record.files import tail
from runlab.results.query import QueryError, suggest
from runlab.status import FAILING, Status, colour, names


# ---------------------------------------------------------------- arguments
def _logs_argument(parser: argparse.ArgumentParser) -> None:
    add_logs_option(parser, positional=True)


def _format_arguments(parser: argparse.ArgumentParser) -> None:
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON, for scripts")
    fmt.add_argument("--csv", action="store_true", help="print CSV, for scripts")


def _where_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-w",
        "--where",
        metavar="QUERY",
        help="keep the runs matching QUERY, e.g. \"info.status == 'COMPLETE' & config.lr < 0.1\"",
    )


def configure_ls(parser: argparse.ArgumentParser) -> None:
    _logs_argument(parser)
    _where_argument(parser)
    parser.add_argument(
        "-c",
        "--columns",
        action="append",
        metavar="COL,...",
        help="columns to show (patterns allowed: 'config.*'; metric summaries such as "
        "train.loss.last); default: status, times and the config keys that vary",
    )
    parser.add_argument(
        "-m",
        "--metrics",
        action="append",
        metavar="M,...",
        help="add a column of each metric's final value, as <metrics file>.<key> "
        "(train.loss: the column train.loss.last)",
    )
    parser.add_argument(
        "-s",
        "--sort",
        action="append",
        metavar="COL[:desc],...",
        help="sort by these columns, COL:desc (or --sort=-COL) for descending; default: run_id",
    )
    parser.add_argument("-n", "--limit", type=int, help="show at most this many runs")
    _format_arguments(parser)


def configure_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="+", metavar="RUN_ID", help="the run id")
    add_logs_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
    parser.add_argument("--csv", action="store_true", help="print the run's row as CSV")


def configure_status(parser: argparse.ArgumentParser) -> None:
    _logs_argument(parser)
    _where_argument(parser)
    parser.add_argument(
        "--lines", type=int, default=3, help="traceback lines to show per failing run (default 3)"
    )
    parser.add_argument(
        "-n", "--limit", type=int, default=20, help="failing runs to show (default 20)"
    )
    _format_arguments(parser)


# ------------------------------------------------------------------- helpers
def _logs_or_none(args: argparse.Namespace) -> Path | None:
    """The logs directory, or ``None`` when the default one does not exist yet
    (``ls``/``status`` before the first run: not an error)."""
    if not logs_value(args) and not Logs.resolve().path.is_dir():
        return None
    return logs_from(args).path


def _no_runs(logs: Path, where: str | None) -> str:
    if where:
        return f"no runs match the query in {safe(logs)}/"
    return f"no runs yet in {safe(logs)}/ (run `pixi run train` or `python tasks/train.py` first)"


def _default_logs() -> Path:
    return Logs.resolve().path


def _has_runs(logs: Path) -> bool:
    """Whether ``logs`` holds at least one run directory (a numbered folder)."""
    with os.scandir(logs) as it:
        return any(is_run_id(e.name) and e.is_dir() for e in it)


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Show the reader's warnings (unreadable runs) as short lines on stderr: a warning's
    own lines (one per run it names) stay lines; the user's text in them is one line each
    already (see ``runlab.results.reader``), its other control characters escaped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        print(f"runlab: warning: {safe(w.message, keep=chr(10))}", file=sys.stderr)


def _reader(logs: Path, where: str | None) -> Any:
    from runlab.results.reader import Reader  # polars: loaded when runs are read

    runs = Reader(logs)
    if where:
        try:
            runs = runs.filter(where)
        except QueryError as exc:
            raise query_error(exc) from None
    return runs


def _run(body: Any, args: argparse.Namespace) -> int:
    with _warnings_to_stderr():  # an error is a UserError: runlab.cli prints it in one line
        return int(body(args) or 0)


def query_error(exc: Any, prefix: str = "invalid query: ") -> UserError:
    """A :class:`~runlab.results.query.QueryError` as the command's error: its line, then
    the query with a caret under the part that is wrong."""
    error = UserError(prefix + exc.line())
    error.detail = exc.detail
    return error


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(
        orjson.dumps(_jsonable(data), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
        + "\n"
    )


def _print_csv(df: Any) -> None:
    import polars as pl

    nested = [c for c, t in df.schema.items() if isinstance(t, (pl.List, pl.Array, pl.Struct))]
    if nested:
        import orjson

        df = df.with_columns(
            pl.Series(c, [None if v is None else orjson.dumps(v).decode() for v in df[c].to_list()])
            for c in nested
        )
    sys.stdout.write(df.write_csv())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _console() -> Any:
    # Piped output is not wrapped at 80 columns: one line per run, whatever its width.
    return console(width=None if sys.stdout.isatty() else 10_000)


def _header(column: str) -> str:
    for prefix in ("config.", "info."):
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


def _short_time(value: Any) -> str:
    # 2026-11-23T09:27:17.173+00:00 -> 2026-11-23 09:27:17
    text = _cell(value)
    return text[:19].replace("T", " ") if len(text) >= 19 and text[10:11] == "T" else text


# ------------------------------------------------------------------------ ls
def _default_columns(runs: Any) -> list[str]:
    import polars as pl

    runs = runs.readable()  # runs with a broken config would make every key look varying
    table = runs.select(*runs.columns)
    cols = ["run_id", "info.status"]
    cols += [c for c in ("info.start_time", "info.duration_s") if c in table.columns]
    varying = []
    for c in table.columns:
        if not c.startswith("config.") or c.startswith("config.runlab."):
            continue
        dtype = table.schema[c]
        if isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
            continue
        if table.height > 1 and table[c].n_unique() > 1:
            varying.append(c)
    if table.height <= 1:
        varying = [
            c
            for c in table.columns
            if c.startswith("config.") and not c.startswith("config.runlab.")
        ][:6]
    return cols + varying[:10]


def _expand(runs: Any, patterns: list[str]) -> list[str]:
    known = runs.columns
    out: list[str] = []
    for pat in patterns:
        if any(ch in pat for ch in "*?["):
            hits = [c for c in known if fnmatch.fnmatchcase(c, pat)]
            if not hits and not pat.startswith(("config.", "info.", "env.")):
                # A pattern over metric summaries: read them (e.g. 'train.*.last').
                hits = [c for c in runs.df.columns if fnmatch.fnmatchcase(c, pat)]
            if not hits:
                raise UserError(f"no column matches {pat!r}")
            out += [h for h in hits if h not in out]
        elif pat not in out:
            out.append(pat)
    try:
        runs.select(*out)
    except QueryError as exc:
        names = suggest(exc.query, known)
        hint = f"; did you mean {' or '.join(repr(n) for n in names)}?" if names else ""
        raise UserError(f"unknown column {exc.query!r}{hint}") from None
    return out


def _metric_columns(runs: Any, metrics: list[str]) -> list[str]:
    """``ls --metrics``: the final-value column (``<metric>.last``) of each metric; a metric
    no run logged is an error with the closest one they did log."""
    if not metrics:
        return []
    known = sorted({c[: -len(".last")] for c in runs.df.columns if c.endswith(".last")})
    for metric in metrics:
        if metric not in known:
            names = suggest(metric.removesuffix(".last"), known)
            hint = f"; did you mean {' or '.join(repr(n) for n in names)}?" if names else ""
            raise UserError(f"no run logged metric {metric!r}{hint}")
    return [f"{metric}.last" for metric in dict.fromkeys(metrics)]


def run_ls(args: argparse.Namespace) -> int:
    return _run(_ls, args)


def _ls(args: argparse.Namespace) -> int:
    found = _logs_or_none(args)
    if found is None or (not args.where and not _has_runs(found)):
        logs = found or _default_logs()
        if args.json:
            _print_json([])
        elif not args.csv:
            print(_no_runs(logs, None))
        return 0
    logs = found
    runs = _reader(logs, args.where)
    if not len(runs) and not (args.json or args.csv):
        print(_no_runs(logs, args.where))
        return 0
    columns = _expand(runs, _split(args.columns)) if args.columns else _default_columns(runs)
    columns += [c for c in _metric_columns(runs, _split(args.metrics)) if c not in columns]
    if "run_id" not in columns and not (args.json or args.csv):  # the table always shows it
        columns = ["run_id", *columns]
    sort = _split(args.sort)
    descending = [s.startswith("-") or s.endswith(":desc") for s in sort]
    keys = [s.lstrip("-").removesuffix(":desc").removesuffix(":asc") for s in sort]
    try:
        table = runs.select(*dict.fromkeys([*columns, *keys, "run_id"]))
    except QueryError as exc:
        raise UserError(f"unknown column {exc.query!r}") from None
    if sort:
        table = table.sort(keys, descending=descending, nulls_last=True)
    if args.limit is not None:
        table = table.head(args.limit)
    table = table.select(columns)
    if args.json:
        _print_json(table.to_dicts())
        return 0
    if args.csv:
        _print_csv(table)
        return 0
    from rich.table import Table

    out = Table(box=None, header_style="bold", pad_edge=False)
    for c in columns:
        out.add_column(cell(_header(c)), no_wrap=True, overflow="ellipsis", max_width=48)
    for row in table.iter_rows(named=True):
        cells = []
        for c in columns:
            value = row[c]
            if c == "info.status" and value:
                cells.append(cell(value, style=colour(value)))
            elif c.endswith("_time"):
                cells.append(cell(_short_time(value)))
            else:
                cells.append(cell(_cell(value)))
        out.add_row(*cells)
    out_console = _console()
    out_console.print(out)
    shown = f"{table.height} of {len(runs)}" if table.height != len(runs) else f"{len(runs)}"
    out_console.print(f"[dim]{m(shown)} run(s) in {m(logs)}[/]")
    return 0


# ---------------------------------------------------------------------- show
def _record(logs: Path, run_id: int) -> dict[str, Any]:
    from runlab.results.reader import NoSuchRun, read_run  # polars, as in _reader

    try:
        return read_run(logs, run_id)
    except NoSuchRun as exc:
        raise UserError(str(exc), code=1) from None


def run_show(args: argparse.Namespace) -> int:
    return _run(_show, args)


def _show(args: argparse.Namespace) -> int:
    if len(args.args) > 2:
        raise UserError("usage: runlab show [--logs DIR] RUN_ID")
    logs_arg, run_arg = (None, args.args[0]) if len(args.args) == 1 else args.args
    if not is_run_id(run_arg):
        raise UserError(f"a run id is a number, not {run_arg!r}")
    logs = logs_from(args, positional=logs_arg).path
    record = _record(logs, int(run_arg))
    if args.json:
        _print_json(record)
        return 0
    if args.csv:
        import polars as pl

        runs = _reader(logs, None).filter(pl.col("run_id") == int(run_arg))
        _print_csv(runs.df)
        return 0
    import yaml

    console = _console()
    style = colour(record["status"])
    console.print(
        f"[bold]run {m(record['run_id'])}[/]  [{style}]{m(record['status'])}[/]  "
        f"[dim]{m(record['path'])}[/]"
    )
    info = record.get("info") or {}
    took = info.get("duration_s")  # a number unless the record was edited by hand
    facts = [
        ("started", _short_time(info.get("start_time"))),
        ("ended", _short_time(info.get("end_time"))),
        ("duration", f"{took:.1f} s" if isinstance(took, (int, float)) else took),
        ("host", info.get("host")),
        ("job", info.get("job_id")),
        ("attempts", info.get("attempts")),
    ]
    console.print("  " + "   ".join(f"{m(k)}: {m(v)}" for k, v in facts if v not in (None, "")))
    error = info.get("error")
    if isinstance(error, dict):
        console.print(f"  [red]{m(error.get('type'))}: {m(error.get('message'))}[/]")
    for title, key in (("config", "config"), ("overrides", "overrides")):
        if record.get(key):
            console.print(f"\n[bold]{m(title)}[/]")
            text = _indent(yaml.safe_dump(clipped(record[key]), sort_keys=False))
            console.print(cell(text, limit=None, keep="\n"))
    env = record.get("env")
    if isinstance(env, dict):
        console.print("\n[bold]environment[/]")
        hidden = ("packages", "conda_packages", "problems")  # problems: printed at the end
        short = {k: v for k, v in env.items() if k not in hidden}
        text = _indent(yaml.safe_dump(short, sort_keys=False, default_flow_style=None))
        console.print(cell(text, limit=None, keep="\n"))  # `[venv/]` is a list, not rich markup
    if record["metrics"]:
        console.print("\n[bold]metrics[/] [dim](last / min / max)[/]")
        for name, summary in record["metrics"].items():
            parts = [f"{summary['rows']} rows"]
            if "step.max" in summary:
                parts.append(f"step {summary['step.max']}")
            keys = sorted({k.rsplit(".", 1)[0] for k in summary if k.endswith(".last")})
            for key in keys:
                vals = [summary.get(f"{key}.{s}") for s in ("last", "min", "max")]
                parts.append(f"{key} " + " / ".join(_cell(v) for v in vals if v is not None))
            console.print(cell(f"  {name}: " + ", ".join(parts)))
    for sub in ("artifacts", "checkpoints"):
        if record[sub]:
            console.print(f"\n[bold]{m(sub)}[/]: " + ", ".join(m(a) for a in record[sub][:20]))
    if record["traceback"]:
        console.print("\n[bold]traceback[/] [dim](last lines)[/]")
        for line in record["traceback"]:
            console.print(cell("  " + line, style="red"))
    for problem in record["problems"]:
        console.print(f"[yellow]problem:[/] {m(problem)}")
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip("\n").splitlines())


# -------------------------------------------------------------------- status
def run_status(args: argparse.Namespace) -> int:
    return _run(_status, args)


def _status(args: argparse.Namespace) -> int:
    import polars as pl

    found = _logs_or_none(args)
    if found is None or (not args.where and not _has_runs(found)):
        _print_no_status(found or _default_logs(), args)
        return 0
    logs = found
    runs = _reader(logs, args.where)
    cols = [
        c
        for c in ("run_id", "info.status", "info.error.type", "info.error.message", "problem")
        if c in runs.columns
    ]
    table = runs.select(*cols)
    counts = (
        table.group_by("info.status")
        .agg(pl.len().alias("runs"))
        .sort("runs", "info.status", descending=[True, False], nulls_last=True)
    )
    failing_rows = table.filter(pl.col("info.status").is_in(names(FAILING))).sort("run_id")
    failing = _failing(failing_rows.head(args.limit), logs, args.lines)
    if args.json:
        _print_json(
            {
                "logs": str(logs),
                "runs": len(runs),
                "counts": {
                    (s if s is not None else Status.CORRUPT.value): n for s, n in counts.iter_rows()
                },
                "failing": failing,
                "failing_total": failing_rows.height,
            }
        )
        return 0
    if args.csv:
        _print_csv(
            counts.rename({"info.status": "status"}).with_columns(
                pl.col("status").fill_null(Status.CORRUPT.value)
            )
        )
        return 0
    _print_status(logs, len(runs), counts, failing, failing_rows.height)
    return 0


def _print_no_status(logs: Path, args: argparse.Namespace) -> None:
    """``runlab status`` of a logs directory without runs, in the format asked."""
    if args.json:
        _print_json({"logs": str(logs), "runs": 0, "counts": {}, "failing": [], "failing_total": 0})
    elif args.csv:
        print("status,runs")
    else:
        print(_no_runs(logs, None))


def _failing(rows: Any, logs: Path, lines: int) -> list[dict[str, Any]]:
    """The failing runs of ``rows`` (a polars frame), each with its traceback's last lines."""
    return [
        {
            "run_id": row["run_id"],
            "status": row["info.status"],
            "error_type": row.get("info.error.type"),
            "error_message": row.get("info.error.message"),
            "problem": row.get("problem"),
            "traceback": tail(logs / str(row["run_id"]) / "metadata" / "traceback.txt", lines),
        }
        for row in rows.iter_rows(named=True)
    ]


def _print_status(
    logs: Path, total: int, counts: Any, failing: list[dict[str, Any]], failing_total: int
) -> None:
    """The runs by status, then the failing ones with their errors (for a terminal)."""
    console = _console()
    parts = []
    for status, n in counts.iter_rows():
        name = status or Status.CORRUPT.value
        parts.append(f"[{colour(name)}]{m(name)}[/] {n}")
    console.print(f"[bold]{m(total)} run(s)[/] in {m(logs)}: " + "   ".join(parts))
    if not failing:
        return
    console.print(f"\n[bold]failing runs[/] ({m(failing_total)})")
    for f in failing:
        style = colour(f["status"])
        head = f"  {f['run_id']:>5}  [{style}]{m(f['status'])}[/]"
        if f["error_type"] or f["error_message"]:
            head += m(f"  {f['error_type'] or ''}: {f['error_message'] or ''}".rstrip(": "))
        elif f["problem"]:
            head += f"  {m(f['problem'])}"
        elif f["status"] == Status.LOST:
            head += "  heartbeat stopped while RUNNING (killed, or its node died)"
        console.print(head)
        for line in f["traceback"]:
            console.print(cell("         " + line, style="dim"))
    if failing_total > len(failing):
        console.print(f"  [dim]... and {m(failing_total - len(failing))} more (--limit)[/]")
