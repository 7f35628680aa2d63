"""The public reader: :class:`Reader` (one Polars row per run, filters, lazy metrics)
and :class:`Grouped` (aggregates over the runs of each group, e.g. over seeds)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import polars as pl

from runlab.errors import UserError
from runlab.logs import REFRESH_ENV, default_path
from runlab.record.names import check_name
from runlab.results.query import Node, QueryError, compile_query, keys_of, parse, suggest
from runlab.results.reader._files import first_line
from runlab.results.reader._store import Loaded, Store
from runlab.status import Status


class CorruptRunWarning(UserWarning):
    """Some runs or metric files could not be read fully (the message lists them)."""


def runs(logs: str | os.PathLike[str] | None = None, **kwargs: Any) -> Reader:
    """The runs under ``logs`` (default: see `runlab.logs`): ``Reader(logs)``."""
    return Reader(logs, **kwargs)


# ------------------------------------------------------------------- reader
def _warn(problems: list[tuple[str, str]], what: str) -> None:
    if not problems:
        return
    lines = [f"  {_one_line(path)}: {_one_line(msg)}" for path, msg in problems[:50]]
    if len(problems) > 50:
        lines.append(f"  ... and {len(problems) - 50} more (see Reader.problems)")
    warnings.warn(
        f"{len(problems)} {what} could not be read fully:\n" + "\n".join(lines),
        CorruptRunWarning,
        stacklevel=3,
    )


def _one_line(text: str) -> str:
    """``text`` on one line, a line break in it written ``\\n`` (``\\r``): a run's problem
    keeps to its own line of the warning, whatever its path or message holds."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _refresh_from_env() -> bool | Literal["changes"]:
    """``refresh`` when none is given: ``$RUNLAB_REFRESH`` (``changes`` or ``all``)."""
    value = os.environ.get(REFRESH_ENV, "").strip()
    if value in ("", "all"):
        return True
    if value == "changes":
        return "changes"
    raise UserError(
        f"{REFRESH_ENV}={value!r} is not a way to read runs",
        todo="set it to 'changes' or 'all', or unset it",
    )


