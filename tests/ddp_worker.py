"""A small data-parallel training for tests/test_distributed.py, run under torchrun or in-process.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py SPEC.json

SPEC: {"steps", "out", "checkpoint" (or null), "checkpoint_every", "dtype", "width"}. Each rank
writes OUT.rankR.pt: its parameters, its History and the ranks that called save_checkpoint.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from torch import nn

import dgm_lib.training as training
from dgm_lib import distributed
from dgm_lib.training import FitOptions, ShuffledBatches, fit

N, BATCH = 247, 40  # 7 batches an epoch, the last of 7 examples: shards of 4 and 3 on 2 ranks


def _loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
    x, y = batch
    mse = (model(x) - y).square().mean()
    return {"loss": mse + 1e-3 * model[0].weight.square().sum(), "mse": mse}


def run(spec: dict) -> dict:
    """Train the spec's MLP with fit (Adam, cosine-free) and return its parameters and history."""
    dtype = getattr(torch, spec.get("dtype", "float64"))
    width = spec.get("width", 16)
    torch.manual_seed(0)
    x = torch.randn(N, 4, dtype=dtype)
    y = torch.sin(x.sum(-1, keepdim=True))
    model = nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 1)).to(dtype)
    generator = torch.Generator().manual_seed(1)
    data = ShuffledBatches((x, y), spec.get("batch", BATCH), generator)
    options = FitOptions(
        steps=spec["steps"], loss_fn=_loss, progress=False, checkpoint_path=spec.get("checkpoint"),
        checkpoint_every=spec.get("checkpoint_every", 100),
    )  # fmt: skip
    writers = []
    save = training.save_checkpoint

    def recording_save(*args, **kwargs):
        writers.append(distributed.rank())
        return save(*args, **kwargs)

    training.save_checkpoint = recording_save
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        start = time.perf_counter()
        history = fit(model, optimizer, data, options, generator=generator)
        seconds = time.perf_counter() - start
    finally:
        training.save_checkpoint = save
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"params": params, "history": history.terms, "writers": writers, "seconds": seconds}


def main(path: str) -> None:
    spec = json.loads(open(path).read())
    torch.set_num_threads(1)
    distributed.init_from_env()
    try:
        result = run(spec)
        result["world"] = distributed.world_size()
        torch.save(result, f"{spec['out']}.rank{distributed.rank()}.pt")
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
