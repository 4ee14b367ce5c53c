"""Noise schedules of a DDPM.

Beta_t, the signal fraction alpha_t and the SNR, indexed t = 0..T as the report's code.

Linear schedule (report eq. 5): beta_t = (beta_2 - beta_1) t / T + beta_1 for t = 0, ..., T, and
(eq. 6) alpha_t = exp(sum_{i=0}^t log(1 - beta_i)) = prod_{i=0}^t (1 - beta_i), so that z_t =
sqrt(alpha_t) x + sqrt(1 - alpha_t) eps (eq. 3). Note the sum starts at i = 0: alpha_t carries one
extra factor (1 - beta_0) compared with eq. 3's prod_{s=1}^t, exactly like the report's code (Ho et
al. 2020; Prince 2023, ch. 18). Training and sampling use t = 1..T.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_number, check_positive_int, check_real

PRESETS: dict[str, tuple[float, float, int]] = {
    "default": (1e-4, 0.02, 1000),
    "model1": (1e-5, 0.01, 1840),
    "model2": (1e-5, 1e-3, 18300),
    "model2_t1000": (1e-5, 1e-3, 1000),
}


class NoiseSchedule(nn.Module):
    """beta_t and alpha_t = prod_{i<=t} (1 - beta_i) (eq. 6), t = 0..T.

    beta_t and alpha_t = exp(sum_{i<=t} log(1 - beta_i)) (eq. 6) as buffers of length T + 1 (t =
    0..T).

    Computed in float64 and stored in torch's default dtype (float32 unless changed); `.to(dtype)`
    converts them.
    """

    def __init__(self, beta: Tensor):
        super().__init__()
        if not isinstance(beta, Tensor) or beta.dim() != 1 or len(beta) < 2:
            got = tuple(beta.shape) if isinstance(beta, Tensor) else type(beta).__name__
            raise ValueError(
                f"beta must be a 1-D tensor of T + 1 >= 2 values (t = 0..T), got {got}"
            )
        beta64 = beta.detach().to(torch.float64)
        bad = ~(torch.isfinite(beta64) & (beta64 > 0) & (beta64 < 1))
        if bad.any():
            t = int(bad.nonzero()[0])
            value = beta64[t].item()
            raise ValueError(
                f"beta_t must lie in the open interval (0, 1) for every t, got beta_{t} = {value!r}"
            )
        alpha64 = torch.exp(torch.cumsum(torch.log1p(-beta64), dim=0))
        dtype = torch.get_default_dtype()
        self.register_buffer("beta", beta64.to(dtype))
        self.register_buffer("alpha", alpha64.to(dtype))

    @property
    def T(self) -> int:
        """Number of diffusion steps T (the buffers have T + 1 entries)."""
        return len(self.beta) - 1

    def snr(self) -> Tensor:
        """The signal-to-noise ratio alpha_t / (1 - alpha_t), t = 0..T.

        Signal-to-noise ratio alpha_t / (1 - alpha_t) of z_t = sqrt(alpha_t) x + sqrt(1 - alpha_t)
        eps, t = 0..T.
        """
        return self.alpha / (1 - self.alpha)

    def signal_left(self) -> float:
        """alpha_T: the fraction of the signal's variance left in z_T.

        alpha_T: the fraction of the signal's variance left in z_T (should be ~0 for sampling from
        N(0, I)).
        """
        return float(self.alpha[-1])

    def extra_repr(self) -> str:
        first, last = float(self.beta[0]), float(self.beta[-1])
        return (
            f"T={self.T}, beta_0={first:.3g}, beta_T={last:.3g}, alpha_T={self.signal_left():.3g}"
        )


def linear_schedule(beta1: float = 1e-4, beta2: float = 0.02, T: int = 1000) -> NoiseSchedule:
    """The report's linear schedule (eq. 5): beta_t = (beta2 - beta1) t / T + beta1, t = 0..T.

    Ho et al. 2020; alpha_t = prod_{i=0}^t (1 - beta_i) (eq. 6).

    Example:
        >>> schedule = linear_schedule(1e-4, 0.02, 1000)
        >>> schedule.T, round(schedule.signal_left(), 5)
        (1000, 4e-05)
    """
    check_positive_int(T, "T (number of diffusion steps)")
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        check_real(value, name, lambda v: 0 < v < 1, "a finite number in the open interval (0, 1)")
    t = torch.arange(T + 1, dtype=torch.float64)
    return NoiseSchedule((beta2 - beta1) * t / T + beta1)


def cosine_schedule(T: int = 1000, s: float = 0.008) -> NoiseSchedule:
    """Nichol & Dhariwal (2021).

    Abar_t = f(t)/f(0), f(t) = cos^2(pi/2 (t/T + s)/(1 + s)), beta_t = 1 - abar_t/abar_t-1.

    beta_t is clipped at 0.999 (t = T would give 1); the report's extra index t = 0 gets beta_0 =
    beta_1, so alpha_t = (1 - beta_1) abar_t.
    """
    check_positive_int(T, "T (number of diffusion steps)")
    check_number(s, "s (offset of the cosine schedule)")
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    beta = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return NoiseSchedule(torch.cat([beta[:1], beta]))


def preset_schedule(name: str) -> NoiseSchedule:
    """The linear schedule of one of the report's configs: PRESETS[name] = (beta1, beta2, T)."""
    if name not in PRESETS:
        raise ValueError(f"unknown schedule preset {name!r}; allowed: {', '.join(PRESETS)}")
    return linear_schedule(*PRESETS[name])
