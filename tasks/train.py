"""Train a small classifier on scikit-learn's digits and record the run.

    python tasks/train.py                      # one run, defaults from configs/train.yaml
    python tasks/train.py lr=0.01 model=cnn    # Hydra overrides
    python tasks/train.py -m seed=0,1,2        # a local sweep
    python tasks/train.py runlab.run_id=3      # resume run 3 from its last checkpoint
    torchrun --standalone --nproc_per_node=2 tasks/train.py   # 2 ranks (DDP), one run

Every epoch logs `train` and `test` metrics and saves a checkpoint; a rerun into
the same run directory continues from that checkpoint, bit for bit on the CPU.
The same code runs on 1 or N ranks: each rank trains on its share of every
epoch's shuffled batches (`batch_size` is the global batch), DDP averages the
gradients, and rank 0 logs the metrics summed over the ranks.

`TrainConfig` declares the types of configs/train.yaml's keys (the values stay in
the YAML): `lr=abc` or `epochs=1.5` is one line naming the key and its type.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import runlab


@dataclass
class TrainConfig:
    """The types of configs/train.yaml's keys, in its order (the defaults list's groups
    first); no defaults: the values are the YAML's."""

    model: Any  # configs/model/*.yaml: their keys differ (a field typed Any is not checked)
    optimizer: Any
    seed: int
    epochs: int
    batch_size: int
    lr: float
    test_fraction: float
    device: str
    deterministic: bool
    runlab: Any


def pick_device(name: str, dist: runlab.Dist) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return dist.device  # cuda:LOCAL_RANK
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_determinism(seed: int, deterministic: bool, rank: int = 0) -> None:
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed)  # the same initial weights on every rank
    if deterministic:
        # cuBLAS needs a fixed workspace to give the same sums every time (see README).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def load_digits(test_fraction: float, seed: int, device: torch.device):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )

    def tensors(a, b):
        return torch.from_numpy(a).to(device), torch.from_numpy(b).long().to(device)

    return tensors(x_tr, y_tr), tensors(x_te, y_te)


def build_model(cfg) -> nn.Module:
    if cfg.name == "mlp":
        layers: list[nn.Module] = []
        width = 64
        for _ in range(cfg.layers):
            layers += [nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        return nn.Sequential(*layers, nn.Linear(width, 10))
    if cfg.name == "cnn":
        c = cfg.channels
        return nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(cfg.dropout),
            nn.Linear(2 * c * 16, 10),
        )
    raise ValueError(f"unknown model.name {cfg.name!r}: use mlp or cnn (configs/model/)")


def build_optimizer(cfg, lr: float, params) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer.name {cfg.name!r}: use sgd or adam (configs/optimizer/)")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


@runlab.launch(config_path="../configs", config_name="train", schema=TrainConfig)
def main(ctx: runlab.Context) -> float:
    cfg, dist = ctx.config, ctx.dist  # dist: rank, world_size, is_main (one process: 0 of 1)
    make_determinism(cfg.seed, cfg.deterministic, dist.rank)
    device = pick_device(cfg.device, dist)
    (x_tr, y_tr), (x_te, y_te) = load_digits(cfg.test_fraction, cfg.seed, device)
    model = build_model(cfg.model).to(device)
    optimizer = build_optimizer(cfg.optimizer, cfg.lr, model.parameters())

    start = 0
    state = ctx.logger.load_checkpoint(map_location="cpu")  # every rank reads rank 0's
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        torch.set_rng_state(rngs[dist.rank] if len(rngs) == dist.world_size else rngs[0])
        start = state["epoch"] + 1
        print(f"resuming run {ctx.run_id} at epoch {start}")
    net = model
    if dist.world_size > 1:  # after loading: DDP starts from rank 0's weights
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    # The shuffle depends on (seed, epoch) only, so a resumed run sees the same batches;
    # each rank takes its share (one rank: the whole shuffled epoch).
    sampler = torch.utils.data.DistributedSampler(
        range(len(x_tr)), dist.world_size, dist.rank, shuffle=True, seed=cfg.seed * 100_003
    )
    batch = max(1, cfg.batch_size // dist.world_size)

    test_acc = float("nan")
    for epoch in range(start, cfg.epochs):
        net.train()
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n over this rank
        for i in range(0, len(order), batch):
            idx = order[i : i + batch].to(device)
            logits = net(x_tr[idx])
            loss = nn.functional.cross_entropy(logits, y_tr[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += torch.tensor(
                [loss.item() * len(idx), (logits.argmax(1) == y_tr[idx]).sum().item(), len(idx)],
                dtype=torch.float64,
            )
        total, correct, seen = dist.all_reduce(sums).tolist()  # summed over the ranks
        test_loss, test_acc = evaluate(model, x_te, y_te)
        ctx.logger.log_metrics(  # rank 0 writes; on other ranks this does nothing
            {"epoch": epoch, "loss": total / seen, "acc": correct / seen}, name="train", step=epoch
        )
        ctx.logger.log_metrics(
            {"epoch": epoch, "loss": test_loss, "acc": test_acc}, name="test", step=epoch
        )
        rngs = dist.gather_object(torch.get_rng_state())  # each rank's dropout stream
        ctx.logger.log_checkpoint(
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rngs if dist.world_size > 1 else rngs[0],
            }
        )
        if dist.is_main:
            print(f"epoch {epoch:3d}  train loss {total / seen:.4f}  test acc {test_acc:.4f}")

    ctx.logger.log_artifact(model.state_dict(), "model.pt")
    return test_acc


if __name__ == "__main__":
    main()
