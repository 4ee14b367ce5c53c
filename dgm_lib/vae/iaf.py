"""The IAF posterior conditioned on the encoder's context h(x) (Lecture 7, VAE posterior).

Kingma et al. (2016), Algorithm 1: the encoder emits [mu, sigma, h] = EncoderNN(x); z_0 = mu + sigma
eps, eps ~ N(0, I), l = -sum(log sigma + eps^2 / 2 + log(2 pi) / 2); then every step t computes
[m, s] = AutoregressiveNN_t(z, h), sigma_t = sigmoid(s), z <- sigma_t * z + (1 - sigma_t) * m and
l <- l - sum log sigma_t, reversing the order of the variables between steps; finally log q(z_T|x) =
l. Because m and s depend on h(x), the flow differs from one data point to the next: unlike an
unconditional posterior flow (IAFPosterior) it is not a flow prior in disguise. Kingma, Salimans,
Jozefowicz, Chen, Sutskever, Welling, Improved Variational Inference with Inverse Autoregressive
Flow, NeurIPS 2016.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_lib.checks import check_dtype_matches, check_positive_int, check_vector
from dgm_lib.flows.autoregressive import MADE
from dgm_lib.flows.base import as_index

GATE_BIAS = 1.0  # initial s: sigma_t = sigmoid(1) = 0.73, the paper's "sufficiently positive" s


class ContextIAF(nn.Module):
    """One IAF step with context: z* = sigma * z + (1 - sigma) * m, [m, s] = MADE(z, h).

    sigma = sigmoid(s); m_j and s_j depend on z_i with order[i] < order[j] and on all of h, so the
    Jacobian dz*/dz is triangular in the order with diagonal sigma and log|det J_g(z)| = sum_j log
    sigma_j. The context enters unmasked, added to the MADE's first hidden layer and to its output
    (the first variable in the order sees no hidden unit, only h).

    Args:
        z_dim: the latent dimension m.
        context_dim: the size of h(x).
        hidden: the MADE's hidden sizes.
        order: order[j] is the rank of z_j (default 0..m-1).
    """

    def __init__(
        self,
        z_dim: int,
        context_dim: int,
        hidden: Sequence[int] = (64, 64),
        order: Sequence[int] | Tensor | None = None,
    ):
        super().__init__()
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.context_dim = check_positive_int(context_dim, "context_dim")
        order = torch.arange(z_dim) if order is None else as_index(order, "order", z_dim)
        self.made = MADE(z_dim, hidden, 2, order)
        first = self.made.net[0]
        self.context = nn.Linear(context_dim, first.out_features, bias=False)
        self.context_out = nn.Linear(context_dim, 2 * z_dim, bias=False)
        with torch.no_grad():
            self.made.net[-1].bias.view(z_dim, 2)[:, 1] += GATE_BIAS

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, context_dim={self.context_dim}"

    def _check(self, z: Tensor, h: Tensor, name: str) -> None:
        check_dtype_matches(z, self, name)
        check_vector(z, name, self.z_dim)
        check_vector(h, "h", self.context_dim)
        if h.shape[0] != z.shape[0]:
            raise ValueError(
                f"h must have one row per row of {name}: {name} has {z.shape[0]}, h has "
                f"{h.shape[0]}"
            )

    def params(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(m, log sigma), each (B, z_dim): [m, s] = MADE(z, h), log sigma = log sigmoid(s)."""
        net = self.made.net
        hidden = net[1](net[0](z) + self.context(h))
        out = net[2:](hidden) + self.context_out(h)
        m, s = out.unflatten(1, (self.z_dim, 2)).unbind(-1)
        return m, F.logsigmoid(s)

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """z* = sigma * z + (1 - sigma) * m in one pass, and log|det J_g(z)| = sum log sigma.

        Args:
            z: latents (B, z_dim).
            h: the encoder's context h(x) of each row (B, context_dim).

        Returns:
            z* (B, z_dim) and log|det dz*/dz| (B,).
        """
        self._check(z, h, "z")
        m, log_sigma = self.params(z, h)
        sigma = log_sigma.exp()
        return sigma * z + (1 - sigma) * m, log_sigma.sum(1)

    def inverse(self, z_star: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """z = (z* - (1 - sigma) * m) / sigma in z_dim sequential passes; log|det dz/dz*|.

        Pass k fixes the variable of rank k (its m, sigma depend only on lower ranks and on h).

        Args:
            z_star: transformed latents (B, z_dim).
            h: the context of each row (B, context_dim).

        Returns:
            z (B, z_dim) and log|det dz/dz*| = -sum log sigma (B,).
        """
        self._check(z_star, h, "z_star")
        z = torch.zeros_like(z_star)
        for _ in range(self.z_dim):
            m, log_sigma = self.params(z, h)
            z = (z_star - (1 - log_sigma.exp()) * m) * torch.exp(-log_sigma)
        return z, -log_sigma.sum(1)


class ContextIAFPosterior(nn.Module):
    """The posterior flow z_T = g(z_0, h(x)): `depth` ContextIAF steps, orders reversed in turn.

    log q(z_T|x) = log N(z_0; mu, sigma^2) - sum_t sum_j log sigma_t,j (Kingma et al., 2016,
    Algorithm 1). `forward(z, h)` is one parallel pass per step, the direction training needs;
    `inverse(z*, h)` (density at any point, e.g. on a grid) needs z_dim passes per step.

    Example:
        >>> flow = ContextIAFPosterior(2, context_dim=3, depth=2, hidden=(8,))
        >>> z_star, log_det = flow(torch.zeros(4, 2), torch.randn(4, 3))
        >>> z_star.shape, log_det.shape
        (torch.Size([4, 2]), torch.Size([4]))
    """

    def __init__(
        self, z_dim: int, context_dim: int, depth: int = 2, hidden: Sequence[int] = (64, 64)
    ):
        super().__init__()
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.context_dim = check_positive_int(context_dim, "context_dim")
        check_positive_int(depth, "depth")
        orders = (torch.arange(z_dim), torch.arange(z_dim).flip(0))
        self.steps = nn.ModuleList(
            ContextIAF(z_dim, context_dim, hidden, orders[t % 2]) for t in range(depth)
        )

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """z_T = g(z_0, h) and log|det J_g(z_0)| = sum_t sum_j log sigma_t,j, shape (B,).

        Args:
            z: base draws z_0 ~ q(z|x) (B, z_dim).
            h: the encoder's context h(x) (B, context_dim).

        Returns:
            z_T (B, z_dim) and the log-determinant (B,).
        """
        total = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for step in self.steps:
            z, log_det = step(z, h)
            total = total + log_det
        return z, total

    def inverse(self, z_star: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """z_0 = g^{-1}(z_T, h) and log|det dz_0/dz_T| = -log|det J_g(z_0)|, shape (B,).

        Args:
            z_star: points z_T (B, z_dim).
            h: the context of each row (B, context_dim).

        Returns:
            z_0 (B, z_dim) and the log-determinant (B,).
        """
        total = torch.zeros(z_star.shape[0], dtype=z_star.dtype, device=z_star.device)
        for step in reversed(self.steps):
            z_star, log_det = step.inverse(z_star, h)
            total = total + log_det
        return z_star, total
