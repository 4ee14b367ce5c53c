"""A normalizing flow on dequantized data: [0, K)^D -> R^D by a logit, then RealNVP couplings.

DequantizedFlow trains a continuous flow p(x|theta) on discrete y through a dequantizer q(u|y)
(none, uniform or variational) and reports bits per dimension.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_positive_int
from dgm_lib.core import dtype_of
from dgm_lib.dequantization.discrete import NUM_BINS, bits_per_dim, check_discrete
from dgm_lib.dequantization.uniform import UniformDequantizer
from dgm_lib.dequantization.variational import VariationalDequantizer
from dgm_lib.flows.base import Compose, Flow, StandardNormal, Transform
from dgm_lib.flows.builders import make_realnvp
from dgm_lib.flows.coupling import AffineCoupling, checkerboard_mask
from dgm_lib.flows.elementwise import Logit


class Rescale(Transform):
    """z = scale * x, a fixed elementwise scaling.

    Log|det J_f(x)| = D log(scale), D = number of entries per sample.

    Used as x / K before the logit; forgetting its log-det shifts every likelihood by D log K nats.
    """

    def __init__(self, scale: float):
        super().__init__()
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not math.isfinite(scale)
            or scale <= 0
        ):
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
    """[0, K)^D -> R^D.

    Compose(Rescale(1 / K), Logit(alpha)), z = logit(alpha + (1 - 2 alpha) x / K).

    log|det J_f(x)| = -D log K + sum_j [log(1 - 2 alpha) - log s_j - log(1 - s_j)], s = alpha + (1 -
    2 alpha) x / K, exact, so a density on z gives a density on x (RealNVP's preprocessing, Dinh et
    al., ICLR 2017).
    """
    check_positive_int(num_bins, "num_bins")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise ValueError(
            f"alpha must be in (0, 0.5) (alpha = 0 maps the edge x = 0 to -inf), got {alpha!r}"
        )
    return Compose(Rescale(1.0 / num_bins), Logit(alpha))


class DequantizedFlow(nn.Module):
    """A continuous flow p(x|theta) on [0, K)^D trained on discrete y through a dequantizer q(u|y).

    elbo(y) = log p(y + u|theta) - log q(u|y), u ~ q, is a lower bound on log P(y|theta) = log int
    p(y + u) du (uniform dequantization: q = U[0,1]^D, Theis et al., 2016; variational: Ho et al.,
    Flow++, 2019). With dequantizer=None the objective is log p(y|theta) at the discrete points
    themselves: the degenerate objective of a continuous density on discrete data (not a bound; it
    can grow without limit). `flow.log_prob` must be a density on [0, K)^D (build the flow with
    logit_preprocess as its first transform, e.g. make_image_flow).
    """

    def __init__(
        self,
        flow: Flow,
        dequantizer: UniformDequantizer | VariationalDequantizer | None,
        num_bins: int = NUM_BINS,
    ):
        super().__init__()
        if (
            not isinstance(flow, nn.Module)
            or not hasattr(flow, "log_prob")
            or not hasattr(flow, "sample")
        ):
            raise TypeError(
                f"flow must be a Flow (with log_prob and sample), got {type(flow).__name__}"
            )
        if dequantizer is not None and not isinstance(
            dequantizer, (UniformDequantizer, VariationalDequantizer)
        ):
            raise TypeError(
                "dequantizer must be a UniformDequantizer, a VariationalDequantizer or None, "
                f"got {type(dequantizer).__name__}"
            )
        self.flow, self.dequantizer = flow, dequantizer
        self.num_bins = check_positive_int(num_bins, "num_bins")
        if (
            isinstance(dequantizer, VariationalDequantizer)
            and dequantizer.num_bins != self.num_bins
        ):
            raise ValueError(
                f"dequantizer.num_bins={dequantizer.num_bins} differs from num_bins={self.num_bins}"
            )
        self._uniform = UniformDequantizer()

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}"

    def _check_y(self, y: Tensor) -> None:
        check_discrete(y, self.num_bins)
        if y.dim() < 2:
            raise ValueError(f"y must have shape (batch, *event), got {tuple(y.shape)}")

    def _elbo_and_log_q(
        self, y: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """(log p(y + u|theta) - log q(u|y), log q(u|y)) with one u ~ q.

        For dequantizer None (log p(y|theta), 0).
        """
        self._check_y(y)
        y = y.to(dtype_of(self.flow))
        if self.dequantizer is None:
            log_p = self.flow.log_prob(y)
            return log_p, torch.zeros_like(log_p)
        x, log_q = self.dequantizer(y, generator)
        return self.flow.log_prob(x) - log_q, log_q

    def elbo(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """L = log p(y + u|theta) - log q(u|y), one u ~ q(u|y), in nats, shape (B,).

        With dequantizer None: log p(y|theta).
        """
        return self._elbo_and_log_q(y, generator)[0]

    def log_prob_importance(
        self, y: Tensor, k: int = 16, generator: torch.Generator | None = None
    ) -> Tensor:
        """log (1/k) sum_i p(y + u_i|theta) / q(u_i|y), u_i ~ q(u|y) i.i.d.

        a lower bound on log P(y|theta), (B,).

        It increases with k towards log P(y|theta) (Burda et al., IWAE, 2016). With dequantizer
        None, u ~ U[0, 1]^D: a valid bound on the discrete model P(y) = int p(y + u) du that the
        degenerate objective ignores.
        """
        self._check_y(y)
        check_positive_int(k, "k")
        y_rep = y.to(dtype_of(self.flow)).repeat(k, *([1] * (y.dim() - 1)))
        x, log_q = (self._uniform if self.dequantizer is None else self.dequantizer)(
            y_rep, generator
        )
        log_w = (self.flow.log_prob(x) - log_q).reshape(k, y.shape[0])
        return torch.logsumexp(log_w, dim=0) - math.log(k)

    def bits_per_dim(
        self, y: Tensor, k: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """Mean bits/dim of the bound log_prob_importance(y, k).

        k = 1 is the ELBO (uniform u for dequantizer None).
        """
        log_p = self.log_prob_importance(y, k, generator)
        return bits_per_dim(log_p, y[0].numel()).mean()

    def forward(self, y: Tensor) -> dict[str, Tensor]:
        """Loss terms for fit().

        Loss = bpd = mean bits/dim of -elbo(y) (the training objective), log_q = mean log q.
        """
        elbo, log_q = self._elbo_and_log_q(y, None)
        loss = bits_per_dim(elbo, y[0].numel()).mean()
        return {"loss": loss, "bpd": loss.detach(), "log_q": log_q.mean().detach()}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n discrete samples y = floor(x) clamped to [0, K-1], x ~ p(x|theta).

        n discrete samples y = floor(x) clamped to [0, K-1], x ~ p(x|theta) (integer-valued float
        tensor).
        """
        x = self.flow.sample(n, generator)
        return torch.floor(x).clamp(0, self.num_bins - 1)


