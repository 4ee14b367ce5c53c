"""Zoo configs shared by the topics: the MNIST classifier whose features FID uses (dgm_lib.metrics).

Regenerate with `python -m dgm_lib.zoo train mnist_classifier`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dgm_lib import zoo
from dgm_lib.data.mnist import load_mnist
from dgm_lib.nets import FEATURES, MNISTClassifier
from dgm_lib.training import FitOptions, History, ShuffledBatches, fit


@dataclass(frozen=True)
class ClassifierRecipe:
    """Adam on the cross-entropy of the 4,000 training digits of load_mnist(), in minibatches."""

    channels: tuple[int, int] = (16, 32)
    dropout: float = 0.25
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    data_seed: int = 0
    max_bytes: int = 600_000

    def config(self) -> dict:
        """The config the checkpoint records."""
        return {
            "channels": list(self.channels), "activation": "gelu", "features": FEATURES,
            "dropout": self.dropout, "optimizer": "adam", "lr": self.lr, "epochs": self.epochs,
            "batch_size": self.batch_size, "data_seed": self.data_seed,
            "data": "load_mnist('train')",
        }  # fmt: skip


CLASSIFIER = ClassifierRecipe()


def _cross_entropy(model: MNISTClassifier, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    x, y = batch
    return {"loss": F.cross_entropy(model(x), y)}


def train_fid_classifier(model: MNISTClassifier, recipe: ClassifierRecipe = CLASSIFIER) -> History:
    """Train the FID classifier by `recipe` (epochs of shuffled (image, label) minibatches)."""
    generator = torch.Generator().manual_seed(recipe.data_seed)
    data = ShuffledBatches(load_mnist("train"), recipe.batch_size, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    options = FitOptions(steps=recipe.epochs * len(data), loss_fn=_cross_entropy, progress=False)
    return fit(model, optimizer, data, options)


zoo.register(
    zoo.Entry(
        "mnist_classifier",
        build=MNISTClassifier,
        train=train_fid_classifier,
        config=CLASSIFIER.config(),
        max_bytes=CLASSIFIER.max_bytes,
    )
)
