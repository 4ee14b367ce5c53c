"""Elementwise flows (diagonal Jacobian, log|det| = sum_j log|f_j'(x_j)|) and the planar flow
(Lecture 2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_lib.checks import check_features, check_positive_int
from dgm_lib.flows.base import Inverse, Transform, sum_except_batch

# Bisection halves the bracket [y - |c|, y + |c|]: 2^-64 reaches float64 resolution for any |c| <
# 2^10.
_BISECTIONS = 64


def _per_feature(param: Tensor, x: Tensor) -> Tensor:
    """Shape a (num_features,) parameter to broadcast along dim 1 of x.

    (m,) for (B, m), (C, 1, 1) for (B, C, H, W).
    """
    return param.reshape(-1, *([1] * (x.dim() - 2)))


class ElementwiseAffine(Transform):
    """Elementwise affine flow: z = (x - mu) * exp(-log sigma).

    Log|det J_f| = -(H W) sum_j log sigma_j.

    Parameters mu and log sigma have one entry per feature (x of shape (B, m)) or channel ((B, C, H,
    W)). Dinh, Krueger, Bengio, NICE: Non-linear Independent Components Estimation, ICLR 2015 (the
    scaling layer).
    """

    def __init__(self, m: int):
        super().__init__()
        self.m = check_positive_int(m, "m")
        self.mu = nn.Parameter(torch.zeros(m))
        self.log_sigma = nn.Parameter(torch.zeros(m))

    def extra_repr(self) -> str:
        return f"m={self.m}"

    def _check(self, x: Tensor, name: str) -> None:
        check_features(x, name, self.m)

    def _log_det(self, x: Tensor) -> Tensor:
        """-(number of positions per feature) * sum_j log sigma_j, expanded to (B,)."""
        return (-self.log_sigma.sum() * (x[0, 0].numel())).expand(x.shape[0])

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_sigma = _per_feature(self.mu, x), _per_feature(self.log_sigma, x)
        return (x - mu) * torch.exp(-log_sigma), self._log_det(x)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_sigma = _per_feature(self.mu, z), _per_feature(self.log_sigma, z)
        return z * torch.exp(log_sigma) + mu, -self._log_det(z)


class ActNorm(ElementwiseAffine):
    """Activation normalization.

    An ElementwiseAffine whose first forward sets mu, sigma to the batch mean and std.

    After that first batch, z has zero mean and unit variance per feature/channel; then mu, log
    sigma train freely. The `initialized` buffer is saved with the weights. Kingma & Dhariwal, Glow,
    NeurIPS 2018.
    """

    def __init__(self, num_features: int, eps: float = 1e-6):
        super().__init__(num_features)
        self.eps = float(eps)
        self.register_buffer("initialized", torch.tensor(False))

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.initialized:
            self._initialize(x)
        return super()._forward(x)

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        """mu = batch mean, log sigma = log(batch std + eps), per feature/channel."""
        values = x.transpose(0, 1).reshape(self.m, -1)
        if values.shape[1] < 2:
            raise ValueError(
                "ActNorm's data-dependent init needs at least 2 values per feature, got x of "
                f"shape {tuple(x.shape)}"
            )
        self.mu.copy_(values.mean(1))
        self.log_sigma.copy_(torch.log(values.std(1, unbiased=False) + self.eps))
        self.initialized.fill_(True)


class Planar(Transform):
    """Planar flow, generative direction g(z) = z + u_hat h(w^T z + b), h = tanh.

    f = g^{-1} by a 1D root solve.

    Invertibility: u_hat = u + (m(w^T u) - w^T u) w / |w|^2, m(a) = -1 + softplus(a), so w^T u_hat >
    -1 and log|det J_g(z)| = log(1 + w^T u_hat h'(w^T z + b)) is finite. Inverting: a = w^T z + b
    solves the monotone equation a + (w^T u_hat) tanh(a) = w^T x + b (bisection, then one Newton
    step carrying the gradient), and z = x - u_hat tanh(a). Rezende & Mohamed, Variational Inference
    with Normalizing Flows, ICML 2015.
    """

    def __init__(self, m: int):
        super().__init__()
        self.m = check_positive_int(m, "m")
        self.u = nn.Parameter(torch.randn(m) / math.sqrt(m))
        self.w = nn.Parameter(torch.randn(m) / math.sqrt(m))
        self.b = nn.Parameter(torch.zeros(()))

    def extra_repr(self) -> str:
        return f"m={self.m}"

    def _check(self, x: Tensor, name: str) -> None:
        check_features(x, name, self.m)
        if x.dim() != 2:
            raise ValueError(f"{name} must have shape (batch, {self.m}), got {tuple(x.shape)}")

    def u_hat(self) -> tuple[Tensor, Tensor]:
        """(u_hat, 1 + w^T u_hat): the invertible planar flow's parameters.

        (u_hat, 1 + w^T u_hat) with u_hat = u + (m(w^T u) - w^T u) w / |w|^2, so 1 + w^T u_hat =
        softplus(w^T u) > 0.

        ValueError when w = 0 (u_hat undefined) or softplus(w^T u) underflows to 0 (w^T u_hat = -1
        exactly).
        """
        w_sq = self.w.square().sum()
        if not w_sq > 0:
            raise ValueError(
                "Planar is not invertible with w = 0 (u_hat is undefined); allowed: w != 0"
            )
        wu = self.w @ self.u
        slack = F.softplus(wu)  # = 1 + w^T u_hat, computed without cancellation
        if not slack > 0:
            raise ValueError(
                f"Planar is not invertible: w^T u = {wu.item():.4g} makes w^T u_hat = -1 in "
                f"{wu.dtype}; "
                "allowed: softplus(w^T u) > 0"
            )
        return self.u + (slack - 1 - wu) * self.w / w_sq, slack

    @staticmethod
    def _jacobian_factor(h: Tensor, slack: Tensor) -> Tensor:
        """1 + w^T u_hat h'(a) = h^2 + (1 + w^T u_hat)(1 - h^2) with h = tanh(a).

        Positive, no cancellation.
        """
        h_sq = h.square()
        return h_sq + slack * (1 - h_sq)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u_hat, slack = self.u_hat()
        h = torch.tanh(z @ self.w + self.b)
        return z + h[:, None] * u_hat, torch.log(self._jacobian_factor(h, slack))

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u_hat, slack = self.u_hat()
        c = slack - 1  # w^T u_hat
        y = x @ self.w + self.b
        with (
            torch.no_grad()
        ):  # a + c tanh(a) = y is increasing in a, with the root in [y - |c|, y + |c|]
            lo, hi = y - c.abs(), y + c.abs()
            for _ in range(_BISECTIONS):
                mid = (lo + hi) / 2
                below = mid + c * torch.tanh(mid) < y
                lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
            a0 = (lo + hi) / 2
        # one Newton step from the root: the same value, and the implicit-function gradient
        # da = (dy - tanh(a) dc) / (1 + c h'(a))
        h0 = torch.tanh(a0)
        a = a0 - (a0 + c * h0 - y) / self._jacobian_factor(h0, slack)
        h = torch.tanh(a)
        return x - h[:, None] * u_hat, -torch.log(self._jacobian_factor(h, slack))


class Logit(Transform):
    """Logit flow on (0, 1): s = alpha + (1 - 2 alpha) x, z = log s - log(1 - s).

    log|det J_f(x)| = sum_j [log(1 - 2 alpha) - log s_j - log(1 - s_j)]; the inverse is the sigmoid
    with log|det J_g(z)| = sum_j [log sigmoid(z_j) + log sigmoid(-z_j) - log(1 - 2 alpha)] (computed
    stably). With alpha > 0 the endpoints 0 and 1 map to finite values (RealNVP's preprocessing of
    images). Dinh, Sohl-Dickstein, Bengio, Density estimation using Real NVP, ICLR 2017.
    """

    def __init__(self, alpha: float = 0.0):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        outside = (x <= 0) | (x >= 1) if self.alpha == 0 else (x < 0) | (x > 1)
        if outside.any():
            allowed = "(0, 1)" if self.alpha == 0 else "[0, 1]"
            raise ValueError(
                f"x must lie in {allowed} for Logit(alpha={self.alpha}), got values in "
                f"[{x.min().item():.4g}, {x.max().item():.4g}]"
            )
        s = self.alpha + (1 - 2 * self.alpha) * x
        log_s, log_1ms = torch.log(s), torch.log1p(-s)
        return log_s - log_1ms, sum_except_batch(math.log1p(-2 * self.alpha) - log_s - log_1ms)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)
        return x, sum_except_batch(F.logsigmoid(z) + F.logsigmoid(-z) - math.log1p(-2 * self.alpha))


class Sigmoid(Inverse):
    """Sigmoid flow R -> (0, 1).

    z = 1 / (1 + exp(-x)), log|det J_f(x)| = sum_j [log sigmoid(x_j) + log sigmoid(-x_j)].

    The inverse of Logit(alpha=0).
    """

    def __init__(self):
        super().__init__(Logit(0.0))
