"""``runlab export tensorboard|mlflow``: round trips read back with each tool's own reader.

Runs are made by the library (``RunLogger``, and one task run by ``runlab.launch``), with
non-finite values, booleans, strings and names MLflow refuses. TensorBoard's event
files are read with its ``EventAccumulator`` (no sampling), MLflow's runs with its
client; row counts and values are compared (float32 in TensorBoard), and exporting
again must neither duplicate nor lose anything.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runlab
from conftest import TASKS, run_task
from runlab.cli import main
from runlab.record.rundir import allocate
from runlab.results import export
from runlab.results.export._names import NameMap, accepted

tensorboard = pytest.importorskip("tensorboard")
mlflow = pytest.importorskip("mlflow")

ODD_KEYS = ["acc/top 1", "loss%", "a..b", "ünï", ".hidden", "x" * 300, "a/./b", "sp ace:"]
LONG = "v" * 7000


def _make_runs(logs: Path, n: int = 3, steps: int = 5) -> list[Path]:
    paths = []
    for i in range(n):
        path = allocate(logs, 1)[0]
        config = {
            "lr": 0.1 / (i + 1),
            "model": {"name": "mlp", "layers": [1, 2, 3]},
            "weird key/é": "x",
            "long": LONG,
            "flag": True,
        }
        with runlab.RunLogger(path, config=config) as log:
            for step in range(steps):
                row: dict[str, Any] = {"loss": 1.0 / (step + 1), "ok": step % 2 == 0, "txt": "s"}
                row["nan"] = math.nan if step % 2 else 1.5
                row["inf"] = math.inf if step == 1 else (-math.inf if step == 2 else 2.0)
                for k, key in enumerate(ODD_KEYS):
                    row[key] = float(step * 10 + k)
                log.log_metrics(row, name="train")
            log.log_metrics({"acc": 0.5 + i / 10}, name="test")
        paths.append(path)
    return paths


def _expected(logs: Path) -> dict[int, dict[str, tuple[list[int], list[float], list[float]]]]:
    """Per run, per tag ``<file>/<key>``: steps, values and times, read with the reader."""
    runs = runlab.Reader(logs)
    out: dict[int, dict[str, Any]] = {rid: {} for rid in runs.run_ids}
    for name in ("train", "test"):
        frame = runs.metrics(name).collect()
        for key in frame.columns:
            if key in ("run_id", "step", "time") or frame[key].dtype.to_python() is str:
                continue
            for (rid,), rows in frame.partition_by("run_id", as_dict=True).items():
                rows = rows.filter(rows[key].is_not_null())
                if rows.height:
                    out[rid][f"{name}/{key}"] = (
                        rows["step"].to_list(),
                        [float(v) for v in rows[key].to_list()],
                        rows["time"].to_list(),
                    )
    return out


def _same(a: list[float], b: list[float]) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))


@pytest.fixture
def made(logs: Path) -> Path:
    _make_runs(logs)
    run_task(TASKS / "quadratic.py", "steps=4", "interval=0")
    return logs


# ---------------------------------------------------------------- TensorBoard
def _tb_read(folder: Path) -> dict[str, tuple[list[int], list[float], list[float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    out = {}
    assert sorted(acc.PluginTagToContent("scalars")) == sorted(acc.Tags()["tensors"])
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        values = [float(np.float32(e.tensor_proto.float_val[0])) for e in events]
        out[tag] = ([e.step for e in events], values, [e.wall_time for e in events])
    return out


def _tb_check(out: Path, expected: dict[int, dict[str, Any]]) -> int:
    """Compare every run's event files with the reader's rows; the number of events."""
    events = 0
    assert sorted(p.name for p in out.iterdir()) == sorted(str(r) for r in expected)
    for rid, series in expected.items():
        assert len(list((out / str(rid)).glob("events.out.tfevents.*"))) == 1
        got = _tb_read(out / str(rid))
        assert sorted(got) == sorted(series)
        for tag, (steps, values, times) in series.items():
            g_steps, g_values, g_times = got[tag]
            assert g_steps == steps, tag
            assert _same(g_values, np.asarray(values, dtype=np.float32).tolist()), tag
            assert np.allclose(g_times, times, rtol=0, atol=1e-3), tag
            events += len(g_steps)
    return events


def test_tensorboard_round_trip_and_no_duplicates(
    made: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = made / ".exports" / "tensorboard"
    assert main(["export", "tensorboard"]) == 0
    assert "4 written" in capsys.readouterr().out
    expected = _expected(made)
    assert "train/acc/top 1" in expected[1] and "train/nan" in expected[1]
    assert "train/txt" not in expected[1]  # strings are not scalars
    first = _tb_check(out, expected)
    assert first > 4 * 5

    assert main(["export", "tensorboard"]) == 0  # again: nothing changes, nothing doubles
    assert "4 unchanged" in capsys.readouterr().out
    assert _tb_check(out, expected) == first

    with runlab.RunLogger(made / "2") as log:  # a run goes on: only its directory is redone
        log.log_metrics({"loss": 0.01}, name="train", step=5)
    assert main(["export", "tensorboard", "--where", "run_id >= 2"]) == 0
    assert "1 written, 2 unchanged" in capsys.readouterr().out
    assert _tb_check(out, _expected(made)) == first + 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_tensorboard_out_and_where(made: Path, tmp_path: Path) -> None:
    out = tmp_path / "tb"
    runs = runlab.Reader(made).filter("config.lr > 0.04")
    outcome = export.to_tensorboard(runs, out)
    assert outcome.counts["written"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["1", "2"]


# ---------------------------------------------------------------- MLflow
def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _ml_runs(client: Any) -> dict[str, Any]:
    exp = client.get_experiment_by_name("runlab")
    found = client.search_runs([exp.experiment_id], max_results=1000)
    by_id = {r.data.tags["runlab.run_id"]: r for r in found}
    assert len(by_id) == len(found)  # never two MLflow runs for one run
    return by_id


def _ml_value(v: float) -> float:
    """As MLflow's SQL store keeps a value: infinities as the largest floats."""
    return math.copysign(sys.float_info.max, v) if math.isinf(v) else v


