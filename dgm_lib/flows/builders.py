"""Ready-made vector flows (RealNVP, MAF, planar) on a standard normal base, for chapters and the
zoo."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dgm_lib.checks import check_positive_int
from dgm_lib.flows.autoregressive import MAF
from dgm_lib.flows.base import Compose, Flow, StandardNormal
from dgm_lib.flows.coupling import AffineCoupling, half_mask
from dgm_lib.flows.elementwise import Planar


def make_realnvp(
    m: int = 2,
    depth: int = 8,
    hidden: Sequence[int] = (64, 64),
    *,
    bound: float = 5.0,
    activation: type[nn.Module] = nn.ReLU,
) -> Flow:
    """RealNVP on R^m: `depth` affine couplings alternating half_mask(m) and its complement.

    Each coupling keeps x_1 and maps z_2 = (x_2 - mu(x_1)) / sigma(x_1) with an MLP conditioner;
    alternating the mask is a Reverse between layers without the copy. Dinh, Sohl-Dickstein,
    Bengio, Density estimation using Real NVP, ICLR 2017.

    Args:
        m: the dimension of x.
        depth: the number of coupling layers.
        hidden: hidden sizes of each conditioner MLP.
        bound: log sigma is soft-clamped to (-bound, bound).
        activation: the conditioners' activation.

    Returns:
        A Flow with a StandardNormal(m) base.

    Example:
        >>> flow = make_realnvp(m=2, depth=4, hidden=(16, 16))
        >>> flow.log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
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
    """MAF on R^m: `depth` masked autoregressive layers, the order reversed every other layer.

    z_j = (x_j - mu_j(x_<j)) / sigma_j(x_<j) in one pass. Papamakarios, Pavlakou, Murray, Masked
    Autoregressive Flow for Density Estimation, NeurIPS 2017.

    Args:
        m: the dimension of x.
        depth: the number of MAF layers.
        hidden: hidden sizes of each MADE.
        bound: log sigma is soft-clamped to (-bound, bound).
        activation: the MADEs' activation.

    Returns:
        A Flow with a StandardNormal(m) base.

    Example:
        >>> flow = make_maf(m=2, depth=2, hidden=(8, 8))
        >>> flow.sample(5).shape
        torch.Size([5, 2])
    """
    check_positive_int(depth, "depth")
    check_positive_int(m, "m")
    orders = (torch.arange(m), torch.arange(m).flip(0))
    layers = [
        MAF(m, hidden, orders[k % 2], bound=bound, activation=activation) for k in range(depth)
    ]
    return Flow(StandardNormal(m), Compose(*layers))


def make_planar(m: int = 2, depth: int = 8) -> Flow:
    """Planar flow on R^m: x = g(z) = g_1 o ... o g_K(z), g_k(z) = z + u_k h(w_k^T z + b_k).

    Each layer keeps w_k^T u_k >= -1 (Planar's u_hat), so it is invertible, with
    log|det J_{g_k}(z)| = log(1 + u_k^T w_k h'(w_k^T z + b_k)) in O(m). Sampling and the reverse KL
    need only g; the density log p(x|theta) needs f = g^{-1}, a 1D root solve per layer. Rezende &
    Mohamed, Variational Inference with Normalizing Flows, ICML 2015.

    Args:
        m: the dimension of x.
        depth: the number K of planar layers.

    Returns:
        A Flow with a StandardNormal(m) base.

    Example:
        >>> flow = make_planar(m=2, depth=4)
        >>> x, log_p = flow.sample_with_log_prob(5)
        >>> x.shape, log_p.shape
        (torch.Size([5, 2]), torch.Size([5]))
    """
    check_positive_int(depth, "depth")
    check_positive_int(m, "m")
    return Flow(StandardNormal(m), Compose(*[Planar(m) for _ in range(depth)]))
