"""`runlab report`: numbers checked by hand, scope, labels, PNGs, escaping, bad input.

The page in a real browser: tests/test_report_browser.py."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlab.cli import main
from runlab.record.files import now_iso, write_yaml
from runlab.record.logger import RunLogger
from runlab.record.rundir import RunDir, allocate


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
    run.acquire()  # held as a run session holds it: the logger only logs (see RunLogger)
    try:
        with RunLogger(run, flush_interval=60) as logger:
            for value in train or []:
                logger.log_metrics({"loss": value}, name="train")
            for value in test or []:
                logger.log_metrics({"acc": value}, name="test")
    finally:
        run.release()
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
    # --by defaults to the config keys that vary among the plotted runs, except seed;
    # the failed SGD run is left out of the curves and the leaderboard, and said so.
    assert rep["by"] == ["config.method"]
    assert [g["group"] for g in rep["groups"]] == ["method=GD", "method=GN"]
    assert [g["runs"] for g in rep["groups"]] == [3, 3]
    assert rep["left_out"] == [{"run_id": 7, "status": "FAILED", "why": "failed"}]
    assert rep["status"] == {"COMPLETE": 6, "FAILED": 1}
    assert rep["runs"] == 7 and rep["plotted"] == 6
    assert rep["scope"]["text"] == "every run" and rep["scope"]["outside"] == 0

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

    # Final values: each run's last value, then mean/std per group.
    finals = {f["group"]: f for f in rep["final"]["train.loss"]}
    last_gn = [loss("GN", 0, 3), loss("GN", 1, 3), loss("GN", 2, 1)]
    assert math.isclose(finals["method=GN"]["mean"], statistics.fmean(last_gn), rel_tol=1e-12)
    assert math.isclose(finals["method=GN"]["std"], statistics.stdev(last_gn), rel_tol=1e-12)
    assert finals["method=GN"]["count"] == 3

    # The per-run table: best first by the rank metric (test.acc, maximised), then the
    # runs without it; config, status, duration, final values.
    assert rep["rank"] == {"metric": "test.acc", "maximise": True}
    assert [r["run_id"] for r in rep["run_table"]] == [3, 2, 1, 4, 5, 6]
    row = rep["run_table"][2]
    assert row["run_id"] == 1 and row["group"] == "method=GD"
    assert row["info.status"] == "COMPLETE" and row["info.duration_s"] == 12.5
    assert row["config.seed"] == 0
    assert math.isclose(row["train.loss"], loss("GD", 0, 3))
    assert row["test.acc"] == 0.5
    assert [r["run_id"] for r in rep["leaderboard"]][:3] == [3, 2, 1]
    assert [r["rank"] for r in rep["leaderboard"]] == [1, 2, 3, None, None, None]

    # Outputs.
    assert (out / "index.html").is_file()
    assert sorted(p.name for p in out.glob("*.png")) == ["test.acc.png", "train.loss.png"]


def test_missing_metric_is_listed_and_left_out(sweep: Path, tmp_path: Path) -> None:
    rep = report_of(sweep, tmp_path / "rep", "--metric", "test.acc", "--metric", "train.loss")
    assert rep["missing"]["test.acc"] == [4, 5, 6]  # GN never logged it (SGD: left out)
    assert rep["missing"]["train.loss"] == []
    assert [s["group"] for s in rep["curves"]["test.acc"]] == ["method=GD"]
    gd = rep["curves"]["test.acc"][0]
    assert gd["count"] == [3]
    assert math.isclose(gd["mean"][0], 0.6) and math.isclose(gd["std"][0], 0.1)
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "3 of 6 run(s) never logged it" in page and "run 4, 5, 6" in page


def test_metric_no_run_logged_is_listed(sweep: Path, tmp_path: Path) -> None:
    rep = report_of(sweep, tmp_path / "rep", "--metric", "train.loss", "--metric", "train.nope")
    assert rep["missing"]["train.nope"] == list(range(1, 7))
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
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "rep")]) == 2


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
def test_thirty_groups_best_ten_drawn(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for g in range(30):
        for seed in range(2):
            make_run(
                logs, {"lr": 0.001 * (g + 1), "seed": seed}, [1.0 / (g + s + 1) for s in range(20)]
            )
    out = tmp_path / "rep"
    rep = report_of(logs, out)
    assert len(rep["groups"]) == 30 and len(rep["curves"]["train.loss"]) == 30
    colours = {g["index"] for g in rep["groups"]}
    assert colours == set(range(30))
    # Ranked by train.loss (the only metric; minimised): lr=0.03 (g=29) ends lowest.
    assert rep["rank"] == {"metric": "train.loss", "maximise": False}
    assert rep["groups"][0]["label"] == "lr=0.03"
    assert [g["shown"] for g in rep["groups"]] == [True] * 10 + [False] * 20
    # The PNG draws the same ten, the legend below: the axes keep the figure's width.
    layout = rep["png_layout"]["train.loss"]
    assert layout["legend_entries"] == 10 and layout["axes_width_share"] >= 0.8


# -------------------------------------------------------------------- scope
def test_scope_is_the_latest_sweep_and_says_what_is_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from report_data import record_sweep

    logs = tmp_path / "logs"
    loose = make_run(logs, {"lr": 9.0, "seed": 0}, [5.0])  # a run made by hand
    first = [make_run(logs, {"lr": lr, "seed": 0}, [lr, lr / 2]) for lr in (0.1, 0.2)]
    second = [make_run(logs, {"lr": lr, "seed": 0}, [lr, lr / 3]) for lr in (0.3, 0.4, 0.5)]
    record_sweep(logs, "20261120-100000-2", first)
    record_sweep(logs, "20261121-100000-4", second)

    rep = report_of(logs, tmp_path / "latest")
    assert sorted(r["run_id"] for r in rep["run_table"]) == second
    assert rep["scope"]["kind"] == "latest sweep" and rep["scope"]["sweep"] == "20261121-100000-4"
    assert rep["scope"]["outside"] == 3
    err = capsys.readouterr().err
    assert "the latest sweep 20261121-100000-4: 3 other run(s)" in err and "--all" in err
    page = (tmp_path / "latest" / "index.html").read_text()
    assert "3 other run(s) of the logs directory are not in this report" in page

    rep = report_of(logs, tmp_path / "one", "--sweep", "20261120-100000-2")
    assert sorted(r["run_id"] for r in rep["run_table"]) == first
    rep = report_of(logs, tmp_path / "all", "--all")
    assert sorted(r["run_id"] for r in rep["run_table"]) == [loose, *first, *second]
    assert rep["scope"]["outside"] == 0
    rep = report_of(logs, tmp_path / "where", "--where", "config.lr > 0.15")
    assert sorted(r["run_id"] for r in rep["run_table"]) == [loose, first[1], *second]

    out = tmp_path / "nope"
    capsys.readouterr()
    assert main(["report", str(logs), "--sweep", "2020-nope", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sweep '2020-nope'" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


# ------------------------------------------------------------------- labels
def test_labels_from_differences_on_a_real_logs_directory(tmp_path: Path) -> None:
    from report_data import heterogeneous

    logs = tmp_path / "logs"
    ids = heterogeneous(logs)
    rep = report_of(logs, tmp_path / "rep", "--metric", "train.loss,test.acc")
    # The failed run and the broken one (no config, unreadable info) are left out, named.
    assert [(r["run_id"], r["status"]) for r in rep["left_out"]] == [
        (ids[8], "FAILED"),
        (ids[11], "CORRUPT"),
    ]
    # Keys that vary among the 10 plotted runs; those that vary only with the model or
    # the optimizer choice folded into it; the seed averaged, not grouped.
    assert rep["by"] == [
        "config.model.name",
        "config.model.hidden",
        "config.model.dropout",
        "config.optimizer.name",
        "config.epochs",
        "config.batch_size",
        "config.lr",
        "config.device",
        "config.deterministic",
    ]
    assert rep["folded"] == {
        "config.model.layers": "config.model.name",
        "config.optimizer.momentum": "config.optimizer.name",
        "config.model.channels": "config.model.name",
    }
    assert rep["seeds"] == ["config.seed"]
    labels = {g["label"]: g for g in rep["groups"]}
    assert len(labels) == 7
    # Only what distinguishes: the choices and the sweep axes always, other keys only
    # where they differ from the common value.
    assert labels["model=cnn · optimizer=adam · epochs=20 · lr=0.001"]["runs"] == 2
    assert labels["model=mlp · optimizer=sgd · epochs=10 · lr=0.1"]["seeds"] == 2
    assert (
        "model=mlp · optimizer=adam · hidden=256 · epochs=10 · lr=0.001 · deterministic=False"
        in labels
    )
    assert "model=cnn · optimizer=adam · dropout=0.2 · epochs=30 · lr=0.003 · device=cuda" in labels
    assert all("None" not in label and len(label) <= 90 for label in labels)
    # The full config of a group is kept for the hover.
    full = labels["model=cnn · optimizer=adam · epochs=20 · lr=0.001"]["full"]
    assert "batch_size=64" in full and "device=auto" in full
    # Best first by test.acc (maximised): the groups and the leaderboard agree.
    best = max(
        (r for r in rep["run_table"] if r["test.acc"] is not None), key=lambda r: r["test.acc"]
    )
    assert rep["leaderboard"][0]["run_id"] == best["run_id"]
    assert rep["groups"][0]["label"] == best["group"]


def test_rank_option(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rep = report_of(sweep, tmp_path / "a", "--rank", "train.loss")
    lasts = {r["run_id"]: r["train.loss"] for r in rep["run_table"]}
    assert rep["leaderboard"][0]["run_id"] == min(lasts, key=lasts.__getitem__) == 1
    assert rep["groups"][0]["label"] == "method=GD"
    rep = report_of(sweep, tmp_path / "b", "--rank", "test.acc:min")
    assert [r["run_id"] for r in rep["leaderboard"][:3]] == [1, 2, 3]
    assert "test.acc" in rep["metrics"]  # the rank metric is drawn too
    capsys.readouterr()
    out = tmp_path / "c"
    assert main(["report", str(sweep), "--rank", "test.acc:best", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "runlab report: error: --rank 'test.acc:best': write METRIC, METRIC:max or METRIC:min"
    ]
    assert not out.exists()


def test_seeds_are_grouped_only_when_asked(sweep: Path, tmp_path: Path) -> None:
    rep = report_of(sweep, tmp_path / "rep", "--by", "config.seed")
    assert rep["by"] == ["config.seed"] and rep["seeds"] == []
    assert sorted(g["label"] for g in rep["groups"]) == ["seed=0", "seed=1", "seed=2"]


# ----------------------------------------------------------- hostile values
def test_config_and_metric_names_are_escaped(tmp_path: Path) -> None:
    from report_data import HOSTILE, QUOTED, hostile

    logs = tmp_path / "logs"
    hostile(logs)
    out = tmp_path / "rep"
    rep = report_of(logs, out, "--metric", f"test.{QUOTED}", "--metric", "test.loss")
    page = (out / "index.html").read_text()
    body = page[page.index("</head>") :]
    assert HOSTILE not in body and "<b>x" not in body and "</script><b>" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "acc &quot;top&quot; it&#x27;s" in body
    # The run with a NaN final value is ranked last, shown as NaN; the curves hold nulls.
    assert rep["rank"]["metric"] == f"test.{QUOTED}"
    assert [r["rank"] for r in rep["leaderboard"]] == [1, 2, None]
    assert rep["nonfinite"][str(rep["leaderboard"][2]["run_id"])][f"test.{QUOTED}"] == "NaN"
    assert ">NaN</td>" in body and ">inf</td>" in body
    assert sorted(p.name for p in out.glob("*.png")) == ["test.acc_top_it_s.png", "test.loss.png"]


def test_dollar_signs_in_labels_are_text_in_the_pngs(tmp_path: Path) -> None:
    """matplotlib reads `$...$` as mathtext: a config value `$\\notacommand{$` made
    the PNG (and so the whole report) fail, and `$x^2$` was drawn as x²."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import report_data

    logs = tmp_path / "logs"
    for name in (r"$\notacommand{$", "$x^2$"):
        config = report_data.example_config(**{"model.name": name})
        report_data.make_run(logs, config, {"test.acc": [0.1, 0.5, 0.7]})
    out = tmp_path / "rep"
    assert main(["report", str(logs), "--metric", "test.acc", "--out", str(out)]) == 0
    assert (out / "test.acc.png").stat().st_size > 1000
    labels = {g["label"] for g in orjson.loads((out / "report.json").read_bytes())["groups"]}
    assert labels == {r"model=$\notacommand{$", "model=$x^2$"}


