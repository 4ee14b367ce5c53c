"""Zoo configs: RealNVP and MAF fitted by forward KL (MLE) to the normalized 2D targets of dgm_lib.data.toy2d.

One config per flow type, target and depth, named `zoo_name(flow, target, depth)`, e.g. "maf_two_moons_8":
2 x 4 x 3 = 24 small checkpoints for the chapter "Change of variables" and its widget. Every step draws a fresh
batch from the target (unlimited data, no overfitting); `heldout_nll` evaluates on held-out samples with their own
seed. The target's exact log_prob gives the best achievable test NLL, the entropy H(pi) = -E_pi log pi(x), since
E_pi[-log p(x|theta)] - H(pi) = KL(pi || p(x|theta)) >= 0.
Regenerate one with `python -m dgm_lib.zoo train realnvp_rings_8`.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Iterator

import torch
from torch import Tensor

from dgm_lib.core import mean_and_se
from dgm_lib.data.toy2d import Target, get_target
from dgm_lib.flows.base import Flow
from dgm_lib.flows.builders import make_maf, make_realnvp
from dgm_lib.training import fit
from dgm_lib.zoo import register

FLOWS = {"realnvp": make_realnvp, "maf": make_maf}
TARGETS = ("two_moons", "eight_gaussians", "rings", "checkerboard")
DEPTHS = (2, 4, 8)
HIDDEN = {"realnvp": (64, 64), "maf": (48, 48)}  # MAF's masks are stored too: both stay under MAX_BYTES at depth 8
STEPS, BATCH_SIZE, LR, DATA_SEED = 16_000, 512, 2e-3, 1
TEST_SIZE, TEST_SEED = 20_000, 2026
MAX_BYTES = 200_000


def zoo_name(flow: str, target: str, depth: int) -> str:
    """The zoo name of the config, f"{flow}_{target}_{depth}"; ValueError naming the allowed values."""
    for value, allowed, what in ((flow, tuple(FLOWS), "flow"), (target, TARGETS, "target"), (depth, DEPTHS, "depth")):
        if value not in allowed:
            raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return f"{flow}_{target}_{depth}"


class TargetBatches:
    """An epoch of `n_batches` fresh batches x ~ pi(x) of size `batch_size`, drawn with `generator` (for fit)."""

    def __init__(self, target: Target, batch_size: int, n_batches: int, generator: torch.Generator):
        self.target, self.batch_size, self.n_batches, self.generator = target, batch_size, n_batches, generator

    def __iter__(self) -> Iterator[Tensor]:
        return (self.target.sample(self.batch_size, self.generator) for _ in range(self.n_batches))


def _build(flow: str, depth: int) -> Flow:
    return FLOWS[flow](m=2, depth=depth, hidden=HIDDEN[flow])


def _train(model: Flow, target: str) -> None:
    """Adam with cosine decay on the forward KL (model(x)["loss"] = -mean log p(x|theta)); no history is stored."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS)
    data = TargetBatches(get_target(target), BATCH_SIZE, 100, generator)
    fit(model, optimizer, data, steps=STEPS, generator=generator, scheduler=scheduler, grad_clip=10.0, progress=False)


def heldout_samples(target: str) -> Tensor:
    """The held-out test set of `target`: TEST_SIZE draws with seed TEST_SEED (never used in training), float32."""
    return get_target(target).sample(TEST_SIZE, torch.Generator().manual_seed(TEST_SEED))


@torch.no_grad()
def heldout_nll(
    log_prob_fn: Callable[[Tensor], Tensor], target: str, device: torch.device | str | None = None
) -> tuple[float, float]:
    """Mean and standard error of -log p(x) over the test set of `target` (moved to `device`), in nats; the
    target's own log_prob gives its entropy H(pi), the best achievable test NLL."""
    return mean_and_se(-log_prob_fn(heldout_samples(target).to(device)))


@torch.no_grad()
def heldout_kl(
    log_prob_fn: Callable[[Tensor], Tensor], target: str, device: torch.device | str | None = None
) -> tuple[float, float]:
    """KL(pi || p) = E_pi[log pi(x) - log p(x)] (= test NLL - H(pi)) on the test set of `target`: mean and the
    standard error of the paired differences, in nats."""
    x = heldout_samples(target)
    return mean_and_se(get_target(target).log_prob(x.double()) - log_prob_fn(x.to(device)).double().cpu())


def _register_all() -> None:
    for flow in FLOWS:
        for target in TARGETS:
            for depth in DEPTHS:
                config = {
                    "flow": flow, "target": target, "depth": depth, "hidden": list(HIDDEN[flow]), "steps": STEPS,
                    "batch_size": BATCH_SIZE, "lr": LR, "schedule": "cosine", "grad_clip": 10.0, "data_seed": DATA_SEED,
                }
                register(
                    zoo_name(flow, target, depth),
                    build=partial(_build, flow, depth),
                    train=partial(_train, target=target),
                    config=config,
                    max_bytes=MAX_BYTES,
                )


_register_all()
