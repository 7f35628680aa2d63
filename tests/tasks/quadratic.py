"""A synthetic objective with a known optimum, for `runlab tune`: seconds per trial.

``test.acc`` = 1 - ((x - 1)^2 + (y + 2)^2) / 50, its maximum 1.0 at x=1, y=-2, is
approached over ``steps`` steps (each step logs ``acc * (step + 1) / steps``), so a
pruner can tell a hopeless trial early.
"""

import time

import runlab


@runlab.launch(config_path=".", config_name="quadratic")
def main(ctx: runlab.Context) -> None:
    cfg = ctx.config
    acc = 1.0 - ((cfg.x - 1.0) ** 2 + (cfg.y + 2.0) ** 2) / 50.0
    for step in range(cfg.steps):
        time.sleep(cfg.interval)
        ctx.logger.log_metrics({"acc": acc * (step + 1) / cfg.steps}, name="test", step=step)


if __name__ == "__main__":
    main()
