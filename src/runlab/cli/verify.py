"""``runlab verify [LOGS] [--deep] [--repair] [--json]``: check the record's invariants.

Lists each violation as one line (where, the invariant's number, what is wrong,
what to do) and exits 1 when there is any, 0 when there is none. ``--deep`` also
reads every metrics row; ``--repair`` fixes what is safe (see runlab.results.verify).
"""

from __future__ import annotations

import argparse
import sys

import orjson

from runlab.cli._text import safe
from runlab.logs import Logs
from runlab.results.verify import INVARIANTS, verify


def configure_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "logs_positional", nargs="?", metavar="LOGS", help="the logs directory (as --logs)"
    )
    parser.add_argument("--logs", metavar="DIR", help="logs directory (default: see the docs)")
    parser.add_argument("--deep", action="store_true", help="also check every metrics row")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="fix what is safe: rebuild caches, mark dead RUNNING runs LOST, "
        "move torn temporary files aside (nothing is deleted)",
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")


def run_verify(args: argparse.Namespace) -> int:
    logs = Logs.existing(args.logs or args.logs_positional)
    verdict = verify(logs, deep=args.deep, repair=args.repair)
    if args.json:
        sys.stdout.write(orjson.dumps(verdict.as_json(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return 0 if verdict.ok else 1
    for line in verdict.repaired:
        print(f"repaired: {safe(line)}")
    for v in verdict.violations:
        print(safe(v.line()))
    for note in verdict.notes:
        print(f"note: {safe(note)}")
    rules = sorted({v.invariant for v in verdict.violations})
    summary = f"{verdict.runs} runs checked in {verdict.seconds:.2f} s: " + (
        f"{len(verdict.violations)} violation(s)" if rules else "every invariant holds"
    )
    print(summary + "".join(f"\n  [{n}] {INVARIANTS[n]}" for n in rules))
    return 0 if verdict.ok else 1