class Reader:
    """The runs of a logs directory as a Polars table; immutable, each ``filter`` a new one.

    ``Reader(logs)`` reads (and refreshes) the index at once; metric files are
    read only when their rows or summaries are asked for, and only those of the
    selected runs. By default every run's files are checked against the index
    (a ``stat`` of each record and metric file read), so a file edited by hand is
    never answered from a stale index. ``refresh="changes"``, for a logs directory
    on a shared file system, where each of those calls is a round trip: only the
    runs that have not ended, the new ones, and those whose end changed since the
    index was built (runlab's writers make a file for each change: see
    `runlab.logs.note_change`) are looked at; a file of an ended run edited by
    hand, or by a tool other than runlab, is not seen until ``refresh=True``.
    Left out, ``refresh`` is ``"changes"`` where ``RUNLAB_REFRESH=changes`` is set (so
    every command that reads runs uses it), else ``True``.
    ``refresh=False`` trusts an existing index without looking at the run
    directories at all; ``write_index=False`` never writes into ``logs``;
    ``index=False`` neither reads nor writes the index (every file is parsed).
    """

    def __init__(
        self,
        logs: str | os.PathLike[str] | None = None,
        *,
        refresh: bool | Literal["changes"] | None = None,
        write_index: bool = True,
        index: bool = True,
    ) -> None:
        if refresh is None:
            refresh = _refresh_from_env()
        if refresh not in (True, False, "changes"):
            raise ValueError(f"refresh={refresh!r}: give True, False or 'changes'")
        if logs is None:
            logs = default_path()
        path = Path(logs).expanduser().absolute()
        if not path.is_dir():
            raise FileNotFoundError(f"no logs directory at {path}")
        store = Store(path, refresh=refresh, write=write_index, use_index=index)
        if store.ignored:
            shown = ", ".join(repr(n) for n in store.ignored[:10])
            more = f" and {len(store.ignored) - 10} more" if len(store.ignored) > 10 else ""
            warnings.warn(
                f"{len(store.ignored)} folder(s) in {_one_line(str(path))} are not runs and were ignored: "
                f"{shown}{more} (a run folder is named by its run id, such as 12: ASCII "
                "digits without leading zeros)",
                CorruptRunWarning,
                stacklevel=2,
            )
        _warn(store.meta_problems, "runs")
        self._store = store
        self._table = store.meta
        self._metric_problems: list[tuple[str, str]] = []

    @classmethod
    def _derive(cls, parent: Reader, table: pl.DataFrame) -> Reader:
        new = cls.__new__(cls)
        new._store = parent._store
        new._table = table
        new._metric_problems = []
        return new

    # ------------------------------------------------------------- basics
    @property
    def logs(self) -> Path:
        return self._store.logs

    @property
    def run_ids(self) -> list[int]:
        return self._table["run_id"].to_list()

    def __len__(self) -> int:
        return self._table.height

    def __repr__(self) -> str:
        return f"Reader({str(self.logs)!r}, {len(self)} runs)"

    def path(self, run_id: int) -> Path:
        """The run directory of ``run_id``."""
        return self.logs / str(int(run_id))

    @property
    def stats(self) -> dict[str, int]:
        """What this read did: runs parsed or reused, metric files parsed or cached, writes."""
        return dict(self._store.stats)

    @property
    def problems(self) -> list[tuple[str, str]]:
        """``(path, message)`` for every run or metric file that could not be read fully."""
        return [*self._store.meta_problems, *self._metric_problems]

    def readable(self) -> Reader:
        """The selected runs whose metadata was read without a problem (or all of them,
        when none was): where default columns and groups are chosen from, so that
        broken runs do not make every config key look varying."""
        if not {"problem", "_config_ok"} <= set(self._table.columns):
            return self
        table = self._table.filter(pl.col("problem").is_null() & pl.col("_config_ok"))
        return Reader._derive(self, table) if table.height else self

    # ------------------------------------------------------- summary columns
    def _live(self) -> set[int]:
        t = self._table
        return set(t.filter(pl.col("info.status") == Status.RUNNING.value)["run_id"].to_list())

    def _names(self) -> list[str]:
        """The metric file names of the selected runs (those not valid UTF-8 noted)."""
        names = self._store.names(self.run_ids)
        bad = self._store.bad_names
        if bad:
            self._note([p for r in self.run_ids for p in bad.get(r, ())], "metric files")
        return names

    def _check_name(self, name: object, argument: str) -> str:
        """``name`` if it is a metric file name the writer allows (see
        :func:`runlab.record.names.check_name`), or one of a selected run's files
        (written by another tool); else ValueError naming ``argument``."""
        try:
            return check_name(name, argument)
        except ValueError:
            if isinstance(name, str) and name in self._names():
                return name
            raise

    def _load(self, name: str) -> Loaded:
        """The rows of ``metrics/<name>.jsonl``: note ``loaded.problems`` (``_noted``)
        once its rows or summaries are taken (they may add some)."""
        return self._store.load(name, self.run_ids, self._live())

    def _noted(self, loaded: Loaded) -> None:
        self._note(loaded.problems, "metric files")

    def _summary(self, name: str) -> pl.DataFrame:
        loaded = self._load(name)
        summary = loaded.summary()
        self._noted(loaded)
        return summary

    def _note(self, problems: list[tuple[str, str]], what: str) -> None:
        fresh = [p for p in problems if p not in self._metric_problems]
        self._metric_problems.extend(fresh)
        _warn(fresh, what)

    def _with_summaries(self, names: Iterable[str] | None = None) -> pl.DataFrame:
        """The run table with the summary columns of these metric files (all: None).

        A column two sources would give (``train.acc.top1.last`` from ``train``'s key
        ``acc.top1`` and ``train.acc``'s key ``top1``; or a file named like ``config``)
        is taken from the run table first, then from the file of the longest name (the
        file that ``curves("train.acc.top1")`` reads), and the clash is warned about.
        """
        table = self._table
        wanted = self._names() if names is None else list(names)
        summaries = {}
        for name in wanted:
            summary = self._summary(name)
            if summary.width > 1:
                summaries[name] = summary.drop([c for c in summary.columns if c.startswith("_")])
        owner: dict[str, str | None] = dict.fromkeys(table.columns)
        drop: dict[str, list[str]] = {}
        clashes: list[tuple[str, str]] = []
        for name in sorted(summaries, key=len, reverse=True):
            for col in summaries[name].columns:
                if col == "run_id":
                    continue
                if col in owner:
                    drop.setdefault(name, []).append(col)
                    kept = f"metrics/{owner[col]}.jsonl" if owner[col] else "the run table"
                    clashes.append(
                        (
                            str(self.logs),
                            f"summary column {col!r} of metrics/{name}.jsonl left out: "
                            f"it is taken from {kept}",
                        )
                    )
                else:
                    owner[col] = name
        self._note(clashes, "summary columns")
        for name, summary in summaries.items():
            summary = summary.drop(drop.get(name, []))
            if summary.width > 1:
                table = table.join(summary, on="run_id", how="left")
        return table

    def _resolve_table(self, keys: Iterable[str]) -> pl.DataFrame:
        """The run table with the summary columns that ``keys`` name (if any) joined in."""
        missing = [k for k in keys if k not in self._table.columns]
        if not missing:
            return self._table
        names = self._names()
        wanted = {n for k in missing for n in names if k.startswith(n + ".")}
        return self._with_summaries(sorted(wanted)) if wanted else self._table

    # ------------------------------------------------------------- tables
    @property
    def df(self) -> pl.DataFrame:
        """One row per selected run: config, info, env columns and metric summaries."""
        return self._public(self._with_summaries())

    def collect(self) -> pl.DataFrame:
        """Same as `df`."""
        return self.df

    def lazy(self) -> pl.LazyFrame:
        return self.df.lazy()

    @staticmethod
    def _public(df: pl.DataFrame) -> pl.DataFrame:
        return df.drop([c for c in df.columns if c.startswith("_")])

    def to_pandas(self) -> Any:
        """The run table as a pandas DataFrame."""
        return to_pandas(self.df)

    @property
    def searchable(self) -> pl.DataFrame:
        """Every column a query or ``group_by`` may name, with its type."""
        df = self.df
        return pl.DataFrame({"key": df.columns, "type": [str(t) for t in df.dtypes]}).sort("key")

    @property
    def columns(self) -> list[str]:
        """The run-table columns known without reading metric files (no summaries)."""
        return self._public(self._table).columns

    def select(self, *columns: str | Iterable[str]) -> pl.DataFrame:
        """These columns of the run table; metric files are read only for the summaries named."""
        flat = [c for col in columns for c in ([col] if isinstance(col, str) else col)]
        table = self._resolve_table(flat)
        self._check_keys(flat, table)
        return table.select(flat)

    # ------------------------------------------------------------- filter
    def filter(self, query: str | pl.Expr) -> Reader:
        """The runs matching ``query`` (the MLXP grammar, see `runlab.results.query`, or a
        Polars expression) as a new Reader."""
        if isinstance(query, pl.Expr):
            names = query.meta.root_names()
            table = self._resolve_table(names)
            self._check_keys(names, table)
            expr = query
        else:
            node: Node = parse(query)
            names = [k.name for k in keys_of(node)]
            table = self._resolve_table(names)
            expr = compile_query(node, self._public(table).schema, source=query)
        try:
            ids = table.filter(expr)["run_id"]
        except pl.exceptions.PolarsError as exc:
            raise QueryError(
                f"the query failed: {first_line(exc)}", str(query), 0, len(str(query))
            ) from exc
        return Reader._derive(self, self._table.filter(pl.col("run_id").is_in(ids.to_list())))

    def _check_keys(self, keys: Iterable[str], table: pl.DataFrame | None = None) -> None:
        table = self._table if table is None else table
        for key in keys:
            if key not in table.columns:
                known = self._public(table).columns
                raise QueryError(f"unknown key {key!r}", key, 0, len(key), suggest(key, known))

    # ------------------------------------------------------------ metrics
    def metrics(self, name: str, join: Sequence[str] = ()) -> pl.LazyFrame:
        """The rows of ``metrics/<name>.jsonl`` of the selected runs, with a ``run_id``
        column (and the run-table columns named in ``join``), as a LazyFrame.

        ``name`` is a file name as the writer allows them (``ValueError`` otherwise: it
        never reaches outside the runs' ``metrics`` folders). A key of the rows named
        like a ``join`` column is replaced by that column, with a warning."""
        self._check_name(name, "name")
        loaded = self._load(name)
        lf = loaded.frame()
        self._noted(loaded)
        join = list(dict.fromkeys(c for c in join if c != "run_id"))
        if join:
            table = self._resolve_table(join)
            self._check_keys(join, table)
            clash = [c for c in join if c in lf.collect_schema()]
            if clash:
                self._note(
                    [
                        (
                            str(self.logs),
                            f"key {c!r} of metrics/{name}.jsonl replaced by the run-table "
                            f"column {c!r} (join=)",
                        )
                        for c in clash
                    ],
                    "metric keys",
                )
                lf = lf.drop(clash)
            lf = lf.join(table.select("run_id", *join).lazy(), on="run_id", how="left")
        return lf

    def _split_metric(self, metric: str) -> tuple[str, str]:
        """``"train.loss"`` -> ``("train", "loss")``: the longest prefix naming a metrics file."""
        parts = metric.split(".")
        root = str(self.logs)
        for i in range(len(parts) - 1, 0, -1):
            name = ".".join(parts[:i])
            try:
                self._check_name(name, "metric")
            except ValueError:
                continue  # never a path outside the runs' metrics folders
            for rid in self.run_ids:
                if os.path.exists(f"{root}/{rid}/metrics/{name}.jsonl"):
                    return name, metric[len(name) + 1 :]
        names = self._names()
        head, _, key = metric.partition(".")
        known = [f"{n}.<key>" for n in names]
        if not key:
            raise QueryError(
                f"name a metric as <file>.<key>, e.g. {names[0] if names else 'train'}.loss",
                metric,
                0,
                len(metric),
            )
        raise QueryError(
            f"no metrics/{head}.jsonl in the selected runs",
            metric,
            0,
            len(head),
            suggest(f"{head}.<key>", known),
        )

    def group_by(self, *keys: str | Iterable[str]) -> Grouped:
        """Group the selected runs by run-table columns (e.g. ``config.method``)."""
        flat: list[str] = []
        for k in keys:
            flat.extend([k] if isinstance(k, str) else list(k))
        table = self._resolve_table(flat)
        self._check_keys(flat, table)
        return Grouped(self, flat)

    def curves(self, metric: str, x: str = "step", ddof: int = 1) -> pl.DataFrame:
        """Mean, std, min, max and count of ``metric`` over all selected runs, per ``x``."""
        return Grouped(self, []).curves(metric, x=x, ddof=ddof)

    def final(self, metric: str, ddof: int = 1) -> pl.DataFrame:
        """Mean, std, min, max and count of each run's last value of ``metric``."""
        return Grouped(self, []).final(metric, ddof=ddof)


