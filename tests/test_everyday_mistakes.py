"""Everyday mistakes of a new user (issue 23, item 5): each ends in one clear line.

Each case runs the real process a user would start: the example task, `runlab logs -f`
after a retry, Ctrl-C on `runlab submit --wait`, a misspelt metric in `runlab report`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TASKS, make_project, run_task, runlab_cli, task_env


# ------------------------------------------------ a value of the wrong type (a structured config)
@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("lr=abc", "lr", "float"),
        ("epochs=1.5", "epochs", "int"),
        ("deterministic=maybe", "deterministic", "bool"),
    ],
)
def test_example_task_wrong_type_is_one_line(
    logs: Path, override: str, key: str, expected: str
) -> None:
    proc = run_task(ROOT / "tasks" / "train.py", override, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("runlab: error: config key "), lines[0]
    assert repr(key) in lines[0] and expected in lines[0], lines[0]
    assert not logs.exists() or not any(logs.iterdir()), "a run directory was made"


USER_TASK = """
from dataclasses import dataclass
from typing import Any

import runlab


@dataclass
class Config:
    width: int
    name: str
    runlab: Any


@runlab.launch(config_path=".", config_name="conf", schema=Config)
def main(ctx):
    print(type(ctx.config.width).__name__, ctx.config.width, ctx.run_id)


if __name__ == "__main__":
    main()
"""


def test_a_users_own_schema(logs: Path, tmp_path: Path) -> None:
    """The pattern docs/guide/tasks.md shows: a dataclass given as ``schema=``."""
    (tmp_path / "task.py").write_text(USER_TASK)
    (tmp_path / "conf.yaml").write_text(
        "width: 3\nname: a\nrunlab:\n  logs: null\n  run_id: null\n"
    )
    bad = run_task(tmp_path / "task.py", "width=wide", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "runlab: error: config key 'width': 'wide' is not a valid int "
        "(Config declares width as int; fix the override or the config file)"
    ], bad.stderr
    assert not logs.exists()
    good = run_task(tmp_path / "task.py", "width=4")
    assert good.stdout.split() == ["int", "4", "1"], good.stdout


# ------------------------------------------------------------------ submitted sweeps
@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed git project holding tests/tasks/slow.py and its config."""
    return make_project(tmp_path, TASKS / "slow.py", TASKS / "slow.yaml")


def info(project: Path, run_id: int) -> dict:
    return json.loads((project / "logs" / str(run_id) / "metadata" / "info.json").read_text())


