"""Latent priors p(z) of a VAE and the diagonal-Gaussian helpers they share (Lecture 7).

Every prior is an nn.Module with `z_dim`, `log_prob(z) -> (B,)` and `sample(n, generator=None) ->
(n, z_dim)`: the standard normal N(0, I), a learnable mixture of Gaussians, the VampPrior (Tomczak &
Welling, 2018) and a flow-based prior log p(z|lambda) = log N(f(z)) + log|det J_f(z)| on a
dgm_lib.flows Transform f: z -> z*. All densities are computed in log space; log-variances are
soft-clamped so that no variance under- or overflows.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_positive_int, check_tensor, check_vector
from dgm_lib.flows.base import LOG_2PI, Compose, Flow, Transform, soft_clamp

LOG_VAR_BOUND = 14.0  # log-variances live in (-14, 14): sigma in (9e-4, 1.1e3)
PAIRWISE_CHUNK = 2**22  # entries of the (rows, K, d) tensor built at once by log_normal_pairwise


def standard_normal(
    shape: Sequence[int], like: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """eps ~ N(0, I) of `shape` on like's device and dtype.

    eps ~ N(0, I) of `shape`, drawn on the generator's device (like's without one), on like's device
    and dtype.
    """
    device = generator.device if generator is not None else like.device
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(
        like.device
    )


def check_gaussian(mu: Tensor, log_var: Tensor) -> None:
    """TypeError/ValueError unless (mu, log_var) are a batch of diagonal Gaussians.

    TypeError/ValueError unless mu and log_var are floating-point (B, d) tensors of the same shape,
    no NaN.
    """
    check_tensor(mu, "mu")
    check_tensor(log_var, "log_var")
    if mu.dim() != 2 or mu.shape != log_var.shape:
        shapes = f"{tuple(mu.shape)} and {tuple(log_var.shape)}"
        raise ValueError(f"mu and log_var must both have shape (B, d), got {shapes}")


def gaussian_kl(mu: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_j (sigma_j^2 + mu_j^2 - 1 - log sigma_j^2).

    Example:
        >>> gaussian_kl(torch.zeros(1, 2), torch.zeros(1, 2))
        tensor([0.])
    """
    check_gaussian(mu, log_var)
    return 0.5 * (log_var.exp() + mu.square() - 1.0 - log_var).sum(-1)


def log_normal_diag(z: Tensor, mu: Tensor, log_var: Tensor) -> Tensor:
    """log N(z; mu, diag exp(log_var)), summed over the last dimension (leading ones broadcast).

    log N = -1/2 sum_j [(z_j - mu_j)^2 / sigma_j^2 + log sigma_j^2 + log 2 pi].
    """
    return -0.5 * ((z - mu).square() * torch.exp(-log_var) + log_var + LOG_2PI).sum(-1)


def log_normal_pairwise(z: Tensor, mu: Tensor, log_var: Tensor) -> Tensor:
    """log N(z_m; mu_k, diag exp(log_var_k)) for every pair.

    z (M, d), mu and log_var (K, d) -> (M, K), in chunks of rows.
    """
    rows = max(1, PAIRWISE_CHUNK // max(1, mu.numel()))
    return torch.cat([log_normal_diag(c[:, None, :], mu, log_var) for c in z.split(rows)], 0)


def _check_z(z: Tensor, z_dim: int) -> None:
    check_vector(z, "z", z_dim)


class StandardNormalPrior(nn.Module):
    """p(z) = N(z; 0, I) in z_dim dimensions: log p(z) = -|z|^2 / 2 - (d/2) log 2 pi."""

    def __init__(self, z_dim: int):
        super().__init__()
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.register_buffer("_anchor", torch.zeros(()))  # carries device and dtype for sampling

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}"

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; 0, I), shape (B,)."""
        _check_z(z, self.z_dim)
        return -0.5 * z.square().sum(-1) - 0.5 * self.z_dim * LOG_2PI

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws z ~ N(0, I), shape (n, z_dim)."""
        check_positive_int(n, "n")
        return standard_normal((n, self.z_dim), self._anchor, generator)


