"""Discrete data y in {0, ..., K-1}^D (K = num_bins, 256 for pixels) and bits per dimension (Lecture
7).

Bits per dimension = -log2 P(y) / D: the code length of an image per pixel under a model P.
"""

from __future__ import annotations

import math

from torch import Tensor

from dgm_lib.checks import check_float_tensor, check_integer_valued, check_positive_int

NUM_BINS = 256
LN2 = math.log(2.0)


def check_discrete(y: Tensor, num_bins: int, name: str = "y") -> None:
    """ValueError naming `name` unless every entry of `y` is an integer in {0, ..., num_bins - 1}.

    Integer and floating dtypes are accepted (pixels are usually integer-valued floats).
    """
    check_positive_int(num_bins, "num_bins")
    check_integer_valued(y, name)
    if y.numel() and (y.min() < 0 or y.max() > num_bins - 1):
        raise ValueError(
            f"{name} must lie in {{0, ..., {num_bins - 1}}} (num_bins={num_bins}), got values in "
            f"[{y.min().item():g}, {y.max().item():g}]"
        )


def bits_per_dim(log_prob: Tensor, dim: int) -> Tensor:
    """Bits per dimension of a log-likelihood in nats: -log_prob / (dim ln 2), elementwise.

    Example:
        >>> import torch
        >>> bits_per_dim(torch.tensor([-2 * math.log(2.0)]), dim=2)  # 2 bits over 2 dims
        tensor([1.])
    """
    check_float_tensor(log_prob, "log_prob")
    check_positive_int(dim, "dim")
    return -log_prob / (dim * LN2)
