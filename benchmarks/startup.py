"""runlab's start-up overhead: a task that does nothing, bare Hydra against ``@runlab.launch``.

    python benchmarks/startup.py [--runs 7]

Both apps load the same config and do nothing; each lives in a temporary git
repository with one commit (a clean tree, as a user's would be), so runlab's
environment capture runs its git calls for real. The figure is the wall time
from process start to exit (``subprocess.run`` around a fresh interpreter),
median of ``--runs`` runs each, after one untimed warm-up run of each (page
cache, ``.pyc`` files). runlab's overhead is the difference of the medians.
"""

from __future__ import annotations

import argparse
import os
import platform
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


def time_once(script: Path, env: dict[str, str]) -> float:
    # Bare Hydra writes outputs/<date>/ like any Hydra app; runlab turns that off.
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(script)], cwd=script.parent, env=env, check=True, capture_output=True
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each app")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runlab-startup-") as tmp:
        root = Path(tmp)
        bare, with_runlab = make_apps(root)
        env = {**os.environ, "RUNLAB_LOGS": str(root / "logs")}
        times: dict[str, list[float]] = {"bare Hydra": [], "@runlab.launch": []}
        for script in (bare, with_runlab):
            time_once(script, env)  # warm-up, untimed
        for _ in range(args.runs):  # interleaved, so that a busy moment hits both
            times["bare Hydra"].append(time_once(bare, env))
            times["@runlab.launch"].append(time_once(with_runlab, env))
        runs = sorted(p.name for p in (root / "logs").iterdir())
        assert len(runs) == args.runs + 1, runs
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'app':<16} {'median s':>9} {'min s':>7} {'max s':>7}  (n={args.runs})")
    for name, values in times.items():
        print(f"{name:<16} {med[name]:>9.3f} {min(values):>7.3f} {max(values):>7.3f}")
    print(
        f"runlab overhead  {med['@runlab.launch'] - med['bare Hydra']:>9.3f} s (median difference)"
    )


if __name__ == "__main__":
    main()
