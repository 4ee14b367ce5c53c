"""Checks of the exercises of the chapter "Dequantization", in the order of its graded path.

Warm-up: bits per dimension on the data's scale from the log-density of rescaled data. Derivation:
the gap of the uniform bound for a Gaussian density, which the theorem predicts equal to
KL(U || p(u|y)). Implementations: the discretized logistic through its CDF (with the edge bins),
and the bits/dim of the uniform dequantization bound from given noise draws. Experiment: a Gaussian
fitted by maximum likelihood to a uniformly dequantized 1D toy (checked by its property: mean
shifted by 1/2, variance grown by 1/12). Open question: bits/dim without dequantization, and what
variational dequantization buys.

Expected answers come by another route than the student's: `bits_per_dim` of the library; the
theorem's KL(U || p(u|y)) by quadrature for the gap; `discretized_logistic_log_prob`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from dgm_lib.dequantization import (
    bits_per_dim,
    discretized_logistic_log_prob,
    logistic_log_prob,
    mix_logistic_log_prob,
)

from .registry import Case, open_question, register, register_reference
from .runner import diagnosing

DT = torch.float64

# --- warm-up: bits per dimension on the data's scale

_BPD_HINT = (
    "bits/dim = -log p / (D ln 2): nats become bits through ln 2 = math.log(2) (not log10, not "
    "log2 of a log-density), and D is the number of dimensions of one data point."
)
_RESCALE_HINT = (
    "the density of x / K on [0, 1)^D is K^D times the density of x on [0, K)^D: log p(x) = "
    "log p(x / K) - D log K, so subtract D * math.log(scale) before converting (for K = 256 that "
    "adds log2(256) = 8 bits/dim); D is per data point, not the batch size."
)


@register_reference("dequantization.bits_per_dim_rescaled")
def bits_per_dim_rescaled(log_p: Tensor, num_dims: int, scale: float) -> Tensor:
    """Reference: bits/dim on [0, K)^D of log-densities in nats of the rescaled data x / K."""
    return bits_per_dim(log_p - num_dims * math.log(scale), num_dims)


def _bpd_case(log_p: list, num_dims: int, scale: float, dtype: torch.dtype = DT) -> Case:
    log_p_t = torch.tensor(log_p, dtype=dtype)
    expected = -(log_p_t - num_dims * math.log(scale)) / (num_dims * math.log(2))
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == DT else {"rtol": 1e-5, "atol": 1e-5}
    return Case(args=(log_p_t, num_dims, scale), expected=expected, **tol)


@register(
    "dequantization.bits_per_dim_rescaled",
    "no rescaling (scale = 1), D = 1: -log p / ln 2",
    hint=_BPD_HINT,
)
def _bpd_plain() -> Case:
    return _bpd_case([-2.0, -0.5, 1.5, -math.log(2)], 1, 1.0)


@register(
    "dequantization.bits_per_dim_rescaled",
    "4 images, D = 784, pixels rescaled by K = 256",
    hint=_RESCALE_HINT,
)
def _bpd_mnist() -> Case:
    return _bpd_case([1200.0, 950.5, 1500.25, -300.0], 784, 256.0)


@register(
    "dequantization.bits_per_dim_rescaled",
    "float32 log-densities, D = 3, K = 16: the result stays float32",
    hint="do not create float64 tensors; use math.log for Python numbers so everything follows "
    "the dtype of log_p.",
)
def _bpd_float32() -> Case:
    return _bpd_case([2.5, -1.0], 3, 16.0, dtype=torch.float32)


# --- derivation: the gap of the uniform bound for a Gaussian density

_GAP_HINT = (
    "gap = log P(y) - int_0^1 log p(y + u) du with P(y) = Phi((y + 1 - mu) / s) - "
    "Phi((y - mu) / s) (torch.special.ndtr) and int_0^1 log p(y + u) du = -log(s sqrt(2 pi)) - "
    "[(y + 1/2 - mu)^2 + 1/12] / (2 s^2), since E(y + u - mu)^2 = (y + 1/2 - mu)^2 + Var u, "
    "and Var u = 1/12."
)


@register_reference("dequantization.uniform_gap_gaussian")
def uniform_gap_gaussian(y: Tensor, mu: Tensor, s: Tensor) -> Tensor:
    """Reference: log P(y) - E_u log p(y + u) for p = N(mu, s^2), u ~ U[0, 1], entry by entry."""
    log_mass = torch.log(torch.special.ndtr((y + 1 - mu) / s) - torch.special.ndtr((y - mu) / s))
    bound = (
        -torch.log(s) - 0.5 * math.log(2 * math.pi) - ((y + 0.5 - mu) ** 2 + 1 / 12) / (2 * s**2)
    )
    return log_mass - bound


def _kl_uniform_by_quadrature(y: Tensor, mu: Tensor, s: Tensor, nodes: int = 20_000) -> Tensor:
    """The theorem's side: KL(U[0, 1] || p(u|y)) = -int_0^1 log p(u|y) du, p(u|y) = p(y + u) / P(y)
    normalized on the cube, by the midpoint rule."""
    u = (torch.arange(nodes, dtype=y.dtype) + 0.5) / nodes
    x = y[..., None] + u
    log_p = -0.5 * ((x - mu[..., None]) / s[..., None]) ** 2 - torch.log(s[..., None])
    log_mass = torch.logsumexp(log_p, -1) - math.log(nodes)
    return log_mass - log_p.mean(-1)


def _gap_verify(args: tuple) -> Callable[[object], str | None]:
    y, mu, s = args
    expected = _kl_uniform_by_quadrature(y, mu, s)
    log_mass = torch.log(torch.special.ndtr((y + 1 - mu) / s) - torch.special.ndtr((y - mu) / s))
    centre = -0.5 * ((y + 0.5 - mu) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)
    mistakes = {
        "your values are the gap without the 1/12: the bound averages (y + u - mu)^2 over u, which "
        "is (y + 1/2 - mu)^2 + 1/12, not the square at the centre": expected - 1 / (24 * s**2),
        "your values are the gap with P(y) replaced by the density at the centre p(y + 1/2): P(y) "
        "is the mass of the cube, a difference of CDFs": expected - log_mass + centre,
        "your values are minus the gap: the gap is a KL divergence, >= 0, log P(y) minus the "
        "bound": -expected,
    }
    return diagnosing(expected, mistakes)


def _gap_case(y: list, mu: float, s: float) -> Case:
    args = (
        torch.tensor(y, dtype=DT),
        torch.full((len(y),), mu, dtype=DT),
        torch.full((len(y),), s, dtype=DT),
    )
    return Case(args=args, verify=_gap_verify(args))


@register(
    "dequantization.uniform_gap_gaussian",
    "p = N(2.3, 1), y = 0, ..., 5: the gap equals KL(U || p(u|y)) (by quadrature)",
    hint=_GAP_HINT,
)
def _gap_unit() -> Case:
    return _gap_case([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 2.3, 1.0)


@register(
    "dequantization.uniform_gap_gaussian",
    "a narrow p = N(7.6, 0.5^2), y = 5, ..., 10: larger gaps",
    hint=_GAP_HINT,
)
def _gap_narrow() -> Case:
    return _gap_case([5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 7.6, 0.5)


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


@register_reference("dequantization.discretized_logistic")
def discretized_logistic(y: Tensor, mu: Tensor, log_s: Tensor, num_bins: int) -> Tensor:
    """Reference: log P(y) of a discretized logistic with the edge rule (the library's)."""
    return discretized_logistic_log_prob(y, mu, log_s, num_bins)


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


@register_reference("dequantization.uniform_bound_bpd")
def uniform_bound_bpd(log_prob, y: Tensor, u: Tensor) -> Tensor:
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
    return Case(args=args, expected=uniform_bound_bpd(*args), rtol=1e-9, atol=1e-12)


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


# --- the experiment: a Gaussian fitted to a uniformly dequantized 1D toy

TOY_SIZE = 20_000
_FIT_HINT = (
    "draw u = torch.rand(y.shape, generator=generator, dtype=y.dtype), a fresh U[0, 1) per point "
    "(not U[-1/2, 1/2): the cube of y is [y, y + 1)), fit on x = y + u; the maximum-likelihood "
    "Gaussian has mu = x.mean() and sigma = x.std(correction=0); return (mu, sigma)."
)


def quantized_toy(n: int, generator: torch.Generator) -> Tensor:
    """n integers y = floor(x), x ~ N(6.3, 1.7^2), clipped to {0, ..., 15}: a quantized 1D toy."""
    x = 6.3 + 1.7 * torch.randn(n, generator=generator, dtype=DT)
    return x.floor().clamp(0, 15)


@register_reference("dequantization.fit_dequantized_gaussian")
def fit_dequantized_gaussian(y: Tensor, generator: torch.Generator) -> tuple[float, float]:
    """Reference: the maximum-likelihood Gaussian (mu, sigma) of the dequantized data y + u."""
    x = y + torch.rand(y.shape, generator=generator, dtype=y.dtype)
    return x.mean().item(), x.std(correction=0).item()


def _sheppard_verify(y: Tensor) -> Callable[[object], str | None]:
    """Dequantization shifts the mean by 1/2 and adds Var u = 1/12 to the variance."""
    mean_y, var_y = y.mean().item(), y.var(correction=0).item()

    def verify(result: object) -> str | None:
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            return "return a pair (mu, sigma)"
        mu, sigma = float(result[0]), float(result[1])
        if not (math.isfinite(mu) and math.isfinite(sigma) and sigma > 0):
            return f"(mu, sigma) = ({mu}, {sigma}) should be finite with sigma > 0"
        shift, extra = mu - mean_y, sigma**2 - var_y
        if abs(shift - 0.5) < 0.02 and abs(extra - 1 / 12) < 0.03:
            return None
        what = (
            "mean of y + 1/2 and variance of y + 1/12 (the mean and the variance of u ~ U[0, 1) "
            f"add); got mean(y) + {shift:.3f} and var(y) + {extra:.3f}"
        )
        if abs(shift) < 0.02 and abs(extra - 1 / 12) < 0.03:
            return f"the fit should have {what}: is your noise centred, U[-1/2, 1/2)?"
        if abs(shift) < 0.02 and abs(extra) < 0.03:
            return f"the fit should have {what}: did you add the noise u at all?"
        if abs(shift - 0.5) < 0.02 and abs(extra) < 0.03:
            return f"the fit should have {what}: is sigma the standard deviation of y + u?"
        return f"the fit should have {what}"

    return verify


def _toy_case(seed: int) -> Case:
    generator = torch.Generator().manual_seed(seed)
    y = quantized_toy(TOY_SIZE, generator)
    return Case(args=(y, generator), verify=_sheppard_verify(y))


@register(
    "dequantization.fit_dequantized_gaussian",
    f"{TOY_SIZE} quantized draws of N(6.3, 1.7^2) (any seed)",
    hint=_FIT_HINT,
)
def _toy_fit() -> Case:
    return _toy_case(seed=30)


open_question(
    "dequantization.bits_without_dequantization",
    "why bits/dim without dequantization bound nothing, and what variational dequantization buys",
)
