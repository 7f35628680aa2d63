"""The one interface between a sweep and a scheduler: :class:`Backend`.

``runlab submit``, ``status``, ``cancel``, ``retry``, ``logs`` and ``tune`` go through
this protocol only; each scheduler implements it in a module of its own
(:mod:`.local`, :mod:`.slurm`, :mod:`.sge`), and :func:`runlab.sweep.backends.get`
finds one by its name. It is small on purpose, in the spirit of submitit's
``Executor`` and Hydra's ``Launcher`` plugin: a new scheduler is one file.

What a backend is asked, in the order a sweep meets it:

1. **settings** (:attr:`Backend.defaults`, :meth:`Backend.check`): the launcher keys
   it knows, with their defaults, and a refusal of resources it cannot give;
2. **limits** (:meth:`Backend.limits`, :meth:`Backend.plan`): the cluster's, read
   before anything is written, and the arrays the sweep becomes under them;
3. **validation** (:meth:`Backend.validate`): the scheduler's own word on the
   submission without submitting it (``sbatch --test-only``, ``qsub -w v``); it runs
   before any run is pre-created, so a refused submission leaves no runs behind;
4. **submission** (:meth:`Backend.submit`): N tasks, task ``i`` running entry ``i`` of
   the jobs file (:mod:`runlab.sweep.jobs`), placed as arrays or worker processes;
5. **states** (:meth:`Backend.states`, :meth:`Backend.job_states`): what the scheduler
   says of each run's job, as a :class:`JobState`, for reconciliation;
6. **cancel** (:meth:`Backend.cancel`);
7. **output** (:meth:`Backend.log_file`, :meth:`Backend.job_label`): where a task's
   stdout and stderr are, and how to name its job;
8. **preemption** (:attr:`Backend.preemption`, :attr:`Backend.requeues_timeouts`): how
   the scheduler asks a job to stop and whether it runs it again.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol

from runlab.errors import UserError
from runlab.record.rundir import RunDir
from runlab.sweep.record import Array, Submission, SweepRecord, Worker


class LauncherError(UserError, RuntimeError):
    """The scheduler refused the sweep, or the launcher config is wrong."""


class Ending(StrEnum):
    """How a job that will not run (again) on its own has ended, in the scheduler's words
    mapped to what reconciliation does with the run."""

    CANCELLED = "cancelled"  # the run becomes INTERRUPTED
    TIMEOUT = "timeout"  # TIMEOUT: its time limit, not requeued
    ERROR = "error"  # FAILED: the scheduler holds it in an error state (Grid Engine's Eqw)
    ENDED = "ended"  # LOST: it ended without the run recording an end
    VANISHED = "vanished"  # LOST once the backend's grace has passed: nobody knows the job
    DELETED = "deleted"  # INTERRUPTED once the grace has passed: it left the queue before
    # it started, and the scheduler keeps no record of a job that never ran (Grid Engine)


@dataclass(frozen=True)
class JobState:
    """What a scheduler says of one run's job. ``ending`` is ``None`` while the job lives
    (pending, running, suspended, requeued); ``word`` is the scheduler's own state
    (kept in the run's ``info.reconciled.job``); ``reason`` a sentence for the user;
    ``label`` the job as the scheduler's commands name it (``job 123_4``), where it has one."""

    word: str
    ending: Ending | None = None
    reason: str = ""
    label: str = ""

    @property
    def alive(self) -> bool:
        return self.ending is None


@dataclass(frozen=True)
class Target:
    """A run whose job a backend is asked about: its id, directory, info as read, and
    where it was placed (its current submission, and its position in it)."""

    run_id: int
    run: RunDir
    info: Mapping[str, Any]
    submission: Submission
    position: int


@dataclass
class Placed:
    """Where a submission went: job arrays (run ``i`` is task ``i - first`` of the array
    holding it, counted as the scheduler counts), or local worker processes."""

    arrays: list[Array] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    @property
    def job_ids(self) -> list[str]:
        return [a.job_id for a in self.arrays] or [str(w.pid) for w in self.workers]


@dataclass
class Limits:
    """A scheduler's limits that shape a submission (read before anything is written).

    ``max_array_size``: tasks per array (``None``: arrays are not used); ``max_submit``:
    jobs one may have queued, ``queued`` of them already there; ``max_in_system``: job
    records the scheduler holds at once, ``in_system`` now; ``extra``: the backend's own
    figures, kept in the sweep record."""

    max_array_size: int | None = None
    max_submit: int | None = None
    max_submit_source: str = ""
    queued: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_array_size": self.max_array_size,
            "max_submit": self.max_submit,
            "max_submit_from": self.max_submit_source or None,
            "queued_before": self.queued if self.max_submit is not None else None,
            **self.extra,
        }