def test_a_group_whose_runs_end_non_finite_says_so_in_the_final_values(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import report_data

    logs = tmp_path / "logs"
    report_data.make_run(logs, report_data.example_config(lr=0.01), {"test.acc": [0.5, math.nan]})
    report_data.make_run(logs, report_data.example_config(lr=0.1), {"test.acc": [0.5, 0.75]})
    out = tmp_path / "rep"
    assert main(["report", str(logs), "--metric", "test.acc", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    final = page.split("Final values per group", 1)[1]
    assert ">1 run(s) NaN/inf</td>" in final and ">0.75</td>" in final


def test_template_slots_in_values_stay_text(tmp_path: Path) -> None:
    """The page is the package's template files with the sections put in, in one pass:
    a config value or a metric name that is a slot (``{{script}}``) or a script is text."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import report_data

    script = "</script><script>alert(1)</script>"
    logs = tmp_path / "logs"
    for name, note in ((script, "{{script}}"), ("{{css}}", "{{x}}")):
        config = report_data.example_config(**{"model.name": name})
        config["note"] = note
        report_data.make_run(logs, config, {"test.acc{{css}}": [0.1, 0.5], "test.loss": [1, 2]})
    out = tmp_path / "rep"
    assert main(["report", str(logs), "--metric", "test.acc{{css}}", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    body = page[page.index("</head>") :]
    assert script not in page and "<script>alert" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "model={{css}}" in body and "test.acc{{css}}" in body and "{{x}}" in body
    assert page.count("<script") == 3 and page.count("<style>") == 1  # nothing put in twice
    rep = orjson.loads((out / "report.json").read_bytes())
    labels = {g["label"] for g in rep["groups"]}
    assert labels == {f"model={script} · note={{{{script}}}}", "model={{css}} · note={{x}}"}


def test_templates_are_package_data() -> None:
    """index.html's frame, CSS and script are files of the package, read with
    importlib.resources, and pyproject names them as package data (so the wheel has them)."""
    import fnmatch
    import tomllib
    from importlib import resources

    from runlab.results.report import _html

    folder = resources.files("runlab.results.report").joinpath("templates")
    for name in _html.TEMPLATES:
        assert folder.joinpath(name).is_file(), name
        assert _html.template(name).strip()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["runlab.results.report"]
    for name in _html.TEMPLATES:
        assert any(fnmatch.fnmatch(f"templates/{name}", p) for p in patterns), name
    frame = _html.template("report.html")
    assert all(f"{{{{{slot}}}}}" in frame for slot in ("title", "css", "script", "figures"))


def test_status_colours_are_runlab_status_colours(tmp_path: Path) -> None:
    from runlab.status import Status

    logs = tmp_path / "logs"
    make_run(logs, {"lr": 0.1, "seed": 0}, [1.0, 0.5])
    make_run(logs, {"lr": 0.2, "seed": 0}, [1.0, 0.7], status="TIMEOUT")
    out = tmp_path / "rep"
    report_of(logs, out)
    page = (out / "index.html").read_text()
    assert f'<span style="background:{Status.TIMEOUT.hex}">TIMEOUT 1</span>' in page
    assert f'<span style="color:{Status.TIMEOUT.hex};font-weight:600">TIMEOUT</span>' in page


def test_report_package_has_no_cycle_and_no_imports_in_functions() -> None:
    """runlab.results.report's modules import runlab only at their top, never the
    package's ``__init__``, and not each other in a cycle."""
    import ast

    import runlab.results.report as package

    folder = Path(package.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        mine = graph.setdefault(path.stem, set())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("runlab"):
                continue
            assert id(node) in top, f"{path.name}:{node.lineno} imports {node.module} in a function"
            if node.module.startswith("runlab.results.report"):
                assert path.stem == "__init__" or node.module != "runlab.results.report", path
                mine.add(node.module.rsplit(".", 1)[-1])
    seen: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        for dep in graph.get(name, ()):
            visit(dep, (*path, name))
        seen.append(name)

    for name in graph:
        visit(name, ())
    assert not (folder.parent / "report_html.py").exists()
