"""Zoo configs of chapter 04 "Dequantization": one RealNVP on MNIST pixels, three dequantizers.

"deq_mnist_none", "deq_mnist_uniform" and "deq_mnist_variational" share one RealNVP
(make_image_flow) and one recipe (Adam with cosine decay and grad-norm clipping, RECIPE.steps steps
of RECIPE.batch_size digits from the 4,000 training digits of load_mnist(), pixels in {0..255});
they differ only in the dequantizer: none (the degenerate objective log p(y|theta) at the integer
points), uniform (x = y + u, u ~ U[0,1]^D) and variational (Flow++'s q(u|y)).
Regenerate one with `python -m dgm_lib.zoo train deq_mnist_uniform`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from dgm_lib import zoo
from dgm_lib.data.mnist import mnist_images
from dgm_lib.dequantization import multiscale_mnist
from dgm_lib.dequantization.discrete import NUM_BINS
from dgm_lib.dequantization.flow import DequantizedFlow, make_image_flow
from dgm_lib.dequantization.uniform import UniformDequantizer
from dgm_lib.dequantization.variational import VariationalDequantizer
from dgm_lib.training import FitOptions, History, ShuffledBatches, adam_cosine, fit

DEQUANTIZERS = ("none", "uniform", "variational")


@dataclass(frozen=True)
class DequantizationRecipe:
    """The shared flow, the variational dequantizer and the training budget."""

    shape: tuple[int, int, int] = (1, 28, 28)
    flow_depth: int = 8
    flow_hidden: tuple[int, ...] = (32, 32)
    alpha: float = 0.05
    dequantizer_depth: int = 4
    dequantizer_hidden: tuple[int, ...] = (32, 32)
    steps: int = 1200
    batch_size: int = 64
    lr: float = 1e-3
    grad_clip: float = 100.0
    data_seed: int = 1

    def config(self, dequantizer: str) -> dict:
        """The config the checkpoint of deq_mnist_<dequantizer> records."""
        config = {
            "shape": list(self.shape), "num_bins": NUM_BINS, "flow": "realnvp_checkerboard",
            "flow_depth": self.flow_depth, "flow_hidden": list(self.flow_hidden),
            "alpha": self.alpha, "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
            "grad_clip": self.grad_clip, "schedule": "cosine", "data_seed": self.data_seed,
            "data": "mnist subset train (4000 digits)", "dequantizer": dequantizer,
        }  # fmt: skip
        if dequantizer == "variational":
            config.update(
                dequantizer_depth=self.dequantizer_depth,
                dequantizer_hidden=list(self.dequantizer_hidden),
            )
        return config


RECIPE = DequantizationRecipe()


def build(dequantizer: str) -> DequantizedFlow:
    """The untrained model of deq_mnist_<dequantizer>: the shared RealNVP and that dequantizer."""
    if dequantizer not in DEQUANTIZERS:
        raise ValueError(f"dequantizer must be one of {DEQUANTIZERS}, got {dequantizer!r}")
    r = RECIPE
    flow = make_image_flow(r.shape, NUM_BINS, r.flow_depth, r.flow_hidden, r.alpha)
    deq = {
        "none": None,
        "uniform": UniformDequantizer(),
        "variational": VariationalDequantizer(
            r.shape, r.dequantizer_depth, r.dequantizer_hidden, NUM_BINS
        ),
    }[dequantizer]
    return DequantizedFlow(flow, deq, NUM_BINS)


def train(model: DequantizedFlow, steps: int = RECIPE.steps, progress: bool = False) -> History:
    """Adam with cosine decay on the model's objective (mean bits/dim of -elbo), shuffled pixels."""
    generator = torch.Generator().manual_seed(RECIPE.data_seed)
    data = ShuffledBatches(mnist_images("train", "pixels"), RECIPE.batch_size, generator)
    optimizer, scheduler = adam_cosine(model, RECIPE.lr, steps)
    options = FitOptions(steps=steps, grad_clip=RECIPE.grad_clip, progress=progress)
    return fit(model, optimizer, data, options, scheduler=scheduler, generator=generator)


for _dequantizer in DEQUANTIZERS:
    zoo.register(
        zoo.Entry(
            zoo.zoo_name("deq", "mnist", _dequantizer),
            build=partial(build, _dequantizer),
            train=train,
            config=RECIPE.config(_dequantizer),
        )
    )
for _dequantizer in multiscale_mnist.DEQUANTIZERS:  # the multiscale flow of issue 18, resumable
    zoo.register(
        zoo.Entry(
            zoo.zoo_name("deq", "mnist", "multiscale", _dequantizer),
            build=partial(multiscale_mnist.build, _dequantizer),
            train=multiscale_mnist.train,
            config=multiscale_mnist.zoo_config(_dequantizer),
            max_bytes=multiscale_mnist.MAX_BYTES,
            resumable=True,
        )
    )
