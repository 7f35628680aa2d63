"""Environment capture on the trees users really have: a virtualenv of 40,000 files inside
the repository, non-UTF-8 file names and contents, binary files, a missing git.

Every test builds its tree for real (a git repository in a temporary folder) and runs
runlab as a user would where it matters (a task process, `runlab submit`, `show`,
`reproduce`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TASKS, task_env
from runlab.record import environment

VENV_FILES = 40_000
NON_UTF8_NAME = b"caf\xe9.bin"  # Latin-1 "café": not valid UTF-8
NON_UTF8_CONTENT = b"\xff\xfe\x00\x80 binary \x00\xc3"


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout


def new_repo(repo: Path) -> Path:
    """A committed project holding the slow test task, a source file and a binary file."""
    (repo / "tasks").mkdir(parents=True)
    shutil.copy(TASKS / "slow.py", repo / "tasks" / "slow.py")
    shutil.copy(TASKS / "slow.yaml", repo / "tasks" / "slow.yaml")
    (repo / "src").mkdir()
    (repo / "src" / "model.py").write_text("WIDTH = 8\n")
    (repo / "data.bin").write_bytes(bytes(range(256)))
    (repo / ".gitignore").write_text("logs/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def make_venv(folder: Path, files: int = VENV_FILES) -> None:
    """A virtualenv-like folder of ``files`` small files (plus one non-UTF-8 name), quickly."""
    per_dir = 200
    for d in range(files // per_dir):
        pkg = folder / "lib" / "python3.12" / "site-packages" / f"pkg{d}"
        pkg.mkdir(parents=True)
        for f in range(per_dir):
            with open(pkg / f"m{f}.py", "wb") as fh:
                fh.write(b"x = 1\n")
    with open(os.path.join(os.fsencode(folder), b"\xff\xfe.py"), "wb") as fh:
        fh.write(NON_UTF8_CONTENT)


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dirty project: edits (non-UTF-8, binary), small new files, a venv/ and a 2 MiB file.

    Tests only read it (their logs go elsewhere), so it is built once.
    """
    repo = new_repo(tmp_path_factory.mktemp("big") / "project")
    with open(repo / "src" / "model.py", "ab") as fh:
        fh.write(b"NAME = 'caf\xe9'  # Latin-1, not UTF-8\n")
    (repo / "data.bin").write_bytes(bytes(range(255, -1, -1)) + NON_UTF8_CONTENT)
    (repo / "notes.txt").write_text("a new untracked file\n")
    with open(os.path.join(os.fsencode(repo), NON_UTF8_NAME), "wb") as fh:
        fh.write(NON_UTF8_CONTENT)
    (repo / "big.bin").write_bytes(os.urandom(2 * 2**20))
    make_venv(repo / "venv")
    return repo


def apply_to_clone(repo: Path, diff: bytes, dest: Path) -> Path:
    """A fresh clone of ``repo``'s HEAD with ``diff`` applied by ``git apply --binary``."""
    subprocess.run(["git", "clone", "-q", str(repo), str(dest)], check=True)
    subprocess.run(["git", "apply", "--binary", "-"], cwd=dest, input=diff, check=True)
    return dest


def assert_recorded_tree(repo: Path, copy: Path) -> None:
    """``copy`` has the edits and the small new files of ``repo``, not venv/ nor big.bin."""
    for name in (b"src/model.py", b"data.bin", b"notes.txt", NON_UTF8_NAME):
        a = Path(os.fsdecode(os.path.join(os.fsencode(repo), name)))
        b = Path(os.fsdecode(os.path.join(os.fsencode(copy), name)))
        assert b.read_bytes() == a.read_bytes(), name
    assert not (copy / "venv").exists() and not (copy / "big.bin").exists()


# ------------------------------------------------------------------ capture itself


def test_capture_of_a_tree_with_a_40000_file_venv_is_complete(
    big_tree: Path, tmp_path: Path
) -> None:
    env, diff = environment.capture(big_tree / "tasks")
    git_state = env["git"]
    assert git_state["commit"] == git(big_tree, "rev-parse", "HEAD").strip()
    assert git_state["dirty"] is True
    assert env["packages"]["PyYAML"] and env["python"]["version"]
    # what was left out: listed, counted, and said in one line with what to do
    assert sorted(git_state["untracked_skipped"]) == ["big.bin", "venv/"]
    assert git_state["untracked_skipped_files"] == VENV_FILES + 2
    (problem,) = env["problems"]
    assert "venv/ (40,001 files)" in problem and "big.bin" in problem
    assert "RUNLAB_UNTRACKED_MAX_FILES" in problem and ".gitignore" in problem
    # the patch: bytes, small, and it rebuilds the tree on a clean checkout of the commit
    assert isinstance(diff, bytes) and len(diff) < 100_000
    assert b"venv/" not in diff
    assert_recorded_tree(big_tree, apply_to_clone(big_tree, diff, tmp_path / "clone"))


