"""Ready-made vector flows (RealNVP, MAF) on a standard normal base, for chapters and the zoo."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dgm_lib.checks import check_positive_int
from dgm_lib.flows.autoregressive import MAF
from dgm_lib.flows.base import Compose, Flow, StandardNormal
from dgm_lib.flows.coupling import AffineCoupling, half_mask


def make_realnvp(
    m: int = 2,
    depth: int = 8,
    hidden: Sequence[int] = (64, 64),
    *,
    bound: float = 5.0,
    activation: type[nn.Module] = nn.ReLU,
) -> Flow:
    """RealNVP: `depth` affine couplings with MLP conditioners, alternating half_mask(m) and its
    complement.

    Alternating the mask is the same as a Reverse between layers, without the copy.
    Dinh, Sohl-Dickstein, Bengio, Density estimation using Real NVP, ICLR 2017.
    """
    check_positive_int(depth, "depth")
    mask = half_mask(m)
    layers = [
        AffineCoupling(mask if k % 2 == 0 else ~mask, hidden, bound=bound, activation=activation)
        for k in range(depth)
    ]
    return Flow(StandardNormal(m), Compose(*layers))


def make_maf(
    m: int = 2,
    depth: int = 5,
    hidden: Sequence[int] = (64, 64),
    *,
    bound: float = 5.0,
    activation: type[nn.Module] = nn.ReLU,
) -> Flow:
    """MAF: `depth` MAF layers whose autoregressive order is reversed every other layer (a Reverse
    between layers).

    Papamakarios, Pavlakou, Murray, Masked Autoregressive Flow for Density Estimation, NeurIPS 2017.
    """
    check_positive_int(depth, "depth")
    check_positive_int(m, "m")
    orders = (torch.arange(m), torch.arange(m).flip(0))
    layers = [
        MAF(m, hidden, orders[k % 2], bound=bound, activation=activation) for k in range(depth)
    ]
    return Flow(StandardNormal(m), Compose(*layers))
