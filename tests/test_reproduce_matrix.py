"""`runlab reproduce` across a matrix of (way to start a run) x (state of the code).

The invariant (issue 25, "Replication you can bet on"): ``runlab reproduce RUN`` either
re-executes the recorded task with exactly the recorded code (commit and uncommitted
changes, byte for byte), config (config source, defaults, every override, ``hydra.*``
and ``+``/``~`` ones included) and the environment variables the config reads, and says
``identical`` -- or it refuses before running, with exit status 2 and one line on stderr
starting ``runlab reproduce: error:`` that names what is missing. It never runs something
else and calls it a reproduction.

Every cell makes a fresh git repository holding the fingerprint task
(tests/tasks/fingerprint/, whose metrics are hashes of its code tree, resolved config,
environment and Hydra job number), puts the repository in some states, starts a run one
way, moves the repository on (a new commit, more edits, a new untracked file: the
rerun must not pick up today's code), then runs ``runlab reproduce`` as a user would.
A rerun of other inputs cannot come out ``identical``: it says ``diverged``.

A cell passes on ``identical`` (with the new run's ``reproduces`` naming the old run),
or on a refusal where EXPECTED_REFUSALS says refusing is the right answer for one of its
states. A run that ``runlab submit`` or ``tune`` started from a code snapshot must also
have run the work tree as it was (a snapshot that drops a submodule or an
``export-ignore`` file reproduces itself, but it is not the code the user ran it from).

The default run: every way on the COMPOUND dirty state, every state on the plain way,
and a few Hypothesis-drawn combinations (derandomized); the full cross product of ways
and states is marked ``slow_reproduce`` (``pytest -m slow_reproduce``), SLURM cells
``slurm``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import SLURM_UP, TASKS, task_env

FINGERPRINT = TASKS / "fingerprint"
TASK = "fp/task.py"  # the task's place in each cell's repository
GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "protocol.file.allow=always"]

# A global git config that changes what git diff / status / apply print or do, in every
# way a recorder or a reproducer that does not neutralise it could trip over.
HOSTILE_GITCONFIG = """\
[diff]
\tnoprefix = true
\tmnemonicPrefix = true
\trelative = true
\tcontext = 0
\tsubmodule = log
\texternal = false
[color]
\tui = always
[core]
\tautocrlf = true
[apply]
\twhitespace = fix
[status]
\tshowUntrackedFiles = no
"""


# ------------------------------------------------------------------------------ a cell
@dataclass
class Cell:
    """One repository, its logs directory, and the environment of each step."""

    root: Path
    repo: Path
    logs: Path
    gitconfig: Path  # the global git config of the product's processes
    record_env: dict[str, str] = field(default_factory=dict)  # extra, when recording
    reproduce_env: dict[str, str] = field(default_factory=dict)  # extra, when reproducing
    after: list[Callable[[Cell], None]] = field(default_factory=list)  # after recording

    def env(self, step: str) -> dict[str, str]:
        """The environment of ``step`` (record or reproduce): this process's, with no
        runlab or fingerprint variables of its own, the cell's logs and git config."""
        env = {k: v for k, v in task_env().items() if not k.startswith(("RUNLAB_", "FP_", "GIT_"))}
        env.update(RUNLAB_LOGS=str(self.logs), GIT_CONFIG_GLOBAL=str(self.gitconfig))
        env.update(self.record_env if step == "record" else self.reproduce_env)
        return env


