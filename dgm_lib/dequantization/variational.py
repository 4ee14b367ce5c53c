"""Variational dequantization: a learned noise distribution q(u|y) (Ho et al., Flow++, ICML 2019).

The bound E_q[log p(y + u|theta) - log q(u|y)] <= log P(y|theta) is tight when q(u|y) is the
model's own conditional p(y + u) / P(y); uniform noise is the special case q = 1.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_lib.checks import check_positive_int, check_sizes, check_tensor
from dgm_lib.core import dtype_of
from dgm_lib.dequantization.discrete import NUM_BINS, check_discrete
from dgm_lib.flows.base import StandardNormal, sum_except_batch
from dgm_lib.flows.coupling import AffineCoupling, checkerboard_mask, half_mask


class VariationalDequantizer(nn.Module):
    """Flow++ dequantization noise q(u|y).

    Eps ~ N(0, I), h = g(eps; y) by conditional affine couplings, u = sigmoid(h).

    log q(u|y) = log N(eps; 0, I) - log|det dg/deps| - sum_j log sigmoid'(h_j), sigmoid'(h) =
    sigmoid(h) sigmoid(-h) (Ho et al., Flow++, ICML 2019). Each coupling is a RealNVP AffineCoupling
    on the stack [eps, c(y)] along dim 1, c(y) = y / num_bins - 0.5, whose mask keeps c(y) and half
    of eps fixed: the conditioner sees the untouched half of eps AND y. Vectors (B, D) use MLP
    conditioners and alternating half masks (D = 1: an elementwise affine map of eps depending on y
    only); images (B, C, H, W) use conv conditioners and alternating checkerboard masks. Couplings
    start at the identity, so the initial q is u = sigmoid(eps).
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
            raise ValueError(
                f"event_shape must be (D,) for vectors or (C, H, W) for images, got {event_shape!r}"
            )
        for k, size in enumerate(event_shape):
            check_positive_int(size, f"event_shape[{k}]")
        check_positive_int(depth, "depth")
        hidden = check_sizes(hidden, "hidden")
        self.event_shape = torch.Size(event_shape)
        self.num_bins = check_positive_int(num_bins, "num_bins")
        self.base = StandardNormal(*event_shape)
        layers = []
        for k in range(depth):
            if len(event_shape) == 1:
                d = event_shape[0]
                eps_mask = (
                    torch.zeros(1, dtype=torch.bool) if d == 1 else half_mask(d) ^ (k % 2 == 1)
                )
                mask = torch.cat([eps_mask, torch.ones(d, dtype=torch.bool)])
                layer = AffineCoupling(mask, hidden, bound=bound)
            else:
                c, h, w = event_shape
                board = checkerboard_mask(h, w) ^ (k % 2 == 1)
                mask = torch.cat([board.expand(c, h, w), torch.ones(c, h, w, dtype=torch.bool)])
                layer = AffineCoupling(mask, hidden, channels=2 * c, bound=bound)
            layer.start_at_identity()
            layers.append(layer)
        self.couplings = nn.ModuleList(layers)

    def extra_repr(self) -> str:
        shape, depth = tuple(self.event_shape), len(self.couplings)
        return f"event_shape={shape}, depth={depth}, num_bins={self.num_bins}"

    def _condition(self, y: Tensor, name: str, dtype: torch.dtype) -> Tensor:
        """c(y) = y / num_bins - 0.5 after checking y (B, *event_shape) is discrete."""
        check_discrete(y, self.num_bins, name)
        if y.dim() < 2 or y.shape[1:] != self.event_shape:
            event = ", ".join(map(str, self.event_shape))
            raise ValueError(f"{name} must have shape (batch, {event}), got {tuple(y.shape)}")
        return y.to(dtype) / self.num_bins - 0.5

    def _through_couplings(self, v: Tensor, c: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """Apply g (eps -> h) or g^{-1} (h -> eps) given c(y).

        Returns the result and its log|det| (B,).
        """
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
        """(x = y + u, log q(u|y) of shape (B,)) with u = sigmoid(g(eps; y)), eps ~ N(0, I)."""
        dtype = dtype_of(self)
        c = self._condition(y, "y", dtype)
        eps = self.base.sample(y.shape[0], generator=generator).to(c.device)
        h, log_det = self._through_couplings(eps, c, inverse=False)
        u = torch.sigmoid(h)
        log_q = self.base.log_prob(eps) - log_det - self._log_sigmoid_grad(h)
        return y.to(dtype) + u, log_q

    def log_q(self, u: Tensor, y: Tensor) -> Tensor:
        """log q(u|y) by the inverse pass h = logit(u), eps = g^{-1}(h; y), shape (B,).

        log q(u|y) = log N(eps) + log|det dg^{-1}/dh| - sum_j log sigmoid'(h_j); u must lie in (0,
        1)^D.
        """
        check_tensor(u, "u")
        if (u <= 0).any() or (u >= 1).any():
            raise ValueError(
                f"u must lie in (0, 1), got values in [{u.min().item():.4g}, {u.max().item():.4g}]"
            )
        c = self._condition(y, "y", u.dtype)
        h = torch.log(u) - torch.log1p(-u)
        eps, log_det = self._through_couplings(h, c, inverse=True)
        return self.base.log_prob(eps) + log_det - self._log_sigmoid_grad(h)
