"""Any value a user hands runlab is stored, or refused with one line; never half-written
(issue 19: Hypothesis strategies fed to every writer and to the report).

Generated configs, metric names, metric values and run names go through runlab's own
writers in-process (the hand-made :class:`~runlab.RunLogger`, the record writer), then
through the reader, ``verify --deep`` and the HTML report:

- a writer either stores a value or raises a :class:`~runlab.errors.UserError` naming
  it; it never fails with another exception, and a refused value leaves what was
  written before intact;
- what was stored reads back as it was given (floats exactly, non-finite ones too),
  from the ``.jsonl`` and from its columnar twin alike;
- ``verify --deep`` then finds every invariant holding (twins equal their rows, no
  credential, statuses known);
- user values never change the structure of the report's page: the tags and
  attributes of ``index.html`` are the same for hostile values as for plain ones.

The terminal surfaces are checked with the same kind of strings in ``test_render.py``;
``hostile_text`` comes from there.
"""

from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_render import hostile_text

from runlab.errors import UserError
from runlab.logs import Logs
from runlab.record.logger import RunLogger
from runlab.record.rundir import allocate
from runlab.results.reader import Reader
from runlab.results.report import build_report, write_html
from runlab.results.verify import verify
from runlab.status import Status

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ------------------------------------------------------------------- strategies
short_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
names = st.one_of(short_text, hostile_text().map(lambda s: s[:40]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    short_text,
)
# A config: nested mappings and lists of scalars, keys of any text, a few levels deep.
configs = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=4)),
    max_leaves=12,
).map(lambda c: c if isinstance(c, dict) else {"value": c})
metric_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    short_text,
    st.lists(st.integers(), max_size=2),
)


def _same(stored: Any, given_value: Any) -> bool:
    """Whether a value read back is the one given (NaN is NaN; bools stay bools)."""
    if isinstance(given_value, float):
        if math.isnan(given_value):
            return isinstance(stored, float) and math.isnan(stored)
        return isinstance(stored, float) and stored == given_value
    if isinstance(given_value, bool) or given_value is None:
        return stored is given_value
    if isinstance(given_value, int):  # a column of ints and floats is read as floats
        return stored == given_value or (isinstance(stored, float) and stored == float(given_value))
    return stored == given_value


def _new_run(tmp_path: Path) -> tuple[Path, Path]:
    logs = tmp_path / "logs"
    return logs, allocate(logs)[0]


def _healthy(logs: Path) -> None:
    found = verify(Logs(logs), deep=True)
    assert not found.violations, [str(v) for v in found.violations]


# ------------------------------------------------------------------- writers
@SETTINGS
@given(config=configs)
def test_any_config_is_recorded_or_refused_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, config: dict[str, Any]
) -> None:
    logs, path = _new_run(tmp_path_factory.mktemp("cfg"))
    try:
        with RunLogger(path, config=config) as logger:
            logger.log_metrics({"loss": 1.0}, step=0)
    except UserError:
        return  # refused, naming the value: fine (nothing was half-written: below)
    reader = Reader(logs, index=False)
    assert reader.df["info.status"].to_list() == [Status.COMPLETE.value]
    _healthy(logs)


@SETTINGS
@given(
    rows=st.lists(
        st.dictionaries(names, metric_values, min_size=1, max_size=3), min_size=1, max_size=6
    )
)
def test_any_metric_row_is_stored_as_given_or_refused_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]]
) -> None:
    """Each row is either stored whole or refused whole with a :class:`UserError`; what
    was stored reads back exactly, and the run ends COMPLETE with its twins true."""
    logs, path = _new_run(tmp_path_factory.mktemp("rows"))
    kept: list[dict[str, Any]] = []
    with RunLogger(path, config={"seed": 0}) as logger:
        for row in rows:
            try:
                logger.log_metrics(row, name="train")
            except UserError as exc:
                assert "\n" not in str(exc).strip(), str(exc)
                continue
            kept.append(row)
    reader = Reader(logs, index=False)
    assert reader.df["info.status"].to_list() == [Status.COMPLETE.value]
    _healthy(logs)
    if not kept:
        return
    table = reader.metrics("train").collect().sort("step")
    assert table.height == len(kept)
    for number, row in enumerate(kept):
        for key, value in row.items():
            if isinstance(value, list) or key not in table.columns:
                continue  # a list is refused above; a column the reader names a problem for
            stored = table[key][number]
            column = table.schema[key]
            if value is None or (column.is_numeric() and isinstance(value, int | float)):
                assert _same(stored, value), (key, value, stored)


