"""RealNVP affine coupling layers with half, checkerboard and channel masks (Dinh et al., 2017).

A coupling layer splits x = (x_1, x_2) by a boolean mask (True = the conditioning part x_1) and maps
z_1 = x_1, z_2 = (x_2 - mu(x_1)) / sigma(x_1): a special Gaussian autoregressive flow whose Jacobian
is triangular with diagonal (1, 1/sigma), so log|det J_f| = -sum log sigma(x_1) and both directions
are one pass.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_bound, check_positive_int, check_sizes, check_tensor
from dgm_lib.flows.base import Transform, soft_clamp, sum_except_batch
from dgm_lib.nets import mlp


def half_mask(m: int) -> Tensor:
    """Vector mask (m,): True on the first m // 2 features (x_1), False on the rest (x_2)."""
    check_positive_int(m, "m")
    if m < 2:
        raise ValueError(f"m must be >= 2 for a coupling mask (both parts non-empty), got {m}")
    return torch.arange(m) < m // 2


def checkerboard_mask(h: int, w: int) -> Tensor:
    """Image mask (1, h, w).

    True where (i + j) is even, shared by all channels (RealNVP's spatial mask).
    """
    check_positive_int(h, "h")
    check_positive_int(w, "w")
    if h * w < 2:
        raise ValueError(f"h * w must be >= 2 for a checkerboard mask, got h={h}, w={w}")
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((i + j) % 2 == 0).unsqueeze(0)