def _stats(col: str, ddof: int) -> list[pl.Expr]:
    c = pl.col(col)
    return [
        c.mean().alias("mean"),
        c.std(ddof=ddof).alias("std"),
        c.min().alias("min"),
        c.max().alias("max"),
        c.count().cast(pl.Int64).alias("count"),
    ]


_NUMPY_CURVES = True  # tests turn it off to compare with the group_by path
_NONE = np.empty(0)  # a std that is null (too few runs), filled in at the end
# One group of a fast-path curve: its id, its x values, its runs x steps values, its runs.
_Part = tuple[int, np.ndarray, np.ndarray, np.ndarray]


def _curves_numpy(
    rows: pl.DataFrame,
    ids: pl.DataFrame,
    groups: pl.DataFrame | None,
    keys: list[str],
    x: str,
    key: str,
    ddof: int,
) -> pl.DataFrame | None:
    """``Grouped.curves`` without a group_by, for the common case: ``key`` is Float64,
    each run's rows are contiguous with strictly increasing integer ``x``, and the
    runs of each group have the same ``x`` values. Then a group is a runs x steps
    array, reduced along its runs with the group_by path's semantics: a NaN makes
    mean and std NaN, min and max ignore NaNs (NaN only when all are), std is null
    when count - ddof <= 0. None when the rows are not of that shape."""
    if rows.schema[key] != pl.Float64 or not rows.schema[x].is_integer() or not rows.height:
        return None
    parts = _group_arrays(rows, ids, groups, keys, x, key)
    if not parts:
        return None
    out = _reduce_runs(parts, rows.schema[x], x, ddof)
    if groups is not None:
        which = np.concatenate([np.full(p[1].size, p[0], dtype=np.int64) for p in parts])
        most = cast(int, groups["_g"].max())  # the row index of a non-empty frame
        position = np.empty(int(most) + 1, dtype=np.int64)
        position[groups["_g"].to_numpy()] = np.arange(groups.height)
        out = pl.concat([groups.select(keys)[position[which]], out], how="horizontal")
    return out


