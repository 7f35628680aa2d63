"""Caches are only caches (issue 19, family 6): the reader's index and the columnar twins
of metrics files, damaged on disk as a bad sector or a torn copy leaves them (pages
overwritten under an intact footer, or the file cut short), are bypassed, and the reads
equal those of the runs' own files; the index is rebuilt and ``runlab verify`` passes."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reader_hostile import make_run

from runlab.cli import main
from runlab.logs import Logs
from runlab.results.reader import IndexDamagedWarning, Reader, wait_for_index
from runlab.results.verify import verify

STEPS = 1500  # enough rows that each metrics file gets a twin the reader uses


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, pl.DataFrame]:
    """A logs directory with its index written, and its run table and metric rows as
    read from the runs' own files alone."""
    logs = tmp_path_factory.mktemp("caches") / "logs"
    for i in range(4):
        make_run(logs, {"seed": i, "name": f"run {i}"}, [j * 1.37 + i for j in range(STEPS)])
    reader = Reader(logs)
    reader.metrics("train").collect()
    wait_for_index()
    plain = Reader(logs, index=False)
    return logs, plain.df, _rows(plain)


def _rows(reader: Reader) -> pl.DataFrame:
    return reader.metrics("train").collect().sort("run_id", "step")


def _targets(logs: Path) -> dict[str, Path]:
    index = logs / ".runlab-index"
    return {
        "run table": next(index.glob("runs.*.parquet")),
        "metrics block": next((index / "metrics" / "train").glob("*.parquet")),
        "twin": logs / "2" / "metrics" / "train.parquet",
    }


def _damage(path: Path, start: float, length: int, cut: bool) -> None:
    """Overwrite ``length`` bytes from ``start`` (a fraction of the data pages: the last
    2 KB, the footer, stay intact), or cut the file there."""
    data = bytearray(path.read_bytes())
    at = 4 + int(start * max(1, len(data) - 2048 - 4))
    if cut:
        del data[at:]
    else:
        data[at : at + length] = bytes((b ^ 0x5A) or 1 for b in data[at : at + length])
    path.write_bytes(bytes(data))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.sampled_from(["run table", "metrics block", "twin"]),
    start=st.floats(0, 1),
    length=st.integers(1, 512),
    cut=st.booleans(),
)
def test_a_damaged_cache_is_bypassed_and_rebuilt(
    clean: tuple[Path, pl.DataFrame, pl.DataFrame],
    tmp_path_factory: pytest.TempPathFactory,
    target: str,
    start: float,
    length: int,
    cut: bool,
) -> None:
    source, df, rows = clean
    logs = tmp_path_factory.mktemp("copy") / "logs"
    shutil.copytree(source, logs)
    _damage(_targets(logs)[target], start, length, cut)
    with warnings.catch_warnings(record=True):  # the damage may be named, or just bypassed
        warnings.simplefilter("always", IndexDamagedWarning)
        reader = Reader(logs)
        assert reader.df.equals(df)
        assert _rows(reader).equals(rows)
    wait_for_index()
    assert verify(Logs(logs)).ok
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: read again without a word
        again = Reader(logs)
        assert again.df.equals(df) and _rows(again).equals(rows)


def test_each_damaged_index_file_is_named_once_and_ls_works(
    clean: tuple[Path, pl.DataFrame, pl.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(clean[0], logs)
    for path in _targets(logs).values():
        _damage(path, 0.3, 200, False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = Reader(logs)
        assert _rows(reader).equals(clean[2])
        _rows(Reader(logs))  # the same damaged block again, before the rebuild is read
    said = [str(w.message) for w in caught if "damaged" in str(w.message)]
    assert len(said) == 2, said  # each damaged index file, once
    assert "runs." in said[0] + said[1] and "metrics/train/" in said[0] + said[1]
    wait_for_index()
    assert main(["ls", "--logs", str(logs)]) == 0
    assert "damaged" not in capsys.readouterr().err


@pytest.mark.parametrize("target", ["run table", "metrics block"])
def test_verify_names_a_damaged_index_file_and_repair_makes_it_pass(
    clean: tuple[Path, pl.DataFrame, pl.DataFrame], tmp_path: Path, target: str
) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(clean[0], logs)
    path = _targets(logs)[target]
    _damage(path, 0.5, 8, False)
    verdict = verify(Logs(logs), deep=True)
    assert [(v.invariant, v.what.split()[0]) for v in verdict.violations] == [
        (5, path.relative_to(logs / ".runlab-index").as_posix())
    ]
    if target == "metrics block":  # row-level caches: behind --deep
        assert verify(Logs(logs)).ok
    assert verify(Logs(logs), deep=True, repair=True).ok
    assert verify(Logs(logs), deep=True).ok
    reader = Reader(logs)
    assert reader.df.equals(clean[1]) and _rows(reader).equals(clean[2])
