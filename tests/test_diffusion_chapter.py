"""The claims of the chapter "DDPM vs blur", in float64: the closed form of the forward process (eq.
3) against the exact moments of the chain (eqs. 1-2), line 3 of Algorithm 2 as the mean of q(z_{t-1}
| z_t, x) (quadrature and dgm_lib's DDPM.step), the signal left at T, the discrete blur kernels,
Algorithm 4 with a restorer that makes a fixed error (exact for a perfect one), identical samples
from one start; plus the exercise checks and the two widgets."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from dgm_lib.diffusion import (
    DDPM,
    BlurDegradation,
    ColdDiffusion,
    ReportCNN,
    cosine_schedule,
    preset_schedule,
)
from dgm_lib.diffusion.schedules import PRESETS
from dgm_lib.exercises import check
from dgm_lib.exercises import diffusion as exercises

DT = torch.float64


@pytest.fixture(autouse=True)
def _float64_default(float64):
    """Schedules and blur kernels are built in torch's default dtype: float64 here (the `float64`
    fixture)."""
    yield


def _schedule64(name: str):
    return preset_schedule(name)


@pytest.mark.parametrize("name", [*PRESETS, "cosine"])
def test_closed_form_equals_the_moments_of_the_iterated_chain(name):
    """prop-closed-form: the mean and variance of z_t under eqs. 1-2, propagated exactly, are
    sqrt(alpha_t) x and 1 - alpha_t."""
    schedule = cosine_schedule(1000) if name == "cosine" else _schedule64(name)
    x = torch.tensor([-1.0, 0.3, 1.0], dtype=DT)
    mean, var = (
        x.clone(),
        torch.zeros((), dtype=DT),
    )  # the chain starts at z_{-1} = x (the report's index t = 0)
    for t in range(schedule.T + 1):
        b = schedule.beta[t]
        mean, var = (1 - b).sqrt() * mean, (1 - b) * var + b
        if t % 97 == 0 or t == schedule.T:
            a = schedule.alpha[t]
            assert torch.allclose(mean, a.sqrt() * x, rtol=1e-9, atol=1e-12)
            assert var.item() == pytest.approx((1 - a).item(), rel=1e-9, abs=1e-12)


def _reverse_moments(schedule, t: int, x: torch.Tensor, eps: torch.Tensor) -> tuple:
    """(z_t, mu~_t in the noise form of line 3, beta~_t) of prop-reverse-mean."""
    a, a_prev, b = schedule.alpha[t], schedule.alpha[t - 1], schedule.beta[t]
    z_t = a.sqrt() * x + (1 - a).sqrt() * eps
    line3 = z_t / (1 - b).sqrt() - b / ((1 - a).sqrt() * (1 - b).sqrt()) * eps
    return z_t, line3, (1 - a_prev) / (1 - a) * b


@pytest.mark.parametrize("name", ["default", "model2_t1000"])
@pytest.mark.parametrize("t", [2, 50, 999])
def test_line_3_is_the_posterior_mean_by_quadrature(name, t):
    """prop-reverse-mean: q(z_{t-1} | z_t, x) by Bayes on a grid has mean = line 3 (true noise) and
    variance beta~_t."""
    schedule = _schedule64(name)
    x, eps = torch.tensor(-0.4, dtype=DT), torch.tensor(0.9, dtype=DT)
    z_t, line3, beta_tilde = _reverse_moments(schedule, t, x, eps)
    grid = torch.linspace(-6, 6, 400_001, dtype=DT)
    b, a_prev = schedule.beta[t], schedule.alpha[t - 1]
    log_post = -0.5 * (z_t - (1 - b).sqrt() * grid) ** 2 / b - 0.5 * (
        grid - a_prev.sqrt() * x
    ) ** 2 / (1 - a_prev)
    post = torch.softmax(log_post, 0)
    mean = (post * grid).sum()
    var = (post * (grid - mean) ** 2).sum()
    assert mean.item() == pytest.approx(line3.item(), abs=1e-9)
    assert var.item() == pytest.approx(beta_tilde.item(), rel=1e-6)
    # the direct form of mu~_t (with x) is the same number
    a = schedule.alpha[t]
    direct = a_prev.sqrt() * b / (1 - a) * x + (1 - b).sqrt() * (1 - a_prev) / (1 - a) * z_t
    assert direct.item() == pytest.approx(line3.item(), abs=1e-12)


def test_ddpm_step_is_line_3_plus_sqrt_beta_noise():
    """DDPM.step = mu~_t (line 3 with the true noise) + sqrt(beta_t) xi, xi from the given
    generator; none at t = 1."""
    ddpm = DDPM(nn.Identity(), _schedule64("model1"))
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(4, 1, 28, 28, generator=gen, dtype=DT) * 2 - 1
    eps = torch.randn(x.shape, generator=gen, dtype=DT)
    t = torch.tensor([1, 2, 900, 1840])
    z_t = ddpm.add_noise(x, eps, t)
    out = ddpm.step(eps, t, z_t, generator=torch.Generator().manual_seed(7))
    xi = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=DT)
    for i, step in enumerate(t.tolist()):
        _, line3, _ = _reverse_moments(ddpm.schedule, step, x[i], eps[i])
        expected = line3 + (ddpm.schedule.beta[step].sqrt() * xi[i] if step > 1 else 0)
        assert torch.allclose(out[i], expected, rtol=1e-10, atol=1e-12)


def test_signal_left_at_T_and_the_rule_of_thumb():
    """alpha_T of the four configs; log alpha_T ~ -(T + 1)(beta1 + beta2) / 2 (the sum of the linear
    betas)."""
    left = {name: _schedule64(name).signal_left() for name in PRESETS}
    assert left["model2_t1000"] == pytest.approx(
        0.60, abs=0.01
    )  # the report's "60% of the signal remains"
    assert all(1e-5 < left[name] < 2e-4 for name in ("default", "model1", "model2"))
    for name, (b1, b2, steps) in PRESETS.items():
        assert -math.log(left[name]) == pytest.approx((steps + 1) * (b1 + b2) / 2, rel=0.02)


def test_blur_kernels_identity_at_small_t_and_truncated_at_T():
    """The discrete kernels: (nearly) the identity for sigma_t < 0.33 (t <= 30), std sigma_t in
    between, 4.87 at T."""
    blur = BlurDegradation()
    offsets = torch.arange(blur.kernel_size, dtype=DT) - blur.kernel_size // 2
    std = (blur.kernels * offsets**2).sum(1).sqrt()
    centre = blur.kernels[:, blur.kernel_size // 2]
    assert (centre[:31] > 0.98).all() and centre[0] == 1
    assert torch.allclose(std[100:301], blur.sigma(torch.arange(100, 301)), rtol=1e-3)
    assert std[500].item() == pytest.approx(4.87, abs=0.01)


class _Oracle(nn.Module):
    def __init__(self, x: torch.Tensor, delta: torch.Tensor):
        super().__init__()
        self.x, self.delta = x, delta

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.x + self.delta


def test_algorithm_4_with_a_fixed_restoration_error():
    """prop-cold-exact: naive sampling returns x + delta, Algorithm 4 returns x + delta - D_T delta,
    on a short blur chain (T = 40, sigma_t = 0.5 + 0.2 t); a constant offset cancels since the blur
    keeps constant images."""
    degradation = BlurDegradation(sigma_base=0.5, sigma_scale=0.2, T=40)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=gen, dtype=DT) * 2 - 1
    x_T = degradation(x, degradation.T)
    for delta in (torch.full_like(x, -0.7), 0.3 * torch.randn(x.shape, generator=gen, dtype=DT)):
        cold = ColdDiffusion(_Oracle(x, delta), degradation)
        assert torch.allclose(cold.sample_naive(x_T), x + delta, atol=1e-12)
        assert torch.allclose(
            cold.sample(x_T), x + delta - degradation(delta, degradation.T), atol=1e-11
        )
    constant = ColdDiffusion(_Oracle(x, torch.full_like(x, 0.5)), degradation).sample(x_T)
    assert (constant - x).abs().max() < 1e-12


def test_algorithm_4_with_a_perfect_restorer_returns_x_exactly():
    """prop-cold-exact with delta = 0 on the report's blur (T = 500); the naive sampler too."""
    degradation = BlurDegradation()
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=DT) * 2 - 1
    cold = ColdDiffusion(_Oracle(x, torch.zeros_like(x)), degradation)
    x_T = degradation(x, degradation.T)
    assert (cold.sample(x_T) - x).abs().max() < 1e-12
    assert (cold.sample_naive(x_T) - x).abs().max() < 1e-12