def plan_arrays(count: int, size: int | None) -> list[tuple[int, int]]:
    """``count`` points in arrays of at most ``size``: ``[(offset, size), ...]``."""
    size = max(1, size or count or 1)
    return [(start, min(size, count - start)) for start in range(0, count, size)]


class Backend(Protocol):
    """A scheduler, as a sweep uses it (see the module for the order of the calls)."""

    #: its name, as ``--launcher`` and ``configs/launcher/<name>.yaml`` spell it
    name: ClassVar[str]
    #: its name in sentences ("SLURM", "Grid Engine")
    title: ClassVar[str]
    #: whether it sends jobs to a cluster's scheduler (``runlab doctor`` checks it, and
    #: ``--require NAME`` asks for it); local processes do not
    cluster: ClassVar[bool]
    #: the launcher settings it knows, with their defaults (``name`` among them)
    defaults: ClassVar[Mapping[str, Any]]
    #: how the scheduler asks a job to stop before it is preempted, suspended or reaches
    #: its time limit, and how the job is run again (for the docs and ``--dry-run``)
    preemption: ClassVar[str]
    #: whether a job stopped at its time limit is run again by the scheduler (so a
    #: TIMEOUT run may still start again while its job is queued)
    requeues_timeouts: ClassVar[bool]
    #: seconds after a submission during which a job nobody knows is not yet lost
    #: (accounting lags the queue)
    vanish_grace_s: ClassVar[float]

    def available(self) -> bool:
        """Whether its client commands are on this machine (the default launcher)."""
        ...

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        """Refuse settings it cannot give (:class:`LauncherError`, naming ``where``)."""
        ...

    def limits(self, cfg: Mapping[str, Any]) -> Limits | None:
        """The cluster's limits (``None``: none apply)."""
        ...

    def plan(self, count: int, limits: Limits | None) -> list[tuple[int, int]]:
        """The arrays ``count`` points become, ``[(offset, size)]``; :class:`LauncherError`
        when the limits make the sweep impossible (nothing is written then)."""
        ...

    def validate(self, cfg: Mapping[str, Any], count: int, limits: Limits | None) -> None:
        """Ask the scheduler whether it would take the submission, without submitting;
        :class:`LauncherError` with its words when it would not."""
        ...

    def spec_fields(self, cfg: Mapping[str, Any], log_dir: Path, count: int) -> dict[str, Any]:
        """Fields of the jobs file that its own task entry reads (where it writes output)."""
        ...

    def submit(
        self,
        jobs_file: Path,
        count: int,
        cfg: Mapping[str, Any],
        log_dir: Path,
        limits: Limits | None,
    ) -> Placed:
        """Submit the ``count`` entries of ``jobs_file``; all of them or, on a refusal,
        none (what was queued is taken back) and a :class:`LauncherError`."""
        ...

    def states(self, record: SweepRecord, targets: list[Target]) -> dict[int, JobState]:
        """What the scheduler says of each target's job, by run id (a run left out: the
        backend cannot tell from here)."""
        ...

    def job_states(self, job_ids: list[str]) -> dict[str, JobState]:
        """The jobs named by the ids runs recorded (``info.job_id``); one the scheduler
        knows no more is :attr:`Ending.VANISHED`. :class:`LauncherError` when it cannot be
        asked at all."""
        ...

    def cancel(
        self, record: SweepRecord, targets: list[Target], whole: bool, wait_s: float
    ) -> None:
        """Cancel the targets' jobs (``whole``: the sweep's, every one) and wait up to
        ``wait_s`` for them to leave."""
        ...

    def log_file(self, submission: Submission, position: int, run_id: int, err: bool) -> Path:
        """Where the job of the run at ``position`` writes its stdout (or stderr)."""
        ...

    def job_label(self, submission: Submission, position: int) -> str:
        """The job of the run at ``position``, as the scheduler's commands name it."""
        ...

    def describe(self, cfg: Mapping[str, Any]) -> list[str]:
        """Lines for ``runlab submit --dry-run``: what would be asked of the scheduler."""
        ...

    def doctor(self) -> tuple[str, str, str]:
        """``runlab doctor``'s line: ``(verdict, detail, fix)``, verdict ``ok``, ``warn``,
        ``fail`` or ``skip`` (its commands are not on this machine)."""
        ...


def probe(
    cmd: Sequence[str], cwd: Path | None = None, timeout: float = 15.0
) -> tuple[int | None, str, str]:
    """``(returncode, stdout, stderr)`` of a command that may be missing or hang (the
    checks of ``runlab doctor``); returncode ``None`` when it could not run or timed out."""
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None, "", f"`{' '.join(cmd)}` did not answer within {timeout:g} s"
    except OSError as exc:
        return None, "", f"`{cmd[0]}` could not run: {exc.strerror or exc}"
    return proc.returncode, proc.stdout, proc.stderr


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
