"""``runlab verify`` on a sweep of tiny runs: the fast pass and ``--deep``, against issue 19's 3 s.

    python benchmarks/verify_scale.py [--workdir DIR] [--runs 10000] [--rows 100]
                                      [--repeat 3] [--procs 2] [--cold] [--src DIR]
                                      [--out results.json]

The logs directory is written once under ``--workdir`` by runlab's own writer (the
generator of ``benchmarks/reader_shapes.py``: ``allocate``, ``RunLogger``, full
metadata with its JSON twins, every run COMPLETE) and reused while its parameters
match. Each figure is one fresh process running the command line a user types,
``python -m runlab verify --logs DIR [--deep]``, timed from outside (interpreter
start, imports and the check), median of ``--repeat``, min in brackets; the
command's own ``checked in`` time is reported beside it. The operating system's
file cache is warm (the directory was just written or read); ``--cold`` adds the same
figures with the cache dropped before each process (``sync``, then ``3`` into
``/proc/sys/vm/drop_caches``: root only; where it cannot be dropped the output says so
and no cold figure is given). The load average (1 minute) before each process is
recorded, its range printed beside each figure: other work on a shared machine slows
every figure.

``--src DIR`` puts ``DIR`` first on the ``runlab verify`` processes' ``PYTHONPATH``,
to measure another checkout, e.g. a committed baseline:
``git archive HEAD src | tar -x -C /tmp/base`` then ``--src /tmp/base/src``.
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


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_caches() -> str | None:
    """Empty the operating system's file cache; why it could not be, or ``None``."""
    subprocess.run(["sync"], check=False)
    try:
        DROP_CACHES.write_text("3\n")
    except OSError as exc:
        return f"cannot drop the file cache ({exc.strerror}: needs root)"
    return None


def once(logs: Path, deep: bool, env: dict[str, str]) -> dict[str, float]:
    """One fresh ``runlab verify`` process: wall seconds, and the command's own figure."""
    cmd = [sys.executable, "-m", "runlab", "verify", "--logs", str(logs)]
    if deep:
        cmd.append("--deep")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"verify failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    found = re.search(r"checked in ([0-9.]+) s", proc.stdout)
    check = float(found.group(1)) if found else float("nan")
    return {"wall_s": wall, "check_s": check, "load": load}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "runlab-bench"
    )
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cold", action="store_true", help="also time with the cache dropped")
    parser.add_argument("--src", type=Path, help="a runlab src/ to measure instead")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    key = data_key(args.runs, args.rows)
    logs, generated = reader_shapes.ensure(args.workdir, key, args.procs)
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(args.src.resolve()), env.get("PYTHONPATH")) if p
        )
    modes = [("fast", False), ("deep", False)]
    cold_note = drop_caches() if args.cold else None
    if args.cold and cold_note is None:
        modes += [("fast", True), ("deep", True)]
    results: dict[tuple[str, bool], list[dict[str, float]]] = {m: [] for m in modes}
    once(logs, True, env)  # every file --deep reads is in the cache: the warm figures first
    for cold in (False, True):
        for _ in range(args.repeat):
            for mode, c in modes:
                if c == cold:
                    if cold:
                        drop_caches()
                    results[(mode, cold)].append(once(logs, mode == "deep", env))
    print(f"runlab verify on {key} ({logs}), {platform.node()}, {os.cpu_count()} cores")
    if cold_note:
        print(f"no cold figures: {cold_note}")
    print("| pass | file cache | wall s median (min) | check s | load (1 min) | target |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for (mode, cold), rs in results.items():
        walls = [r["wall_s"] for r in rs]
        loads = [r["load"] for r in rs]
        check = statistics.median(r["check_s"] for r in rs)
        target = f"<= {TARGET_S} s" if mode == "fast" else "(timed apart)"
        print(
            f"| {mode} | {'cold' if cold else 'warm'} | {statistics.median(walls):.2f} "
            f"({min(walls):.2f}) | {check:.2f} | {min(loads):.1f}-{max(loads):.1f} | {target} |"
        )
        summary[f"{mode}-{'cold' if cold else 'warm'}"] = {
            "wall_s": statistics.median(walls),
            "min_s": min(walls),
            "check_s": check,
            "load": loads,
        }
    if args.out:
        out = {"data": key, "generated_s": generated, "cold": cold_note, "results": summary}
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
