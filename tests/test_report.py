"""`runlab report`: numbers checked by hand, PNGs, bad input, and the page in a real browser."""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlab.cli import main
from runlab.files import now_iso, write_yaml
from runlab.logger import RunLogger
from runlab.rundir import RunDir, allocate

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
)


def make_run(
    logs: Path,
    config: dict[str, Any],
    train: list[float] | None = None,
    test: list[float] | None = None,
    status: str = "COMPLETE",
) -> int:
    run = RunDir(allocate(logs)[0]).create()
    write_yaml(run.config_file, config)
    write_yaml(run.env_file, {"git": {"commit": "c0ffee", "dirty": False}})
    run.update_info(status=status, start_time=now_iso(), duration_s=12.5)
    with RunLogger(run, flush_interval=60) as logger:
        for value in train or []:
            logger.log_metrics({"loss": value}, name="train")
        for value in test or []:
            logger.log_metrics({"acc": value}, name="test")
    return int(run.run_id)


def loss(method: str, seed: int, step: int) -> float:
    return (2.0 if method == "GN" else 1.0) / (step + 1) + 0.1 * seed


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """GD x 3 seeds with 4 steps, GN x 2 seeds with 4 steps and one with 2 (unequal);
    test.acc only for GD (GN lacks it); a third method, 'SGD', one failed run."""
    logs = tmp_path / "logs"
    for seed in range(3):
        make_run(
            logs,
            {"method": "GD", "seed": seed, "lr": 0.1},
            [loss("GD", seed, s) for s in range(4)],
            [0.5 + 0.1 * seed],
        )
    for seed in range(3):
        steps = 2 if seed == 2 else 4
        make_run(
            logs,
            {"method": "GN", "seed": seed, "lr": 0.1},
            [loss("GN", seed, s) for s in range(steps)],
        )
    make_run(logs, {"method": "SGD", "seed": 0, "lr": 0.1}, [3.0], status="FAILED")
    return logs


def report_of(logs: Path, out: Path, *args: str) -> dict[str, Any]:
    code = main(["report", str(logs), "--out", str(out), *args])
    assert code == 0
    return orjson.loads((out / "report.json").read_bytes())


def series(report: dict[str, Any], metric: str, group: str) -> dict[str, Any]:
    (found,) = [s for s in report["curves"][metric] if s["group"] == group]
    return found


