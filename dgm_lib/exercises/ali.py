"""Checks of the exercises of the chapter "ALI and ALICE".

The optimal discriminator of ALI for two joints given by their log-densities, and ALICE's explicit
cycle consistency.
"""

from __future__ import annotations

import torch

from dgm_lib.ali import explicit_cycle, optimal_logit

from .registry import Case, register

DT = torch.float64

_D_HINT = (
    "D*(x, z) = q(x, z) / (q(x, z) + p(x, z)). Dividing by q, this is 1 / (1 + p / q) = "
    "sigmoid(log q - log p): use torch.sigmoid(log_q - log_p). Exponentiating log-densities of "
    "-1000 first gives 0 / 0 = NaN."
)
_CYCLE_HINT = (
    "For each row i, ||x_i - x^_i||_2^2 is the SUM over its coordinates of the squared "
    "differences; then average over the rows: (x - x_hat).square().sum(dim=1).mean(). "
    "Averaging over every entry at once divides by the dimension too."
)


def _d_case(log_q: list[float], log_p: list[float]) -> Case:
    q, p = torch.tensor(log_q, dtype=DT), torch.tensor(log_p, dtype=DT)
    return Case(args=(q, p), expected=optimal_logit(q, p).sigmoid(), rtol=1e-10, atol=1e-12)


@register("ali.optimal_discriminator", "equal and unequal densities", hint=_D_HINT)
def _d_simple() -> Case:
    return _d_case([-1.0, -2.0, -0.5], [-1.0, -1.0, -3.0])


@register("ali.optimal_discriminator", "log-densities of -1000 (tails)", hint=_D_HINT)
def _d_tails() -> Case:
    return _d_case([-1000.0, -1001.0, -5.0], [-1000.5, -1000.0, -1000.0])


def _cycle_case(n: int, d: int, seed: int) -> Case:
    g = torch.Generator().manual_seed(seed)
    x, x_hat = torch.randn(n, d, generator=g, dtype=DT), torch.randn(n, d, generator=g, dtype=DT)
    return Case(args=(x, x_hat), expected=explicit_cycle(x, x_hat, k=2), rtol=1e-10)


@register("ali.cycle_consistency", "points in 2D", hint=_CYCLE_HINT)
def _cycle_2d() -> Case:
    return _cycle_case(8, 2, 0)


@register("ali.cycle_consistency", "points in 5D (the sum over coordinates)", hint=_CYCLE_HINT)
def _cycle_5d() -> Case:
    return _cycle_case(6, 5, 1)
