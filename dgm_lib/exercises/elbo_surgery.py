"""Checks of the exercises of the chapter "ELBO surgery".

The mutual information estimator and a flow prior's density.

Expected answers come by another route than the student's: `log_q_agg` and `log_normal_diag` of
dgm_lib.vae for the MI; `FlowPrior.log_prob` for a MAF prior, and the closed-form Gaussian for an
elementwise affine flow.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dgm_lib.flows import ElementwiseAffine, make_maf
from dgm_lib.flows.base import Transform
from dgm_lib.vae.priors import FlowPrior, log_normal_diag
from dgm_lib.vae.surgery import log_q_agg

from .registry import Case, register

_MI_HINT = (
    "build the (n, n) matrix of log N(z_i; mu_j, diag exp(log_var_j)) by broadcasting z[:, None] "
    "against mu[None]; its diagonal is log q(z_i|x_i), torch.logsumexp over j minus log n is log "
    "q_agg(z_i); return the mean of the difference. Never compute log(mean(exp(...))): densities "
    "under- or overflow."
)
_FLOW_HINT = (
    "z_star, log_det = transform(z) gives f(z) and log|det J_f(z)|; log N(z*; 0, I) = -|z*|^2 / 2 "
    "- (d/2) log(2 pi) with d = z.shape[1]; add (not subtract) log_det, one number per row."
)


def _posteriors(
    n: int, d: int, sigma: float, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, ...]:
    """n random posteriors N(mu_i, sigma_i^2 I) in d dimensions (sigma_i around `sigma`) and one
    draw z_i from each."""
    gen = torch.Generator().manual_seed(seed)
    mu = 1.5 * torch.randn(n, d, generator=gen, dtype=dtype)
    log_var = 2 * math.log(sigma) + 0.5 * torch.randn(n, d, generator=gen, dtype=dtype)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(n, d, generator=gen, dtype=dtype)
    return mu, log_var, z


def _mi_case(n: int, d: int, sigma: float, seed: int, dtype: torch.dtype = torch.float64) -> Case:
    mu, log_var, z = _posteriors(n, d, sigma, seed, dtype)
    expected = (log_normal_diag(z, mu, log_var) - log_q_agg(z, mu, log_var)).mean()
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    return Case(args=(mu, log_var, z), expected=expected, **tol)


@register("elbo_surgery.mutual_information", "200 overlapping posteriors in 2D", hint=_MI_HINT)
def _mi_overlapping() -> Case:
    return _mi_case(n=200, d=2, sigma=0.5, seed=0)


@register(
    "elbo_surgery.mutual_information",
    "50 narrow posteriors in 300 dimensions (sigma ~ 0.01): their densities overflow outside log "
    "space",
    hint=_MI_HINT,
)
def _mi_narrow() -> Case:
    return _mi_case(n=50, d=300, sigma=1e-2, seed=1)


@register(
    "elbo_surgery.mutual_information",
    "float32 inputs: the estimate stays float32",
    hint="do not create float64 constants; use math.log for Python numbers so everything follows "
    "the dtype of z.",
)
def _mi_float32() -> Case:
    return _mi_case(n=100, d=2, sigma=0.3, seed=2, dtype=torch.float32)


def _random_maf(seed: int, dtype: torch.dtype = torch.float64) -> Transform:
    """A 2-layer MAF on R^2 with non-trivial random weights, built without the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = make_maf(m=2, depth=2, hidden=(16,))
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return flow.transform.to(dtype).eval()


def _flow_case(transform: Transform, z: Tensor) -> Case:
    with torch.no_grad():
        expected = FlowPrior(transform, z.shape[1]).log_prob(z)
    tol = {"rtol": 1e-9, "atol": 1e-9} if z.dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    return Case(args=(transform, z), expected=expected, **tol)


@register(
    "elbo_surgery.flow_prior_log_prob", "a random 2-layer MAF prior, 100 latents", hint=_FLOW_HINT
)
def _flow_maf() -> Case:
    z = torch.randn(100, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return _flow_case(_random_maf(seed=3), z)


@register(
    "elbo_surgery.flow_prior_log_prob",
    "an elementwise affine f(z) = (z - m) / s in 3D: the prior is N(m, diag s^2), in closed form",
    hint=_FLOW_HINT,
)
def _flow_affine() -> Case:
    mean = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64)
    log_std = torch.tensor([0.4, -0.7, 0.1], dtype=torch.float64)
    transform = ElementwiseAffine(3).to(torch.float64)
    with torch.no_grad():
        transform.mu.copy_(mean)
        transform.log_sigma.copy_(log_std)
    z = torch.randn(20, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return Case(
        args=(transform, z), expected=log_normal_diag(z, mean, 2 * log_std), rtol=1e-9, atol=1e-9
    )


@register(
    "elbo_surgery.flow_prior_log_prob",
    "a float32 MAF and float32 latents: the log-density stays float32",
    hint="do not create float64 constants; use math.log for Python numbers so everything follows "
    "the dtype of z.",
)
def _flow_float32() -> Case:
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    return _flow_case(_random_maf(seed=5, dtype=torch.float32), z)
