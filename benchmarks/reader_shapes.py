"""Reading sweeps of many shapes: cold and warm times and peak memory against issue 10's targets.

    python benchmarks/reader_shapes.py [--workdir DIR] [--shapes paper,issue,...] [--repeat 3]
                                       [--procs 2] [--out results.json] [--src DIR] [--mlxp FILE]

Each shape is a logs directory written once, under ``--workdir``, by runlab's own
writer (``runlab.record.rundir.allocate``, ``RunLogger.log_metrics``, ``files.write_record``
for ``metadata/config`` and ``metadata/env``, ``RunDir.update_info`` for
``metadata/info``: every record has its JSON twin), and reused on later runs while
its parameters match (a ``.bench-complete`` marker holds them). The environment
record is captured once and written into every run, as ``RunSession`` would.

Shapes (runs x rows per metric file; metric columns ``loss`` and ``acc``):

==========  =========================================  ===========================
paper       7 methods x 5 stds x 30 seeds = 1,050 x    all runs, curves of
            1,000, one file ``train``                  ``train.loss`` by method, std
issue       the same directory as ``paper``            900 runs (a filter), curves
few-long    10 runs x 200,000                          curves by method
many-short  10,500 x 10 (7 x 5 x 300)                  curves by method, std
many-long   10,500 x 1,000                             curves by method, std
wide        1,050 x 1,000, configs of 50 keys          a filter on a nested key,
                                                       curves by method, std
multi-file  1,050 runs, ``train`` 1,000 rows, ``val``  curves of train.loss,
            100, ``test`` 10                           val.loss and test.acc
one-huge    one run of 2,000,000 rows                  curves (one group)
==========  =========================================  ===========================

Each measurement runs in a fresh Python process (this script's worker mode) and
times ``Reader(logs)`` -> ``filter`` -> ``group_by(...).curves(...)`` (the result
collected); the import of ``runlab.results.reader`` and Polars is timed apart. "Cold"
deletes ``<logs>/.runlab-index`` first; "warm" runs right after a cold one, with the
index it wrote. The time the worker then waits for the reader's background index
write (``wait_for_index``; a script that ends waits for it too, at exit) is
reported apart as "index write". Peak memory is ``ru_maxrss`` of the worker
(``RUSAGE_SELF``; its pool processes, if any, are reported apart), import
included; the resident size after the import alone is reported too. The
operating system's file cache is warm in every case (each shape is read right
after it is written or read before).

Figures: median of ``--repeat`` fresh processes, min in brackets; the machine's
load average is recorded beside every figure (other work on a shared machine
slows each one). Results go to ``--out`` as JSON and a markdown table to stdout.

``--src DIR`` puts ``DIR`` first on the workers' ``sys.path`` (and the writer's),
to measure another checkout of runlab, e.g. a committed baseline:
``git archive HEAD src | tar -x -C /tmp/base`` then ``--src /tmp/base/src``.
``--mlxp FILE`` adds MLXP's figures from ``benchmarks/reader_vs_mlxp.py``'s
``results.json`` beside the ``paper`` shape (that script runs MLXP on the same
workload; it is not run again here).
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
COMPLETE = "info.status == 'COMPLETE'"

# Data directories: (runs as (method, std, seed) grid, rows per metric file, config width).
DATA: dict[str, dict[str, Any]] = {
    "grid-1050x1000": {"methods": 7, "stds": 5, "seeds": 30, "files": {"train": 1000}},
    "few-long-10x200000": {"methods": 2, "stds": 1, "seeds": 5, "files": {"train": 200_000}},
    "many-short-10500x10": {"methods": 7, "stds": 5, "seeds": 300, "files": {"train": 10}},
    "many-long-10500x1000": {"methods": 7, "stds": 5, "seeds": 300, "files": {"train": 1000}},
    "wide-1050x1000-50keys": {
        "methods": 7,
        "stds": 5,
        "seeds": 30,
        "files": {"train": 1000},
        "wide": True,
    },
    "multi-file-1050": {
        "methods": 7,
        "stds": 5,
        "seeds": 30,
        "files": {"train": 1000, "val": 100, "test": 10},
    },
    "one-huge-1x2000000": {"methods": 1, "stds": 1, "seeds": 1, "files": {"train": 2_000_000}},
    # 7 x 5 x 2,858 = 100,030 runs of 100 rows: a sweep of tiny runs
    "tiny-100000x100": {"methods": 7, "stds": 5, "seeds": 2858, "files": {"train": 100}},
}

TARGET_1050 = {"cold_s": 0.5, "warm_s": 0.15}
TARGET_10500 = {"cold_s": 5.0, "peak_mb": 2048}
TARGET_2M = {"cold_s": 1.5, "peak_mb": 500}
TARGET_100K = {"cold_s": 5.0, "warm_s": 1.0, "peak_mb": 4096}

GROUP = ("config.method", "config.std")
SHAPES: dict[str, dict[str, Any]] = {
    "paper": {
        "data": "grid-1050x1000",
        "label": "1,050 x 1,000, all runs",
        "query": COMPLETE,
        "group": GROUP,
        "metrics": ["train.loss"],
        "target": TARGET_1050,
    },
    "issue": {
        "data": "grid-1050x1000",
        "label": "1,050 x 1,000, 900 selected",
        "query": f"{COMPLETE} & config.method != 'Adagrad'",
        "group": GROUP,
        "metrics": ["train.loss"],
        "target": TARGET_1050,
    },
    "few-long": {
        "data": "few-long-10x200000",
        "label": "10 x 200,000",
        "query": COMPLETE,
        "group": ("config.method",),
        "metrics": ["train.loss"],
        "target": TARGET_2M,  # 2,000,000 rows in all
    },
    "many-short": {
        "data": "many-short-10500x10",
        "label": "10,500 x 10",
        "query": COMPLETE,
        "group": GROUP,
        "metrics": ["train.loss"],
        "target": TARGET_10500,
    },
    "many-long": {
        "data": "many-long-10500x1000",
        "label": "10,500 x 1,000",
        "query": COMPLETE,
        "group": GROUP,
        "metrics": ["train.loss"],
        "target": TARGET_10500,
    },
    "wide": {
        "data": "wide-1050x1000-50keys",
        "label": "1,050 x 1,000, 50 config keys",
        "query": f"{COMPLETE} & config.optim.lr > 0 & config.data.augment == true",
        "group": GROUP,
        "metrics": ["train.loss"],
        "target": TARGET_1050,
    },
    "multi-file": {
        "data": "multi-file-1050",
        "label": "1,050 x (1,000 + 100 + 10), 3 files",
        "query": COMPLETE,
        "group": GROUP,
        "metrics": ["train.loss", "val.loss", "test.acc"],
        "target": TARGET_1050,
    },
    "one-huge": {
        "data": "one-huge-1x2000000",
        "label": "1 x 2,000,000",
        "query": COMPLETE,
        "group": ("config.method",),
        "metrics": ["train.loss"],
        "target": TARGET_2M,
    },
    "tiny": {
        "data": "tiny-100000x100",
        "label": "100,030 x 100",
        "query": COMPLETE,
        "group": GROUP,
        "metrics": ["train.loss"],
        "final": True,  # the finals too: filter, group, final and curves
        "target": TARGET_100K,
    },
}
DEFAULT_SHAPES = ["paper", "issue", "few-long", "many-short", "wide", "multi-file", "one-huge"]


# ------------------------------------------------------------------ workload
def grid(spec: dict[str, Any]) -> list[tuple[str, float, int]]:
    return [
        (method, std, seed)
        for method in METHODS[: spec["methods"]]
        for std in STDS[: spec["stds"]]
        for seed in range(spec["seeds"])
    ]


def config(method: str, std: float, seed: int, wide: bool) -> dict[str, Any]:
    """A run's config: 5 keys, or 50 leaf keys (flat and nested, of every scalar type)."""
    cfg: dict[str, Any] = {
        "method": method,
        "std": std,
        "seed": seed,
        "n_iter": 1000,
        "optimizer": {"lr": 0.01},
    }
    if not wide:
        return cfg
    del cfg["optimizer"]
    cfg.update(
        optim={
            "lr": 10.0 ** -(1 + seed % 4),
            "momentum": 0.9,
            "weight_decay": 1e-4 * (seed % 3),
            "nesterov": seed % 2 == 0,
            "betas": [0.9, 0.999],
            "eps": 1e-8,
            "schedule": {"name": "cosine", "warmup": 100, "min_lr": 1e-6},
        },
        model={
            "name": "resnet18" if seed % 2 else "vit_tiny",
            "depth": 2 + seed % 4,
            "width": 64 * (1 + seed % 3),
            "dropout": 0.1,
            "activation": "gelu",
            "norm": "batch",
            "init": {"scheme": "kaiming", "gain": 1.0},
            "tie_weights": False,
        },
        data={
            "name": "cifar10",
            "root": "/data/cifar10",
            "batch_size": 128,
            "num_workers": 4,
            "augment": True,
            "val_fraction": 0.1,
            "shuffle": True,
            "crop": 32,
            "mean": [0.49, 0.48, 0.45],
        },
        trainer={
            "epochs": 90,
            "precision": "bf16",
            "grad_clip": 1.0,
            "accumulate": 1,
            "log_every": 10,
            "eval_every": 100,
            "checkpoint_every": 1000,
            "deterministic": True,
            "compile": False,
        },
        logging={"project": "runlab-bench", "tags": ["bench", method], "verbose": False},
        tag=f"{method}-{std}-{seed}",
        note="a config with fifty leaves",
        debug=False,
        version=3,
        max_hours=12.5,
        resume=None,
    )
    return cfg


