"""Discrete data vs continuous models (Lecture 7, first half): discretization through the CDF and dequantization.

Notation of the lecture: y in {0, ..., K-1}^D is discrete data (K = num_bins, 256 for pixels), x = y + u is
continuous, u ~ U[0, 1]^D (uniform dequantization) or u ~ q(u|y) (variational dequantization, Flow++);
P(y|theta) is a discrete model, p(x|theta) a continuous one. Bits per dimension = -log2 P(y) / D.

Two ways to make a continuous model meet discrete data:
- discretize the model: P(y|theta) = F(y + 0.5|theta) - F(y - 0.5|theta) with a (mixture of) logistic CDF F
  (Salimans et al., PixelCNN++, ICLR 2017);
- dequantize the data: maximize E_q [log p(y + u|theta) - log q(u|y)] <= log P(y|theta) = log int p(y + u) du
  (Theis et al., A note on the evaluation of generative models, ICLR 2016; Ho et al., Flow++, ICML 2019).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_lib.core import check_positive_int
from dgm_lib.flows.base import Compose, Flow, StandardNormal, Transform, check_tensor, sum_except_batch
from dgm_lib.flows.builders import make_realnvp
from dgm_lib.flows.coupling import AffineCoupling, checkerboard_mask, half_mask
from dgm_lib.flows.elementwise import Logit
from dgm_lib.nets import hidden_sizes

NUM_BINS = 256
LOG_SCALE_MIN = -7.0  # log s is clamped below at -7 (s >= 9.1e-4), as in PixelCNN++ (Salimans et al., 2017)
LN2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------------------------
# checks and conversions


def _check_num_bins(num_bins: int) -> int:
    """num_bins as a positive int, else TypeError/ValueError naming it."""
    return check_positive_int(num_bins, "num_bins")


def _check_float(x: Tensor, name: str) -> None:
    """TypeError unless `x` is a floating-point tensor; ValueError if it holds NaN."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        kind = f"tensor of dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor, got a {kind}")
    if torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN ({int(torch.isnan(x).sum())} of {x.numel()} entries); allowed: no NaN")


def _check_integer_valued(y: Tensor, name: str) -> None:
    """TypeError unless `y` is a real tensor; ValueError for non-finite or non-integer entries."""
    if not isinstance(y, Tensor) or y.dtype == torch.bool or y.is_complex():
        kind = f"tensor of dtype {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
        raise TypeError(f"{name} must be a real tensor of integer values, got a {kind}")
    if y.is_floating_point():
        bad = ~torch.isfinite(y)
        if bad.any():
            raise ValueError(f"{name} must be finite, got {int(bad.sum())} non-finite entries (NaN or inf)")
        frac = y != torch.round(y)
        if frac.any():
            example = y[frac].flatten()[0].item()
            raise ValueError(
                f"{name} must hold integer values, got {int(frac.sum())} non-integer entries, e.g. {example}"
            )


def check_discrete(y: Tensor, num_bins: int, name: str = "y") -> None:
    """ValueError naming `name` unless every entry of `y` is a finite integer in {0, ..., num_bins - 1}.

    Integer and floating dtypes are accepted (pixels are usually integer-valued floats).
    """
    _check_num_bins(num_bins)
    _check_integer_valued(y, name)
    if y.numel() and (y.min() < 0 or y.max() > num_bins - 1):
        raise ValueError(
            f"{name} must lie in {{0, ..., {num_bins - 1}}} (num_bins={num_bins}), got values in "
            f"[{y.min().item():g}, {y.max().item():g}]"
        )


def _float_dtype(y: Tensor) -> torch.dtype:
    """y's dtype if floating, else torch's default dtype."""
    return y.dtype if y.is_floating_point() else torch.get_default_dtype()


