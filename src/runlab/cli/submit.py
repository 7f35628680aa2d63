"""``runlab submit TASK [OVERRIDES...]``: a Hydra sweep to SLURM or local processes."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runlab.cli._logs import add_logs_option, logs_value
from runlab.cli._progress import wait
from runlab.cli._text import cell, console, m
from runlab.errors import UserError, one_line
from runlab.logs import default_path
from runlab.status import ACTIVE, Status
from runlab.sweep import backends, submission
from runlab.sweep.snapshot import commit_all


def configure_submit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="the task script, e.g. tasks/train.py")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides and sweeps (lr=0.1,0.01 seed=range(3) model=mlp,cnn +sweep=NAME); "
        "launcher settings as launcher.KEY=VALUE (launcher.partition=gpu)",
    )
    parser.add_argument(
        "--launcher",
        choices=backends.NAMES,
        help="where jobs run (default: the first of "
        f"{', '.join(backends.NAMES)} whose commands are on PATH)",
    )
    add_logs_option(
        parser,
        help="logs directory (default: the task's runlab.logs, else $RUNLAB_LOGS, "
        "else logs/ in the project root)",
    )
    parser.add_argument("--wait", action="store_true", help="show progress until every run ends")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the jobs and scheduler settings, submit nothing",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="submit with uncommitted changes (the diff is recorded in every run)",
    )
    parser.add_argument("-y", "--yes", action="store_true", help="never ask questions")


def run_submit(args: argparse.Namespace) -> int:
    err = console(stderr=True)
    # A bad task, override or launcher setting raises runlab's own error, which the CLI
    # prints as one line (runlab.cli.report_error).
    sweep = submission.prepare(
        args.task, args.overrides, args.launcher, logs_value(args), allow_dirty=True
    )
    if not sweep.jobs:
        raise UserError(f"the sweep of {args.task} has no jobs: check the overrides")

    if args.dry_run:
        _print_plan(sweep)
        return 0

    _pin_code(sweep, args, err)
    # Ctrl-C while runs are made and jobs queued waits for the end of that step: stopped
    # in the middle, it would leave runs no record holds, or a job whose id is lost.
    with _ctrl_c_deferred() as stop:
        created = submission.create_runs(sweep)
        if stop.came():
            submission.abandon(
                sweep, created, "runlab submit was stopped (Ctrl-C) before any job was queued"
            )
            err.print(
                f"[yellow]stopped:[/] no job was queued; the {len(created.runs)} run(s) made "
                f"are INTERRUPTED (runlab retry runs them)",
                highlight=False,
                soft_wrap=True,
            )
            return 130
        try:
            launched = submission.launch(sweep, created)
        except Exception as exc:  # runlab.cli prints it in one line (exit 1)
            raise UserError(
                one_line(str(exc)),
                todo=f"the {len(created.runs)} pre-created runs in {sweep.logs} "
                "were marked FAILED with this reason",
                code=1,
            ) from exc
    runs = launched.runs
    first, last = runs[0].run_id, runs[-1].run_id
    where = launched.record.launcher_name
    ids = set(launched.placed.job_ids)
    err.print(
        f"submitted {len(runs)} run(s) [bold]{m(first)}..{m(last)}[/] to {m(where)} "
        f"(job {m(', '.join(sorted(ids)))}) from commit {m(sweep.code.commit[:10])}"
        f"{m(' with uncommitted changes' if sweep.code.dirty else '')}\n"
        f"logs: {m(sweep.logs)}   follow with: runlab status {m(sweep.logs)}",
    )
    if stop.came():  # Ctrl-C while the jobs were queued: they are, and go on
        _interrupted(runs, launched.record.sweep_id, Path(sweep.logs), err, "stopped")
        return 130
    if not args.wait:
        return 0
    try:
        return _wait(runs, err)
    except KeyboardInterrupt:
        _interrupted(runs, launched.record.sweep_id, Path(sweep.logs), err)
        return 130


class _Stop:
    """Whether Ctrl-C came (asked, not stored: it comes between two looks)."""

    def __init__(self) -> None:
        self._came = False

    def came(self) -> bool:
        return self._came


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[_Stop]:
    """Ctrl-C (SIGINT) is noted, not raised, for the duration (in the main thread; else
    nothing changes)."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def note(signum: int, frame: Any) -> None:
        stop._came = True

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted(
    runs: list[Any], sweep_id: str, logs: Path, err: Any, what: str = "stopped waiting"
) -> None:
    """Ctrl-C on ``--wait`` stops the waiting, never the jobs: say so, and how to stop them."""
    going = [r for r in runs if Status.of(r.read_info().get("status")) in (*ACTIVE, None)]
    try:
        where = "" if default_path().resolve() == logs.resolve() else f" --logs {logs}"
    except OSError:
        where = f" --logs {logs}"
    err.print(
        f"\n[yellow]{m(what)}:[/] {len(going)} of the {len(runs)} run(s) of sweep "
        f"{m(sweep_id)} go on without this command.\n"
        f"  follow them: runlab status{m(where)}\n"
        f"  cancel them: runlab cancel {m(sweep_id)}{m(where)}",
        highlight=False,
        soft_wrap=True,
    )