class MoGPrior(nn.Module):
    """Learnable mixture of Gaussians p(z|lambda) = sum_k pi_k N(z; mu_k, diag (T sigma_k)^2).

    lambda = (mixture logits, means, log-stds); pi = softmax(logits). The temperature T (a float,
    not learned, may be changed after training) scales every component's std, like the sampling
    temperature of Glow: T < 1 sharpens the components, T > 1 blurs them; T = 1 is the trained
    prior.
    """

    def __init__(
        self,
        z_dim: int,
        n_components: int = 10,
        temperature: float = 1.0,
        *,
        init_scale: float = 1.0,
    ):
        super().__init__()
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.n_components = check_positive_int(n_components, "n_components")
        if not (isinstance(init_scale, (int, float)) and 0 < init_scale < math.inf):
            raise ValueError(f"init_scale must be a positive finite number, got {init_scale!r}")
        self.temperature = temperature
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.means = nn.Parameter(init_scale * torch.randn(n_components, z_dim))
        self.raw_log_std = nn.Parameter(torch.zeros(n_components, z_dim))

    @property
    def temperature(self) -> float:
        """The std multiplier T > 0."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < math.inf
        ):
            raise ValueError(f"temperature must be a positive finite number, got {value!r}")
        self._temperature = float(value)

    def extra_repr(self) -> str:
        k, t = self.n_components, self.temperature
        return f"z_dim={self.z_dim}, n_components={k}, temperature={t:g}"

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log pi, means, log-variances) of the mixture at the current temperature.

        (log pi (K,), means (K, d), log-variances (K, d)) of the mixture at the current temperature.
        """
        log_var = 2.0 * (
            soft_clamp(self.raw_log_std, LOG_VAR_BOUND / 2) + math.log(self.temperature)
        )
        return torch.log_softmax(self.logits, 0), self.means, log_var

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z|lambda) = logsumexp_k [log pi_k + log N(z; mu_k, diag sigma_k^2)], shape (B,)."""
        _check_z(z, self.z_dim)
        log_pi, means, log_var = self.components()
        return torch.logsumexp(log_pi + log_normal_pairwise(z, means, log_var), 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws: k ~ Categorical(pi), z = mu_k + sigma_k eps, shape (n, z_dim)."""
        check_positive_int(n, "n")
        log_pi, means, log_var = self.components()
        return _sample_mixture(n, log_pi, means, log_var, generator)


def _sample_mixture(
    n: int, log_pi: Tensor, means: Tensor, log_var: Tensor, generator: torch.Generator | None
) -> Tensor:
    """n draws from sum_k pi_k N(means_k, diag exp(log_var_k)).

    Component k ~ pi, then z = mu_k + sigma_k eps.
    """
    device = generator.device if generator is not None else means.device
    k = torch.multinomial(log_pi.exp().to(device), n, replacement=True, generator=generator).to(
        means.device
    )
    eps = standard_normal((n, means.shape[1]), means, generator)
    return means[k] + torch.exp(0.5 * log_var[k]) * eps