def wait_until(check, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def steps_logged(project: Path, run_id: int) -> int:
    path = project / "logs" / str(run_id) / "metrics" / "train.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_logs_follow_after_a_retry_shows_the_retried_job(project: Path) -> None:
    runlab_cli(
        project, "submit", "tasks/slow.py", "steps=60", "interval=0.05", "--launcher", "local"
    )
    wait_until(lambda: steps_logged(project, 1) >= 12, what="run 1 past its first checkpoint")
    runlab_cli(project, "cancel", "1")
    wait_until(lambda: info(project, 1)["status"] == "INTERRUPTED", what="the cancel")
    assert "start 0" in runlab_cli(project, "logs", "1").stdout  # the first attempt's
    runlab_cli(project, "retry")
    follow = runlab_cli(project, "logs", "1", "-f", timeout=120)
    assert info(project, 1)["status"] == "COMPLETE"
    # The retried job's output, resumed at its checkpoint, and none of the cancelled one's.
    first = follow.stdout.splitlines()[0]
    assert first.startswith("start ") and int(first.split()[1]) >= 10, follow.stdout
    assert "start 0" not in follow.stdout and "step 59" in follow.stdout
    header = follow.stderr.splitlines()[0]
    assert header.startswith("[runlab] run 1, attempt 2 (local workers "), header
    assert header.endswith("1.2.out"), header
    again = runlab_cli(project, "logs", "1")  # without -f: the same attempt, named
    assert again.stdout == follow.stdout
    assert again.stderr.startswith("[runlab] run 1, attempt 2 ")


def test_ctrl_c_on_submit_wait_says_the_runs_go_on(project: Path) -> None:
    submit = ["submit", "tasks/slow.py", "steps=400", "interval=0.1,0.11", "--launcher", "local"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlab", *submit, "--wait"],
        cwd=project,
        env=task_env(RUNLAB_LOGS=str(project / "logs")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: (
                (project / "logs" / "2").is_dir()
                and all(steps_logged(project, r) >= 2 for r in (1, 2))
            ),
            what="both runs running",
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err, err
        sweep_id = info(project, 1)["sweep_id"]
        assert f"2 of the 2 run(s) of sweep {sweep_id} go on" in err, err
        assert f"cancel them: runlab cancel {sweep_id}" in err, err
        # The runs go on: still running, still logging.
        before = steps_logged(project, 1)
        wait_until(lambda: steps_logged(project, 1) > before + 3, what="run 1 going on")
        assert {info(project, r)["status"] for r in (1, 2)} == {"RUNNING"}
    finally:
        if proc.poll() is None:
            proc.kill()
        runlab_cli(project, "cancel", check=False)


# ------------------------------------------------------------- a misspelt metric in report
def test_report_suggests_the_metric_meant(tmp_path: Path) -> None:
    for steps in ("steps=3", "steps=4"):
        run_task(TASKS / "slow.py", steps, "interval=0", RUNLAB_LOGS=str(tmp_path / "logs"))
    out = str(tmp_path / "report")
    bad = runlab_cli(
        tmp_path, "report", "--all", "--metric", "train.valeu", "--out", out, check=False
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    (line,) = bad.stderr.strip().splitlines()
    assert "none of the 2 selected runs logged 'train.valeu'; did you mean 'train.value'?" in line
    assert not Path(out).exists()
    # One of two misspelt: the report is made, and the note says what was meant.
    half = runlab_cli(
        tmp_path, "report", "--all", "--metric", "train.value,trian.wall", "--out", out
    )
    assert "never logged trian.wall; did you mean 'train.wall'?" in half.stderr, half.stderr
    ranked = runlab_cli(
        tmp_path,
        "report",
        "--all",
        "--metric",
        "train.value",
        "--rank",
        "train.valu:max",
        "--out",
        out,
    )
    assert "never logged train.valu; did you mean 'train.value'?" in ranked.stderr, ranked.stderr


# ------------------------------------------------ a schema's other cases (found by an audit)
WIDE_TASK = """
import enum
from dataclasses import dataclass, field
from typing import Any

import runlab


class Colour(enum.Enum):
    red = 1
    blue = 2


@dataclass
class Config:
    width: int
    name: str
    runlab: Any
    colour: Colour = Colour.red
    seed: int = 7  # a default the YAML does not hold
    extra: list[int] = field(default_factory=list)


@runlab.launch(config_path=".", config_name="conf", schema=Config)
def main(ctx):
    print(type(ctx.config.width).__name__, ctx.config.width, ctx.config.colour.name, ctx.run_id)


if __name__ == "__main__":
    main()
"""


@pytest.fixture
def typed_project(tmp_path: Path) -> Path:
    task = tmp_path / "src" / "typed.py"
    task.parent.mkdir()
    task.write_text(WIDE_TASK)
    conf = tmp_path / "src" / "conf.yaml"
    conf.write_text("width: 3\nname: a\nrunlab:\n  logs: null\n  run_id: null\n")
    project = make_project(tmp_path / "p", task, conf)
    (project / "tasks" / "conf.yaml").write_text(conf.read_text())
    return project


def test_a_submitted_job_of_a_typed_task_runs_as_the_task_run_directly(
    typed_project: Path,
) -> None:
    # submit composes the config without the schema ("1", no seed); the job types it as
    # a direct run would, and the run completes with the typed config in its record.
    runlab_cli(typed_project, "submit", "tasks/typed.py", "width='1'", "--launcher", "local",
               "--wait")  # fmt: skip
    record = json.loads((typed_project / "logs" / "1" / "metadata" / "config.json").read_text())
    assert info(typed_project, 1)["status"] == "COMPLETE"
    assert record["width"] == 1 and record["seed"] == 7 and record["colour"] == "red"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["width=${name}"], "runlab: error: config key 'width': 'a' is not a valid int"),
        (
            ["width=${oc.env:NO_SUCH_VARIABLE_HERE}"],
            "runlab: error: config key 'width' does not resolve",
        ),
        (["~width"], "runlab: error: config key 'width' has no value"),
        (["name='a\u2028b'", "width='x\u2028y'"], "runlab: error: config key 'width': "),
        (["name='\x1b[31mred'", "width='\x1b[31m'"], "runlab: error: config key 'width': "),
    ],
)
def test_a_typed_config_error_is_one_printable_line(
    typed_project: Path, logs: Path, args: list[str], expected: str
) -> None:
    proc = run_task(typed_project / "tasks" / "typed.py", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].isprintable(), repr(proc.stderr)
    assert lines[0].startswith(expected), lines[0]
    assert not logs.exists() or not any(logs.iterdir()), "a run directory was made"


def test_enums_and_a_runlab_section_left_unset(typed_project: Path, logs: Path) -> None:
    ok = run_task(typed_project / "tasks" / "typed.py", "+colour=blue")
    assert ok.stdout.split() == ["int", "3", "blue", "1"], ok.stdout
    assert json.loads((logs / "1" / "metadata" / "config.json").read_text())["colour"] == "blue"
    bare = run_task(typed_project / "tasks" / "typed.py", "~runlab")  # `runlab: Any`, unset
    assert bare.stdout.split()[-1] == "2", bare.stdout


def test_a_schema_that_is_not_a_dataclass_is_said_when_the_task_is_defined() -> None:
    import runlab

    with pytest.raises(TypeError, match="takes a dataclass"):
        runlab.launch(schema={"a": int})  # type: ignore[arg-type]


# ------------------------------------------------ Ctrl-C while submit makes runs and queues jobs
# In this process, the local launcher's workers are children of the test (the command
# would leave them running as it exits): their Popen objects go with the test, unwaited.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("when", ["making the runs", "queueing the jobs"])
def test_ctrl_c_during_submit_leaves_every_run_accounted_for(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], when: str
) -> None:
    # Stopped in the middle, submit would leave runs QUEUED in no sweep record (status,
    # cancel and retry could not see them) or a job queued whose id nobody kept.
    import os

    from runlab.cli import main
    from runlab.sweep import submission

    monkeypatch.chdir(project)
    monkeypatch.setenv("RUNLAB_LOGS", str(project / "logs"))
    name = "create_runs" if when == "making the runs" else "launch"
    original = getattr(submission, name)

    def interrupted(*args: object) -> object:
        out = original(*args)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as the terminal sends it
        return out

    monkeypatch.setattr(submission, name, interrupted)
    args = ["submit", "tasks/slow.py", "steps=400", "interval=0.1,0.11", "--launcher", "local"]
    try:
        assert main(args) == 130
        err = capsys.readouterr().err
        sweep_id = info(project, 1)["sweep_id"]
        assert (project / "logs" / ".sweeps" / f"{sweep_id}.json").is_file()  # on record
        if when == "making the runs":
            assert "no job was queued" in err, err
            assert {info(project, r)["status"] for r in (1, 2)} == {"INTERRUPTED"}
            retried = runlab_cli(project, "retry", "--dry-run").stdout
            assert "2 run(s)" in retried or "1, 2" in retried or "1..2" in retried, retried
        else:
            assert f"2 of the 2 run(s) of sweep {sweep_id} go on" in err, err
            assert f"cancel them: runlab cancel {sweep_id}" in err, err
            wait_until(lambda: steps_logged(project, 1) >= 2, what="run 1 running")
    finally:
        runlab_cli(project, "cancel", check=False)
