"""The networks of ALI and ALICE: noise-input samplers and pair discriminators.

The conditionals are sampled by "universal distribution approximators" (C. Li's lecture): a network
fed the conditioning variable and fresh Gaussian noise,

    x~ = g_theta(z, eps),  z ~ p(z),  eps ~ N(0, I)    (the decoder, p_theta(x|z))
    z~ = g_phi(x, zeta),   x ~ q(x),  zeta ~ N(0, I)   (the encoder, q_phi(z|x))

so neither conditional needs a density. A discriminator f(u, v) scores pairs: (x, z) for ALI,
(x, x') for ALICE's implicit cycle consistency, (x, z) paired data for its implicit mapping.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_features, check_positive_int, check_sizes


def _mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class NoisySampler(nn.Module):
    """A conditional sampler v -> g(v, noise) = MLP([v, noise]), noise ~ N(0, I_noise_dim).

    Args:
        in_features: size of the conditioning variable v (z for the decoder, x for the encoder).
        out_features: size of the sample.
        noise_dim: size of the injected noise (0: a deterministic map).
        hidden: widths of the hidden layers.

    Example:
        >>> g = NoisySampler(2, 2, noise_dim=2, hidden=(16,))
        >>> g(torch.zeros(5, 2), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        noise_dim: int = 2,
        hidden: tuple[int, ...] = (64, 64),
    ):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        if not isinstance(noise_dim, int) or isinstance(noise_dim, bool) or noise_dim < 0:
            raise ValueError(f"noise_dim must be an int >= 0, got {noise_dim!r}")
        self.noise_dim = noise_dim
        self.net = _mlp((in_features + noise_dim, *check_sizes(hidden, "hidden"), out_features))

    def forward(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """g(v, noise), one fresh noise draw per row of v."""
        check_features(v, "v", self.in_features)
        noise = torch.randn(
            len(v), self.noise_dim, generator=generator, device=v.device, dtype=v.dtype
        )
        return self.net(torch.cat([v, noise], 1))


class PairDiscriminator(nn.Module):
    """A discriminator logit f(u, v) = MLP([u, v]) on pairs; sigma(f) is the probability of "first
    kind" (the encoder joint for ALI, the real pair (x, x) for implicit cycle consistency).

    Example:
        >>> PairDiscriminator(2, 3, hidden=(8,))(torch.zeros(4, 2), torch.zeros(4, 3)).shape
        torch.Size([4])
    """

    def __init__(self, u_features: int, v_features: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.u_features = check_positive_int(u_features, "u_features")
        self.v_features = check_positive_int(v_features, "v_features")
        self.net = _mlp((u_features + v_features, *check_sizes(hidden, "hidden"), 1))

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        """The logits f(u_i, v_i), shape (batch,)."""
        check_features(u, "u", self.u_features)
        check_features(v, "v", self.v_features)
        if len(u) != len(v):
            raise ValueError(
                f"u and v must hold the same number of rows, got {len(u)} and {len(v)}"
            )
        return self.net(torch.cat([u, v], 1)).squeeze(1)