def test_one_start_image_gives_identical_samples():
    """Algorithm 4 is deterministic: the black start gives one sample n times; different starts give
    different ones."""
    torch.manual_seed(0)
    cold = ColdDiffusion(ReportCNN(T=20), BlurDegradation(T=20))
    black = torch.full((3, 1, 28, 28), -1.0)
    out = cold.sample(black)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    starts = cold.degradation(torch.rand(3, 1, 28, 28) * 2 - 1, 20)
    varied = cold.sample(starts)
    assert (varied[0] - varied[1]).abs().max() > 1e-3


# --- exercises
# --------------------------------------------------------------------------------------------------


def test_exercise_references_pass(capsys):
    assert check("diffusion.forward_sample", exercises._forward_sample)
    assert check("diffusion.cold_step", exercises._cold_step)


def test_exercise_forward_sample_matches_ddpm_add_noise():
    ddpm = DDPM(nn.Identity(), _schedule64("default"))
    gen = torch.Generator().manual_seed(1)
    x, eps = (
        torch.randn(3, 1, 28, 28, generator=gen, dtype=DT),
        torch.randn(3, 1, 28, 28, generator=gen, dtype=DT),
    )
    t = torch.tensor([1, 500, 1000])
    assert torch.allclose(
        exercises._forward_sample(x, t, eps, ddpm.schedule.alpha), ddpm.add_noise(x, eps, t)
    )


