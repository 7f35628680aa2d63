"""The reader while runs are being written: reader processes against writer processes.

Four reader processes read a logs directory over and over (with the index: it is
read, refreshed and rewritten by all of them at once) while two writer processes
add runs through ``RunSession`` and ``RunLogger`` and finish them. Every read must
succeed, and what it says about the finished runs must equal an index-free read
of the same runs.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import polars as pl

from runlab.results.reader import INDEX_DIR, Reader, wait_for_index

DURATION_S = 30.0
READERS = 4
WRITERS = 2
ENV = {"python": {"version": "3"}, "packages": {"numpy": "2"}}


def _write_runs(logs: str, writer: int, deadline: float, at_least: int = 0) -> int:
    """Add runs until ``deadline`` (and at least ``at_least``); each logs 150 rows (one
    of them NaN) and ends."""
    from runlab.record import environment
    from runlab.record.lifecycle import RunSession
    from runlab.record.rundir import RunDir, allocate

    environment.capture = lambda code_path: (dict(ENV), None)  # no git per run
    n = 0
    while time.time() < deadline or n < at_least:
        run = RunDir(allocate(logs)[0])
        config = {"method": ("GD", "GN", "Adam")[n % 3], "seed": n, "writer": writer}
        with RunSession(run, config, [], task="stress", command=["stress"]) as session:
            assert session.logger is not None
            for step in range(150):
                loss = 1.0 / (step + 1) + 0.01 * n
                if step == 75:
                    loss = math.nan
                session.logger.log_metrics({"loss": loss, "acc": step / 150})
                if step % 50 == 0:
                    session.logger.flush()
                    time.sleep(0.01)
        n += 1
    return n


def _same(a: pl.DataFrame, b: pl.DataFrame, what: str) -> str | None:
    if a.columns != b.columns or a.height != b.height:
        return f"{what}: shape {a.shape} {a.columns} != {b.shape} {b.columns}"
    for col in a.columns:
        x, y = a[col].to_list(), b[col].to_list()
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float) and isinstance(v, float):
                if not (math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12) or (u != u and v != v)):
                    return f"{what}: {col} {u} != {v}"
            elif u != v:
                return f"{what}: {col} {u!r} != {v!r}"
    return None


def _read_loop(logs: str, deadline: float) -> dict[str, Any]:
    """Read until ``deadline``; compare each read of the finished runs with an
    index-free read of the same runs."""
    warnings.simplefilter("ignore")  # runs being created are incomplete: that is expected
    reads, errors, mismatches = 0, [], []
    while time.time() < deadline:
        try:
            runs = Reader(logs)
            done = runs.filter("info.status == 'COMPLETE'")
            ids = done.run_ids
            curves = done.group_by("config.method").curves("train.loss")
            rows = done.metrics("train").collect().sort("run_id", "step")
            table = done.select("run_id", "config.seed", "train.loss.last", "train.loss.max")
            runs.df  # noqa: B018 - every summary, of running runs too
            ref = Reader(logs, index=False).filter(pl.col("run_id").is_in(ids))
            want_curves = ref.group_by("config.method").curves("train.loss")
            want_rows = ref.metrics("train").collect().sort("run_id", "step")
            want_table = ref.select("run_id", "config.seed", "train.loss.last", "train.loss.max")
            for got, want, what in (
                (curves, want_curves, "curves"),
                (rows, want_rows.select(rows.columns), "metrics"),
                (table, want_table, "run table"),
            ):
                diff = _same(got, want, what)
                if diff:
                    mismatches.append(f"{len(ids)} runs: {diff}")
            reads += 1
        except Exception:
            errors.append(traceback.format_exc(limit=3)[-600:])
    wait_for_index()
    return {"reads": reads, "errors": errors, "mismatches": mismatches}


def test_readers_and_writers_at_once(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    ctx = mp.get_context("spawn")
    with ctx.Pool(READERS + WRITERS) as pool:
        # A first batch of runs, and an index of them, before the readers start.
        seed = [pool.apply_async(_write_runs, (str(logs), w, 0, 5)) for w in range(WRITERS)]
        assert sum(s.get(timeout=120) for s in seed) == 5 * WRITERS
        Reader(logs).curves("train.loss")
        wait_for_index()
        deadline = time.time() + DURATION_S
        writers = [
            pool.apply_async(_write_runs, (str(logs), 10 + w, deadline)) for w in range(WRITERS)
        ]
        readers = [pool.apply_async(_read_loop, (str(logs), deadline)) for _ in range(READERS)]
        written = sum(w.get(timeout=DURATION_S + 60) for w in writers)
        results = [r.get(timeout=DURATION_S + 60) for r in readers]
    reads = sum(r["reads"] for r in results)
    errors = [e for r in results for e in r["errors"]]
    mismatches = [m for r in results for m in r["mismatches"]]
    assert written > 10 and reads >= READERS, (written, reads)
    assert errors == [], f"{len(errors)} of {reads + len(errors)} reads failed:\n" + "\n".join(
        errors[:3]
    )
    assert mismatches == [], "\n".join(mismatches[:5])
    # The finished runs, read once more through the index, equal an index-free read.
    final = Reader(logs).filter("info.status == 'COMPLETE'")
    ref = Reader(logs, index=False).filter("info.status == 'COMPLETE'")
    assert final.run_ids == ref.run_ids
    diff = _same(
        final.group_by("config.method").curves("train.loss"),
        ref.group_by("config.method").curves("train.loss"),
        "final curves",
    )
    assert diff is None, diff
    wait_for_index()
    leftovers = [p.name for p in (logs / INDEX_DIR).rglob("*.tmp")]
    assert leftovers == []