def test_untracked_limits_are_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = new_repo(tmp_path / "project")
    (repo / "extra").mkdir()
    for i in range(5):
        (repo / "extra" / f"f{i}.txt").write_text(f"file {i}\n")
    (repo / "big.bin").write_bytes(os.urandom(2 * 2**20))

    env, diff = environment.capture(repo)  # defaults: 100 files, 10 MiB, 1 MiB per file
    assert b"extra/f4.txt" in diff and b"big.bin" not in diff
    assert env["git"]["untracked_skipped"] == ["big.bin"]

    monkeypatch.setenv("RUNLAB_UNTRACKED_MAX_FILES", "3")
    env, diff = environment.capture(repo)
    assert diff is None  # nothing within the limits: no patch
    assert sorted(env["git"]["untracked_skipped"]) == ["big.bin", "extra/"]
    assert env["git"]["untracked_skipped_files"] == 6
    assert "extra/ (5 files)" in env["problems"][0]

    monkeypatch.delenv("RUNLAB_UNTRACKED_MAX_FILES")
    monkeypatch.setenv("RUNLAB_UNTRACKED_MAX_FILE_BYTES", str(4 * 2**20))
    env, diff = environment.capture(repo)
    assert b"big.bin" in diff and b"extra/f4.txt" in diff
    assert env["problems"] == [] and "untracked_skipped" not in env["git"]
    assert_applies = apply_to_clone(repo, diff, tmp_path / "clone")
    assert (assert_applies / "big.bin").read_bytes() == (repo / "big.bin").read_bytes()

    monkeypatch.setenv("RUNLAB_UNTRACKED_MAX_BYTES", "many")
    env, _ = environment.capture(repo)
    assert any("RUNLAB_UNTRACKED_MAX_BYTES='many'" in p for p in env["problems"])


def test_without_git_the_other_parts_are_still_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = new_repo(tmp_path / "project")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no git on PATH
    env, diff = environment.capture(repo)
    assert diff is None and env["git"]["commit"] is None
    assert any(p.startswith("git:") and "not installed" in p for p in env["problems"])
    assert env["packages"]["PyYAML"] and env["python"]["version"]


FAKE_TORCH_INIT = """
import os, types
with open(os.environ["TORCH_IMPORT_MARKER"], "a") as fh:
    fh.write("imported\\n")
__version__ = "9.9.9"
version = types.SimpleNamespace(cuda="12.1")
cuda = types.SimpleNamespace(is_available=lambda: False)
"""


def fake_torch(where: Path) -> Path:
    """An installed 'torch' 9.9.9 whose import leaves a mark in $TORCH_IMPORT_MARKER."""
    (where / "torch").mkdir(parents=True)
    (where / "torch" / "__init__.py").write_text(FAKE_TORCH_INIT)
    (where / "torch" / "version.py").write_text(
        "from typing import Optional\n__version__ = '9.9.9'\ncuda: Optional[str] = '12.1'\n"
    )
    meta = where / "torch-9.9.9.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 9.9.9\n")
    (meta / "RECORD").write_text("")
    return where


def test_torch_version_is_read_from_metadata_without_importing_torch(tmp_path: Path) -> None:
    site = fake_torch(tmp_path / "site")
    marker = tmp_path / "imported.txt"
    probe = (
        "import json, sys\n"
        "from runlab.record import environment\n"
        "before = environment.torch_state()\n"
        "imported_by_capture = 'torch' in sys.modules\n"
        "import torch\n"
        "after = environment.torch_state()\n"
        "print(json.dumps([before, imported_by_capture, after]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=task_env(
            PYTHONPATH=os.pathsep.join([str(site), str(ROOT / "src")]),
            TORCH_IMPORT_MARKER=str(marker),
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    before, imported_by_capture, after = json.loads(out.stdout)
    assert before == {"version": "9.9.9", "cuda": "12.1"}  # no CUDA details: not imported
    assert imported_by_capture is False
    assert marker.read_text() == "imported\n"  # once, by the task itself
    assert after["version"] == "9.9.9" and after["cuda_available"] is False


def test_gitignore_covers_virtualenvs_and_hydra_outputs() -> None:
    paths = [
        "venv/bin/python",
        "env/bin/python",
        ".venv/bin/python",
        ".venv-user/bin/python",
        "ENV/bin/python",
        ".env",
        ".env/secrets",
        "multirun/2026-01-01/x",
        "multirun.yaml",
        "outputs/2026-01-01/x",
    ]
    out = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(paths),
        capture_output=True,
        text=True,
    )
    assert sorted(out.stdout.split()) == sorted(paths)


# ------------------------------------------------------------ as a user sees it


