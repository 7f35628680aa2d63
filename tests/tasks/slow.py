"""A slow, checkpointing task used by the tests to kill, fail and resume runs."""

import sys
import time

import runlab


@runlab.launch(config_path=".", config_name="slow")
def main(ctx: runlab.Context) -> None:
    cfg = ctx.config
    state = ctx.logger.load_checkpoint() or {"step": 0}
    print(f"start {state['step']}", flush=True)
    for step in range(state["step"], cfg.steps):
        if step == cfg.fail_at:
            raise ValueError(f"failing on purpose at step {step}")
        ctx.logger.log_metrics({"value": step * 0.5, "wall": time.time()}, name="train", step=step)
        if (step + 1) % cfg.ckpt_every == 0:
            ctx.logger.log_checkpoint({"step": step + 1})
        print(f"step {step}", flush=True)
        time.sleep(cfg.interval)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
