"""runlab as a package: one version everywhere, the changelog's form, the dependency
lists kept alike, and the working-tree check of the test session itself."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

import runlab
from conftest import ROOT, git, working_tree_entries
from runlab.cli import main

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def test_the_version_is_written_once_and_read_by_the_build() -> None:
    assert SEMVER.match(runlab.__version__), runlab.__version__
    project = PYPROJECT["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "runlab.__version__"}
    # setuptools reads it without importing runlab: a plain string assignment
    source = (ROOT / "src" / "runlab" / "__init__.py").read_text()
    assert re.search(rf'^__version__ = "{re.escape(runlab.__version__)}"$', source, re.M)


def test_cli_version_and_citation_agree(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"runlab {runlab.__version__}"
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == runlab.__version__


def test_changelog_is_keep_a_changelog_and_names_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", text, re.M)
    assert headings[0] == ("Unreleased", "")
    releases = headings[1:]
    assert releases and releases[0][0] == runlab.__version__
    for version, rest in releases:
        assert SEMVER.match(version), version
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", rest), (version, rest)
    versions = [tuple(int(n) for n in v.split(".")) for v, _ in releases]
    assert versions == sorted(versions, reverse=True), "newest first"
    sections = set(re.findall(r"^### (.+)$", text, re.M))
    assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    links = dict(re.findall(r"^\[([^\]]+)\]: (\S+)$", text, re.M))
    assert set(links) == {name for name, _ in headings}
    assert links["Unreleased"].endswith(f"/compare/v{runlab.__version__}...HEAD")
    # the documentation site shows this file, not a copy of it
    page = (ROOT / "docs" / "changelog.md").read_text()
    assert '--8<-- "CHANGELOG.md"' in page and "## [" not in page


def _requirements(entries: list, groups: dict[str, list], extras: dict[str, list]) -> set[str]:
    found: set[str] = set()
    for entry in entries:
        if isinstance(entry, dict):
            found |= _requirements(groups[entry["include-group"]], groups, extras)
        elif entry.startswith("runlab["):
            for extra in entry[len("runlab[") : -1].split(","):
                found |= _requirements(extras[extra], groups, extras)
        else:
            found.add(entry)
    return found


def test_dev_extra_and_dev_group_hold_the_same_packages() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    groups = PYPROJECT["dependency-groups"]
    assert _requirements(extras["dev"], groups, extras) == _requirements(
        groups["dev"], groups, extras
    )
    assert _requirements(groups["docs"], groups, extras) == set(extras["docs"])


def test_working_tree_check_sees_new_files_but_not_caches(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("reports/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    before = working_tree_entries(repo)
    assert before == set()
    (repo / "reports" / "latest").mkdir(parents=True)
    (repo / "reports" / "latest" / "index.html").write_text("<html></html>")
    (repo / "stray.txt").write_text("x")
    (repo / ".gitignore").write_text("reports/\nmore/\n")
    for cache in (".pytest_cache", ".hypothesis", "__pycache__", "runlab.egg-info"):
        (repo / cache).mkdir()
        (repo / cache / "f").write_text("x")
    after = working_tree_entries(repo)
    assert after == {"!! reports/", "?? stray.txt", " M .gitignore"}
    plain = tmp_path / "plain"  # not a git working tree: nothing to compare
    plain.mkdir()
    assert working_tree_entries(plain) is None
