"""Every reading command on a logs directory holding a damaged or hand-edited file gives
a result or a one-line error, never an internal error, and still shows the other runs.

A small logs directory (a local sweep of two runs) is made once; each generated example
copies it, damages one file of run 1 (cut short, random bytes, invalid UTF-8, a YAML
tab, JSON of the wrong type, emptied, removed, a link to ``/dev/zero``) and runs each reading command as a
real process.
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
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import TASKS, make_project, runlab_cli, task_env

# Each reading command `runlab --help` lists; `report` writes into a folder of its own.
COMMANDS = [
    ["ls"],
    ["status"],
    ["show", "1"],
    ["logs", "1"],
    ["logs", "1", "--err"],
    ["diff", "1", "2"],
    ["compare", "1", "2"],
    ["ls", "--metrics", "train.value"],
    ["verify"],
    ["verify", "--deep"],
    ["report", "--all", "-o", "{report}"],
]

DAMAGES = [
    "truncate",
    "random",
    "not_utf8",
    "yaml_tab",
    "json_list",
    "json_string",
    "empty",
    "delete",
    "retyped",
    "endless",  # a link to /dev/zero: a file with no end (reading it whole never returns)
]

# Examples: few by default (each runs eight commands); RUNLAB_DAMAGE_EXAMPLES=500 searches widely.
EXAMPLES = int(os.environ.get("RUNLAB_DAMAGE_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose logs hold two complete runs of a local sweep, made once."""
    project = make_project(
        tmp_path_factory.mktemp("damaged"), TASKS / "quadratic.py", TASKS / "quadratic.yaml"
    )
    runlab_cli(
        project,
        "submit",
        "tasks/quadratic.py",
        "x=0,1",
        "steps=3",
        "interval=0",
        "--launcher",
        "local",
        "--wait",
    )
    return project


def run_files(logs: Path) -> list[str]:
    """Every file of run 1, and its job output, relative to ``logs`` (sorted)."""
    files = [p for p in (logs / "1").rglob("*") if p.is_file()]
    files += [p for p in (logs / ".sweeps").rglob("1.*") if p.parent.name == "logs"]
    return sorted(str(p.relative_to(logs)) for p in files)


def retyped(raw: bytes, k: int) -> bytes:
    """``raw`` (a JSON or YAML mapping, or JSON lines) with each value replaced by one of
    another type, as a hand edit might leave it: valid JSON (so YAML too)."""
    wrong = [[], 5, {}, "x", None, [1, "a"], {"b": []}, True]
    lines = raw.splitlines() or [b"{}"]
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        data = None
    rows = [data] if isinstance(data, dict) else []
    if not rows:  # JSON lines: each whole row retyped
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    out = [
        {key: wrong[(i + k) % len(wrong)] for i, key in enumerate(row)}
        for row in rows
        if isinstance(row, dict)
    ]
    return b"\n".join(json.dumps(row).encode() for row in out or [{"status": []}]) + b"\n"


def damage(path: Path, how: str, k: int, noise: bytes) -> None:
    """Damage the file at ``path`` the way ``how`` names (``k``: where to cut)."""
    if how == "endless" and path.parent.name == "logs":  # a job's output, not a record:
        how = "random"  # `runlab logs` copies it as `cat` would, without end for this one
    raw = path.read_bytes()
    data = {
        "truncate": raw[: k % (len(raw) + 1)],
        "random": noise,
        "not_utf8": raw[: k % (len(raw) + 1)] + b"\xff\xfe\xc3(" + raw[k % (len(raw) + 1) :],
        "yaml_tab": b"a:\n\tb: 1\n",
        "json_list": b"[]",
        "json_string": b'"x"',
        "empty": b"",
        "retyped": retyped(raw, k) if how == "retyped" else b"",
    }.get(how)
    if how == "endless":
        path.unlink()
        path.symlink_to("/dev/zero")
    elif data is None:
        path.unlink()
    else:
        path.write_bytes(data)


def run_all(project: Path, report: Path) -> list[tuple[str, subprocess.CompletedProcess]]:
    """Every reading command, run at once as processes (they only read the logs)."""
    procs = []
    for args in COMMANDS:
        argv = [a.replace("{report}", str(report)) for a in args]
        procs.append(
            (
                " ".join(argv),
                subprocess.Popen(
                    [sys.executable, "-m", "runlab", *argv],
                    cwd=project,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=task_env(RUNLAB_LOGS=str(project / "logs")),
                ),
            )
        )
    done = []
    for name, proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append((name, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)))
    return done


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    pick=st.integers(min_value=0, max_value=10_000),
    how=st.sampled_from(DAMAGES),
    k=st.integers(min_value=0, max_value=4096),
    noise=st.binary(min_size=1, max_size=64),
    alone=st.booleans(),
)
# Found so far: a hand-edited config.yaml with a tab, an info.yaml of binary bytes, an
# env.yaml whose git or packages is not a mapping, an info.json whose status is a number.
@example(pick=-1, how="yaml_tab", k=0, noise=b"x", alone=True)
@example(pick=-2, how="random", k=0, noise=bytes(range(256)), alone=True)
@example(pick=-3, how="retyped", k=0, noise=b"x", alone=True)
@example(pick=-4, how="retyped", k=1, noise=b"x", alone=False)
@example(pick=-4, how="endless", k=0, noise=b"x", alone=False)  # verify read it forever
@example(pick=-5, how="endless", k=0, noise=b"x", alone=False)
@example(pick=-6, how="endless", k=0, noise=b"x", alone=False)  # diff, verify --deep: forever
def test_reading_commands_survive_one_damaged_file(
    made: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pick: int,
    how: str,
    k: int,
    noise: bytes,
    alone: bool,
) -> None:
    project = tmp_path_factory.mktemp("copy") / "project"
    shutil.copytree(made, project, symlinks=True)
    logs = project / "logs"
    files = run_files(logs)
    named = {
        -1: "1/metadata/config.yaml",
        -2: "1/metadata/info.yaml",
        -3: "1/metadata/env.yaml",
        -4: "1/metadata/info.json",
        -5: "1/metadata/config.json",
        -6: "1/metrics/test.jsonl",
    }
    target = named.get(pick) or files[pick % len(files)]
    twin = (logs / target).with_suffix(
        {".json": ".yaml", ".yaml": ".json"}.get(Path(target).suffix, "")
    )
    if alone and twin.name != Path(target).name and twin.exists():
        twin.unlink()  # a metadata file's YAML is read only without its JSON twin
    damage(logs / target, how, k, noise)
    results = run_all(project, project.parent / "report")
    for name, proc in results:
        said = f"runlab {name} with {target} damaged ({how}):\n{proc.stderr[-2000:]}"
        assert proc.returncode in (0, 1, 2), said
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, said
        assert len(proc.stderr.strip().splitlines()) <= 60, said
    listed = dict(results)["ls"].stdout
    assert any(line.split()[:1] == ["2"] for line in listed.splitlines()), listed
