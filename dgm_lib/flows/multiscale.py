"""Multiscale image flows after RealNVP and Glow: squeeze, steps of flow, factor-out (Lecture 2).

A level of the multiscale architecture (Dinh et al., RealNVP, ICLR 2017; Kingma & Dhariwal, Glow,
NeurIPS 2018) squeezes (B, C, H, W) into (B, 4C, H/2, W/2), applies K steps of flow (ActNorm, an
invertible 1x1 convolution, an affine coupling over channels) and factors out half of the channels:
those go straight to the base density, the other half continues to the next, coarser level. Each
level here is written as a shape-preserving Transform, Compose(Squeeze, steps, FactorOut(next
level), Unsqueeze), so the whole multiscale flow maps (B, C, H, W) to z of the same shape (a fixed
rearrangement of all the factored-out latents) and sits under a standard normal base in an ordinary
`Flow`:

    log p(x) = sum_levels log N(z_level; 0, I) + sum of the log-dets of every layer.

Factor-out with a learned conditional prior (Glow's split prior): the factored half x_2 has density
N(x_2; mu(x_1), diag sigma(x_1)^2) given the kept half x_1. Written as the affine map
z_2 = (x_2 - mu(x_1)) / sigma(x_1) into the standard normal base, it is exactly the same density
(log N(x_2; mu, sigma^2) = log N(z_2; 0, I) - sum log sigma), so the factored dimensions go to the
base.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_features, check_positive_int, check_tensor
from dgm_lib.flows.base import (
    Compose,
    Flow,
    Inverse,
    StandardNormal,
    Transform,
    soft_clamp,
    sum_except_batch,
)
from dgm_lib.flows.elementwise import ActNorm
from dgm_lib.flows.linear import InvConv1x1

LOG_SCALE_BOUND = 3.0  # log sigma = 3 tanh(raw / 3) in couplings and split priors (soft clamp)


def _check_image(x: Tensor, name: str, channels: int | None = None) -> None:
    """check_tensor, and x must be an image batch (B, C, H, W) with `channels` channels if given."""
    check_tensor(x, name)
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (batch, C, H, W), got {tuple(x.shape)}")
    if channels is not None:
        check_features(x, name, channels)


class Squeeze(Transform):
    """Space-to-depth: every 2 x 2 patch becomes 4 channels, (B, C, H, W) -> (B, 4C, H/2, W/2).

    z[:, 4c + 2a + b, i, j] = x[:, c, 2i + a, 2j + b] for a, b in {0, 1}: a permutation of the
    entries, so log|det J_f| = 0. H and W must be even (RealNVP's squeezing operation, Dinh et al.,
    ICLR 2017).
    """

    def _check(self, x: Tensor, name: str) -> None:
        _check_image(x, name)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(
                f"x must have an even height and width to squeeze, got shape {tuple(x.shape)}"
            )
        z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return z.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        b, c4, h, w = z.shape
        if c4 % 4:
            raise ValueError(
                f"z must have a multiple of 4 channels to unsqueeze, got shape {tuple(z.shape)}"
            )
        x = z.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c4 // 4, 2 * h, 2 * w), z.new_zeros(b)


def coupling_net(in_channels: int, out_channels: int, hidden: int) -> nn.Sequential:
    """Glow's conditioner: conv 3x3 (in -> hidden), ReLU, conv 1x1, ReLU, conv 3x3 (hidden -> out).

    The last convolution starts at zero, so a coupling (or split prior) starts at the identity map.
    """
    for value, name in (
        (in_channels, "in_channels"),
        (out_channels, "out_channels"),
        (hidden, "hidden"),
    ):
        check_positive_int(value, name)
    last = nn.Conv2d(hidden, out_channels, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        last,
    )


def _shift_and_log_scale(net: nn.Module, x_cond: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    """(mu, log sigma) from a conditioner's 2 * channels output maps, log sigma soft-clamped."""
    mu, raw = net(x_cond).chunk(2, dim=1)
    if mu.shape[1] != channels:
        raise ValueError(
            f"the conditioner must output {2 * channels} channels, got {2 * mu.shape[1]}"
        )
    return mu, soft_clamp(raw, LOG_SCALE_BOUND)