def uniform_dequantize(y: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x = y + u with u ~ U[0, 1)^D drawn independently per entry (uniform dequantization, Theis et al., 2016).

    The noise is drawn on the generator's device (y's device without one) and x is returned on y's device, in y's
    dtype if floating, else in the default dtype.
    """
    _check_integer_valued(y, "y")
    dtype = _float_dtype(y)
    device = generator.device if generator is not None else y.device
    u = torch.rand(y.shape, generator=generator, device=device, dtype=dtype).to(y.device)
    return y.to(dtype) + u


def bits_per_dim(log_prob: Tensor, dim: int) -> Tensor:
    """Bits per dimension of a log-likelihood in nats: -log_prob / (dim ln 2), elementwise."""
    _check_float(log_prob, "log_prob")
    check_positive_int(dim, "dim")
    return -log_prob / (dim * LN2)


# ---------------------------------------------------------------------------------------------------------------
# transforms for the flow on [0, K)^D


class Rescale(Transform):
    """z = scale * x, a fixed elementwise scaling: log|det J_f(x)| = D log(scale), D = number of entries per sample.

    Used as x / K before the logit; forgetting its log-det shifts every likelihood by D log K nats.
    """

    def __init__(self, scale: float):
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        self.scale = float(scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"

    def _log_det(self, x: Tensor, sign: float) -> Tensor:
        return x.new_full((x.shape[0],), sign * x[0].numel() * math.log(self.scale))

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * self.scale, self._log_det(x, 1.0)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z / self.scale, self._log_det(z, -1.0)


def logit_preprocess(num_bins: int = NUM_BINS, alpha: float = 0.05) -> Compose:
    """[0, K)^D -> R^D: Compose(Rescale(1 / K), Logit(alpha)), z = logit(alpha + (1 - 2 alpha) x / K).

    log|det J_f(x)| = -D log K + sum_j [log(1 - 2 alpha) - log s_j - log(1 - s_j)], s = alpha + (1 - 2 alpha) x / K,
    exact, so a density on z gives a density on x (RealNVP's preprocessing, Dinh et al., ICLR 2017).
    """
    _check_num_bins(num_bins)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5) (alpha = 0 maps the edge x = 0 to -inf), got {alpha!r}")
    return Compose(Rescale(1.0 / num_bins), Logit(alpha))


# ---------------------------------------------------------------------------------------------------------------
# logistic and mixture of logistics (PixelCNN++)


def _inv_scale(log_s: Tensor) -> Tensor:
    """1 / s with log s clamped below at LOG_SCALE_MIN."""
    return torch.exp(-log_s.clamp(min=LOG_SCALE_MIN))


def _log1mexp(a: Tensor) -> Tensor:
    """log(1 - exp(-a)) for a > 0, stably (Maechler, 2012): log(-expm1(-a)) below ln 2, log1p(-exp(-a)) above."""
    return torch.where(a < LN2, torch.log(-torch.expm1(-a.clamp(max=LN2))), torch.log1p(-torch.exp(-a.clamp(min=LN2))))


def _check_logistic(x: Tensor, name: str, *params: tuple[Tensor, str]) -> None:
    for t, n in ((x, name), *params):
        _check_float(t, n)


def logistic_log_prob(x: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """log p(x|mu, s) of the logistic density p = exp(-(x - mu)/s) / (s (1 + exp(-(x - mu)/s))^2), elementwise.

    Computed as log sigmoid(t) + log sigmoid(-t) - log s with t = (x - mu) / s; log s is clamped below at
    LOG_SCALE_MIN (Salimans et al., PixelCNN++, 2017).
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
    """Float tensors; logit_pi, mu, log_s broadcast with x[..., None] (the component dimension is last)."""
    _check_logistic(x, name, (logit_pi, "logit_pi"), (mu, "mu"), (log_s, "log_s"))
    try:
        torch.broadcast_shapes(x.unsqueeze(-1).shape, logit_pi.shape, mu.shape, log_s.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} (...), logit_pi, mu and log_s (..., n_components) must broadcast with the component dimension "
            f"last, got {name} {tuple(x.shape)}, logit_pi {tuple(logit_pi.shape)}, mu {tuple(mu.shape)}, "
            f"log_s {tuple(log_s.shape)}"
        ) from None


