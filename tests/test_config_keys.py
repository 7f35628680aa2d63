"""Config keys (issue 19, family 5): keys that flatten to the same column (``a.b: 1``
beside ``a: {b: 2}``) are a clash the reader names, with one value kept by a rule that
does not depend on the keys' order: the most nested key path, then the smallest."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reader_hostile import make_run

from runlab.results.reader import CorruptRunWarning, Reader

KEYS = st.sampled_from(["a", "b", "a.b", "b.a", "a.b.a"])
CONFIGS = st.recursive(
    st.integers(-5, 5),
    lambda inner: st.dictionaries(KEYS, inner, min_size=1, max_size=4),
    max_leaves=12,
).filter(lambda c: isinstance(c, dict))


def _leaves(obj: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for key, value in obj.items():
        if isinstance(value, dict):
            out.extend(_leaves(value, (*path, key)) if value else [((*path, key), None)])
        else:
            out.append(((*path, key), value))
    return out


def _expected(config: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The reader's columns by the documented rule, and the columns that clash."""
    by_column: dict[str, list[tuple[tuple[str, ...], Any]]] = {}
    for path, value in _leaves(config):
        by_column.setdefault("config." + ".".join(path), []).append((path, value))
    columns = {
        name: min(found, key=lambda pv: (-len(pv[0]), list(pv[0])))[1]
        for name, found in by_column.items()
    }
    return columns, {name for name, found in by_column.items() if len(found) > 1}


def _read(logs: Path) -> tuple[Reader, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = Reader(logs, write_index=False)
        reader.df  # noqa: B018
    return reader, [str(w.message) for w in caught if issubclass(w.category, CorruptRunWarning)]


@pytest.mark.parametrize("config", [{"a.b": 1, "a": {"b": 2}}, {"a": {"b": 2}, "a.b": 1}])
def test_a_dotted_key_beside_its_nested_twin_is_named(tmp_path: Path, config: dict) -> None:
    logs = tmp_path / "logs"
    make_run(logs, config, [])
    reader, said = _read(logs)
    assert reader.df["config.a.b"].to_list() == [2]  # whatever the order in the file
    assert len(said) == 1, said
    assert f"{logs}/1" in said[0] and "config.a.b" in said[0] and "'a.b'" in said[0]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(config=CONFIGS)
def test_generated_configs_keep_one_value_and_name_each_clash(
    tmp_path_factory: pytest.TempPathFactory, config: dict[str, Any]
) -> None:
    logs = tmp_path_factory.mktemp("keys") / "logs"
    make_run(logs, config, [])
    columns, clashes = _expected(config)
    reader, said = _read(logs)
    row = reader.df.row(0, named=True)
    assert {k: row[k] for k in columns} == columns
    if clashes:
        assert len(said) == 1 and f"{logs}/1" in said[0], said
        for name in clashes:
            assert f"column {name}:" in said[0]
    else:
        assert said == []
    shutil.rmtree(logs)
