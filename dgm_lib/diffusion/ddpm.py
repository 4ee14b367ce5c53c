"""Denoising diffusion probabilistic model (Ho et al. 2020; Prince 2023, ch. 18).

Algorithms 1 and 2 of the report.

Images live in [-1, 1] (see dgm_lib.diffusion.mnist_images). The network g_t[z_t, phi_t] = net(z_t,
t) predicts the noise eps of z_t = sqrt(alpha_t) x + sqrt(1 - alpha_t) eps (eq. 3), with t an int64
tensor (B,) in 1..T.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_lib.checks import check_dtype_matches, check_positive_int, check_sizes, check_tensor
from dgm_lib.diffusion.schedules import NoiseSchedule


def timesteps(t: int | Tensor, n: int, T: int, device: torch.device, low: int = 1) -> Tensor:
    """`t` as an int64 tensor (n,) on `device`, checked in low..T.

    `t` (an int, or an integer tensor of shape () or (n,)) as an int64 tensor (n,) on `device`,
    checked in low..T.
    """
    if isinstance(t, Tensor):
        if (
            t.is_floating_point()
            or t.is_complex()
            or t.dtype == torch.bool
            or t.dim() > 1
            or t.numel() not in (1, n)
        ):
            got = f"{t.dtype} {tuple(t.shape)}"
            raise ValueError(
                f"t must be an int or an integer tensor of shape () or ({n},), got {got}"
            )
        t = t.to(device=device, dtype=torch.int64).reshape(-1).expand(n)
    elif isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__} {t!r}")
    else:
        t = torch.full((n,), t, dtype=torch.int64, device=device)
    if n and (t.min() < low or t.max() > T):
        raise ValueError(f"t must lie in {low}..{T}, got values in {int(t.min())}..{int(t.max())}")
    return t


def check_capture(capture: Sequence[int], T: int) -> tuple[int, ...]:
    """`capture` as a tuple of timesteps in 0..T (ValueError otherwise)."""
    capture = tuple(capture)
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= T for c in capture):
        raise ValueError(f"capture must be a tuple of int timesteps in 0..{T}, got {capture!r}")
    return capture


def _per_sample(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """values[t] shaped (B, 1, ..., 1) to broadcast against `like`, in its dtype."""
    return values[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _check_net_fits(net: nn.Module, T: int, shape: tuple[int, ...]) -> None:
    """ValueError when the network's time embedding or image size disagrees with T or `shape`."""
    for module in net.modules():
        net_T = getattr(getattr(module, "time", None), "T", None)
        if isinstance(net_T, int) and net_T != T:
            raise ValueError(
                f"net was built for T = {net_T} timesteps but the schedule has T = {T}; build "
                f"both with the same T"
            )
    size, channels = getattr(net, "image_size", None), getattr(net, "channels", None)
    if isinstance(size, int) and tuple(shape[-2:]) != (size, size):
        raise ValueError(f"net expects {size} x {size} images but shape is {shape}")
    if isinstance(channels, int) and len(shape) == 3 and shape[0] != channels:
        raise ValueError(f"net expects {channels} channel(s) but shape is {shape}")


