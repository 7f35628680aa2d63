"""Where runs are recorded: one logs directory (runlab.logs), the same rule for a task and
every command (``--logs DIR``, else ``$RUNLAB_LOGS``, else the project root's ``logs/``)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TASKS, make_project, task_env
from runlab.cli import COMMANDS, main
from runlab.logs import Logs, default_path, project_root
from runlab.record.files import now_iso
from runlab.record.rundir import RunDir, allocate

SRC = ROOT / "src" / "runlab"

TINY = """\
import runlab


@runlab.launch(config_path=".", config_name="tiny")
def main(ctx: runlab.Context) -> None:
    ctx.logger.log_metrics({"loss": float(ctx.config.x)}, name="train", step=0)


if __name__ == "__main__":
    main()
"""


def tiny_task(folder: Path) -> Path:
    """A task whose ``runlab:`` section is the template's (configs/train.yaml)."""
    template = yaml.safe_load((ROOT / "configs" / "train.yaml").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(yaml.safe_dump({"x": 1.0, "runlab": template["runlab"]}))
    (folder / "tiny.py").write_text(TINY)
    return folder / "tiny.py"


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``runlab ARGS`` in ``cwd``, without ``RUNLAB_LOGS`` unless given."""
    environ = task_env(**env)
    if "RUNLAB_LOGS" not in env:
        environ.pop("RUNLAB_LOGS", None)
    return subprocess.run(
        [sys.executable, "-m", "runlab", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNLAB_LOGS", raising=False)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    if project_root(tmp_path) is not None:
        pytest.skip(f"{tmp_path} is inside a project")
    return tmp_path


# ----------------------------------------------------------------- the rule
@pytest.mark.parametrize("marker", ["pyproject.toml", "pixi.toml", ".git"])
def test_the_default_is_the_project_roots_logs_from_a_subdirectory(
    outside: Path, no_env: None, marker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = outside / "proj"
    deep = root / "tasks" / "sub"
    deep.mkdir(parents=True)
    if marker == ".git":
        (root / ".git").mkdir()
    else:
        (root / marker).write_text("")
    assert default_path(deep) == root / "logs"
    # and what a user sees: `runlab doctor` from the subdirectory checks the project's logs/
    proc = cli(deep, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert str(root / "logs") in checks["logs"]["detail"], checks["logs"]
    assert not (deep / "logs").exists()


def runs_in(logs: Path, count: int) -> Path:
    """``count`` finished runs in ``logs``."""
    for _ in range(count):
        RunDir(allocate(logs)[0]).create().update_info(status="COMPLETE", start_time=now_iso())
    return logs


def listed(proc: subprocess.CompletedProcess) -> list[int]:
    assert proc.returncode == 0, proc.stderr
    return [r["run_id"] for r in json.loads(proc.stdout)]


def test_runlab_logs_wins_over_the_project_and_logs_wins_over_both(
    outside: Path, no_env: None
) -> None:
    (outside / "pyproject.toml").write_text("")
    sub = outside / "tasks"
    sub.mkdir()
    runs_in(outside / "logs", 1)
    env_logs, option_logs = runs_in(outside / "env-logs", 2), runs_in(outside / "opt-logs", 3)
    assert listed(cli(sub, "ls", "--json")) == [1]
    assert listed(cli(sub, "ls", "--json", RUNLAB_LOGS=str(env_logs))) == [1, 2]
    proc = cli(sub, "ls", "--json", "--logs", str(option_logs), RUNLAB_LOGS=str(env_logs))
    assert listed(proc) == [1, 2, 3]
    proc = cli(sub, "doctor", "--json", "--logs", str(option_logs), RUNLAB_LOGS=str(env_logs))
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert str(option_logs) in checks["logs"]["detail"]


def test_outside_any_project_it_is_dot_logs(outside: Path, no_env: None) -> None:
    assert default_path(outside) == outside / "logs"
    proc = cli(outside, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert str(outside / "logs") in checks["logs"]["detail"]


# ------------------------------------------------------ a task from a subdirectory
def test_a_task_run_from_a_subdirectory_records_into_the_projects_logs(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "pixi.toml").parent.mkdir(parents=True)
    (root / "pixi.toml").write_text("")
    script = tiny_task(root / "tasks")
    env = task_env()
    env.pop("RUNLAB_LOGS", None)
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, script.name],
            cwd=script.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
    assert sorted(Logs(root / "logs").run_ids()) == [1, 2]
    assert not (root / "tasks" / "logs").exists()
    # and the commands from the subdirectory find them
    proc = cli(root / "tasks", "ls", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["run_id"] for r in json.loads(proc.stdout)] == [1, 2]
    proc = cli(root / "tasks", "report", "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report" / "index.html").is_file()


def test_submit_from_a_subdirectory_uses_the_projects_logs(tmp_path: Path) -> None:
    root = make_project(tmp_path, TASKS / "quadratic.py", TASKS / "quadratic.yaml")
    proc = cli(
        root / "tasks",
        "submit",
        "quadratic.py",
        "--launcher",
        "local",
        "--dry-run",
        "runlab.logs=null",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"logs: {root / 'logs'}" in proc.stdout.replace("\n", "")


# ----------------------------------------------------------------- --logs DIR
def test_ls_takes_logs_option(tmp_path: Path, no_env: None) -> None:
    root = tmp_path / "proj"
    script = tiny_task(root / "tasks")
    other = tmp_path / "other"
    subprocess.run(
        [sys.executable, str(script), f"runlab.logs={other}"],
        env=task_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    proc = cli(tmp_path, "ls", "--logs", str(other), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["run_id"] for r in json.loads(proc.stdout)] == [1]
    # the old positional is still read, and both at once must agree
    proc = cli(tmp_path, "ls", str(other), "--json")
    assert [r["run_id"] for r in json.loads(proc.stdout)] == [1]
    proc = cli(tmp_path, "ls", str(other), "--logs", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("runlab ls: error: two logs directories given")
    assert len(proc.stderr.splitlines()) == 1


# What each command needs besides --logs to get as far as reading its logs directory.
READERS = {
    "ls": [],
    "show": ["1"],
    "status": [],
    "cancel": [],
    "retry": [],
    "logs": ["1"],
    "report": [],
    "reproduce": ["1"],
    "diff": ["1", "2"],
    "compare": ["1", "2"],
    "tune": ["--show"],
    "verify": [],
    "export": ["tensorboard"],
    "serve": [],
}
WRITERS = {"submit", "doctor"}


def test_every_command_is_listed_here() -> None:
    assert set(READERS) | WRITERS == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_logs_dir(
    command: str, tmp_path: Path, no_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--logs DIR" in capsys.readouterr().out
    if command in WRITERS:
        return
    missing = tmp_path / "no-such-logs"
    code = main([command, *READERS[command], "--logs", str(missing)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"runlab {command}: error: no logs directory: {missing} (check the path)\n"


def test_report_keeps_its_positional_and_refuses_two_different(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    code = main(["report", str(a), "--logs", str(b)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("runlab report: error: two logs directories given")
    code = main(["report", str(b)])
    assert f"no logs directory: {b}" in capsys.readouterr().err


# ---------------------------------------------------------- named in one module
HIDDEN = {".sweeps", ".studies", ".snapshots", ".runlab-index"}


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Hidden folder names, and ``"logs"`` used as a default path (``x or "logs"``,
    ``Path("logs")``, ``... / "logs"`` at the top of a path), as string literals."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in HIDDEN:
                found.append((node.lineno, node.value))
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            found += [(v.lineno, "logs") for v in node.values if _is_logs(v)]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Path":
            found += [(a.lineno, "logs") for a in node.args if _is_logs(a)]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get":
            default = node.args[1:] if len(node.args) == 2 else []  # mapping.get(key, default)
            found += [(a.lineno, "logs") for a in default if _is_logs(a)]
    return found


def _is_logs(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in ("logs", "./logs")


def test_the_default_and_the_hidden_folders_are_named_only_in_runlab_logs() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "logs.py":
            continue
        for line, name in _literals(ast.parse(path.read_text())):
            offenders.append(f"{path.relative_to(SRC)}:{line}: {name!r}")
    assert offenders == []
    assert {name for _, name in _literals(ast.parse((SRC / "logs.py").read_text()))} >= HIDDEN
