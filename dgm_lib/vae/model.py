"""The VAE of Lecture 7.

Encoders q(z|x, phi), decoders p(x|z, theta), the ELBO, the IWAE bound and an IAF posterior.

Encoders return (mu, log_var) of q(z|x, phi) = N(mu_phi(x), sigma_phi^2(x)), log-variances
soft-clamped to (-LOG_VAR_BOUND, LOG_VAR_BOUND). Decoders return Bernoulli logits, or (mean,
log_var) of a Gaussian. A posterior flow (any dgm_lib.flows Transform, e.g. IAFPosterior) maps z ~
q(z|x, phi) to z* = g(z) through its `forward`: log q(z*|x) = log q(z|x) - log|det J_g(z)|; the
prior and the decoder then see z*. A ContextIAFPosterior (dgm_lib.vae.iaf) also takes the
context h(x) that an encoder with context_dim > 0 emits. Kingma & Welling, Auto-Encoding
Variational Bayes, ICLR 2014; Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR
2016; Kingma et al., Improved Variational Inference with Inverse Autoregressive Flow, NeurIPS 2016.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_lib.checks import (
    check_dtype_matches,
    check_in_range,
    check_int,
    check_positive_int,
    check_sizes,
    check_tensor,
)
from dgm_lib.flows.autoregressive import IAF
from dgm_lib.flows.base import Compose, Inverse, Transform, soft_clamp
from dgm_lib.nets import mlp
from dgm_lib.vae.iaf import ContextIAFPosterior
from dgm_lib.vae.priors import (
    LOG_VAR_BOUND,
    StandardNormalPrior,
    gaussian_kl,
    log_normal_diag,
    standard_normal,
)

LIKELIHOODS = ("bernoulli", "gaussian")
IWAE_CHUNK = 2**15  # decoder rows evaluated at once by VAE.iwae


def flatten_input(x: Tensor, x_dim: int, name: str = "x") -> Tensor:
    """x of shape (B, x_dim) or (B, *event) with x_dim entries per sample -> (B, x_dim).

    Else TypeError/ValueError.
    """
    check_tensor(x, name)
    if math.prod(x.shape[1:]) != x_dim:
        raise ValueError(
            f"{name} must have shape (B, {x_dim}) or (B, *event) with {x_dim} entries, got "
            f"{tuple(x.shape)}"
        )
    return x.reshape(x.shape[0], x_dim)


def _check_context(encoder: nn.Module, posterior_flow: nn.Module | None) -> None:
    """ValueError unless a ContextIAFPosterior gets an encoder emitting h(x) of its size."""
    if not isinstance(posterior_flow, ContextIAFPosterior):
        return
    got = getattr(encoder, "context_dim", 0)
    if got != posterior_flow.context_dim or not hasattr(encoder, "forward_with_context"):
        raise ValueError(
            f"encoder must emit a context h(x) of size {posterior_flow.context_dim} for the "
            f"ContextIAFPosterior (e.g. MLPEncoder(..., context_dim="
            f"{posterior_flow.context_dim})), got context_dim={got}"
        )


def _check_likelihood(likelihood: str) -> str:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def _conv_grid(x_shape: tuple[int, ...], n_halvings: int) -> tuple[int, int]:
    """(h, w) of the smallest feature map after `n_halvings` stride-2 layers.

    ValueError unless they divide H, W.
    """
    if len(x_shape) != 3:
        raise ValueError(f"x_shape must be (C, H, W) for a convolutional network, got {x_shape}")
    _, height, width = x_shape
    f = 2**n_halvings
    if height % f or width % f:
        raise ValueError(f"H and W of x_shape {x_shape} must be divisible by 2**len(hidden) = {f}")
    return height // f, width // f


class MLPEncoder(nn.Module):
    """q(z|x, phi) = N(mu_phi(x), diag sigma_phi^2(x)) with an MLP x -> (mu, log sigma^2[, h]).

    x is flattened. With context_dim > 0 the last layer also emits a context h(x) of that size, the
    input of a ContextIAFPosterior ([mu, sigma, h] = EncoderNN(x), Kingma et al., 2016).
    """

    def __init__(
        self,
        x_dim: int = 784,
        hidden: Sequence[int] = (512, 256),
        z_dim: int = 2,
        *,
        context_dim: int = 0,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.x_dim, self.z_dim = (
            check_positive_int(x_dim, "x_dim"),
            check_positive_int(z_dim, "z_dim"),
        )
        self.context_dim = check_int(context_dim, "context_dim", 0)
        self.x_shape = (x_dim,)
        sizes = (x_dim, *check_sizes(hidden, "hidden"), 2 * z_dim + self.context_dim)
        self.net = mlp(sizes, activation)

    def forward_with_context(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(mu, log_var, h): (B, z_dim), (B, z_dim), (B, context_dim), from one pass."""
        out = self.net(flatten_input(x, self.x_dim))
        mu, raw, h = out.split((self.z_dim, self.z_dim, self.context_dim), -1)
        return mu, soft_clamp(raw, LOG_VAR_BOUND), h

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, log_var), each (B, z_dim), for x of shape (B, x_dim) or (B, *event)."""
        return self.forward_with_context(x)[:2]


class ConvEncoder(nn.Module):
    """q(z|x, phi) with a CNN.

    Stride-2 4x4 convs through `hidden` channels (each halves H and W), then a linear layer to (mu,
    log sigma^2).
    """

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = (32, 64),
        z_dim: int = 2,
        *,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.x_shape, self.z_dim = (
            check_sizes(x_shape, "x_shape"),
            check_positive_int(z_dim, "z_dim"),
        )
        self.x_dim = math.prod(self.x_shape)
        hidden = check_sizes(hidden, "hidden")
        h, w = _conv_grid(self.x_shape, len(hidden))
        layers: list[nn.Module] = []
        for a, b in zip((self.x_shape[0], *hidden[:-1]), hidden):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), activation()]
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(hidden[-1] * h * w, 2 * z_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, log_var), each (B, z_dim), for x of shape (B, C, H, W) or (B, C*H*W)."""
        x = flatten_input(x, self.x_dim).reshape(-1, *self.x_shape)
        mu, raw = self.net(x).chunk(2, -1)
        return mu, soft_clamp(raw, LOG_VAR_BOUND)