class VampPrior(nn.Module):
    """VampPrior p(z|lambda) = 1/K sum_k q(z | u_k, phi).

    The encoder's posterior averaged over K learnable pseudo-inputs u_k (lambda = u_{1..K}), an
    approximation of the optimal prior q_agg.

    `encoder` is shared with the VAE (so phi is trained by both terms); `init` (K, *x_shape) sets
    the pseudo-inputs (e.g. K training images, as in the paper), else they start uniform in [0, 1].
    Tomczak & Welling, VAE with a VampPrior, AISTATS 2018.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_pseudo: int = 100,
        x_shape: Sequence[int] | None = None,
        *,
        init: Tensor | None = None,
    ):
        super().__init__()
        if (
            not isinstance(encoder, nn.Module)
            or not hasattr(encoder, "z_dim")
            or not hasattr(encoder, "x_dim")
        ):
            raise TypeError(
                "encoder must be an encoder module with z_dim and x_dim, got "
                f"{type(encoder).__name__}"
            )
        self.encoder, self.z_dim = encoder, encoder.z_dim
        self.n_pseudo = check_positive_int(n_pseudo, "n_pseudo")
        x_shape = (
            tuple(x_shape)
            if x_shape is not None
            else tuple(getattr(encoder, "x_shape", (encoder.x_dim,)))
        )
        if math.prod(x_shape) != encoder.x_dim:
            raise ValueError(
                f"x_shape {x_shape} has {math.prod(x_shape)} entries, the encoder takes "
                f"{encoder.x_dim}"
            )
        self.x_shape = x_shape
        if init is None:
            init = torch.rand(n_pseudo, *x_shape)
        elif not isinstance(init, Tensor) or init.shape != (n_pseudo, *x_shape):
            got = tuple(init.shape) if isinstance(init, Tensor) else type(init).__name__
            raise ValueError(f"init must be a tensor of shape {(n_pseudo, *x_shape)}, got {got}")
        self.pseudo_inputs = nn.Parameter(init.detach().clone().to(torch.get_default_dtype()))

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, n_pseudo={self.n_pseudo}, x_shape={self.x_shape}"

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z|lambda) = logsumexp_k log q(z | u_k, phi) - log K, shape (B,)."""
        _check_z(z, self.z_dim)
        mu, log_var = self.encoder(self.pseudo_inputs)
        return torch.logsumexp(log_normal_pairwise(z, mu, log_var), 1) - math.log(self.n_pseudo)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws: k uniform on 1..K, z ~ q(z | u_k, phi), shape (n, z_dim)."""
        check_positive_int(n, "n")
        mu, log_var = self.encoder(self.pseudo_inputs)
        log_pi = torch.full(
            (self.n_pseudo,), -math.log(self.n_pseudo), dtype=mu.dtype, device=mu.device
        )
        return _sample_mixture(n, log_pi, mu, log_var, generator)


class FlowPrior(nn.Module):
    """Flow-based prior.

    log p(z|lambda) = log N(f(z, lambda); 0, I) + log|det J_f(z)|, z* = f(z) ~ N(0, I).

    `transform` is a dgm_lib.flows Transform whose forward f normalizes z -> z* (a Flow is accepted
    too: its transform is used); sampling runs the inverse g: z = g(z*). MAF and RealNVP evaluate f
    in one pass, which training needs; an IAF would need z_dim sequential passes for every log_prob
    (Lecture 7).
    """

    def __init__(self, transform: Transform | Flow, z_dim: int):
        super().__init__()
        if isinstance(transform, Flow):
            transform = transform.transform
        if not isinstance(transform, Transform):
            raise TypeError(
                "transform must be a dgm_lib.flows Transform (or Flow), got "
                f"{type(transform).__name__}"
            )
        self.transform = transform
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.register_buffer("_anchor", torch.zeros(()))

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}"

    @property
    def depth(self) -> int:
        """The number of layers of the transform (1 unless it is a Compose)."""
        return len(self.transform) if isinstance(self.transform, Compose) else 1

    def truncated(self, depth: int) -> FlowPrior:
        """The flow prior on the first `depth` layers of this one's transform.

        The flow prior on the first `depth` layers of this one's transform (sharing their weights).

        log p(z) = log N(f_depth o ... o f_1(z); 0, I) + sum of their log-dets.
        """
        if not 1 <= check_positive_int(depth, "depth") <= self.depth:
            raise ValueError(f"depth must be in 1..{self.depth}, got {depth}")
        if not isinstance(self.transform, Compose):
            return self
        return FlowPrior(Compose(*[self.transform[j] for j in range(depth)]), self.z_dim)

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(f(z); 0, I) + log|det J_f(z)|, shape (B,)."""
        _check_z(z, self.z_dim)
        z_star, log_det = self.transform(z)
        return -0.5 * z_star.square().sum(-1) - 0.5 * self.z_dim * LOG_2PI + log_det

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws z = g(z*), z* ~ N(0, I), shape (n, z_dim)."""
        check_positive_int(n, "n")
        return self.transform.inverse(standard_normal((n, self.z_dim), self._anchor, generator))[0]
