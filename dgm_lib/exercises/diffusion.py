"""Checks of the exercises of the chapter "DDPM vs blur", in the order of its graded path.

Warm-up: alpha_t of the report's linear schedule (eqs. 5-6). Derivation: the mean of the posterior
q(z_{t-1} | z_t, x), which the check compares with the mean that Algorithm 2 (line 3) computes from
the true noise. Implementations: the closed-form forward sample (eq. 3) and one step of the improved
cold-diffusion sampler (Algorithm 4). Experiment: noisy test digits denoised by Algorithm 2 with
the shipped default model (checked by the property: closer to the clean digits than the noisy
input). Open question: why model 2 at T = 1000 fails, and predictability against robustness.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
from torch import Tensor

from .registry import Case, open_question, register, register_reference

DT = torch.float64

# --- warm-up: alpha_t of the linear schedule

_ALPHA_HINT = (
    "t runs over 0..T (T + 1 values): beta = beta1 + (beta2 - beta1) * torch.arange(T + 1, "
    "dtype=torch.float64) / T (eq. 5), then alpha = torch.exp(torch.cumsum(torch.log1p(-beta), "
    "0)) (eq. 6): the cumulative product of 1 - beta_i, not of beta_i, in float64."
)


@register_reference("diffusion.alpha_schedule")
def alpha_schedule(beta1: float, beta2: float, T: int) -> Tensor:
    """Reference: alpha_t = prod_{i=0}^t (1 - beta_i), beta_t = (beta2 - beta1) t / T + beta1
    (eqs. 5-6), t = 0..T, float64, shape (T + 1,)."""
    beta = beta1 + (beta2 - beta1) * torch.arange(T + 1, dtype=DT) / T
    return torch.exp(torch.cumsum(torch.log1p(-beta), dim=0))


def _schedule64(beta1: float, beta2: float, steps: int) -> tuple[Tensor, Tensor]:
    """(beta_t, alpha_t), t = 0..T, in float64; alpha by the plain cumulative product, another
    route than eq. (6)'s log sum."""
    beta = (beta2 - beta1) * torch.arange(steps + 1, dtype=DT) / steps + beta1
    return beta, torch.cumprod(1 - beta, dim=0)


def _alpha_case(beta1: float, beta2: float, steps: int) -> Case:
    expected = _schedule64(beta1, beta2, steps)[1]
    return Case(args=(beta1, beta2, steps), expected=expected, rtol=1e-9, atol=1e-12)


@register("diffusion.alpha_schedule", "T = 4, beta from 0.1 to 0.5: five values", hint=_ALPHA_HINT)
def _alpha_small() -> Case:
    return _alpha_case(0.1, 0.5, 4)


@register("diffusion.alpha_schedule", "the default config (1e-4, 0.02, 1000)", hint=_ALPHA_HINT)
def _alpha_default() -> Case:
    return _alpha_case(1e-4, 0.02, 1000)


@register(
    "diffusion.alpha_schedule",
    "model 2 (1e-5, 1e-3, T = 18,300): a product of 18,301 factors",
    hint=_ALPHA_HINT,
)
def _alpha_model2() -> Case:
    return _alpha_case(1e-5, 1e-3, 18300)


# --- derivation: the mean of the posterior q(z_{t-1} | z_t, x)

_POSTERIOR_HINT = (
    "by Bayes, q(z_{t-1} | z_t, x) is Gaussian with mean sqrt(alpha_{t-1}) beta_t / (1 - "
    "alpha_t) * x + sqrt(1 - beta_t) (1 - alpha_{t-1}) / (1 - alpha_t) * z_t: x gets alpha_{t-1} "
    "(index t - 1), z_t gets sqrt(1 - beta_t); pick one value per image, alpha[t - 1].view(-1, 1, "
    "1, 1)."
)


