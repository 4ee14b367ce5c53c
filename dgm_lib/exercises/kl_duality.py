"""Checks of the KL-duality chapter's exercises.

The LOTUS reverse-KL estimator and the importance-sampling log Z.

Expected answers are computed by another route than the one the student takes: through f and
Flow.log_prob at x = g(z) instead of through g's log-determinant, so the checks also catch a wrong
sign of log|det J_g|.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from dgm_lib.data.toy2d import get_target
from dgm_lib.flows.base import Flow
from dgm_lib.flows.builders import make_realnvp

from .registry import Case, register

_LOTUS_HINT = (
    "x, log_det_g = flow.transform.inverse(z) gives x = g(z) and log|det J_g(z)|; then log "
    "p(x|theta) = flow.base.log_prob(z) - log_det_g (minus: J_g is the inverse of J_f) and the "
    "terms are log p(x|theta) - log_target(x), one per row of z, not averaged."
)
_IS_HINT = (
    "the log-weights are w_i = log_target(x_i) - log p(x_i|theta) at x_i = g(z_i); return"
    " torch.logsumexp(w, 0) - log(n), never log(mean(exp(w))), which overflows for large weights."
)


def _flow(seed: int, dtype: torch.dtype = torch.float64) -> Flow:
    """A small RealNVP (depth 4) with non-trivial random weights, built without touching the global
    RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = make_realnvp(m=2, depth=4, hidden=(16,))
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return flow.to(dtype).eval()


def _base_points(n: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _log_weights(flow: Flow, log_target: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """log pi(x) - log p(x|theta) at x = g(z), with log p(x|theta) through f (Flow.log_prob)."""
    with torch.no_grad():
        x = flow.transform.inverse(z)[0]
        return log_target(x) - flow.log_prob(x)


def _lotus_case(seed: int, target: str, n: int, dtype: torch.dtype = torch.float64) -> Case:
    flow, z = _flow(seed, dtype), _base_points(n, seed, dtype)
    log_target = get_target(target).log_prob
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    return Case(args=(flow, log_target, z), expected=-_log_weights(flow, log_target, z), **tol)


@register(
    "kl_duality.reverse_kl_lotus",
    "5 base points, a RealNVP of depth 4, the U1 energy",
    hint=_LOTUS_HINT,
)
def _lotus_u1() -> Case:
    return _lotus_case(seed=0, target="u1", n=5)


@register(
    "kl_duality.reverse_kl_lotus",
    "200 base points, 8 Gaussians target (normalized)",
    hint=_LOTUS_HINT,
)
def _lotus_eight_gaussians() -> Case:
    return _lotus_case(seed=1, target="eight_gaussians", n=200)


@register(
    "kl_duality.reverse_kl_lotus",
    "a float32 flow and float32 z: the terms stay float32",
    hint="do not create float64 constants; everything should follow the dtype of z.",
)
def _lotus_float32() -> Case:
    return _lotus_case(seed=2, target="banana", n=50, dtype=torch.float32)


def _is_case(seed: int, target: str, n: int, offset: float) -> Case:
    flow, z = _flow(seed), _base_points(n, seed)
    energy = get_target(target).log_prob

    def log_target(x: Tensor) -> Tensor:
        return energy(x) + offset

    w = _log_weights(flow, log_target, z)
    return Case(
        args=(flow, log_target, z),
        expected=float(torch.logsumexp(w, 0) - math.log(n)),
        rtol=1e-9,
        atol=1e-9,
    )


@register("kl_duality.log_normalizer_is", "1000 base points, the banana energy", hint=_IS_HINT)
def _is_banana() -> Case:
    return _is_case(seed=3, target="banana", n=1000, offset=0.0)


@register(
    "kl_duality.log_normalizer_is",
    "an energy shifted by +1000 (log Z grows by 1000): exp overflows",
    hint=_IS_HINT,
)
def _is_overflow() -> Case:
    return _is_case(seed=4, target="u1", n=100, offset=1000.0)
