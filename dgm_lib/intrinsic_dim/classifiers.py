"""The MNIST classifiers of chapter 06 (Li, Farkhoor, Liu, Yosinski, ICLR 2018), trained directly or
in a random subspace: the fully connected 784-200-200-10 network (D = 199,210) and LeNet (D =
44,426).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import BatchSampler, RandomSampler

from dgm_lib.checks import check_positive_int
from dgm_lib.core import device_of, dtype_of
from dgm_lib.data.mnist import full_mnist, load_mnist
from dgm_lib.intrinsic_dim.subspace import SubspaceModule
from dgm_lib.nets import mlp
from dgm_lib.training import FitOptions, fit

PIXELS = 28 * 28
CLASSES = 10


def fc_net(width: int = 200, depth: int = 2) -> nn.Sequential:
    """Fully connected ReLU classifier 784 -> width (x depth) -> 10.

    The default 784-200-200-10 has D = 199,210.
    """
    check_positive_int(width, "width")
    check_positive_int(depth, "depth")
    return nn.Sequential(nn.Flatten(), mlp([PIXELS, *[width] * depth, CLASSES]))


def lenet() -> nn.Sequential:
    """LeNet-5 style CNN for 1 x 28 x 28 digits.

    Conv 6@5x5, pool, conv 16@5x5, pool, 120, 84, 10 (D = 44,426).

    The LeNet of Li et al. (2018) on MNIST (valid convolutions, max pooling, ReLU).
    """
    return nn.Sequential(
        nn.Conv2d(1, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        mlp([16 * 4 * 4, 120, 84, CLASSES]),
    )


MODELS: dict[str, Callable[..., nn.Module]] = {"fc": fc_net, "lenet": lenet}


def num_parameters(model: nn.Module) -> int:
    """D: the number of native parameters of `model`."""
    return sum(p.numel() for p in model.parameters())


def _check_data(images: Tensor, labels: Tensor) -> None:
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.dim() < 2:
        raise TypeError(
            "images must be a floating-point tensor (N, ...), got "
            f"{getattr(images, 'shape', images)!r}"
        )
    if (
        not isinstance(labels, Tensor)
        or labels.dtype != torch.int64
        or labels.shape != images.shape[:1]
    ):
        got = getattr(labels, "shape", labels)
        raise ValueError(f"labels must be an int64 tensor of shape ({len(images)},), got {got}")


def train_classifier(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Minimise the mean cross-entropy of `model` on (images, labels) with Adam.

    Minimise the mean cross-entropy of `model` on (images, labels) with Adam.

    Minimise the mean cross-entropy of `model` on data = (images, labels) with Adam for `epochs`
    epochs.

    Minibatches are reshuffled every epoch with `generator`; works for a plain model (all D
    parameters) and a SubspaceModule (theta_d only); the data follow the model's device and dtype.
    Returns the model, trained in place (fit raises on a non-finite loss).
    """
    images, labels = data
    _check_data(images, labels)
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    device = device_of(model)
    images, labels = images.to(device, dtype_of(model)), labels.to(device)
    batches = BatchSampler(
        RandomSampler(range(len(labels)), generator=generator), batch_size, drop_last=False
    )

    def loss_fn(net: nn.Module, index: list[int]) -> dict[str, Tensor]:
        return {"loss": F.cross_entropy(net(images[index]), labels[index])}

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    options = FitOptions(steps=epochs * len(batches), loss_fn=loss_fn, progress=False)
    fit(model, optimizer, batches, options, generator=generator)
    return model


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Fraction of `images` whose arg-max class under `model` (in eval mode) equals the label.

    The images follow the device and dtype of the model's parameters.
    """
    _check_data(images, labels)
    was_training = model.training
    model.eval()
    device, dtype = device_of(model), dtype_of(model)
    try:
        correct = sum(
            int((model(x.to(device, dtype)).argmax(-1) == y.to(device)).sum())
            for x, y in zip(images.split(batch_size), labels.split(batch_size))
        )
    finally:
        model.train(was_training)
    return correct / len(labels)


def _build(
    make_model: Callable[[], nn.Module], seed: int, device: torch.device | str | None
) -> nn.Module:
    """make_model() under torch.manual_seed(seed); the caller's RNG state is restored."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model()
    return model.to(device) if device is not None else model


@dataclass(frozen=True)
class ClassifierTraining:
    """How a sweep trains.

    Adam for `epochs` epochs of `batch_size` digits, lr `lr` for all D parameters (the baseline) and
    `subspace_lr` for theta_d, everything seeded by `seed`, on the digits of `source`: "subset"
    (load_mnist(), 4,000 / 1,000) or "torchvision" (full_mnist(), 60,000 / 10,000, no fallback).
    """

    epochs: int
    batch_size: int
    lr: float
    subspace_lr: float
    seed: int
    source: str = "subset"

    def __post_init__(self) -> None:
        if self.source not in ("subset", "torchvision"):
            raise ValueError(f"source must be 'subset' or 'torchvision', got {self.source!r}")

    def data(self, split: str) -> tuple[Tensor, Tensor]:
        """The (images, labels) of `split` from `source`."""
        return load_mnist(split) if self.source == "subset" else full_mnist(split)


def direct_accuracy(
    make_model: Callable[[], nn.Module],
    training: ClassifierTraining,
    device: torch.device | str | None = None,
) -> float:
    """The baseline: test accuracy of make_model() with all D parameters trained.

    The baseline: test accuracy of make_model() with all D parameters trained.

    The baseline: test accuracy of make_model() with all D parameters trained on
    load_mnist("train").
    """
    t = training
    model = _build(make_model, t.seed, device)
    generator = torch.Generator().manual_seed(t.seed)
    train_classifier(model, t.data("train"), t.epochs, t.lr, t.batch_size, generator)
    return accuracy(model, *t.data("test"))


def subspace_accuracy(
    make_model: Callable[[], nn.Module],
    d: int,
    training: ClassifierTraining,
    projection: str = "fastfood",
    device: torch.device | str | None = None,
) -> float:
    """Test accuracy of make_model() trained in a random d-dimensional subspace.

    Test accuracy of make_model() trained in a random d-dimensional subspace.

    Test accuracy of make_model() trained in a random d-dimensional subspace on load_mnist("train").

    theta^(D) = theta_0 + P theta^(d): theta_0 the model's initialisation under `training.seed`, P
    drawn with that seed, only theta^(d) trained (Adam, from 0). Li et al. (2018), Sec. 2.
    """
    t = training
    model = SubspaceModule(_build(make_model, t.seed, device), d, projection, t.seed)
    generator = torch.Generator().manual_seed(t.seed)
    train_classifier(model, t.data("train"), t.epochs, t.subspace_lr, t.batch_size, generator)
    return accuracy(model, *t.data("test"))
