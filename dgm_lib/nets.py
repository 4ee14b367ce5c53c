"""Networks shared by the topics: the MLP of flow conditioners, VAEs and BNNs.

The MNIST classifier of FID.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

# width of the MNIST classifier's penultimate layer: the dimension of the FID features
FEATURES = 64


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear-activation-...-Linear network through the given layer sizes.

    Example:
        >>> mlp([2, 16, 1])
        Sequential(
          (0): Linear(in_features=2, out_features=16, bias=True)
          (1): ReLU()
          (2): Linear(in_features=16, out_features=1, bias=True)
        )
    """
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MNISTClassifier(nn.Module):
    """Small CNN on MNIST digits in [0, 1].

    Two conv-GELU-maxpool blocks, a 64-unit layer, 10 logits.

    `features(x)` are the 64 penultimate GELU activations (the FID features; GELU rather than ReLU
    so that no unit is dead and the feature covariance has full rank); `forward(x)` the logits.
    The zoo config "mnist_classifier" (dgm_lib.recipes) trains it.
    """

    def __init__(
        self, channels: tuple[int, int] = (16, 32), features: int = FEATURES, dropout: float = 0.25
    ):
        super().__init__()
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(c2 * 7 * 7, features), nn.GELU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, 10))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (B, F) of images x (B, 1, 28, 28) in [0, 1]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, 10)."""
        return self.head(self.body(x))
