"""A distributed task for the tests: every step all ranks sum a tensor; rank 0 logs it."""

import sys
import time

import torch

import runlab


@runlab.launch(config_path=".", config_name="ddp")
def main(ctx: runlab.Context) -> None:
    cfg, dist = ctx.config, ctx.dist
    state = ctx.logger.load_checkpoint() or {"step": 0}
    print(f"rank {dist.rank}/{dist.world_size} start {state['step']}", flush=True)
    for step in range(state["step"], cfg.steps):
        if dist.rank == cfg.fail_rank and step == cfg.fail_at:
            raise ValueError(f"rank {dist.rank} failing on purpose at step {step}")
        total = dist.all_reduce(torch.tensor([float(dist.rank + 1)]))
        ctx.logger.log_metrics({"ranks": total.item(), "wall": time.time()}, step=step)
        ctx.logger.log_metrics({"rank": dist.rank}, name="own", step=step, all_ranks=True)
        if (step + 1) % cfg.ckpt_every == 0:
            ctx.logger.log_checkpoint({"step": step + 1})
        print(f"step {step}", flush=True)
        time.sleep(cfg.interval)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
