"""The ``runlab`` command line.

Each subcommand lives in ``runlab.commands.<module>`` as a pair of functions,
``configure_<name>(parser)`` and ``run_<name>(args) -> int``; only the module of
the command being run is imported, so ``runlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "submit": ("submit", "run a Hydra sweep of a task on SLURM or local processes"),
    "ls": ("results", "list runs as a table, filtered with a query"),
    "show": ("results", "show one run's record"),
    "status": ("results", "count runs by status, with the failing ones"),
    "report": ("report", "draw curves and tables of runs into an HTML page and PNGs"),
    "reproduce": ("reproduce", "re-run a finished run exactly and compare its metrics"),
    "diff": ("reproduce", "config, environment, code and metric differences of two runs"),
    "doctor": ("doctor", "check the environment, GPUs, SLURM and logs directory"),
}


def _parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runlab",
        description="Replicable machine-learning experiments: launch, read, report, reproduce.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            mod = importlib.import_module(f"runlab.commands.{module}")
            getattr(mod, f"configure_{name}")(cmd)
    return parser


def _version() -> str:
    from runlab import __version__

    return f"runlab {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``runlab`` script."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    # Overrides may stand on either side of options (`submit t.py a=1 --wait b=2`).
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"runlab.commands.{COMMANDS[args.command][0]}")
    try:
        return int(getattr(module, f"run_{args.command}")(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `runlab ls | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
