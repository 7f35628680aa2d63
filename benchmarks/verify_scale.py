"""``runlab verify`` on a sweep of tiny runs: the fast pass and ``--deep``, against issue 19's 3 s.

    python benchmarks/verify_scale.py [--workdir DIR] [--runs 10000] [--rows 100]
                                      [--repeat 3] [--procs 2] [--out results.json]

The logs directory is written once under ``--workdir`` by runlab's own writer (the
generator of ``benchmarks/reader_shapes.py``: ``allocate``, ``RunLogger``, full
metadata with its JSON twins, every run COMPLETE) and reused while its parameters
match. Each figure is one fresh process running the command line a user types,
``python -m runlab verify --logs DIR [--deep]``, timed from outside (interpreter
start, imports and the check), median of ``--repeat``, min in brackets; the
command's own ``checked in`` time is reported beside it. The operating system's
file cache is warm (the directory was just written or read). The load average is
recorded: other work on a shared machine slows every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import reader_shapes  # noqa: E402  (the benchmarks' shared generator)

TARGET_S = 3.0


def data_key(runs: int, rows: int) -> str:
    """Register a grid of ``runs`` runs (4 methods x 5 stds x seeds) of ``rows`` rows."""
    seeds = max(1, runs // 20)
    key = f"tiny-{4 * 5 * seeds}x{rows}"
    reader_shapes.DATA[key] = {"methods": 4, "stds": 5, "seeds": seeds, "files": {"train": rows}}
    return key


def once(logs: Path, deep: bool) -> dict[str, float]:
    """One fresh ``runlab verify`` process: wall seconds, and the command's own figure."""
    cmd = [sys.executable, "-m", "runlab", "verify", "--logs", str(logs)]
    if deep:
        cmd.append("--deep")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"verify failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    found = re.search(r"checked in ([0-9.]+) s", proc.stdout)
    return {"wall_s": wall, "check_s": float(found.group(1)) if found else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "runlab-bench"
    )
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    key = data_key(args.runs, args.rows)
    logs, generated = reader_shapes.ensure(args.workdir, key, args.procs)
    results: dict[str, list[dict[str, float]]] = {"fast": [], "deep": []}
    for _ in range(args.repeat):
        for mode in results:
            results[mode].append(once(logs, deep=mode == "deep"))
    load = os.getloadavg()[0]
    print(f"runlab verify on {key} ({logs}), {platform.node()}, load {load:.1f}")
    print("| pass | wall s (min) | check s | target |")
    print("|---|---|---|---|")
    summary = {}
    for mode, rs in results.items():
        walls = [r["wall_s"] for r in rs]
        check = statistics.median(r["check_s"] for r in rs)
        target = f"<= {TARGET_S} s" if mode == "fast" else "(timed apart)"
        print(
            f"| {mode} | {statistics.median(walls):.2f} ({min(walls):.2f}) | {check:.2f} | {target} |"
        )
        summary[mode] = {"wall_s": statistics.median(walls), "min_s": min(walls), "check_s": check}
    if args.out:
        out = {"data": key, "generated_s": generated, "load": load, "results": summary}
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
