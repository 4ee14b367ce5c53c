"""MADE, and the Gaussian autoregressive flows MAF and IAF (Lecture 2).

Gaussian autoregressive flow: x_j = sigma_j(x_{1:j-1}) z_j + mu_j(x_{1:j-1}) (g, sequential) and z_j
= (x_j - mu_j(x_{1:j-1})) / sigma_j(x_{1:j-1}) (f, one parallel pass): MAF. IAF conditions on z
instead, x_j = sigma_j(z_{1:j-1}) z_j + mu_j(z_{1:j-1}): g is one pass, f needs m sequential passes.
The Jacobian is triangular in the autoregressive order, log|det J_f| = -sum_j log sigma_j.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_lib.checks import check_bound, check_positive_int, check_sizes, check_vector
from dgm_lib.flows.base import Transform, as_index, soft_clamp


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask M: y = (W * M) x + b."""

    def __init__(self, mask: Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder: an MLP whose output j depends only on x_i with order[i] < order[j].

    Degrees: input i gets d_i = order[i] + 1, hidden units cycle through 1..m-1; a hidden unit of
    degree d' sees inputs with d_i <= d', an output of variable j sees hidden units with d' < d_j.
    Returns (B, m, out_per_dim). `order[j]` is the rank of x_j (default 0..m-1). Germain, Gregor,
    Murray, Larochelle, MADE: Masked Autoencoder for Distribution Estimation, ICML 2015.
    """

    def __init__(
        self,
        m: int,
        hidden: Sequence[int] = (64, 64),
        out_per_dim: int = 2,
        order: Sequence[int] | Tensor | None = None,
        *,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.m = check_positive_int(m, "m")
        self.out_per_dim = check_positive_int(out_per_dim, "out_per_dim")
        hidden = check_sizes(hidden, "hidden")
        order = torch.arange(m) if order is None else as_index(order, "order", m)
        self.register_buffer("order", order)
        degrees = [order + 1] + [torch.arange(h) % max(m - 1, 1) + 1 for h in hidden]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(degrees[:-1], degrees[1:]):
            layers += [MaskedLinear((d_out[:, None] >= d_in[None, :]).float()), activation()]
        out_degrees = (order + 1).repeat_interleave(out_per_dim)
        layers.append(MaskedLinear((out_degrees[:, None] > degrees[-1][None, :]).float()))
        self.net = nn.Sequential(*layers)

    def extra_repr(self) -> str:
        return f"m={self.m}, out_per_dim={self.out_per_dim}, order={self.order.tolist()}"

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (B, m, out_per_dim); [:, j] depends only on the x_i with order[i] < order[j]."""
        check_vector(x, "x", self.m)
        return self.net(x).unflatten(1, (self.m, self.out_per_dim))


class _GaussianAutoregressive(Transform):
    """Shared parts of MAF and IAF.

    a MADE giving (mu_j, log sigma_j) with log sigma soft-clamped to (-bound, bound).
    """

    def __init__(
        self,
        m: int,
        hidden: Sequence[int] = (64, 64),
        order: Sequence[int] | Tensor | None = None,
        *,
        bound: float = 5.0,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.m, self.bound = check_positive_int(m, "m"), check_bound(bound)
        self.made = MADE(m, hidden, 2, order, activation=activation)

    def extra_repr(self) -> str:
        return f"m={self.m}, bound={self.bound}"

    def _check(self, x: Tensor, name: str) -> None:
        check_vector(x, name, self.m)

    def _params(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(mu(h_<j), log sigma(h_<j)) for every j, one MADE pass."""
        mu, raw = self.made.net(h).unflatten(1, (self.m, 2)).unbind(-1)
        return mu, soft_clamp(raw, self.bound)

    def _normalize_parallel(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """z_j = (x_j - mu_j(x_<j)) / sigma_j(x_<j) in one pass; log|det| = -sum log sigma."""
        mu, log_sigma = self._params(x)
        return (x - mu) * torch.exp(-log_sigma), -log_sigma.sum(1)

    def _generate_sequential(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """x_j = sigma_j(x_<j) z_j + mu_j(x_<j): m passes, pass k fixes the variable of rank k."""
        x = torch.zeros_like(z)
        for _ in range(self.m):
            mu, log_sigma = self._params(x)
            x = z * torch.exp(log_sigma) + mu
        return x, log_sigma.sum(1)

    def _generate_parallel(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """x_j = sigma_j(z_<j) z_j + mu_j(z_<j) in one pass; log|det| = sum log sigma."""
        mu, log_sigma = self._params(z)
        return z * torch.exp(log_sigma) + mu, log_sigma.sum(1)

    def _normalize_sequential(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """z_j = (x_j - mu_j(z_<j)) / sigma_j(z_<j): m passes, pass k fixes the rank-k variable."""
        z = torch.zeros_like(x)
        for _ in range(self.m):
            mu, log_sigma = self._params(z)
            z = (x - mu) * torch.exp(-log_sigma)
        return z, -log_sigma.sum(1)


class MAF(_GaussianAutoregressive):
    """Masked autoregressive flow: f in one pass, g in m sequential passes.

    f: z_j = (x_j - mu_j(x_<j)) / sigma_j(x_<j).

    log|det J_f(x)| = -sum_j log sigma_j(x_<j). `order[j]` is the rank of x_j in the autoregressive
    order. Papamakarios, Pavlakou, Murray, Masked Autoregressive Flow for Density Estimation,
    NeurIPS 2017.
    """

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._normalize_parallel(x)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._generate_sequential(z)


class IAF(_GaussianAutoregressive):
    """Inverse autoregressive flow: g in one pass, f in m sequential passes.

    g: x_j = sigma_j(z_<j) z_j + mu_j(z_<j).

    log|det J_g(z)| = sum_j log sigma_j(z_<j). `order[j]` is the rank of z_j in the autoregressive
    order. Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling, Improved Variational Inference
    with Inverse Autoregressive Flow, NeurIPS 2016.
    """

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._normalize_sequential(x)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._generate_parallel(z)