class ConvAffineCoupling(Transform):
    """Affine coupling over channels: z_1 = x_1, z_2 = (x_2 - mu(x_1)) exp(-log sigma(x_1)).

    x_1 is the first C // 2 channels, x_2 the rest; mu and log sigma come from a convolutional
    conditioner (`coupling_net`, zero-initialised last layer) and log sigma = 3 tanh(raw / 3). The
    Jacobian is block triangular, so log|det J_f(x)| = -sum_{c, i, j} log sigma(x_1)_{c, i, j}. Dinh
    et al., RealNVP, ICLR 2017; Kingma & Dhariwal, Glow, NeurIPS 2018.

    Args:
        channels: C, at least 2.
        hidden: width of the conditioner's hidden feature maps.
    """

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        if channels < 2:
            raise ValueError(
                f"channels must be >= 2 to split into two non-empty halves, got {channels}"
            )
        self.n_cond = channels // 2
        self.net = coupling_net(
            self.n_cond, 2 * (channels - self.n_cond), check_positive_int(hidden, "hidden")
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}"

    def _check(self, x: Tensor, name: str) -> None:
        _check_image(x, name, self.channels)

    def _couple(self, x: Tensor, sign: int) -> tuple[Tensor, Tensor]:
        """sign=-1: f (z_2 = (x_2 - mu) / sigma); sign=+1: g (x_2 = sigma z_2 + mu)."""
        x1, x2 = x[:, : self.n_cond], x[:, self.n_cond :]
        mu, log_sigma = _shift_and_log_scale(self.net, x1, x2.shape[1])
        y2 = (x2 - mu) * torch.exp(-log_sigma) if sign < 0 else x2 * torch.exp(log_sigma) + mu
        return torch.cat([x1, y2], dim=1), sign * sum_except_batch(log_sigma)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(x, -1)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(z, 1)


def glow_step(channels: int, hidden: int = 64) -> Compose:
    """One step of flow (Glow): ActNorm, invertible 1x1 convolution (LU), channel affine coupling.

    log|det J_f| = H W sum_c log(1 / sigma_c) + H W log|det W| + coupling log-det.

    Args:
        channels: C of the (B, C, H, W) input, at least 2.
        hidden: width of the coupling's conditioner.

    Returns:
        Compose(ActNorm(C), InvConv1x1(C), ConvAffineCoupling(C, hidden)).
    """
    check_positive_int(channels, "channels")
    return Compose(ActNorm(channels), InvConv1x1(channels), ConvAffineCoupling(channels, hidden))


