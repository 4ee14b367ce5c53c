"""Chapter 04 "Dequantization".

Discrete toys, the bits/dim table of the shipped flows, the explorer's density and the bounds it
shows.

Notation of the lecture: y in {0, ..., K-1}^D is discrete data (K = num_bins), x = y + u continuous,
u ~ U[0, 1]^D (uniform dequantization) or u ~ q(u|y) (variational dequantization, Flow++).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import torch
from torch import Tensor

from dgm_lib.checks import check_positive_int
from dgm_lib.core import device_of
from dgm_lib.data.mnist import mnist_images
from dgm_lib.data.toy2d import LIM, get_target
from dgm_lib.dequantization.discrete import bits_per_dim
from dgm_lib.dequantization.flow import DequantizedFlow
from dgm_lib.dequantization.logistic import mix_logistic_cdf, mix_logistic_log_prob
from dgm_lib.metrics import mean_and_se

EVAL_BATCH = 1600  # digits x importance samples per flow pass in evaluate_mnist


def quantized_toy2d(
    name: str = "two_moons",
    n: int = 2000,
    num_bins: int = 16,
    generator: torch.Generator | None = None,
) -> Tensor:
    """n points of the 2D target `name` (dgm_lib.data.toy2d) on a K x K grid.

    y = floor((x + LIM) K / (2 LIM)).

    [-LIM, LIM]^2 is rescaled to [0, K)^2 and floored; the few points outside are clamped to {0,
    ..., K-1}. Returns an (n, 2) integer-valued float tensor.
    """
    check_positive_int(n, "n")
    check_positive_int(num_bins, "num_bins")
    x = get_target(name).sample(n, generator)
    return torch.floor((x + LIM) * num_bins / (2 * LIM)).clamp(0, num_bins - 1)


@torch.no_grad()
def evaluate_mnist(
    model: DequantizedFlow,
    split: str = "test",
    k: int = 16,
    n: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Bits/dim of a shipped dequantized flow on MNIST digits.

    Bits/dim on the digits of mnist_images(split, "pixels") (the first n if given), means and
    standard errors over digits.

    bpd_objective: the training objective -elbo(y) (for dequantizer None the degenerate -log
    p(y|theta) at the integer points, not a bound); bpd_elbo: the bound with one u (uniform u for
    dequantizer None); bpd_importance: the importance-weighted bound with k samples (tighter, still
    >= -log2 P(y|theta) / D in expectation).
    """
    if not isinstance(model, DequantizedFlow):
        raise TypeError(f"model must be a DequantizedFlow, got {type(model).__name__}")
    check_positive_int(k, "k")
    y = mnist_images(split, "pixels")
    if n is not None:
        check_positive_int(n, "n")
        y = y[:n]
    y = y.to(device_of(model))
    dim = y[0].numel()
    columns: dict[str, list[Tensor]] = {"objective": [], "elbo": [], "importance": []}
    for batch in y.split(max(1, EVAL_BATCH // k)):
        columns["objective"].append(bits_per_dim(model.elbo(batch, generator), dim))
        columns["elbo"].append(bits_per_dim(model.log_prob_importance(batch, 1, generator), dim))
        columns["importance"].append(
            bits_per_dim(model.log_prob_importance(batch, k, generator), dim)
        )
    out: dict[str, float] = {}
    for name, values in columns.items():
        out[f"bpd_{name}"], out[f"bpd_{name}_se"] = mean_and_se(torch.cat(values))
    return out


# The explorer's density: a fixed density on [0, 1] (a mixture of logistics with a narrow third
# peak) quantized to K = 2^b bins; nothing is trained, every number is a quadrature.
DEQUANTIZATION_DENSITY = {
    "weights": (0.45, 0.35, 0.2),
    "means": (0.22, 0.55, 0.83),
    "scales": (0.05, 0.08, 0.012),
}
DEQUANTIZATION_NOISES = {
    "uniform": "uniform U[0, 1]",
    "beta": "Beta(2, 2) bump",
    "optimal": "optimal p(u|y)",
}


def quantized_density(bits: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The explorer's density at b bits, in float64.

    (log p(x) on x in [0, K), the continuous model truncated to [0, K) and renormalized; Pi(y) =
    int_0^1 p(y + u) du over the K = 2^b bins, i.e. the model's own discretization).
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 12:
        raise ValueError(f"bits must be an int in 1..12, got {bits!r}")
    k = 2**bits
    dt = torch.float64
    logit_pi = torch.tensor(DEQUANTIZATION_DENSITY["weights"], dtype=dt).log()
    mu = k * torch.tensor(DEQUANTIZATION_DENSITY["means"], dtype=dt)
    log_s = (k * torch.tensor(DEQUANTIZATION_DENSITY["scales"], dtype=dt)).log()
    cdf = mix_logistic_cdf(torch.arange(k + 1, dtype=dt), logit_pi, mu, log_s)
    log_z = (cdf[-1] - cdf[0]).log()

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return mix_logistic_log_prob(x, logit_pi, mu, log_s) - log_z

    return log_prob, (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])


def noise_log_q(
    noise: str, u: torch.Tensor, log_p: torch.Tensor, log_pi: torch.Tensor
) -> torch.Tensor:
    """log q(u|y) of the explorer's noise.

    Uniform 0, Beta(2, 2) log 6u(1-u), optimal log p(y + u) - log Pi(y) (u, log p(y + u) and log
    Pi(y) broadcast together).
    """
    if noise == "uniform":
        return torch.zeros_like(u)
    if noise == "beta":
        return math.log(6.0) + u.log() + (1 - u).log()
    if noise == "optimal":
        return log_p - log_pi
    raise ValueError(f"noise must be one of {sorted(DEQUANTIZATION_NOISES)}, got {noise!r}")


@lru_cache(maxsize=None)
def dequantization_bits(bits: int, noise: str, points: int = 2**15) -> tuple[float, float]:
    """(H(Pi), the bound) in bits/dim for the explorer's density at b bits and the noise q(u|y).

    The bound is -E_Pi E_q[log p(y + u) - log q(u|y)] / ln 2 by the midpoint rule on `points` nodes
    in total (>= 16 per bin).
    """
    log_prob, pi = quantized_density(bits)
    k = len(pi)
    m = max(16, points // k)
    u = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    log_p = log_prob((torch.arange(k, dtype=torch.float64)[:, None] + u).flatten()).reshape(k, m)
    log_q = noise_log_q(noise, u.expand(k, m), log_p, pi.log()[:, None])
    bound = (pi * (log_q.exp() * (log_p - log_q)).mean(1)).sum()
    entropy = -(pi * pi.log()).sum()
    return float(bits_per_dim(-entropy, 1)), float(bits_per_dim(bound, 1))
