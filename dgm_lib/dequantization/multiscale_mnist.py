"""The multiscale (Glow-like) flow on MNIST pixels: model, training, metric (issue 18).

Its zoo configs are registered in dgm_lib.dequantization.recipes.

deq_mnist_multiscale_uniform and deq_mnist_multiscale_variational share one flow: logit_preprocess
(exact log-det, so the flow is a density on [0, 256)^784), then make_multiscale_flow with LEVELS
levels of STEPS_PER_LEVEL Glow steps (ActNorm, invertible 1x1 convolution, affine coupling with
HIDDEN channels) and factor-out with a learned conditional prior (1 x 28 x 28 -> 4 x 14 x 14 -> 8 x
7 x 7 -> 4 x 7 x 7). They differ only in the dequantizer: uniform (x = y + u, u ~ U[0,1]^D) or
variational (Flow++'s q(u|y), depth DEQ_DEPTH). The training objective and the reported number are
the same bound, -elbo(y) in bits/dim, an upper bound on -log2 P(y) / D of the discrete model: for
uniform dequantization E_u log p(y + u), for the variational one E_q [log p(y + u) - log q(u|y)].

Recipe: Adam, LR warmed up linearly over WARMUP steps then decayed to 0 by a cosine, grad-norm
clipping, TRAIN_STEPS steps of BATCH_SIZE digits of the 4,000 training digits (160 epochs);
every EVAL_EVERY steps `held_out_bpd` records the bound on the first EVAL_N test digits next to the
same number on EVAL_N training digits (over-fitting shows as a growing gap). The metric is only
watched, never used to pick a checkpoint: the shipped weights are those of the last step. Resumable:
the full training state is kept in the zoo's resume/ folder, so a training stopped midway continues
exactly. Regenerate one with `OMP_NUM_THREADS=1 python -m dgm_lib.zoo train
deq_mnist_multiscale_uniform`. Published numbers on full MNIST (60,000 training digits): RealNVP
about 1.06, Glow about 1.05 bits/dim; here only 4,000 training digits.

Calibration (one thread, OMP_NUM_THREADS=1, on a shared 2-core CPU): about 320 ms of CPU per step
for the uniform config (232,844 parameters, about 0.95 MB of float32 weights), 535 ms for the
variational one (244,124); HIDDEN 128 cost twice as much per step for the same bound after 250
steps. A run at constant LR 1e-3 reached a test bound of 2.13, 1.91, 1.72 and 1.70 bits/dim after
250, 500, 1,250 and 1,500 steps (the same on training digits), about 0.13 bits/dim less per doubling
of the steps; TRAIN_STEPS = 10000 (160 epochs) is about 53 minutes of one thread for the uniform
config.
"""

from __future__ import annotations

import math
import os
from functools import partial

import torch
from tqdm.auto import tqdm

from dgm_lib.checks import check_positive_int
from dgm_lib.core import device_of
from dgm_lib.data.mnist import mnist_images
from dgm_lib.dequantization.discrete import NUM_BINS, bits_per_dim
from dgm_lib.dequantization.flow import DequantizedFlow, logit_preprocess
from dgm_lib.dequantization.uniform import UniformDequantizer
from dgm_lib.dequantization.variational import VariationalDequantizer
from dgm_lib.flows.multiscale import make_multiscale_flow
from dgm_lib.training import FitOptions, History, ShuffledBatches, fit

SHAPE = (1, 28, 28)
LEVELS, STEPS_PER_LEVEL, HIDDEN, ALPHA = 3, 8, 64, 0.05
DEQ_DEPTH, DEQ_HIDDEN = 4, (32, 32)
TRAIN_STEPS, BATCH_SIZE, LR, WARMUP, GRAD_CLIP, DATA_SEED = 10000, 64, 1e-3, 100, 100.0, 1
EVAL_EVERY, EVAL_N, EVAL_SEED, EVAL_BATCH = 500, 500, 0, 250
CHECKPOINT_EVERY = 100
MAX_BYTES = 5_000_000
DEQUANTIZERS = ("uniform", "variational")


def build(dequantizer: str) -> DequantizedFlow:
    """The untrained deq_mnist_multiscale_<dequantizer>: the multiscale flow and that dequantizer.

    Args:
        dequantizer: "uniform" or "variational".

    Returns:
        A DequantizedFlow on {0, ..., 255}^(1 x 28 x 28).
    """
    if dequantizer not in DEQUANTIZERS:
        raise ValueError(f"dequantizer must be one of {DEQUANTIZERS}, got {dequantizer!r}")
    flow = make_multiscale_flow(
        SHAPE, LEVELS, STEPS_PER_LEVEL, HIDDEN, logit_preprocess(NUM_BINS, ALPHA)
    )
    deq = (
        UniformDequantizer()
        if dequantizer == "uniform"
        else VariationalDequantizer(SHAPE, DEQ_DEPTH, DEQ_HIDDEN, NUM_BINS)
    )
    return DequantizedFlow(flow, deq, NUM_BINS)


