"""Chapter 04's exercises: each reference passes its check, and a typical mistake fails with the
hint that names it."""

from __future__ import annotations

import math

import pytest
import torch
from graded_path import graded_path_tests

from dgm_lib.exercises import dequantization

CHAPTER = "dequantization"


def bpd_in_nats(log_p, num_dims, scale):  # forgot ln 2
    return -(log_p - num_dims * math.log(scale)) / num_dims


def bpd_without_rescaling(log_p, num_dims, scale):
    return -log_p / (num_dims * math.log(2))


def bpd_rescaling_sign(log_p, num_dims, scale):
    return -(log_p + num_dims * math.log(scale)) / (num_dims * math.log(2))


def bpd_float64(log_p, num_dims, scale):
    return dequantization.bits_per_dim_rescaled(log_p, num_dims, scale).double()


def _gap(y, mu, s, *, twelfth=True, mass=True, sign=1.0):
    if mass:
        log_mass = torch.log(
            torch.special.ndtr((y + 1 - mu) / s) - torch.special.ndtr((y - mu) / s)
        )
    else:  # the density at the centre of the cube
        log_mass = -0.5 * ((y + 0.5 - mu) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)
    mean_square = (y + 0.5 - mu) ** 2 + (1 / 12 if twelfth else 0.0)
    bound = -torch.log(s) - 0.5 * math.log(2 * math.pi) - mean_square / (2 * s**2)
    return sign * (log_mass - bound)


def gap_without_twelfth(y, mu, s):
    return _gap(y, mu, s, twelfth=False)


def gap_with_density_at_centre(y, mu, s):
    return _gap(y, mu, s, mass=False)


def gap_sign_flipped(y, mu, s):
    return _gap(y, mu, s, sign=-1.0)


def logistic_without_edges(y, mu, log_s, num_bins):
    s = log_s.exp()
    return torch.log(torch.sigmoid((y + 0.5 - mu) / s) - torch.sigmoid((y - 0.5 - mu) / s))


def bound_divided_by_batch(log_prob, y, u):  # D taken as the batch's numel
    s, b = u.shape[0], u.shape[1]
    log_p = log_prob((y + u).reshape(s * b, *y.shape[1:])).reshape(s, b).mean(0)
    return -log_p / (y.numel() * math.log(2))


def fit_without_noise(y, generator):
    return y.mean().item(), y.std(correction=0).item()


def fit_centred_noise(y, generator):
    x = y + torch.rand(y.shape, generator=generator, dtype=y.dtype) - 0.5
    return x.mean().item(), x.std(correction=0).item()


def fit_std_of_y(y, generator):
    x = y + torch.rand(y.shape, generator=generator, dtype=y.dtype)
    return x.mean().item(), y.std(correction=0).item()


# mistake -> (exercise, the mistake, the check it fails, phrase of the failure line or hint)
MISTAKES = {
    "bpd_in_nats": ("bits_per_dim_rescaled", bpd_in_nats, "check 1/3", "through ln 2"),
    "bpd_without_rescaling": (
        "bits_per_dim_rescaled",
        bpd_without_rescaling,
        "check 2/3",
        "subtract D * math.log(scale)",
    ),
    "bpd_rescaling_sign": (
        "bits_per_dim_rescaled",
        bpd_rescaling_sign,
        "check 2/3",
        "K^D times the density",
    ),
    "bpd_float64": ("bits_per_dim_rescaled", bpd_float64, "check 3/3", "dtype of log_p"),
    "gap_without_twelfth": (
        "uniform_gap_gaussian",
        gap_without_twelfth,
        "check 1/2",
        "your values are the gap without the 1/12",
    ),
    "gap_with_density_at_centre": (
        "uniform_gap_gaussian",
        gap_with_density_at_centre,
        "check 1/2",
        "P(y) is the mass of the cube",
    ),
    "gap_sign_flipped": (
        "uniform_gap_gaussian",
        gap_sign_flipped,
        "check 1/2",
        "your values are minus the gap",
    ),
    "logistic_without_edges": (
        "discretized_logistic",
        logistic_without_edges,
        "check 1/3",
        "except at the edges",
    ),
    "bound_divided_by_batch": (
        "uniform_bound_bpd",
        bound_divided_by_batch,
        "check 1/3",
        "not the batch size",
    ),
    "fit_without_noise": ("fit_dequantized_gaussian", fit_without_noise, "check 1/1", "at all?"),
    "fit_centred_noise": (
        "fit_dequantized_gaussian",
        fit_centred_noise,
        "check 1/1",
        "is your noise centred",
    ),
    "fit_std_of_y": (
        "fit_dequantized_gaussian",
        fit_std_of_y,
        "check 1/1",
        "standard deviation of y + u",
    ),
}


(
    test_the_graded_path_is_declared_in_order,
    test_the_reference_passes,
    test_a_typical_mistake_fails_with_its_hint,
) = graded_path_tests(
    CHAPTER,
    [
        "bits_per_dim_rescaled",
        "uniform_gap_gaussian",
        "discretized_logistic",
        "uniform_bound_bpd",
        "fit_dequantized_gaussian",
        "bits_without_dequantization",
    ],
    MISTAKES,
)


def test_the_gap_quadrature_agrees_with_the_closed_form():
    y = torch.arange(-3.0, 12.0, dtype=torch.float64)
    mu, s = torch.full_like(y, 4.2), torch.full_like(y, 1.3)
    closed = dequantization.uniform_gap_gaussian(y, mu, s)
    assert torch.allclose(closed, dequantization._kl_uniform_by_quadrature(y, mu, s), rtol=1e-7)
    assert (closed > 0).all()


@pytest.mark.parametrize("seed", range(10))
def test_the_experiment_accepts_any_seed(seed):
    generator = torch.Generator().manual_seed(seed)
    y = dequantization.quantized_toy(dequantization.TOY_SIZE, generator)
    verify = dequantization._sheppard_verify(y)
    assert verify(dequantization.fit_dequantized_gaussian(y, generator)) is None


def test_the_experiment_accepts_gradient_ascent_and_tensors():
    generator = torch.Generator().manual_seed(0)
    y = dequantization.quantized_toy(dequantization.TOY_SIZE, generator)
    mu = torch.zeros((), dtype=torch.float64, requires_grad=True)
    log_sigma = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([mu, log_sigma], lr=0.05)
    for _ in range(600):  # maximum likelihood by Adam, fresh noise every step
        x = y + torch.rand(y.shape, generator=generator, dtype=y.dtype)
        nll = (log_sigma + 0.5 * ((x - mu) / log_sigma.exp()) ** 2).mean()
        optimizer.zero_grad()
        nll.backward()
        optimizer.step()
    result = (mu.detach(), log_sigma.exp().detach())
    assert dequantization._sheppard_verify(y)(result) is None