class _Decoder(nn.Module):
    """p(x|z, theta): Bernoulli(sigmoid(logits)) or N(mean, diag exp(log_var)) per pixel.

    `net` maps z to (B, k * C, ...) with k = 1 (logits) or 2 (mean, raw log-variance).
    """

    def __init__(self, z_dim: int, x_shape: Sequence[int], likelihood: str):
        super().__init__()
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.x_shape = check_sizes(x_shape, "x_shape")
        self.x_dim = math.prod(self.x_shape)
        self.likelihood = _check_likelihood(likelihood)
        self.n_out = 1 if likelihood == "bernoulli" else 2

    def extra_repr(self) -> str:
        return f"likelihood={self.likelihood!r}"

    def _net(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, z: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Bernoulli logits (B, *x_shape), or the Gaussian (mean, log_var), each (B, *x_shape)."""
        check_tensor(z, "z")
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        out = self._net(z).reshape(z.shape[0], self.n_out, *self.x_shape)
        if self.likelihood == "bernoulli":
            return out[:, 0]
        return out[:, 0], soft_clamp(out[:, 1], LOG_VAR_BOUND)

    def mean(self, out: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """E[x|z]: sigmoid(logits) (pixel probabilities) or the Gaussian mean."""
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out[0]

    def log_prob(self, x: Tensor, out: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """log p(x|z, theta) summed over pixels, shape (B,).

        sum x log s(l) + (1 - x) log s(-l) (Bernoulli, x in [0, 1]) or sum log N(x; mean,
        exp(log_var)) (Gaussian); `out` is forward(z).
        """
        x = flatten_input(x, self.x_dim).reshape(-1, *self.x_shape)
        if self.likelihood == "bernoulli":
            why = " for a Bernoulli decoder (pixel intensities scaled to [0, 1], e.g. x / 255)"
            check_in_range(x, "x", 0.0, 1.0, why)
            log_px = -F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            mean, log_var = out
            log_px = -0.5 * (
                (x - mean).square() * torch.exp(-log_var) + log_var + math.log(2 * math.pi)
            )
        return log_px.reshape(x.shape[0], -1).sum(1)


class MLPDecoder(_Decoder):
    """p(x|z, theta) with an MLP.

    p(x|z, theta) with an MLP z -> logits (Bernoulli) or (mean, log sigma^2) (Gaussian) of every
    pixel.
    """

    def __init__(
        self,
        z_dim: int = 2,
        hidden: Sequence[int] = (256, 512),
        x_shape: Sequence[int] = (1, 28, 28),
        likelihood: str = "bernoulli",
        *,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__(z_dim, x_shape, likelihood)
        self.net = mlp(
            (self.z_dim, *check_sizes(hidden, "hidden"), self.n_out * self.x_dim), activation
        )

    def _net(self, z: Tensor) -> Tensor:
        return self.net(z)


class ConvDecoder(_Decoder):
    """p(x|z, theta) with a CNN.

    a linear layer to hidden[0] maps of size (H, W) / 2**len(hidden), then stride-2 4x4 transposed
    convs through `hidden` (each doubles H and W) to the logits or (mean, log sigma^2).
    """

    def __init__(
        self,
        z_dim: int = 2,
        hidden: Sequence[int] = (64, 32),
        x_shape: Sequence[int] = (1, 28, 28),
        likelihood: str = "bernoulli",
        *,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__(z_dim, x_shape, likelihood)
        hidden = check_sizes(hidden, "hidden")
        h, w = _conv_grid(self.x_shape, len(hidden))
        layers: list[nn.Module] = [nn.Linear(self.z_dim, hidden[0] * h * w), activation()]
        layers.append(nn.Unflatten(1, (hidden[0], h, w)))
        outs = (*hidden[1:], self.n_out * self.x_shape[0])
        for k, (a, b) in enumerate(zip(hidden, outs)):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if k < len(hidden) - 1:
                layers.append(activation())
        self.net = nn.Sequential(*layers)

    def _net(self, z: Tensor) -> Tensor:
        return self.net(z)


class IAFPosterior(Inverse):
    """Flow posterior z* = g(z, lambda).

    `depth` IAF layers (orders reversed every other layer), z ~ q(z|x, phi).

    `forward(z) -> (z*, log|det J_g(z)|)` is one parallel pass per layer (IAF's cheap direction);
    log q(z*|x) = log q(z|x) - log|det J_g(z)|. `inverse` (z* -> z) needs z_dim sequential passes
    per layer. Kingma et al., Improved Variational Inference with Inverse Autoregressive Flow,
    NeurIPS 2016.
    """

    def __init__(self, z_dim: int, depth: int = 2, hidden: Sequence[int] = (64, 64)):
        check_positive_int(z_dim, "z_dim")
        check_positive_int(depth, "depth")
        orders = (torch.arange(z_dim), torch.arange(z_dim).flip(0))
        super().__init__(Compose(*[IAF(z_dim, hidden, orders[k % 2]) for k in range(depth)]))
        self.z_dim = z_dim

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}"


@dataclass
class PosteriorSample:
    """n_samples draws from q(z*|x) per data point.

    z0 = mu + sigma eps ~ N(mu, sigma^2), z = posterior flow(z0) (z = z0 without one), log_q = log
    q(z|x) and log_det = log|det J_g(z0)| (zeros without a flow), (S, B, ...).
    """

    mu: Tensor
    log_var: Tensor
    z0: Tensor
    z: Tensor
    log_q: Tensor
    log_det: Tensor


class VAE(nn.Module):
    """A VAE: encoder q(z|x, phi), decoder p(x|z, theta), prior p(z), optional posterior flow.

    ELBO L(q, theta) = E_q log p(x|z, theta) - KL(q(z|x, phi) || p(z)) (Lecture 7); `forward(x)`
    returns the loss terms for dgm_lib.training.fit with loss = -mean(recon - beta * kl)
    (beta = 1: the ELBO).

    Example:
        >>> from dgm_lib.vae.priors import StandardNormalPrior
        >>> vae = VAE(MLPEncoder(4, (8,), 2), MLPDecoder(2, (8,), (4,)), StandardNormalPrior(2))
        >>> vae.elbo(torch.rand(3, 4).round()).shape
        torch.Size([3])
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        posterior_flow: Transform | ContextIAFPosterior | None = None,
        beta: float = 1.0,
    ):
        super().__init__()
        for name, module in (("encoder", encoder), ("decoder", decoder), ("prior", prior)):
            if not isinstance(module, nn.Module) or not hasattr(module, "z_dim"):
                raise TypeError(
                    f"{name} must be an nn.Module with a z_dim attribute, got "
                    f"{type(module).__name__}"
                )
        if not hasattr(prior, "log_prob") or not hasattr(prior, "sample"):
            raise TypeError(f"prior must have log_prob and sample, got {type(prior).__name__}")
        if not hasattr(decoder, "log_prob") or not hasattr(decoder, "mean"):
            raise TypeError(
                "decoder must be an MLPDecoder/ConvDecoder-like module, got "
                f"{type(decoder).__name__}"
            )
        dims = {"encoder": encoder.z_dim, "decoder": decoder.z_dim, "prior": prior.z_dim}
        if len(set(dims.values())) != 1:
            raise ValueError(f"z_dim must agree between encoder, decoder and prior, got {dims}")
        if posterior_flow is not None and not isinstance(
            posterior_flow, (Transform, ContextIAFPosterior)
        ):
            got = type(posterior_flow).__name__
            raise TypeError(
                "posterior_flow must be a dgm_lib.flows Transform, a ContextIAFPosterior or None, "
                f"got {got}"
            )
        _check_context(encoder, posterior_flow)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < math.inf:
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        self.encoder, self.decoder, self.prior, self.posterior_flow = (
            encoder,
            decoder,
            prior,
            posterior_flow,
        )
        self.beta, self.z_dim = float(beta), encoder.z_dim

    @property
    def closed_form_kl(self) -> bool:
        """Whether KL(q(z|x) || p(z)) has the closed form gaussian_kl.

        Standard normal prior, no posterior flow.
        """
        return isinstance(self.prior, StandardNormalPrior) and self.posterior_flow is None

    @property
    def context_posterior(self) -> bool:
        """Whether the posterior flow takes the encoder's context h(x) (a ContextIAFPosterior)."""
        return isinstance(self.posterior_flow, ContextIAFPosterior)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu_phi(x), log sigma_phi^2(x)), each (B, z_dim)."""
        check_dtype_matches(x, self, "x")
        return self.encoder(x)

    def encode_with_context(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(mu, log_var, h) from one encoder pass; h(x) (B, context_dim), None without context."""
        if not self.context_posterior:
            return (*self.encode(x), None)
        check_dtype_matches(x, self, "x")
        return self.encoder.forward_with_context(x)

    def decode(self, z: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """The decoder's output for z (B, z_dim): Bernoulli logits or Gaussian (mean, log_var)."""
        check_dtype_matches(z, self, "z")
        return self.decoder(z)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z, theta) for one or several latents per data point.

        log p(x|z, theta), shape (B,) for z (B, z_dim), or (S, B) for S latents per data point, z
        (S, B, z_dim).
        """
        check_tensor(z, "z")
        if z.dim() == 2:
            return self.decoder.log_prob(x, self.decoder(z))
        if z.dim() != 3 or z.shape[1] != x.shape[0]:
            got = tuple(z.shape)
            raise ValueError(
                f"z must have shape (B, z_dim) or (S, B, z_dim) with B = {x.shape[0]}, got {got}"
            )
        s, b = z.shape[:2]
        x_rep = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])
        return self.decoder.log_prob(x_rep, self.decoder(z.reshape(s * b, -1))).reshape(s, b)

    def sample_q(
        self,
        mu: Tensor,
        log_var: Tensor,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
        h: Tensor | None = None,
    ) -> PosteriorSample:
        """n_samples draws from q(z|x) given its encoding: z0 = mu + sigma eps, z = g(z0[, h]).

        log q(z|x) = log N(z0; mu, sigma^2) - log|det J_g(z0)|, with the Gaussian term computed
        from eps (no cancellation); without a posterior flow z = z0.

        Args:
            mu: encoder means (B, z_dim).
            log_var: encoder log-variances (B, z_dim).
            n_samples: draws per data point.
            generator: the source of eps ~ N(0, I).
            h: the context h(x) (B, context_dim), required by (only) a ContextIAFPosterior.

        Returns:
            A PosteriorSample with tensors of shape (n_samples, B, ...).
        """
        eps = standard_normal((n_samples, *mu.shape), mu, generator)
        z0 = mu + torch.exp(0.5 * log_var) * eps
        log_q = -0.5 * (eps.square() + log_var + math.log(2 * math.pi)).sum(-1)
        if self.posterior_flow is None:
            return PosteriorSample(mu, log_var, z0, z0, log_q, torch.zeros_like(log_q))
        if self.context_posterior:
            if h is None:
                raise ValueError("h must be the encoder's context h(x) for a ContextIAFPosterior")
            h = h.expand(n_samples, *h.shape).reshape(-1, h.shape[-1])
            z, log_det = self.posterior_flow(z0.reshape(-1, self.z_dim), h)
        elif h is not None:
            raise ValueError("h must be None: this VAE's posterior takes no context")
        else:
            z, log_det = self.posterior_flow(z0.reshape(-1, self.z_dim))
        log_det = log_det.reshape(log_q.shape)
        return PosteriorSample(mu, log_var, z0, z.reshape(z0.shape), log_q - log_det, log_det)

    def sample_posterior(
        self, x: Tensor, n_samples: int = 1, generator: torch.Generator | None = None
    ) -> PosteriorSample:
        """n_samples draws z ~ q(z|x) per point and log q(z|x).

        n_samples draws z ~ q(z|x) per point (through the posterior flow, if any) and log q(z|x),
        (S, B, ...).
        """
        check_positive_int(n_samples, "n_samples")
        mu, log_var, h = self.encode_with_context(x)
        return self.sample_q(mu, log_var, n_samples, generator, h)

    def posterior_log_prob(self, z: Tensor, x: Tensor) -> Tensor:
        """log q(z|x) at given points: log N(f(z); mu, sigma^2) + log|det J_f(z)|, f = g^{-1}.

        Through the flow's inverse (sequential for an IAF); z = z0 without a posterior flow.

        Args:
            z: S points per data point (S, B, z_dim).
            x: the data (B, ...).

        Returns:
            log q(z|x), shape (S, B).
        """
        check_tensor(z, "z")
        if z.dim() != 3 or z.shape[1] != x.shape[0] or z.shape[2] != self.z_dim:
            raise ValueError(
                f"z must have shape (S, B, {self.z_dim}) with B = {x.shape[0]}, got "
                f"{tuple(z.shape)}"
            )
        mu, log_var, h = self.encode_with_context(x)
        flat = z.reshape(-1, self.z_dim)
        log_det = torch.zeros(flat.shape[0], dtype=z.dtype, device=z.device)
        if self.context_posterior:
            flat, log_det = self.posterior_flow.inverse(flat, h.repeat(z.shape[0], 1))
        elif self.posterior_flow is not None:
            flat, log_det = self.posterior_flow.inverse(flat)
        z0 = flat.reshape(z.shape)
        return log_normal_diag(z0, mu, log_var) + log_det.reshape(z.shape[:2])

    def _log_prior(self, z: Tensor) -> Tensor:
        """log p(z) for z of shape (S, B, z_dim) -> (S, B)."""
        return self.prior.log_prob(z.reshape(-1, self.z_dim)).reshape(z.shape[:-1])

    def elbo_terms(
        self, x: Tensor, n_samples: int = 1, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """recon, kl and elbo = recon - kl of every data point.

        recon = E_q log p(x|z, theta), kl = KL(q(z|x) || p(z)) and elbo = recon - kl, each (B,),
        with n_samples draws of z; kl is gaussian_kl when closed_form_kl, else the Monte Carlo mean
        of log q(z|x) - log p(z).
        """
        post = self.sample_posterior(x, n_samples, generator)
        recon = self.log_likelihood(x, post.z).mean(0)
        if self.closed_form_kl:
            kl = gaussian_kl(post.mu, post.log_var)
        else:
            kl = (post.log_q - self._log_prior(post.z)).mean(0)
        return {"elbo": recon - kl, "recon": recon, "kl": kl}

    def elbo(
        self, x: Tensor, n_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """The ELBO L(q, theta) of every data point, shape (B,)."""
        return self.elbo_terms(x, n_samples, generator)["elbo"]

    def iwae(self, x: Tensor, k: int = 50, generator: torch.Generator | None = None) -> Tensor:
        """The IWAE bound log 1/k sum_s p(x, z_s|theta) / q(z_s|x) (Burda et al., 2016).

        IWAE bound log 1/k sum_{s=1}^k p(x, z_s | theta) / q(z_s|x), z_s ~ q(z|x), shape (B,) (Burda
        et al., 2016).

        A lower bound on log p(x|theta) that increases with k (k = 1: the ELBO in expectation); the
        k draws are decoded in chunks of about IWAE_CHUNK rows.
        """
        check_positive_int(k, "k")
        mu, log_var, h = self.encode_with_context(x)
        per_chunk = max(1, IWAE_CHUNK // x.shape[0])
        log_w = []
        for start in range(0, k, per_chunk):
            post = self.sample_q(mu, log_var, min(per_chunk, k - start), generator, h)
            log_w.append(self.log_likelihood(x, post.z) + self._log_prior(post.z) - post.log_q)
        return torch.logsumexp(torch.cat(log_w, 0), 0) - math.log(k)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Loss terms for fit(): loss = -mean(recon - beta kl).

        Elbo, recon, kl are batch means (detached).
        """
        terms = self.elbo_terms(x)
        loss = -(terms["recon"] - self.beta * terms["kl"]).mean()
        return {"loss": loss, **{name: value.mean().detach() for name, value in terms.items()}}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n decoded prior draws E[x|z], z ~ p(z).

        Pixel probabilities (Bernoulli) or means, shape (n, *x_shape).
        """
        return self.decoder.mean(self.decoder(self.prior.sample(n, generator)))