def rows(method: str, std: float, seed: int, n: int) -> tuple[list[float], list[float]]:
    import numpy as np

    rng = np.random.default_rng([METHODS.index(method), int(std * 1000), seed, n])
    rate = 2.0 / n * (1 + METHODS.index(method))
    t = np.arange(n)
    loss = np.exp(-rate * t) + (0.01 + std * 0.1) * rng.standard_normal(n)
    acc = np.clip(1.0 - loss / 2, 0.0, 1.0)
    return loss.tolist(), acc.tolist()


def _gen(args: tuple[list[tuple[str, tuple[str, float, int]]], dict[str, Any], Any]) -> None:
    chunk, spec, env = args
    import socket

    from runlab.record.files import now_iso, write_record
    from runlab.record.logger import RunLogger
    from runlab.record.rundir import RunDir

    for path, (method, std, seed) in chunk:
        run = RunDir(path).create()
        start = now_iso()
        t0 = time.time()
        write_record(run.config_file, config(method, std, seed, spec.get("wide", False)))
        write_record(run.env_file, env)
        run.update_info(
            run_id=run.run_id,
            status="RUNNING",
            task="train.py",
            start_time=start,
            attempt_start_time=start,
            heartbeat=start,
            heartbeat_interval_s=30.0,
            host=socket.gethostname(),
            user="bench",
            pid=os.getpid(),
            command=[sys.executable, "train.py", f"method={method}", f"std={std}", f"seed={seed}"],
            cwd=os.getcwd(),
            attempts=1,
        )
        with RunLogger(run, flush_interval=5.0) as logger:
            for name, n in spec["files"].items():
                loss, acc = rows(method, std, seed, n)
                log = logger.log_metrics
                for a, b in zip(loss, acc, strict=True):
                    log({"loss": a, "acc": b}, name=name)
        run.update_info(status="COMPLETE", end_time=now_iso(), duration_s=time.time() - t0)


