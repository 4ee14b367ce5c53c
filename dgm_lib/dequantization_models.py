"""Data and zoo configs of the chapter "Dequantization": MNIST pixels and quantized 2D toys as discrete data.

Zoo configs "deq_mnist_none", "deq_mnist_uniform" and "deq_mnist_variational" share one RealNVP
(make_image_flow(depth=FLOW_DEPTH, hidden=FLOW_HIDDEN)) and one recipe (Adam with cosine decay and grad-norm
clipping, STEPS steps of BATCH_SIZE digits from the 4,000 training digits of load_mnist(), pixels in
{0, ..., 255}); they differ only in the dequantizer: none (the degenerate objective log p(y|theta) at the integer
points), uniform (x = y + u, u ~ U[0,1]^D) and variational (Flow++'s q(u|y), depth DEQ_DEPTH).
`evaluate_mnist` gives the bits/dim table. Regenerate one with `python -m dgm_lib.zoo train deq_mnist_uniform`.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from dgm_lib.core import check_positive_int, mean_and_se
from dgm_lib.data.mnist import load_mnist
from dgm_lib.data.toy2d import LIM, get_target
from dgm_lib.dequantization import (
    NUM_BINS,
    DequantizedFlow,
    UniformDequantizer,
    VariationalDequantizer,
    bits_per_dim,
    make_image_flow,
)
from dgm_lib.training import History, ShuffledBatches, fit
from dgm_lib.zoo import register

SHAPE = (1, 28, 28)
FLOW_DEPTH, FLOW_HIDDEN, ALPHA = 8, (32, 32), 0.05
DEQ_DEPTH, DEQ_HIDDEN = 4, (32, 32)
STEPS, BATCH_SIZE, LR, GRAD_CLIP, DATA_SEED = 1200, 64, 1e-3, 100.0, 1
EVAL_BATCH = 1600  # digits x importance samples per flow pass in evaluate_mnist
MAX_BYTES = 3_000_000
DEQUANTIZERS = ("none", "uniform", "variational")


def mnist_pixels(split: str = "train") -> Tensor:
    """The digits of load_mnist(split) (4,000 train / 1,000 test) as pixel values in {0, ..., 255}, (N, 1, 28, 28)."""
    images, _ = load_mnist(split)
    return torch.round(images * (NUM_BINS - 1))


def quantized_toy2d(
    name: str = "two_moons", n: int = 2000, num_bins: int = 16, generator: torch.Generator | None = None
) -> Tensor:
    """n points of the 2D target `name` (dgm_lib.data.toy2d) on a K x K grid: y = floor((x + LIM) K / (2 LIM)).

    [-LIM, LIM]^2 is rescaled to [0, K)^2 and floored; the few points outside are clamped to {0, ..., K-1}. Returns
    an (n, 2) integer-valued float tensor.
    """
    check_positive_int(n, "n")
    check_positive_int(num_bins, "num_bins")
    x = get_target(name).sample(n, generator)
    return torch.floor((x + LIM) * num_bins / (2 * LIM)).clamp(0, num_bins - 1)


def build(dequantizer: str) -> DequantizedFlow:
    """The untrained model of config deq_mnist_<dequantizer>: the shared RealNVP and the named dequantizer."""
    if dequantizer not in DEQUANTIZERS:
        raise ValueError(f"dequantizer must be one of {DEQUANTIZERS}, got {dequantizer!r}")
    flow = make_image_flow(SHAPE, NUM_BINS, FLOW_DEPTH, FLOW_HIDDEN, ALPHA)
    deq = {
        "none": None,
        "uniform": UniformDequantizer(),
        "variational": VariationalDequantizer(SHAPE, DEQ_DEPTH, DEQ_HIDDEN, NUM_BINS),
    }[dequantizer]
    return DequantizedFlow(flow, deq, NUM_BINS)


def _train(model: DequantizedFlow, steps: int = STEPS, progress: bool = False) -> History:
    """Adam with cosine decay on the model's objective (mean bits/dim of -elbo), shuffled minibatches of the pixels."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    data = ShuffledBatches(mnist_pixels("train"), BATCH_SIZE, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return fit(
        model, optimizer, data, steps=steps, generator=generator, scheduler=scheduler, grad_clip=GRAD_CLIP,
        progress=progress,
    )


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def evaluate_mnist(
    model: DequantizedFlow, split: str = "test", k: int = 16, n: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Bits/dim on the digits of mnist_pixels(split) (the first n if given), means and standard errors over digits.

    bpd_objective: the training objective -elbo(y) (for dequantizer None the degenerate -log p(y|theta) at the
    integer points, not a bound); bpd_elbo: the bound with one u (uniform u for dequantizer None); bpd_importance:
    the importance-weighted bound with k samples (tighter, still >= -log2 P(y|theta) / D in expectation).
    """
    if not isinstance(model, DequantizedFlow):
        raise TypeError(f"model must be a DequantizedFlow, got {type(model).__name__}")
    check_positive_int(k, "k")
    y = mnist_pixels(split)
    if n is not None:
        check_positive_int(n, "n")
        y = y[:n]
    y = y.to(_device_of(model))
    dim = y[0].numel()
    columns: dict[str, list[Tensor]] = {"objective": [], "elbo": [], "importance": []}
    for batch in y.split(max(1, EVAL_BATCH // k)):
        columns["objective"].append(bits_per_dim(model.elbo(batch, generator), dim))
        columns["elbo"].append(bits_per_dim(model.log_prob_importance(batch, 1, generator), dim))
        columns["importance"].append(bits_per_dim(model.log_prob_importance(batch, k, generator), dim))
    out: dict[str, float] = {}
    for name, values in columns.items():
        out[f"bpd_{name}"], out[f"bpd_{name}_se"] = mean_and_se(torch.cat(values))
    return out


def _register_all() -> None:
    common = {
        "shape": list(SHAPE), "num_bins": NUM_BINS, "flow": "realnvp_checkerboard", "flow_depth": FLOW_DEPTH,
        "flow_hidden": list(FLOW_HIDDEN), "alpha": ALPHA, "steps": STEPS, "batch_size": BATCH_SIZE, "lr": LR,
        "grad_clip": GRAD_CLIP, "schedule": "cosine", "data_seed": DATA_SEED,
        "data": "mnist subset train (4000 digits)",
    }
    for dequantizer in DEQUANTIZERS:
        config = {**common, "dequantizer": dequantizer}
        if dequantizer == "variational":
            config.update(dequantizer_depth=DEQ_DEPTH, dequantizer_hidden=list(DEQ_HIDDEN))
        register(
            f"deq_mnist_{dequantizer}", build=partial(build, dequantizer), train=_train, config=config,
            max_bytes=MAX_BYTES,
        )


_register_all()