def channel_mask(c: int) -> Tensor:
    """Image mask (c, 1, 1).

    True on the first c // 2 channels, for every pixel (RealNVP's channel-wise mask).
    """
    check_positive_int(c, "c")
    if c < 2:
        raise ValueError(f"c must be >= 2 for a channel mask (both parts non-empty), got {c}")
    return (torch.arange(c) < c // 2).reshape(c, 1, 1)


def conv_net(
    channels: int, hidden: Sequence[int], activation: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """Small conditioner CNN.

    3x3 conv, 1x1 convs through `hidden`, 3x3 conv to 2 * channels (mu, raw log sigma).
    """
    sizes = [channels, *hidden, 2 * channels]
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        first_or_last = k == 0 or k == len(sizes) - 2
        layers.append(nn.Conv2d(a, b, 3 if first_or_last else 1, padding=1 if first_or_last else 0))
        if k < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class AffineCoupling(Transform):
    """RealNVP affine coupling: z_1 = x_1, z_2 = (x_2 - mu(x_1)) / sigma(x_1).

    Log|det J_f| = -sum log sigma(x_1).

    `mask` (True = conditioning part x_1) is a vector mask (m,) for x of shape (B, m) (see
    `half_mask`) or an image mask broadcastable to (C, H, W) for x of shape (B, C, H, W)
    (`checkerboard_mask`, `channel_mask`). `net_or_hidden` is either hidden sizes of the conditioner
    (an MLP on x_1 for vectors, a small CNN on x * mask for images) or your own nn.Module: for
    vectors it maps x_1 (B, m_1) to (B, 2 m_2), for images x * mask (B, C, H, W) to (B, 2C, H, W);
    the output is split in half along dim 1 into (mu, raw), and log sigma = bound * tanh(raw /
    bound) (soft clamp). For a checkerboard mask pass `channels`. Dinh, Sohl-Dickstein, Bengio,
    Density estimation using Real NVP, ICLR 2017.
    """

    def __init__(
        self,
        mask: Tensor,
        net_or_hidden: nn.Module | Sequence[int] = (64, 64),
        *,
        channels: int | None = None,
        bound: float = 5.0,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor (True = conditioning part x_1), got dtype {mask.dtype}"
            )
        if mask.dim() not in (1, 3):
            raise ValueError(
                f"mask must have shape (m,) or (C or 1, H or 1, W or 1), got {tuple(mask.shape)}"
            )
        self.bound = check_bound(bound)
        self.image = mask.dim() == 3
        if self.image:
            if channels is None:
                channels = mask.shape[0]
            check_positive_int(channels, "channels")
            if mask.shape[0] not in (1, channels):
                raise ValueError(
                    f"mask has {mask.shape[0]} channels, expected 1 or channels={channels}"
                )
            full = mask.expand(channels, *mask.shape[1:])
        else:
            full = mask
        n_cond = int(full.sum())
        if n_cond == 0 or n_cond == full.numel():
            raise ValueError(
                "mask must contain both True (conditioning x_1) and False (transformed x_2) "
                "entries, got "
                f"{n_cond} True of {full.numel()}; allowed: 0 < mask.sum() < mask.numel()"
            )
        self.register_buffer("mask", mask)
        if self.image:
            self.channels = channels
            self.net = (
                net_or_hidden
                if isinstance(net_or_hidden, nn.Module)
                else conv_net(channels, check_sizes(net_or_hidden, "net_or_hidden"), activation)
            )
        else:
            m = mask.numel()
            self.m, self.n_cond = m, n_cond
            # contiguous masks (half_mask and its complement) split by slicing, without gathers
            self.layout = (
                "first" if mask[:n_cond].all() else "last" if mask[m - n_cond :].all() else "gather"
            )
            cond, trans = mask.nonzero().squeeze(1), (~mask).nonzero().squeeze(1)
            self.register_buffer("cond_index", cond)
            self.register_buffer("trans_index", trans)
            self.register_buffer("merge_index", torch.argsort(torch.cat([cond, trans])))
            self.net = (
                net_or_hidden
                if isinstance(net_or_hidden, nn.Module)
                else mlp(
                    (len(cond), *check_sizes(net_or_hidden, "net_or_hidden"), 2 * len(trans)),
                    activation,
                )
            )

    @torch.no_grad()
    def start_at_identity(self) -> AffineCoupling:
        """Zero the conditioner's last layer, so mu = 0 and log sigma = 0.

        The coupling is the identity.

        Returns the coupling itself. The conditioner must be a Sequential ending in a layer with
        weight and bias (the built-in MLP and CNN conditioners are).
        """
        last = self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return self

    def extra_repr(self) -> str:
        mask = self.mask.int().flatten().tolist()
        shown = mask if len(mask) <= 16 else f"{tuple(self.mask.shape)} with {sum(mask)} True"
        return f"mask={shown}, bound={self.bound}"

    def _check(self, x: Tensor, name: str) -> None:
        check_tensor(x, name)
        if not self.image:
            if x.dim() != 2 or x.shape[1] != self.m:
                raise ValueError(f"{name} must have shape (batch, {self.m}), got {tuple(x.shape)}")
            return
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"{name} must have shape (batch, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        for k, (size, mask_size) in enumerate(zip(x.shape[2:], self.mask.shape[1:]), start=2):
            if mask_size != 1 and size != mask_size:
                raise ValueError(
                    f"{name} has size {size} in dim {k}, the mask needs {mask_size}: shape "
                    f"{tuple(x.shape)}"
                )

    def _params(self, x_cond: Tensor, expected: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """(mu, log sigma) from the conditioner, log sigma soft-clamped."""
        out = self.net(x_cond)
        if out.shape[1:] != (2 * expected[0], *expected[1:]):
            want = (2 * expected[0], *expected[1:])
            raise ValueError(
                f"the conditioner net must output shape (batch, {want}), got {tuple(out.shape)}"
            )
        mu, raw = out.chunk(2, dim=1)
        return mu, soft_clamp(raw, self.bound)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(x, sign=-1)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(z, sign=1)

    def _couple(self, x: Tensor, sign: int) -> tuple[Tensor, Tensor]:
        """sign=-1: f (z_2 = (x_2 - mu) / sigma); sign=+1: g (x_2 = sigma z_2 + mu).

        x_1 is passed through.
        """
        if self.image:
            keep = self.mask.to(x.dtype)
            mu, log_sigma = self._params(x * keep, tuple(x.shape[1:]))
            log_sigma = log_sigma * (1 - keep)
            y = x * keep + (1 - keep) * (
                (x - mu) * torch.exp(-log_sigma) if sign < 0 else x * torch.exp(log_sigma) + mu
            )
            return y, sign * sum_except_batch(log_sigma)
        x1, x2 = self._split(x)
        mu, log_sigma = self._params(x1, (x2.shape[1],))
        y2 = (x2 - mu) * torch.exp(-log_sigma) if sign < 0 else x2 * torch.exp(log_sigma) + mu
        return self._merge(x1, y2), sign * log_sigma.sum(1)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x_1, x_2) = (x[:, mask], x[:, ~mask])."""
        k = self.n_cond
        if self.layout == "first":
            return x[:, :k], x[:, k:]
        if self.layout == "last":
            return x[:, self.m - k :], x[:, : self.m - k]
        return x[:, self.cond_index], x[:, self.trans_index]

    def _merge(self, x1: Tensor, y2: Tensor) -> Tensor:
        """The vector with x1 at the mask's True positions and y2 at the False ones."""
        if self.layout == "first":
            return torch.cat([x1, y2], dim=1)
        if self.layout == "last":
            return torch.cat([y2, x1], dim=1)
        return torch.cat([x1, y2], dim=1)[:, self.merge_index]