class DDPM(nn.Module):
    """A DDPM: a noise-predicting network `net(z_t, t)` with a NoiseSchedule (Ho et al. 2020).

    `forward(x)` is Algorithm 1's loss, `sample(n)` Algorithm 2; images live in [-1, 1] and
    samples have shape (n, *shape).
    """

    def __init__(self, net: nn.Module, schedule: NoiseSchedule, shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net, self.schedule, self.shape = net, schedule, check_sizes(shape, "shape")
        _check_net_fits(net, schedule.T, self.shape)

    @property
    def T(self) -> int:
        """The number of steps T."""
        return self.schedule.T

    def add_noise(self, x: Tensor, eps: Tensor, t: int | Tensor) -> Tensor:
        """The closed-form forward sample (eq. 3): z_t = sqrt(alpha_t) x + sqrt(1 - alpha_t) eps.

        Args:
            x: clean images (B, C, H, W).
            eps: noise of the same shape.
            t: a timestep in 0..T, or one per image (B,).

        Returns:
            z_t, the shape of x.
        """
        check_tensor(x, "x")
        if eps.shape != x.shape:
            raise ValueError(
                f"eps must have the shape of x {tuple(x.shape)}, got {tuple(eps.shape)}"
            )
        alpha = _per_sample(self.schedule.alpha, timesteps(t, len(x), self.T, x.device, low=0), x)
        return alpha.sqrt() * x + (1 - alpha).sqrt() * eps

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Algorithm 1: the loss of noise prediction at a random timestep.

        t ~ U{1..T}, eps ~ N(0, I),
        loss = pixel mean of (g_t[sqrt(a_t) x + sqrt(1 - a_t) eps] - eps)^2.
        """
        check_tensor(x, "x")
        check_dtype_matches(x, self.net, "x")
        t = torch.randint(1, self.T + 1, (len(x),), device=x.device)
        eps = torch.randn_like(x)
        return {"loss": F.mse_loss(self.net(self.add_noise(x, eps, t), t), eps)}

    def step(
        self,
        eps_hat: Tensor,
        t: int | Tensor,
        z_t: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Algorithm 2, lines 3-5 (line 7 at t = 1, no noise): one ancestral step z_t -> z_{t-1}.

        z_{t-1} = z_t / sqrt(1 - beta_t) - beta_t / (sqrt(1 - alpha_t) sqrt(1 - beta_t)) eps_hat +
        sigma_t eps, sigma_t = sqrt(beta_t), eps ~ N(0, I) drawn with `generator`, and sigma_1 eps
        left out.
        """
        check_tensor(z_t, "z_t")
        if eps_hat.shape != z_t.shape:
            raise ValueError(
                f"eps_hat must have the shape of z_t {tuple(z_t.shape)}, got {tuple(eps_hat.shape)}"
            )
        t = timesteps(t, len(z_t), self.T, z_t.device)
        beta = _per_sample(self.schedule.beta, t, z_t)
        alpha = _per_sample(self.schedule.alpha, t, z_t)
        mean = (z_t - beta / (1 - alpha).sqrt() * eps_hat) / (1 - beta).sqrt()
        noise = torch.randn(z_t.shape, generator=generator, device=z_t.device, dtype=z_t.dtype)
        return mean + beta.sqrt() * noise * (t > 1).reshape_as(beta)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, capture: Sequence[int] = ()
    ) -> Tensor | tuple[Tensor, dict[int, Tensor]]:
        """Algorithm 2: z_T ~ N(0, I), then T ancestral steps.

        x (n, *shape), or (x, {t: z_t}) when `capture` is given.

        z_0 is the sample x; captured states are copies on the CPU.
        """
        check_positive_int(n, "n")
        capture = check_capture(capture, self.T)
        ref = self.schedule.alpha
        z = torch.randn((n, *self.shape), generator=generator, device=ref.device, dtype=ref.dtype)
        kept = {self.T: z.cpu().clone()} if self.T in capture else {}
        for t in range(self.T, 0, -1):
            tt = torch.full((n,), t, dtype=torch.int64, device=z.device)
            z = self.step(self.net(z, tt), tt, z, generator)
            if t - 1 in capture:
                kept[t - 1] = z.cpu().clone()
        return (z, kept) if capture else z

    @torch.no_grad()
    def forward_trajectory(
        self, x: Tensor, steps: int | Sequence[int], generator: torch.Generator | None = None
    ) -> Tensor | dict[int, Tensor]:
        """The forward chain z_t = sqrt(1 - beta_t) z_{t-1} + sqrt(beta_t) eps_t (eq. 1-2).

        Iterate the forward chain (eq. 1-2) z_t = sqrt(1 - beta_t) z_{t-1} + sqrt(beta_t) eps_t from
        z_{-1} = x.

        The chain starts with the report's extra index t = 0 (z_0 = sqrt(1 - beta_0) x +
        sqrt(beta_0) eps_0), so that z_t ~ N(sqrt(alpha_t) x, (1 - alpha_t) I) with eq. 6's alpha_t,
        which eq. 3 samples in one go. `steps` an int: returns z_steps; a sequence of timesteps:
        returns {t: z_t} for each of them.
        """
        check_tensor(x, "x")
        wanted = (steps,) if isinstance(steps, int) and not isinstance(steps, bool) else steps
        wanted = check_capture(wanted, self.T)
        if not wanted:
            raise ValueError("steps must be an int or a non-empty sequence of timesteps")
        kept, z = {}, x
        for t in range(max(wanted) + 1):
            beta = self.schedule.beta[t].to(x.dtype)
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            z = (1 - beta).sqrt() * z + beta.sqrt() * eps
            if t in wanted:
                kept[t] = z
        return kept[steps] if isinstance(steps, int) else kept
