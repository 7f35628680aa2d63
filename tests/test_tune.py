"""`runlab tune`: an Optuna study whose trials are ordinary runs, on the synthetic quadratic
task (tests/tasks/quadratic.py, optimum test.acc=1 at x=1, y=-2), locally and on the real
local SLURM cluster: found optimum, pruning, a driver killed and resumed, reproduce."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import GIT, TASKS, make_project, needs_sge, needs_slurm, runlab_cli, task_env

slurm = needs_slurm
SPACE = ["x=interval(-3, 3)", "y=interval(-4, 2)"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, TASKS / "quadratic.py", TASKS / "quadratic.yaml")


def env(project: Path) -> dict[str, str]:
    return task_env(RUNLAB_LOGS=str(project / "logs"))


runlab = runlab_cli


def trial_runs(project: Path, study: str) -> dict[int, dict]:
    """The runs of ``study`` by run id: their info records."""
    out = {}
    for path in (project / "logs").iterdir():
        info_file = path / "metadata" / "info.json"
        if path.name.isdigit() and info_file.exists():
            info = json.loads(info_file.read_text())
            if info.get("study") == study:
                out[int(path.name)] = info
    return out


def study_cmd(launcher: str, study: str) -> list[str]:
    return [
        "tune",
        "tasks/quadratic.py",
        "--metric",
        "test.acc",
        "--direction",
        "maximize",
        "--trials",
        "16",
        "--parallel",
        "2",
        "--launcher",
        launcher,
        "--pruner",
        "median",
        "--seed",
        "0",
        "--study",
        study,
        "launcher.timeout_min=10",
        *SPACE,
    ]


@pytest.mark.parametrize(
    "launcher",
    ["local", pytest.param("slurm", marks=slurm), pytest.param("sge", marks=needs_sge)],
)
def test_study_killed_resumed_prunes_finds_optimum_and_reproduces(
    project: Path, launcher: str
) -> None:
    study = f"quad-{launcher}"
    cmd = study_cmd(launcher, study)
    # The driver is killed (SIGKILL: no chance to clean up) once 4 trials have ended.
    driver = subprocess.Popen(
        [sys.executable, "-m", "runlab", *cmd],
        cwd=project,
        env=env(project),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    final = {"COMPLETE", "PRUNED", "FAILED", "INTERRUPTED", "LOST"}
    while time.time() < deadline and driver.poll() is None:
        runs = trial_runs(project, study) if (project / "logs").is_dir() else {}
        if sum(i.get("status") in final for i in runs.values()) >= 4:
            break
        time.sleep(0.2)
    assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    if driver.stderr is not None:
        driver.stderr.close()
    before = trial_runs(project, study)
    assert 4 <= len(before) < 16

    # The same command resumes the study and completes it.
    out = runlab(project, *cmd)
    assert "resuming study" in out.stderr
    runs = trial_runs(project, study)
    trials = Counter(info["trial"] for info in runs.values())
    assert sorted(trials) == list(range(len(trials))), trials  # no trial lost...
    assert max(trials.values()) == 1, trials  # ...and none run twice
    statuses = Counter(info["status"] for info in runs.values())
    assert statuses["COMPLETE"] + statuses["PRUNED"] == 16, statuses
    assert set(statuses) <= {"COMPLETE", "PRUNED", "FAILED", "LOST", "INTERRUPTED"}
    assert statuses["PRUNED"] >= 1, statuses

    # The study agrees with the runs, and its best point is near the optimum.
    show = json.loads(runlab(project, "tune", "--show", "--study", study, "--json").stdout)
    assert show["states"].get("COMPLETE", 0) + show["states"].get("PRUNED", 0) == 16
    assert show["states"].get("PRUNED", 0) == statuses["PRUNED"]
    assert show["seed"] == 0 and show["sampler"] == "tpe"
    best = show["best"]
    assert best["value"] > 0.9, best
    assert abs(best["params"]["x"] - 1) < 1.5 and abs(best["params"]["y"] + 2) < 1.5, best
    rows = (project / "logs" / str(best["run_id"]) / "metrics" / "test.jsonl").read_text()
    assert json.loads(rows.splitlines()[-1])["acc"] == best["value"]
    text = runlab(project, "tune", "--show", "--study", study).stdout
    assert f"best: trial {best['trial']} (run {best['run_id']})" in text

    # PRUNED is known to status and to the reader; trials carry study and trial number.
    status = runlab(project, "status").stdout
    assert "PRUNED" in status and "COMPLETE" in status
    import runlab as rl

    reader = rl.Reader(project / "logs", write_index=False)
    pruned = reader.filter(f"info.status == 'PRUNED' & info.study == '{study}'").df
    assert len(pruned) == statuses["PRUNED"]
    assert set(pruned["info.trial"].to_list()) <= set(trials)
    pruned_id = pruned["run_id"].to_list()[0]
    assert (
        len((project / "logs" / str(pruned_id) / "metrics" / "test.jsonl").read_text().splitlines())
        < 6
    )

    # A trial's run reproduces bit for bit (and reports to no study).
    rep = runlab(project, "reproduce", "logs", str(best["run_id"]))
    assert "identical" in rep.stdout + rep.stderr
    after = json.loads(runlab(project, "tune", "--show", "--study", study, "--json").stdout)
    assert len(after["trials"]) == len(show["trials"])


def test_preset_grid_and_objective(project: Path) -> None:
    """A preset in configs/tune (the Optuna sweeper's keys), the grid sampler, --objective."""
    (project / "tasks" / "tune").mkdir()
    (project / "tasks" / "tune" / "corner.yaml").write_text(
        "metric: test.acc\ndirection: maximize\nn_trials: 4\nn_jobs: 2\nsampler:\n  seed: 7\n"
        "  _target_: optuna.samplers.GridSampler\noverrides: [steps=2, interval=0]\n"
        "params:\n  x: choice(1.0, -1.0)\n  y: range(-2, -1)\n"
    )
    subprocess.run([*GIT, "add", "-A"], cwd=project, check=True)
    subprocess.run([*GIT, "commit", "-qm", "preset"], cwd=project, check=True)
    runlab(
        project,
        "tune",
        "tasks/quadratic.py",
        "--preset",
        "corner",
        "--launcher",
        "local",
        "--study",
        "corner",
        "--objective",
        "best",
    )
    show = json.loads(runlab(project, "tune", "--show", "--study", "corner", "--json").stdout)
    assert show["states"] == {"COMPLETE": 4}
    assert sorted((t["params"]["x"], t["params"]["y"]) for t in show["trials"]) == [
        (-1.0, -2),
        (-1.0, -1),
        (1.0, -2),
        (1.0, -1),
    ]
    assert show["best"]["params"] == {"x": 1.0, "y": -2} and show["best"]["value"] == 1.0
    assert show["seed"] == 7 and show["sampler"] == "grid"
    runs = trial_runs(project, "corner")
    overrides = project / "logs" / str(show["best"]["run_id"]) / "metadata" / "overrides.yaml"
    assert "steps=2" in overrides.read_text() and "x=1.0" in overrides.read_text()
    assert {i["status"] for i in runs.values()} == {"COMPLETE"}

    # `runlab report --study`: the trials' page, with Optuna's figures beside it.
    rep = runlab(project, "report", "--study", "corner", "--metric", "test.acc", "--out", "rep")
    assert "4 run(s)" in rep.stdout
    for name in (
        "index.html",
        "corner-history.html",
        "corner-importance.html",
        "corner-history.png",
    ):
        assert (project / "rep" / name).stat().st_size > 1000, name
    page = (project / "rep" / "index.html").read_text()
    assert "Study corner" in page and 'id="runlab-study-0"' in page
    assert "optimisation history" in page and 'id="runlab-study-1"' in page

    # Resuming the study with another search space is refused, and nothing changes.
    journal = project / "logs" / ".studies" / "corner.journal"
    size = journal.stat().st_size
    bad = runlab(
        project,
        "tune",
        "tasks/quadratic.py",
        "--metric",
        "test.acc",
        "--study",
        "corner",
        "x=interval(0, 1)",
        "--launcher",
        "local",
        check=False,
    )
    assert bad.returncode == 2
    assert "was made with" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert journal.stat().st_size == size


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "test.acc", "epochs=3"], "nothing to search"),
        (["--metric", "acc", "x=interval(0,1)"], "is not FILE.KEY"),
        (["--metric", "test.acc", "x=interval(1,0)"], "low < high"),
        (["--metric", "test.acc", "nope=interval(0,1)"], "nope"),
        (["--metric", "test.acc", "--sampler", "grid", "x=interval(0,1)"], "grid sampler"),
        (["--metric", "test.acc", "x=tag(log, interval(0, 1))"], "log interval needs low > 0"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(project: Path, args, message) -> None:
    proc = runlab(project, "tune", "tasks/quadratic.py", "--launcher", "local", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, lines
    assert not (project / "logs").exists() or not any(
        p.name.isdigit() for p in (project / "logs").iterdir()
    )


def test_search_space_grammar() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from runlab.sweep import tune_space

    fixed, space = tune_space.parse(
        [
            "lr=tag(log, interval(1e-4, 1e-1))",
            "model=choice(mlp,cnn)",
            "batch_size=range(32,256,step=32)",
            "layers=int(interval(1, 4))",
            "opt=adam,sgd",
            "epochs=3",
        ]
    )
    assert fixed == ["epochs=3"]
    d = {k: tune_space.distribution(k, v) for k, v in space.items()}
    assert d["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["model"] == CategoricalDistribution(["mlp", "cnn"])
    assert d["batch_size"] == IntDistribution(32, 256, step=32)  # as the Optuna sweeper's
    assert d["layers"] == IntDistribution(1, 4)
    assert d["opt"] == CategoricalDistribution(["adam", "sgd"])
    assert tune_space.override("lr", 1e-05) == "lr=1e-05"
    assert tune_space.override("name", "a b") == "name='a b'"
    assert tune_space.override("flag", "true") == "flag='true'"


def test_sigterm_cancels_running_trials_and_rerun_replaces_them(project: Path) -> None:
    """Ctrl-C / SIGTERM: the running trials end INTERRUPTED and are failed in the study
    (not counted); the same command then runs new trials until 3 are counted."""
    cmd = ["tune", "tasks/quadratic.py", "--metric", "test.acc", "--trials", "3",
           "--parallel", "2", "--launcher", "local", "--study", "term", "steps=20",
           "interval=0.1", *SPACE]  # fmt: skip
    driver = subprocess.Popen(
        [sys.executable, "-m", "runlab", *cmd],
        cwd=project,
        env=env(project),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = trial_runs(project, "term") if (project / "logs").is_dir() else {}
        if len(runs) == 2 and all(i.get("status") == "RUNNING" for i in runs.values()):
            break
        time.sleep(0.2)
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=90)
    assert driver.returncode == 128 + signal.SIGTERM, err
    assert "rerun the same command to resume" in err
    first = trial_runs(project, "term")
    assert {i["status"] for i in first.values()} == {"INTERRUPTED"}, first
    show = json.loads(runlab(project, "tune", "--show", "--study", "term", "--json").stdout)
    assert show["states"] == {"FAIL": 2}, show["states"]

    runlab(project, *cmd)
    runs = trial_runs(project, "term")
    statuses = Counter(i["status"] for i in runs.values())
    assert statuses == {"INTERRUPTED": 2, "COMPLETE": 3}, statuses
    show = json.loads(runlab(project, "tune", "--show", "--study", "term", "--json").stdout)
    assert show["states"] == {"FAIL": 2, "COMPLETE": 3}


def test_a_study_resumes_after_its_logs_directory_moved(project: Path, tmp_path: Path) -> None:
    """The study's journal keeps its pinned code as absolute paths into the logs directory
    it was made in; after a move the same command, given the new place, resumes it with
    the snapshot that moved (on the old code: "study 'moving' runs the code snapshot
    <old logs>/.snapshots/..., which is gone: start a new --study")."""
    cmd = ["tune", "tasks/quadratic.py", "--metric", "test.acc", "--direction", "maximize",
           "--parallel", "1", "--launcher", "local", "--seed", "0", "--study", "moving",
           "interval=0", *SPACE]  # fmt: skip
    runlab(project, *cmd, "--trials", "2")
    new = tmp_path / "elsewhere" / "logs"
    new.parent.mkdir()
    os.rename(project / "logs", new)
    out = runlab(project, *cmd, "--trials", "4", "--logs", str(new))
    assert "resuming study" in out.stderr
    show = runlab(project, "tune", "--show", "--study", "moving", "--json", "--logs", str(new))
    states = json.loads(show.stdout)["states"]
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 4 and "FAIL" not in states
    infos = [json.loads((p / "metadata" / "info.json").read_text()) for p in new.glob("[0-9]*")]
    assert len(infos) == 4 and {i["status"] for i in infos} <= {"COMPLETE", "PRUNED"}, infos
    resumed = [i for i in infos if int(i["run_id"]) > 2]
    assert all(i["code_snapshot"].startswith(f"{new}/") for i in resumed), resumed
    assert not (project / "logs").exists()  # nothing was written to the old place


# --------------------------------------------------------- a driver killed at any write
#: Runs ``runlab ARGS`` and SIGKILLs itself just before its KILL_AT-th write to the study's
#: journal, each write's operation codes listed in OPS_FILE first: the state a driver
#: killed between any two of its journal writes leaves (the run folders it made between
#: them included).
KILLER = """\
import json, os, signal, sys
from optuna.storages.journal import JournalFileBackend

at, n, append = int(os.environ["KILL_AT"]), [0], JournalFileBackend.append_logs

def append_logs(self, logs):
    n[0] += 1
    with open(os.environ["OPS_FILE"], "a") as f:
        f.write(json.dumps([log["op_code"] for log in logs]) + "\\n")
    if n[0] == at:
        os.kill(os.getpid(), signal.SIGKILL)
    append(self, logs)

JournalFileBackend.append_logs = append_logs
from runlab.cli import main
sys.argv = ["runlab", *sys.argv[1:]]
sys.exit(main())
"""

#: optuna's journal operation code of one parameter's value (its JournalOperation enum)
OPS_SET_TRIAL_PARAM = 5

KILL_CMD = ["tune", "tasks/quadratic.py", "--metric", "test.acc", "--direction", "maximize",
            "--trials", "2", "--parallel", "2", "--launcher", "local", "--seed", "0",
            "--study", "k", "interval=0", *SPACE]  # fmt: skip


def killed_driver(project: Path, at: int, ops: Path) -> subprocess.CompletedProcess:
    """``runlab KILL_CMD`` killed just before its ``at``-th journal write (never, for 0)."""
    killer = project.parent / "killer.py"
    killer.write_text(KILLER)
    return subprocess.run(
        [sys.executable, str(killer), *KILL_CMD],
        cwd=project,
        env={**env(project), "KILL_AT": str(at), "OPS_FILE": str(ops)},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def journal_writes(tmp_path: Path) -> list[list[int]]:
    """The operation codes of each journal write of an unkilled ``KILL_CMD`` driver."""
    project = make_project(tmp_path / "dry", TASKS / "quadratic.py", TASKS / "quadratic.yaml")
    ops = tmp_path / "dry" / "ops"
    done = killed_driver(project, 0, ops)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in ops.read_text().splitlines()]


def assert_killed_at_resumes(tmp_path: Path, at: int) -> None:
    """Kill the driver before its ``at``-th journal write; the same command then completes
    the study: every counted trial's run COMPLETE with the trial's own parameters, every
    run of the study ended, no run told twice."""
    project = make_project(tmp_path / str(at), TASKS / "quadratic.py", TASKS / "quadratic.yaml")
    killed = killed_driver(project, at, tmp_path / str(at) / "ops")
    assert killed.returncode == -signal.SIGKILL, (at, killed.stderr)
    out = runlab(project, *KILL_CMD)
    assert "internal error" not in out.stderr, (at, out.stderr)
    show = json.loads(runlab(project, "tune", "--show", "--study", "k", "--json").stdout)
    counted = [t for t in show["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(counted) >= 2, (at, show["states"], out.stderr)
    runs = trial_runs(project, "k")
    assert {i["status"] for i in runs.values()} <= {"COMPLETE", "PRUNED", "INTERRUPTED",
                                                    "FAILED", "LOST"}, (at, runs)  # fmt: skip
    used = [t["run_id"] for t in counted]
    assert len(used) == len(set(used)), (at, show["trials"])
    for t in counted:
        config = yaml.safe_load(
            (project / "logs" / str(t["run_id"]) / "metadata" / "config.yaml").read_text()
        )
        assert runs[t["run_id"]]["status"] == t["state"], (at, t, runs[t["run_id"]])
        assert runs[t["run_id"]]["trial"] == t["trial"], (at, t)
        assert {k: config[k] for k in t["params"]} == t["params"], (at, t, config)


def test_a_driver_killed_while_it_asks_a_trial_resumes(tmp_path: Path) -> None:
    """The driver killed between the journal writes of one ``ask`` (the trial made, some
    of its parameters not yet): the rerun fails that half-asked trial (not counted) and
    completes the study. On the old code the rerun stopped with ``internal error:
    KeyError: 'y'`` (a CI run's SIGKILL landed there)."""
    writes = journal_writes(tmp_path)
    params = [i + 1 for i, ops in enumerate(writes) if ops == [OPS_SET_TRIAL_PARAM]]
    assert len(params) == 4, writes  # x and y of two trials
    for at in (params[0], params[1], params[3]):
        assert_killed_at_resumes(tmp_path, at)


@pytest.mark.slow_sweeps
def test_a_driver_killed_before_any_journal_write_resumes(tmp_path: Path) -> None:
    """Every kill point: before each of the driver's journal writes in turn."""
    for at in range(1, len(journal_writes(tmp_path)) + 1):
        assert_killed_at_resumes(tmp_path, at)
