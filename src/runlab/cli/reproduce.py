"""``runlab reproduce`` and ``runlab diff``: replicate a run, and compare two."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from runlab.cli._logs import add_logs_option, logs_from, split_positional
from runlab.cli._text import cell, console, m
from runlab.record import secrets
from runlab.record.files import read_yaml
from runlab.record.metricsfile import read_rows
from runlab.results import reproduce
from runlab.status import Status

USAGE = {1: "runlab reproduce [--logs DIR] RUN_ID", 2: "runlab diff [--logs DIR] A B"}
CHECK_USAGE = "runlab reproduce --check [--logs DIR] A B"


def _logs_and_ids(parser: argparse.ArgumentParser, *ids: str) -> None:
    metavar = " ".join(name.upper() for name in ids)
    parser.add_argument(
        "ids",
        nargs="+",
        metavar=metavar,
        help="the id of each run (a folder name in the logs directory)",
    )
    parser.set_defaults(id_names=ids)
    add_logs_option(parser)


def _resolve(args: argparse.Namespace) -> None:
    """Set ``args.logs`` (a :class:`Path`) and the run ids from ``--logs`` and the
    positionals (``LOGS`` before the ids is still accepted)."""
    names = args.id_names
    usage = CHECK_USAGE if getattr(args, "check", False) else USAGE[len(names)]
    given, ids = split_positional(args, args.ids, len(names), usage)
    args.logs = logs_from(args, positional=given).path
    for name, value in zip(names, ids, strict=True):
        setattr(args, name, value)


def configure_reproduce(parser: argparse.ArgumentParser) -> None:
    _logs_and_ids(parser, "run_id")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for 'close'")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for 'close'")
    parser.add_argument("--repo", type=Path, help="git repository holding the run's commit")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be restored, from where, and the command; run nothing",
    )
    parser.add_argument(
        "--skip-untracked",
        action="store_true",
        help="rerun a run whose record left untracked files out (above the limits) without "
        "them; the rerun's record and verdict say so",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="with two run ids A B: say whether the two runs were run the same way "
        "(code, config, overrides, environment variables), running nothing",
    )


def run_reproduce(args: argparse.Namespace) -> int:
    err = console(stderr=True, soft_wrap=True)
    if args.check:
        args.id_names = ("a", "b")
        _resolve(args)
        return _check(args)
    _resolve(args)
    # A ReproduceError is a UserError: runlab.cli prints `runlab reproduce: error: ...` (exit 2).
    plan = reproduce.plan(args.logs, args.run_id, args.repo, args.skip_untracked)
    if plan.info.get("status") != Status.COMPLETE:
        err.print(
            f"[yellow]warning:[/] run {m(args.run_id)} is {m(plan.info.get('status'))}, not COMPLETE"
        )
    for problem in reproduce.record_problems(plan.env):  # the record is incomplete: say how
        err.print(f"[yellow]warning:[/] run {m(args.run_id)}'s record: {m(problem)}")
    differences = reproduce.environment_differences(plan.env)
    if differences:
        err.print(f"[yellow]The environment differs from run {m(args.run_id)}'s:[/]")
        for line in differences[:40]:
            err.print(f"  {m(line)}")
        if len(differences) > 40:
            err.print(f"  ... and {m(len(differences) - 40)} more")
    if args.dry_run:
        return _show_plan(plan)
    new, code = reproduce.rerun(plan)
    if code != 0:
        err.print(
            f"[red]the rerun (run {m(new.run_id)}) exited with {m(code)}[/]; see {m(new.path)}"
        )
        return 1
    verdict = reproduce.compare(plan.run, new, args.rtol, args.atol)
    color = {"identical": "green", "close": "yellow", "diverged": "red"}[verdict.kind]
    without = f" {plan.missing}" if plan.missing else ""
    print(f"run {new.run_id} reproduces run {plan.run.run_id}{without}: ", end="")
    err.file.flush()
    console().print(f"[bold {color}]{m(verdict.kind)}[/] ({m(verdict.detail)})")
    if verdict.kind == "diverged":
        _, environ = reproduce.compare_inputs(args.logs, str(plan.run.run_id), new.run_id)
        explain = environ + plan.notes
        if explain:
            err.print("What was not the same, and may explain it:")
            for line in explain[:20]:
                err.print(f"  {m(line)}")
        else:
            err.print(
                "Code, config and environment were the same: look for nondeterminism "
                "(GPU kernels, threads, unseeded randomness) or data read from outside the code."
            )
    return 0 if verdict.kind != "diverged" else 1


def _show_plan(plan: reproduce.Plan) -> int:
    """``--dry-run``: the plan, one line per input, and the command (``<code>`` standing
    for the folder the code is restored into)."""
    out = console(soft_wrap=True)
    code = plan.snapshot or reproduce.rebuilt_path(plan)
    argv, cwd = reproduce.command(plan, Path(_CODE))
    out.print(f"run {m(plan.run.run_id)} would be run again:")
    out.print(f"  code:     {m(plan.code_from)}")
    out.print(f"  into:     {m(code)} (<code> below)")
    out.print(f"  task:     {m(plan.task)}")
    out.print(f"  in:       {m(cwd)}")
    out.print(f"  command:  python {m(' '.join(_quote(a) for a in argv))}")
    for name, value in plan.environ.items():
        shown = (
            "(unset)"
            if value is None
            else "(set, redacted)"
            if secrets.could_hold(value)
            else value
        )
        out.print(f"  env:      {m(name)}={m(shown)}")
    for note in plan.notes:
        out.print(f"  note:     {m(note)}")
    if plan.missing:
        out.print(f"  without:  {m(plan.missing)}")
    return 0


_CODE = "<code>"


def _quote(argument: str) -> str:
    """``argument`` as a shell would need it, ``<code>`` left readable."""
    if argument.startswith(_CODE):
        rest = argument[len(_CODE) :]
        return _CODE + (shlex.quote(rest) if rest and shlex.quote(rest) != rest else rest)
    return shlex.quote(argument)


def _check(args: argparse.Namespace) -> int:
    """``--check A B``: whether two runs were run the same way; exit 1 where not."""
    out = console(soft_wrap=True)
    inputs, environ = reproduce.compare_inputs(args.logs, args.a, args.b)
    if inputs:
        out.print(f"runs {m(args.a)} and {m(args.b)} were [red]not run the same way[/]:")
        for line in inputs:
            out.print(f"  {m(line)}")
    else:
        out.print(
            f"runs {m(args.a)} and {m(args.b)} were [green]run the same way[/]: same code, "
            "config source, overrides, config and environment variables"
        )
    if environ:
        out.print("Their environments differ (this may explain different results):")
        for line in environ[:40]:
            out.print(f"  {m(line)}")
        if len(environ) > 40:
            out.print(f"  ... and {m(len(environ) - 40)} more")
    return 1 if inputs else 0


def configure_diff(parser: argparse.ArgumentParser) -> None:
    _logs_and_ids(parser, "a", "b")
    parser.add_argument("--all-packages", action="store_true", help="list every package difference")


def run_diff(args: argparse.Namespace) -> int:
    import subprocess

    from rich.table import Table

    out = console()
    _resolve(args)
    # A missing run raises ReproduceError: runlab.cli prints it in one line (exit 2).
    ra, ia, ea = reproduce.load_run(args.logs, args.a)
    rb, ib, eb = reproduce.load_run(args.logs, args.b)
    # The task as a place in its code: a rerun from a snapshot is the same task.
    task_a = reproduce.input_summary(ra, ia, ea)["task"]
    task_b = reproduce.input_summary(rb, ib, eb)["task"]
    if task_a != task_b:  # said first: every other difference follows from it
        out.print(
            f"[yellow]runs {m(args.a)} and {m(args.b)} are of different tasks:[/] "
            f"{m(task_a or '(not recorded)')} and {m(task_b or '(not recorded)')}"
        )

    def table(title: str, rows: list[tuple[str, object, object]]) -> None:
        t = Table(title=title, title_justify="left")
        t.add_column("key")
        t.add_column(cell(f"run {args.a}"))
        t.add_column(cell(f"run {args.b}"))
        for key, x, y in rows:
            t.add_row(cell(key), cell(x), cell(y))
        out.print(t if rows else f"[bold]{m(title)}[/]: no difference")

    ca = reproduce.flatten(read_yaml(ra.config_file) or {})
    cb = reproduce.flatten(read_yaml(rb.config_file) or {})
    keys = sorted(
        k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k) and not k.startswith("runlab.")
    )
    table("config", [(k, ca.get(k, "-"), cb.get(k, "-")) for k in keys])

    fa = reproduce.flatten({k: v for k, v in ea.items() if k not in ("packages", "conda_packages")})
    fb = reproduce.flatten({k: v for k, v in eb.items() if k not in ("packages", "conda_packages")})
    keys = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k) and k not in _PLACES)
    rows = [(k, fa.get(k, "-"), fb.get(k, "-")) for k in keys]
    pa, pb = ea.get("packages") or {}, eb.get("packages") or {}
    pkg = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
    limit = None if args.all_packages else 20
    rows += [(f"package {k}", pa.get(k, "-"), pb.get(k, "-")) for k in pkg[:limit]]
    if limit and len(pkg) > limit:
        rows.append((f"... {len(pkg) - limit} more packages", "", "(--all-packages)"))
    table("code and environment", rows)

    commit_a = (ea.get("git") or {}).get("commit")
    commit_b = (eb.get("git") or {}).get("commit")
    root = (ea.get("git") or {}).get("root") or os.getcwd()
    if commit_a and commit_b and commit_a != commit_b:
        stat = subprocess.run(
            ["git", "diff", "--stat", commit_a, commit_b], cwd=root, capture_output=True, text=True
        )
        text = stat.stdout.strip() if stat.returncode == 0 else f"(commits not in {root})"
        out.print(f"[bold]code[/] {m(commit_a[:10])}..{m(commit_b[:10])}:")
        out.print(cell(text, limit=None, keep="\n"))

    metrics = Table(title="metrics (last value; min)", title_justify="left")
    metrics.add_column("metric")
    metrics.add_column(cell(f"run {args.a}"), justify="right")
    metrics.add_column(cell(f"run {args.b}"), justify="right")
    names = sorted(
        {p.name for p in ra.metrics.glob("*.jsonl")} | {p.name for p in rb.metrics.glob("*.jsonl")}
    )
    for name in names:
        rows_a = read_rows(ra.metrics / name) if (ra.metrics / name).exists() else []
        rows_b = read_rows(rb.metrics / name) if (rb.metrics / name).exists() else []
        keys = sorted({k for r in rows_a + rows_b for k in r} - {"time", "step"})
        for key in keys:
            metrics.add_row(
                cell(f"{name[:-6]}.{key}"), cell(_summary(rows_a, key)), cell(_summary(rows_b, key))
            )
    out.print(metrics)
    return 0


# Where a run's code and interpreter were, not what they were: a rerun from a snapshot,
# or from the same venv called `python` instead of `python3`, differs only there.
_PLACES = frozenset({"git.root", "git.snapshot", "python.executable"})


def _summary(rows: list[dict], key: str) -> str:
    values = [
        r[key]
        for r in rows
        if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
    ]
    if not values:
        return "-"
    return f"{values[-1]:.6g}; {min(values):.6g} ({len(values)} steps)"
