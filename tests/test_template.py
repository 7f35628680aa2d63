"""The files a template hands to every clone: workflows, license, citation, hooks.

Checked with the real tools (zizmor, actionlint, pre-commit, git) and the CFF
schema, so that a clone inherits pinned, least-privilege workflows and hooks
that run offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PIXI_SCHEMA = ROOT.parent / "shared" / "pixi" / "schema.json"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]' (or pixi install)")
    return path


def _uses_lines(text: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*-?\s*uses:\s*(.+)$", text, re.M)]


def _zizmor(path: Path) -> tuple[int, list[dict]]:
    proc = subprocess.run(
        [_tool("zizmor"), "--offline", "--min-severity=medium", "--format=json", str(path)],
        capture_output=True,
        text=True,
    )
    return proc.returncode, json.loads(proc.stdout or "[]")


# ------------------------------------------------------------------- workflows


def test_zizmor_finds_nothing_at_medium_or_above() -> None:
    code, findings = _zizmor(ROOT / ".github" / "workflows")
    assert findings == [], "\n".join(f"{f['ident']}: {f['desc']}" for f in findings)
    assert code == 0


def test_zizmor_really_checks(tmp_path: Path) -> None:
    # The same workflow with a movable tag and persisted credentials must be flagged.
    text = (ROOT / ".github" / "workflows" / "test.yml").read_text()
    text = re.sub(r"actions/checkout@[0-9a-f]{40} # v[\d.]+", "actions/checkout@v5", text)
    text = text.replace("persist-credentials: false", "fetch-depth: 1")
    (tmp_path / "test.yml").write_text(text)
    _, findings = _zizmor(tmp_path / "test.yml")
    assert {"unpinned-uses", "artipacked"} <= {f["ident"] for f in findings}


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    uses = [u for wf in WORKFLOWS for u in _uses_lines(wf.read_text())]
    assert uses, "no actions found: the workflows moved?"
    bad = [u for u in uses if not SHA_PIN.match(u)]
    assert not bad, f"pin these to a full commit SHA with '# vX.Y.Z' beside it: {bad}"


def test_checkouts_keep_no_credentials() -> None:
    for wf in WORKFLOWS:
        for job in yaml.safe_load(wf.read_text())["jobs"].values():
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, wf.name


def test_permissions_are_least_privilege_per_job() -> None:
    writers = set()
    for wf in WORKFLOWS:
        doc = yaml.safe_load(wf.read_text())
        assert doc.get("permissions") == {}, f"{wf.name}: the workflow grants nothing by default"
        for name, job in doc["jobs"].items():
            perms = job.get("permissions")
            assert isinstance(perms, dict), f"{wf.name}: job {name} must declare its permissions"
            if any(v == "write" for v in perms.values()):
                writers.add((wf.name, name))
                allowed = WRITERS.get((wf.name, name))
                assert allowed is not None and perms == allowed, (wf.name, name, perms)
    assert writers == set(WRITERS), "only the lock job, Pages and the PyPI release may write"


# The only jobs that may write, and exactly what each may write.
WRITERS = {
    ("lock.yml", "pixi-lock"): {"contents": "write", "pull-requests": "write"},
    ("docs.yml", "deploy"): {"pages": "write", "id-token": "write"},
    ("release.yml", "publish"): {"id-token": "write"},  # PyPI's trusted publishing
}


def test_workflows_pass_actionlint() -> None:
    proc = subprocess.run(
        [_tool("actionlint"), "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_renovate_updates_actions_and_pixi() -> None:
    config = json.loads((ROOT / "renovate.json").read_text())
    assert {"github-actions", "pixi"} <= set(config["enabledManagers"])
    assert "helpers:pinGitHubActionDigests" in config["extends"]


# ------------------------------------------------------------ license, citation


def test_license_file_is_the_declared_license() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["license"]
    declared = declared["text"] if isinstance(declared, dict) else declared
    assert declared == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} \S", text, re.M)
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["license"] == declared


def _cff_schema(cache: Path) -> dict:
    """The CFF 1.2.0 JSON schema, as shipped inside the cffconvert wheel (from PyPI, cached)."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("cffconvert-2.0.0-*.whl"))
    if not wheels:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
        proc = subprocess.run(
            [*pip, "--dest", str(cache), "cffconvert==2.0.0"],
            capture_output=True,
            text=True,
        )
        wheels = sorted(cache.glob("cffconvert-2.0.0-*.whl"))
        if not wheels:
            pytest.fail(f"could not fetch the CFF schema (cffconvert from PyPI): {proc.stderr}")
    with zipfile.ZipFile(wheels[0]) as whl:
        return json.loads(whl.read("cffconvert/schemas/1.2.0/schema.json"))


def test_citation_file_is_valid_cff() -> None:
    import jsonschema

    schema = _cff_schema(ROOT / ".pytest_cache" / "cff")
    validator = jsonschema.Draft7Validator(schema)
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(cff)]
    assert not errors, errors
    assert cff["title"] and cff["authors"]
    # The schema really checks: a citation without authors is refused.
    assert not validator.is_valid({k: v for k, v in cff.items() if k != "authors"})


def test_pixi_lock_is_generated_and_merged_as_binary() -> None:
    proc = subprocess.run(
        ["git", "check-attr", "merge", "linguist-generated", "diff", "--", "pixi.lock"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    attrs = dict(line.rsplit(": ", 2)[1:] for line in proc.stdout.splitlines())
    assert attrs == {"merge": "binary", "linguist-generated": "true", "diff": "unset"}


# ------------------------------------------------------------------------ hooks


def _copy_repo(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dest, check=True)
    return dest


def test_hooks_are_local_and_are_what_lint_runs() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert [r["repo"] for r in config["repos"]] == ["local"]
    hooks = {h["id"]: h for h in config["repos"][0]["hooks"]}
    assert {"ruff-check", "ruff-format", "actionlint", "zizmor", "pixi-manifest"} <= set(hooks)
    assert all(h["language"] == "system" for h in hooks.values())
    lint = tomllib.loads((ROOT / "pixi.toml").read_text())["tasks"]["lint"]["cmd"]
    assert lint.startswith("pre-commit run --all-files")


def test_hooks_pass_offline_and_catch_an_unpinned_action(tmp_path: Path) -> None:
    repo = _copy_repo(tmp_path / "repo")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    if PIXI_SCHEMA.is_file():
        env["PIXI_SCHEMA"] = str(PIXI_SCHEMA)
    run = [_tool("pre-commit"), "run", "--all-files"]
    proc = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wf = repo / ".github" / "workflows" / "lock.yml"
    wf.write_text(
        re.sub(r"actions/checkout@[0-9a-f]{40} # v[\d.]+", "actions/checkout@v5", wf.read_text())
    )
    proc = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert re.search(r"zizmor.*Failed", proc.stdout), proc.stdout
