"""The ``runlab`` command line.

Each subcommand lives in ``runlab.cli.<module>`` as a pair of functions,
``configure_<name>(parser)`` and ``run_<name>(args) -> int``; only the module of
the command being run is imported, so ``runlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from runlab import __version__
from runlab.cli._text import safe

# re-exported: `from runlab.cli import UserError, one_line`
from runlab.errors import UserError, one_line

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "submit": ("submit", "run a Hydra sweep of a task on SLURM or local processes"),
    "ls": ("results", "list runs as a table, filtered with a query"),
    "show": ("results", "show one run's record"),
    "status": ("ops", "the latest sweep's runs by status, reconciled with the scheduler"),
    "cancel": ("ops", "cancel a sweep's jobs, or some runs' (they end INTERRUPTED)"),
    "retry": ("ops", "resubmit a sweep's failed runs into their own directories"),
    "logs": ("ops", "a run's job output (stdout, or --err), -f to follow it"),
    "report": ("report", "draw curves and tables of runs into an HTML page and PNGs"),
    "reproduce": ("reproduce", "re-run a finished run exactly and compare its metrics"),
    "diff": ("reproduce", "config, environment, code and metric differences of two runs"),
    "compare": ("compare", "runs side by side: the config keys that differ, metrics, status"),
    "doctor": ("doctor", "check the environment, GPUs, cluster schedulers and logs directory"),
    "verify": ("verify", "check a logs directory's invariants (--repair fixes what is safe)"),
    "tune": ("tune", "search hyperparameters with Optuna; every trial is a run (--show: best)"),
    "export": ("export", "write runs into TensorBoard event files or an MLflow tracking server"),
    "serve": ("serve", "a live dashboard of runs and curves in the browser (read-only, local)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (the usage is one `--help` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _parser(command: str | None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="runlab",
        description="Replicable machine-learning experiments: launch, read, report, reproduce.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            mod = importlib.import_module(f"runlab.cli.{module}")
            getattr(mod, f"configure_{name}")(cmd)
    return parser


def _version() -> str:
    return f"runlab {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``runlab`` script."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = _parser(command if command in COMMANDS else None)
    except Exception as exc:  # a command module that cannot be imported: still one line
        return report_error(exc, f"runlab {command}" if command in COMMANDS else "runlab")
    args, extra = parser.parse_known_args(argv)
    # Overrides may stand on either side of options (`submit t.py a=1 --wait b=2`).
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        module = importlib.import_module(f"runlab.cli.{COMMANDS[args.command][0]}")
        return int(getattr(module, f"run_{args.command}")(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `runlab ls | head`
        return 0
    except Exception as exc:
        return report_error(exc, f"runlab {args.command}")


# ---------------------------------------------------------------- errors
DEBUG_VARIABLE = "RUNLAB_DEBUG"
DEBUG_HINT = f"set {DEBUG_VARIABLE}=1 for the traceback"


_WRITABLE = "choose a directory you can write"
_OS_ADVICE = {
    errno.EACCES: f"check its permissions, or {_WRITABLE}",
    errno.EPERM: f"check its permissions, or {_WRITABLE}",
    errno.EROFS: f"it is on a read-only file system: {_WRITABLE}",
    errno.ENOSPC: "the disk is full: free some space, or choose a directory on another disk",
    errno.EDQUOT: "the disk quota is exceeded: free some space, or choose a directory "
    "on another disk",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check the path",
    errno.EEXIST: "something is already there: move it away or choose another path",
    errno.EISDIR: "it is a directory: give a file",
}
_WRITE_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
# Where each command takes the directory it writes, for the advice on write errors.
_WRITES_TO = {
    "runlab submit": "--logs DIR or RUNLAB_LOGS",
    "runlab report": "--out DIR",
    "runlab reproduce": "--logs DIR or RUNLAB_LOGS",
}


def describe_os_error(exc: OSError, option: str | None = None) -> str:
    """``OSError`` as what failed, on which path, and what to do (``option``: where the
    command takes the directory to write, named in the advice on write errors)."""
    what = exc.strerror or type(exc).__name__
    where = exc.filename
    if where is not None and exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    message = f"{what}: {where}" if where is not None else one_line(str(exc))
    advice = _OS_ADVICE.get(exc.errno or 0)
    if advice and option and exc.errno in _WRITE_ERRORS:
        advice += f" ({option})"
    return f"{message} ({advice})" if advice else message


def report_error(exc: BaseException, prog: str = "runlab") -> int:
    """Print ``exc`` as one line on stderr (with the traceback under RUNLAB_DEBUG=1);
    the exit status: a :class:`UserError`'s ``code`` (2 unless it says otherwise), 1 for a
    failure of the system or of runlab."""
    debug = os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0")
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, UserError):  # every user-fixable error of runlab derives from it
        line, code = f"{prog}: error: {one_line(exc.line())}", exc.code
    elif isinstance(exc, OSError):
        line, code = f"{prog}: error: {describe_os_error(exc, _WRITES_TO.get(prog))}", 1
    else:
        detail = one_line(str(exc)) or "(no message)"
        line = f"{prog}: internal error: {type(exc).__name__}: {detail}"
        if not debug:
            line += f" ({DEBUG_HINT}, and report it)"
        code = 1
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(safe(line, limit=None), file=sys.stderr)
    if isinstance(exc, UserError) and exc.detail:
        print(safe(exc.detail, limit=None, keep="\n"), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
