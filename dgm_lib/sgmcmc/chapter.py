"""Chapter 05 "SGLD".

Parallel SG-MCMC chains on a potential U(theta), a 1D Gaussian mixture with exact bin masses, the
rescaled Gaussian N(0, diag(a, 1)) of Li et al. (AAAI 2016), two-moons labels.

Nothing here is a zoo config: every run is small enough to happen live in the chapter, its widget
and the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from dgm_lib.data.toy2d import GaussianMixture, two_moons
from dgm_lib.sgmcmc.samplers import SGHMC, SGLD, pSGLD

# The samplers of the chapter by name; "SGD" is SGLD at temperature 0 (no injected noise).
SAMPLERS: dict[str, tuple[type[torch.optim.Optimizer], dict]] = {
    "SGD": (SGLD, {"temperature": 0.0}),
    "SGLD": (SGLD, {}),
    "pSGLD": (pSGLD, {}),
    "SGHMC": (SGHMC, {}),
}


@dataclass(frozen=True)
class ChainRun:
    """How run_chains runs.

    `steps` steps of size `lr`, the first `burn_in` dropped, and minibatch-like gradient noise f~_t
    = grad U(theta_t) + grad_noise * nu_t, nu_t ~ N(0, I).
    """

    steps: int
    lr: float
    burn_in: int = 0
    grad_noise: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.burn_in < self.steps:
            raise ValueError(
                f"need 0 <= burn_in < steps, got burn_in={self.burn_in}, steps={self.steps}"
            )
        if self.grad_noise < 0:
            raise ValueError(f"grad_noise must be >= 0, got {self.grad_noise}")


def run_chains(
    sampler: str,
    potential: Callable[[Tensor], Tensor],
    theta0: Tensor,
    run: ChainRun,
    generator: torch.Generator | None = None,
    **options: Any,
) -> Tensor:
    """Independent chains of `sampler` on the potential U(theta), one per row of theta0.

    Independent chains theta_t (one per row of theta0) of `sampler` on U(theta) = potential(theta).

    Args:
        sampler: a name of SAMPLERS ("SGD", "SGLD", "pSGLD", "SGHMC").
        potential: maps (chains, d) to (chains,).
        theta0: the starting points (chains, d).
        run: steps, step size, burn-in and gradient noise (ChainRun).
        generator: the source of the sampler's and the gradient noise.
        options: sampler options (e.g. alpha for pSGLD, friction for SGHMC).

    Returns:
        The iterates theta_t, t = burn_in + 1, ..., steps, shape (steps - burn_in, chains, d).

    Example:
        >>> run = ChainRun(steps=100, lr=0.1, burn_in=50)
        >>> run_chains("SGLD", lambda t: 0.5 * t[:, 0] ** 2, torch.zeros(8, 1), run).shape
        torch.Size([50, 8, 1])
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {tuple(SAMPLERS)}, got {sampler!r}")
    if not isinstance(theta0, Tensor) or theta0.dim() != 2:
        got = getattr(theta0, "shape", theta0)
        raise ValueError(f"theta0 must be a tensor of shape (chains, d), got {got}")
    cls, defaults = SAMPLERS[sampler]
    theta = theta0.detach().clone().requires_grad_(True)
    optimizer = cls([theta], lr=run.lr, generator=generator, **{**defaults, **options})
    kept = []
    for t in range(1, run.steps + 1):
        optimizer.zero_grad()
        loss = potential(
            theta
        ).sum()  # chains are independent: row c of the gradient is grad U(theta_c)
        if run.grad_noise > 0:
            nu = torch.randn(
                theta.shape, generator=generator, dtype=theta.dtype, device=theta.device
            )
            loss = loss + run.grad_noise * (nu * theta).sum()
        loss.backward()
        optimizer.step()
        if t > run.burn_in:
            kept.append(theta.detach().clone())
    return torch.stack(kept)


class Mixture1D:
    """A 1D Gaussian mixture with exact log-density, CDF and bin masses.

    p(theta) = sum_k w_k N(theta; mu_k, s_k^2) on the real line, with exact log-density, CDF and bin
    masses.
    """

    def __init__(self, weights: list[float], means: list[float], stds: list[float]):
        if not len(weights) == len(means) == len(stds) or min(stds) <= 0 or min(weights) <= 0:
            raise ValueError(
                "weights, means and stds must have equal lengths, with positive weights and stds"
            )
        w = torch.tensor(weights, dtype=torch.float64)
        self.weights, self.means = w / w.sum(), torch.tensor(means, dtype=torch.float64)
        self.stds = torch.tensor(stds, dtype=torch.float64)

    def log_prob(self, theta: Tensor) -> Tensor:
        """log sum_k w_k N(theta; mu_k, s_k^2), elementwise, in theta's dtype."""
        w, mu, s = (v.to(theta) for v in (self.weights, self.means, self.stds))
        z = (theta[..., None] - mu) / s
        return torch.logsumexp(w.log() - 0.5 * z**2 - s.log() - 0.5 * math.log(2 * math.pi), dim=-1)

    def potential(self, theta: Tensor) -> Tensor:
        """U(theta) = -log p(theta) for chains (chains, 1): shape (chains,)."""
        return -self.log_prob(theta[:, 0])

    def cdf(self, theta: Tensor) -> Tensor:
        """P(Theta <= theta) = sum_k w_k Phi((theta - mu_k) / s_k)."""
        w, mu, s = (v.to(theta) for v in (self.weights, self.means, self.stds))
        return (w * 0.5 * torch.erfc(-(theta[..., None] - mu) / (s * math.sqrt(2)))).sum(-1)

    def total_variation(self, samples: Tensor, edges: Tensor) -> float:
        """Total variation between the histogram of `samples` and the exact bin masses.

        (1/2) sum_b |P_hat_b - P_b| between the histogram of `samples` and the exact masses of the
        bins `edges` (the mass outside [edges[0], edges[-1]] counts as one more bin).
        """
        x = samples.detach().reshape(-1).to(torch.float64).cpu()
        edges = edges.to(torch.float64).cpu()
        inside = (x >= edges[0]) & (x <= edges[-1])
        counts = torch.cat(
            [torch.histogram(x[inside], edges).hist, (~inside).sum().reshape(1).to(torch.float64)]
        )
        frequencies = counts / len(x)
        masses = self.cdf(edges).diff()
        masses = torch.cat([masses, (1 - masses.sum()).reshape(1)])
        return 0.5 * (frequencies - masses).abs().sum().item()


