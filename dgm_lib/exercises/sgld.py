"""Checks of the exercises of the chapter "SGLD".

One SGLD step from minibatch gradients, one pSGLD step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .registry import Case, register

_SGLD_HINT = (
    "the stochastic gradient of the potential is f = -grad_log_prior - (N / n) * "
    "grad_log_lik.sum(dim=0), with n = grad_log_lik.shape[0] (the minibatch sum is rescaled to the "
    "whole data set); then theta - eps * f + math.sqrt(2 * eps) * xi: the noise std is sqrt(2 "
    "eps), not eps, not sqrt(eps)."
)
_PSGLD_HINT = (
    "V = alpha * V_prev + (1 - alpha) * f * f (elementwise), G = 1 / (lam + torch.sqrt(V)); theta "
    "- eps * G * f + torch.sqrt(2 * eps * G) * xi. The preconditioner scales the drift by G and "
    "the noise by sqrt(G); return the new V too, the next step needs it."
)


def _sgld_step(
    theta: Tensor,
    grad_log_prior: Tensor,
    grad_log_lik: Tensor,
    num_data: int,
    eps: float,
    xi: Tensor,
) -> Tensor:
    """Reference: theta - eps f~ + sqrt(2 eps) xi, f~ = -grad log p(theta) - (N / n) sum_i grad log
    p(d_i | theta)."""
    f = -grad_log_prior - num_data / grad_log_lik.shape[0] * grad_log_lik.sum(dim=0)
    return theta - eps * f + math.sqrt(2 * eps) * xi


def _psgld_step(
    theta: Tensor, f: Tensor, v_prev: Tensor, eps: float, alpha: float, lam: float, xi: Tensor
) -> tuple[Tensor, Tensor]:
    """Reference: V = alpha V_prev + (1 - alpha) f ⊙ f, G = 1 / (lam + sqrt V), theta - eps G f +
    sqrt(2 eps G) ⊙ xi."""
    v = alpha * v_prev + (1 - alpha) * f * f
    g = 1 / (lam + v.sqrt())
    return theta - eps * g * f + (2 * eps * g).sqrt() * xi, v


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _sgld_case(d: int, n: int, num_data: int, eps: float, seed: int) -> Case:
    args = (
        _randn(d, seed=seed),
        _randn(d, seed=seed + 1),
        _randn(n, d, seed=seed + 2),
        num_data,
        eps,
        _randn(d, seed=seed + 3),
    )
    return Case(args=args, expected=_sgld_step(*args), rtol=1e-10, atol=1e-12)


def _psgld_case(d: int, eps: float, alpha: float, lam: float, seed: int) -> Case:
    args = (
        _randn(d, seed=seed),
        10 * _randn(d, seed=seed + 1),
        _randn(d, seed=seed + 2).square(),
        eps,
        alpha,
        lam,
        _randn(d, seed=seed + 3),
    )
    return Case(args=args, expected=_psgld_step(*args), rtol=1e-10, atol=1e-12)


@register(
    "sgld.sgld_step",
    "one parameter, a minibatch of the whole data set (n = N = 1), eps = 0.1",
    hint=_SGLD_HINT,
)
def _sgld_full_batch() -> Case:
    return _sgld_case(d=1, n=1, num_data=1, eps=0.1, seed=0)


@register(
    "sgld.sgld_step",
    "a minibatch of n = 5 out of N = 1000 data points, 3 parameters",
    hint=_SGLD_HINT,
)
def _sgld_minibatch() -> Case:
    return _sgld_case(d=3, n=5, num_data=1000, eps=1e-4, seed=10)


@register("sgld.sgld_step", "n = 32 out of N = 60000, 10 parameters, eps = 1e-6", hint=_SGLD_HINT)
def _sgld_mnist_sized() -> Case:
    return _sgld_case(d=10, n=32, num_data=60_000, eps=1e-6, seed=20)


@register("sgld.psgld_step", "2 parameters, alpha = 0.9, lambda = 1e-5", hint=_PSGLD_HINT)
def _psgld_small() -> Case:
    return _psgld_case(d=2, eps=0.01, alpha=0.9, lam=1e-5, seed=0)


@register(
    "sgld.psgld_step",
    "20 parameters, alpha = 0.99, a large lambda = 0.5 (it must be added to sqrt(V))",
    hint=_PSGLD_HINT,
)
def _psgld_lambda() -> Case:
    return _psgld_case(d=20, eps=1e-3, alpha=0.99, lam=0.5, seed=10)
