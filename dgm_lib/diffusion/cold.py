"""Cold diffusion (Bansal et al. 2023).

a deterministic Gaussian-blur degradation D(x, t), a restorer R(x_t, t), training (Algorithm 3),
naive sampling and the improved sampling of Algorithm 4, the degraded prior that fixes unconditional
blur sampling, and the report's future work: a hybrid blur-plus-noise degradation.

Images live in [-1, 1] (see dgm_lib.diffusion.mnist_images), shape (B, C, H, W) with H = W =
image_size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_lib.checks import check_number, check_positive_int, check_tensor
from dgm_lib.diffusion.ddpm import check_capture, timesteps


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """Normalized 1-D Gaussian kernels (len(sigma), kernel_size).

    k_t[i] ∝ exp(-(i - c)^2 / (2 sigma_t^2)), sum 1.
    """
    offsets = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    logits = -(offsets[None, :] ** 2) / (2 * sigma.to(torch.float64)[:, None] ** 2)
    return torch.softmax(logits, dim=1)


class BlurDegradation(nn.Module):
    """D(x, t): Gaussian blur with sigma_t = sigma_base + sigma_scale t (eq. 7).

    D(x, t): Gaussian blur with sigma_t = sigma_base + sigma_scale t (the report's eq. 7), t = 0..T,
    reflect padding.

    The report's training "iteratively blurs" x following the schedule; since blurs compose by
    adding variances, the image at step t is ONE blur with the schedule's sigma_t, so D(x, t)
    applies one precomputed separable kernel per t (buffer `kernels`, (T + 1, kernel_size)) once:
    O(1) convolutions per call instead of O(t) (O(T^2) per trajectory). The kernel of t = 0 is the
    identity, so D(x, 0) = x exactly. The separable blur with reflect padding is folded into one
    (image_size x image_size) matrix M_t per t, D(x, t) = M_t x M_t^T (derived, not saved).
    """

    def __init__(
        self,
        sigma_base: float = 0.02,
        sigma_scale: float = 0.01,
        T: int = 500,
        kernel_size: int = 27,
        image_size: int = 28,
    ):
        super().__init__()
        self.sigma_base = check_number(sigma_base, "sigma_base")
        self.sigma_scale = check_number(sigma_scale, "sigma_scale", inclusive=True)
        check_positive_int(T, "T (number of degradation steps)")
        check_positive_int(kernel_size, "kernel_size")
        check_positive_int(image_size, "image_size")
        if kernel_size % 2 == 0 or kernel_size // 2 >= image_size:
            raise ValueError(
                f"kernel_size must be odd with kernel_size // 2 < image_size = {image_size} "
                "(reflect padding), "
                f"got {kernel_size}"
            )
        self.T, self.kernel_size, self.image_size = T, kernel_size, image_size
        sigma = self.sigma(torch.arange(T + 1))
        kernels = gaussian_kernels(sigma, kernel_size)
        kernels[0] = F.one_hot(torch.tensor(kernel_size // 2), kernel_size)  # identity at t = 0
        dtype = torch.get_default_dtype()
        self.register_buffer("kernels", kernels.to(dtype))
        self.register_buffer("matrices", self._blur_matrices(kernels).to(dtype), persistent=False)

    def _blur_matrices(self, kernels: Tensor) -> Tensor:
        """M_t (T + 1, H, H) with (M_t v)_i = sum_j k_t[j] v_reflect[i + j - c].

        The 1-D blur of the basis vectors.
        """
        n, r = self.image_size, self.kernel_size // 2
        basis = F.pad(
            torch.eye(n, dtype=kernels.dtype).unsqueeze(1), (r, r), mode="reflect"
        )  # (n, 1, n + 2r)
        blurred = F.conv1d(
            basis, kernels.flip(1).unsqueeze(1)
        )  # (n, T + 1, n): blurred[j, t, i] = M_t[i, j]
        return blurred.permute(1, 2, 0).contiguous()

    def sigma(self, t: int | Tensor) -> Tensor:
        """sigma_t = sigma_base + sigma_scale t (eq. 7), in float64."""
        return self.sigma_base + self.sigma_scale * torch.as_tensor(t, dtype=torch.float64)

    def blur(self, x: Tensor, t: int | Tensor) -> Tensor:
        """The deterministic blur of x at steps t (int or (B,)): M_t x M_t^T per image, channel."""
        check_tensor(x, "x")
        if x.dim() != 4 or x.shape[-2:] != (self.image_size, self.image_size):
            size = f"(B, C, {self.image_size}, {self.image_size})"
            raise ValueError(f"x must have shape {size}, got {tuple(x.shape)}")
        m = self.matrices[timesteps(t, len(x), self.T, x.device, low=0)].to(x.dtype)
        return torch.einsum("bij,bcjk,blk->bcil", m, x, m)

    def forward(self, x: Tensor, t: int | Tensor) -> Tensor:
        """D(x, t) = blur with sigma_t (t an int or an int64 tensor (B,), 0..T)."""
        return self.blur(x, t)


class HybridDegradation(nn.Module):
    """Blur plus noise, the report's future work.

    D(x, t) = blur_t(x) + noise_scale sqrt(t / T) eps, eps ~ N(0, I).

    The blur is a BlurDegradation built from the remaining arguments; `noise` fixes eps (Algorithm 4
    reuses the estimated noise), else it is drawn with `generator`.
    """

    def __init__(
        self,
        noise_scale: float = 1.0,
        sigma_base: float = 0.02,
        sigma_scale: float = 0.01,
        T: int = 500,
        kernel_size: int = 27,
        image_size: int = 28,
    ):
        super().__init__()
        self.noise_scale = check_number(noise_scale, "noise_scale")
        self.blur = BlurDegradation(sigma_base, sigma_scale, T, kernel_size, image_size)
        self.T = T

    def noise_std(self, t: Tensor, like: Tensor) -> Tensor:
        """noise_scale sqrt(t / T) per sample, shaped (B, 1, 1, 1) in the dtype of `like`."""
        return (self.noise_scale * (t.to(like.dtype) / self.T).sqrt()).reshape(-1, 1, 1, 1)

    def forward(
        self,
        x: Tensor,
        t: int | Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """D(x, t) = blur_t(x) + noise_scale sqrt(t / T) eps.

        eps = `noise` if given, else drawn with `generator`.
        """
        check_tensor(x, "x")
        t = timesteps(t, len(x), self.T, x.device, low=0)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.blur(x, t) + self.noise_std(t, x) * noise


class DegradedPrior(nn.Module):
    """A Gaussian fitted to fully degraded images D(x_train, T).

    Mean + probabilistic PCA covariance.

    Covariance W W^T + s^2 I with the top `rank` principal directions (Tipping & Bishop's
    maximum-likelihood PPCA: W = U (Lambda - s^2)^(1/2), s^2 = mean of the discarded eigenvalues).
    Bansal et al. (2023) start unconditional blur sampling from such a sampled fully degraded image
    plus a little noise instead of one fixed image.
    """

    def __init__(self, mean: Tensor, components: Tensor, residual_std: Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("components", components)
        self.register_buffer("residual_std", residual_std)

    @classmethod
    def fit(cls, degraded: Tensor, rank: int = 16) -> "DegradedPrior":
        """Fit to degraded images (N, C, H, W) (in float64, stored in their dtype)."""
        check_tensor(degraded, "degraded")
        check_positive_int(rank, "rank")
        flat = degraded.reshape(len(degraded), -1).to(torch.float64)
        if rank >= min(flat.shape):
            raise ValueError(f"rank must be < min(N, D) = {min(flat.shape)}, got {rank}")
        mean = flat.mean(0)
        _, s, vh = torch.linalg.svd(flat - mean, full_matrices=False)
        eig = s**2 / (len(flat) - 1)
        residual = eig[rank:].sum() / (flat.shape[1] - rank)
        components = (eig[:rank] - residual).clamp(min=0).sqrt()[:, None] * vh[:rank]
        dtype = degraded.dtype
        prior = cls(
            mean.reshape(degraded.shape[1:]).to(dtype),
            components.to(dtype),
            residual.sqrt().to(dtype),
        )
        return prior.to(degraded.device)

    def sample(
        self, n: int, noise: float = 0.02, generator: torch.Generator | None = None
    ) -> Tensor:
        """n starts x_T = mean + W z + s eps + noise eps', drawn with `generator`.

        z, eps and eps' are standard normal.
        """
        check_positive_int(n, "n")
        noise = check_number(noise, "noise", inclusive=True)
        opts = {"generator": generator, "device": self.mean.device, "dtype": self.mean.dtype}
        z = torch.randn((n, len(self.components)), **opts)
        std = torch.sqrt(self.residual_std**2 + noise**2)
        eps = torch.randn((n, *self.mean.shape), **opts)
        return self.mean + (z @ self.components).reshape(n, *self.mean.shape) + std * eps


class ColdDiffusion(nn.Module):
    """A restorer R(x_t, t) = net(x_t, t) predicting x from D(x, t) (cold diffusion).

    A restorer R(x_t, t) = net(x_t, t) predicting the clean image x from D(x, t), t an int64 tensor
    (B,) in 1..T.
    """

    def __init__(self, net: nn.Module, degradation: BlurDegradation | HybridDegradation):
        super().__init__()
        if not isinstance(degradation, (BlurDegradation, HybridDegradation)):
            kind = type(degradation).__name__
            raise TypeError(
                f"degradation must be a BlurDegradation or HybridDegradation, got {kind}"
            )
        self.net, self.degradation = net, degradation

    @property
    def T(self) -> int:
        """The number of steps T."""
        return self.degradation.T

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Algorithm 3: t ~ U{1..T}, loss = mean over pixels of (x - R(D(x, t), t))^2."""
        check_tensor(x, "x")
        t = torch.randint(1, self.T + 1, (len(x),), device=x.device)
        return {"loss": F.mse_loss(self.net(self.degradation(x, t), t), x)}

    def restore(self, x_t: Tensor, t: int | Tensor) -> Tensor:
        """x_hat_0 = R(x_t, t)."""
        check_tensor(x_t, "x_t")
        return self.net(x_t, timesteps(t, len(x_t), self.T, x_t.device))

    def _degrade_pair(self, x0_hat: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(D(x0_hat, t), D(x0_hat, t - 1)).

        The hybrid's both use the noise estimated from x_t (Bansal et al. 2023).
        """
        d = self.degradation
        if isinstance(d, BlurDegradation):
            return d(x0_hat, t), d(x0_hat, t - 1)
        eps_hat = (x_t - d.blur(x0_hat, t)) / d.noise_std(t, x_t)
        return d(x0_hat, t, noise=eps_hat), d(x0_hat, t - 1, noise=eps_hat)

    def _run(
        self, x_T: Tensor, capture: Sequence[int], improved: bool
    ) -> Tensor | tuple[Tensor, dict[int, Tensor]]:
        check_tensor(x_T, "x_T")
        capture = check_capture(capture, self.T)
        x = x_T
        kept = {self.T: x.cpu().clone()} if self.T in capture else {}
        for step in range(self.T, 0, -1):
            t = torch.full((len(x),), step, dtype=torch.int64, device=x.device)
            x0_hat = self.net(x, t)
            if improved:
                d_t, d_prev = self._degrade_pair(x0_hat, x, t)
                x = x - d_t + d_prev
            else:
                x = self._degrade_pair(x0_hat, x, t)[1]
            if step - 1 in capture:
                kept[step - 1] = x.cpu().clone()
        return (x, kept) if capture else x

    @torch.no_grad()
    def sample_naive(
        self, x_T: Tensor, generator: torch.Generator | None = None, capture: Sequence[int] = ()
    ) -> Tensor | tuple[Tensor, dict[int, Tensor]]:
        """Naive sampling (Bansal et al., Algorithm 1): x_{t-1} = D(R(x_t, t), t - 1) for t = T..1.

        Returns x_0.

        Deterministic for the blur (generator unused); the hybrid re-uses the noise estimated from
        x_t.
        """
        del (
            generator
        )  # both degradations are deterministic given x_t (kept for the common sampling signature)
        return self._run(x_T, capture, improved=False)

    @torch.no_grad()
    def sample(
        self, x_T: Tensor, generator: torch.Generator | None = None, capture: Sequence[int] = ()
    ) -> Tensor | tuple[Tensor, dict[int, Tensor]]:
        """Algorithm 4: the improved sampling of cold diffusion, t = T..1.

        x_hat_0 = R(x_t, t), x_{t-1} = x_t - D(x_hat_0, t) + D(x_hat_0, t - 1). Returns x_0, the
        final estimate of the clean image (D(., 0) is the identity), or (x_0, {t: x_t}) with
        `capture`. Deterministic given x_T: starting every sample from the same image (the report's
        black image, torch.full(..., -1.0)) gives identical samples; see degraded_prior for the fix.
        """
        del generator  # deterministic given x_T (kept for the common sampling signature)
        return self._run(x_T, capture, improved=True)

    @torch.no_grad()
    def degraded_prior(
        self, x_train: Tensor, rank: int = 16, generator: torch.Generator | None = None
    ) -> DegradedPrior:
        """DegradedPrior fitted to D(x_train, T) (the hybrid's noise drawn with `generator`)."""
        check_tensor(x_train, "x_train")
        d = self.degradation
        degraded = (
            d(x_train, self.T)
            if isinstance(d, BlurDegradation)
            else d(x_train, self.T, generator=generator)
        )
        return DegradedPrior.fit(degraded, rank)
