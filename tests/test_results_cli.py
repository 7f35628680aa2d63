"""`runlab ls`, `runlab show` and `runlab status` on a small logs directory."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runlab.cli import main
from runlab.record.files import now_iso, write_atomic, write_yaml
from runlab.record.logger import RunLogger
from runlab.record.rundir import RunDir, allocate


def make_run(logs: Path, config: dict[str, Any], losses: list[float], **info: Any) -> RunDir:
    run = RunDir(allocate(logs)[0]).create()
    write_yaml(run.config_file, config)
    write_yaml(run.metadata / "overrides.yaml", [f"{k}={v}" for k, v in config.items()])
    write_yaml(run.env_file, {"git": {"commit": "abc"}, "packages": {"numpy": "2.0"}})
    fields = {
        "status": "COMPLETE",
        "start_time": now_iso(),
        "heartbeat": now_iso(),
        "duration_s": 1.5,
    }
    fields.update(info)
    # The rows first, then how the run ended: rows logged into an ended run would be a
    # new attempt of it (RunLogger by hand).
    with RunLogger(run) as logger:
        for value in losses:
            logger.log_metrics({"loss": value}, name="train")
    run.update_info(**fields)
    return run


@pytest.fixture
def logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    logs = tmp_path / "logs"
    for lr in (0.1, 0.01):
        for seed in (0, 1):
            make_run(logs, {"lr": lr, "seed": seed, "model": "mlp"}, [1.0, lr * 10 + seed])
    failed = make_run(
        logs,
        {"lr": 1.0, "seed": 0, "model": "mlp"},
        [5.0],
        status="FAILED",
        error={"type": "ValueError", "message": "loss is nan"},
    )
    write_atomic(
        failed.metadata / "traceback.txt",
        b'Traceback (most recent call last):\n  File "train.py", line 3, in main\n'
        b"    raise ValueError('loss is nan')\nValueError: loss is nan\n",
    )
    old = (datetime.now().astimezone() - timedelta(hours=1)).isoformat()
    make_run(
        logs,
        {"lr": 1.0, "seed": 1, "model": "mlp"},
        [4.0],
        status="RUNNING",
        heartbeat=old,
        host="node-7",  # another host: its stopped heartbeat makes it LOST
        end_time=None,
    )
    monkeypatch.setenv("RUNLAB_LOGS", str(logs))
    monkeypatch.setenv("COLUMNS", "200")
    return logs


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ls_table_defaults_to_runlab_logs(logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ls")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["run_id", "status"]
    assert "lr" in lines[0] and "seed" in lines[0]  # the config keys that vary
    assert "model" not in lines[0].split()  # ... and not those that do not
    assert [line.split()[0] for line in lines[1:-1]] == ["1", "2", "3", "4", "5", "6"]
    assert "FAILED" in out and "LOST" in out
    assert "6 run(s)" in lines[-1]


def test_ls_where_columns_sort_json_csv(logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "ls",
        str(logs),
        "--where",
        "info.status == 'COMPLETE' & config.lr < 0.5",
        "--columns",
        "run_id,config.*,train.loss.last",
        "--sort",
        "train.loss.last:desc",
        "--json",
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["run_id"] for r in rows] == [2, 4, 1, 3]
    assert rows[0] == {
        "run_id": 2,
        "config.lr": 0.1,
        "config.seed": 1,
        "config.model": "mlp",
        "train.loss.last": 2.0,
    }
    code, out, _ = run(
        capsys, "ls", "--csv", "-c", "run_id,info.status", "--sort=-run_id", "-n", "2"
    )
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["run_id", "info.status"],
        ["6", "LOST"],
        ["5", "FAILED"],
    ]
    code, out, _ = run(capsys, "ls", "-c", "train.*.max", "--json")
    assert code == 0 and json.loads(out)[0] == {"train.step.max": 1, "train.loss.max": 1.0}


def test_ls_errors(logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "ls", "--logs", str(tmp_path / "missing"))
    assert code == 2 and "runlab ls: error: no logs directory: " in err
    code, _, err = run(capsys, "ls", "--where", "config.lr <= 0.1 & config.sed == 1")
    assert code == 2
    assert "unknown key 'config.sed'; did you mean 'config.seed'?" in err
    caret = err.splitlines()[-1]
    assert caret.strip() == "^" * len("config.sed")
    assert caret.index("^") == 2 + len("config.lr <= 0.1 & ")
    code, _, err = run(capsys, "ls", "--where", "config.lr <")
    assert code == 2 and "expected a condition" in err
    code, _, err = run(capsys, "ls", "-c", "config.lrr")
    assert code == 2 and "unknown column 'config.lrr'" in err and "config.lr" in err


def test_ls_injection_executes_nothing(
    logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "pwned"
    code, _, err = run(capsys, "ls", "--where", f"__import__('os').system('touch {target}')")
    assert code == 2 and "calls are not part of the query language" in err
    assert not target.exists()


def test_show(logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "--logs", str(logs), "5")
    assert code == 0
    assert "run 5" in out and "FAILED" in out
    assert "ValueError: loss is nan" in out
    assert "lr: 1.0" in out and "lr=1.0" in out  # config and overrides
    assert "train: 1 rows" in out
    assert "packages" not in out or "1 packages" in out
    code, out, _ = run(capsys, "show", "2", "--json")
    record = json.loads(out)
    assert record["config"] == {"lr": 0.1, "seed": 1, "model": "mlp"}
    assert record["status"] == "COMPLETE"
    assert record["metrics"]["train"]["rows"] == 2
    assert record["metrics"]["train"]["loss.last"] == 2.0
    assert record["env"]["git"] == {"commit": "abc"}
    code, out, _ = run(capsys, "show", "6", "--json")
    assert json.loads(out)["status"] == "LOST"
    code, _, err = run(capsys, "show", "42")
    assert code == 1 and "no run 42" in err


def test_status(logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "6 run(s)" in out and "COMPLETE 4" in out and "FAILED 1" in out and "LOST 1" in out
    assert "ValueError: loss is nan" in out
    assert "raise ValueError('loss is nan')" in out  # the traceback's last lines
    assert "heartbeat stopped" in out
    code, out, _ = run(capsys, "status", "--logs", str(logs), "--json")
    data = json.loads(out)
    assert data["counts"] == {"COMPLETE": 4, "FAILED": 1, "LOST": 1}
    failing = {f["run_id"]: f for f in data["failing"]}
    assert set(failing) == {5, 6}
    assert failing[5]["error_message"] == "loss is nan"
    assert failing[5]["traceback"][-1] == "ValueError: loss is nan"
    code, out, _ = run(capsys, "status", "--csv", "--where", "config.lr < 1")
    assert list(csv.reader(io.StringIO(out))) == [["status", "runs"], ["COMPLETE", "4"]]


def test_no_runs_yet_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fresh clone: no $RUNLAB_LOGS and no ./logs yet (`pixi run status` before any run).
    monkeypatch.delenv("RUNLAB_LOGS", raising=False)
    monkeypatch.chdir(tmp_path)
    for command in ("ls", "status"):
        code, out, err = run(capsys, command)
        assert code == 0 and not err
        assert out.strip() == (
            f"no runs yet in {tmp_path / 'logs'}/ "
            "(run `pixi run train` or `python tasks/train.py` first)"
        )
    code, out, _ = run(capsys, "ls", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["runs"] == 0 and json.loads(out)["counts"] == {}
    code, out, _ = run(capsys, "status", "--csv")
    assert code == 0 and out.strip() == "status,runs"
    # An existing but empty logs directory, named or by default.
    (tmp_path / "logs").mkdir()
    code, out, _ = run(capsys, "status")
    assert code == 0 and out.startswith(f"no runs yet in {tmp_path / 'logs'}/")
    code, out, _ = run(capsys, "ls", "--logs", str(tmp_path / "logs"))
    assert code == 0 and out.startswith(f"no runs yet in {tmp_path / 'logs'}/")
    # A directory named explicitly that does not exist stays an error.
    code, _, err = run(capsys, "status", "--logs", str(tmp_path / "missing"))
    assert code == 2 and "runlab status: error: no logs directory: " in err


def test_ls_no_match(logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ls", "--where", "config.seed == 7")
    assert code == 0 and out.startswith("no runs match the query in")
    code, out, _ = run(capsys, "ls", "--where", "config.seed == 7", "--json")
    assert code == 0 and json.loads(out) == []


ALIAS_BOMB = "".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(
            f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def test_show_refuses_a_yaml_alias_bomb(logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys

    assert len(ALIAS_BOMB) < 500 and ALIAS_BOMB.count("*") == 72
    run_dir = logs / "2"
    (run_dir / "metadata" / "config.json").unlink(missing_ok=True)
    (run_dir / "metadata" / "config.yaml").write_text(ALIAS_BOMB)
    (run_dir / "metadata" / "overrides.yaml").write_text(ALIAS_BOMB)
    # In a child process: a hang (the bomb expanded) would end at the timeout.
    proc = subprocess.run(
        [sys.executable, "-m", "runlab", "show", str(logs), "2", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["config"] is None and record["overrides"] is None
    text = json.dumps(record)
    assert "metadata/config.yaml: YAML anchors and aliases are not read" in text
    assert "metadata/overrides.yaml: YAML anchors and aliases are not read" in text
    assert record["status"] == "COMPLETE"
    # An empty info record is CORRUPT, said in one line.
    (logs / "3" / "metadata" / "info.json").unlink(missing_ok=True)
    (logs / "3" / "metadata" / "info.yaml").write_text("")
    code, out, _ = run(capsys, "show", "3", "--logs", str(logs), "--json")
    record = json.loads(out)
    assert code == 0 and record["status"] == "CORRUPT"
    assert "metadata/info.yaml: empty" in json.dumps(record)


def test_a_reader_warning_keeps_its_lines_and_shows_a_newline_as_backslash_n(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The warning about runs that cannot be read has a line per run: shown as lines, not
    as one line with ``\\x0a`` between them; a newline of the user's (here in the logs
    directory's name) shows as ``\\n`` within its line, never as a line break of its own."""
    logs = tmp_path / "odd\nname"
    damaged = make_run(logs, {"lr": 0.1}, [1.0])
    for suffix in ("json", "yaml"):
        (damaged.metadata / f"info.{suffix}").write_text("{\n")
    code, out, err = run(capsys, "ls", "--logs", str(logs))
    assert code == 0 and "CORRUPT" in out
    assert "\\x0a" not in err
    lines = err.splitlines()
    assert lines[0] == "runlab: warning: 1 runs could not be read fully:"
    assert lines[1].startswith(f"  {tmp_path}/odd\\nname/1: metadata/info.")
    assert len(lines) == 2, err