def mix_logistic_log_prob(x: Tensor, logit_pi: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """Continuous mixture log-density log p(x|pi, mu, s) = logsumexp_k [log pi_k + log p(x|mu_k, s_k)].

    x has shape (...); logit_pi, mu, log_s have shape (..., K) (broadcastable), pi = softmax(logit_pi).
    """
    _check_mixture(x, "x", logit_pi, mu, log_s)
    log_pi = torch.log_softmax(logit_pi, dim=-1)
    return torch.logsumexp(log_pi + logistic_log_prob(x.unsqueeze(-1), mu, log_s), dim=-1)


def mix_logistic_cdf(x: Tensor, logit_pi: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """Mixture CDF F(x) = sum_k pi_k sigmoid((x - mu_k) / s_k), pi = softmax(logit_pi); shapes as in mix_logistic_*."""
    _check_mixture(x, "x", logit_pi, mu, log_s)
    pi = torch.softmax(logit_pi, dim=-1)
    return (pi * logistic_cdf(x.unsqueeze(-1), mu, log_s)).sum(-1)


def _log_interval_mass(
    lo: Tensor, hi: Tensor, mu: Tensor, log_s: Tensor, open_lo: Tensor | None = None, open_hi: Tensor | None = None
) -> Tensor:
    """log[F(hi) - F(lo)] of a logistic, exactly and stably, with F(lo) = 0 where open_lo and F(hi) = 1 where open_hi.

    With a = (lo - mu)/s, b = (hi - mu)/s, the identity sigmoid(b) - sigmoid(a) = sigmoid(b) sigmoid(-a) (1 - exp(a-b))
    gives log[F(hi) - F(lo)] = log sigmoid(b) + log sigmoid(-a) + log(1 - e^(-(hi - lo)/s)): three terms that are
    finite with finite gradients for any mu and s (no cancellation, no underflow of the difference). An open lower
    edge (F(lo) = 0) keeps only log sigmoid(b), an open upper edge (F(hi) = 1) only log sigmoid(-a).
    """
    inv_s = _inv_scale(log_s)
    a, b = (lo - mu) * inv_s, (hi - mu) * inv_s
    log_upper, log_lower, log_width = F.logsigmoid(b), F.logsigmoid(-a), _log1mexp((hi - lo) * inv_s)
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


def discretized_logistic_log_prob(y: Tensor, mu: Tensor, log_s: Tensor, num_bins: int = NUM_BINS) -> Tensor:
    """log P(y) = log[F(y + 0.5) - F(y - 0.5)] of a discretized logistic on {0, ..., K-1}, elementwise.

    Edge bins: y = 0 uses F(-inf) = 0 and y = K-1 uses F(+inf) = 1, so sum_y P(y) = 1 exactly (PixelCNN++,
    Salimans et al., 2017). Computed in log space by the identity of `_log_interval_mass` (finite values and
    gradients for any mu and s >= exp(LOG_SCALE_MIN)), which makes PixelCNN++'s midpoint-density fallback for an
    underflowing CDF difference unnecessary. y must be integers in {0, ..., num_bins - 1}.
    """
    check_discrete(y, num_bins)
    _check_logistic(mu, "mu", (log_s, "log_s"))
    y = y.to(mu.dtype)
    return _log_interval_mass(y - 0.5, y + 0.5, mu, log_s, y <= 0, y >= num_bins - 1)


def discretized_mix_logistic_log_prob(
    y: Tensor, logit_pi: Tensor, mu: Tensor, log_s: Tensor, num_bins: int = NUM_BINS
) -> Tensor:
    """log P(y) = logsumexp_k [log pi_k + log P_k(y)] of a discretized logistic mixture (PixelCNN++), shape of y.

    y has shape (...), logit_pi / mu / log_s have shape (..., K) (broadcastable), P_k as discretized_logistic_log_prob.
    """
    check_discrete(y, num_bins)
    _check_float(mu, "mu")
    _check_mixture(y.to(mu.dtype), "y", logit_pi, mu, log_s)
    log_pi = torch.log_softmax(logit_pi, dim=-1)
    return torch.logsumexp(log_pi + discretized_logistic_log_prob(y.unsqueeze(-1), mu, log_s, num_bins), dim=-1)


class MixtureOfLogistics(nn.Module):
    """p(x|pi, mu, s) = prod_j sum_k pi_jk Logistic(x_j|mu_jk, s_jk): a learnable mixture, independent per dimension.

    Parameters logit_pi, mu, log_s have shape (dim, n_components); mu starts at loc + scale * N(0, 1) draws, s at
    `scale`. It is a continuous density on R^D, discretizable through its CDF (PixelCNN++, Salimans et al., 2017)
    and with an exact dequantized likelihood log int_{[0,1]^D} p(y + u) du (the uniform-dequantization theorem).
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
        """log P(y|theta) = sum_j log[F_j(y_j + 0.5) - F_j(y_j - 0.5)], edge bins 0 and K-1 open, shape (B,)."""
        self._check_x(y, "y")
        return discretized_mix_logistic_log_prob(y, self.logit_pi, self.mu, self.log_s, num_bins).sum(1)

    def dequantized_log_prob(self, y: Tensor) -> Tensor:
        """log P(y|theta) = log int_{[0,1]^D} p(y + u|theta) du = sum_j log[F_j(y_j + 1) - F_j(y_j)], exact, shape (B,).

        The discrete model behind uniform dequantization: E_u log p(y + u) <= log P(y) (Jensen). Its bins [y, y + 1)
        cover [0, K) only, so over y in {0..K-1} it sums to F(K) - F(0) <= 1 (the rest of the mass is outside).
        """
        self._check_x(y, "y")
        _check_integer_valued(y, "y")
        y = y.to(self.mu.dtype).unsqueeze(-1)
        log_pi = torch.log_softmax(self.logit_pi, dim=-1)
        log_mass = _log_interval_mass(y, y + 1, self.mu, self.log_s)
        return torch.logsumexp(log_pi + log_mass, dim=-1).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws x ~ p(x|theta): a component k ~ pi_j per dimension, then x_j = mu_jk + s_jk logit(v), v ~ U(0, 1)."""
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


# ---------------------------------------------------------------------------------------------------------------
# dequantizers


class UniformDequantizer(nn.Module):
    """q(u|y) = U[0, 1]^D: x = y + u and log q(u|y) = 0 (Theis et al., 2016; Dinh et al., RealNVP, 2017)."""

    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(x = y + u, log q(u|y) = 0 of shape (B,)), u ~ U[0, 1)^D."""
        x = uniform_dequantize(y, generator)
        if x.dim() < 2:
            raise ValueError(f"y must have shape (batch, *event), got {tuple(y.shape)}")
        return x, x.new_zeros(x.shape[0])

    def log_q(self, u: Tensor, y: Tensor) -> Tensor:
        """log q(u|y) = 0 inside [0, 1]^D, -inf outside, shape (B,)."""
        check_tensor(u, "u")
        inside = ((u >= 0) & (u <= 1)).reshape(u.shape[0], -1).all(1)
        return torch.where(inside, 0.0, -math.inf).to(u.dtype)


def _zero_last_layer(coupling: AffineCoupling) -> None:
    """Start a coupling at the identity (mu = 0, log sigma = 0) by zeroing its conditioner's last layer."""
    last = coupling.net[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


class VariationalDequantizer(nn.Module):
    """Flow++ dequantization noise q(u|y): eps ~ N(0, I), h = g(eps; y) by conditional affine couplings, u = sigmoid(h).

    log q(u|y) = log N(eps; 0, I) - log|det dg/deps| - sum_j log sigmoid'(h_j), sigmoid'(h) = sigmoid(h) sigmoid(-h)
    (Ho et al., Flow++, ICML 2019). Each coupling is a RealNVP AffineCoupling on the stack [eps, c(y)] along dim 1,
    c(y) = y / num_bins - 0.5, whose mask keeps c(y) and half of eps fixed: the conditioner sees the untouched half
    of eps AND y. Vectors (B, D) use MLP conditioners and alternating half masks (D = 1: an elementwise affine map
    of eps depending on y only); images (B, C, H, W) use conv conditioners and alternating checkerboard masks.
    Couplings start at the identity, so the initial q is u = sigmoid(eps).
    """

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        depth: int = 4,
        hidden: Sequence[int] = (64, 64),
        num_bins: int = NUM_BINS,
        *,
        bound: float = 5.0,
    ):
        super().__init__()
        if isinstance(event_shape, int) and not isinstance(event_shape, bool):
            event_shape = (event_shape,)
        event_shape = tuple(event_shape)
        if len(event_shape) not in (1, 3):
            raise ValueError(f"event_shape must be (D,) for vectors or (C, H, W) for images, got {event_shape!r}")
        for k, size in enumerate(event_shape):
            check_positive_int(size, f"event_shape[{k}]")
        check_positive_int(depth, "depth")
        hidden = hidden_sizes(hidden, "hidden")
        self.event_shape = torch.Size(event_shape)
        self.num_bins = _check_num_bins(num_bins)
        self.base = StandardNormal(*event_shape)
        layers = []
        for k in range(depth):
            if len(event_shape) == 1:
                d = event_shape[0]
                eps_mask = torch.zeros(1, dtype=torch.bool) if d == 1 else half_mask(d) ^ (k % 2 == 1)
                mask = torch.cat([eps_mask, torch.ones(d, dtype=torch.bool)])
                layer = AffineCoupling(mask, hidden, bound=bound)
            else:
                c, h, w = event_shape
                board = checkerboard_mask(h, w) ^ (k % 2 == 1)
                mask = torch.cat([board.expand(c, h, w), torch.ones(c, h, w, dtype=torch.bool)])
                layer = AffineCoupling(mask, hidden, channels=2 * c, bound=bound)
            _zero_last_layer(layer)
            layers.append(layer)
        self.couplings = nn.ModuleList(layers)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, depth={len(self.couplings)}, num_bins={self.num_bins}"

    def _condition(self, y: Tensor, name: str, dtype: torch.dtype) -> Tensor:
        """c(y) = y / num_bins - 0.5 after checking y (B, *event_shape) is discrete."""
        check_discrete(y, self.num_bins, name)
        if y.dim() < 2 or y.shape[1:] != self.event_shape:
            event = ", ".join(map(str, self.event_shape))
            raise ValueError(f"{name} must have shape (batch, {event}), got {tuple(y.shape)}")
        return y.to(dtype) / self.num_bins - 0.5

    def _through_couplings(self, v: Tensor, c: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """Apply g (eps -> h) or g^{-1} (h -> eps) given c(y); returns the result and its log|det| (B,)."""
        d = v.shape[1]
        stack, total = torch.cat([v, c], dim=1), 0
        for layer in reversed(self.couplings) if inverse else self.couplings:
            stack, log_det = layer.inverse(stack) if inverse else layer(stack)
            total = total + log_det
        return stack[:, :d], total

    @staticmethod
    def _log_sigmoid_grad(h: Tensor) -> Tensor:
        """sum_j log sigmoid'(h_j) = sum_j [log sigmoid(h_j) + log sigmoid(-h_j)], shape (B,)."""
        return sum_except_batch(F.logsigmoid(h) + F.logsigmoid(-h))

    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(x = y + u, log q(u|y)) with u = sigmoid(g(eps; y)), eps ~ N(0, I); log q of shape (B,)."""
        dtype = next(self.parameters()).dtype
        c = self._condition(y, "y", dtype)
        eps = self.base.sample(y.shape[0], generator=generator).to(c.device)
        h, log_det = self._through_couplings(eps, c, inverse=False)
        u = torch.sigmoid(h)
        log_q = self.base.log_prob(eps) - log_det - self._log_sigmoid_grad(h)
        return y.to(dtype) + u, log_q

    def log_q(self, u: Tensor, y: Tensor) -> Tensor:
        """log q(u|y) by the inverse pass h = logit(u), eps = g^{-1}(h; y), shape (B,).

        log q(u|y) = log N(eps) + log|det dg^{-1}/dh| - sum_j log sigmoid'(h_j); u must lie in (0, 1)^D.
        """
        check_tensor(u, "u")
        if (u <= 0).any() or (u >= 1).any():
            raise ValueError(f"u must lie in (0, 1), got values in [{u.min().item():.4g}, {u.max().item():.4g}]")
        c = self._condition(y, "y", u.dtype)
        h = torch.log(u) - torch.log1p(-u)
        eps, log_det = self._through_couplings(h, c, inverse=True)
        return self.base.log_prob(eps) + log_det - self._log_sigmoid_grad(h)


# ---------------------------------------------------------------------------------------------------------------
# a flow on dequantized data


class DequantizedFlow(nn.Module):
    """A continuous flow p(x|theta) on [0, K)^D trained on discrete y through a dequantizer q(u|y).

    elbo(y) = log p(y + u|theta) - log q(u|y), u ~ q, is a lower bound on log P(y|theta) = log int p(y + u) du
    (uniform dequantization: q = U[0,1]^D, Theis et al., 2016; variational: Ho et al., Flow++, 2019). With
    dequantizer=None the objective is log p(y|theta) at the discrete points themselves: the degenerate objective of
    a continuous density on discrete data (not a bound; it can grow without limit). `flow.log_prob` must be a density
    on [0, K)^D (build the flow with logit_preprocess as its first transform, e.g. make_image_flow).
    """

    def __init__(
        self, flow: Flow, dequantizer: UniformDequantizer | VariationalDequantizer | None, num_bins: int = NUM_BINS
    ):
        super().__init__()
        if not isinstance(flow, nn.Module) or not hasattr(flow, "log_prob") or not hasattr(flow, "sample"):
            raise TypeError(f"flow must be a Flow (with log_prob and sample), got {type(flow).__name__}")
        if dequantizer is not None and not isinstance(dequantizer, (UniformDequantizer, VariationalDequantizer)):
            raise TypeError(
                "dequantizer must be a UniformDequantizer, a VariationalDequantizer or None, "
                f"got {type(dequantizer).__name__}"
            )
        self.flow, self.dequantizer = flow, dequantizer
        self.num_bins = _check_num_bins(num_bins)
        if isinstance(dequantizer, VariationalDequantizer) and dequantizer.num_bins != self.num_bins:
            raise ValueError(f"dequantizer.num_bins={dequantizer.num_bins} differs from num_bins={self.num_bins}")
        self._uniform = UniformDequantizer()

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}"

    def _dtype(self) -> torch.dtype:
        for t in (*self.flow.parameters(), *self.flow.buffers()):
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()

    def _check_y(self, y: Tensor) -> None:
        check_discrete(y, self.num_bins)
        if y.dim() < 2:
            raise ValueError(f"y must have shape (batch, *event), got {tuple(y.shape)}")

    def _elbo_and_log_q(self, y: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(log p(y + u|theta) - log q(u|y), log q(u|y)) with one u ~ q; for dequantizer None (log p(y|theta), 0)."""
        self._check_y(y)
        y = y.to(self._dtype())
        if self.dequantizer is None:
            log_p = self.flow.log_prob(y)
            return log_p, torch.zeros_like(log_p)
        x, log_q = self.dequantizer(y, generator)
        return self.flow.log_prob(x) - log_q, log_q

    def elbo(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """L = log p(y + u|theta) - log q(u|y), one u ~ q(u|y), nats, shape (B,); dequantizer None: log p(y|theta)."""
        return self._elbo_and_log_q(y, generator)[0]

    def log_prob_importance(self, y: Tensor, k: int = 16, generator: torch.Generator | None = None) -> Tensor:
        """log (1/k) sum_i p(y + u_i|theta) / q(u_i|y), u_i ~ q(u|y) i.i.d.: a lower bound on log P(y|theta), (B,).

        It increases with k towards log P(y|theta) (Burda et al., IWAE, 2016). With dequantizer None, u ~ U[0, 1]^D:
        a valid bound on the discrete model P(y) = int p(y + u) du that the degenerate objective ignores.
        """
        self._check_y(y)
        check_positive_int(k, "k")
        y_rep = y.to(self._dtype()).repeat(k, *([1] * (y.dim() - 1)))
        x, log_q = (self._uniform if self.dequantizer is None else self.dequantizer)(y_rep, generator)
        log_w = (self.flow.log_prob(x) - log_q).reshape(k, y.shape[0])
        return torch.logsumexp(log_w, dim=0) - math.log(k)

    def bits_per_dim(self, y: Tensor, k: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """Mean bits/dim of the bound log_prob_importance(y, k): k = 1 is the ELBO (uniform u for dequantizer None)."""
        log_p = self.log_prob_importance(y, k, generator)
        return bits_per_dim(log_p, y[0].numel()).mean()

    def forward(self, y: Tensor) -> dict[str, Tensor]:
        """Loss terms for fit(): loss = bpd = mean bits/dim of -elbo(y) (the training objective), log_q = mean log q."""
        elbo, log_q = self._elbo_and_log_q(y, None)
        loss = bits_per_dim(elbo, y[0].numel()).mean()
        return {"loss": loss, "bpd": loss.detach(), "log_q": log_q.mean().detach()}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n discrete samples y = floor(x) clamped to [0, K-1], x ~ p(x|theta) (integer-valued float tensor)."""
        x = self.flow.sample(n, generator)
        return torch.floor(x).clamp(0, self.num_bins - 1)


# ---------------------------------------------------------------------------------------------------------------
# builders


def make_image_flow(
    shape: Sequence[int] = (1, 28, 28),
    num_bins: int = NUM_BINS,
    depth: int = 8,
    hidden: Sequence[int] = (32, 32),
    alpha: float = 0.05,
) -> Flow:
    """RealNVP on images in [0, K)^{C x H x W}: logit_preprocess, then `depth` affine couplings with conv conditioners
    and alternating checkerboard masks, each starting at the identity; base N(0, I) (Dinh et al., ICLR 2017)."""
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), got {shape!r}")
    c, h, w = (check_positive_int(s, f"shape[{k}]") for k, s in enumerate(shape))
    check_positive_int(depth, "depth")
    board = checkerboard_mask(h, w)
    layers = []
    for k in range(depth):
        layer = AffineCoupling(board if k % 2 == 0 else ~board, hidden, channels=c)
        _zero_last_layer(layer)
        layers.append(layer)
    return Flow(StandardNormal(c, h, w), Compose(logit_preprocess(num_bins, alpha), *layers))


def make_vector_flow(
    dim: int = 2, num_bins: int = 16, depth: int = 6, hidden: Sequence[int] = (64, 64), alpha: float = 0.01
) -> Flow:
    """RealNVP on vectors in [0, K)^D for the discrete toys: logit_preprocess, then make_realnvp(dim, depth, hidden)."""
    check_positive_int(dim, "dim")
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (a coupling splits the vector in two), got {dim}")
    realnvp = make_realnvp(dim, depth, hidden)
    return Flow(StandardNormal(dim), Compose(logit_preprocess(num_bins, alpha), realnvp.transform))
