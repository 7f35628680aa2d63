"""Everyday mistakes of a new user (issue 23, item 5): each ends in one clear line.

Each case runs the real process a user would start: the example task, `runlab logs -f`
after a retry, Ctrl-C on `runlab submit --wait`, a misspelt metric in `runlab report`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, run_task


# ------------------------------------------------ a value of the wrong type (a structured config)
@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("lr=abc", "lr", "float"),
        ("epochs=1.5", "epochs", "int"),
        ("deterministic=maybe", "deterministic", "bool"),
        ("+lr_decay=0.1", "lr_decay", "not declared in TrainConfig"),
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