@register_reference("diffusion.posterior_mean")
def posterior_mean(x: Tensor, z_t: Tensor, t: Tensor, beta: Tensor, alpha: Tensor) -> Tensor:
    """Reference: the mean of q(z_{t-1} | z_t, x) (Ho et al. 2020, eq. 7), one t per image.

    mu = sqrt(alpha_{t-1}) beta_t / (1 - alpha_t) x + sqrt(1 - beta_t) (1 - alpha_{t-1}) /
    (1 - alpha_t) z_t.
    """
    shape = (-1, *[1] * (x.dim() - 1))
    b, a, a_prev = beta[t].view(shape), alpha[t].view(shape), alpha[t - 1].view(shape)
    return (a_prev.sqrt() * b * x + (1 - b).sqrt() * (1 - a_prev) * z_t) / (1 - a)


def _algorithm2_mean(x: Tensor, z_t: Tensor, t: Tensor, beta: Tensor, alpha: Tensor) -> Tensor:
    """Algorithm 2, line 3, with the true noise eps = (z_t - sqrt(alpha_t) x) / sqrt(1 - alpha_t):
    (z_t - beta_t / sqrt(1 - alpha_t) eps) / sqrt(1 - beta_t), the posterior mean by another
    route."""
    shape = (-1, *[1] * (x.dim() - 1))
    b, a = beta[t].view(shape), alpha[t].view(shape)
    eps = (z_t - a.sqrt() * x) / (1 - a).sqrt()
    return (z_t - b / (1 - a).sqrt() * eps) / (1 - b).sqrt()


def _posterior_case(t: list[int], beta1: float, beta2: float, steps: int, seed: int) -> Case:
    beta, alpha = _schedule64(beta1, beta2, steps)  # alpha_t = alpha_{t-1} (1 - beta_t) exactly
    x = _randn(len(t), 1, 28, 28, seed=seed).clamp(-1, 1)
    tt = torch.tensor(t)
    z_t = _forward_sample(x, tt, _randn(len(t), 1, 28, 28, seed=seed + 1), alpha)
    args = (x, z_t, tt, beta, alpha)
    return Case(args=args, expected=_algorithm2_mean(*args), rtol=1e-8, atol=1e-10)


@register(
    "diffusion.posterior_mean",
    "one image at t = 500 of the default schedule: the mean of Algorithm 2, line 3",
    hint=_POSTERIOR_HINT,
)
def _posterior_one() -> Case:
    return _posterior_case([500], 1e-4, 0.02, 1000, seed=30)


@register(
    "diffusion.posterior_mean",
    "a batch at t = 2, 3, 50, 1000 (one t per image)",
    hint=_POSTERIOR_HINT,
)
def _posterior_batch() -> Case:
    return _posterior_case([2, 3, 50, 1000], 1e-4, 0.02, 1000, seed=40)


# --- implementations: the forward sample (eq. 3) and one step of Algorithm 4

_FORWARD_HINT = (
    "pick the alphas of the batch's timesteps, a = alpha[t] (shape (B,)), reshape them to "
    "broadcast over the image, a.view(-1, *[1] * (x.dim() - 1)), then return sqrt(a) * x + sqrt(1 "
    "- a) * eps: the square roots of alpha_t and 1 - alpha_t (the standard deviations), not "
    "alpha_t itself, and one alpha per sample."
)
_COLD_HINT = (
    "degrade the restored image x0_hat, not x_t: return x_t - degrade(x0_hat, t) + degrade(x0_hat, "
    "t - 1). Returning only degrade(x0_hat, t - 1) is the naive sampler, which lets the restorer's "
    "errors through."
)


@register_reference("diffusion.forward_sample")
def _forward_sample(x: Tensor, t: Tensor, eps: Tensor, alpha: Tensor) -> Tensor:
    """Reference: z_t = sqrt(alpha_t) x + sqrt(1 - alpha_t) eps (eq. 3), alpha_t = alpha[t] per
    sample."""
    a = alpha[t].view(-1, *[1] * (x.dim() - 1))
    return a.sqrt() * x + (1 - a).sqrt() * eps


