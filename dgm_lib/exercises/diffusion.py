"""Checks of the exercises of the chapter "DDPM vs blur".

The closed-form forward sample (eq. 3) and one step of the improved cold-diffusion sampler
(Algorithm 4).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .registry import Case, register

DT = torch.float64

_FORWARD_HINT = (
    "pick the alphas of the batch's timesteps, a = alpha[t] (shape (B,)), reshape them to "
    "broadcast over the image, a.view(-1, *[1] * (x.dim() - 1)), then return sqrt(a) * x + sqrt(1 "
    "- a) * eps: the square roots of alpha_t and 1 - alpha_t (the standard deviations), not "
    "alpha_t itself, and one alpha per sample."
)
_COLD_HINT = (
    "degrade the restored image x0_hat, not x_t: return x_t - degrade(x0_hat, t) + degrade(x0_hat, "
    "t - 1). Returning only degrade(x0_hat, t - 1) is the naive sampler, which lets the restorer's "
    "errors through."
)


def _forward_sample(x: Tensor, t: Tensor, eps: Tensor, alpha: Tensor) -> Tensor:
    """Reference: z_t = sqrt(alpha_t) x + sqrt(1 - alpha_t) eps (eq. 3), alpha_t = alpha[t] per
    sample."""
    a = alpha[t].view(-1, *[1] * (x.dim() - 1))
    return a.sqrt() * x + (1 - a).sqrt() * eps


def _cold_step(
    x_t: Tensor, x0_hat: Tensor, t: Tensor, degrade: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """Reference: x_{t-1} = x_t - D(x0_hat, t) + D(x0_hat, t - 1) (Algorithm 4, line 3; Bansal et
    al. 2023)."""
    return x_t - degrade(x0_hat, t) + degrade(x0_hat, t - 1)


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _alpha(beta1: float, beta2: float, steps: int) -> Tensor:
    """alpha_t of the report's linear schedule (eqs. 5-6), t = 0..T, in float64."""
    from dgm_lib.diffusion.schedules import linear_schedule

    return linear_schedule(beta1, beta2, steps).to(DT).alpha


def _forward_case(batch: int, t: list[int], alpha: Tensor, seed: int) -> Case:
    args = (
        _randn(batch, 1, 28, 28, seed=seed).clamp(-1, 1),
        torch.tensor(t),
        _randn(batch, 1, 28, 28, seed=seed + 1),
        alpha,
    )
    return Case(args=args, expected=_forward_sample(*args), rtol=1e-10, atol=1e-12)


@register(
    "diffusion.forward_sample", "one image at t = 500 of the default schedule", hint=_FORWARD_HINT
)
def _forward_one() -> Case:
    return _forward_case(1, [500], _alpha(1e-4, 0.02, 1000), seed=0)


@register(
    "diffusion.forward_sample",
    "a batch of 4 images at t = 1, 10, 100, 1000 (one alpha_t per image)",
    hint=_FORWARD_HINT,
)
def _forward_batch() -> Case:
    return _forward_case(4, [1, 10, 100, 1000], _alpha(1e-4, 0.02, 1000), seed=10)


@register(
    "diffusion.forward_sample",
    "model 2 (beta2 = 1e-3, T = 18,300) at t = 1,000 and 18,300",
    hint=_FORWARD_HINT,
)
def _forward_model2() -> Case:
    return _forward_case(2, [1000, 18300], _alpha(1e-5, 1e-3, 18300), seed=20)


def _fade(x: Tensor, t: Tensor) -> Tensor:
    """A toy linear degradation: D(x, t) = (1 - t / 10) x, per sample (fades to black at t = 10)."""
    return (1 - t.to(x.dtype) / 10).view(-1, *[1] * (x.dim() - 1)) * x


def _blur() -> Callable[[Tensor, Tensor], Tensor]:
    """The report's blur D(x, t) (eq. 7: sigma_t = 0.02 + 0.01 t, T = 500) in float64."""
    from dgm_lib.diffusion.cold import BlurDegradation

    return BlurDegradation().to(DT)


def _cold_case(degrade: Callable[[Tensor, Tensor], Tensor], t: list[int], seed: int) -> Case:
    n = len(t)
    args = (
        _randn(n, 1, 28, 28, seed=seed),
        _randn(n, 1, 28, 28, seed=seed + 1).tanh(),
        torch.tensor(t),
        degrade,
    )
    return Case(args=args, expected=_cold_step(*args), rtol=1e-9, atol=1e-11)


@register(
    "diffusion.cold_step",
    "a toy fading degradation D(x, t) = (1 - t/10) x at t = 3",
    hint=_COLD_HINT,
)
def _cold_fade() -> Case:
    return _cold_case(_fade, [3], seed=0)


@register(
    "diffusion.cold_step",
    "the report's blur at t = 1 and t = 500 (one timestep per image)",
    hint=_COLD_HINT,
)
def _cold_blur() -> Case:
    return _cold_case(_blur(), [1, 500], seed=10)


@register(
    "diffusion.cold_step", "the report's blur, a batch of 3 at t = 50, 200, 350", hint=_COLD_HINT
)
def _cold_blur_batch() -> Case:
    return _cold_case(_blur(), [50, 200, 350], seed=20)
