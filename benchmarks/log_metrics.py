"""Cost of one `log_metrics` call with five scalars: runlab's RunLogger against MLXP's logger.

    python benchmarks/log_metrics.py [--calls 200000]

Both loggers write real files into a temporary directory. runlab's figure is
amortised: the calls plus the flushes its background writer performs while they
run, plus the final flush at close. MLXP (pip install mlxp) opens and appends to
its file on every call.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path


def time_runlab(root: Path, calls: int) -> tuple[float, float]:
    """Seconds per call: the calls (with the background writer's flushes while they run),
    and the close (the last flush and the columnar twin, written once per file)."""
    from runlab.record.logger import RunLogger

    logger = RunLogger(root / "runlab-run")
    start = time.perf_counter()
    for i in range(calls):
        logger.log_metrics(
            {"loss": 0.5 / (i + 1), "acc": 0.9, "lr": 0.01, "epoch": i // 100, "grad_norm": 1.5},
            name="train",
        )
    called = time.perf_counter()
    logger.close()
    closed = time.perf_counter()
    with open(root / "runlab-run" / "metrics" / "train.jsonl", "rb") as fh:
        lines = sum(1 for _ in fh)
    assert lines == calls, (lines, calls)
    return (called - start) / calls, (closed - called) / calls


def time_mlxp(root: Path, calls: int) -> float | None:
    try:
        from mlxp.logger import DefaultLogger
    except ImportError:
        return None
    logger = DefaultLogger(parent_log_dir=str(root / "mlxp"), forced_log_id=1)
    start = time.perf_counter()
    for i in range(calls):
        logger.log_metrics(
            {"loss": 0.5 / (i + 1), "acc": 0.9, "lr": 0.01, "epoch": i // 100, "grad_norm": 1.5},
            log_name="train",
        )
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N")
    args = parser.parse_args()
    import polars  # noqa: F401  (imported by the first close: not a cost of the calls)

    results: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            root = Path(tmp) / str(i)
            root.mkdir()
            call, close = time_runlab(root, args.calls)
            results["runlab"] = min(results.get("runlab") or call + close, call + close)
            results["runlab: the calls"] = min(results.get("runlab: the calls") or call, call)
            results["runlab: the close"] = min(results.get("runlab: the close") or close, close)
            m = time_mlxp(root, min(args.calls, 50_000))
            if m is not None:
                results["mlxp"] = min(results.get("mlxp") or m, m)
    print(
        f"log_metrics, five scalars ({platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}), best of {args.repeat}:\n"
    )
    print("| logger | µs per call (runlab: calls and close; then apart, close per row) |")
    print("|---|---:|")
    for name, value in results.items():
        print(
            f"| {name} | {value * 1e6:.2f} |"
            if value is not None
            else f"| {name} | not installed |"
        )
    if results.get("mlxp"):
        print(f"\nrunlab is {results['mlxp'] / results['runlab']:.0f}x faster per call.")


if __name__ == "__main__":
    main()
