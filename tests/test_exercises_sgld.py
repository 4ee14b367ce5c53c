"""Chapter 05's exercises: each reference passes its check, and a typical mistake fails with the
hint that names it."""

from __future__ import annotations

import math

import pytest
import torch
from graded_path import graded_path_tests

from dgm_lib.exercises import check, sgld

CHAPTER = "sgld"


def step_mean_gradient(theta, grad_log_prior, grad_log_lik, num_data, eps, xi):  # no N / n
    f = -grad_log_prior - grad_log_lik.mean(dim=0)
    return theta - eps * f + math.sqrt(2 * eps) * xi


def step_noise_eps(theta, grad_log_prior, grad_log_lik, num_data, eps, xi):  # noise std eps
    f = -grad_log_prior - num_data / grad_log_lik.shape[0] * grad_log_lik.sum(dim=0)
    return theta - eps * f + eps * xi


def variance_without_gradient_noise(sigma2, eps, grad_noise):
    return sigma2 / (1 - eps / (2 * sigma2))


def variance_noise_eps_g2(sigma2, eps, grad_noise):
    rho = 1 - eps / sigma2
    return (2 * eps + eps * grad_noise**2) / (1 - rho**2)


def variance_rho_not_squared(sigma2, eps, grad_noise):
    rho = 1 - eps / sigma2
    return (2 * eps + eps**2 * grad_noise**2) / (1 - rho)


def psgld_without_lambda(theta, f, v_prev, eps, alpha, lam, xi):
    v = alpha * v_prev + (1 - alpha) * f * f
    g = 1 / v.sqrt()
    return theta - eps * g * f + (2 * eps * g).sqrt() * xi, v


def _chain(grad_potential, theta0, eps, steps, burn_in, generator, *, naive=False, plus=False):
    theta, kept = theta0.clone(), []
    for t in range(steps):
        xi = torch.randn(theta.shape, generator=generator, dtype=theta.dtype)
        drift = eps * grad_potential(theta)
        theta = (theta + drift if plus else theta - drift) + math.sqrt(2 * eps) * xi
        if t >= burn_in:
            kept.append(theta)
    samples = torch.cat(kept)
    if naive:
        return samples.mean().item(), (samples.std() / math.sqrt(len(samples))).item()
    batch_means = samples[: len(samples) // 25 * 25].reshape(25, -1).mean(1)
    return samples.mean().item(), (batch_means.std() / 5).item()


def sghmc_noise_eta(theta, v_prev, f, eta, alpha, xi):
    """Noise of std sqrt(2 eta) (SGLD's), not sqrt(2 alpha eta)."""
    v = (1 - alpha) * v_prev - eta * f + math.sqrt(2 * eta) * xi
    return theta + v, v


def sghmc_old_momentum(theta, v_prev, f, eta, alpha, xi):
    """The position moved by the old momentum."""
    v = (1 - alpha) * v_prev - eta * f + math.sqrt(2 * alpha * eta) * xi
    return theta + v_prev, v


def sghmc_friction_alpha(theta, v_prev, f, eta, alpha, xi):
    """The old momentum multiplied by alpha instead of 1 - alpha."""
    v = alpha * v_prev - eta * f + math.sqrt(2 * alpha * eta) * xi
    return theta + v, v


def chain_naive_se(*args):
    return _chain(*args, naive=True)


def chain_drift_sign(*args):
    return _chain(*args, plus=True)


# mistake -> (exercise, the mistake, the check it fails, phrase of the failure line or hint)
MISTAKES = {
    "step_mean_gradient": ("sgld_step", step_mean_gradient, "check 2/3", "(N / n)"),
    "step_noise_eps": ("sgld_step", step_noise_eps, "check 1/3", "the noise std is sqrt(2"),
    "variance_without_gradient_noise": (
        "stationary_variance",
        variance_without_gradient_noise,
        "check 2/2",
        "leave out the gradient noise",
    ),
    "variance_noise_eps_g2": (
        "stationary_variance",
        variance_noise_eps_g2,
        "check 2/2",
        "variance as eps g^2",
    ),
    "variance_rho_not_squared": (
        "stationary_variance",
        variance_rho_not_squared,
        "check 1/2",
        "divide by 1 - rho instead of 1 - rho^2",
    ),
    "psgld_without_lambda": ("psgld_step", psgld_without_lambda, "check 1/2", "lam + torch.sqrt"),
    "sghmc_noise_eta": ("sghmc_step", sghmc_noise_eta, "check 1/2", "sqrt(2 alpha"),
    "sghmc_old_momentum": ("sghmc_step", sghmc_old_momentum, "check 1/2", "with the NEW v"),
    "sghmc_friction_alpha": ("sghmc_step", sghmc_friction_alpha, "check 1/2", "1 - alpha"),
    "chain_naive_se": (
        "chain_mean",
        chain_naive_se,
        "check 1/1",
        "treat the iterates as independent",
    ),
}


(
    test_the_graded_path_is_declared_in_order,
    test_the_reference_passes,
    test_a_typical_mistake_fails_with_its_hint,
) = graded_path_tests(
    CHAPTER,
    [
        "sgld_step",
        "stationary_variance",
        "psgld_step",
        "sghmc_step",
        "chain_mean",
        "constant_step_bias",
    ],
    MISTAKES,
)


def test_a_chain_with_the_wrong_drift_sign_fails(capsys):
    """Pushed away from the mode the chain diverges: the check reports it, never a traceback."""
    assert check("sgld.chain_mean", chain_drift_sign, record=False).passed is False
    out = capsys.readouterr().out
    assert out.startswith("✗ sgld.chain_mean: check 1/1 ") and "Traceback" not in out


def test_the_stationary_variance_matches_the_recursion():
    sigma2, eps, g = (torch.tensor(v, dtype=torch.float64) for v in (0.7, 0.3, 3.0))
    v = torch.zeros((), dtype=torch.float64)
    for _ in range(2000):  # iterate v <- rho^2 v + 2 eps + eps^2 g^2 to its fixed point
        v = (1 - eps / sigma2) ** 2 * v + 2 * eps + eps**2 * g**2
    assert torch.allclose(sgld.stationary_variance(sigma2, eps, g), v, rtol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_the_experiment_accepts_any_seed_and_other_batch_counts(seed):
    args = sgld._chain_case().args[:-1]
    assert sgld._chain_verify(sgld.chain_mean(*args, torch.Generator().manual_seed(seed))) is None
    result = _chain(*args, torch.Generator().manual_seed(100 + seed))  # 25 batches
    assert sgld._chain_verify(result) is None
