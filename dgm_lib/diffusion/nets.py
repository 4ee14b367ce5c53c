"""Networks g_t[z_t, phi_t] for 28 x 28 images.

The report's CNN and a small UNet, with a sinusoidal time embedding.

Both take (x (B, C, H, W), t int64 (B,)) and see t only through t / T, with T fixed at construction.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_positive_int, check_sizes
from dgm_lib.nets import mlp


class TimeEmbedding(nn.Module):
    """Sinusoidal features of s = t / T, then an MLP.

    Sinusoidal features of s = t / T, [sin(2 pi 1.5^k s), cos(2 pi 1.5^k s) - 1] (k < n_features;
    the report's course code, with frequency 0 first), then an MLP to `out_features`.
    """

    def __init__(self, T: int, n_features: int, out_features: int, hidden: int = 128):
        super().__init__()
        self.T = check_positive_int(T, "T")
        check_positive_int(n_features, "n_time_features")
        freqs = torch.cat(
            [torch.zeros(1), 2 * math.pi * 1.5 ** torch.arange(n_features - 1, dtype=torch.float64)]
        )
        self.register_buffer("frequencies", freqs.to(torch.get_default_dtype()))
        self.mlp = mlp([2 * n_features, hidden, hidden, out_features], nn.GELU)

    def forward(self, t: Tensor) -> Tensor:
        """(B,) int64 timesteps -> (B, out_features)."""
        if t.dim() != 1 or t.is_floating_point():
            raise ValueError(
                f"t must be an integer tensor of shape (B,), got {t.dtype} {tuple(t.shape)}"
            )
        if t.numel():
            low, high = (int(v) for v in torch.aminmax(t))  # one sync
            if low < 0 or high > self.T:
                raise ValueError(
                    f"t must lie in 0..T = 0..{self.T} (the network's T), got values in "
                    f"{low}..{high}"
                )
        phase = (t.to(self.frequencies.dtype) / self.T)[:, None] * self.frequencies
        return self.mlp(torch.cat([phase.sin(), phase.cos() - 1], dim=1))


def _check_input(x: Tensor, t: Tensor, channels: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != channels:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (B, {channels}, H, W), got {got}")
    if not isinstance(t, Tensor) or t.shape != (len(x),):
        got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(
            f"t must be an int64 tensor of shape ({len(x)},) (one timestep per image), got {got}"
        )


class ReportCNN(nn.Module):
    """The report's CNN.

    Blocks Conv2d -> LayerNorm over (C, H, W) -> GELU with widths `hidden`, the time embedding added
    (per channel) after the first block, and a final 3 x 3 convolution to `channels` outputs.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (16, 32, 32, 16),
        kernel_size: int = 3,
        n_time_features: int = 16,
        T: int = 1000,
        channels: int = 1,
        image_size: int = 28,
    ):
        super().__init__()
        hidden = check_sizes(hidden, "hidden")
        check_positive_int(kernel_size, "kernel_size")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        self.channels = check_positive_int(channels, "channels")
        self.image_size = check_positive_int(image_size, "image_size")
        shape = (image_size, image_size)
        widths = (channels, *hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2),
                nn.LayerNorm((b, *shape)),
                nn.GELU(),
            )
            for a, b in zip(widths[:-1], widths[1:])
        )
        self.out = nn.Conv2d(hidden[-1], channels, 3, padding=1)
        self.time = TimeEmbedding(T, n_time_features, hidden[0])

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """g_t[x, phi]: (B, C, H, W), t (B,) -> (B, C, H, W)."""
        _check_input(x, t, self.channels)
        if x.shape[-2:] != (self.image_size, self.image_size):
            size = f"{self.image_size}, {self.image_size}"
            raise ValueError(
                f"x must have shape (B, {self.channels}, {size}) (ReportCNN(image_size="
                f"{self.image_size}) normalizes fixed-size maps), got {tuple(x.shape)}"
            )
        h = self.blocks[0](x) + self.time(t)[:, :, None, None]
        for block in self.blocks[1:]:
            h = block(h)
        return self.out(h)


class ResBlock(nn.Module):
    """A residual block with GroupNorm, SiLU, two convolutions and the time embedding.

    GroupNorm -> SiLU -> conv, plus the time embedding, GroupNorm -> SiLU -> conv, plus a (1 x 1)
    skip.
    """

    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int = 8):
        super().__init__()
        self.norm1, self.conv1 = (
            nn.GroupNorm(min(groups, c_in), c_in),
            nn.Conv2d(c_in, c_out, 3, padding=1),
        )
        self.time = nn.Linear(time_dim, c_out)
        self.norm2, self.conv2 = (
            nn.GroupNorm(min(groups, c_out), c_out),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x))) + self.time(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(self.act(self.norm2(h)))


class UNet(nn.Module):
    """A small UNet for 28 x 28 images.

    One ResBlock per level at widths `channels` (28 -> 14 -> ...), a middle ResBlock, skip
    connections by concatenation, GroupNorm and a time embedding in every ResBlock.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64),
        T: int = 1000,
        n_time_features: int = 16,
        in_channels: int = 1,
    ):
        super().__init__()
        channels = check_sizes(channels, "channels")
        self.in_channels = check_positive_int(in_channels, "in_channels")
        time_dim = 4 * channels[0]
        self.time = TimeEmbedding(T, n_time_features, time_dim)
        self.inp = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock(c, c, time_dim) for c in channels)
        self.pool = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(channels[:-1], channels[1:])
        )
        self.mid = ResBlock(channels[-1], channels[-1], time_dim)
        self.unpool = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(b, a, 3, padding=1)
            )
            for a, b in zip(channels[:-1], channels[1:])
        )
        self.up = nn.ModuleList(ResBlock(2 * c, c, time_dim) for c in channels[:-1])
        self.out = nn.Sequential(
            nn.GroupNorm(min(8, channels[0]), channels[0]),
            nn.SiLU(),
            nn.Conv2d(channels[0], in_channels, 3, padding=1),
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """(B, C, H, W), t (B,) -> (B, C, H, W); H must be divisible by 2^(len(channels) - 1)."""
        _check_input(x, t, self.in_channels)
        factor = 2 ** (len(self.down) - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(
                f"x's height and width must be divisible by {factor}, got {tuple(x.shape[-2:])}"
            )
        emb = self.time(t)
        h, skips = self.inp(x), []
        for k, block in enumerate(self.down):
            h = block(h, emb)
            if k < len(self.pool):
                skips.append(h)
                h = self.pool[k](h)
        h = self.mid(h, emb)
        for k in reversed(range(len(self.up))):
            h = self.up[k](torch.cat([self.unpool[k](h), skips[k]], dim=1), emb)
        return self.out(h)
