"""``runlab doctor``: a checklist of what the workspace needs, each line with a fix."""

from __future__ import annotations

import argparse
import json

from runlab import doctor
from runlab.cli._logs import add_logs_option, logs_from
from runlab.cli._text import cell, console, m

STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def configure_doctor(parser: argparse.ArgumentParser) -> None:
    add_logs_option(parser)
    parser.add_argument(
        "--require",
        action="append",
        choices=["gpu", "pixi", *doctor.scheduler_names()],
        default=[],
        help="exit non-zero unless these work here (repeatable: --require gpu --require slurm; "
        "a scheduler's name asks that its cluster answers)",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def run_doctor(args: argparse.Namespace) -> int:
    require = list(dict.fromkeys(args.require or []))
    checks = doctor.run_checks(logs=logs_from(args, write=True).path)
    unmet = doctor.unmet_requirements(checks, require)
    code = doctor.exit_code(checks, require)
    if args.json:
        data = {
            "ok": code == 0,
            "checks": [doctor.as_dict(c) for c in checks],
            "required": require,
            "unmet": unmet,
        }
        print(json.dumps(data, indent=2))
        return code

    from rich.table import Table

    table = Table(title="runlab doctor", title_justify="left")
    for column in ("check", "verdict", "detail", "fix"):
        table.add_column(cell(column), overflow="fold")
    for c in checks:
        table.add_row(
            cell(c.name), cell(c.verdict, style=STYLES[c.verdict]), cell(c.detail), cell(c.fix)
        )
    console().print(table)
    if code:
        err = console(stderr=True)
        failed = [c.name for c in checks if c.verdict == "fail"]
        if failed:
            err.print(f"[red]failed:[/] {m(', '.join(failed))}")
        for req, short in unmet.items():
            err.print(f"[red]--require {m(req)}:[/] {m('; '.join(short))}")
    return code