def rescaled_gaussian_potential(a: float) -> Callable[[Tensor], Tensor]:
    """U(theta) = theta_1^2 / (2a) + theta_2^2 / 2.

    The target N(0, diag(a, 1)) of Li et al. (AAAI 2016).
    """
    if a <= 0:
        raise ValueError(f"a must be > 0, got {a}")
    return lambda theta: 0.5 * theta[:, 0] ** 2 / a + 0.5 * theta[:, 1] ** 2


def covariance_error(samples: Tensor, a: float) -> float:
    """The scale-free covariance error ||Sigma^(-1/2) Sigma_hat Sigma^(-1/2) - I||_F.

    Sigma = diag(a, 1) and Sigma_hat = mean of theta theta^T (known mean 0) over all iterates and
    chains of `samples` (steps, chains, 2); inf if a chain diverged. 0.1 means variances about 10 %
    off.
    """
    x = samples.reshape(-1, 2).to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        return math.inf
    u = x / torch.tensor(
        [math.sqrt(a), 1.0], dtype=torch.float64
    )  # whitened: u ~ N(0, I) under the target
    return (u.T @ u / len(u) - torch.eye(2, dtype=torch.float64)).norm().item()


def rescaled_gaussian_chains(
    sampler: str,
    a: float,
    lr: float,
    *,
    steps: int = 2000,
    chains: int = 100,
    seed: int = 0,
    **options,
) -> Tensor | None:
    """`chains` chains of `sampler` on N(0, diag(a, 1)) started at (1, 1), step size lr, seeded.

    The iterates after a burn-in of steps / 2, (steps - steps // 2, chains, 2), or None if they
    diverged (a non-finite gradient).
    """
    theta0 = torch.ones(chains, 2, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    try:
        run = ChainRun(steps, lr, burn_in=steps // 2)
        return run_chains(
            sampler, rescaled_gaussian_potential(a), theta0, run, generator, **options
        )
    except (
        FloatingPointError
    ):  # the sampler refuses a non-finite gradient: the chains have diverged
        return None


def rescaled_gaussian_error(sampler: str, a: float, lr: float, **kwargs) -> float:
    """covariance_error of `rescaled_gaussian_chains(sampler, a, lr, **kwargs)`.

    Inf if the chains diverged.
    """
    samples = rescaled_gaussian_chains(sampler, a, lr, **kwargs)
    return math.inf if samples is None else covariance_error(samples, a)


def moons_classification(
    n: int, std: float = 0.25, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """n labelled points of the two moons: y = 0 upper moon, 1 lower.

    n points of the two moons of dgm_lib.data.toy2d (noise `std`) with labels y = 0 (upper moon), 1
    (lower): (x (n, 2) float32, y (n,) int64), n // 2 of each class.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    moons = two_moons(std)
    half = len(moons.means) // 2  # two_moons lists the upper arc's components first
    x = [
        GaussianMixture(f"moon {k}", means, std).sample(size, generator, dtype=torch.float32)
        for k, (means, size) in enumerate(
            ((moons.means[:half], n // 2), (moons.means[half:], n - n // 2))
        )
    ]
    return torch.cat(x), torch.cat([torch.zeros(n // 2), torch.ones(n - n // 2)]).long()


def distance_to_boundary(labels: Tensor, points: Tensor) -> Tensor:
    """Distance of every grid point to the decision boundary.

    To the nearest point of the (H, W) grid `points` (H, W, 2) whose predicted label differs from a
    horizontal or vertical neighbour's; shape (H * W,).
    """
    if labels.shape != points.shape[:2]:
        raise ValueError(
            f"labels {tuple(labels.shape)} and points {tuple(points.shape)} must share the grid "
            "shape"
        )
    edge = torch.zeros_like(labels, dtype=torch.bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[1:, :] != labels[:-1, :]
    if not bool(edge.any()):
        raise ValueError(
            "the labels hold a single class: there is no decision boundary on the grid"
        )
    return (
        torch.cdist(
            points.reshape(-1, 2), points[edge], compute_mode="donot_use_mm_for_euclid_dist"
        )
        .min(1)
        .values
    )
