"""How long the tutorial takes: its blocks, in order, in a fresh clone, the pip way.

    python benchmarks/tutorial_time.py [REPO]   # REPO: a path or URL git can clone (default: this one)

Clones REPO (its committed state) into a temporary directory and runs the clone's
``docs/tutorial.md`` with the clone's own docs runner (``tests/test_docs.py``), with this
Python environment standing in for the one the tutorial's pip step makes (no new virtual
environment, nothing installed). Prints the number of blocks executed and the total
wall time, with the machine's load, so the figure can be quoted with its conditions.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAGE = "docs/tutorial.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parent.parent
    parser.add_argument("repo", nargs="?", default=str(default), help="what to clone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runlab-tutorial-") as tmp:
        clone = Path(tmp) / "runlab"
        subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
        load_before = os.getloadavg()[0]
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(clone / "tests" / "test_docs.py"), "--root", str(clone), PAGE],
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - start
    print(proc.stdout, end="")
    print(proc.stderr, end="", file=sys.stderr)
    match = re.search(r"^PASS \S+ \((\d+) blocks", proc.stdout, re.M)
    blocks = int(match.group(1)) if match else 0
    print(
        f"tutorial: {blocks} blocks executed in {seconds:.1f} s "
        f"({'passed' if proc.returncode == 0 else 'FAILED'}; {platform.node()}, "
        f"{os.cpu_count()} CPUs, load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)"
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