def _group_arrays(
    rows: pl.DataFrame,
    ids: pl.DataFrame,
    groups: pl.DataFrame | None,
    keys: list[str],
    x: str,
    key: str,
) -> list[_Part] | None:
    """Each group (in key order) as a runs x steps array of ``key``, or None when the
    rows are not of the fast path's shape (see :func:`_curves_numpy`)."""
    rid = rows.get_column("run_id").to_numpy()
    xs = rows.get_column(x).to_numpy()
    vals = rows.get_column(key).to_numpy()
    cut = np.flatnonzero(rid[1:] != rid[:-1]) + 1
    starts = np.concatenate(([0], cut))
    lens = np.diff(np.concatenate((starts, [len(rid)])))
    run_ids = rid[starts]
    if np.unique(run_ids).size != run_ids.size:
        return None  # a run's rows are not contiguous
    step = np.diff(xs) > 0
    step[cut - 1] = True  # across runs, anything goes
    if not step.all():
        return None
    gid = dict(zip(ids["run_id"].to_list(), ids["_g"].to_list(), strict=True))
    run_g = np.array([gid.get(r, -1) for r in run_ids.tolist()], dtype=np.int64)
    order = (
        groups.sort(keys, nulls_last=True)["_g"].to_numpy()
        if groups is not None
        else np.array([0], dtype=np.int64)
    )
    if order.size > 5000:
        return None  # many small groups: the group_by is as fast
    parts: list[_Part] = []
    for g in order.tolist():
        runs = np.flatnonzero(run_g == g)
        if not runs.size:
            continue
        n = int(lens[runs[0]])
        if (lens[runs] != n).any():
            return None
        first = int(starts[runs[0]])
        if runs[-1] - runs[0] == runs.size - 1:  # consecutive runs: views, no copy
            gx = xs[first : first + runs.size * n].reshape(runs.size, n)
            v = vals[first : first + runs.size * n].reshape(runs.size, n)
        else:
            at = starts[runs][:, None] + np.arange(n)
            gx, v = xs[at], vals[at]
        if runs.size > 1 and (gx[1:] != gx[0]).any():
            return None
        parts.append((g, gx[0], v, runs))
    return parts


