"""A run's code is rebuilt byte for byte from its record, or the rebuild refuses.

The invariant, over generated trees and changes: record a work tree the way a run
does (:func:`runlab.record.environment.git_record`: commit, patch, file hashes), then
rebuild it from the commit and the patch alone into a new folder
(:func:`runlab.record.codetree.rebuild`). Every file of the code (tracked, and
untracked within the limits) then has the work tree's bytes and executable bit, and no
deleted file comes back. It holds under a hostile global git configuration, with
line-ending attributes, with the logs directory inside the repository, and never
depends on the folder the rebuild is made in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runlab.record import codetree, environment

HOSTILE = """\
[diff]
    noprefix = true
    mnemonicPrefix = true
    relative = true
    context = 0
    submodule = log
    renames = copies
    suppressBlankEmpty = true
    external = false
[color]
    ui = always
[core]
    autocrlf = true
    quotePath = false
[apply]
    whitespace = fix
[status]
    showUntrackedFiles = no
"""


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True, env=env).stdout


def code_files(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, tuple[bytes, bool]]:
    """Every file under ``root`` (less ``.git`` and ``exclude``): its bytes (a link's
    target) and whether it is executable."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in (".git", *exclude):
            continue
        if path.is_symlink():
            out[rel] = (os.fsencode(os.readlink(path)), False)
        elif path.is_file():
            out[rel] = (path.read_bytes(), os.access(path, os.X_OK))
    return out


names = st.sampled_from(["a.py", "b.txt", "data.bin", "sub/c.py", "sub/deep/d.yaml", "e f.txt"])


def _mixed_ends(data: bytes) -> bool:
    """A lone LF beside a CRLF: git's line-end conversion loses which was which, and the
    rebuild refuses such a file (not yet rebuilt: see the test after this one)."""
    return b"\r\n" in data and re.search(rb"(?<!\r)\n", data) is not None


contents = st.one_of(
    st.binary(max_size=300),
    st.text(alphabet="ab \t\n\r", max_size=200).map(str.encode),
    st.just(b"line one  \nline two\t\n"),  # trailing white space: apply.whitespace=fix
).filter(lambda data: not _mixed_ends(data))
changes = st.lists(
    st.tuples(
        st.sampled_from(["modify", "add", "delete", "rename", "chmod", "untracked", "link"]),
        names,
        contents,
    ),
    max_size=6,
)


def apply_change(repo: Path, kind: str, name: str, data: bytes, env: dict[str, str]) -> None:
    path = repo / name
    tracked = set(git(repo, "ls-files", env=env).splitlines())
    if kind in ("modify", "untracked", "add") or (kind != "link" and not path.exists()):
        if path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if kind == "add":
            git(repo, "add", name, env=env)
    elif kind == "delete" and name in tracked:
        path.unlink()
    elif kind == "rename" and name in tracked and not path.is_symlink():
        git(repo, "mv", "-f", name, f"{name}.moved", env=env)
    elif kind == "chmod" and path.is_file() and not path.is_symlink():
        path.chmod(path.stat().st_mode ^ 0o111)
    elif kind == "link":
        if path.exists() or path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("target-of-" + path.name, path)


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    config = tmp_path / "hostile.gitconfig"
    config.write_text(HOSTILE)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    return {**os.environ, "GIT_CONFIG_GLOBAL": str(config)}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    initial=st.dictionaries(names, contents, min_size=1, max_size=5),
    steps=changes,
    attributes=st.booleans(),
    logs_inside=st.booleans(),
)
@example(  # a CR before CRLF in a `text eol=crlf` file: git keeps the stored CR
    initial={"a.py": b"line one  \nline two\t\n"},
    steps=[("modify", "b.txt", b"\r\r\n")],
    attributes=True,
    logs_inside=False,
)
def test_a_recorded_tree_is_rebuilt_byte_for_byte(
    tmp_path_factory: pytest.TempPathFactory,
    hostile: dict[str, str],
    initial: dict[str, bytes],
    steps: list[tuple[str, str, bytes]],
    attributes: bool,
    logs_inside: bool,
) -> None:
    base = tmp_path_factory.mktemp("case")
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q", env=hostile)
    for name, data in initial.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    if attributes:
        (repo / ".gitattributes").write_text("*.txt text eol=crlf\n*.bin binary\n")
    git(repo, "add", "-A", env=hostile)
    git(repo, "commit", "-qm", "start", env=hostile)
    if attributes:  # a checkout as git writes it: CRLF where the attributes say so
        for name in git(repo, "ls-files", env=hostile).splitlines():
            (repo / name).unlink()
        git(repo, "checkout", "--", ".", env=hostile)
    for kind, name, data in steps:
        apply_change(repo, kind, name, data, hostile)
    logs = repo / "logs" if logs_inside else base / "logs"
    (logs / "1").mkdir(parents=True)
    (logs / "1" / "record.txt").write_text("a run record, never code")

    state, patch, problems = environment.git_record(repo, exclude=(logs,))
    assert state["commit"], problems
    expected = code_files(repo, exclude=("logs",) if logs_inside else ())
    dest = base / "elsewhere" / "rebuilt"
    codetree.rebuild(repo, state["commit"], dest, patch or b"", state)
    assert code_files(dest) == expected


