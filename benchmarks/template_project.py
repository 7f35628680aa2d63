"""A generated project's size and the time of its own checks, against runlab's wheel.

    python benchmarks/template_project.py [--repeat 3]

What a researcher gets from ``copier copy``: the template (``copier.yml`` and
``template/`` of this working tree, committed or not) is rendered with every default
answer, committed, and its tracked files counted (``git ls-files``). runlab is built
into a wheel from this tree and installed into a folder of its own, which the project
sees on ``PYTHONPATH`` (so ``src/`` is never on the path). Then, in the project, timed
``--repeat`` times each: its own tests (``python -m pytest``), one epoch of
``tasks/train.py``, and ``runlab submit --launcher local --dry-run``. Medians are
printed, with the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
GIT += ["-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _tree_files() -> list[str]:
    """The working tree's files as a clone would hold them (tracked and untracked, not ignored)."""
    out = _git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    return [name for name in out.split("\0") if name and (ROOT / name).is_file()]


def render(tmp: Path) -> Path:
    """Render the template with every default answer into ``tmp/my-project``, committed."""
    import copier

    template = tmp / "template-repo"
    for name in _tree_files():
        if name == "copier.yml" or name.startswith("template/"):
            (template / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, template / name)
    _git(template, "init", "-q")
    _git(template, "add", "-A")
    _git(template, "commit", "-qm", "template")
    project = tmp / "my-project"
    copier.run_copy(str(template), project, defaults=True, vcs_ref="HEAD", quiet=True)
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "from the runlab template")
    return project


def install_wheel(tmp: Path) -> Path:
    """Build runlab's wheel from a copy of this tree, install it into a folder; return it."""
    source = tmp / "runlab-src"
    for name in _tree_files():
        if not name.startswith(("tests/", "docs/", "benchmarks/", "template/")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    wheels, target = tmp / "wheels", tmp / "site"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("runlab-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runlab-template-") as name:
        tmp = Path(name)
        t0 = time.perf_counter()
        project = render(tmp)
        rendered = time.perf_counter() - t0
        files = _git(project, "ls-files").splitlines()
        site = install_wheel(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PIXI_"))}
        env["PYTHONPATH"] = str(site)
        cli = [str(site / "bin" / "runlab")]
        steps = {
            "its tests (python -m pytest)": [sys.executable, "-m", "pytest", "-q"],
            "one epoch (tasks/train.py epochs=1)": [sys.executable, "tasks/train.py", "epochs=1"],
            "submit --launcher local --dry-run": [
                *cli,
                "submit",
                "tasks/train.py",
                "--launcher",
                "local",
                "--dry-run",
            ],
        }
        times: dict[str, list[float]] = {step: [] for step in steps}
        for i in range(args.repeat):
            for step, command in steps.items():
                env["RUNLAB_LOGS"] = str(tmp / f"logs-{i}")
                start = time.perf_counter()
                proc = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
                times[step].append(time.perf_counter() - start)
                if proc.returncode != 0:
                    sys.exit(f"{step} failed:\n{proc.stdout}\n{proc.stderr}")
        dirty = _git(project, "status", "--porcelain")
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"rendered in {rendered:.1f} s: {len(files)} tracked files (target: at most 60)")
    print(f"the project's tree after its checks: {dirty or 'clean'}")
    print(f"{'step':<40} {'median s':>9} {'min':>7} {'max':>7}")
    for step, values in times.items():
        print(
            f"{step:<40} {statistics.median(values):>9.1f} {min(values):>7.1f} {max(values):>7.1f}"
        )
    total = sum(statistics.median(v) for v in times.values())
    print(f"{'the three together (medians)':<40} {total:>9.1f}   (target: under 120 s)")


if __name__ == "__main__":
    main()
