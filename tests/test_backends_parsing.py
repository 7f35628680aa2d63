"""Invariants of what the backends read and plan, on generated inputs (no scheduler needed).

- a sweep's arrays cover its points exactly once, in order, none above the limit;
- every run of a submission maps to exactly one (job, task) and back, Grid Engine's
  tasks counting from 1 and SLURM's from 0;
- Grid Engine's task lists (``3``, ``1-9:2``, ``4,6-8:1``) read back as the tasks written;
- ``qacct``'s last record of a task wins (a requeued task has one per attempt).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runlab.sweep.backends import sge
from runlab.sweep.backends import slurm as slurm_backend
from runlab.sweep.backends.base import plan_arrays
from runlab.sweep.record import Array, Submission


@given(st.integers(0, 5000), st.one_of(st.none(), st.integers(1, 1200)))
def test_arrays_cover_every_point_once_in_order(count: int, size: int | None) -> None:
    arrays = plan_arrays(count, size)
    covered = [i for offset, n in arrays for i in range(offset, offset + n)]
    assert covered == list(range(count))
    assert all(n >= 1 and (size is None or n <= size) for _, n in arrays)


def _submission(arrays: list[tuple[int, int]]) -> Submission:
    return Submission(
        n=1, kind="submit", time="2026-12-07T00:00:00", runs=None, code=[], jobs_file="",
        log_dir="/logs", arrays=[Array(str(100 + i), o, n) for i, (o, n) in enumerate(arrays)],
    )  # fmt: skip


@settings(deadline=None)
@given(st.integers(1, 1500), st.integers(1, 700))
def test_each_run_is_one_task_of_one_array(count: int, size: int) -> None:
    sub = _submission(plan_arrays(count, size))
    grid = [sge._task(sub, pos) for pos in range(count)]
    zero = [slurm_backend._array_task(sub, pos) for pos in range(count)]
    assert len(set(grid)) == count and None not in grid
    assert all(1 <= task <= size for _, task in grid)  # type: ignore[misc]
    assert [(j, t - 1) for j, t in grid] == zero  # type: ignore[misc]
    assert sge._task(sub, count) is None and slurm_backend._array_task(sub, count) is None
    labels = {sge.Backend().job_label(sub, pos) for pos in range(count)}
    assert len(labels) == count


@st.composite
def task_lists(draw: st.DrawFn) -> tuple[str, list[int]]:
    """A task list as qstat writes one (ranges with steps, single tasks), and its tasks."""
    parts, tasks, at = [], [], 1
    for _ in range(draw(st.integers(1, 6))):
        at += draw(st.integers(0, 20))
        step = draw(st.integers(1, 4))
        n = draw(st.integers(1, 6))
        last = at + step * (n - 1)
        parts.append(str(at) if n == 1 else f"{at}-{last}:{step}")
        tasks.extend(range(at, last + 1, step))
        at = last + 1
    return ",".join(parts), tasks


@given(task_lists())
def test_grid_engine_task_lists_read_back(drawn: tuple[str, list[int]]) -> None:
    text, tasks = drawn
    assert sge._expand(text) == tasks
    xml = (
        "<job_info><queue_info/><job_info><job_list state='pending'>"
        f"<JB_job_number>7</JB_job_number><state>qw</state><tasks>{text}</tasks>"
        "</job_list></job_info></job_info>"
    )
    assert sge.parse_qstat(xml) == {("7", t): "qw" for t in tasks}


@given(st.lists(st.tuples(st.integers(1, 5), st.sampled_from(["0", "99", "137"])), max_size=12))
def test_qacct_keeps_the_last_record_of_each_task(attempts: list[tuple[int, str]]) -> None:
    rule = "=" * 62
    text = "".join(
        f"{rule}\nqname        all.q\njobnumber    9\ntaskid       {task}\n"
        f"failed       0\nexit_status  {code}\n"
        for task, code in attempts
    )
    last = dict(attempts)
    parsed = sge.parse_qacct(text)
    assert {k: v["exit_status"] for k, v in parsed.items()} == {
        ("9", t): c for t, c in last.items()
    }
