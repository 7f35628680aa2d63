"""The generated reference pages under docs/reference/ cannot drift from the code.

- every page of ``runlab.cli.reference.PAGES`` is what the code generates now, and
  ``--check`` says so (exit 0) or names the stale page (exit 1);
- every ``RUNLAB_*`` name in runlab's source is in the registry ``runlab.envvars``, and
  every registry entry is still named somewhere in the source;
- the JSON Schemas of the record format accept the files of real runs: the example task,
  a failed run, a run made by hand with ``RunLogger``, and a run of a dirty tree whose
  ``inputs.json`` and ``env.json`` hold every part of the launch inputs and code record;
- the record format's list of every captured input names only fields the schemas hold,
  and covers every part of ``inputs.yaml`` and of ``env.yaml``'s ``git``;
- the query page's ``pycon`` examples give the output they show.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ROOT, TASKS, git, make_project, run_task, runlab_cli
from runlab import envvars
from runlab.cli import reference
from runlab.record.logger import RunLogger
from runlab.status import markdown_table

SRC = ROOT / "src" / "runlab"
PAGES = ROOT / "docs" / "reference"
VARIABLE = re.compile(r"RUNLAB_[A-Z0-9_]+")


# ------------------------------------------------------------------ the pages are current
@pytest.mark.parametrize("name", sorted(reference.PAGES))
def test_the_committed_page_is_what_the_code_generates(name: str) -> None:
    page = PAGES / name
    assert page.is_file(), f"docs/reference/{name} is missing: run `{reference.COMMAND}`"
    assert page.read_text() == reference.PAGES[name](), (
        f"docs/reference/{name} is stale: run `{reference.COMMAND}` and commit the page"
    )


def test_check_names_a_stale_page_and_write_repairs_it(tmp_path: Path) -> None:
    reference.write(tmp_path)
    assert reference.stale(tmp_path) == []
    (tmp_path / "cli.md").write_text("# old\n")
    (tmp_path / "query.md").unlink()
    assert reference.stale(tmp_path) == ["cli.md", "query.md"]

    def check(*root: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "runlab.cli.reference", "--check", *root]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)

    out = check("--root", str(tmp_path))
    assert out.returncode == 1
    assert "cli.md is stale" in out.stderr and "query.md is stale" in out.stderr
    assert reference.COMMAND in out.stderr
    out = check()
    assert out.returncode == 0, out.stderr  # the committed pages themselves are current
    reference.main(["--write", "--root", str(tmp_path)])
    assert check("--root", str(tmp_path)).returncode == 0


def test_the_statuses_page_holds_the_status_table() -> None:
    assert markdown_table() in (PAGES / "statuses.md").read_text(), (
        f"docs/reference/statuses.md lacks the status table: run `{reference.COMMAND}`"
    )


def test_the_cli_page_names_every_option_of_every_command() -> None:
    text = (PAGES / "cli.md").read_text()
    for name in reference.COMMANDS:
        parser = reference._subparser(name)
        assert f"## runlab {name}\n" in text
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, f"runlab {name} {option} is not on the page"
            assert action.help, f"runlab {name} {action.option_strings or action.dest}: no help"


# ------------------------------------------------------------------ environment variables
def _constants() -> dict[str, set[str]]:
    """Each RUNLAB_* name (or prefix, such as ``RUNLAB_CODE_``) in a string constant of
    runlab's source, docstrings included, with the files naming it (the registry aside)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        if path.name == "envvars.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for name in VARIABLE.findall(node.value):
                    found.setdefault(name, set()).add(str(path.relative_to(SRC)))
    return found


def test_every_runlab_variable_in_the_source_is_registered() -> None:
    registered = {v.name for v in envvars.RUNLAB}
    missing = {
        name: sorted(files)
        for name, files in _constants().items()
        if name not in registered
        and not (name.endswith("_") and any(r.startswith(name) for r in registered))
    }
    assert not missing, f"add these to RUNLAB in src/runlab/envvars.py: {missing}"


def test_every_registered_variable_is_still_used() -> None:
    named = _constants()
    unused = [v.name for v in envvars.RUNLAB if v.name not in named]
    assert not unused, f"remove these from src/runlab/envvars.py (no module names them): {unused}"
    source = "".join(p.read_text() for p in SRC.rglob("*.py") if p.name != "envvars.py")
    gone = [v.name for v in envvars.OTHERS if f'"{v.name}"' not in source]
    assert not gone, f"remove these from OTHERS in src/runlab/envvars.py: {gone}"


def test_the_environment_page_lists_every_variable() -> None:
    text = (PAGES / "environment.md").read_text()
    for var in (*envvars.RUNLAB, *envvars.OTHERS):
        assert f"| `{var.name}` |" in text