def _reduce_runs(parts: list[_Part], x_dtype: pl.DataType, x: str, ddof: int) -> pl.DataFrame:
    """``x``, mean, std, min, max and count of each group's runs x steps array, the
    groups one after the other."""
    cols: dict[str, list[np.ndarray]] = {c: [] for c in ("x", "mean", "std", "min", "max", "n")}
    with np.errstate(all="ignore"):
        for _, gx, v, runs in parts:
            k = runs.size
            cols["x"].append(gx)
            # One run: its values are the mean, min and max (fmin/fmax: NaN-ignoring).
            cols["mean"].append(v[0] if k == 1 else v.mean(axis=0))
            cols["std"].append(v.std(axis=0, ddof=ddof) if k - ddof > 0 else _NONE)
            cols["min"].append(v[0] if k == 1 else np.fmin.reduce(v, axis=0))
            cols["max"].append(v[0] if k == 1 else np.fmax.reduce(v, axis=0))
            cols["n"].append(np.full(gx.size, k, dtype=np.int64))
    if any(a is _NONE for a in cols["std"]):
        cols["std"] = [
            np.full(p[1].size, np.nan) if a is _NONE else a
            for a, p in zip(cols["std"], parts, strict=True)
        ]
        if all(p[3].size - ddof <= 0 for p in parts):
            cols["std"] = [_NONE]
    cat = {c: v[0] if len(v) == 1 else np.concatenate(v) for c, v in cols.items()}
    made: dict[int, pl.Series] = {}

    def series(name: str, arr: np.ndarray) -> pl.Series:
        """One copy per array (one run's values are its mean, min and max)."""
        if id(arr) not in made:
            made[id(arr)] = pl.Series(name, arr)
        return made[id(arr)].alias(name)

    total = len(cat["x"])
    if all(p[3].size - ddof <= 0 for p in parts):  # too few runs: null, as Polars
        std = pl.Series("std", [], dtype=pl.Float64).extend_constant(None, total)
    else:
        std = pl.Series("std", cat["std"])
        if any(p[3].size - ddof <= 0 for p in parts):
            null = np.concatenate([np.full(p[1].size, p[3].size - ddof <= 0) for p in parts])
            std = std.scatter(np.flatnonzero(null), None)
    return pl.DataFrame(
        [
            pl.Series(x, cat["x"]).cast(x_dtype),
            series("mean", cat["mean"]),
            std,
            series("min", cat["min"]),
            series("max", cat["max"]),
            pl.Series("count", cat["n"], dtype=pl.Int64),
        ]
    )