def test_a_text_file_with_mixed_line_ends_is_refused_not_rebuilt_wrong(tmp_path: Path) -> None:
    """Not yet rebuilt: git stores a `text eol=crlf` file's CRLF as LF, so the patch no
    longer says which line ends were lone LFs. The rebuild names the file and writes
    nothing, rather than other bytes."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitattributes").write_text("*.txt text eol=crlf\n")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    (repo / "b.txt").write_bytes(b"\n\r\n")
    state, patch, _ = environment.git_record(repo)
    with pytest.raises(codetree.RebuildError, match=r"at b\.txt: its bytes differ"):
        codetree.rebuild(repo, state["commit"], tmp_path / "out", patch or b"", state)
    assert not (tmp_path / "out").exists()


def test_the_rebuild_refuses_a_file_whose_bytes_differ(tmp_path: Path) -> None:
    """A hand-edited hash (or a damaged patch) is found: the rebuild names the file."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    (repo / "a.py").write_text("x = 2\n")
    state, patch, _ = environment.git_record(repo)
    state["files"]["a.py"] = "100644 " + "0" * 64
    with pytest.raises(codetree.RebuildError, match=r"at a\.py: its bytes differ"):
        codetree.rebuild(repo, state["commit"], tmp_path / "out", patch or b"", state)
    assert not (tmp_path / "out").exists()


def test_a_submodule_is_rebuilt_at_its_checked_out_commit(tmp_path: Path) -> None:
    """A submodule is recorded by the commit checked out in it (not the one the outer
    commit names), and rebuilt from its own repository; one with uncommitted changes
    makes the record refuse, and a submodule whose repository is gone is named."""
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q")
    (lib / "lib.py").write_text("VERSION = 1\n")
    git(lib, "add", "-A")
    git(lib, "commit", "-qm", "v1")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "main.py").write_text("import lib\n")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-qm", "start")
    (repo / "lib" / "lib.py").write_text("VERSION = 2\n")
    git(repo / "lib", "commit", "-qam", "v2")  # checked out, not committed in the outer repo
    state, patch, _ = environment.git_record(repo)
    assert state["submodules"]["lib"]["dirty"] is False
    codetree.rebuild(repo, state["commit"], tmp_path / "out", patch or b"", state)
    assert (tmp_path / "out" / "lib" / "lib.py").read_text() == "VERSION = 2\n"
    assert codetree.refusals(state) == []

    (repo / "lib" / "lib.py").write_text("VERSION = 3\n")
    state, _, _ = environment.git_record(repo)
    assert "submodule lib had uncommitted changes" in codetree.refusals(state)[0]

    git(repo / "lib", "checkout", "-q", "lib.py")
    state, patch, _ = environment.git_record(repo)
    shutil.rmtree(repo / "lib")
    with pytest.raises(codetree.RebuildError, match="submodule lib at commit"):
        codetree.rebuild(repo, state["commit"], tmp_path / "out2", patch or b"", state)


