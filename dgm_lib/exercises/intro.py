"""Checks of the intro chapter's exercises (the worked example of "How to use this book")."""

from __future__ import annotations

import math

import torch

from .registry import Case, register, register_reference

_HINT = (
    "sum the terms -(x_d - mu_d)^2 / (2 sigma_d^2) - log sigma_d - log(2 pi) / 2 over the last "
    "dimension, giving one number per row of x."
)


@register_reference("intro.gaussian_log_prob")
def gaussian_log_prob(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Reference: log N(x | mu, diag(sigma^2)), summed over the last dimension.

    log N = sum_d [-(x_d - mu_d)^2 / (2 sigma_d^2) - log sigma_d - log(2 pi) / 2].

    Args:
        x: points, shape (batch, D).
        mu: means, shape (D,).
        sigma: standard deviations, shape (D,).

    Returns:
        The log-densities, shape (batch,), in the dtype of x.
    """
    z = (x - mu) / sigma
    return (-0.5 * z**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(dim=-1)


def _gaussian_case(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> Case:
    """A case comparing the student's log-density with the reference."""
    return Case(args=(x, mu, sigma), expected=gaussian_log_prob(x, mu, sigma), rtol=1e-9, atol=1e-9)


@register("intro.gaussian_log_prob", "standard normal at the origin in 2D", hint=_HINT)
def _standard_normal_at_origin() -> Case:
    zeros = torch.zeros(2, dtype=torch.float64)
    return _gaussian_case(zeros.unsqueeze(0), zeros, torch.ones(2, dtype=torch.float64))


@register(
    "intro.gaussian_log_prob", "batch of 5 points in 3D, per-dimension mu and sigma", hint=_HINT
)
def _batch_with_broadcasting() -> Case:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    sigma = torch.tensor([1.0, 0.5, 3.0], dtype=torch.float64)
    return _gaussian_case(x, mu, sigma)


@register(
    "intro.gaussian_log_prob",
    "far in the tail: (x - mu) / sigma = 40",
    hint="work in log space: exp(-800) underflows to 0 and log(0) = -inf, so never compute "
    "exp(...) and then log.",
)
def _far_tail() -> Case:
    x = torch.tensor([[40.0, 0.0]], dtype=torch.float64)
    return _gaussian_case(
        x, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    )