# ------------------------------------------------------------------- the report
class _Structure(HTMLParser):
    """The tags and attribute names of a page, in order (text and values left out)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, tuple(name for name, _ in attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.tags.append(("/" + tag, ()))


def _page(tmp_path: Path, values: list[str], metric: str) -> list[tuple[str, tuple[str, ...]]]:
    logs = tmp_path / "logs"
    for i, value in enumerate(values):
        with RunLogger(allocate(logs)[0], config={"model": value, "seed": i % 2}) as logger:
            for step in range(3):
                logger.log_metrics({metric: 0.1 * step + i, "loss": 1.0 - 0.1 * step}, step=step)
    report = build_report(Reader(logs, index=False), [f"train.{metric}"], by=["config.model"])
    out = write_html(report, tmp_path / "index.html")
    parser = _Structure()
    parser.feed(Path(out).read_text(encoding="utf-8"))
    parser.close()
    return parser.tags


printable_metric = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=20
).filter(lambda s: s not in ("loss", "step", "time", "run_id") and "." not in s)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.lists(hostile_text(), min_size=2, max_size=2, unique=True), metric=printable_metric
)
def test_user_values_never_change_the_report_page_structure(
    tmp_path_factory: pytest.TempPathFactory, values: list[str], metric: str
) -> None:
    """The same report with plain values and with hostile ones: the page has the same
    tags and attributes in the same order, so no value became markup or script."""
    plain = _page(tmp_path_factory.mktemp("plain"), ["alpha", "beta"], "acc")
    hostile = _page(tmp_path_factory.mktemp("hostile"), values, metric)
    assert hostile == plain


@SETTINGS
@given(
    metric_name=names,
    artifact=names,
    checkpoint=names,
)
@example(metric_name="[", artifact="", checkpoint="")  # a glob pattern to Polars' reader
def test_any_file_name_is_stored_inside_the_run_or_refused_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, metric_name: str, artifact: str, checkpoint: str
) -> None:
    """A metrics file name, an artifact name and a checkpoint name from a user: each
    makes a file inside the run's own folder or is refused naming it, and the run stays
    healthy (a refused name is the task's own error, not a damaged record)."""
    logs, path = _new_run(tmp_path_factory.mktemp("names"))
    made: list[Path] = []
    with RunLogger(path, config={"seed": 0}) as logger:
        for write in (
            lambda: logger.log_metrics({"loss": 1.0}, name=metric_name),
            lambda: logger.log_artifact({"a": 1}, name=artifact),
            lambda: logger.log_checkpoint({"step": 1}, name=checkpoint),
        ):
            try:
                out = write()
            except UserError as exc:
                assert "\n" not in str(exc).strip(), str(exc)
                continue
            if isinstance(out, Path):
                made.append(out)
    root = path.resolve()
    for out in made:
        assert out.resolve().is_relative_to(root), f"{out} is outside the run {root}"
        assert out.exists()
    outside = {p for p in logs.rglob("*") if not p.resolve().is_relative_to(root)}
    assert all(p.name.startswith(".") or p == root for p in outside), outside
    assert Reader(logs, index=False).df["info.status"].to_list() == [Status.COMPLETE.value]
    _healthy(logs)