def test_exercise_checks_catch_typical_mistakes(capsys):
    def no_sqrt(x, t, eps, alpha):
        return (
            alpha[t].view(-1, 1, 1, 1) * x  # noqa: E731
            + (1 - alpha[t]).view(-1, 1, 1, 1) * eps
        )

    one_alpha = lambda x, t, eps, alpha: alpha[t[0]].sqrt() * x + (1 - alpha[t[0]]).sqrt() * eps  # noqa: E731
    assert not check("diffusion.forward_sample", no_sqrt)
    assert not check("diffusion.forward_sample", one_alpha)
    assert "check 2/3" in capsys.readouterr().out
    naive = lambda x_t, x0_hat, t, degrade: degrade(x0_hat, t - 1)  # noqa: E731
    wrong_input = lambda x_t, x0_hat, t, degrade: x_t - degrade(x_t, t) + degrade(x_t, t - 1)  # noqa: E731
    assert not check("diffusion.cold_step", naive)
    assert not check("diffusion.cold_step", wrong_input)


# --- widgets
# --------------------------------------------------------------------------------------------------


def test_beta_schedule_explorer_presets_and_redraws():
    from dgm_lib.diffusion.explorers import beta_schedule_explorer

    box = beta_schedule_explorer()
    preset, kind, beta1, beta2, steps, t = box.children[0].children
    assert [c.value for c in (preset, kind, beta1, beta2, steps, t)] == [
        "default",
        "linear",
        1e-4,
        0.02,
        1000,
        300,
    ]
    before = len(plt.get_fignums())
    assert before >= 1
    preset.value = "model2"
    assert (beta1.value, beta2.value, steps.value, t.max) == (1e-5, 1e-3, 18300, 18300)
    assert preset.value == "model2" and len(plt.get_fignums()) > before
    t.value = 18300
    beta2.value = 1e-2  # moving a slider away from the preset
    assert preset.value == "custom"
    kind.value = "cosine"
    assert beta1.disabled and beta2.disabled
    steps.value = 500  # t is clipped to the new T and the figure still draws
    assert t.value == 500
    plt.close("all")


def test_blur_schedule_explorer_draws_default_and_redraws():
    from dgm_lib.diffusion.explorers import blur_schedule_explorer

    box = blur_schedule_explorer()
    controls = box.children[0].children
    assert [c.value for c in controls] == [0.02, 0.01, 500, 200, 0.0]
    before = len(plt.get_fignums())
    assert before >= 1
    controls[4].value = 0.3  # the hybrid degradation
    controls[2].value = 100  # T below t: t follows
    assert controls[3].value == 100
    assert len(plt.get_fignums()) >= before + 2
    plt.close("all")
