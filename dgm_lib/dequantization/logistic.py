"""Discretizing a continuous model through its CDF: logistic and mixtures of logistics (PixelCNN++).

P(y|theta) = F(y + 0.5|theta) - F(y - 0.5|theta) with a (mixture of) logistic CDF F, the edge bins
open (Salimans et al., PixelCNN++, ICLR 2017). Notation: y in {0, ..., K-1} discrete, x continuous.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_lib.checks import (
    check_finite_tensor,
    check_float_tensor,
    check_integer_valued,
    check_positive_int,
)
from dgm_lib.dequantization.discrete import LN2, NUM_BINS, check_discrete

LOG_SCALE_MIN = -7.0  # log s is clamped below at -7 (s >= 9.1e-4), as in PixelCNN++


def _inv_scale(log_s: Tensor) -> Tensor:
    """1 / s with log s clamped below at LOG_SCALE_MIN."""
    return torch.exp(-log_s.clamp(min=LOG_SCALE_MIN))


def _log1mexp(a: Tensor) -> Tensor:
    """log(1 - exp(-a)) for a > 0, stably (Maechler, 2012).

    log(-expm1(-a)) below ln 2, log1p(-exp(-a)) above.
    """
    return torch.where(
        a < LN2,
        torch.log(-torch.expm1(-a.clamp(max=LN2))),
        torch.log1p(-torch.exp(-a.clamp(min=LN2))),
    )


def _check_logistic(x: Tensor, name: str, *params: tuple[Tensor, str]) -> None:
    check_float_tensor(x, name)
    for t, n in params:
        check_finite_tensor(t, n)


def logistic_log_prob(x: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """log p(x|mu, s) of the logistic density, elementwise.

    p(x) = exp(-(x - mu)/s) / (s (1 + exp(-(x - mu)/s))^2), computed as log sigmoid(t) +
    log sigmoid(-t) - log s with t = (x - mu) / s; log s is clamped below at LOG_SCALE_MIN
    (Salimans et al., PixelCNN++, 2017).
    """
    _check_logistic(x, "x", (mu, "mu"), (log_s, "log_s"))
    inv_s = _inv_scale(log_s)
    t = (x - mu) * inv_s
    return F.logsigmoid(t) + F.logsigmoid(-t) + torch.log(inv_s)


def logistic_cdf(x: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """F(x|mu, s) = sigmoid((x - mu) / s), elementwise (log s clamped below at LOG_SCALE_MIN)."""
    _check_logistic(x, "x", (mu, "mu"), (log_s, "log_s"))
    return torch.sigmoid((x - mu) * _inv_scale(log_s))


def _check_mixture(x: Tensor, name: str, logit_pi: Tensor, mu: Tensor, log_s: Tensor) -> None:
    """Float tensors; logit_pi, mu, log_s broadcast with x[..., None] (the component dimension is
    last)."""
    _check_logistic(x, name, (logit_pi, "logit_pi"), (mu, "mu"), (log_s, "log_s"))
    try:
        torch.broadcast_shapes(x.unsqueeze(-1).shape, logit_pi.shape, mu.shape, log_s.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} (...), logit_pi, mu and log_s (..., n_components) must broadcast with the "
            "component dimension "
            f"last, got {name} {tuple(x.shape)}, logit_pi {tuple(logit_pi.shape)}, mu "
            f"{tuple(mu.shape)}, "
            f"log_s {tuple(log_s.shape)}"
        ) from None


def mix_logistic_log_prob(x: Tensor, logit_pi: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """The continuous log-density of a mixture of logistics.

    Continuous mixture log-density log p(x|pi, mu, s) = logsumexp_k [log pi_k + log p(x|mu_k, s_k)].

    x has shape (...); logit_pi, mu, log_s have shape (..., K) (broadcastable), pi =
    softmax(logit_pi).
    """
    _check_mixture(x, "x", logit_pi, mu, log_s)
    log_pi = torch.log_softmax(logit_pi, dim=-1)
    return torch.logsumexp(log_pi + logistic_log_prob(x.unsqueeze(-1), mu, log_s), dim=-1)


def mix_logistic_cdf(x: Tensor, logit_pi: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """Mixture CDF F(x) = sum_k pi_k sigmoid((x - mu_k) / s_k), pi = softmax(logit_pi).

    Shapes as in mix_logistic_*.
    """
    _check_mixture(x, "x", logit_pi, mu, log_s)
    pi = torch.softmax(logit_pi, dim=-1)
    return (pi * logistic_cdf(x.unsqueeze(-1), mu, log_s)).sum(-1)


def _log_interval_mass(
    lo: Tensor,
    hi: Tensor,
    mu: Tensor,
    log_s: Tensor,
    open_lo: Tensor | None = None,
    open_hi: Tensor | None = None,
) -> Tensor:
    """log[F(hi) - F(lo)] of a logistic, exactly and stably, with F(lo) = 0 where open_lo and F(hi)
    = 1 where open_hi.

    With a = (lo - mu)/s, b = (hi - mu)/s, the identity sigmoid(b) - sigmoid(a) = sigmoid(b)
    sigmoid(-a) (1 - exp(a-b)) gives log[F(hi) - F(lo)] = log sigmoid(b) + log sigmoid(-a) + log(1 -
    e^(-(hi - lo)/s)): three terms that are finite with finite gradients for any mu and s (no
    cancellation, no underflow of the difference). An open lower edge (F(lo) = 0) keeps only log
    sigmoid(b), an open upper edge (F(hi) = 1) only log sigmoid(-a).
    """
    inv_s = _inv_scale(log_s)
    a, b = (lo - mu) * inv_s, (hi - mu) * inv_s
    log_upper, log_lower, log_width = (
        F.logsigmoid(b),
        F.logsigmoid(-a),
        _log1mexp((hi - lo) * inv_s),
    )
    if open_lo is None and open_hi is None:
        return log_upper + log_lower + log_width
    zero = torch.zeros((), dtype=log_upper.dtype, device=log_upper.device)
    closed_lo = ~open_lo
    closed_hi = ~open_hi
    return (
        torch.where(closed_hi, log_upper, zero)
        + torch.where(closed_lo, log_lower, zero)
        + torch.where(closed_lo & closed_hi, log_width, zero)
    )


def discretized_logistic_log_prob(
    y: Tensor, mu: Tensor, log_s: Tensor, num_bins: int = NUM_BINS
) -> Tensor:
    """log P(y) = log[F(y + 0.5) - F(y - 0.5)] of a logistic discretized on {0, ..., K-1}.

    The edge bins are open: y = 0 uses F(-inf) = 0 and y = K-1 uses F(+inf) = 1, so
    sum_y P(y) = 1 exactly (PixelCNN++, Salimans et al., 2017). Computed in log space
    (finite values and gradients for any mu and s >= exp(LOG_SCALE_MIN)), so PixelCNN++'s
    midpoint-density fallback for an underflowing CDF difference is unnecessary.

    Args:
        y: integer values in {0, ..., num_bins - 1}.
        mu: the logistic's location (broadcast with y).
        log_s: its log-scale.
        num_bins: K.

    Returns:
        log P(y), the broadcast shape of y, mu and log_s.

    Example:
        >>> y = torch.arange(4.0)
        >>> p = discretized_logistic_log_prob(y, torch.tensor(1.5), torch.tensor(0.0), 4).exp()
        >>> round(p.sum().item(), 6)
        1.0
    """
    check_discrete(y, num_bins)
    _check_logistic(mu, "mu", (log_s, "log_s"))
    y = y.to(mu.dtype)
    return _log_interval_mass(y - 0.5, y + 0.5, mu, log_s, y <= 0, y >= num_bins - 1)


def discretized_mix_logistic_log_prob(
    y: Tensor, logit_pi: Tensor, mu: Tensor, log_s: Tensor, num_bins: int = NUM_BINS
) -> Tensor:
    """log P(y) of a discretized mixture of logistics (PixelCNN++).

    log P(y) = logsumexp_k [log pi_k + log P_k(y)] of a discretized logistic mixture (PixelCNN++),
    shape of y.

    y has shape (...), logit_pi / mu / log_s have shape (..., K) (broadcastable), P_k as
    discretized_logistic_log_prob.
    """
    check_discrete(y, num_bins)
    check_finite_tensor(mu, "mu")
    _check_mixture(y.to(mu.dtype), "y", logit_pi, mu, log_s)
    log_pi = torch.log_softmax(logit_pi, dim=-1)
    return torch.logsumexp(
        log_pi + discretized_logistic_log_prob(y.unsqueeze(-1), mu, log_s, num_bins), dim=-1
    )


class MixtureOfLogistics(nn.Module):
    """p(x|pi, mu, s) = prod_j sum_k pi_jk Logistic(x_j|mu_jk, s_jk).

    a learnable mixture, independent per dimension.

    Parameters logit_pi, mu, log_s have shape (dim, n_components); mu starts at loc + scale * N(0,
    1) draws, s at `scale`. It is a continuous density on R^D, discretizable through its CDF
    (PixelCNN++, Salimans et al., 2017) and with an exact dequantized likelihood log int_{[0,1]^D}
    p(y + u) du (the uniform-dequantization theorem).
    """

    def __init__(self, n_components: int, dim: int = 1, *, loc: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.n_components = check_positive_int(n_components, "n_components")
        self.dim = check_positive_int(dim, "dim")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        if not (isinstance(loc, (int, float)) and math.isfinite(loc)):
            raise ValueError(f"loc must be a finite number, got {loc!r}")
        self.logit_pi = nn.Parameter(torch.zeros(dim, n_components))
        self.mu = nn.Parameter(loc + scale * torch.randn(dim, n_components))
        self.log_s = nn.Parameter(torch.full((dim, n_components), math.log(scale)))

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}, dim={self.dim}"

    def _check_x(self, x: Tensor, name: str) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a tensor of shape (batch, {self.dim}), got {got}")

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x|theta) = sum_j log sum_k pi_jk p(x_j|mu_jk, s_jk), shape (B,)."""
        self._check_x(x, "x")
        return mix_logistic_log_prob(x, self.logit_pi, self.mu, self.log_s).sum(1)

    def cdf(self, x: Tensor) -> Tensor:
        """F_j(x_j) = sum_k pi_jk sigmoid((x_j - mu_jk) / s_jk) per dimension, shape (B, D)."""
        self._check_x(x, "x")
        return mix_logistic_cdf(x, self.logit_pi, self.mu, self.log_s)

    def discrete_log_prob(self, y: Tensor, num_bins: int = NUM_BINS) -> Tensor:
        """log P(y|theta), the model discretized through its CDF, shape (B,).

        log P(y|theta) = sum_j log[F_j(y_j + 0.5) - F_j(y_j - 0.5)], edge bins 0 and K-1 open, shape
        (B,).
        """
        self._check_x(y, "y")
        return discretized_mix_logistic_log_prob(
            y, self.logit_pi, self.mu, self.log_s, num_bins
        ).sum(1)

    def dequantized_log_prob(self, y: Tensor) -> Tensor:
        """log P(y|theta) = log int_{[0,1]^D} p(y + u|theta) du, exact, shape (B,).

        log P(y|theta) = log int_{[0,1]^D} p(y + u|theta) du = sum_j log[F_j(y_j + 1) - F_j(y_j)],
        exact, shape (B,).

        The discrete model behind uniform dequantization: E_u log p(y + u) <= log P(y) (Jensen). Its
        bins [y, y + 1) cover [0, K) only, so over y in {0..K-1} it sums to F(K) - F(0) <= 1 (the
        rest of the mass is outside).
        """
        self._check_x(y, "y")
        check_integer_valued(y, "y")
        y = y.to(self.mu.dtype).unsqueeze(-1)
        log_pi = torch.log_softmax(self.logit_pi, dim=-1)
        log_mass = _log_interval_mass(y, y + 1, self.mu, self.log_s)
        return torch.logsumexp(log_pi + log_mass, dim=-1).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws x ~ p(x|theta).

        a component k ~ pi_j per dimension, then x_j = mu_jk + s_jk logit(v), v ~ U(0, 1).
        """
        check_positive_int(n, "n")
        with torch.no_grad():
            device = generator.device if generator is not None else self.mu.device
            probs = torch.softmax(self.logit_pi, dim=-1).to(device)
            k = torch.multinomial(probs, n, replacement=True, generator=generator).T  # (n, D)
            v = torch.rand(n, self.dim, generator=generator, device=device, dtype=self.mu.dtype)
            v = v.clamp(min=torch.finfo(v.dtype).tiny)
            mu = self.mu.to(device).gather(1, k.T).T
            s = torch.exp(self.log_s.clamp(min=LOG_SCALE_MIN)).to(device).gather(1, k.T).T
            return (mu + s * (torch.log(v) - torch.log1p(-v))).to(self.mu.device)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Loss terms for fit() on continuous x: loss = nll = -mean log p(x|theta)."""
        nll = -self.log_prob(x).mean()
        return {"loss": nll, "nll": nll.detach()}
