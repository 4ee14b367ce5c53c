"""dgm_lib.data.toy2d: exact densities integrate to one and match their samplers; energies and
errors."""

import math

import pytest
import torch
from scipy import integrate
from scipy.stats import norm

from dgm_lib.data.toy2d import TARGETS, get_target

NORMALIZED = ("two_moons", "eight_gaussians", "rings", "checkerboard")
ENERGIES = ("u1", "u2", "u3", "u4", "banana")


def _grid(lim: float, n: int) -> tuple[torch.Tensor, float]:
    """Midpoints of an n x n grid of [-lim, lim]^2 (float64) and the cell area."""
    h = 2 * lim / n
    t = -lim + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    return torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1), h * h


def test_registry():
    assert set(TARGETS) == set(NORMALIZED) | set(ENERGIES)
    assert all(get_target(name).normalized == (name in NORMALIZED) for name in TARGETS)
    assert get_target("rings") is get_target("rings")
    with pytest.raises(ValueError, match="unknown target 'moons'; allowed: two_moons"):
        get_target("moons")


@pytest.mark.parametrize("name", NORMALIZED)
def test_density_integrates_to_one(name):
    grid, area = _grid(5.0, 500)  # cell edges fall on the checkerboard's edges
    total = get_target(name).log_prob(grid).exp().sum() * area
    assert total.item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", NORMALIZED)
def test_samples_match_density(name):
    """Total variation between a 25 x 25 histogram of 200k samples and the bin masses of
    exp(log_prob)."""
    bins, sub, lim = 25, 16, 5.0
    x = get_target(name).sample(
        200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert x.shape == (200_000, 2) and x.abs().max() < lim
    idx = ((x + lim) / (2 * lim) * bins).long()
    counts = torch.bincount(idx[:, 0] * bins + idx[:, 1], minlength=bins * bins).double()
    grid, area = _grid(lim, bins * sub)
    mass = (
        (get_target(name).log_prob(grid).exp() * area)
        .reshape(bins, sub, bins, sub)
        .sum((1, 3))
        .flatten()
    )
    tv = 0.5 * (counts / counts.sum() - mass).abs().sum().item()
    assert tv < 0.03, f"{name}: total variation {tv:.4f}"


def test_banana_normalizer_against_quadrature():
    """log Z of the banana over [-4, 4]^2: Gaussian in x2 given x1, so a 1D integral is exact."""

    def integrand(x1):
        m = x1**2 / 2 - 1
        inside = norm.cdf((4 - m) / 0.5) - norm.cdf((-4 - m) / 0.5)
        return math.exp(-((x1**2 - 4) ** 2) / 4) * 0.5 * math.sqrt(2 * math.pi) * inside

    z, _ = integrate.quad(integrand, -4, 4, epsabs=1e-13, points=[-2, 2])
    assert get_target("banana").log_normalizer == pytest.approx(math.log(z), abs=1e-6)


@pytest.mark.parametrize("name", ENERGIES)
def test_energy_normalizer_is_consistent(name):
    target = get_target(name)
    grid, area = _grid(4.0, 700)  # another resolution than the one log_normalizer uses
    total = (target.log_prob(grid) - target.log_normalizer).exp().sum() * area
    assert total.item() == pytest.approx(1.0, abs=1e-3)
    assert not hasattr(target, "sample")


def test_energy_shapes_follow_the_paper():
    u1, u2 = get_target("u1"), get_target("u2")
    ring = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    lp = u1.log_prob(ring)
    assert (
        lp[0] == pytest.approx(lp[1])
        and lp[0] == pytest.approx(0.0, abs=1e-9)
        and lp[2] < lp[0] - 4
    )
    x1 = torch.linspace(-4, 4, 9, dtype=torch.float64)
    ridge = torch.stack([x1, torch.sin(math.pi * x1 / 2)], dim=-1)
    assert torch.allclose(u2.log_prob(ridge), torch.zeros(9, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("name", TARGETS)
def test_log_prob_follows_dtype_device_and_has_gradients(name):
    target = get_target(name)
    x = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    lp = target.log_prob(x)
    assert lp.shape == (3, 5) and lp.dtype == torch.float64
    if name != "checkerboard":
        (grad,) = torch.autograd.grad(lp.sum(), x)
        assert torch.isfinite(grad).all()
    assert target.log_prob(x.detach().float()).dtype == torch.float32
    assert target.log_prob(torch.zeros(4, 2, device="meta")).device.type == "meta"
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        target.log_prob(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="floating-point"):
        target.log_prob(torch.zeros(4, 2, dtype=torch.long))


def test_checkerboard_support():
    board = get_target("checkerboard")
    points = torch.tensor(
        [[-3.0, -3.0], [-1.0, -3.0], [1.0, 1.0], [4.5, 0.0], [3.9, -3.9]], dtype=torch.float64
    )
    assert board.log_prob(points).tolist() == [
        -math.log(32),
        -math.inf,
        -math.log(32),
        -math.inf,
        -math.inf,
    ]


@pytest.mark.parametrize("name", NORMALIZED)
def test_sample_dtype_determinism_and_errors(name, float64):
    target = get_target(name)
    assert target.sample(10).dtype == torch.float64
    assert target.sample(10, dtype=torch.float32).dtype == torch.float32
    a = target.sample(50, generator=torch.Generator().manual_seed(3))
    b = target.sample(50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        target.sample(0)
    with pytest.raises(ValueError, match="got -2"):
        target.sample(-2)
    with pytest.raises(TypeError, match="n must be a positive int, got float"):
        target.sample(2.5)