def _pin_code(sweep: submission.Sweep, args: argparse.Namespace, err: Any) -> None:
    """Refuse uncommitted changes unless ``--allow-dirty`` (or commit them, if the user says
    so at the prompt); warn about untracked files too big to be copied with the code."""
    # Untracked files over the limits (a venv/ in the repository) are never copied into
    # the patch or the snapshot: say so in one line, with the .gitignore hint.
    skipped = sweep.code.skipped_problem()
    if sweep.code.dirty and not args.allow_dirty:
        interactive = sys.stdin.isatty() and not args.yes and not skipped
        changes = sweep.code.changes
        listing = "\n".join(f"  {m(line)}" for line in changes[:30])
        more = f"\n  ... and {len(changes) - 30} more" if len(changes) > 30 else ""
        err.print(
            f"[yellow]The git tree at {m(sweep.code.root)} has uncommitted changes:[/]"
            f"\n{listing}{m(more)}",
            highlight=False,
            soft_wrap=True,
        )
        if skipped:
            err.print(f"[yellow]warning:[/] {m(skipped)}", soft_wrap=True)
        if interactive and _ask("Commit them now, so that the jobs are pinned to a commit?"):
            message = f"runlab submit {Path(args.task).name} {' '.join(args.overrides)}".strip()
            sweep.code = commit_all(sweep.code, message)
            err.print(f"committed {m(sweep.code.commit[:10])}")
        else:
            raise UserError(
                "jobs are pinned to a commit so that results trace back to code",
                where=f"uncommitted changes in {sweep.code.root}",
                todo="commit the changes, or pass --allow-dirty to record the diff in every run",
            )
    elif sweep.code.dirty and skipped:
        err.print(
            f"[yellow]warning:[/] {m(skipped)}; the jobs run without them",
            highlight=False,
            soft_wrap=True,
        )


def _wait(runs: list[Any], err: Any) -> int:
    """``--wait``: the progress bar until every run ends, then the runs that did not
    complete (exit status 1) or that all did (0)."""
    failed = wait(runs)
    if failed:
        err.print(f"[red]{len(failed)} run(s) did not complete:[/]")
        for run in failed:
            info = run.read_info()
            error = (info.get("error") or {}).get("message", "")
            log = info.get("log_err") or (info.get("local_workers") or [""])[0]
            err.print(
                f"  run {m(run.run_id)}: {m(info.get('status'))} {m(error)}\n"
                f"    {m(run.path)}  {m(log)}"
            )
        return 1
    err.print(f"[green]all {len(runs)} runs complete[/]")
    return 0


def _ask(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _print_plan(sweep) -> None:
    from rich.table import Table

    out = console()
    table = Table(title=cell(f"{len(sweep.jobs)} job(s) of {sweep.script.name}"))
    table.add_column("#", justify="right")
    table.add_column("overrides")
    for i, job in enumerate(sweep.jobs):
        table.add_row(cell(i), cell(" ".join(job.overrides) or "(defaults)"))
    out.print(table)
    cfg = sweep.launcher
    out.print(f"launcher: [bold]{m(cfg['name'])}[/]   logs: {m(sweep.logs)}")
    for line in backends.get(cfg["name"]).describe(cfg):
        out.print(cell(line))
    state = "clean" if not sweep.code.dirty else f"{len(sweep.code.changes)} uncommitted change(s)"
    out.print(cell(f"code: commit {sweep.code.commit[:10]} ({state})"))
    if sweep.code.skipped_problem():
        out.print(cell(f"warning: {sweep.code.skipped_problem()}"), soft_wrap=True)