def _ml_check(client: Any, expected: dict[int, dict[str, Any]]) -> int:
    """Compare every MLflow run's metric histories with the reader's rows; points seen."""
    runs = _ml_runs(client)
    assert sorted(runs) == sorted(str(r) for r in expected)
    points = 0
    for rid, series in expected.items():
        run = runs[str(rid)]
        renamed = json.loads(run.data.tags.get("runlab.renamed", "{}"))
        assert sorted(renamed.get(t, t) for t in series) == sorted(run.data.metrics)
        for tag, (steps, values, times) in series.items():
            history = client.get_metric_history(run.info.run_id, renamed.get(tag, tag))
            history.sort(key=lambda m: (m.step, m.timestamp))
            assert [m.step for m in history] == steps, tag
            assert _same([m.value for m in history], [_ml_value(v) for v in values]), tag
            assert [m.timestamp for m in history] == [int(t * 1000) for t in times], tag
            points += len(history)
    return points


def test_mlflow_round_trip_and_no_duplicates(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    assert main(["export", "mlflow", "--uri", uri]) == 0
    assert "4 created" in capsys.readouterr().out
    client = _client(uri)
    expected = _expected(made)
    first = _ml_check(client, expected)

    run = _ml_runs(client)["1"]
    params = run.data.params
    assert params["lr"] == "0.1" and params["model.name"] == "mlp"
    assert params["model.layers"] == "[1, 2, 3]" and params["flag"] == "True"
    assert len(params["long"]) <= 6000 and params["long"].endswith("]")
    assert "weird key/é" in params  # é is a letter to MLflow: kept
    tags = run.data.tags
    assert tags["runlab.status"] == "COMPLETE" and run.info.status == "FINISHED"
    assert tags["runlab.path"] == str(made / "1")
    assert json.loads(tags["runlab.skipped"]) == ["train/txt"]
    task_run = _ml_runs(client)["4"]
    assert task_run.data.params["steps"] == "4"

    assert main(["export", "mlflow", "--uri", uri]) == 0  # again: nothing sent
    assert "4 unchanged" in capsys.readouterr().out
    assert _ml_check(client, expected) == first

    with runlab.RunLogger(made / "2") as log:  # more points: appended to the same run
        log.log_metrics({"loss": 0.01}, name="train", step=5)
    before = _ml_runs(client)["2"].info.run_id
    assert main(["export", "mlflow", "--uri", uri]) == 0
    assert "1 updated, 3 unchanged" in capsys.readouterr().out
    assert _ml_runs(client)["2"].info.run_id == before
    assert _ml_check(client, _expected(made)) == first + 1


def test_mlflow_rewritten_history_replaces_the_run(made: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    outcome = export.to_mlflow(runlab.Reader(made), uri)
    assert outcome.counts["created"] == 4
    client = _client(uri)
    before = _ml_runs(client)["1"].info.run_id
    jsonl = made / "1" / "metrics" / "train.jsonl"  # an earlier row changed (a cut, relogged)
    lines = jsonl.read_text().splitlines(keepends=True)
    row = json.loads(lines[0])
    row["loss"] = 42.0
    jsonl.write_text(json.dumps(row) + "\n" + "".join(lines[1:]))
    outcome = export.to_mlflow(runlab.Reader(made), uri)
    assert outcome.counts == {"replaced": 1, "unchanged": 3}
    after = _ml_runs(client)["1"]
    assert after.info.run_id != before
    _ml_check(client, _expected(made))


def test_mlflow_default_uri_and_artifacts(logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _make_runs(logs, n=1, steps=2)[0]
    (path / "artifacts").mkdir(exist_ok=True)
    (path / "artifacts" / "note.txt").write_text("hello")
    assert main(["export", "mlflow", "--artifacts", "--experiment", "e1"]) == 0
    assert "1 created" in capsys.readouterr().out
    uri = export.default_mlflow_uri(logs)
    client = _client(uri)
    exp = client.get_experiment_by_name("e1")
    (run,) = client.search_runs([exp.experiment_id])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "note.txt" in names and "runlab-metadata" in names
    assert (logs / ".exports" / "mlflow.db").is_file()
    assert runlab.Reader(logs).run_ids == [1]  # the exports are no run


# ---------------------------------------------------------------- names, errors
def test_names_mlflow_refuses_are_mapped_without_collisions() -> None:
    from mlflow.utils.validation import _validate_metric_name

    names = [*ODD_KEYS, "a_b", "a%b", "a&b", "/lead", "trail/", "..", "", "ok.name"]
    mapping = NameMap(250).add(names)
    out = [mapping(n) for n in names]
    assert len(set(out)) == len(out)
    for name in out:
        _validate_metric_name(name)
        assert accepted(name, 250)
    assert mapping("a_b") == "a_b" and mapping("ok.name") == "ok.name"


@pytest.mark.parametrize("target", ["tensorboard", "mlflow"])
def test_a_missing_package_is_one_line(
    target: str, made: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = {"tensorboard": "tensorboard.summary", "mlflow": "mlflow.tracking"}[target]
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    assert main(["export", target]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert f'pip install "runlab[{target}]"' in err


def test_options_of_the_other_target_are_refused(
    made: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "tensorboard", "--uri", "sqlite:///x.db"]) == 2
    assert "--uri" in capsys.readouterr().err
    assert main(["export", "mlflow", "--out", "x"]) == 2
    assert "--out" in capsys.readouterr().err


def test_mlflow_follows_a_running_run_and_an_export_stopped_halfway(
    logs: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    path = allocate(logs, 1)[0]
    log = runlab.RunLogger(path, config={"lr": 0.1})
    try:
        for step in range(3):
            log.log_metrics({"loss": 1.0 / (step + 1)}, name="train")
        log.flush()
        assert export.to_mlflow(runlab.Reader(logs), uri).counts == {"created": 1}
        client = _client(uri)
        run = _ml_runs(client)["1"]
        assert run.info.status == "RUNNING" and run.data.tags["runlab.status"] == "RUNNING"
        log.log_metrics({"loss": 0.1}, name="train")
    finally:
        log.close()
    assert export.to_mlflow(runlab.Reader(logs), uri).counts == {"updated": 1}
    run = _ml_runs(client)["1"]
    assert run.info.status == "FINISHED" and run.info.end_time is not None
    assert _ml_check(client, _expected(logs)) == 4

    client.set_tag(run.info.run_id, "runlab.export", "pending")  # as if stopped halfway
    assert export.to_mlflow(runlab.Reader(logs), uri).counts == {"replaced": 1}
    assert _ml_runs(client)["1"].info.run_id != run.info.run_id
    assert _ml_check(client, _expected(logs)) == 4


def test_export_help_imports_neither_package_nor_polars() -> None:
    import subprocess

    code = (
        "import sys; from runlab.cli import main\n"
        "try:\n    main(['export', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('polars', 'mlflow', 'tensorboard') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- what an audit found
def test_a_long_name_keeps_its_readable_start() -> None:
    name = "train/" + "L" * 300
    mapped = NameMap(250)(name)
    assert accepted(mapped, 250) and len(mapped) <= 250
    assert mapped.startswith("train/LLLL"), mapped


def test_mlflow_a_run_with_many_metrics_is_unchanged_when_exported_again(
    logs: Path, tmp_path: Path
) -> None:
    # 250 metrics: their export state is longer than a tag holds, so only a fingerprint
    # of every point is kept; exported again, the run is still unchanged, not replaced.
    with runlab.RunLogger(allocate(logs, 1)[0]) as log:
        for step in range(3):
            log.log_metrics({f"layer{k}.grad_norm": step + k for k in range(250)}, name="train")
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    assert export.to_mlflow(runlab.Reader(logs), uri).counts == {"created": 1}
    client = _client(uri)
    first = _ml_runs(client)["1"].info.run_id
    assert export.to_mlflow(runlab.Reader(logs), uri).counts == {"unchanged": 1}
    assert _ml_runs(client)["1"].info.run_id == first
    with runlab.RunLogger(logs / "1") as log:
        log.log_metrics({"layer0.grad_norm": 9.0}, name="train", step=3)
    assert export.to_mlflow(runlab.Reader(logs), uri).counts == {"replaced": 1}
    assert _ml_check(client, _expected(logs)) == 751


@pytest.mark.parametrize("stamp", ["Infinity", "-Infinity", "1e300", "NaN"])
def test_mlflow_a_time_out_of_range_is_sent_as_0(logs: Path, tmp_path: Path, stamp: str) -> None:
    path = _make_runs(logs, n=1, steps=2)[0]
    with (path / "metrics" / "test.jsonl").open("a") as fh:  # a hand-edited row
        fh.write(f'{{"step": 7, "time": {stamp}, "acc": 0.25}}\n')
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    assert export.to_mlflow(runlab.Reader(logs), uri).counts == {"created": 1}
    client = _client(uri)
    run = _ml_runs(client)["1"]
    history = {m.step: m for m in client.get_metric_history(run.info.run_id, "test/acc")}
    assert history[7].value == 0.25 and history[7].timestamp == 0


def test_mlflow_logs_reached_through_a_link_are_the_same_runs(logs: Path, tmp_path: Path) -> None:
    _make_runs(logs, n=2, steps=2)
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    assert export.to_mlflow(runlab.Reader(logs), uri).counts == {"created": 2}
    link = tmp_path / "link"
    link.symlink_to(logs)
    before = {k: r.info.run_id for k, r in _ml_runs(_client(uri)).items()}
    counts = export.to_mlflow(runlab.Reader(link), uri).counts  # the path tag follows
    assert counts == {"updated": 2}, counts
    assert {k: r.info.run_id for k, r in _ml_runs(_client(uri)).items()} == before


@pytest.mark.parametrize("uri", ["bogus://x", "http://127.0.0.1:1"])
def test_mlflow_an_unusable_uri_is_the_users_one_line(
    made: Path, uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    assert main(["export", "mlflow", "--uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert err.startswith("runlab export: error: MLflow cannot use this tracking URI: "), err
    assert "internal error" not in err


def test_tensorboard_a_killed_exports_temporary_directory_is_removed(made: Path) -> None:
    import subprocess

    out = made / ".exports" / "tensorboard"
    assert main(["export", "tensorboard"]) == 0
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)  # a process that has ended
    for name in (f".1.tmp-{pid}", f".2.old-{pid}"):
        (out / name).mkdir()
        (out / name / "events.out.tfevents.1.host.1.0").write_bytes(b"half")
    live = out / f".3.tmp-{os.getppid()}"  # a process still running: left alone
    live.mkdir()
    assert main(["export", "tensorboard"]) == 0  # nothing changed: the stale ones go anyway
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [live.name]