class FactorOut(Transform):
    """Factor-out with a learned conditional prior: x_1 goes on to `inner`, x_2 to the base density.

    x = (x_1, x_2) over channels (x_1 the first C - C // 2 channels). z_1 = inner(x_1) and
    z_2 = (x_2 - mu(x_1)) exp(-log sigma(x_1)): under the standard normal base, z_2 ~ N(0, I) means
    p(x_2|x_1) = N(mu(x_1), diag sigma(x_1)^2), Glow's split prior. The output is cat(z_1, z_2) and
    log|det J_f(x)| = log|det J_inner(x_1)| - sum log sigma(x_1). The prior network starts at zero,
    so initially x_2 goes to the base unchanged (RealNVP's factor-out with a standard normal).
    Dinh et al., RealNVP, ICLR 2017; Kingma & Dhariwal, Glow, NeurIPS 2018.

    Args:
        channels: C of the (B, C, H, W) input, at least 2.
        inner: the shape-preserving transform of the kept channels (the next level), or None
            (identity).
        hidden: width of the prior network mu, log sigma (x_1).
    """

    def __init__(self, channels: int, inner: Transform | None = None, hidden: int = 64):
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        if channels < 2:
            raise ValueError(f"channels must be >= 2 to factor out half of them, got {channels}")
        if inner is not None and not isinstance(inner, Transform):
            raise TypeError(f"inner must be a Transform or None, got {type(inner).__name__}")
        self.n_keep = channels - channels // 2
        self.inner = inner
        self.prior = coupling_net(
            self.n_keep, 2 * (channels // 2), check_positive_int(hidden, "hidden")
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kept={self.n_keep}"

    def _check(self, x: Tensor, name: str) -> None:
        _check_image(x, name, self.channels)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x[:, : self.n_keep], x[:, self.n_keep :]
        mu, log_sigma = _shift_and_log_scale(self.prior, x1, x2.shape[1])
        z2 = (x2 - mu) * torch.exp(-log_sigma)
        log_det = -sum_except_batch(log_sigma)
        if self.inner is not None:
            x1, inner_log_det = self.inner(x1)
            log_det = log_det + inner_log_det
        return torch.cat([x1, z2], dim=1), log_det

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z1, z2 = z[:, : self.n_keep], z[:, self.n_keep :]
        log_det = z.new_zeros(z.shape[0])
        if self.inner is not None:
            z1, log_det = self.inner.inverse(z1)
        mu, log_sigma = _shift_and_log_scale(self.prior, z1, z2.shape[1])
        x2 = z2 * torch.exp(log_sigma) + mu
        return torch.cat([z1, x2], dim=1), log_det + sum_except_batch(log_sigma)


def multiscale_transform(
    shape: Sequence[int], levels: int = 3, steps: int = 8, hidden: int = 64
) -> Transform:
    """The shape-preserving multiscale stack: levels of squeeze, `steps` Glow steps, factor-out.

    Levels 1..L-1: Compose(Squeeze, glow_step x steps, FactorOut(4C, next level), Unsqueeze); the
    last level squeezes only if its height and width are even (e.g. 1 x 28 x 28 -> 4 x 14 x 14 -> 8
    x 7 x 7, the third level runs on the 4 x 7 x 7 kept channels unsqueezed). Factored dimensions go
    to the base through FactorOut's learned conditional prior.

    Args:
        shape: (C, H, W) of the input.
        levels: number of levels L >= 1; every level but the last must have an even height and
            width.
        steps: Glow steps per level.
        hidden: width of every conditioner (couplings and priors).

    Returns:
        A Transform (B, C, H, W) -> (B, C, H, W).
    """
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), got {shape!r}")
    c, h, w = (check_positive_int(s, f"shape[{k}]") for k, s in enumerate(shape))
    check_positive_int(levels, "levels")
    check_positive_int(steps, "steps")
    check_positive_int(hidden, "hidden")
    for k in range(levels - 1):
        if (h >> k) % 2 or (w >> k) % 2:
            raise ValueError(
                f"levels={levels} needs an even height and width at each of the first "
                f"{levels - 1} levels, level {k + 1} has {h >> k} x {w >> k}; allowed: "
                f"levels <= {k + 1} for shape {shape}"
            )
    return _level(c, h, w, levels, steps, hidden)


def _level(c: int, h: int, w: int, levels: int, steps: int, hidden: int) -> Transform:
    """One level on (c, h, w) with `levels - 1` levels nested inside its factor-out."""
    squeeze = h % 2 == 0 and w % 2 == 0  # always true above the last level (checked by the caller)
    cs = 4 * c if squeeze else c
    if cs < 2:
        raise ValueError(
            f"the last level has {cs} channel on {h} x {w} (odd, not squeezed): a coupling "
            "needs >= 2 channels; use fewer levels or an even image size"
        )
    layers: list[Transform] = [Squeeze()] if squeeze else []
    layers += [glow_step(cs, hidden) for _ in range(steps)]
    if levels > 1:
        keep = cs - cs // 2
        layers.append(
            FactorOut(cs, _level(keep, h // 2, w // 2, levels - 1, steps, hidden), hidden)
        )
    if squeeze:
        layers.append(Inverse(Squeeze()))
    return Compose(*layers)


def make_multiscale_flow(
    shape: Sequence[int] = (1, 28, 28),
    levels: int = 3,
    steps: int = 8,
    hidden: int = 64,
    preprocess: Transform | None = None,
) -> Flow:
    """A Glow-like multiscale flow p(x) = N(f(x); 0, I) |det J_f(x)| on images of `shape`.

    f = multiscale_transform(shape, levels, steps, hidden) after `preprocess` (e.g.
    logit_preprocess, which maps [0, K)^D to R^D with its exact log-det, so the flow is a density
    on [0, K)^D).

    Args:
        shape: (C, H, W).
        levels, steps, hidden: as in multiscale_transform.
        preprocess: an optional first Transform.

    Returns:
        Flow(StandardNormal(C, H, W), Compose(preprocess, multiscale)).
    """
    multiscale = multiscale_transform(shape, levels, steps, hidden)
    if preprocess is not None and not isinstance(preprocess, Transform):
        raise TypeError(f"preprocess must be a Transform or None, got {type(preprocess).__name__}")
    transform = multiscale if preprocess is None else Compose(preprocess, multiscale)
    return Flow(StandardNormal(*shape), transform)


@torch.no_grad()
def sample_at_temperature(
    flow: Flow, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """n samples x = g(T z), z ~ N(0, I): Glow's reduced-temperature sampling.

    T = 1 samples the model itself; T < 1 trades variety for cleaner strokes and samples
    p(x)^(1/T^2) only approximately (exactly for a volume-preserving flow). Kingma & Dhariwal, Glow,
    NeurIPS 2018.

    Args:
        flow: a Flow with a StandardNormal base.
        n: number of samples.
        temperature: T > 0.
        generator: optional torch.Generator for z.

    Returns:
        x of shape (n, *event_shape).
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a Flow, got {type(flow).__name__}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not temperature > 0
    ):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    z = flow.base.sample(n, generator=generator)
    return flow.transform.inverse(temperature * z)[0]
