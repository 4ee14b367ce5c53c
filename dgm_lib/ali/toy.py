"""The toy of the ALICE paper: x from five 2D Gaussians, z from N(0, I).

x ~ (1/5) sum_k N(mu_k, 0.04 I) with mu in {(0, 0), (2, 2), (-2, -2), (2, -2), (-2, 2)} and z ~ N(0,
I_2) (Li et al., 2017, the reference code's toy). A good bivariate model maps the five modes of x to
five regions of z and back: its reconstructions x -> z -> x stay in their mode, and its samples
x = g(z, eps) fall on the modes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgm_lib.checks import check_float_tensor, check_positive_int

MODES = torch.tensor([[0.0, 0.0], [2.0, 2.0], [-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0]])
STD = 0.2  # the reference code's variance 0.04


def sample_x(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """n points of the five-mode mixture and their mode labels: x = mu_k + 0.2 eps, k uniform.

    Example:
        >>> x, k = sample_x(4, torch.Generator().manual_seed(0))
        >>> x.shape, k.shape
        (torch.Size([4, 2]), torch.Size([4]))
    """
    check_positive_int(n, "n")
    labels = torch.randint(len(MODES), (n,), generator=generator)
    return MODES[labels] + STD * torch.randn(n, 2, generator=generator), labels


def paired_codes(per_mode: int = 1, radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """The semi-supervised pairs: per_mode points at each mode's centre mu_k, each paired with
    the code z_k = radius (cos 2 pi k / 5, sin 2 pi k / 5), a prescribed place for mode k in z.

    Example:
        >>> x, z = paired_codes()
        >>> x.shape, z.shape
        (torch.Size([5, 2]), torch.Size([5, 2]))
    """
    check_positive_int(per_mode, "per_mode")
    angles = 2 * torch.pi * torch.arange(len(MODES)) / len(MODES)
    codes = radius * torch.stack([angles.cos(), angles.sin()], 1)
    return MODES.repeat_interleave(per_mode, 0), codes.repeat_interleave(per_mode, 0)


def nearest_mode(x: Tensor) -> Tensor:
    """The index of the mode nearest to each point, argmin_k ||x - mu_k||."""
    check_float_tensor(x, "x")
    return torch.cdist(x, MODES.to(x)).argmin(1)


def mode_metrics(x: Tensor, labels: Tensor, x_hat: Tensor, samples: Tensor) -> dict[str, float]:
    """How well a model reconstructs and samples the toy.

    Args:
        x: test points (n, 2) with their mode `labels` (n,).
        x_hat: their reconstructions g_theta(g_phi(x)).
        samples: samples g_theta(z, eps), z ~ N(0, I).

    Returns:
        {"reconstruction_mse": mean ||x - x^||^2, "mode_kept": share of x^ nearest to x's mode,
        "on_mode": share of samples within 3 std (0.6) of a mode, "modes_hit": modes with at
        least 2% of the samples}.
    """
    distance = torch.cdist(samples, MODES.to(samples)).min(1).values
    share = torch.bincount(nearest_mode(samples), minlength=len(MODES)) / len(samples)
    return {
        "reconstruction_mse": float((x - x_hat).square().sum(1).mean()),
        "mode_kept": float((nearest_mode(x_hat) == labels).double().mean()),
        "on_mode": float((distance < 3 * STD).double().mean()),
        "modes_hit": int((share >= 0.02).sum()),
    }