def _twins(files: list[str]) -> None:
    from runlab.results.reader._metrics import write_twin

    for f in files:
        write_twin(f)


def ensure(workdir: Path, key: str, procs: int) -> tuple[Path, float]:
    """The logs directory of ``key``, generated unless present with the same parameters."""
    spec = DATA[key]
    logs = workdir / key
    marker = logs / ".bench-complete"
    params = {"version": 2, **spec}  # 2: metric files have their columnar twins
    found = json.loads(marker.read_text()) if marker.exists() else None
    if found == json.loads(json.dumps(params)):
        return logs, 0.0
    if found == json.loads(json.dumps({**params, "version": 1})):
        # Written before the logger wrote twins at close: add them as close() would.
        print(f"adding columnar twins to {key} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        files = sorted(str(p) for p in logs.glob("*/metrics/*.jsonl"))
        n = max(1, min(procs, len(files)))
        import multiprocessing as mp

        with mp.get_context("fork").Pool(n) as pool:
            pool.map(_twins, [files[i::n] for i in range(n)])
        marker.write_text(json.dumps(params))
        return logs, time.perf_counter() - start
    shutil.rmtree(logs, ignore_errors=True)
    runs = grid(spec)
    print(f"generating {key}: {len(runs):,} runs in {logs} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    from runlab.record import environment
    from runlab.record.rundir import allocate

    paths = allocate(logs, len(runs))
    env, _ = environment.capture(Path.cwd())
    todo = [(str(p), r) for p, r in zip(paths, runs, strict=True)]
    # Chunks of ~equal rows: interleave, so each process gets every kind of run.
    n = max(1, min(procs, len(todo)))
    chunks = [todo[i::n] for i in range(n)]
    if n == 1:
        _gen((chunks[0], spec, env))
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(n) as pool:
            pool.map(_gen, [(c, spec, env) for c in chunks])
    elapsed = time.perf_counter() - start
    marker.write_text(json.dumps(params))
    print(f"  {elapsed:.1f} s", file=sys.stderr, flush=True)
    return logs, elapsed


def _du_mb(path: Path) -> float:
    total = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != ".runlab-index"]
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total / 2**20


# -------------------------------------------------------------------- worker
def worker(logs: str, shape: str, profile: str = "") -> dict[str, Any]:
    """One measurement, in a fresh process: import, then Reader -> filter -> curves.

    With ``profile`` (a path), the timed part runs under cProfile and its stats go there.
    """
    spec = SHAPES[shape]
    start = time.perf_counter()
    import polars as pl

    import runlab.results.reader as reader_module

    imported = time.perf_counter()
    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    ru0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    runs = reader_module.Reader(logs)
    selected = runs.filter(spec["query"])
    grouped = selected.group_by(*spec["group"])
    outs = [grouped.curves(metric) for metric in spec["metrics"]]
    if spec.get("final"):
        outs += [grouped.final(metric) for metric in spec["metrics"]]
    done = time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    wait = getattr(reader_module, "wait_for_index", None)
    if wait is not None:
        wait()
    written = time.perf_counter()
    check = [
        [o.height, float(o["mean"].sum()), float(o["std"].fill_nan(0).fill_null(0).sum())]
        for o in outs
    ]
    return {
        "import_s": imported - start,
        "seconds": done - t0,
        # CPU seconds of the timed part (all threads, and pool processes): less moved
        # by other work on the machine than the wall time, though not immune to it.
        "cpu_s": sum(
            b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(ru0, ru1, strict=True)
        ),
        "index_wait_s": written - done,
        "runs": len(selected),
        "groups": [o.select(pl.struct(*spec["group"]).n_unique()).item() for o in outs],
        "check": check,
        "rss_after_import_mb": rss_import,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "load": os.getloadavg()[0],
    }


def spawn(logs: Path, shape: str, src: str | None, profile: str = "") -> dict[str, Any]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    load_before = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", str(logs), shape, *([profile] if profile else [])],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {shape} failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["load_before"] = load_before
    return result


def measure(logs: Path, shape: str, repeat: int, src: str | None) -> dict[str, list[dict]]:
    cold, warm = [], []
    for _ in range(repeat):
        shutil.rmtree(logs / ".runlab-index", ignore_errors=True)
        cold.append(spawn(logs, shape, src))
        warm.append(spawn(logs, shape, src))
    return {"cold": cold, "warm": warm}


def profile(logs: Path, shape: str, src: str | None, folder: Path) -> dict[str, Any]:
    """One cold and one warm read under cProfile: ``<shape>-<cold|warm>.prof`` and ``.txt``."""
    import io
    import pstats

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for mode in ("cold", "warm"):
        if mode == "cold":
            shutil.rmtree(logs / ".runlab-index", ignore_errors=True)
        prof = folder / f"{shape}-{mode}.prof"
        result = spawn(logs, shape, src, str(prof))
        text = io.StringIO()
        stats = pstats.Stats(str(prof), stream=text)
        text.write(
            f"{shape} {mode}: {result['seconds']:.3f} s under cProfile, load {result['load']:.2f}\n"
        )
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(30)
        (folder / f"{shape}-{mode}.txt").write_text(text.getvalue())
        out[mode] = {"seconds": result["seconds"], "load": result["load"], "stats": str(prof)}
    return out


# -------------------------------------------------------------------- report
def _med(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def _fmt(results: list[dict[str, Any]], key: str = "seconds") -> str:
    values = [r[key] for r in results]
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.3f})"


def _load(results: list[dict[str, Any]]) -> str:
    values = [r["load"] for r in results]
    return f"{min(values):.1f}-{max(values):.1f}"


def verdict(spec: dict[str, Any], r: dict[str, list[dict]]) -> tuple[str, str]:
    target = spec["target"]
    parts, ok = [], True
    if "cold_s" in target:
        parts.append(f"cold ≤ {target['cold_s']:g} s")
        ok &= _med(r["cold"], "seconds") <= target["cold_s"]
    if "warm_s" in target:
        parts.append(f"warm ≤ {target['warm_s']:g} s")
        ok &= _med(r["warm"], "seconds") <= target["warm_s"]
    if "peak_mb" in target:
        parts.append(f"< {target['peak_mb']:,} MB")
        ok &= max(x["peak_mb"] for x in r["cold"] + r["warm"]) < target["peak_mb"]
    return ", ".join(parts), "MET" if ok else "MISSED"


def _mlxp_rows(path: Path) -> list[tuple[str, ...]]:
    data = json.loads(path.read_text())
    out = []
    for key, value in data.items():
        if not key.startswith("mlxp"):
            continue
        cold, warm = value["cold"][0], value["warm"][0]
        out.append(
            (
                "paper (MLXP, from reader_vs_mlxp.py)",
                key.removeprefix("mlxp "),
                f"{cold['runs']:,}",
                f"{cold['seconds']:.3f}",
                f"{warm['seconds']:.3f}",
                "",
                "",
                f"{max(cold['peak_mb'], warm['peak_mb']):.0f}",
                "",
                "",
                "",
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "runlab-shapes"
    )
    parser.add_argument(
        "--shapes",
        default=",".join(DEFAULT_SHAPES),
        help=f"comma-separated, of: {', '.join(SHAPES)} (default: all but many-long)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per case (median)")
    parser.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, help="JSON results (default: <workdir>/results.json)")
    parser.add_argument("--src", help="a runlab src/ directory to measure instead of the installed")
    parser.add_argument("--mlxp", type=Path, help="reader_vs_mlxp.py's results.json, for paper")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        help="also run one cold and one warm read of each shape under cProfile; "
        "stats and a top-30 listing go to this folder",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print("RESULT " + json.dumps(worker(*args.worker)), flush=True)
        return 0

    if args.src:
        sys.path.insert(0, args.src)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {unknown}; choose from {list(SHAPES)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    out_path = args.out or args.workdir / "results.json"

    generated: dict[str, dict[str, float]] = {}
    dirs: dict[str, Path] = {}
    for shape in shapes:
        key = SHAPES[shape]["data"]
        if key not in dirs:
            dirs[key], seconds = ensure(args.workdir, key, args.procs)
            generated[key] = {"seconds": seconds, "mb_on_disk": _du_mb(dirs[key])}
    if args.generate_only:
        print(json.dumps(generated, indent=1))
        return 0

    load_start = os.getloadavg()
    results: dict[str, Any] = {}
    rows: list[tuple[str, ...]] = []
    imports: list[float] = []
    for shape in shapes:
        spec = SHAPES[shape]
        print(f"timing {shape} ...", file=sys.stderr, flush=True)
        r = measure(dirs[spec["data"]], shape, args.repeat, args.src)
        # The same curves cold and warm (to 1e-9: parallel sums differ in the last bits).
        checks = {
            json.dumps([[f"{v:.9g}" for v in c] for c in x["check"]]) for x in r["cold"] + r["warm"]
        }
        target, met = verdict(spec, r)
        results[shape] = {
            "spec": {k: v for k, v in spec.items() if k != "target"},
            "target": spec["target"],
            "verdict": met,
            "same_result_cold_and_warm": len(checks) == 1,
            **r,
        }
        if args.profile:
            results[shape]["profile"] = profile(dirs[spec["data"]], shape, args.src, args.profile)
        imports += [x["import_s"] for x in r["cold"] + r["warm"]]
        peak = max(x["peak_mb"] for x in r["cold"] + r["warm"])
        kids = max(x["peak_children_mb"] for x in r["cold"] + r["warm"])
        rows.append(
            (
                shape,
                spec["label"],
                f"{r['cold'][0]['runs']:,}",
                _fmt(r["cold"]),
                _fmt(r["warm"]),
                f"{_med(r['cold'], 'cpu_s'):.2f} / {_med(r['warm'], 'cpu_s'):.2f}",
                _fmt(r["cold"], "index_wait_s"),
                f"{peak:.0f}" + (f" (+{kids:.0f} pool)" if kids > 1 else ""),
                _load(r["cold"] + r["warm"]),
                target,
                met + ("" if len(checks) == 1 else " (cold and warm results differ!)"),
            )
        )
        if shape == "paper" and args.mlxp and args.mlxp.exists():
            rows += _mlxp_rows(args.mlxp)

    import polars as pl

    rss_import = statistics.median(
        x["rss_after_import_mb"] for v in results.values() for x in v["cold"]
    )
    meta = {
        "command": "python " + " ".join(sys.argv),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "src": args.src or "installed runlab",
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "import_s_median": statistics.median(imports),
        "rss_after_import_mb_median": rss_import,
        "generated": generated,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    out_path.write_text(json.dumps({"meta": meta, "shapes": results}, indent=1))

    print(f"\n`{meta['command']}`  ")
    print(
        f"{meta['host']}: {meta['cpus']} CPUs, Python {meta['python']}, Polars {meta['polars']}, "
        f"runlab from {meta['src']}; load average {load_start[0]:.2f} at the start, "
        f"{meta['load_end'][0]:.2f} at the end. `import runlab.results.reader` with Polars: median "
        f"{meta['import_s_median']:.2f} s, {rss_import:.0f} MB resident after it (included in "
        "the peaks).\n"
    )
    header = (
        "Shape",
        "Runs x rows",
        "Runs selected",
        "Cold, no index (s)",
        "Warm (s)",
        "CPU s cold / warm",
        "Cold: index write after (s)",
        "Peak RSS (MB)",
        "Load avg",
        "Target",
        "",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\nSeconds from `Reader(logs)` to the collected curves, median of {args.repeat} fresh "
        "processes (min in brackets), imports excluded; CPU s: user + system seconds of the "
        "same part (all threads and pool processes; median). Generation (this run; 0 = reused): "
        + ", ".join(
            f"{k} {v['seconds']:.0f} s ({v['mb_on_disk']:.0f} MB)" for k, v in generated.items()
        )
    )
    print(f"JSON: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
