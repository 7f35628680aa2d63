"""Reading a sweep: runlab's Polars reader against MLXP's Reader, on MLXP's paper workload.

    python benchmarks/reader_vs_mlxp.py [--workdir DIR] [--repeat 5] [--skip-big] [--skip-mlxp]

The workload is a grid of method x noise std x seed runs (7 x 5 x 30 = 1,050 runs)
of 1,000 logged steps each, written once under ``--workdir`` (and reused while its
parameters match) by each tool's own logger: runlab's ``RunSession`` and its
``RunLogger`` (the environment is captured once and reused, since capturing it
runs git), and MLXP's ``DefaultLogger``. A second runlab workload has 10x the
seeds: 10,500 runs.

The task is MLXP's reading workflow (paper, listing 10): filter the runs with a
query, group them by method and std, and take the mean and std of the loss
curves over the seeds of each group. It is timed for two queries: five seeds
(``config.seed in [0, 1, 2, 3, 4]``, the paper's mean over five seeds) and every
seed (``info.status == 'COMPLETE'`` alone). Each measurement runs in a fresh
process and times the work from ``Reader(...)`` to the aggregated result; the
import of the reader (and Polars) is reported apart. "Cold" deletes the tool's
index first (runlab's ``.runlab-index/``, MLXP's ``database.json`` is rebuilt
with ``refresh=True``); "warm" reuses it. The operating system's file cache is
warm in both. Peak memory is the largest resident set of the timing process
(plus its largest child, for runlab's parallel metadata parsing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METHODS = ("GD", "GN", "Adam", "SGD", "Momentum", "RMSprop", "Adagrad")
STDS = (0.0, 0.01, 0.1, 0.5, 1.0)
QUERIES = {
    "5 seeds": "info.status == 'COMPLETE' & config.seed in [0, 1, 2, 3, 4]",
    "all seeds": "info.status == 'COMPLETE'",
}
GROUP = ("config.method", "config.std")


# ------------------------------------------------------------------ workload
def grid(seeds: int) -> list[tuple[int, str, float, int]]:
    out = []
    rid = 0
    for method in METHODS:
        for std in STDS:
            for seed in range(seeds):
                rid += 1
                out.append((rid, method, std, seed))
    return out


def curve(method: str, std: float, seed: int, steps: int) -> list[float]:
    import numpy as np

    rng = np.random.default_rng([METHODS.index(method), int(std * 1000), seed])
    rate = 0.002 * (1 + METHODS.index(method))
    t = np.arange(steps)
    values = np.exp(-rate * t) + std * 0.1 * rng.standard_normal(steps)
    return values.tolist()


def _config(method: str, std: float, seed: int, steps: int) -> dict[str, Any]:
    return {"method": method, "std": std, "seed": seed, "n_iter": steps, "optimizer": {"lr": 0.01}}


def _gen_runlab(args: tuple[str, list[tuple[int, str, float, int]], int, dict[str, Any]]) -> None:
    logs, chunk, steps, env = args
    from runlab.record import environment
    from runlab.record.lifecycle import RunSession
    from runlab.record.rundir import RunDir

    # RunSession records the environment of every run; capturing it runs git, so
    # capture it once (in the parent) and hand the same record to each run.
    environment.capture = lambda code_path: (env, None)
    for rid, method, std, seed in chunk:
        run = RunDir(Path(logs) / str(rid))
        config = _config(method, std, seed, steps)
        overrides = [f"method={method}", f"std={std}", f"seed={seed}"]
        command = [sys.executable, "train.py", *overrides]
        with RunSession(run, config, overrides, task="train.py", command=command) as session:
            assert session.logger is not None
            log = session.logger.log_metrics
            for value in curve(method, std, seed, steps):
                log({"loss": value}, name="train")


def _gen_mlxp(args: tuple[str, list[tuple[int, str, float, int]], int]) -> None:
    logs, chunk, steps = args
    import socket
    from datetime import datetime

    from mlxp.logger import DefaultLogger
    from omegaconf import OmegaConf

    for rid, method, std, seed in chunk:
        logger = DefaultLogger(parent_log_dir=logs, forced_log_id=rid)
        now = datetime.now()
        info: dict[str, Any] = {
            "hostname": socket.gethostname(),
            "process_id": os.getpid(),
            "executable": sys.executable,
            "current_file_path": "train.py",
            "start_date": now.strftime("%d/%m/%Y"),
            "start_time": now.strftime("%H:%M:%S"),
            "status": "RUNNING",
            "work_dir": os.getcwd(),
            "logger": logger.get_info(),
        }
        # What mlxp.launch writes around the task, through the same logger methods.
        logger._log_configs(OmegaConf.create(_config(method, std, seed, steps)))
        logger._log_configs(OmegaConf.create(info), "info")
        for step, value in enumerate(curve(method, std, seed, steps)):
            logger.log_metrics({"step": step, "time": time.time(), "loss": value}, log_name="train")
        now = datetime.now()
        info.update(
            end_date=now.strftime("%d/%m/%Y"), end_time=now.strftime("%H:%M:%S"), status="COMPLETE"
        )
        logger._log_configs(OmegaConf.create(info), "info")


def ensure(workdir: Path, tool: str, seeds: int, steps: int, procs: int) -> tuple[Path, float]:
    """The workload directory, generated unless present with the same parameters."""
    logs = workdir / f"{tool}-{len(METHODS) * len(STDS) * seeds}x{steps}"
    marker = logs / ".bench-complete"
    params = {"tool": tool, "methods": METHODS, "stds": STDS, "seeds": seeds, "steps": steps}
    if marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(params)):
        return logs, 0.0
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    runs = grid(seeds)
    chunks = [runs[i::procs] for i in range(procs)]
    print(f"generating {len(runs)} {tool} runs in {logs} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    with ctx.Pool(procs) as pool:
        if tool == "runlab":
            from runlab.record import environment

            env, _ = environment.capture(Path.cwd())
            pool.map(_gen_runlab, [(str(logs), c, steps, env) for c in chunks])
        else:
            pool.map(_gen_mlxp, [(str(logs), c, steps) for c in chunks])
    elapsed = time.perf_counter() - start
    marker.write_text(json.dumps(params))
    print(f"  {elapsed:.1f} s", file=sys.stderr, flush=True)
    return logs, elapsed


# -------------------------------------------------------------------- timing
def _peak_mb() -> float:
    """Peak resident memory of this process (VmHWM), plus that of its largest child.

    The child's figure counts the pages it shares with this process again, so the
    sum is an upper bound of the peak of the two together.
    """
    own = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                own = float(line.split()[1])
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024


def child_runlab(logs: str, query: str, save: str | None) -> dict[str, Any]:
    start = time.perf_counter()
    import polars as pl

    from runlab.results.reader import Reader, wait_for_index

    imported = time.perf_counter()
    runs = Reader(logs)
    selected = runs.filter(query)
    out = selected.group_by(*GROUP).curves("train.loss")
    done = time.perf_counter()
    wait_for_index()  # the cache write finishing in the background, for the next run
    if save:
        out.write_parquet(save)
    return {
        "import_s": imported - start,
        "seconds": done - imported,
        "runs": len(selected),
        "groups": out.select(pl.struct(*GROUP).n_unique()).item(),
        "rows": out.height,
        "peak_mb": _peak_mb(),
    }


def child_mlxp(logs: str, query: str, refresh: bool, compare: str | None) -> dict[str, Any]:
    start = time.perf_counter()
    import io
    from contextlib import redirect_stdout

    import mlxp
    import numpy as np

    imported = time.perf_counter()

    def mean(x: Any) -> Any:
        return np.mean(np.array(x), axis=0)

    def std(x: Any) -> Any:
        return np.std(np.array(x), axis=0, ddof=1)

    with redirect_stdout(io.StringIO()):  # MLXP prints progress
        reader = mlxp.Reader(logs, refresh=refresh)
        results = reader.filter(query_string=query)
        grouped = results.groupby(list(GROUP))
        agg = grouped.aggregate([(mean, "train.loss"), (std, "train.loss")])
    done = time.perf_counter()
    out: dict[str, Any] = {
        "import_s": imported - start,
        "seconds": done - imported,
        "runs": len(results),
        "groups": len(list(agg.keys())),
        "peak_mb": _peak_mb(),
    }
    if compare:  # the same numbers as runlab's?
        import polars as pl

        ref = pl.read_parquet(compare)
        worst = 0.0
        for key in agg:
            method, std_ = key
            mine = ref.filter((pl.col(GROUP[0]) == method) & (pl.col(GROUP[1]) == std_)).sort(
                "step"
            )
            theirs = agg[key][0]
            worst = max(
                worst,
                float(np.max(np.abs(mine["mean"].to_numpy() - theirs["fmean.train.loss"]))),
                float(np.nanmax(np.abs(mine["std"].to_numpy() - theirs["fstd.train.loss"]))),
            )
        out["max_abs_diff_vs_runlab"] = worst
    return out


def spawn(*argv: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *argv], capture_output=True, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {argv} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1][len("RESULT ") :])


def time_runlab(logs: Path, query: str, repeat: int, save: Path | None = None) -> dict[str, Any]:
    cold, warm = [], []
    for i in range(repeat):
        shutil.rmtree(logs / ".runlab-index", ignore_errors=True)
        args = ["runlab", str(logs), query] + ([str(save)] if save and i == 0 else [])
        cold.append(spawn(*args))
        warm.append(spawn("runlab", str(logs), query))
    return {"cold": cold, "warm": warm}


def time_mlxp(logs: Path, query: str, compare: Path | None) -> dict[str, Any]:
    cold = spawn("mlxp", str(logs), query, "refresh", str(compare) if compare else "")
    warm = spawn("mlxp", str(logs), query, "reuse", "")
    return {"cold": [cold], "warm": [warm]}


# -------------------------------------------------------------------- report
def _med(results: list[dict[str, Any]], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in results)


def _fmt_s(results: list[dict[str, Any]]) -> str:
    if len(results) == 1:
        return f"{results[0]['seconds']:.3f}"
    values = [r["seconds"] for r in results]
    return f"{statistics.median(values):.3f} (min {min(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "runlab-bench"
    )
    parser.add_argument(
        "--seeds", type=int, default=30, help="seeds per (method, std): 30 -> 1,050 runs"
    )
    parser.add_argument(
        "--big-seeds", type=int, default=300, help="for the large workload: 10,500 runs"
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="runlab timings per case (median)")
    parser.add_argument(
        "--procs", type=int, default=os.cpu_count() or 1, help="generation processes"
    )
    parser.add_argument("--skip-mlxp", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "runlab":
            result = child_runlab(rest[0], rest[1], rest[2] if len(rest) > 2 else None)
        else:
            result = child_mlxp(rest[0], rest[1], rest[2] == "refresh", rest[3] or None)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    args.workdir.mkdir(parents=True, exist_ok=True)
    n_small = len(METHODS) * len(STDS) * args.seeds
    n_big = len(METHODS) * len(STDS) * args.big_seeds
    gen: dict[str, float] = {}
    small, gen["runlab"] = ensure(args.workdir, "runlab", args.seeds, args.steps, args.procs)
    if not args.skip_mlxp:
        small_mlxp, gen["mlxp"] = ensure(args.workdir, "mlxp", args.seeds, args.steps, args.procs)
    if not args.skip_big:
        big, gen["runlab-big"] = ensure(
            args.workdir, "runlab", args.big_seeds, args.steps, args.procs
        )

    load_start = os.getloadavg()[0]
    rows: list[tuple[str, ...]] = []
    details: dict[str, Any] = {}
    imports: list[float] = []
    for label, query in QUERIES.items():
        ref = args.workdir / f"runlab-curves-{label.replace(' ', '-')}.parquet"
        print(f"timing runlab, {n_small} runs, {label} ...", file=sys.stderr, flush=True)
        r = time_runlab(small, query, args.repeat, save=ref)
        imports += [x["import_s"] for x in r["cold"] + r["warm"]]
        details[f"runlab {n_small} {label}"] = r
        runs = r["cold"][0]["runs"]
        rows.append(
            (
                f"{n_small:,} x {args.steps:,}",
                f"{label} ({runs:,} runs)",
                "runlab",
                _fmt_s(r["cold"]),
                _fmt_s(r["warm"]),
                f"{max(x['peak_mb'] for x in r['cold']):.0f}",
            )
        )
        if not args.skip_mlxp:
            print(f"timing MLXP, {n_small} runs, {label} ...", file=sys.stderr, flush=True)
            m = time_mlxp(small_mlxp, query, ref)
            details[f"mlxp {n_small} {label}"] = m
            diff = m["cold"][0].get("max_abs_diff_vs_runlab")
            rows.append(
                (
                    f"{n_small:,} x {args.steps:,}",
                    f"{label} ({m['cold'][0]['runs']:,} runs)",
                    f"MLXP {_mlxp_version()}",
                    _fmt_s(m["cold"]),
                    _fmt_s(m["warm"]),
                    f"{m['cold'][0]['peak_mb']:.0f}",
                )
            )
            details[f"mlxp {n_small} {label}"]["max_abs_diff_vs_runlab"] = diff
    if not args.skip_big:
        for label, query in QUERIES.items():
            print(f"timing runlab, {n_big} runs, {label} ...", file=sys.stderr, flush=True)
            r = time_runlab(big, query, max(1, min(args.repeat, 3)))
            details[f"runlab {n_big} {label}"] = r
            runs = r["cold"][0]["runs"]
            rows.append(
                (
                    f"{n_big:,} x {args.steps:,}",
                    f"{label} ({runs:,} runs)",
                    "runlab",
                    _fmt_s(r["cold"]),
                    _fmt_s(r["warm"]),
                    f"{max(x['peak_mb'] for x in r['cold']):.0f}",
                )
            )

    import polars as pl

    print(f"\n`python {' '.join(sys.argv)}`  ")
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Polars {pl.__version__}, MLXP {_mlxp_version()}; load average {load_start:.2f} at the "
        f"start, {os.getloadavg()[0]:.2f} at the end (other work on the machine slows every figure). "
        + (
            "Generation: " + ", ".join(f"{k} {v:.0f} s" for k, v in gen.items() if v)
            if any(gen.values())
            else "Workloads reused from --workdir"
        )
        + "\n"
    )
    header = (
        "Runs x steps",
        "Query",
        "Reader",
        "Cold, no index (s)",
        "Warm index (s)",
        "Peak RSS (MB)",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\nSeconds from `Reader(logs)` to the grouped mean/std curves (filter + group by "
        f"method and std + curves), median of {args.repeat} fresh processes for runlab "
        f"(min in brackets), one for MLXP; imports excluded (runlab.results.reader with Polars: "
        f"median {statistics.median(imports):.2f} s)."
    )
    for key, value in details.items():
        if key.startswith("mlxp") and value.get("max_abs_diff_vs_runlab") is not None:
            print(
                f"{key}: largest difference from runlab's mean/std curves: {value['max_abs_diff_vs_runlab']:.2e}"
            )
    (args.workdir / "results.json").write_text(json.dumps(details, indent=1))
    return 0


def _mlxp_version() -> str:
    try:
        from importlib.metadata import version

        return version("mlxp")
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
