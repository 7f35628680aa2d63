"""Labels from differences: the config keys that vary, folded keys, short names, ranking.

Groups are made from the config keys that vary among the plotted runs; keys that vary
only together with a config group's choice (``model.channels`` with ``model.name``) are
folded into it; seeds are averaged, never grouped (unless ``by`` names them). A label
shows a group's config groups and sweep axes, and any other key only where the group
differs from the most common value: ``model=cnn · lr=0.001``.
"""

from __future__ import annotations

import re
from collections import Counter

import polars as pl

from runlab.results.reader import Reader
from runlab.results.report._format import exact, fmt, short


def scalar_config(table: pl.DataFrame) -> list[str]:
    return [
        c
        for c, dtype in table.schema.items()
        if c.startswith("config.")
        and not c.startswith("config.runlab.")
        and not isinstance(dtype, (pl.List, pl.Array, pl.Struct, pl.Object))
    ]


def is_seed(column: str) -> bool:
    return column.rsplit(".", 1)[-1] in ("seed", "seeds", "random_seed")


def differences(table: pl.DataFrame, seeds: bool = False) -> tuple[list[str], dict[str, str]]:
    """The config keys that vary among the runs of ``table`` (one row per run), and the
    folded ones: ``{key: choice}`` for a key ``a.x`` that varies only with ``a.name``
    (a config group's choice). Seeds are left out unless ``seeds``."""
    if table.height < 2:
        return [], {}
    varying = [
        c for c in scalar_config(table) if (seeds or not is_seed(c)) and table[c].n_unique() > 1
    ]
    folded: dict[str, str] = {}
    for column in varying:
        parent = column.rsplit(".", 1)[0]
        choice = f"{parent}.name"
        if choice == column or choice not in varying or "." not in column[len("config.") :]:
            continue
        most = table.group_by(choice).agg(pl.col(column).n_unique().alias("n"))["n"].max()
        if most is not None and int(most) <= 1:  # type: ignore[arg-type]
            folded[column] = choice
    return [c for c in varying if c not in folded], folded


def default_by(reader: Reader, seeds: bool = False) -> list[str]:
    """The config columns that distinguish the readable runs of ``reader`` (see
    :func:`differences`)."""
    reader = reader.readable()
    return differences(reader.select(*reader.columns), seeds=seeds)[0]


def _key_names(by: list[str]) -> dict[str, str]:
    """Short names of the keys in labels: ``model`` for ``config.model.name``, the last
    part of a dotted key when that is unambiguous (``weight_decay``)."""
    names = {}
    for c in by:
        name = short(c)
        if name.endswith(".name"):
            name = name[: -len(".name")]
        names[c] = name
    last = Counter(n.rsplit(".", 1)[-1] for n in names.values())
    return {
        c: (n.rsplit(".", 1)[-1] if last[n.rsplit(".", 1)[-1]] == 1 else n)
        for c, n in names.items()
    }


def labels_of(keys: pl.DataFrame, by: list[str]) -> tuple[list[str], list[str]]:
    """Per group: the label (``model=cnn · lr=0.001``) and the full key values.

    A key is always shown when it is a config group's choice (``*.name``) or has no
    common value (its most common value covers at most half of the groups: a sweep
    axis); any other key only where the group's value is not the most common one.
    Missing values (a key another model has) are not shown."""
    if not by:
        return ["all runs"] * keys.height, ["all runs"] * keys.height
    names = _key_names(by)
    n = keys.height
    always, common = set(), {}
    for c in by:
        present = [v for v in keys[c].to_list() if v is not None]
        counts = Counter(present)
        value, top = counts.most_common(1)[0] if counts else (None, 0)
        if c.endswith(".name") or top * 2 <= len(present):
            always.add(c)
        else:
            common[c] = value
    order = [c for c in by if c.endswith(".name")] + [c for c in by if not c.endswith(".name")]
    labels, full = [], []
    for i in range(n):
        parts, every = [], []
        for c in order:
            v = keys[c][i]
            every.append(f"{short(c)}={exact(v)}")
            if v is None:
                continue
            if c in always or v != common.get(c):
                parts.append(f"{names[c]}={fmt(v)}")
        labels.append(" \u00b7 ".join(parts) or " \u00b7 ".join(every))
        full.append(", ".join(every))
    return _distinct(labels, keys, order, names), full


def _distinct(
    labels: list[str], keys: pl.DataFrame, order: list[str], names: dict[str, str]
) -> list[str]:
    """Labels that two groups share get the keys those groups differ in: a key that only
    some runs have (``label_smoothing``, unset elsewhere), or values equal at 4 digits."""
    seen: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        seen.setdefault(label, []).append(i)
    out = list(labels)
    for label, rows in seen.items():
        if len(rows) < 2:
            continue
        differ = [c for c in order if len({exact(keys[c][i]) for i in rows}) > 1]
        for i in rows:
            parts = label.split(" \u00b7 ")
            for c in differ:
                v = keys[c][i]
                rounded = f"{names[c]}={fmt(v)}"
                if v is None:
                    parts.append(f"{names[c]} unset")
                elif rounded in parts:  # equal to another's at 4 digits: all of them
                    parts[parts.index(rounded)] = f"{names[c]}={exact(v)}"
                else:
                    parts.append(f"{names[c]}={exact(v)}")
            out[i] = " \u00b7 ".join(parts)
    return out


def higher_is_better(metric: str) -> bool:
    """A guess from the metric's name: accuracies, scores and rewards are maximised."""
    key = metric.rsplit(".", 1)[-1].lower()
    return bool(
        re.search(
            r"acc|f1|auc|score|precision|recall|reward|return|iou|bleu|rouge|map$|top\d|r2|psnr|ssim",
            key,
        )
    )


def rank_of(metrics: list[str], rank: str | None) -> tuple[str, bool]:
    if rank:
        name, _, direction = rank.partition(":")
        if direction not in ("", "max", "min"):
            raise ValueError(f"rank {rank!r}: write METRIC, METRIC:max or METRIC:min")
        return name, (direction == "max") if direction else higher_is_better(name)
    chosen = next((m for m in metrics if not m.startswith("train.")), metrics[0])
    return chosen, higher_is_better(chosen)
