"""Chapter 02's exercises: each reference passes its check, and a typical mistake fails with the
hint that names it."""

from __future__ import annotations

import math

import pytest
import torch

from dgm_lib.exercises import check, kl_duality, registry


def kl_swapped(mu_p, sigma_p, mu_q, sigma_q):
    return kl_duality.kl_gaussians(mu_q, sigma_q, mu_p, sigma_p)


def kl_variances(mu_p, sigma_p, mu_q, sigma_q):  # sigma used as if it were the variance
    return torch.log(sigma_q / sigma_p) + (sigma_p + (mu_p - mu_q) ** 2) / (2 * sigma_q) - 0.5


def kl_float64(mu_p, sigma_p, mu_q, sigma_q):
    return kl_duality.kl_gaussians(mu_p, sigma_p, mu_q, sigma_q).double()


def latent_signed_scale(m, s, a, b):  # s / a instead of s / |a|
    mean, std = (m - b) / a, s / a
    return 0.5 * (std**2 + mean**2 - 1) - torch.log(std)


def latent_mean_not_scaled(m, s, a, b):  # forgot to divide the mean by a
    mean, std = m - b, s / a.abs()
    return 0.5 * (std**2 + mean**2 - 1) - torch.log(std)


def lotus_plus_log_det(flow, log_target, z):
    x, log_det_g = flow.transform.inverse(z)
    return flow.base.log_prob(z) + log_det_g - log_target(x)


def lotus_averaged(flow, log_target, z):
    return kl_duality.reverse_kl_lotus(flow, log_target, z).mean()


def is_naive(flow, log_target, z):
    return torch.log(torch.exp(-kl_duality.reverse_kl_lotus(flow, log_target, z)).mean())


def _reverse_fit(direction, log_target, samples, generator, *, detach=False, entropy=True, mu0=1.0):
    """A student's reverse fit with one of the typical mistakes switched on."""
    if direction == "forward":
        return kl_duality.fit_gaussian(direction, log_target, samples, generator)
    mu = torch.tensor(mu0, dtype=torch.float64, requires_grad=True)
    log_sigma = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([mu, log_sigma], lr=0.05)
    for _ in range(200):
        eps = torch.randn(128, generator=generator, dtype=torch.float64)
        x = mu + log_sigma.exp() * eps
        x = x.detach() if detach else x
        log_q = -log_sigma - 0.5 * eps**2 - 0.5 * math.log(2 * math.pi)
        loss = ((log_q if entropy else 0.0) - log_target(x)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return mu.item(), log_sigma.exp().item()


def fit_swapped(direction, log_target, samples, generator):
    other = "reverse" if direction == "forward" else "forward"
    return kl_duality.fit_gaussian(other, log_target, samples, generator)


def fit_detached(*args):
    return _reverse_fit(*args, detach=True)


def fit_without_entropy(*args):
    return _reverse_fit(*args, entropy=False)


def fit_from_the_middle(*args):
    return _reverse_fit(*args, mu0=0.0)


# exercise -> (mistake, the check it fails, phrase of the failure line or hint)
MISTAKES = {
    "kl_swapped": ("kl_gaussians", kl_swapped, "check 3/4", "the KL is not symmetric"),
    "kl_variances": ("kl_gaussians", kl_variances, "check 2/4", "are standard deviations"),
    "kl_float64": ("kl_gaussians", kl_float64, "check 4/4", "follow the dtype of the inputs"),
    "latent_signed_scale": (
        "affine_latent_kl",
        latent_signed_scale,
        "check 2/2",
        "s / |a|, never s / a",
    ),
    "latent_mean_not_scaled": (
        "affine_latent_kl",
        latent_mean_not_scaled,
        "check 1/2",
        "mean (m - b) / a",
    ),
    "lotus_plus_log_det": (
        "reverse_kl_lotus",
        lotus_plus_log_det,
        "check 1/3",
        "(minus: J_g is the inverse of J_f)",
    ),
    "lotus_averaged": ("reverse_kl_lotus", lotus_averaged, "check 1/3", "not averaged"),
    "is_naive": ("log_normalizer_is", is_naive, "check 2/2", "never log(mean(exp(w)))"),
    "fit_swapped": ("fit_gaussian", fit_swapped, "check 1/2", "should cover both modes"),
    "fit_detached": ("fit_gaussian", fit_detached, "check 2/2", "no .detach()"),
    "fit_without_entropy": ("fit_gaussian", fit_without_entropy, "check 2/2", "it collapsed"),
    "fit_from_the_middle": ("fit_gaussian", fit_from_the_middle, "check 2/2", "start off-centre"),
}


def test_the_graded_path_is_declared_in_order():
    assert registry.chapter_exercises("kl_duality") == [
        "kl_duality.kl_gaussians",
        "kl_duality.affine_latent_kl",
        "kl_duality.reverse_kl_lotus",
        "kl_duality.log_normalizer_is",
        "kl_duality.fit_gaussian",
        "kl_duality.mode_seeking_remedies",
    ]
    assert registry.is_open_question("kl_duality.mode_seeking_remedies")


@pytest.mark.parametrize(
    "name",
    [n for n in registry.chapter_exercises("kl_duality") if not registry.is_open_question(n)],
)
def test_the_reference_passes(name, capsys):
    assert check(name, registry.reference_for(name), record=False).passed is True, (
        capsys.readouterr().out
    )


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_typical_mistake_fails_with_its_hint(mistake, capsys):
    exercise, fn, which, phrase = MISTAKES[mistake]
    assert check(f"kl_duality.{exercise}", fn, record=False).passed is False
    out = capsys.readouterr().out
    assert out.startswith(f"✗ kl_duality.{exercise}: {which} ") and phrase in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_the_experiment_accepts_any_seed(seed):
    generator = torch.Generator().manual_seed(seed)
    samples = kl_duality.two_modes_sample(4000, generator)
    forward = kl_duality.fit_gaussian("forward", kl_duality.two_modes_log_prob, samples, generator)
    reverse = kl_duality.fit_gaussian("reverse", kl_duality.two_modes_log_prob, samples, generator)
    assert kl_duality._covers_both_modes(forward) is None
    assert kl_duality._sits_on_one_mode(reverse) is None
    # a fit that starts on the other side lands on the other mode: still accepted
    mirrored = _reverse_fit("reverse", kl_duality.two_modes_log_prob, samples, generator, mu0=-1.0)
    assert mirrored[0] < 0 and kl_duality._sits_on_one_mode(mirrored) is None


def test_the_experiment_accepts_tensors_and_gradient_descent_for_the_forward_fit():
    samples = kl_duality.two_modes_sample(4000, torch.Generator().manual_seed(0))
    mu = torch.zeros((), dtype=torch.float64, requires_grad=True)
    log_sigma = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([mu, log_sigma], lr=0.05)
    for _ in range(400):  # MLE by gradient descent instead of the closed form
        nll = (log_sigma + 0.5 * ((samples - mu) / log_sigma.exp()) ** 2).mean()
        optimizer.zero_grad()
        nll.backward()
        optimizer.step()
    assert kl_duality._covers_both_modes((mu.detach(), log_sigma.exp().detach())) is None


def test_the_two_mode_target_is_normalized():
    x = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    mass = kl_duality.two_modes_log_prob(x).exp().sum() * (x[1] - x[0])
    assert abs(mass.item() - 1) < 1e-9