# ------------------------------------------------------------------ numbers
def test_report_json_matches_hand_computation(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    rep = report_of(sweep, out, "--metric", "train.loss", "--metric", "test.acc")
    # --by defaults to the config keys that vary, except seed.
    assert rep["by"] == ["config.method"]
    assert [g["group"] for g in rep["groups"]] == ["method=GD", "method=GN", "method=SGD"]
    assert [g["runs"] for g in rep["groups"]] == [3, 3, 1]
    assert rep["status"] == {"COMPLETE": 6, "FAILED": 1}
    assert rep["runs"] == 7

    gd = series(rep, "train.loss", "method=GD")
    assert gd["x"] == [0, 1, 2, 3]
    for i, step in enumerate(gd["x"]):
        values = [loss("GD", seed, step) for seed in range(3)]
        assert math.isclose(gd["mean"][i], statistics.fmean(values), rel_tol=1e-12)
        assert math.isclose(gd["std"][i], statistics.stdev(values), rel_tol=1e-12)
        assert gd["min"][i] == min(values) and gd["max"][i] == max(values)
        assert gd["count"][i] == 3

    # Unequal lengths: the band is over the runs present at each step.
    gn = series(rep, "train.loss", "method=GN")
    assert gn["count"] == [3, 3, 2, 2]
    for i, step in enumerate(gn["x"]):
        values = [loss("GN", seed, step) for seed in range(3) if step < (2 if seed == 2 else 4)]
        assert math.isclose(gn["mean"][i], statistics.fmean(values), rel_tol=1e-12)
        assert math.isclose(gn["std"][i], statistics.stdev(values), rel_tol=1e-12)

    sgd = series(rep, "train.loss", "method=SGD")
    assert sgd["mean"] == [3.0] and sgd["std"] == [None] and sgd["count"] == [1]

    # Final values: each run's last value, then mean/std per group.
    finals = {f["group"]: f for f in rep["final"]["train.loss"]}
    last_gn = [loss("GN", 0, 3), loss("GN", 1, 3), loss("GN", 2, 1)]
    assert math.isclose(finals["method=GN"]["mean"], statistics.fmean(last_gn), rel_tol=1e-12)
    assert math.isclose(finals["method=GN"]["std"], statistics.stdev(last_gn), rel_tol=1e-12)
    assert finals["method=GN"]["count"] == 3

    # The per-run table: config columns, status, duration, commit, final values.
    assert len(rep["run_table"]) == 7
    row = rep["run_table"][0]
    assert row["run_id"] == 1 and row["group"] == "method=GD"
    assert row["info.status"] == "COMPLETE" and row["info.duration_s"] == 12.5
    assert row["env.git.commit"] == "c0ffee" and row["config.seed"] == 0
    assert math.isclose(row["train.loss"], loss("GD", 0, 3))
    assert row["test.acc"] == 0.5

    # Outputs.
    assert (out / "index.html").is_file()
    assert sorted(p.name for p in out.glob("*.png")) == ["test.acc.png", "train.loss.png"]


def test_missing_metric_is_listed_and_left_out(sweep: Path, tmp_path: Path) -> None:
    rep = report_of(sweep, tmp_path / "rep", "--metric", "test.acc", "--metric", "train.loss")
    assert rep["missing"]["test.acc"] == [4, 5, 6, 7]  # GN and SGD never logged it
    assert rep["missing"]["train.loss"] == []
    assert [s["group"] for s in rep["curves"]["test.acc"]] == ["method=GD"]
    gd = rep["curves"]["test.acc"][0]
    assert gd["count"] == [3]
    assert math.isclose(gd["mean"][0], 0.6) and math.isclose(gd["std"][0], 0.1)
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "4 of 7 run(s) never logged it" in page and "run 4, 5, 6, 7" in page


def test_metric_no_run_logged_is_listed(sweep: Path, tmp_path: Path) -> None:
    rep = report_of(sweep, tmp_path / "rep", "--metric", "train.loss", "--metric", "train.nope")
    assert rep["missing"]["train.nope"] == list(range(1, 8))
    assert rep["curves"]["train.nope"] == []
    assert not (tmp_path / "rep" / "train.nope.png").exists()


def test_explicit_by_and_where(sweep: Path, tmp_path: Path) -> None:
    rep = report_of(
        sweep, tmp_path / "rep", "--where", "config.method != 'SGD'", "--by", "config.seed"
    )
    assert rep["by"] == ["config.seed"] and rep["runs"] == 6
    s0 = series(rep, "train.loss", "seed=0")
    assert s0["count"] == [2, 2, 2, 2]
    assert math.isclose(s0["mean"][0], (loss("GD", 0, 0) + loss("GN", 0, 0)) / 2)


# ---------------------------------------------------------------- bad input
def test_no_match_writes_nothing(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    code = main(["report", str(sweep), "--where", "config.method == 'Adam'", "--out", str(out)])
    assert code == 1
    assert "no runs match" in capsys.readouterr().err
    assert not out.exists()


def test_no_run_logged_any_metric(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    assert main(["report", str(sweep), "--metric", "train.nope", "--out", str(out)]) == 1
    assert "logged 'train.nope'" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_by_column(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    assert main(["report", str(sweep), "--by", "config.methd", "--out", str(out)]) == 2
    assert "config.method" in capsys.readouterr().err  # the suggestion
    assert not out.exists()


def test_missing_logs_directory(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "rep")]) == 1


# ---------------------------------------------------------------------- PNG
def test_png_has_size_and_is_not_blank(sweep: Path, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    out = tmp_path / "rep"
    report_of(sweep, out, "--metric", "train.loss")
    image = mpimg.imread(out / "train.loss.png")
    height, width = image.shape[:2]
    assert width >= 800 and height >= 400
    assert float(image[..., :3].var()) > 0.0


# -------------------------------------------------------------- many runs
def test_thirty_groups_and_speed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for g in range(30):
        for seed in range(2):
            make_run(
                logs, {"lr": 0.001 * (g + 1), "seed": seed}, [1.0 / (g + s + 1) for s in range(20)]
            )
    out = tmp_path / "rep"
    started = time.perf_counter()
    rep = report_of(logs, out)
    assert time.perf_counter() - started < 20
    assert len(rep["groups"]) == 30 and len(rep["curves"]["train.loss"]) == 30
    colours = {g["index"] for g in rep["groups"]}
    assert colours == set(range(30))


# ------------------------------------------------------------------ browser
def _chromium(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    profile.mkdir()
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_page_in_headless_chromium(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    rep = report_of(sweep, out, "--metric", "train.loss", "--metric", "test.acc")
    page = (out / "index.html").read_text()
    # Self-contained: every script inline, nothing to fetch (outside the inline scripts).
    tags = re.findall(r"<script([^>]*)>", page)
    assert len(tags) == 3 and not any("src" in t for t in tags)
    outside = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)
    assert not re.search(r"(src|href)\s*=|<link|@import|url\(", outside)
    url = (out / "index.html").resolve().as_uri()

    proc = _chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    start = dom.index('id="runlab-selftest"')
    text = dom[dom.index(">", start) + 1 : dom.index("</pre>", start)]
    assert text, "the page's script did not finish drawing"
    result = orjson.loads(text)
    # Two traces per group and panel: the std band and the mean line.
    expected = 2 * sum(len(s) for s in rep["curves"].values())
    assert expected == 2 * (3 + 1)
    assert result["errors"] == []
    assert result["panels"] == 2 and result["traces"] == expected
    assert result["drawn"] == expected
    console = [
        line
        for line in proc.stderr.splitlines()
        if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)
    ]
    assert console == []

    shot = tmp_path / "report.png"
    proc = _chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}", url)
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    shutil.copy(shot, out / "screenshot.png")
    artifacts = os.environ.get("RUNLAB_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "report-screenshot.png")