# ------------------------------------------------------------------ schemas against real runs
def _schema(name: str) -> dict:
    schema = json.loads(reference._schema_path(name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _validate_run(run: Path) -> None:
    info, env, row, inputs = (
        _schema(f"{n}.schema.json") for n in ("info", "env", "metrics-row", "inputs")
    )
    for stem, schema in (("info", info), ("env", env), ("inputs", inputs)):
        for file, load in ((f"{stem}.yaml", yaml.safe_load), (f"{stem}.json", json.loads)):
            if (run / "metadata" / file).exists() or stem == "info":
                jsonschema.validate(load((run / "metadata" / file).read_text()), schema)
    for file in (run / "metrics").glob("*.jsonl"):
        for line in file.read_text().splitlines():
            jsonschema.validate(json.loads(line), row)


def _pattern(path: str) -> re.Pattern[str]:
    """A row's path of the record-format page as a regex (``<name>``: one name; ``dir/``:
    anything under it)."""
    body = re.sub(r"<[a-z_]+>", "[^/]+", re.escape(path).replace(r"\<", "<").replace(r"\>", ">"))
    return re.compile(body + (".*" if path.endswith("/") else "") + r"\Z")


def _undocumented(root: Path, rows: tuple[tuple[str, str, str, str], ...]) -> list[str]:
    """The files under ``root`` that no row of the record-format page describes."""
    patterns = [_pattern(row[0]) for row in rows]
    files = [str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()]
    return [f for f in files if not any(p.match(f) for p in patterns)]


def _status(run: Path) -> str:
    return yaml.safe_load((run / "metadata" / "info.yaml").read_text())["status"]


def test_the_schemas_accept_the_files_of_real_runs(logs: Path) -> None:
    run_task(ROOT / "tasks" / "train.py", "epochs=1")
    failed = run_task(TASKS / "quadratic.py", "interval=-1", "steps=2", check=False)
    assert failed.returncode != 0
    with RunLogger(logs / "50", config={"lr": 0.1, "token": "x"}) as logger:
        logger.log_metrics({"loss": float("nan"), "ok": True, "note": "text"}, name="train")
        logger.log_metrics({"loss": 1.0}, name="train")
    for run in logs.iterdir():
        _validate_run(run)
        assert _undocumented(run, reference.RUN_FILES) == [], "add them to RUN_FILES"
    assert {r.name: _status(r) for r in logs.iterdir()} == {
        "1": "COMPLETE",
        "2": "FAILED",
        "50": "COMPLETE",
    }
    assert not (logs / "50" / "metadata" / "env.yaml").exists()  # made by hand: no env record
    assert (logs / "1" / "metadata" / "env.json").exists()


def test_the_schemas_accept_a_submitted_sweep(tmp_path: Path) -> None:
    repo = make_project(tmp_path, TASKS / "quadratic.py", TASKS / "quadratic.yaml")
    runlab_cli(
        repo,
        "submit",
        "tasks/quadratic.py",
        "--launcher",
        "local",
        "--wait",
        "-y",
        "steps=1",
        "interval=0",
        "x=0,1",
    )
    logs = repo / "logs"
    runs = [p for p in logs.iterdir() if not p.name.startswith(".")]
    assert len(runs) == 2
    for run in runs:
        _validate_run(run)
        assert _status(run) == "COMPLETE"
        assert yaml.safe_load((run / "metadata" / "info.yaml").read_text())["sweep_id"]
    for run in runs:
        assert _undocumented(run, reference.RUN_FILES) == [], "add them to RUN_FILES"
    hidden = [p for p in logs.iterdir() if p.name.startswith(".")]
    assert {p.name for p in hidden} >= {".sweeps", ".snapshots"}
    assert sorted(_undocumented(logs, reference.LOGS_FOLDERS)) == sorted(
        str(f.relative_to(logs)) for r in runs for f in r.rglob("*") if f.is_file()
    ), "add the hidden folders' files to LOGS_FOLDERS"
    records = list((logs / ".sweeps").glob("*.json"))
    assert len(records) == 1
    jsonschema.validate(json.loads(records[0].read_text()), _schema(reference.SWEEP_SCHEMA.name))


def test_the_schemas_accept_the_inputs_and_code_record_of_a_dirty_run(
    tmp_path: Path, logs: Path
) -> None:
    repo = make_project(tmp_path, TASKS / "quadratic.py", TASKS / "quadratic.yaml")
    with (repo / "tasks" / "quadratic.py").open("a") as f:
        f.write("# an uncommitted change\n")
    proc = subprocess.run(
        [sys.executable, "tasks/quadratic.py", "+z=1", "hydra.job.chdir=false", "steps=1"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = [p for p in logs.iterdir() if not p.name.startswith(".")]
    _validate_run(run)
    assert _undocumented(run, reference.RUN_FILES) == [], "add them to RUN_FILES"
    inputs = json.loads((run / "metadata" / "inputs.json").read_text())
    jsonschema.validate(inputs, _schema("inputs.schema.json"))
    assert inputs["task"]["in_code"] == "tasks/quadratic.py"
    assert inputs["config"]["in_code"] == "tasks" and inputs["multirun"] is None
    assert "+z=1" in inputs["overrides"]["task"]
    assert inputs["overrides"]["hydra"] == ["hydra.job.chdir=false"]
    assert "RUNLAB_LOGS" in inputs["env"]  # the example's config reads it
    env = json.loads((run / "metadata" / "env.json").read_text())
    jsonschema.validate(env, _schema("env.schema.json"))
    assert env["git"]["dirty"] is True
    assert set(env["git"]["files"]) == {"tasks/quadratic.py"}
    assert env["git"]["patch_sha256"]
    assert git(repo, "status", "--porcelain")  # still dirty: nothing was committed for it
    # Parts a plain dirty tree has not: a submodule, a filtered file.
    env["git"]["submodules"] = {"vendor/lib": {"commit": "0" * 40, "dirty": False}}
    env["git"]["filtered"] = ["data/weights.bin"]
    jsonschema.validate(env, _schema("env.schema.json"))
    bad = {**env, "git": {**env["git"], "files": {"x.py": "sha256 of x"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema("env.schema.json"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**inputs, "multirun": {"num": "0"}}, _schema("inputs.schema.json"))


def test_the_captured_inputs_cover_every_part_of_the_inputs_and_code_records() -> None:
    text = (PAGES / "record-format.md").read_text()
    assert "## Every captured input\n" in text and reference.captured_inputs() in text
    named = {ref for _, refs, _ in reference.CAPTURED_INPUTS for ref in refs}
    for ref in named:  # every field named exists (a KeyError otherwise)
        reference._field(ref)
    covered = {r.partition(":")[2].split(".")[0] for r in named if r.startswith("inputs:")}
    assert covered == set(_schema("inputs.schema.json")["properties"])
    git_part = _schema("env.schema.json")["properties"]["git"]["properties"]
    covered_git = {r.partition(".")[2] for r in named if r.startswith("env:git.")}
    assert set(git_part) - covered_git == {"branch", "root", "note"}  # where, not what
    with pytest.raises(KeyError):
        reference._field("env:git.no_such_field")


def test_a_file_outside_the_schema_is_refused() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"run_id": "007", "status": "COMPLETE"}, _schema("info.schema.json"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"run_id": "1", "status": "CORRUPT"}, _schema("info.schema.json"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"step": 0, "time": 1.0, "x": [1]}, _schema("metrics-row.schema.json"))


def test_the_record_format_page_renders_every_schema() -> None:
    text = (PAGES / "record-format.md").read_text()
    for name in ("info", "env", "metrics-row", "inputs"):
        for key in _schema(f"{name}.schema.json")["properties"]:
            assert f"| `{key}` |" in text
    for key in _schema("env.schema.json")["properties"]["git"]["properties"]:
        assert f"| `git.{key}` |" in text
    assert reference.SWEEP_SCHEMA.name in text


# ------------------------------------------------------------------ the query page's examples
def test_the_query_examples_give_what_they_show() -> None:
    text = (PAGES / "query.md").read_text()
    blocks = re.findall(r"```pycon\n(.*?)```", text, re.S)
    assert blocks, "docs/reference/query.md has no pycon example"
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for i, block in enumerate(blocks):
        test = parser.get_doctest(block, {}, f"query.md[{i}]", "docs/reference/query.md", 0)
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 5


# ------------------------------------------------------------------ the API page
ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|exc|obj):`")


def _documented() -> list[tuple[str, object, bool]]:
    """Each object a ``::: module.name`` line of api.md renders, and its public members."""
    found = []
    for path in re.findall(r"^::: (\S+)$", (PAGES / "api.md").read_text(), re.M):
        module, _, name = path.rpartition(".")
        obj = getattr(importlib.import_module(module), name)
        obj = getattr(obj, "__wrapped__", obj)
        found.append((path, obj, True))
        for key, member in vars(obj).items() if inspect.isclass(obj) else ():
            if not key.startswith("_"):
                member = member.fget if isinstance(member, property) else member
                found.append((f"{path}.{key}", getattr(member, "__func__", member), False))
    return found


def test_the_api_page_renders_documented_objects_without_sphinx_roles() -> None:
    documented = _documented()
    assert {p for p, _, top in documented if top} >= {
        "runlab.record.launch.launch",
        "runlab.record.logger.RunLogger",
        "runlab.results.reader.Reader",
        "runlab.results.reader.runs",
    }
    for path, obj, top in documented:
        if inspect.isfunction(obj) or inspect.isclass(obj):
            doc = inspect.getdoc(obj) or ""
            assert doc or not top, f"{path} has no docstring: the API page would show nothing"
            assert not ROLE.search(doc), (
                f"{path}'s docstring uses a Sphinx role (:func:`x`), shown raw by the docs "
                "site: write `x` instead"
            )