@register_reference("diffusion.cold_step")
def _cold_step(
    x_t: Tensor, x0_hat: Tensor, t: Tensor, degrade: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """Reference: x_{t-1} = x_t - D(x0_hat, t) + D(x0_hat, t - 1) (Algorithm 4, line 3; Bansal et
    al. 2023)."""
    return x_t - degrade(x0_hat, t) + degrade(x0_hat, t - 1)


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _alpha(beta1: float, beta2: float, steps: int) -> Tensor:
    """alpha_t of the report's linear schedule (eqs. 5-6), t = 0..T, in float64."""
    from dgm_lib.diffusion.schedules import linear_schedule

    return linear_schedule(beta1, beta2, steps).to(DT).alpha


def _forward_case(batch: int, t: list[int], alpha: Tensor, seed: int) -> Case:
    args = (
        _randn(batch, 1, 28, 28, seed=seed).clamp(-1, 1),
        torch.tensor(t),
        _randn(batch, 1, 28, 28, seed=seed + 1),
        alpha,
    )
    return Case(args=args, expected=_forward_sample(*args), rtol=1e-10, atol=1e-12)


@register(
    "diffusion.forward_sample", "one image at t = 500 of the default schedule", hint=_FORWARD_HINT
)
def _forward_one() -> Case:
    return _forward_case(1, [500], _alpha(1e-4, 0.02, 1000), seed=0)


@register(
    "diffusion.forward_sample",
    "a batch of 4 images at t = 1, 10, 100, 1000 (one alpha_t per image)",
    hint=_FORWARD_HINT,
)
def _forward_batch() -> Case:
    return _forward_case(4, [1, 10, 100, 1000], _alpha(1e-4, 0.02, 1000), seed=10)


@register(
    "diffusion.forward_sample",
    "model 2 (beta2 = 1e-3, T = 18,300) at t = 1,000 and 18,300",
    hint=_FORWARD_HINT,
)
def _forward_model2() -> Case:
    return _forward_case(2, [1000, 18300], _alpha(1e-5, 1e-3, 18300), seed=20)


def _fade(x: Tensor, t: Tensor) -> Tensor:
    """A toy linear degradation: D(x, t) = (1 - t / 10) x, per sample (fades to black at t = 10)."""
    return (1 - t.to(x.dtype) / 10).view(-1, *[1] * (x.dim() - 1)) * x


def _blur() -> Callable[[Tensor, Tensor], Tensor]:
    """The report's blur D(x, t) (eq. 7: sigma_t = 0.02 + 0.01 t, T = 500) in float64."""
    from dgm_lib.diffusion.cold import BlurDegradation

    return BlurDegradation().to(DT)


def _cold_case(degrade: Callable[[Tensor, Tensor], Tensor], t: list[int], seed: int) -> Case:
    n = len(t)
    args = (
        _randn(n, 1, 28, 28, seed=seed),
        _randn(n, 1, 28, 28, seed=seed + 1).tanh(),
        torch.tensor(t),
        degrade,
    )
    return Case(args=args, expected=_cold_step(*args), rtol=1e-9, atol=1e-11)


@register(
    "diffusion.cold_step",
    "a toy fading degradation D(x, t) = (1 - t/10) x at t = 3",
    hint=_COLD_HINT,
)
def _cold_fade() -> Case:
    return _cold_case(_fade, [3], seed=0)


@register(
    "diffusion.cold_step",
    "the report's blur at t = 1 and t = 500 (one timestep per image)",
    hint=_COLD_HINT,
)
def _cold_blur() -> Case:
    return _cold_case(_blur(), [1, 500], seed=10)


@register(
    "diffusion.cold_step", "the report's blur, a batch of 3 at t = 50, 200, 350", hint=_COLD_HINT
)
def _cold_blur_batch() -> Case:
    return _cold_case(_blur(), [50, 200, 350], seed=20)


# --- the experiment: noisy test digits denoised by Algorithm 2 with the shipped default model

DENOISE_T = 100  # alpha_100 = 0.89: the digits are visible under noise of std 0.33
_DENOISE_HINT = (
    "for s = t, t - 1, ..., 1: eps_hat = model.net(z, torch.full((len(z),), s)), then z = (z - "
    "beta_s / sqrt(1 - alpha_s) * eps_hat) / sqrt(1 - beta_s) + sqrt(beta_s) * noise, with noise "
    "~ N(0, I) from the generator and no noise at s = 1 (beta = model.schedule.beta, alpha = "
    "model.schedule.alpha); run it under torch.no_grad() and return z_0."
)


@register_reference("diffusion.denoise")
@torch.no_grad()
def denoise(model, z_t: Tensor, t: int, generator: torch.Generator) -> Tensor:
    """Reference: Algorithm 2 from step t down to 1 on z_t, with the model's noise prediction.

    z_{s-1} = (z_s - beta_s / sqrt(1 - alpha_s) eps_hat) / sqrt(1 - beta_s) + sqrt(beta_s) eps,
    without the noise at s = 1.

    Args:
        model: a DDPM (its `net` predicts the noise, `schedule` holds beta and alpha).
        z_t: noisy images at step t, (B, 1, 28, 28).
        t: the step of z_t, 1..T.
        generator: the random numbers of the ancestral steps.

    Returns:
        z_0, the denoised images.
    """
    z = z_t
    for s in range(t, 0, -1):
        z = model.step(model.net(z, torch.full((len(z),), s)), s, z, generator)
    return z


@lru_cache(maxsize=1)
def _default_model():
    from dgm_lib import zoo

    return zoo.load("ddpm_default", device="cpu").eval()


@lru_cache(maxsize=1)
def _test_digits() -> Tensor:
    from dgm_lib.data.mnist import mnist_images

    return mnist_images("test", "signed")[:8].clone()


def _rms(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).square().mean().sqrt())


