"""``runlab tune TASK --metric FILE.KEY [SEARCH SPACE...]``: an Optuna study of runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runlab.cli._logs import add_logs_option, logs_from, logs_value
from runlab.cli._text import safe
from runlab.errors import UserError
from runlab.sweep import backends, tune
from runlab.sweep.expand import task_spec


def configure_tune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help="the task script, e.g. tasks/train.py")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="the search space in Hydra's Optuna-sweeper syntax (lr='tag(log, interval(1e-4, "
        "1e-1))' model='choice(mlp,cnn)' batch_size='range(32,256,step=32)'), fixed Hydra "
        "overrides (epochs=5) and launcher.KEY=VALUE",
    )
    parser.add_argument("--metric", help="the objective: FILE.KEY of log_metrics, e.g. test.acc")
    parser.add_argument(
        "--direction",
        choices=["maximize", "minimize"],
        help="whether a larger or a smaller metric is better (default: the --preset's, else maximize)",
    )
    parser.add_argument(
        "--objective",
        choices=["last", "best"],
        help="the run's last (default) or best logged value of the metric",
    )
    parser.add_argument("--trials", type=int, help="complete + pruned trials to reach (20)")
    parser.add_argument("--parallel", type=int, help="trials running at once (2)")
    parser.add_argument(
        "--launcher",
        choices=backends.NAMES,
        help="where trials run (default: the first of "
        f"{', '.join(backends.NAMES)} whose commands are on PATH)",
    )
    parser.add_argument(
        "--study",
        help="the study's name (default: task and a hash of the "
        "search, so the same command resumes the same study)",
    )
    parser.add_argument(
        "--sampler",
        choices=["tpe", "random", "grid"],
        help="how Optuna draws the next parameters (default: the --preset's, else tpe)",
    )
    parser.add_argument("--seed", type=int, help="the sampler's seed (default: drawn, recorded)")
    parser.add_argument(
        "--pruner",
        choices=["none", "median", "halving"],
        help="stop hopeless trials early: their status is PRUNED (default: the --preset's, else none)",
    )
    parser.add_argument("--preset", help="configs/tune/NAME.yaml beside the task's configs")
    add_logs_option(
        parser,
        help="logs directory (default: the task's runlab.logs, else "
        "$RUNLAB_LOGS, else logs/ in the project root)",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="start a study with uncommitted changes (recorded in every run)",
    )
    parser.add_argument(
        "--show", action="store_true", help="print the study's best trials and parameters"
    )
    parser.add_argument("--json", action="store_true", help="with --show: JSON")
    parser.add_argument("--top", type=int, default=5, help="with --show: how many best trials")
    parser.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="with --show: write the optimisation history and parameter "
        "importances (Optuna's plotly figures) as HTML into DIR",
    )


def run_tune(args: argparse.Namespace) -> int:
    if args.show:
        return _show(args)
    if not args.task:
        raise UserError("runlab tune needs a task script (e.g. tasks/train.py), or --show")
    preset: dict = {}
    if args.preset:
        preset = tune.load_preset(args.preset, task_spec(args.task).config_dir)
    space_args = [f"{k}={v}" for k, v in (preset.get("params") or {}).items()]
    given = {a.split("=", 1)[0] for a in args.overrides if "=" in a}
    arguments = [
        *preset.get("overrides", []),
        *(a for a in space_args if a.split("=", 1)[0] not in given),
        *args.overrides,
    ]

    def pick(name: str, default):
        value = getattr(args, name)
        return value if value is not None else preset.get(name, default)

    metric = pick("metric", None)
    if not metric:
        raise UserError("runlab tune needs --metric FILE.KEY (e.g. --metric test.acc)")
    opts = tune.Options(
        task=args.task,
        metric=metric,
        direction=pick("direction", "maximize"),
        trials=int(pick("trials", 20)),
        parallel=int(pick("parallel", 2)),
        launcher=args.launcher,
        study=pick("study", None),
        sampler=pick("sampler", "tpe"),
        seed=pick("seed", None),
        pruner=pick("pruner", "none"),
        objective=pick("objective", "last"),
        arguments=arguments,
        logs=Path(value) if (value := logs_value(args)) else None,
        allow_dirty=args.allow_dirty,
    )
    return tune.run(opts)  # a TuneError or SpaceError is a UserError: one line


def _logs(args: argparse.Namespace) -> Path:
    return logs_from(args).path


def _show(args: argparse.Namespace) -> int:
    logs = _logs(args)
    data = tune.summary(logs, args.study, args.top)
    if args.plots:
        for path in tune.write_plots(logs, data["study"], args.plots):
            print(f"wrote {safe(path)}", file=sys.stderr)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    states = ", ".join(f"{n} {s.lower()}" for s, n in data["states"].items())
    print(
        safe(
            f"study {data['study']}: {data['direction']} {data['metric']} ({data['objective']}), "
            f"sampler {data['sampler']} (seed {data['seed']}), pruner {_pruner(data['pruner'])}"
        )
    )
    print(safe(f"trials: {states or 'none yet'}"))
    print(safe(f"space: {' '.join(f'{k}={v}' for k, v in (data['space'] or {}).items())}"))
    if not data["top"]:
        print("no complete trial yet")
        return 0
    keys = list(data["top"][0]["params"])
    header = [safe(h) for h in ("trial", "run_id", data["metric"] or "value", *keys)]
    rows = [
        [
            str(r["trial"]),
            str(r["run_id"]),
            f"{r['value']:.6g}",
            *(_fmt(r["params"].get(k)) for k in keys),
        ]
        for r in data["top"]
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    best = data["best"]
    print(
        f"best: trial {best['trial']} (run {best['run_id']}) {safe(data['metric'])}="
        f"{best['value']:.6g} "
        + " ".join(f"{safe(k)}={_fmt(v)}" for k, v in best["params"].items())
    )
    return 0


def _pruner(spec) -> str:
    return spec if isinstance(spec, str) else (spec or {}).get("name", "none")


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else safe(value)