@torch.no_grad()
def held_out_bpd(model: DequantizedFlow, n: int = EVAL_N) -> dict[str, float]:
    """The bound -elbo(y) in bits/dim (one u ~ q(u|y) per digit) on n test and n training digits.

    The noise is drawn with a generator seeded EVAL_SEED, the same draws at every evaluation.

    test_bpd is evaluate_mnist's bpd_elbo on the first n test digits (the same bound, k = 1);
    train_bpd the same on the first n training digits. Used as fit's `evaluate` callback.

    Args:
        model: a DequantizedFlow on MNIST pixels.
        n: digits per split (at most 1,000).

    Returns:
        {"test_bpd": ..., "train_bpd": ...}.
    """
    if not isinstance(model, DequantizedFlow):
        raise TypeError(f"model must be a DequantizedFlow, got {type(model).__name__}")
    check_positive_int(n, "n")
    device = device_of(model)
    out = {}
    for split in ("test", "train"):
        generator = torch.Generator(device).manual_seed(EVAL_SEED)
        y = mnist_images(split, "pixels")[:n].to(device)
        values = [
            bits_per_dim(model.log_prob_importance(b, 1, generator), y[0].numel())
            for b in y.split(EVAL_BATCH)
        ]
        out[f"{split}_bpd"] = torch.cat(values).mean().item()
    return out


def _logged_held_out_bpd(model: DequantizedFlow) -> dict[str, float]:
    """held_out_bpd, also written above the progress bar (the training log shows the curve)."""
    values = held_out_bpd(model)
    tqdm.write("evaluate: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return values


def warmup_cosine(step: int, steps: int, warmup: int = WARMUP) -> float:
    """LR factor: linear warmup, then cosine decay to 0.

    (step + 1) / warmup for step < warmup, else (1 + cos(pi (step - warmup) / (steps - warmup)))
    / 2.
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))


def train(
    model: DequantizedFlow,
    steps: int = TRAIN_STEPS,
    checkpoint_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> History:
    """Adam with warmup and cosine decay on mean bits/dim of -elbo(y), shuffled training digits.

    Args:
        model: the model of build(...).
        steps: optimizer steps.
        checkpoint_path: where fit keeps the resumable training state (the zoo passes
            resume/NAME.pt).
        progress: show a progress bar (and the evaluations above it).

    Returns:
        fit's History; history.evaluations holds test_bpd and train_bpd every EVAL_EVERY steps.
    """
    generator = torch.Generator().manual_seed(DATA_SEED)
    data = ShuffledBatches(mnist_images("train", "pixels"), BATCH_SIZE, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(warmup_cosine, steps=steps, warmup=WARMUP)
    )
    config = {
        "steps": steps,
        "lr": LR,
        "warmup": WARMUP,
        "schedule": "cosine",
        "eval_every": EVAL_EVERY,
    }
    options = FitOptions(
        steps=steps,
        grad_clip=GRAD_CLIP,
        progress=progress,
        checkpoint_path=checkpoint_path,
        checkpoint_every=CHECKPOINT_EVERY,
        config=config,
        evaluate=_logged_held_out_bpd,
        evaluate_every=EVAL_EVERY,
    )
    return fit(model, optimizer, data, options, scheduler=scheduler, generator=generator)


def zoo_config(dequantizer: str) -> dict:
    """The config stored in (and checked against) deq_mnist_multiscale_<dequantizer>.pt.

    Args:
        dequantizer: "uniform" or "variational".

    Returns:
        Everything that determines the weights.
    """
    common = {
        "shape": list(SHAPE),
        "num_bins": NUM_BINS,
        "flow": "multiscale_glow",
        "levels": LEVELS,
        "steps_per_level": STEPS_PER_LEVEL,
        "hidden": HIDDEN,
        "split_prior": "conditional_gaussian",
        "alpha": ALPHA,
        "steps": TRAIN_STEPS,
        "batch_size": BATCH_SIZE,
        "lr": LR,
        "warmup": WARMUP,
        "schedule": "cosine",
        "grad_clip": GRAD_CLIP,
        "data_seed": DATA_SEED,
        "eval_every": EVAL_EVERY,
        "eval_n": EVAL_N,
        "data": "mnist subset train (4000 digits)",
    }
    config = {**common, "dequantizer": dequantizer}
    if dequantizer == "variational":
        config.update(dequantizer_depth=DEQ_DEPTH, dequantizer_hidden=list(DEQ_HIDDEN))
    return config