def _cleaner(x: Tensor, z_t: Tensor) -> Callable[[object], str | None]:
    """verify(result): the result has the shape of x, is finite, and its RMS distance to the clean
    digits is below 0.6 of the noisy input's (Algorithm 2 reaches about 0.4)."""
    noisy = _rms(z_t, x)

    def verify(result: object) -> str | None:
        if not isinstance(result, Tensor) or result.shape != x.shape:
            got = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
            return f"return the denoised images, a tensor of shape {tuple(x.shape)}; got {got}"
        if not torch.isfinite(result).all():
            return "the denoised images contain NaN or inf"
        ratio = _rms(result, x) / noisy
        what = (
            f"the RMS distance to the clean digits went from {noisy:.3f} (noisy) to "
            f"{_rms(result, x):.3f}, {ratio:.2f} times, and should fall below 0.6 times"
        )
        if ratio > 1.5:
            return (
                f"{what}: the images got noisier; subtract the predicted noise, z - beta_s / "
                "sqrt(1 - alpha_s) * eps_hat, and use beta_s for the added noise's variance"
            )
        if ratio > 0.6:
            return (
                f"{what}: did all t steps run, from s = t down to 1, each with its own s "
                "passed to model.net?"
            )
        return None

    return verify


def _denoise_case(seed: int) -> Case:
    model, x = _default_model(), _test_digits()
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(x.shape, generator=generator)
    with torch.no_grad():
        z_t = model.add_noise(x, eps, DENOISE_T)
    verify = _cleaner(x, z_t)
    return Case(args=(model, z_t, DENOISE_T, generator), verify=verify)


@register(
    "diffusion.denoise",
    "8 test digits noised to t = 100 and denoised by the shipped default model (any seed)",
    hint=_DENOISE_HINT,
)
def _denoise_default() -> Case:
    return _denoise_case(seed=7)


open_question(
    "diffusion.model2_and_robustness",
    "why model 2 at T = 1000 fails, and predictability against robustness",
)
