"""Chapter 02 "KL duality": the shipped KL fits and the Monte Carlo estimators the chapter checks.

Notation of Lecture 2: x data, z noise, f: x -> z normalizes, g = f^{-1} generates, pi(x) the
target. Forward KL KL(pi || p(x|theta)) needs samples of pi and its exact log-density; reverse KL
KL(p(x|theta) || pi) needs base samples z ~ p(z) and log pi up to a constant (LOTUS); the KL duality
theorem equates KL(pi(x) || p(x|theta)) with KL(p(z|theta) || p(z)), the latent-space divergence.
The fits themselves are zoo configs of dgm_lib.flows.recipes.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from dgm_lib import zoo
from dgm_lib.flows.base import Flow, batch_jacobian
from dgm_lib.flows.recipes import available_fits
from dgm_lib.metrics import mean_and_se

LogDensity = Callable[[Tensor], Tensor]


def load_fit(direction: str, target: str, device: torch.device | str | None = None) -> Flow:
    """The shipped flow fitted to `target` by `direction` KL, on `device` (trained if missing).

    Args:
        direction: "forward" or "reverse".
        target: a target of dgm_lib.data.toy2d with such a fit (see recipes.available_fits()).
        device: where the flow goes (default get_device()).

    Returns:
        The flow, in eval mode.
    """
    if direction not in available_fits().get(target, ()):
        raise ValueError(
            f"no {direction} KL fit of target {target!r}; available: {available_fits()}"
        )
    return zoo.load(zoo.zoo_name("kl", direction, target), device=device)


def mc_estimate(terms: Tensor) -> tuple[float, float]:
    """Monte Carlo mean of per-sample terms and its standard error: (mean(t), std(t) / sqrt(n))."""
    if terms.dim() != 1 or len(terms) < 2:
        raise ValueError(f"terms must have shape (n,) with n >= 2, got {tuple(terms.shape)}")
    if not torch.isfinite(terms).all():
        raise ValueError(f"terms hold {int((~torch.isfinite(terms)).sum())} non-finite values")
    return mean_and_se(terms)


def forward_kl_terms(flow: Flow, log_target: LogDensity, x: Tensor) -> Tensor:
    """log pi(x) - log p(x|theta) at x ~ pi.

    Their mean estimates KL(pi(x) || p(x|theta)) (exact log pi needed).
    """
    return log_target(x) - flow.log_prob(x)


def reverse_kl_terms(
    flow: Flow, log_target: LogDensity, n: int, generator: torch.Generator | None = None
) -> Tensor:
    """log p(z) - log|det J_g(z)| - log pi(g(z)), z ~ p(z) (LOTUS).

    Mean = KL(p(x|theta) || pi) - log Z.

    log Z = 0 for a normalized log_target; n terms, one pass of g (Flow.sample_with_log_prob).
    """
    x, log_p = flow.sample_with_log_prob(n, generator=generator)
    return log_p - log_target(x)


def latent_log_prob(flow: Flow, log_target: LogDensity, z: Tensor) -> Tensor:
    """log p(z|theta) = log pi(g(z)) + log|det J_g(z)|.

    The density of z = f(x) for x ~ pi (KL duality).
    """
    x, log_det_g = flow.transform.inverse(z)
    return log_target(x) + log_det_g


def latent_kl_terms(flow: Flow, log_target: LogDensity, x: Tensor) -> Tensor:
    """log p(z|theta) - log p(z) at z = f(x), x ~ pi: the mean estimates KL(p(z|theta) || p(z))."""
    z, _ = flow.transform(x)
    return latent_log_prob(flow, log_target, z) - flow.base.log_prob(z)


def mode_fractions(x: Tensor, means: Tensor) -> Tensor:
    """Fraction of the samples x (n, m) whose nearest mode is means[k], shape (K,)."""
    nearest = torch.cdist(x.double(), means.to(x.device, torch.float64)).argmin(dim=1)
    return torch.bincount(nearest, minlength=len(means)).double() / len(x)


def relaxed_elbo(
    flow: Flow,
    x: Tensor,
    sigma: float,
    n_samples: int = 64,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The ELBO of the flow as a VAE with Gaussian encoder and decoder of width sigma.

    ELBO of a VAE whose encoder and decoder are Gaussians of width sigma around f and g, per x (each
    term (B,)).

    q(z|x) = N(z; f(x), sigma^2 J_f J_f^T) and p(x|z) = N(x; g(z), sigma^2 I) tend to the
    deterministic delta(z - f(x)) and delta(x - g(z)) as sigma -> 0, where the ELBO = E_q[log
    p(x|z)] - KL(q(z|x) || p(z)) tends to log p(x|theta) (Nielsen et al., SurVAE Flows, NeurIPS
    2020). Monte Carlo over n_samples antithetic pairs z = f(x) +- sigma J_f(x) eps, eps ~ N(0, I).
    Returns {"elbo", "reconstruction": E_q log p(x|z), "kl"}.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    batch, m = x.shape
    jac_f = batch_jacobian(lambda v: flow.transform(v)[0], x).detach()
    with torch.no_grad():
        z0, log_det_f = flow.transform(x)
        device = generator.device if generator is not None else x.device
        eps = torch.randn(
            n_samples, batch, m, generator=generator, dtype=x.dtype, device=device
        ).to(x.device)
        eps = torch.cat([eps, -eps])  # antithetic pairs: the O(sigma) terms cancel
        z = z0 + sigma * torch.einsum("bij,sbj->sbi", jac_f, eps)
        x_rec, _ = flow.transform.inverse(z.reshape(-1, m))
        gauss = -0.5 * m * math.log(2 * math.pi * sigma**2)
        log_decoder = gauss - 0.5 * ((x - x_rec.reshape(-1, batch, m)) / sigma).square().sum(-1)
        log_prior = flow.base.log_prob(z.reshape(-1, m)).reshape(-1, batch)
        log_encoder = gauss - log_det_f - 0.5 * eps.square().sum(-1)
        reconstruction, kl = log_decoder.mean(0), (log_encoder - log_prior).mean(0)
        return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}
