"""runlab's start-up overhead: a task that does nothing, bare Hydra against ``@runlab.launch``.

    python benchmarks/startup.py [--runs 7]

Both apps load the same config and do nothing; each lives in a temporary git
repository with one commit (a clean tree, as a user's would be), so runlab's
environment capture runs its git calls for real. The figure is the wall time
from process start to exit (``subprocess.run`` around a fresh interpreter),
median of ``--runs`` runs each, after one untimed warm-up run of each (page
cache, ``.pyc`` files). runlab's overhead is the difference of the medians.

The apps run as a user's Python runs them: writing and reusing bytecode, so
``PYTHONDONTWRITEBYTECODE`` is dropped from their environment. Where it is set
(some CI images set it), every start compiles runlab's modules from source again;
``--no-bytecode`` keeps it, to measure that case.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
lr: 0.1
epochs: 3
model:
  name: mlp
  width: 64
runlab:
  logs: ${oc.env:RUNLAB_LOGS,logs}
  run_id: null
"""

BARE = """\
import hydra


@hydra.main(config_path=".", config_name="noop", version_base="1.3")
def main(cfg):
    pass


if __name__ == "__main__":
    main()
"""

RUNLAB = """\
import runlab


@runlab.launch(config_path=".", config_name="noop")
def main(ctx):
    pass


if __name__ == "__main__":
    main()
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def make_apps(root: Path) -> tuple[Path, Path]:
    (root / "noop.yaml").write_text(CONFIG)
    (root / "bare.py").write_text(BARE)
    (root / "with_runlab.py").write_text(RUNLAB)
    (root / ".gitignore").write_text("logs/\noutputs/\nmultirun/\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=bench", "-c", "user.email=bench@example.org", "commit", "-qm", "x")
    return root / "bare.py", root / "with_runlab.py"


def time_once(script: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the app and its git children) of one run."""
    # Bare Hydra writes outputs/<date>/ like any Hydra app; runlab turns that off.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(script)], cwd=script.parent, env=env, check=True, capture_output=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each app")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="run the apps with PYTHONDONTWRITEBYTECODE=1 (every start compiles the sources)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runlab-startup-") as tmp:
        root = Path(tmp)
        bare, with_runlab = make_apps(root)
        env = {**os.environ, "RUNLAB_LOGS": str(root / "logs")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        apps = {"bare Hydra": bare, "@runlab.launch": with_runlab}
        wall: dict[str, list[float]] = {name: [] for name in apps}
        cpu: dict[str, list[float]] = {name: [] for name in apps}
        for script in apps.values():
            time_once(script, env)  # warm-up, untimed
        for _ in range(args.runs):  # interleaved, so that a busy moment hits both
            for name, script in apps.items():
                w, c = time_once(script, env)
                wall[name].append(w)
                cpu[name].append(c)
        runs = sorted(p.name for p in (root / "logs").iterdir())
        assert len(runs) == args.runs + 1, runs
    load = os.getloadavg()[0]
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"load average at the end: {load:.1f}")
    print(
        "bytecode: " + ("not written (PYTHONDONTWRITEBYTECODE=1)" if args.no_bytecode else "cached")
    )
    print(f"{'app':<16} {'wall median s':>14} {'min':>7} {'max':>7} {'CPU median s':>13}")
    for name in apps:
        w, c = wall[name], cpu[name]
        print(
            f"{name:<16} {statistics.median(w):>14.3f} {min(w):>7.3f} {max(w):>7.3f} "
            f"{statistics.median(c):>13.3f}"
        )
    dw = statistics.median(wall["@runlab.launch"]) - statistics.median(wall["bare Hydra"])
    dc = statistics.median(cpu["@runlab.launch"]) - statistics.median(cpu["bare Hydra"])
    print(
        f"runlab overhead: {dw:.3f} s wall, {dc:.3f} s CPU (differences of medians, n={args.runs})"
    )


if __name__ == "__main__":
    main()