def test_no_run_record_enters_the_patch(tmp_path: Path) -> None:
    """Another logs directory inside the tree (an older one, not ignored) holds run
    records and runlab's own folders: none of it is code, so none of it is recorded."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    old = repo / "old-logs"
    (old / "1" / "metadata").mkdir(parents=True)
    (old / "1" / "metadata" / "info.yaml").write_text("run_id: '1'\nstatus: COMPLETE\n")
    (old / "1" / "metrics").mkdir()
    (old / "1" / "metrics" / "test.jsonl").write_text('{"step": 0}\n')
    (old / ".snapshots" / "abc").mkdir(parents=True)
    (old / ".snapshots" / "abc" / "task.py").write_text("print(1)\n")
    state, patch, _ = environment.git_record(repo)
    assert state["dirty"] is False and patch is None
    (repo / "experiments" / "2").mkdir(parents=True)  # a number is not a run by itself
    (repo / "experiments" / "2" / "metrics").mkdir()
    (repo / "experiments" / "2" / "metrics" / "score.py").write_text("S = 2\n")
    state, patch, _ = environment.git_record(repo)
    assert patch is not None and b"experiments/2/metrics/score.py" in patch
    assert b"old-logs" not in patch and list(state["files"]) == ["experiments/2/metrics/score.py"]


def test_a_filtered_file_gets_the_bytes_its_filter_writes(tmp_path: Path) -> None:
    """A file passed through a clean/smudge filter (as LFS does) is rebuilt through the
    repository's own filter when the run had not changed it; changed, it is refused and
    the refusal names the filter."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "filter.rot.clean", "tr a-zA-Z n-za-mN-ZA-M")
    git(repo, "config", "filter.rot.smudge", "tr a-zA-Z n-za-mN-ZA-M")
    (repo / ".gitattributes").write_text("*.rot filter=rot\n")
    (repo / "data.rot").write_text("plain words\n")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    (repo / "a.py").write_text("x = 2\n")
    state, patch, _ = environment.git_record(repo)
    assert state["filtered"] == ["data.rot"]
    codetree.rebuild(repo, state["commit"], tmp_path / "out", patch or b"", state)
    assert (tmp_path / "out" / "data.rot").read_text() == "plain words\n"

    (repo / "data.rot").write_text("other words\n")
    state, patch, _ = environment.git_record(repo)
    with pytest.raises(codetree.RebuildError, match="passes through a git filter"):
        codetree.rebuild(repo, state["commit"], tmp_path / "out2", patch or b"", state)


def test_a_submodule_that_was_not_initialised_is_an_empty_folder(tmp_path: Path) -> None:
    """A clone made without `--recurse-submodules` runs with the submodule's folder
    empty: that is what is recorded and rebuilt (git, asked inside the empty folder,
    would answer for the outer repository and its commit)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q")
    (lib / "lib.py").write_text("VERSION = 1\n")
    git(lib, "add", "-A")
    git(lib, "commit", "-qm", "v1")
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q")
    (origin / "main.py").write_text("import lib\n")
    git(origin, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(origin, "add", "main.py")
    git(origin, "commit", "-qm", "start")
    git(tmp_path, "clone", "-q", str(origin), "repo")
    repo = tmp_path / "repo"
    assert (repo / "lib").is_dir() and not any((repo / "lib").iterdir())
    state, patch, _ = environment.git_record(repo)
    assert state["submodules"] == {"lib": {"commit": None, "dirty": False}}
    codetree.rebuild(repo, state["commit"], tmp_path / "out", patch or b"", state)
    assert (tmp_path / "out" / "main.py").exists()
    assert (tmp_path / "out" / "lib").is_dir() and not any((tmp_path / "out" / "lib").iterdir())
    codetree.verify_tree(repo, state["commit"], tmp_path / "out", state)  # a kept tree checks
    (tmp_path / "out" / "lib" / "stray.py").write_text("x = 1\n")
    with pytest.raises(codetree.RebuildError, match="holds files in lib, which ran empty"):
        codetree.verify_tree(repo, state["commit"], tmp_path / "out", state)
