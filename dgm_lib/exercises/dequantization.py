"""Checks of the exercises of the chapter "Dequantization".

The discretized logistic through its CDF (with the edge bins), and the bits/dim of the uniform
dequantization bound from given noise draws.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dgm_lib.dequantization import (
    bits_per_dim,
    discretized_logistic_log_prob,
    logistic_log_prob,
    mix_logistic_log_prob,
)

from .registry import Case, register

DT = torch.float64

_LOGISTIC_HINT = (
    "with F(x) = sigmoid((x - mu) / s) and s = exp(log_s), log P(y) = log[F(y + 0.5) - F(y - "
    "0.5)], except at the edges: for y = 0 replace y - 0.5 by -inf (F = 0), for y = num_bins - 1 "
    "replace y + 0.5 by +inf (F = 1), e.g. with torch.where(y == 0, -torch.inf, ...); "
    "sigmoid(+-inf) is exactly 1 and 0. Keep the broadcast shape of y, mu and log_s."
)
_BOUND_HINT = (
    "x = y + u has shape (S, B, *event): flatten the S draws into the batch, log_prob(x.reshape(S "
    "* B, *event)).reshape(S, B), average over the S draws (dim 0), then bits/dim = -mean / (D ln "
    "2), where D = y[0].numel() is the number of dimensions of ONE sample (not the batch size) and "
    "ln 2 = math.log(2) turns nats into bits."
)


def _logistic_case(y: Tensor, mu: Tensor, s: Tensor, num_bins: int) -> Case:
    args = (y, mu, s.log(), num_bins)
    return Case(args=args, expected=discretized_logistic_log_prob(*args), rtol=1e-7, atol=1e-10)


@register(
    "dequantization.discretized_logistic",
    "K = 4 bins, every y, mu = 1.3, s = 0.8 (both edge bins)",
    hint=_LOGISTIC_HINT,
)
def _logistic_small() -> Case:
    return _logistic_case(
        torch.arange(4, dtype=DT), torch.tensor(1.3, dtype=DT), torch.tensor(0.8, dtype=DT), 4
    )


@register(
    "dequantization.discretized_logistic",
    "K = 256 pixels y = 0, 1, 127, 254, 255 with their own mu and s",
    hint=_LOGISTIC_HINT,
)
def _logistic_pixels() -> Case:
    y = torch.tensor([0.0, 1.0, 127.0, 254.0, 255.0], dtype=DT)
    mu = torch.tensor([3.0, 0.5, 120.0, 250.0, 252.0], dtype=DT)
    return _logistic_case(y, mu, torch.tensor([2.0, 1.0, 10.0, 3.0, 5.0], dtype=DT), 256)


@register(
    "dequantization.discretized_logistic",
    "all 16 bins of 3 distributions at once (shape (16, 3))",
    hint=_LOGISTIC_HINT,
)
def _logistic_all_bins() -> Case:
    y = torch.arange(16, dtype=DT)[:, None]
    return _logistic_case(
        y, torch.tensor([2.0, 7.5, 14.0], dtype=DT), torch.tensor([3.0, 1.5, 2.5], dtype=DT), 16
    )


def _uniform_bound_bpd(log_prob, y: Tensor, u: Tensor) -> Tensor:
    """Reference: -(1/S) sum_s log p(y + u_s) / (D ln 2), the Monte Carlo uniform bound in bits/dim,
    shape (B,)."""
    s, b, event = u.shape[0], u.shape[1], y.shape[1:]
    log_p = log_prob((y + u).reshape(s * b, *event)).reshape(s, b).mean(0)
    return bits_per_dim(log_p, y[0].numel())


def _mixture_log_prob(x: Tensor) -> Tensor:
    """log p(x) of x (N, 1): a fixed 3-component mixture of logistics on [0, 16)."""
    logit_pi = torch.tensor([0.0, 1.0, -0.5], dtype=x.dtype)
    mu = torch.tensor([2.0, 7.5, 13.0], dtype=x.dtype)
    log_s = torch.tensor([0.3, 0.0, -0.7], dtype=x.dtype)
    return mix_logistic_log_prob(x[..., None], logit_pi, mu, log_s).sum(dim=1)


def _pixel_log_prob(x: Tensor) -> Tensor:
    """log p(x) of images x (N, 1, 4, 4).

    Independent logistics per pixel, mu = 10 * (row + column), s = 6.
    """
    i, j = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    mu = (10.0 * (i + j)).to(x.dtype)
    return (
        logistic_log_prob(x[:, 0], mu, torch.tensor(math.log(6.0), dtype=x.dtype)).flatten(1).sum(1)
    )


def _bound_case(log_prob, y: Tensor, samples: int, seed: int) -> Case:
    u = torch.rand(samples, *y.shape, generator=torch.Generator().manual_seed(seed), dtype=DT)
    args = (log_prob, y, u)
    return Case(args=args, expected=_uniform_bound_bpd(*args), rtol=1e-9, atol=1e-12)


@register(
    "dequantization.uniform_bound_bpd",
    "1D mixture of logistics, one draw of u per point (S = 1, B = 5)",
    hint=_BOUND_HINT,
)
def _bound_one_draw() -> Case:
    return _bound_case(
        _mixture_log_prob, torch.tensor([[0.0], [3.0], [7.0], [8.0], [15.0]], dtype=DT), 1, 0
    )


@register(
    "dequantization.uniform_bound_bpd",
    "1D mixture of logistics, S = 50 draws of u for each of B = 3 points",
    hint=_BOUND_HINT,
)
def _bound_many_draws() -> Case:
    return _bound_case(_mixture_log_prob, torch.tensor([[1.0], [7.0], [13.0]], dtype=DT), 50, 1)


@register(
    "dequantization.uniform_bound_bpd",
    "images (B = 2, 1, 4, 4): D = 16 dimensions per image, S = 8 draws",
    hint=_BOUND_HINT,
)
def _bound_images() -> Case:
    y = torch.randint(0, 64, (2, 1, 4, 4), generator=torch.Generator().manual_seed(2)).to(DT)
    return _bound_case(_pixel_log_prob, y, 8, 3)
