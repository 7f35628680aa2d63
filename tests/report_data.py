"""Logs directories for the report's tests: written with runlab's own writers.

- :func:`clean_sweep`: the example sweep, 3 learning rates x 3 seeds, recorded as a sweep.
- :func:`heterogeneous`: a logs directory as people have it after a few weeks: mlp and
  cnn, adam and sgd, different epochs and batch sizes, one failed run, one broken run
  (no config, unreadable info), no sweep record; 12 runs.
- :func:`fifty_groups`: a sweep of 50 configurations (lr x weight decay) x 2 seeds.
- :func:`hostile`: a config value that is HTML, a metric name with quotes, NaN and inf.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from runlab.record.files import write_record
from runlab.record.logger import RunLogger
from runlab.record.rundir import RunDir, allocate
from runlab.sweep import ops


def example_config(**over: Any) -> dict[str, Any]:
    """The resolved config of tasks/train.py (configs/train.yaml and its groups)."""
    model = over.pop("model", "mlp")
    optimizer = over.pop("optimizer", "sgd")
    config: dict[str, Any] = {
        "model": (
            {"name": "mlp", "hidden": 128, "layers": 2, "dropout": 0.1}
            if model == "mlp"
            else {"name": "cnn", "channels": 16, "dropout": 0.1}
        ),
        "optimizer": (
            {"name": "sgd", "momentum": 0.9, "weight_decay": 0.0}
            if optimizer == "sgd"
            else {"name": "adam", "weight_decay": 0.0}
        ),
        "seed": 0,
        "epochs": 10,
        "batch_size": 64,
        "lr": 0.05,
        "test_fraction": 0.2,
        "device": "auto",
        "deterministic": True,
        "runlab": {"logs": "logs", "run_id": None},
    }
    for key, value in over.items():
        node = config
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return config


def make_run(
    logs: Path,
    config: dict[str, Any] | None,
    curves: dict[str, list[float]],
    status: str = "COMPLETE",
    start: str = "2026-11-02T09:00:00+00:00",
    duration: float = 42.0,
) -> int:
    """A run directory with ``config``, ``info`` and one metric row per step of ``curves``
    (``{"train.loss": [...], "test.acc": [...]}``)."""
    run = RunDir(allocate(logs)[0]).create()
    if config is not None:
        write_record(run.config_file, config)
    write_record(run.env_file, {"git": {"commit": "c0ffee1", "dirty": False}, "host": "lab-3"})
    run.update_info(status=status, start_time=start, duration_s=duration, host="lab-3")
    if status == "FAILED":
        run.update_info(error={"type": "FloatingPointError", "message": "loss is NaN at step 3"})
        (run.path / "metadata" / "traceback.txt").write_text(
            'Traceback (most recent call last):\n  File "tasks/train.py", line 88, in main\n'
            "FloatingPointError: loss is NaN at step 3\n"
        )
    # The run's lock held here, as a run session holds it: the logger only logs, and
    # the record stays as written above (a logger by hand would open a new attempt).
    run.acquire()
    try:
        with RunLogger(run, flush_interval=60) as logger:
            for name in sorted({m.split(".", 1)[0] for m in curves}):
                keys = {
                    m.split(".", 1)[1]: v for m, v in curves.items() if m.startswith(name + ".")
                }
                for step in range(max(len(v) for v in keys.values())):
                    row = {k: v[step] for k, v in keys.items() if step < len(v)}
                    logger.log_metrics(row, step=step, name=name)
    finally:
        run.release()
    return int(run.run_id)


def _curve(epochs: int, speed: float, floor: float, noise: float) -> dict[str, list[float]]:
    loss = [
        floor + (2.3 - floor) * math.exp(-speed * (e + 1)) + noise * ((e * 7) % 3) / 10
        for e in range(epochs)
    ]
    top = 0.7 + 0.25 * min(speed, 1.0) - floor - noise / 50
    acc = [top * (1.0 - 0.85 * math.exp(-speed * (e + 1))) for e in range(epochs)]
    return {"train.loss": loss, "test.acc": acc}


def record_sweep(logs: Path, sweep_id: str, run_ids: list[int]) -> None:
    ops.save(
        logs,
        ops.SweepRecord(
            sweep_id=sweep_id,
            created="2026-11-20T10:00:00+00:00",
            host="test",
            user="test",
            cwd=str(logs),
            command=["runlab", "submit"],
            task="train.py",
            overrides=[],
            logs=str(logs),
            launcher={"name": "local"},
            limits=None,
            runs=run_ids,
        ),
    )


def clean_sweep(logs: Path) -> list[int]:
    """``+sweep=lr_seed``: lr in 0.1, 0.03, 0.01 x seeds 0..2, 10 epochs each."""
    ids = []
    for lr in (0.1, 0.03, 0.01):
        for seed in range(3):
            speed = {0.1: 0.6, 0.03: 0.35, 0.01: 0.15}[lr]
            ids.append(
                make_run(
                    logs,
                    example_config(lr=lr, seed=seed),
                    _curve(10, speed * (1 + 0.05 * seed), 0.05, seed),
                    start=f"2026-11-20T10:0{len(ids) % 10}:00+00:00",
                )
            )
    record_sweep(logs, "20261120-100000-1", ids)
    return ids


HETEROGENEOUS = [
    # (week-day start, config overrides, epochs, speed, status)
    ("2026-11-02", {"model": "mlp", "optimizer": "sgd", "lr": 0.1}, 10, 0.40, "COMPLETE"),
    (
        "2026-11-02",
        {"model": "mlp", "optimizer": "sgd", "lr": 0.1, "seed": 1},
        10,
        0.42,
        "COMPLETE",
    ),
    (
        "2026-11-03",
        {"model": "mlp", "optimizer": "sgd", "lr": 0.05, "batch_size": 128},
        20,
        0.30,
        "COMPLETE",
    ),
    ("2026-11-05", {"model": "mlp", "optimizer": "adam", "lr": 0.001}, 10, 0.55, "COMPLETE"),
    (
        "2026-11-05",
        {"model": "mlp", "optimizer": "adam", "lr": 0.001, "seed": 1},
        10,
        0.52,
        "COMPLETE",
    ),
    ("2026-11-09", {"model": "cnn", "optimizer": "adam", "lr": 0.001}, 20, 0.70, "COMPLETE"),
    (
        "2026-11-09",
        {"model": "cnn", "optimizer": "adam", "lr": 0.001, "seed": 1},
        20,
        0.68,
        "COMPLETE",
    ),
    ("2026-11-10", {"model": "cnn", "optimizer": "sgd", "lr": 0.05}, 20, 0.45, "COMPLETE"),
    ("2026-11-12", {"model": "cnn", "optimizer": "sgd", "lr": 0.5}, 4, 0.10, "FAILED"),
    (
        "2026-11-16",
        {"model": "cnn", "optimizer": "adam", "lr": 0.003, "model.dropout": 0.2, "device": "cuda"},
        30,
        0.80,
        "COMPLETE",
    ),
    (
        "2026-11-17",
        {
            "model": "mlp",
            "optimizer": "adam",
            "lr": 0.001,
            "model.hidden": 256,
            "deterministic": False,
        },
        10,
        0.60,
        "COMPLETE",
    ),
]


def heterogeneous(logs: Path) -> list[int]:
    """Twelve runs over three weeks; the last one is broken (no config, info unreadable)."""
    ids = []
    for day, over, epochs, speed, status in HETEROGENEOUS:
        config = example_config(epochs=epochs, **over)
        curves = _curve(epochs, speed, 0.03 if config["model"]["name"] == "cnn" else 0.08, 1)
        if status == "FAILED":
            curves = {k: [*v[:3], math.nan] for k, v in curves.items()}
        ids.append(make_run(logs, config, curves, status=status, start=f"{day}T14:00:00+00:00"))
    broken = make_run(logs, None, {"train.loss": [2.3, 2.2]}, start="2026-11-18T09:00:00+00:00")
    (logs / str(broken) / "metadata" / "info.json").write_text("{not json")
    (logs / str(broken) / "metadata" / "info.yaml").write_text("status: [unclosed\n")
    ids.append(broken)
    return ids


def fifty_groups(logs: Path) -> list[int]:
    """A sweep of 10 learning rates x 5 weight decays x 2 seeds, 12 epochs."""
    ids = []
    for i in range(10):
        lr = round(0.001 * 1.8**i, 6)
        for j, wd in enumerate((0.0, 1e-5, 1e-4, 1e-3, 1e-2)):
            for seed in range(2):
                speed = 0.15 + 0.05 * i - 0.04 * j + 0.01 * seed
                config = example_config(
                    lr=lr, seed=seed, epochs=12, **{"optimizer.weight_decay": wd}
                )
                ids.append(make_run(logs, config, _curve(12, max(speed, 0.05), 0.05, seed)))
    record_sweep(logs, "20261121-090000-1", ids)
    return ids


HOSTILE = "<img src=x onerror=alert(1)>"
QUOTED = 'acc "top" it\'s'


def hostile(logs: Path) -> list[int]:
    """Three runs: ``model.name`` is HTML in one, ``</script><b>x`` in another; the
    metric ``test.<QUOTED>`` ends NaN in one run; ``test.loss`` is inf in one."""
    ids = []
    for i, (name, finals) in enumerate(
        [(HOSTILE, [0.5, 0.7]), ("plain", [0.4, 0.6]), ("</script><b>x", [0.3, math.nan])]
    ):
        config = {"model": {"name": name}, "seed": 0, "note": HOSTILE}
        loss = [1.0, math.inf][i % 2]
        ids.append(make_run(logs, config, {f"test.{QUOTED}": finals, "test.loss": [loss] * 2}))
    return ids