def git(cell: Cell, *args: str, cwd: Path | None = None) -> str:
    """git for setting a cell up: a neutral global config whatever the cell's state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_GLOBAL"] = str(cell.root / "setup.gitconfig")
    proc = subprocess.run(
        ["git", *GIT_ID, *args], cwd=cwd or cell.repo, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {proc.stderr}")
    return proc.stdout.strip()


def new_cell(root: Path) -> Cell:
    """A committed repository: the fingerprint task in ``fp/``, text, binary and
    executable files at its root, logs outside it."""
    repo = root / "repo"
    shutil.copytree(FINGERPRINT, repo / "fp", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "setup.gitconfig").write_text("")
    (root / "empty.gitconfig").write_text("")
    (repo / "FINGERPRINT_ROOT").write_text("")
    (repo / "README.md").write_text("# a project\n")
    for name in ("data.txt", "notes.txt", "lines.txt", "move_me.txt", "move_me_too.txt"):
        (repo / name).write_text(f"{name}\nline two\n")
    (repo / "ws.py").write_text("x = 1\ny = 2\n")
    (repo / "settings.ini").write_text("[a]\nb = 1\n")
    (repo / "data.bin").write_bytes(bytes(range(256)) * 4)
    (repo / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (repo / ".gitignore").write_text("__pycache__/\n")
    cell = Cell(root, repo, root / "logs", root / "empty.gitconfig")
    git(cell, "init", "-q", "-b", "main")
    git(cell, "add", "-A")
    git(cell, "commit", "-qm", "init")
    return cell


# --------------------------------------------------------------------------- the states
def modified(c: Cell) -> None:
    """A tracked file modified, not staged."""
    (c.repo / "data.txt").write_text("data.txt\nline two, changed\n")


def whitespace(c: Cell) -> None:
    """A tracked file modified with trailing blanks and a blank last line (what
    ``apply.whitespace=fix`` would strip)."""
    (c.repo / "ws.py").write_text("x = 1   \ny = 2\t\nz = 3 \n\n\n")


def added(c: Cell) -> None:
    """A new file, staged."""
    (c.repo / "added.txt").write_text("added and staged\n")
    git(c, "add", "added.txt")


def deleted(c: Cell) -> None:
    """A tracked file removed from the work tree (not staged)."""
    (c.repo / "notes.txt").unlink()


def git_mv(c: Cell) -> None:
    """A tracked file renamed with ``git mv`` (staged)."""
    git(c, "mv", "move_me.txt", "moved.txt")


def plain_mv(c: Cell) -> None:
    """A tracked file renamed with plain ``mv`` (a deletion and an untracked file)."""
    (c.repo / "move_me_too.txt").rename(c.repo / "moved_too.txt")


def binary_modified(c: Cell) -> None:
    """A tracked binary file changed (NUL and invalid UTF-8 bytes)."""
    (c.repo / "data.bin").write_bytes(bytes(range(255, -1, -1)) * 4 + b"\0\xff\xfe")


def binary_added(c: Cell) -> None:
    """A new binary file, staged."""
    (c.repo / "new.bin").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0" + bytes(range(200)))
    git(c, "add", "new.bin")


def untracked(c: Cell) -> None:
    """A file git does not know of (not ignored)."""
    (c.repo / "untracked.txt").write_text("not in git\n")


def mode_change(c: Cell) -> None:
    """A tracked file made executable, not staged."""
    (c.repo / "ws.py").chmod(0o755)


def symlink(c: Cell) -> None:
    """A committed symlink pointed elsewhere (not staged), and a new symlink, staged."""
    os.symlink("data.txt", c.repo / "link")
    git(c, "add", "link")
    git(c, "commit", "-qm", "a symlink", "--", "link")  # that path only: the rest stays dirty
    (c.repo / "link").unlink()
    os.symlink("notes.txt", c.repo / "link")
    os.symlink("fp/task.py", c.repo / "new_link")
    git(c, "add", "new_link")


def submodule(c: Cell) -> None:
    """A git submodule: a second local repository, committed in the first."""
    sub = c.root / "subsrc"
    sub.mkdir()
    (sub / "sub.txt").write_text("in the submodule\n")
    git(c, "init", "-q", "-b", "main", cwd=sub)
    git(c, "add", "-A", cwd=sub)
    git(c, "commit", "-qm", "sub", cwd=sub)
    git(c, "submodule", "add", "-q", str(sub), "sub")
    git(c, "commit", "-qm", "a submodule")


def submodule_gone(c: Cell) -> None:
    """A submodule whose repository is gone after the run (its source and the clone
    under .git/modules removed, the submodule deinitialised)."""
    submodule(c)

    def remove(c: Cell) -> None:
        git(c, "submodule", "deinit", "-f", "sub")
        shutil.rmtree(c.repo / ".git" / "modules" / "sub")
        shutil.rmtree(c.root / "subsrc")

    c.after.append(remove)


def crlf(c: Cell) -> None:
    """``*.txt text eol=crlf``: the work tree holds CRLF, the repository LF; the CRLF
    file is then modified (not staged)."""
    with (c.repo / ".gitattributes").open("a") as f:
        f.write("*.txt text eol=crlf\n")
    (c.repo / "crlf.txt").write_bytes(b"one\r\ntwo\r\n")
    git(c, "add", "-A")
    git(c, "commit", "-qm", "crlf")
    git(c, "rm", "-q", "--cached", "-r", ".")  # check the .txt files out as CRLF
    git(c, "reset", "-q", "--hard")
    (c.repo / "crlf.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")


def export_attrs(c: Cell) -> None:
    """``export-ignore`` and ``export-subst`` files (what ``git archive`` drops or
    rewrites), committed."""
    with (c.repo / ".gitattributes").open("a") as f:
        f.write("secret.cfg export-ignore\nversion.cfg export-subst\n")
    (c.repo / "secret.cfg").write_text("kept out of archives\n")
    (c.repo / "version.cfg").write_text("commit $Format:%H$\n")
    git(c, "add", "-A")
    git(c, "commit", "-qm", "export attributes")


def filtered(c: Cell) -> None:
    """A file passed through a clean/smudge filter (as LFS does), configured in the
    repository only, then modified."""
    git(c, "config", "filter.rot.clean", "tr a-zA-Z n-za-mN-ZA-M")
    git(c, "config", "filter.rot.smudge", "tr a-zA-Z n-za-mN-ZA-M")
    with (c.repo / ".gitattributes").open("a") as f:
        f.write("*.rot filter=rot\n")
    (c.repo / "data.rot").write_text("stored rotated\n")
    git(c, "add", "-A")
    git(c, "commit", "-qm", "a filtered file")
    (c.repo / "data.rot").write_text("stored rotated, changed\n")


def logs_in_repo_ignored(c: Cell) -> None:
    """The logs directory inside the repository, git-ignored; a tracked file modified (a
    patch to apply where the snapshot lies inside the repository)."""
    c.logs = c.repo / "logs"
    with (c.repo / ".gitignore").open("a") as f:
        f.write("logs/\n")
    git(c, "commit", "-qam", "ignore logs")
    (c.repo / "settings.ini").write_text("[a]\nb = 2\n")


def logs_in_repo_unignored(c: Cell) -> None:
    """The logs directory inside the repository, not ignored (untracked files to git); a
    tracked file modified."""
    c.logs = c.repo / "logs"
    (c.repo / "settings.ini").write_text("[a]\nb = 3\n")


def hostile_git(c: Cell) -> None:
    """HOSTILE_GITCONFIG as the global git config when recording and when reproducing,
    and a tracked file modified with trailing blanks and a CR (so that a diff or an
    apply it reshapes no longer gives the same bytes)."""
    c.gitconfig = c.root / "hostile.gitconfig"
    c.gitconfig.write_text(HOSTILE_GITCONFIG)
    (c.repo / "lines.txt").write_text("lines.txt  \nline two\r\nline three\t\n")


def env_var(c: Cell) -> None:
    """FP_SCALE (read by the config through ``${oc.env:FP_SCALE,1}``) set when recording,
    unset when reproducing."""
    c.record_env["FP_SCALE"] = "5"


# Applied in this order (commits first, then changes to the work tree).
STATES: dict[str, Callable[[Cell], None] | None] = {
    "clean": None,
    "submodule": submodule,
    "submodule_gone": submodule_gone,
    "crlf": crlf,
    "export_attrs": export_attrs,
    "filtered": filtered,
    "logs_in_repo_ignored": logs_in_repo_ignored,
    "logs_in_repo_unignored": logs_in_repo_unignored,
    "modified": modified,
    "whitespace": whitespace,
    "added": added,
    "deleted": deleted,
    "git_mv": git_mv,
    "plain_mv": plain_mv,
    "binary_modified": binary_modified,
    "binary_added": binary_added,
    "untracked": untracked,
    "mode_change": mode_change,
    "symlink": symlink,
    "hostile_git": hostile_git,
    "env_var": env_var,
}
EXCLUSIVE = [{"submodule", "submodule_gone"}, {"logs_in_repo_ignored", "logs_in_repo_unignored"}]
COMPOUND = (
    "modified",
    "whitespace",
    "added",
    "deleted",
    "git_mv",
    "plain_mv",
    "binary_modified",
    "untracked",
    "mode_change",
    "symlink",
)

# Where refusing is the right answer: state -> what the one-line refusal must name.
# A cell holding one of these states passes on `identical` or on such a refusal.
EXPECTED_REFUSALS = {
    "submodule_gone": r"submodule",
    "filtered": r"filter",
}


def moved_on(c: Cell) -> None:
    """After the run the user goes on working: a new commit, another edit, a new
    untracked file. The rerun must use none of them."""
    readme = c.repo / "README.md"
    readme.write_text(readme.read_text() + "more\n")
    git(c, "commit", "-qm", "moved on", "--", "README.md")
    data = c.repo / "data.txt"
    if data.exists():
        data.write_bytes(data.read_bytes() + b"edited after the run\n")
    (c.repo / "later.txt").write_text("made after the run\n")


# ----------------------------------------------------------------------------- the ways
def run_ids(logs: Path) -> list[int]:
    return sorted(int(p.name) for p in logs.iterdir() if p.name.isdigit()) if logs.is_dir() else []


def command(c: Cell, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=c.repo,
        env=c.env("record"),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"recording failed: {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def new_run(c: Cell, *args: str, pick: int = -1, timeout: float = 300) -> str:
    """Run ``python ARGS`` in the repository; the id of the (last, or ``pick``) new run."""
    before = set(run_ids(c.logs))
    command(c, *args, timeout=timeout)
    new = [i for i in run_ids(c.logs) if i not in before]
    assert new, f"{' '.join(args)} made no run"
    return str(new[pick])


def task(*overrides: str) -> Callable[[Cell], str]:
    return lambda c: new_run(c, TASK, *overrides)


def config_path_absolute(c: Cell) -> str:
    return new_run(c, TASK, "--config-path", str(c.repo / "fp" / "alt"))


def sweep_second_job(c: Cell) -> str:
    return new_run(c, TASK, "-m", "a=1,2", pick=1)


def reopened(c: Cell) -> str:
    run = new_run(c, TASK, "a=3")
    command(c, TASK, "a=3", f"runlab.run_id={run}")
    return run


def submitted(launcher: str) -> Callable[[Cell], str]:
    def way(c: Cell) -> str:
        args = ["submit", TASK, "a=4", "--launcher", launcher, "--wait", "--allow-dirty", "-y"]
        return new_run(c, "-m", "runlab", *args, timeout=600)

    return way


def tune_trial(c: Cell) -> str:
    args = ["tune", TASK, "--metric", "fp.all", "--trials", "1", "--parallel", "1",
            "--launcher", "local", "--sampler", "random", "--seed", "0", "--study", "fp",
            "--allow-dirty", "a=choice(5,6)"]  # fmt: skip
    return new_run(c, "-m", "runlab", *args, timeout=600)


WAYS: dict[str, Callable[[Cell], str]] = {
    "plain": task(),
    "config_name": task("--config-name", "other"),
    "config_path_relative": task("--config-path", "alt"),
    "config_path_absolute": config_path_absolute,
    "config_dir": task("--config-dir", "fp/extra", "group=c"),
    "plus_key": task("+newkey=1"),
    "tilde_key": task("~drop_me"),
    "hydra_job_name": task("hydra.job.name=x"),
    "hydra_chdir": task("hydra.job.chdir=false"),
    "sweep_second_job": sweep_second_job,
    "reopened": reopened,
    "tune_trial": tune_trial,
    "submit_local": submitted("local"),
    "submit_slurm": submitted("slurm"),
}
SLURM_WAYS = {"submit_slurm"}


# ----------------------------------------------------------------------------- the check
def describe(entry: str) -> str:
    """``link``, ``exe`` or ``file`` of a code-tree entry of fingerprint.json."""
    kind, _, rest = entry.partition(":")
    return "exe" if kind == "file" and rest.startswith("x") else kind


def code_diff(ca: dict[str, str], cb: dict[str, str]) -> str:
    """The files of code tree ``cb`` that are not as in ``ca``: ``-gone +new ~changed``."""
    files = [f"-{p}" for p in sorted(set(ca) - set(cb))]
    files += [f"+{p}" for p in sorted(set(cb) - set(ca))]
    for p in sorted(set(ca) & set(cb)):
        if ca[p] != cb[p]:
            kinds = [describe(ca[p]), describe(cb[p])]
            files.append(f"~{p}" + (f" ({kinds[0]} -> {kinds[1]})" if kinds[0] != kinds[1] else ""))
    return " ".join(files)


def fingerprint_diff(old: Path, new: Path) -> str:
    """What differed between the inputs of two runs of the fingerprint task, in short."""
    if not (new / "fingerprint.json").exists():
        return "the rerun wrote no fingerprint"
    a = json.loads((old / "fingerprint.json").read_text())
    b = json.loads((new / "fingerprint.json").read_text())
    parts = []
    if a["code"] != b["code"]:
        parts.append("code " + code_diff(a["code"], b["code"]))
    keys = sorted(set(a["config"]) | set(b["config"]))
    for key in keys:
        was, now = a["config"].get(key, "<absent>"), b["config"].get(key, "<absent>")
        if was != now:
            parts.append(f"config {key}: {was!r} -> {now!r}")
    for key in ("env", "job"):
        if a[key] != b[key]:
            parts.append(f"{key}: {a[key]!r} -> {b[key]!r}")
    return "; ".join(parts) or "same inputs"


def work_tree(cell: Cell) -> dict[str, str]:
    """The repository's files as the fingerprint task describes its code tree."""
    spec = importlib.util.spec_from_file_location("fingerprint_task", FINGERPRINT / "task.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.code_tree(cell.repo, cell.logs.resolve())


def check(way: str, states: tuple[str, ...]) -> None:
    """Record a run ``way`` in a repository in ``states``, reproduce it, judge it."""
    with tempfile.TemporaryDirectory(prefix="rmx-") as tmp:
        cell = new_cell(Path(tmp).resolve())
        for name in STATES:
            setup = STATES[name]
            if name in states and setup is not None:
                setup(cell)
        run = WAYS[way](cell)
        tree = work_tree(cell)  # what the user had when the run started
        for after in cell.after:
            after(cell)
        moved_on(cell)
        proc = subprocess.run(
            [sys.executable, "-m", "runlab", "reproduce", "--logs", str(cell.logs), run],
            cwd=cell.repo,
            env=cell.env("reproduce"),
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        judge(cell, way, states, run, proc)
        ran = json.loads((cell.logs / run / "fingerprint.json").read_text())["code"]
        if ran != tree:  # reproducible, but the run itself was not of the user's code
            fail(
                f"way={way} states={'+'.join(states)} run={run}: THE RUN RAN OTHER CODE than "
                f"the work tree: {code_diff(tree, ran)}",
                "",
            )


def judge(
    cell: Cell, way: str, states: tuple[str, ...], run: str, proc: subprocess.CompletedProcess
) -> None:
    where = f"way={way} states={'+'.join(states)} run={run}"
    said = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    found = re.search(rf"run (\d+) reproduces run {run}: (\w+)", proc.stdout)
    outcomes = os.environ.get("REPRODUCE_MATRIX_OUTCOMES")  # a file: one line per cell
    if outcomes:
        said_line = found.group(0) if found else (proc.stderr.strip().splitlines() or ["-"])[-1]
        with open(outcomes, "a", encoding="utf-8") as out:
            out.write(f"{way}\t{'+'.join(states)}\t{proc.returncode}\t{said_line}\n")
    if proc.returncode == 0 and found and found.group(2) == "identical":
        info = yaml.safe_load((cell.logs / found.group(1) / "metadata" / "info.yaml").read_text())
        if info.get("reproduces") != run:
            fail(
                f"{where}: WRONG RECORD: the rerun's reproduces is {info.get('reproduces')!r}", said
            )
        return
    lines = proc.stderr.splitlines()
    if proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("runlab reproduce: error:"):
        allowed = [EXPECTED_REFUSALS[s] for s in states if s in EXPECTED_REFUSALS]
        if not any(re.search(r, lines[0], re.IGNORECASE) for r in allowed):
            fail(f"{where}: REFUSED A REPRODUCIBLE RUN", said)
        return
    new = sorted(i for i in run_ids(cell.logs) if i > int(run))
    why = fingerprint_diff(cell.logs / run, cell.logs / str(new[-1])) if new else "no rerun made"
    if why == "the rerun wrote no fingerprint":  # the task failed: Hydra's first line says why
        said_first = [line for line in lines if line.strip() and not line.startswith("[runlab]")]
        why += f" ({said_first[0].strip()})" if said_first else ""
    kind = (
        found.group(2) if found else ("refused badly" if proc.returncode == 2 else "rerun failed")
    )
    fail(f"{where}: {kind.upper()}: {why}", said)


def fail(summary: str, said: str) -> None:
    """Fail the cell with its one-line summary first, then what reproduce printed."""
    pytest.fail(f"{summary}\n{said}", pytrace=False)


# ----------------------------------------------------------------------------- the cells
def cell_param(way: str, states: tuple[str, ...], *marks: pytest.MarkDecorator):
    marks = list(marks)
    if way in SLURM_WAYS:
        marks += [pytest.mark.slurm, pytest.mark.skipif(not SLURM_UP, reason="no SLURM cluster")]
    return pytest.param(way, states, marks=marks, id=f"{way}-{'+'.join(states)}")


DEFAULT_CELLS = [cell_param(way, COMPOUND) for way in WAYS] + [
    cell_param("plain", (state,)) for state in STATES
]
SLOW_CELLS = [
    cell_param(way, (state,), pytest.mark.slow_reproduce)
    for way in WAYS
    if way != "plain"
    for state in STATES
]


@pytest.mark.parametrize(("way", "states"), DEFAULT_CELLS + SLOW_CELLS)
def test_reproduce_is_identical_or_refuses(way: str, states: tuple[str, ...]) -> None:
    """One cell: a run started ``way`` in a repository in ``states`` is reproduced
    ``identical``, or refused in one line where EXPECTED_REFUSALS allows it."""
    check(way, states)


def compatible(states: frozenset[str]) -> bool:
    return all(len(states & group) <= 1 for group in EXCLUSIVE)


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # a cell takes seconds: no shrinking
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    way=st.sampled_from([w for w in WAYS if w not in SLURM_WAYS]),
    states=st.frozensets(
        st.sampled_from([s for s in STATES if s != "clean"]), min_size=2, max_size=4
    ).filter(compatible),
)
def test_drawn_combinations_reproduce_or_refuse(way: str, states: frozenset[str]) -> None:
    """Ways and several states together, drawn by Hypothesis (fixed examples: derandomized)."""
    check(way, tuple(s for s in STATES if s in states))
