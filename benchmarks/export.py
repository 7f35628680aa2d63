"""Time of `runlab export tensorboard` and `runlab export mlflow` over many runs.

    python benchmarks/export.py [--runs 100] [--steps 1000] [--keys 3]

Makes RUNS runs with the logger (KEYS metrics of one file, `train`, over STEPS steps:
RUNS x STEPS x KEYS points), then times, each as `runlab export` runs it: the first
export to TensorBoard event files, the second (nothing changed: nothing written), the
first export to MLflow (a local sqlite database) and the second. Needs the
`tensorboard` and `mlflow` extras.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path


def make_runs(logs: Path, runs: int, steps: int, keys: int) -> None:
    from runlab.record.logger import RunLogger
    from runlab.record.rundir import allocate

    for path in allocate(logs, runs):
        with RunLogger(path, config={"lr": 0.01, "model": {"name": "mlp", "width": 64}}) as log:
            for step in range(steps):
                log.log_metrics({f"m{k}": 1.0 / (step + k + 1) for k in range(keys)})


def timed(label: str, call) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    outcome = call()
    seconds = time.perf_counter() - start
    counts = dict(outcome.counts)
    print(f"{label:<28} {seconds:7.2f} s  {counts}  {outcome.points:,} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=3)
    args = parser.parse_args()
    from runlab.results import export
    from runlab.results.reader import Reader

    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        make_runs(logs, args.runs, args.steps, args.keys)
        Reader(logs)  # the index made once, as a user's earlier `runlab ls` would have
        points = args.runs * args.steps * args.keys
        print(f"{args.runs} runs x {args.steps} steps x {args.keys} keys = {points:,} points")
        print(f"python {platform.python_version()}, {platform.machine()}")
        out = Path(tmp) / "tb"
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        timed("tensorboard, first", lambda: export.to_tensorboard(Reader(logs), out))
        timed("tensorboard, again", lambda: export.to_tensorboard(Reader(logs), out))
        timed("mlflow (sqlite), first", lambda: export.to_mlflow(Reader(logs), uri))
        timed("mlflow (sqlite), again", lambda: export.to_mlflow(Reader(logs), uri))


if __name__ == "__main__":
    main()