def runlab_cli(repo: Path, logs: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runlab", *args],
        cwd=repo,
        env=task_env(RUNLAB_LOGS=str(logs)),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def test_a_run_in_that_tree_is_complete_warns_and_reproduces(
    big_tree: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, "tasks/slow.py", "steps=3", "interval=0"],
        cwd=big_tree,
        env=task_env(RUNLAB_LOGS=str(logs)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "venv/ (40,001 files)" in warnings[0]
    meta = logs / "1" / "metadata"
    for env in (
        yaml.safe_load((meta / "env.yaml").read_text()),
        json.loads((meta / "env.json").read_text()),
    ):
        assert env["git"]["commit"] and env["packages"] and env["git"]["dirty"] is True
        assert "venv/" in env["git"]["untracked_skipped"]
        assert any("venv/ (40,001 files)" in p for p in env["problems"])
    assert_recorded_tree(
        big_tree, apply_to_clone(big_tree, (meta / "git.diff").read_bytes(), tmp_path / "c")
    )

    show = runlab_cli(big_tree, logs, "show", str(logs), "1")
    assert show.returncode == 0, show.stderr
    assert "problem: environment: git: 40,002 untracked" in " ".join(show.stdout.split())
    assert "untracked_skipped: [big.bin, venv/]" in show.stdout

    # the patch (binary, non-UTF-8 names) applies; slow.py logs wall-clock time: "close"
    # without the files left out, the code is not whole: refused, unless asked for
    again = runlab_cli(big_tree, logs, "reproduce", str(logs), "1", "--rtol", "0.01")
    assert again.returncode == 2 and "40,002 untracked file(s) left out" in again.stderr
    assert "--skip-untracked" in again.stderr and len(again.stderr.splitlines()) == 1
    again = runlab_cli(
        big_tree, logs, "reproduce", str(logs), "1", "--rtol", "0.01", "--skip-untracked"
    )
    assert again.returncode == 0, again.stderr
    assert "run 1's record: git: 40,002 untracked" in " ".join(again.stderr.split())
    assert (
        "run 2 reproduces run 1 without 40,002 untracked file(s) that its record left out: close"
        in again.stdout
    )
    assert "reproduces_without" in (logs / "2" / "metadata" / "info.yaml").read_text()


def test_a_run_outside_git_says_so_and_reproduce_explains(tmp_path: Path) -> None:
    folder = tmp_path / "nogit"
    folder.mkdir()
    shutil.copy(TASKS / "slow.py", folder / "slow.py")
    shutil.copy(TASKS / "slow.yaml", folder / "slow.yaml")
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, "slow.py", "steps=1", "interval=0"],
        cwd=folder,
        env=task_env(RUNLAB_LOGS=str(logs), GIT_CEILING_DIRECTORIES=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "not inside a git work tree" in proc.stderr
    env = yaml.safe_load((logs / "1" / "metadata" / "env.yaml").read_text())
    assert env["packages"] and any("not inside a git work tree" in p for p in env["problems"])
    out = runlab_cli(folder, logs, "reproduce", str(logs), "1")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "not inside a git work tree" in out.stderr


def test_submit_refuses_the_tree_in_one_line_per_problem(big_tree: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    out = runlab_cli(
        big_tree, logs, "submit", "tasks/slow.py", "--launcher", "local", "--logs", str(logs)
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert "  ?? venv/ (40,001 files)" in lines
    (warning,) = [line for line in lines if line.startswith("warning:")]
    assert "venv/ (40,001 files)" in warning and "echo 'venv/' >> .gitignore" in warning
    assert any(
        line.startswith("runlab submit: error:") and "--allow-dirty" in line for line in lines
    )
    assert len(lines) < 15 and not logs.exists()


def test_submit_allow_dirty_applies_the_limits(big_tree: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    out = runlab_cli(
        big_tree,
        logs,
        "submit",
        "tasks/slow.py",
        "steps=2",
        "interval=0",
        "--launcher",
        "local",
        "--logs",
        str(logs),
        "--allow-dirty",
        "--wait",
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    (warning,) = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert "venv/ (40,001 files)" in warning and "run without them" in warning
    meta = logs / "1" / "metadata"
    diff = (meta / "git.diff").read_bytes()
    assert b"venv/" not in diff and len(diff) < 100_000
    assert_recorded_tree(big_tree, apply_to_clone(big_tree, diff, tmp_path / "clone"))
    (snapshot,) = [p for p in (logs / ".snapshots").iterdir() if p.is_dir()]
    assert_recorded_tree(big_tree, snapshot)
    assert snapshot.with_name(snapshot.name + ".diff").read_bytes() == diff  # its patch beside it
    env = yaml.safe_load((meta / "env.yaml").read_text())
    assert env["git"]["dirty"] is True and env["git"]["untracked_skipped_files"] == VENV_FILES + 2
    assert any("venv/ (40,001 files)" in p for p in env["problems"])
