"""Checks of the exercises of the chapter "SGLD", in the order of its graded path.

Warm-up: one SGLD step from minibatch gradients. Derivation: the stationary variance of SGLD on a
Gaussian with noisy gradients, which the AR(1) recursion predicts (the chapter's theorem for
noise-free gradients). Implementation: one pSGLD step, one SGHMC step. Experiment: a chain's mean
and its standard error (checked by properties: the true mean within the error bar, an error bar of
the size the chain's autocorrelation implies). Open question: removing the bias of a constant step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .registry import Case, open_question, register, register_reference
from .runner import diagnosing

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


@register_reference("sgld.sgld_step")
def sgld_step(
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


@register_reference("sgld.psgld_step")
def psgld_step(
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
    return Case(args=args, expected=sgld_step(*args), rtol=1e-10, atol=1e-12)


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
    return Case(args=args, expected=psgld_step(*args), rtol=1e-10, atol=1e-12)


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


# --- derivation: the stationary variance with noisy gradients

_VARIANCE_HINT = (
    "with f~ = theta / sigma^2 + g nu the step is the AR(1) process theta' = rho theta + "
    "sqrt(2 eps) xi - eps g nu, rho = 1 - eps / sigma^2; at stationarity Var theta' = Var theta "
    "= v, so v = rho^2 v + 2 eps + eps^2 g^2 (the variances of independent terms add; the "
    "gradient noise enters multiplied by eps, its variance by eps^2)."
)


@register_reference("sgld.stationary_variance")
def stationary_variance(sigma2: Tensor, eps: Tensor, grad_noise: Tensor) -> Tensor:
    """Reference: the stationary variance of SGLD on N(0, sigma2) with gradient noise of std g.

    v = (2 eps + eps^2 g^2) / (1 - (1 - eps / sigma2)^2), entry by entry (stable: eps < 2 sigma2).
    """
    rho = 1 - eps / sigma2
    return (2 * eps + eps**2 * grad_noise**2) / (1 - rho**2)


def _variance_verify(args: tuple) -> Callable[[object], str | None]:
    sigma2, eps, g = args
    # the theorem's form: sigma^2 (1 + eps g^2 / 2) / (1 - eps / (2 sigma^2))
    expected = sigma2 * (1 + eps * g**2 / 2) / (1 - eps / (2 * sigma2))
    rho = 1 - eps / sigma2
    mistakes = {
        "your values leave out the gradient noise: it adds eps^2 g^2 per step": sigma2
        / (1 - eps / (2 * sigma2)),
        "your values take the gradient noise's variance as eps g^2; the step moves by eps times "
        "f~, so the noise g nu adds eps^2 g^2": (2 * eps + eps * g**2) / (1 - rho**2),
        "your values divide by 1 - rho instead of 1 - rho^2: the variance of rho theta is rho^2 "
        "Var theta": (2 * eps + eps**2 * g**2) / (1 - rho),
    }
    return diagnosing(expected, mistakes, rtol=1e-9, atol=1e-12)


def _variance_case(sigma2: list, eps: list, g: list) -> Case:
    args = tuple(torch.tensor(v, dtype=torch.float64) for v in (sigma2, eps, g))
    return Case(args=args, verify=_variance_verify(args))


@register(
    "sgld.stationary_variance",
    "exact gradients (g = 0): the chapter's theorem, sigma^2 / (1 - eps / (2 sigma^2))",
    hint=_VARIANCE_HINT,
)
def _variance_exact() -> Case:
    return _variance_case([1.0, 1.0, 0.25, 0.25, 4.0], [0.05, 0.45, 0.05, 0.45, 1.0], [0.0] * 5)


@register(
    "sgld.stationary_variance",
    "noisy gradients g = 2 (the chapter's mixture) and g = 10",
    hint=_VARIANCE_HINT,
)
def _variance_noisy() -> Case:
    return _variance_case([1.0, 1.0, 0.25, 4.0], [0.03, 0.2, 0.05, 0.5], [2.0, 2.0, 10.0, 2.0])


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


# --- the experiment: a chain's mean within its standard error

CHAIN_MEAN, CHAIN_VARIANCE = 1.5, 0.5  # the target N(1.5, 0.5)
CHAIN_EPS, CHAIN_STEPS, CHAIN_BURN_IN = 0.05, 20_000, 1_000
_CHAIN_HINT = (
    "run theta <- theta - eps * grad_potential(theta) + math.sqrt(2 * eps) * xi with xi from "
    "torch.randn(theta.shape, generator=generator, dtype=theta.dtype) for `steps` steps, drop the "
    "first burn_in iterates, and return (mean, se). Consecutive iterates are correlated, so "
    "std / sqrt(T) is far too small: split the kept iterates into about 20 to 50 consecutive "
    "batches and take se = std(batch means) / sqrt(number of batches) (batch means)."
)


# --- implementation: one SGHMC step

_SGHMC_HINT = (
    "the chapter's SGD-with-momentum form (beta_hat = 0): v = (1 - alpha) * v_prev - eta * f + "
    "math.sqrt(2 * alpha * eta) * xi, then theta + v with the NEW v; the noise std is sqrt(2 alpha "
    "eta) (friction times learning rate), and the friction multiplies the old momentum by 1 - "
    "alpha, not alpha. Return (theta_next, v)."
)


@register_reference("sgld.sghmc_step")
def sghmc_step(
    theta: Tensor, v_prev: Tensor, f: Tensor, eta: float, alpha: float, xi: Tensor
) -> tuple[Tensor, Tensor]:
    """Reference: v = (1 - alpha) v_prev - eta f~ + sqrt(2 alpha eta) xi, theta + v (SGHMC in the
    SGD-with-momentum form, beta_hat = 0; Chen et al. 2014)."""
    v = (1 - alpha) * v_prev - eta * f + math.sqrt(2 * alpha * eta) * xi
    return theta + v, v


def _sghmc_case(d: int, eta: float, alpha: float, seed: int) -> Case:
    args = (
        _randn(d, seed=seed),
        _randn(d, seed=seed + 1),
        _randn(d, seed=seed + 2),
        eta,
        alpha,
        _randn(d, seed=seed + 3),
    )
    return Case(args=args, expected=sghmc_step(*args), rtol=1e-10, atol=1e-12)


@register("sgld.sghmc_step", "2 parameters, eta = 0.01, alpha = 0.1", hint=_SGHMC_HINT)
def _sghmc_small() -> Case:
    return _sghmc_case(d=2, eta=0.01, alpha=0.1, seed=0)


@register("sgld.sghmc_step", "50 parameters, eta = 1e-4, alpha = 0.5", hint=_SGHMC_HINT)
def _sghmc_many() -> Case:
    return _sghmc_case(d=50, eta=1e-4, alpha=0.5, seed=10)


def _gaussian_potential_grad(theta: Tensor) -> Tensor:
    """grad U of the target N(1.5, 0.5)."""
    return (theta - CHAIN_MEAN) / CHAIN_VARIANCE


def _chain_se_theory(eps: float, steps: int, burn_in: int) -> float:
    """The standard error of the mean of T stationary SGLD iterates on N(m, s2): an AR(1) with
    rho = 1 - eps / s2 and variance v, Var(mean) = v (1 + rho) / ((1 - rho) T)."""
    rho = 1 - eps / CHAIN_VARIANCE
    v = CHAIN_VARIANCE / (1 - eps / (2 * CHAIN_VARIANCE))
    return math.sqrt(v * (1 + rho) / ((1 - rho) * (steps - burn_in)))


@register_reference("sgld.chain_mean")
def chain_mean(
    grad_potential: Callable[[Tensor], Tensor],
    theta0: Tensor,
    eps: float,
    steps: int,
    burn_in: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    """Reference: the mean of an SGLD chain after burn-in and its batch-means standard error."""
    theta, kept = theta0.clone(), []
    for t in range(steps):
        xi = torch.randn(theta.shape, generator=generator, dtype=theta.dtype)
        theta = theta - eps * grad_potential(theta) + math.sqrt(2 * eps) * xi
        if t >= burn_in:
            kept.append(theta)
    samples = torch.cat(kept)
    batch_means = samples[: len(samples) // 40 * 40].reshape(40, -1).mean(1)
    return samples.mean().item(), (batch_means.std() / math.sqrt(40)).item()


def _chain_verify(result: object) -> str | None:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return "return a pair (mean, se)"
    mean, se = float(result[0]), float(result[1])
    if not (math.isfinite(mean) and math.isfinite(se) and se > 0):
        return f"(mean, se) = ({mean}, {se}) should be finite with se > 0"
    theory = _chain_se_theory(CHAIN_EPS, CHAIN_STEPS, CHAIN_BURN_IN)
    if se < 0.6 * theory:
        return (
            f"your standard error {se:.4f} is {theory / se:.1f} times smaller than the chain's "
            f"autocorrelation implies ({theory:.4f}): did you treat the iterates as independent?"
        )
    if se > 1.7 * theory:
        return (
            f"your standard error {se:.4f} is {se / theory:.1f} times larger than the chain's "
            f"autocorrelation implies ({theory:.4f}): too few batches, or a chain that has not "
            "mixed (check the step and the noise scale sqrt(2 eps))?"
        )
    if abs(mean - CHAIN_MEAN) > 4 * theory:
        return (
            f"the chain's mean {mean:.4f} is {abs(mean - CHAIN_MEAN) / theory:.0f} standard "
            f"errors from the target's mean {CHAIN_MEAN}: is the drift -eps * grad U (minus "
            "sign), and the burn-in dropped?"
        )
    return None


@register(
    "sgld.chain_mean",
    f"{CHAIN_STEPS} SGLD steps on N({CHAIN_MEAN}, {CHAIN_VARIANCE}) from theta = -3, eps = "
    f"{CHAIN_EPS} (any seed)",
    hint=_CHAIN_HINT,
)
def _chain_case() -> Case:
    args = (
        _gaussian_potential_grad,
        torch.full((1,), -3.0, dtype=torch.float64),
        CHAIN_EPS,
        CHAIN_STEPS,
        CHAIN_BURN_IN,
        torch.Generator().manual_seed(40),
    )
    return Case(args=args, verify=_chain_verify)


open_question(
    "sgld.constant_step_bias",
    "why SGLD samples and SGD does not, and how to remove the bias of a constant step",
)

# the names the chapter's tests have used for the references
_sgld_step, _psgld_step = sgld_step, psgld_step
