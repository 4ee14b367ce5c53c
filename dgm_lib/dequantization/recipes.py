"""Zoo configs of chapter 04 "Dequantization": one RealNVP on MNIST pixels, three dequantizers.

"deq_mnist_none", "deq_mnist_uniform" and "deq_mnist_variational" share one RealNVP
(make_image_flow) and one recipe (Adam with cosine decay and grad-norm clipping, RECIPE.steps steps
of RECIPE.batch_size digits from the 4,000 training digits of load_mnist(), pixels in {0..255});
they differ only in the dequantizer: none (the degenerate objective log p(y|theta) at the integer
points), uniform (x = y + u, u ~ U[0,1]^D) and variational (Flow++'s q(u|y)).
Regenerate one with `python -m dgm_lib.zoo train deq_mnist_uniform`.

"deq_moons_uniform" and "deq_moons_variational" are chapter 04's experiment on the two moons
quantized to a MOONS.num_bins x MOONS.num_bins grid: one RealNVP (make_vector_flow) trained by Adam
with cosine decay for MOONS.steps steps, with uniform or with Flow++'s variational noise (`python -m
dgm_lib.zoo train deq_moons_variational`, about 40 s of one CPU thread each).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from dgm_lib import zoo
from dgm_lib.data.mnist import mnist_images
from dgm_lib.dequantization import multiscale_mnist
from dgm_lib.dequantization.chapter import quantized_toy2d
from dgm_lib.dequantization.discrete import NUM_BINS
from dgm_lib.dequantization.flow import DequantizedFlow, make_image_flow, make_vector_flow
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


@dataclass(frozen=True)
class MoonsRecipe:
    """Chapter 04's two moons on a K x K grid: the data, the flow, the noise and the training."""

    num_bins: int = 8
    n_train: int = 10_000
    data_seed: int = 0
    flow_depth: int = 6
    hidden: tuple[int, ...] = (64, 64)
    dequantizer_depth: int = 4
    steps: int = 4000
    batch_size: int = 256
    lr: float = 3e-3
    batch_seed: int = 2

    def config(self, dequantizer: str) -> dict:
        """The config the checkpoint of deq_moons_<dequantizer> records."""
        return {
            "data": "two_moons", "num_bins": self.num_bins, "n_train": self.n_train,
            "data_seed": self.data_seed, "flow_depth": self.flow_depth,
            "hidden": list(self.hidden), "dequantizer": dequantizer,
            "dequantizer_depth": self.dequantizer_depth, "steps": self.steps,
            "batch_size": self.batch_size, "lr": self.lr, "schedule": "cosine",
            "batch_seed": self.batch_seed,
        }  # fmt: skip

    def train_data(self) -> torch.Tensor:
        """The n_train quantized training points y, (n_train, 2)."""
        generator = torch.Generator().manual_seed(self.data_seed)
        return quantized_toy2d("two_moons", self.n_train, self.num_bins, generator=generator)


MOONS = MoonsRecipe()


def build_moons(dequantizer: str) -> DequantizedFlow:
    """The untrained deq_moons_<dequantizer>: make_vector_flow with uniform or variational noise."""
    if dequantizer not in ("uniform", "variational"):
        raise ValueError(f"dequantizer must be 'uniform' or 'variational', got {dequantizer!r}")
    m = MOONS
    noise = (
        UniformDequantizer()
        if dequantizer == "uniform"
        else VariationalDequantizer(2, depth=m.dequantizer_depth, hidden=m.hidden,
                                    num_bins=m.num_bins)
    )  # fmt: skip
    flow = make_vector_flow(2, m.num_bins, depth=m.flow_depth, hidden=m.hidden)
    return DequantizedFlow(flow, noise, m.num_bins)


def train_moons(model: DequantizedFlow) -> History:
    """Adam(MOONS.lr) with cosine decay for MOONS.steps steps of the quantized two moons."""
    optimizer = torch.optim.Adam(model.parameters(), lr=MOONS.lr)
    generator = torch.Generator().manual_seed(MOONS.batch_seed)
    data = ShuffledBatches(MOONS.train_data(), MOONS.batch_size, generator)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, MOONS.steps)
    options = FitOptions(steps=MOONS.steps, progress=False)
    return fit(model, optimizer, data, options, scheduler=scheduler)


for _dequantizer in ("uniform", "variational"):
    zoo.register(
        zoo.Entry(
            zoo.zoo_name("deq", "moons", _dequantizer),
            build=partial(build_moons, _dequantizer),
            train=train_moons,
            config=MOONS.config(_dequantizer),
        )
    )
