"""ALI and ALICE as one module that `fit` trains: a minimax game in one loss.

`JointMatching.forward(x)` returns {"loss": discriminator terms + sampler terms}. The discriminator
terms see the samples detached, so their gradient reaches only the discriminators; the sampler
terms see the discriminators through detached copies of their parameters
(`torch.func.functional_call`), so their gradient reaches only the encoder and decoder. One
backward pass and one optimizer step then update both players at once (simultaneous gradient
steps): the pattern by which `fit`'s one training loop plays a two-player game, seeded, resumable
and NaN-guarded like every other model.

Methods (C. Li's lecture): "ali" (joint matching alone), "alice_explicit" (+ lam times the l_2
cycle consistency of x and of z), "alice_implicit" (+ lam times an adversarial cycle consistency:
a second discriminator on (x, x) against (x, x^), eq. 2). Semi-supervised, with a few paired
(x, z) held by the model: "alice_explicit_mapping" (+ lam times ||x - g_theta(z)||^2 +
||z - g_phi(x)||^2 on the pairs) and "alice_implicit_mapping" (+ lam times a conditional GAN: a
discriminator on the paired (x, z) against (x^, z), x^ ~ p_theta(x|z), eq. 3).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from dgm_lib.ali.losses import discriminator_loss, explicit_cycle, sampler_loss
from dgm_lib.ali.networks import NoisySampler, PairDiscriminator
from dgm_lib.checks import check_features, check_number, check_positive_int

METHODS = ("ali", "alice_explicit", "alice_implicit", "alice_explicit_mapping",
           "alice_implicit_mapping")  # fmt: skip
SUPERVISED = ("alice_explicit_mapping", "alice_implicit_mapping")


def _frozen(net: nn.Module, *inputs: Tensor) -> Tensor:
    """net(*inputs) with its parameters detached: gradients flow to the inputs only."""
    params = {name: p.detach() for name, p in net.named_parameters()}
    return functional_call(net, params, inputs)


class JointMatching(nn.Module):
    """ALI / ALICE on (x, z) in R^x_dim x R^z_dim with noise-input encoder and decoder.

    Args:
        x_dim: data size; z_dim: code size (prior N(0, I)); noise_dim: eps and zeta size.
        method: one of METHODS.
        lam: weight of the conditional-entropy term (ignored by "ali").
        hidden: widths of every network's hidden layers.
        pairs: the paired data (x (m, x_dim), z (m, z_dim)) of the semi-supervised methods.

    Example:
        >>> model = JointMatching(2, 2, method="alice_explicit", hidden=(16,))
        >>> sorted(model(torch.zeros(8, 2)))
        ['cycle', 'd_loss', 'g_loss', 'loss']
    """

    def __init__(
        self,
        x_dim: int = 2,
        z_dim: int = 2,
        noise_dim: int = 2,
        method: str = "ali",
        lam: float = 1.0,
        hidden: tuple[int, ...] = (256, 256),
        pairs: tuple[Tensor, Tensor] | None = None,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if (pairs is not None) != (method in SUPERVISED):
            raise ValueError(f"pairs must be given exactly for the methods {SUPERVISED}")
        self.method, self.lam = method, check_number(lam, "lam", 0.0, inclusive=True)
        self.x_dim, self.z_dim = (
            check_positive_int(x_dim, "x_dim"),
            check_positive_int(z_dim, "z_dim"),
        )
        self.decoder = NoisySampler(z_dim, x_dim, noise_dim, hidden)  # x~ = g_theta(z, eps)
        self.encoder = NoisySampler(x_dim, z_dim, noise_dim, hidden)  # z~ = g_phi(x, zeta)
        self.discriminator = PairDiscriminator(x_dim, z_dim, hidden)  # f_omega(x, z)
        self.cycle_discriminator = (
            PairDiscriminator(x_dim, x_dim, hidden) if method == "alice_implicit" else None
        )  # f_eta(x, x')
        self.mapping_discriminator = (
            PairDiscriminator(x_dim, z_dim, hidden) if method == "alice_implicit_mapping" else None
        )  # f_chi(x, z)
        if pairs is not None:
            check_features(pairs[0], "pairs[0]", x_dim)
            check_features(pairs[1], "pairs[1]", z_dim)
            if len(pairs[0]) != len(pairs[1]):
                raise ValueError("pairs must hold as many x as z")
            self.register_buffer("paired_x", pairs[0].clone())
            self.register_buffer("paired_z", pairs[1].clone())

    def reconstruct(self, x: Tensor) -> Tensor:
        """x^ = g_theta(g_phi(x, zeta), eps): x -> z -> x."""
        return self.decoder(self.encoder(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples x = g_theta(z, eps), z ~ N(0, I)."""
        ref = next(self.parameters())
        z = torch.randn(check_positive_int(n, "n"), self.z_dim, generator=generator,
                        device=ref.device, dtype=ref.dtype)  # fmt: skip
        return self.decoder(z, generator)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """The game's loss on a batch x ~ q(x): discriminator and sampler terms (see the module)."""
        check_features(x, "x", self.x_dim)
        z = torch.randn(len(x), self.z_dim, device=x.device, dtype=x.dtype)
        z_tilde, x_tilde = self.encoder(x), self.decoder(z)
        # the encoder joint (x, z~) is the first kind, the decoder joint (x~, z) the second
        d_loss = discriminator_loss(
            self.discriminator(x, z_tilde.detach()), self.discriminator(x_tilde.detach(), z)
        )
        g_loss = sampler_loss(
            _frozen(self.discriminator, x, z_tilde), _frozen(self.discriminator, x_tilde, z)
        )
        terms = {}
        if self.method == "alice_explicit":
            terms["cycle"] = explicit_cycle(x, self.reconstruct(x)) + explicit_cycle(
                z, self.encoder(x_tilde)
            )
            g_loss = g_loss + self.lam * terms["cycle"]
        elif self.method == "alice_implicit":
            x_hat = self.reconstruct(x)
            d_loss = d_loss + discriminator_loss(
                self.cycle_discriminator(x, x), self.cycle_discriminator(x, x_hat.detach())
            )
            terms["cycle"] = sampler_loss(
                _frozen(self.cycle_discriminator, x, x), _frozen(self.cycle_discriminator, x, x_hat)
            )
            g_loss = g_loss + self.lam * terms["cycle"]
        elif self.method == "alice_explicit_mapping":
            px, pz = self.paired_x.to(x), self.paired_z.to(x)
            terms["mapping"] = explicit_cycle(px, self.decoder(pz)) + explicit_cycle(
                pz, self.encoder(px)
            )
            g_loss = g_loss + self.lam * terms["mapping"]
        elif self.method == "alice_implicit_mapping":
            px, pz = self.paired_x.to(x), self.paired_z.to(x)
            x_hat, f = self.decoder(pz), self.mapping_discriminator
            d_loss = d_loss + discriminator_loss(f(px, pz), f(x_hat.detach(), pz))
            terms["mapping"] = sampler_loss(_frozen(f, px, pz), _frozen(f, x_hat, pz))
            g_loss = g_loss + self.lam * terms["mapping"]
        return {"loss": d_loss + g_loss, "d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
                **{k: v.detach() for k, v in terms.items()}}  # fmt: skip