class Grouped:
    """Runs grouped by run-table columns; aggregates over the runs of each group (seeds)."""

    def __init__(self, reader: Reader, keys: list[str]) -> None:
        self.reader = reader
        self.keys = keys

    def __repr__(self) -> str:
        return f"Grouped({self.reader!r}, by={self.keys})"

    def _keys_table(self) -> pl.DataFrame:
        table = self.reader._resolve_table(self.keys)
        return table.select("run_id", *self.keys)

    def groups(self) -> pl.DataFrame:
        """Each group's key values and number of runs."""
        t = self._keys_table()
        if not self.keys:
            return pl.DataFrame({"runs": [t.height]})
        return t.group_by(self.keys).agg(pl.len().alias("runs")).sort(self.keys, nulls_last=True)

    def curves(self, metric: str, x: str = "step", ddof: int = 1) -> pl.DataFrame:
        """Per group and per ``x``: ``mean``, ``std`` (``ddof`` 1: over seeds), ``min``,
        ``max`` of ``metric`` (``<file>.<key>``, e.g. ``train.loss``), and ``count``, the
        number of runs that logged it at that ``x``. A run that logged it twice at
        one ``x`` counts once, with its last value."""
        name, key = self.reader._split_metric(metric)
        reader = self.reader
        loaded = reader._load(name)
        lf = loaded.frame()
        reader._noted(loaded)
        schema = lf.collect_schema()
        for col in (key, x):
            if col not in schema:
                raise QueryError(
                    f"no key {col!r} in metrics/{name}.jsonl",
                    f"{name}.{col}",
                    len(name) + 1,
                    len(name) + 1 + len(col),
                    suggest(f"{name}.{col}", [f"{name}.{c}" for c in schema if c != "run_id"]),
                )
        rows = lf.select("run_id", x, key).filter(
            pl.col(key).is_not_null() & pl.col(x).is_not_null()
        )
        if x != "step":
            rows = rows.unique(subset=["run_id", x], keep="last")
        elif loaded.dedupe:  # runs that logged a step twice: keep its last row
            dup = pl.col("run_id").is_in(sorted(loaded.dedupe))
            rows = pl.concat(
                [rows.filter(~dup), rows.filter(dup).unique(subset=["run_id", x], keep="last")]
            )
        keys = self._keys_table()
        # Aggregate by a small integer group id, then attach the key values (faster
        # than grouping by several string and float columns).
        groups = keys.select(self.keys).unique().with_row_index("_g") if self.keys else None
        if groups is not None:
            ids = keys.join(groups, on=self.keys, how="inner", nulls_equal=True)
            ids = ids.select("run_id", "_g")
        else:
            ids = keys.select("run_id", pl.lit(0, dtype=pl.UInt32).alias("_g"))
        if _NUMPY_CURVES:
            collected = rows.collect()
            fast = _curves_numpy(collected, ids, groups, self.keys, x, key, ddof)
            if fast is not None:
                return fast
            rows = collected.lazy()
        out = (
            rows.join(ids.lazy(), on="run_id", how="inner")
            .group_by("_g", x)
            .agg(_stats(key, ddof))
            .collect()
        )
        if groups is not None:
            out = out.join(groups, on="_g", how="left")
        return out.select(*self.keys, x, "mean", "std", "min", "max", "count").sort(
            [*self.keys, x], nulls_last=True
        )

    def final(self, metric: str, ddof: int = 1) -> pl.DataFrame:
        """Per group: ``mean``, ``std``, ``min``, ``max`` and ``count`` of each run's last
        (non-null) value of ``metric``; runs that never logged it are left out."""
        name, key = self.reader._split_metric(metric)
        summary = self.reader._summary(name)
        col = f"{name}.{key}.last"
        if col not in summary.columns:
            known = [c[: -len(".last")] for c in summary.columns if c.endswith(".last")]
            raise QueryError(
                f"no key {key!r} in metrics/{name}.jsonl",
                metric,
                len(name) + 1,
                len(metric),
                suggest(metric, known),
            )
        values = summary.select("run_id", col).filter(pl.col(col).is_not_null())
        joined = values.join(self._keys_table(), on="run_id", how="inner")
        if not self.keys:
            return joined.select(_stats(col, ddof))
        return joined.group_by(self.keys).agg(_stats(col, ddof)).sort(self.keys, nulls_last=True)


def to_pandas(df: pl.DataFrame) -> Any:
    """``df.to_pandas()``, without needing pyarrow."""
    try:
        return df.to_pandas()
    except ModuleNotFoundError:
        import pandas as pd

        return pd.DataFrame(
            {
                c: (s.to_numpy() if s.dtype.is_numeric() else s.to_list())
                for c, s in zip(df.columns, df.get_columns(), strict=True)
            },
            columns=df.columns,
        )
