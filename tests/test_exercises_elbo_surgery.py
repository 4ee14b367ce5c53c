"""Chapter 03's exercises: each reference passes its check, and a typical mistake fails with the
hint that names it."""

from __future__ import annotations

import math

import pytest
import torch
from graded_path import graded_path_tests

from dgm_lib.exercises import elbo_surgery

CHAPTER = "elbo_surgery"


def kl_log_var_as_variance(mu, log_var):
    return 0.5 * (log_var + mu**2 - 1 - torch.log(log_var)).sum(-1)


def kl_sign_flipped(mu, log_var):
    return 0.5 * (log_var.exp() + mu**2 - 1 + log_var).sum(-1)


def kl_mean_over_dims(mu, log_var):
    return 0.5 * (log_var.exp() + mu**2 - 1 - log_var).mean(-1)


def kl_float64(mu, log_var):
    return elbo_surgery.kl_to_standard_normal(mu, log_var).double()


def marginal_without_encoder_noise(m, s, a, b, sigma):  # q_agg variance a^2 s^2 only
    var = a**2 * s**2
    return 0.5 * (var + (a * m + b) ** 2 - 1 - torch.log(var))


def marginal_stds_added(m, s, a, b, sigma):  # (a s + sigma)^2
    var = (a * s + sigma) ** 2
    return 0.5 * (var + (a * m + b) ** 2 - 1 - torch.log(var))


def marginal_mean_b_only(m, s, a, b, sigma):  # the chapter's m = 0 formula reused
    var = a**2 * s**2 + sigma**2
    return 0.5 * (var + b**2 - 1 - torch.log(var))


def mi_naive(mu, log_var, z):  # log of a mean of densities: under/overflows
    q = torch.exp(-0.5 * ((z[:, None] - mu[None]) ** 2 / log_var.exp()[None] + log_var[None]
                          + math.log(2 * math.pi)).sum(-1))  # fmt: skip
    return (q.diagonal().log() - q.mean(1).log()).mean()


def flow_minus_log_det(transform, z):
    z_star, log_det = transform(z)
    d = z.shape[-1]
    return -0.5 * (z_star**2).sum(-1) - 0.5 * d * math.log(2 * math.pi) - log_det


def _mi_sizes(model, x, sizes, generator, *, draw=True, std=True, shared=False, log_n=True):
    with torch.no_grad():
        mu, log_var = model.encode(x)
        scale = torch.exp(0.5 * log_var) if std else log_var.exp()
        z = mu + scale * torch.randn(mu.shape, generator=generator) if draw else mu
        out = []
        for n in sizes:
            m = len(x) if shared else n
            pairwise = elbo_surgery.log_normal_diag(z[:n, None], mu[None, :m], log_var[None, :m])
            log_agg = torch.logsumexp(pairwise, 1) - (math.log(m) if log_n else 0.0)
            out.append((pairwise.diagonal() - log_agg).mean().item())
    return out


def mi_sizes_without_noise(*args):
    return _mi_sizes(*args, draw=False)


def mi_sizes_q_agg_of_all_digits(*args):
    return _mi_sizes(*args, shared=True)


def mi_sizes_without_log_n(*args):
    return _mi_sizes(*args, log_n=False)


# mistake -> (exercise, the mistake, the check it fails, phrase of the failure line or hint)
MISTAKES = {
    "kl_sign_flipped": ("kl_to_standard_normal", kl_sign_flipped, "check 2/4", "log_var itself"),
    "kl_log_var_as_variance": (
        "kl_to_standard_normal",
        kl_log_var_as_variance,
        "check 1/4",
        "check the signs",
    ),
    "kl_mean_over_dims": ("kl_to_standard_normal", kl_mean_over_dims, "check 3/4", "not .mean(-1)"),
    "kl_float64": ("kl_to_standard_normal", kl_float64, "check 4/4", "follows the dtype"),
    "marginal_without_encoder_noise": (
        "linear_gaussian_marginal_kl",
        marginal_without_encoder_noise,
        "check 1/2",
        "variances add",
    ),
    "marginal_stds_added": (
        "linear_gaussian_marginal_kl",
        marginal_stds_added,
        "check 1/2",
        "not (a s + sigma)^2",
    ),
    "marginal_mean_b_only": (
        "linear_gaussian_marginal_kl",
        marginal_mean_b_only,
        "check 2/2",
        "the mean of q_agg is E[a x + b] = a m + b",
    ),
    "mi_naive": ("mutual_information", mi_naive, "check 2/3", "Never compute log(mean(exp(...)))"),
    "flow_minus_log_det": (
        "flow_prior_log_prob",
        flow_minus_log_det,
        "check 1/3",
        "add (not subtract) log_det",
    ),
    "mi_sizes_without_noise": ("mi_by_size", mi_sizes_without_noise, "check 1/1", "z = mu instead"),
    "mi_sizes_q_agg_of_all_digits": (
        "mi_by_size",
        mi_sizes_q_agg_of_all_digits,
        "check 1/1",
        "above its ceiling log n",
    ),
    "mi_sizes_without_log_n": ("mi_by_size", mi_sizes_without_log_n, "check 1/1", "the - log n"),
}


(
    test_the_graded_path_is_declared_in_order,
    test_the_reference_passes,
    test_a_typical_mistake_fails_with_its_hint,
) = graded_path_tests(
    CHAPTER,
    [
        "kl_to_standard_normal",
        "linear_gaussian_marginal_kl",
        "mutual_information",
        "flow_prior_log_prob",
        "mi_by_size",
        "what_a_prior_can_buy",
    ],
    MISTAKES,
)


def test_the_marginal_kl_matches_a_monte_carlo_estimate():
    """The reference's closed form against samples of q_agg (not only the surgery identity)."""
    m, s, a, b, sigma = (torch.tensor(v, dtype=torch.float64) for v in (1.0, 1.5, -0.8, 0.3, 0.5))
    gen = torch.Generator().manual_seed(0)
    x = m + s * torch.randn(400_000, generator=gen, dtype=torch.float64)
    z = a * x + b + sigma * torch.randn(400_000, generator=gen, dtype=torch.float64)
    mean, var = a * m + b, a**2 * s**2 + sigma**2
    log_agg = -0.5 * ((z - mean) ** 2 / var + torch.log(2 * math.pi * var))
    log_p = -0.5 * (z**2 + math.log(2 * math.pi))
    estimate = (log_agg - log_p).mean()
    assert abs(estimate - elbo_surgery.linear_gaussian_marginal_kl(m, s, a, b, sigma)) < 5e-3


@pytest.mark.parametrize("seed", range(8))
def test_the_experiment_accepts_any_seed(seed):
    model, x = elbo_surgery._zoo_vae_and_digits()
    result = elbo_surgery.mi_by_size(
        model, x, elbo_surgery.MI_SIZES, torch.Generator().manual_seed(seed)
    )
    assert elbo_surgery._mi_sizes_property(result) is None, result


def test_the_experiment_accepts_float64_tensors():
    """A student who computes in float64 and returns 0-dim tensors passes too."""
    model, x = elbo_surgery._zoo_vae_and_digits()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        mu, log_var = (t.double() for t in model.encode(x))
    z = mu + torch.exp(0.5 * log_var) * torch.randn(
        mu.shape, generator=generator, dtype=torch.float64
    )
    result = tuple(
        elbo_surgery.mutual_information(mu[:n], log_var[:n], z[:n]) for n in elbo_surgery.MI_SIZES
    )
    assert elbo_surgery._mi_sizes_property(result) is None
