"""Every user error of the `runlab` command: one line on stderr, non-zero exit, no traceback.

Each case runs the real command (`python -m runlab ...`) in a child process, as a user
would type it; `RUNLAB_DEBUG=1` brings the traceback back.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TASKS, make_project, repository_files, task_env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed git project holding a small task (tests/tasks/slow.py and its config)."""
    return make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")


def runlab(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = task_env(RUNLAB_LOGS=str(cwd / "logs"))
    environ.pop("RUNLAB_DEBUG", None)
    environ.update(env)
    environ["COLUMNS"] = "80"  # a narrow terminal must not wrap the line either
    return subprocess.run(
        [sys.executable, "-m", "runlab", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def one_line_error(proc: subprocess.CompletedProcess, *expected: str) -> str:
    """The single line of stderr, after checking exit status and the absence of a traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, f"exit 0\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("runlab"), line
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    return line


# ---------------------------------------------------------------------- the task file
def test_submit_a_task_with_a_syntax_error(project: Path) -> None:
    (project / "tasks" / "broken.py").write_text("import runlab\n\ndef main(:\n    pass\n")
    line = one_line_error(runlab(project, "submit", "tasks/broken.py", "--dry-run"))
    assert "broken.py, line 3" in line and "syntax" in line


def test_submit_a_binary_file(project: Path) -> None:
    (project / "tasks" / "model.py").write_bytes(bytes(range(256)) * 4)
    line = one_line_error(runlab(project, "submit", "tasks/model.py", "--dry-run"))
    assert "model.py" in line and "not UTF-8" in line


def test_submit_a_file_with_a_nul_byte(project: Path) -> None:
    (project / "tasks" / "nul.py").write_bytes(b"import runlab\x00\n")
    one_line_error(runlab(project, "submit", "tasks/nul.py", "--dry-run"), "nul.py")


def test_submit_a_missing_file_or_a_directory_says_what_to_give(project: Path) -> None:
    line = one_line_error(runlab(project, "submit", "tasks/nosuch.py", "--dry-run"))
    assert "nosuch.py" in line and "@runlab.launch" in line and "tasks/train.py" in line
    line = one_line_error(runlab(project, "submit", "tasks", "--dry-run"))
    assert "a directory" in line


def test_submit_a_task_whose_config_path_is_not_a_literal(project: Path) -> None:
    source = (project / "tasks" / "slow.py").read_text()
    (project / "tasks" / "computed.py").write_text(
        source.replace('config_path="."', "config_path=HERE").replace(
            "import runlab\n", "import runlab\n\nHERE = '.'\n", 1
        )
    )
    one_line_error(
        runlab(project, "submit", "tasks/computed.py", "--dry-run"), "computed.py", "config_path"
    )


# ---------------------------------------------------------------------- overrides
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("=3", "no key"),
        ("=", "no key"),
        ("steps", "no '='"),
        ("steps==", "invalid override 'steps=='"),
        ("steps=[1", "invalid override 'steps=[1'"),
        ("nosuch=", "Could not override 'nosuch'"),
        ("+steps=3", "++steps=3"),
        ("~nosuch", "nosuch"),
        ("steps=range(a)", "invalid override"),
    ],
)
def test_malformed_overrides(project: Path, override: str, expected: str) -> None:
    proc = runlab(project, "submit", "tasks/slow.py", override, "--dry-run")
    one_line_error(proc, expected)
    assert proc.returncode == 2
    assert not (project / "logs").exists()


def test_unknown_option_is_one_line_with_where_to_look(project: Path) -> None:
    one_line_error(runlab(project, "submit", "tasks/slow.py", "--bogus"), "--bogus", "--help")
    one_line_error(runlab(project, "reproduce", "--logs", "logs", "1", "--rtol", "x"), "--rtol")


def test_diff_of_a_missing_run_is_one_unwrapped_line(project: Path) -> None:
    (project / "logs").mkdir()
    line = one_line_error(
        runlab(project, "diff", "--logs", "logs", "1", "2"), "runlab diff: error:"
    )
    assert str(project / "logs" / "1") in line  # a long path, once wrapped at 80 columns


# ---------------------------------------------------------------------- the file system
def test_logs_path_that_is_a_file(project: Path) -> None:
    taken = project.parent / "taken"  # outside the project, which stays clean
    taken.write_text("not a directory\n")
    args = ["submit", "tasks/slow.py", "steps=1", "--launcher", "local", "--logs", str(taken)]
    line = one_line_error(runlab(project, *args))
    assert str(taken) in line and "check the path" in line
    assert taken.read_text() == "not a directory\n"


def _read_only_command(directory: Path, command: list[str]) -> list[str]:
    """``command`` where ``directory`` cannot be written: by permissions for a normal user;
    for root (whom permissions do not stop), a read-only bind mount in a mount namespace."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return command
    if shutil.which("unshare") is None:
        pytest.fail("running as root without `unshare`: cannot make a read-only directory")
    script = (
        f'mount --bind "{directory}" "{directory}" && '
        f'mount -o remount,ro,bind "{directory}" && exec "$@"'
    )
    return ["unshare", "-m", "sh", "-c", script, "sh", *command]


def test_logs_directory_that_cannot_be_written(project: Path) -> None:
    logs = project / "logs"
    logs.mkdir()
    command = [sys.executable, "-m", "runlab", "submit", "tasks/slow.py", "steps=1"]
    command += ["--launcher", "local", "--logs", str(logs)]
    env = task_env(RUNLAB_LOGS=str(logs))
    env.pop("RUNLAB_DEBUG", None)
    proc = subprocess.run(
        _read_only_command(logs, command),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    logs.chmod(0o755)
    line = one_line_error(proc, str(logs))
    assert "Read-only file system" in line or "Permission denied" in line
    assert "--logs DIR or RUNLAB_LOGS" in line
    assert list(logs.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.EACCES, "permissions"),
        (errno.EROFS, "read-only file system"),
        (errno.ENOSPC, "disk is full"),
    ],
)
def test_os_errors_say_what_to_do(code: int, advice: str) -> None:
    from runlab.cli import describe_os_error

    error = OSError(code, os.strerror(code), "/scratch/me/logs/12")
    message = describe_os_error(error, "--logs DIR or RUNLAB_LOGS")
    assert message.startswith(f"{os.strerror(code)}: /scratch/me/logs/12 (")
    assert advice in message and message.endswith("(--logs DIR or RUNLAB_LOGS))")
    assert "--logs" not in describe_os_error(error)  # only for commands that take it


# ---------------------------------------------------------------------- a bug in runlab
BUGGY = (
    "import sys, runlab.cli, runlab.cli.results as r\n"
    "def broken(args):\n"
    "    raise KeyError('a bug')\n"
    "r.run_ls = broken\n"
    "sys.exit(runlab.cli.main(['ls']))\n"
)


def test_an_unexpected_error_is_one_line_pointing_to_runlab_debug(tmp_path: Path) -> None:
    env = task_env()
    env.pop("RUNLAB_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-c", BUGGY], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    line = one_line_error(proc, "KeyError", "RUNLAB_DEBUG=1")
    assert proc.returncode == 1 and "runlab ls" in line


def test_a_command_that_cannot_be_imported_is_one_line(tmp_path: Path) -> None:
    env = task_env()
    env.pop("RUNLAB_DEBUG", None)
    code = (
        "import sys, runlab.cli\n"
        "sys.modules['runlab.cli.results'] = None  # importing it raises ImportError\n"
        "sys.exit(runlab.cli.main(['ls']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    one_line_error(proc, "runlab ls: internal error: ModuleNotFoundError", "RUNLAB_DEBUG=1")


def test_runlab_debug_shows_the_traceback(project: Path, tmp_path: Path) -> None:
    proc = runlab(project, "submit", "tasks/slow.py", "=3", "--dry-run", RUNLAB_DEBUG="1")
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr and "SweepError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("runlab submit: error: override")
    env = task_env(RUNLAB_DEBUG="1")
    proc = subprocess.run(
        [sys.executable, "-c", BUGGY], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "KeyError" in proc.stderr


# ---------------------------------------------------------------------- scripts/init, packaging
ROOT = Path(__file__).resolve().parents[1]


def _bin_with(tmp_path: Path, *programs: str) -> Path:
    """A directory holding only symlinks to ``programs``."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in programs:
        target = shutil.which(name)
        assert target, f"{name} is not installed"
        (bindir / name).symlink_to(target)
    return bindir


def test_init_without_copier_says_so_in_one_line(tmp_path: Path) -> None:
    """scripts/init wraps copier: with no copier, uvx, pipx or pixi it names the fix."""
    bindir = _bin_with(tmp_path, "bash", "dirname", "basename")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "init"), str(tmp_path / "my-project")],
        cwd=tmp_path,
        env={"PATH": str(bindir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 127
    assert proc.stderr.strip().count("\n") == 0 and "pip install copier" in proc.stderr
    assert "running: copier copy --vcs-ref HEAD" in proc.stdout
    assert not (tmp_path / "my-project").exists()


def test_package_metadata_builds_without_deprecation_warnings(tmp_path: Path) -> None:
    """The PEP 517 hook pip calls for `pip install .`, on a copy of the repository's files."""
    copy = tmp_path / "src-copy"
    for name in repository_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    out = tmp_path / "meta"
    out.mkdir()
    hook = (
        "import sys; from setuptools import build_meta; "
        "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", hook, str(out)],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stdout + proc.stderr, proc.stderr
    metadata = (out / proc.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata


# ---------------------------------------------------------------------- one UserError base
# A user error of every command, provoked as a user would (in an empty directory whose
# logs/ exists and is empty): (command, arguments, whether runlab raised it: argparse's
# usage errors print the same line but have no traceback to show).
EVERY_COMMAND = {
    "submit": (["submit", "nosuch.py", "--dry-run"], True),
    "ls": (["ls", "missing"], True),
    "show": (["show", "abc"], True),
    "status": (["status", "--sweep", "nope"], True),
    "cancel": (["cancel", "nope"], True),
    "retry": (["retry", "--status", "COMPLETE"], True),
    "logs": (["logs", "abc"], True),
    "report": (["report", "missing"], True),
    "reproduce": (["reproduce", "logs", "99"], True),
    "diff": (["diff", "logs", "1", "2"], True),
    "compare": (["compare", "abc"], True),
    "doctor": (["doctor", "--require", "bogus"], False),  # doctor's only user error
    "tune": (["tune", "--show", "--study", "nope"], True),
    "verify": (["verify", "missing"], True),
    "export": (["export", "tensorboard", "missing"], True),
    "serve": (["serve", "missing"], True),
}


def test_every_command_is_provoked() -> None:
    from runlab.cli import COMMANDS

    assert set(EVERY_COMMAND) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(EVERY_COMMAND))
def test_every_command_says_a_user_error_in_one_line(command: str, tmp_path: Path) -> None:
    args, raised = EVERY_COMMAND[command]
    (tmp_path / "logs").mkdir()
    proc = runlab(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert line.startswith(f"runlab {command}: error: "), line
    if raised:  # RUNLAB_DEBUG=1: the traceback, then the same line
        debug = runlab(tmp_path, *args, RUNLAB_DEBUG="1")
        assert debug.returncode == 2
        assert "Traceback (most recent call last)" in debug.stderr, debug.stderr
        assert debug.stderr.strip().splitlines()[-1] == line


# Exception classes of runlab that are not a user's mistake, each with the reason.
NOT_USER_ERRORS = {
    "runlab.record.yamlfast._Fallback": "control flow inside the YAML emitter, never raised out",
    "runlab.record.stops.Interrupted": "a signal stopping the task (a BaseException)",
    "runlab.record.stops.OutputClosed": "the task's output pipe closed (`task.py | head`): an Interrupted",
    "runlab.record.stops.Pruned": "a trial pruned by Optuna: the run ends PRUNED",
    "runlab.record.logger.RecordWriteError": "an OSError (full disk): the CLI's OSError path",
    "runlab.results.reader._api.CorruptRunWarning": "a warning (the reader goes on)",
    "runlab.results.reader._index.IndexDamagedWarning": "a warning (the read goes on)",
}


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of runlab (all modules imported)."""
    import importlib
    import inspect
    import pkgutil

    import runlab

    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(runlab.__path__, "runlab."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found[f"{info.name}.{name}"] = cls
    return found


def test_every_error_class_of_runlab_is_a_user_error_or_says_why_not() -> None:
    from runlab.errors import UserError

    classes = _exception_classes()
    assert len(classes) > 20  # the walk found runlab's modules
    stray = [n for n, c in classes.items() if not issubclass(c, UserError)]
    assert sorted(set(stray) - set(NOT_USER_ERRORS)) == []
    assert sorted(set(NOT_USER_ERRORS) - set(stray)) == []  # the list stays true
    import runlab.cli

    assert runlab.cli.UserError is UserError  # `from runlab.cli import UserError` still works


def test_sweep_ops_and_tune_errors_reach_the_user_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from runlab.cli import report_error
    from runlab.sweep.ops import SweepOpsError
    from runlab.sweep.tune import TuneError

    assert report_error(SweepOpsError("no sweep 'x' in logs"), "runlab cancel") == 2
    assert report_error(TuneError("no study 'y' in logs"), "runlab report") == 2
    assert capsys.readouterr().err.splitlines() == [
        "runlab cancel: error: no sweep 'x' in logs",
        "runlab report: error: no study 'y' in logs",
    ]


def test_a_failed_run_exits_1_and_keeps_its_standard_base(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from runlab.cli import report_error
    from runlab.sweep.jobs import RunFailedError

    assert issubclass(RunFailedError, RuntimeError)
    assert report_error(RunFailedError("run 3 ended FAILED"), "runlab submit") == 1
    assert capsys.readouterr().err == "runlab submit: error: run 3 ended FAILED\n"


def test_user_errors_survive_pickling() -> None:
    """submitit and multiprocessing pickle a job's exception back to the parent."""
    import pickle

    from runlab.record.logger import MetricsError
    from runlab.results.query import QueryError
    from runlab.sweep.jobs import RunFailedError

    err = MetricsError("bad key 3", where="log_metrics(name='train')", todo="use a str")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is MetricsError and isinstance(back, (TypeError, ValueError))
    assert str(back) == str(err) == "bad key 3: log_metrics(name='train') (use a str)"
    assert (back.what, back.where, back.todo, back.code) == (err.what, err.where, err.todo, 2)
    failed = pickle.loads(pickle.dumps(RunFailedError("run 3 ended FAILED")))
    assert failed.code == 1 and isinstance(failed, RuntimeError)
    query = QueryError("unknown key 'a.b'", "a.b == 1", 0, 3, ["a.c"])
    back = pickle.loads(pickle.dumps(query))
    assert str(back) == str(query) and back.detail == query.detail and back.line() == query.line()


# ---------------------------------------------------------------------- a light --help
HEAVY = ("polars", "plotly", "optuna", "torch", "matplotlib", "submitit", "pyarrow", "hydra")


@pytest.mark.parametrize("command", [None, *sorted(EVERY_COMMAND)])
def test_help_loads_no_heavy_library(command: str | None, tmp_path: Path) -> None:
    """`runlab [COMMAND] --help` answers at once: the command modules import runlab's own
    modules at their top, and those that load polars (the reader, the report) or Optuna,
    Hydra, submitit, torch only when the command runs."""
    code = (
        "import sys\n"
        "from runlab.cli import main\n"
        "try:\n"
        f"    main([*{[command] if command else []!r}, '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=task_env(), capture_output=True, text=True
    )
    assert "usage: runlab" in proc.stdout, proc.stderr
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_logs_of_a_run_made_by_hand_says_it_has_no_job_output(tmp_path: Path) -> None:
    """A run written by a task at a terminal has no job output: one line, exit 1 (it was an
    internal TypeError: the exit status was passed as a second positional argument)."""
    from runlab.record.logger import RunLogger
    from runlab.record.rundir import allocate

    with RunLogger(allocate(tmp_path / "logs")[0], config={}) as logger:
        logger.log_metrics({"loss": 1.0})
    proc = runlab(tmp_path, "logs", "1")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("runlab logs: error: run 1 has no job output"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_user_errors_are_made_with_one_positional_argument() -> None:
    """``UserError(what, *, where=, todo=, code=)``: a second positional argument is a
    TypeError at the moment the user's error should be shown. Read from the source."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "runlab"
    bad = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "UserError"
                and len(node.args) > 1
            ):
                bad.append(f"{path.relative_to(src)}:{node.lineno}")
    assert not bad, f"UserError(...) with more than one positional argument at {bad}"


def _run_with_output(logs: Path, data: bytes) -> Path:
    from runlab.record.rundir import RunDir, allocate

    run = RunDir(allocate(logs)[0]).create()
    out = run.path / "job.out"
    out.write_bytes(data)
    run.update_info(status="COMPLETE", log_out=str(out))
    return out


def test_logs_memory_is_bounded_whatever_the_output_size(tmp_path: Path) -> None:
    """`runlab logs` of 60 MB of job output copies it a piece at a time: the command's
    peak memory stays far below the file's size (it read the whole file, then copied it
    twice more while escaping it)."""
    line = b"epoch 1 step 2 loss 0.123 \xc3\xa9t\xc3\xa9 \x1b[31mred\x1b[0m\r\n"
    _run_with_output(tmp_path / "logs", line * (60_000_000 // len(line)))
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run([sys.executable, '-m', 'runlab', 'logs', '1'],"
        " stdout=subprocess.DEVNULL)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        env=task_env(RUNLAB_LOGS=str(tmp_path / "logs")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    code, peak_kb = map(int, proc.stdout.split())
    assert code == 0, proc.stderr
    assert peak_kb < 100_000, f"runlab logs peaked at {peak_kb // 1000} MB for 60 MB of output"


def test_logs_keeps_characters_and_line_breaks_split_between_pieces(tmp_path: Path) -> None:
    """Where a piece of the file ends inside a UTF-8 character or between \\r and \\n,
    the character is shown whole and the line break once."""
    from runlab.cli.ops import _Stream

    head = b"x" * (_Stream.PIECE - 1)
    data = head + b"\xc3\xa9\n" + b"y" * (_Stream.PIECE - 3) + b"\r\nend\r"
    _run_with_output(tmp_path / "logs", data)
    proc = runlab(tmp_path, "logs", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data.decode().replace("\r\n", "\n").replace("\r", "\n")
