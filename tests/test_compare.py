"""`runlab compare RUN... | --where QUERY` and `runlab ls --metrics` (issue 23, item 3):
what a user sees, over runs made by a real task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_task, runlab_cli

TASK = """
import runlab


@runlab.launch(config_path=".", config_name="cmp")
def main(ctx):
    cfg = ctx.config
    for step in range(4):
        loss = 1.0 + cfg.lr * abs(step - 2)  # best (min) 1.0 at step 2, final 1 + lr
        acc = [0.5, 0.625, 0.75, 0.5][step]  # best (max) 0.75, final 0.5
        ctx.logger.log_metrics({"loss": loss, "epoch": step}, name="train", step=step)
        ctx.logger.log_metrics({"acc": acc}, name="test", step=step)


if __name__ == "__main__":
    main()
"""
CONFIG = "lr: 0.5\nseed: 0\ntag: plain\nrunlab:\n  logs: null\n  run_id: null\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs: lr 0.5, 0.25 and 0.5 again with a tag written as rich markup."""
    root = tmp_path_factory.mktemp("compare")
    (root / "cmp.py").write_text(TASK)
    (root / "cmp.yaml").write_text(CONFIG)
    logs = str(root / "logs")
    run_task(root / "cmp.py", "lr=0.5", RUNLAB_LOGS=logs)
    run_task(root / "cmp.py", "lr=0.25", RUNLAB_LOGS=logs)
    run_task(root / "cmp.py", "lr=0.5", "tag='[red]x[/red]'", RUNLAB_LOGS=logs)
    return root


def lines(text: str) -> dict[str, list[str]]:
    """The table's rows by their label (the first cell), split on runs of spaces."""
    import re

    out = {}
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        out[cells[0]] = cells[1:]
    return out


def test_compare_shows_runs_side_by_side(project: Path) -> None:
    proc = runlab_cli(project, "compare", "1", "2", "3", COLUMNS="200")
    assert proc.stderr == ""
    rows = lines(proc.stdout)
    assert rows["run 1"] == ["run 2", "run 3"]  # the header: one column per run
    assert rows["status"] == ["COMPLETE"] * 3
    assert rows["lr"] == ["0.5", "0.25", "0.5"] and rows["tag"] == [
        "plain",
        "plain",
        "[red]x[/red]",
    ]
    assert "seed" not in rows  # the same in every run: left out
    assert rows["train.loss final"] == ["1.5", "1.25", "1.5"]
    assert rows["train.loss best (min)"] == ["1", "1", "1"]  # a loss: its smallest
    assert rows["test.acc final"] == ["0.5"] * 3
    assert rows["test.acc best (max)"] == ["0.75"] * 3  # not a loss: its largest
    assert "train.epoch final" not in rows  # a counter, not a result
    assert len(rows["duration"]) == 3 and all(d.endswith(" s") for d in rows["duration"])
    assert proc.stdout.splitlines()[-1].startswith("3 run(s) in ")


def test_compare_json_where_and_best(project: Path) -> None:
    data = json.loads(
        runlab_cli(project, "compare", "--where", "config.lr == 0.5", "--json").stdout
    )
    assert data["run_ids"] == [1, 3] and data["keys"] == ["tag"]
    assert data["best"] == {"test.acc": "max", "train.loss": "min"}
    first = data["runs"][0]
    assert first["status"] == "COMPLETE" and first["config"] == {"tag": "plain"}
    assert first["metrics"]["train.loss"] == {"final": 1.5, "best": 1.0}
    assert first["metrics"]["test.acc"] == {"final": 0.5, "best": 0.75}
    assert isinstance(first["duration_s"], float)
    forced = json.loads(
        runlab_cli(
            project, "compare", "2", "1", "-m", "train.loss", "--best", "max", "--json"
        ).stdout
    )
    assert forced["run_ids"] == [2, 1]  # in the order given
    assert forced["best"] == {"train.loss": "max"}
    assert forced["runs"][0]["metrics"]["train.loss"] == {"final": 1.25, "best": 1.5}
    every = json.loads(runlab_cli(project, "compare", "1", "2", "--all-keys", "--json").stdout)
    assert every["keys"] == ["lr", "seed", "tag"]


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["1", "9"], 1, "runlab compare: error: no run 9 in "),
        (["1", "x"], 2, "runlab compare: error: 'x' is not a run id"),
        ([], 2, "runlab compare: error: name the runs to compare"),
        (
            ["1", "2", "-m", "train.los"],
            2,
            "runlab compare: error: none of the runs logged metric 'train.los'; "
            "did you mean 'train.loss'?",
        ),
        (["--where", "config.lx > 1"], 2, "did you mean 'config.lr'?"),
    ],
)
def test_compare_mistakes_are_one_line(
    project: Path, args: list[str], code: int, expected: str
) -> None:
    proc = runlab_cli(project, "compare", *args, check=False)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith(expected) or expected in proc.stderr, proc.stderr


def test_ls_metrics_adds_final_values(project: Path) -> None:
    proc = runlab_cli(project, "ls", "--metrics", "train.loss,test.acc", COLUMNS="200")
    rows = lines(proc.stdout)
    header = rows["run_id"]
    assert header[-2:] == ["train.loss.last", "test.acc.last"]
    assert rows["1"][-2:] == ["1.5", "0.5"] and rows["2"][-2:] == ["1.25", "0.5"]
    data = json.loads(runlab_cli(project, "ls", "-m", "train.loss", "--json").stdout)
    assert [r["train.loss.last"] for r in data] == [1.5, 1.25, 1.5]
    bad = runlab_cli(project, "ls", "--metrics", "train.lss", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "runlab ls: error: no run logged metric 'train.lss'; did you mean 'train.loss'?"
    )


def test_a_diverged_run_shows_nan_not_an_empty_cell(tmp_path: Path) -> None:
    import math

    import runlab
    from runlab.record.rundir import allocate

    logs = tmp_path / "logs"
    for last in (0.5, math.nan):
        with runlab.RunLogger(allocate(logs, 1)[0], config={"lr": last}) as log:
            for loss in (1.0, last):
                log.log_metrics({"loss": loss}, name="train")
    table = lines(runlab_cli(tmp_path, "compare", "1", "2", "--logs", str(logs)).stdout)
    assert table["train.loss final"] == ["0.5", "nan"]
    data = json.loads(
        runlab_cli(tmp_path, "compare", "1", "2", "--logs", str(logs), "--json").stdout
    )
    assert data["runs"][1]["metrics"]["train.loss"]["final"] is None  # JSON has no NaN
