"""Plain networks shared by the models: the MLP used by flow conditioners, VAE encoders/decoders and the BNNs."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from dgm_lib.core import check_positive_int


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear-activation-...-Linear network through the given layer sizes."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def hidden_sizes(hidden: Sequence[int], name: str) -> tuple[int, ...]:
    """`hidden` as a tuple of positive ints, or a TypeError/ValueError naming `name`."""
    if isinstance(hidden, int) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hidden):
        raise TypeError(f"{name} must be a tuple of positive ints (hidden sizes), got {hidden!r}")
    for k, h in enumerate(hidden):
        check_positive_int(h, f"{name}[{k}]")
    return tuple(hidden)