def make_image_flow(
    shape: Sequence[int] = (1, 28, 28),
    num_bins: int = NUM_BINS,
    depth: int = 8,
    hidden: Sequence[int] = (32, 32),
    alpha: float = 0.05,
) -> Flow:
    """RealNVP on images in [0, K)^{C x H x W}.

    Logit_preprocess, then `depth` affine couplings with conv conditioners and alternating
    checkerboard masks, each starting at the identity; base N(0, I) (Dinh et al., ICLR 2017).
    """
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), got {shape!r}")
    c, h, w = (check_positive_int(s, f"shape[{k}]") for k, s in enumerate(shape))
    check_positive_int(depth, "depth")
    board = checkerboard_mask(h, w)
    layers = []
    for k in range(depth):
        layer = AffineCoupling(board if k % 2 == 0 else ~board, hidden, channels=c)
        layer.start_at_identity()
        layers.append(layer)
    return Flow(StandardNormal(c, h, w), Compose(logit_preprocess(num_bins, alpha), *layers))


def make_vector_flow(
    dim: int = 2,
    num_bins: int = 16,
    depth: int = 6,
    hidden: Sequence[int] = (64, 64),
    alpha: float = 0.01,
) -> Flow:
    """RealNVP on vectors in [0, K)^D for the discrete toys.

    Logit_preprocess, then make_realnvp(dim, depth, hidden).
    """
    check_positive_int(dim, "dim")
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (a coupling splits the vector in two), got {dim}")
    realnvp = make_realnvp(dim, depth, hidden)
    return Flow(StandardNormal(dim), Compose(logit_preprocess(num_bins, alpha), realnvp.transform))
