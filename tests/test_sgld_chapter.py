"""The claims of the chapter "SGLD", in float64: the Gaussian linear model's predictive
distribution, the Langevin diffusion's stationary law (through the exact SGLD transition kernel on a
grid), the stationary variance of SGLD on a Gaussian, model averaging vs its members, the moments of
dropout noise, the samplers at temperature 0, the rescaled Gaussian toy; plus
dgm_lib.sgmcmc.chapter, the exercise checks and the widget."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from dgm_lib.exercises import check
from dgm_lib.exercises import sgld as exercises
from dgm_lib.sgmcmc import SGHMC, SGLD
from dgm_lib.sgmcmc.chapter import (
    ChainRun,
    Mixture1D,
    covariance_error,
    distance_to_boundary,
    moons_classification,
    rescaled_gaussian_chains,
    rescaled_gaussian_error,
    run_chains,
)

DT = torch.float64
MIXTURE = Mixture1D([0.35, 0.65], [-1.2, 1.2], [0.45, 0.45])


def normal_pdf(x, mean, var):
    return torch.exp(-0.5 * (x - mean) ** 2 / var) / torch.sqrt(
        2 * math.pi * torch.as_tensor(var, dtype=DT)
    )


def test_linear_gaussian_posterior_and_predictive_match_quadrature():
    """thm-linear-predictive with one feature phi(x) = x: posterior and predictive by quadrature on
    a grid."""
    gen = torch.Generator().manual_seed(0)
    sigma, tau = 0.5, 1.5
    x = torch.rand(15, generator=gen, dtype=DT) * 2 - 1
    y = 0.8 * x + sigma * torch.randn(15, generator=gen, dtype=DT)
    s = 1 / (1 / tau**2 + (x @ x) / sigma**2)
    mu = s * (x @ y) / sigma**2
    theta = torch.linspace(-6, 6, 24_001, dtype=DT)
    log_post = (
        -0.5 * theta**2 / tau**2 - 0.5 * ((y[:, None] - x[:, None] * theta) ** 2).sum(0) / sigma**2
    )
    post = torch.exp(log_post - log_post.max())
    post = post / torch.trapezoid(post, theta)
    assert torch.trapezoid(theta * post, theta).item() == pytest.approx(mu.item(), abs=1e-9)
    assert torch.trapezoid((theta - mu) ** 2 * post, theta).item() == pytest.approx(
        s.item(), rel=1e-7
    )
    assert theta[post.argmax()].item() == pytest.approx(
        mu.item(), abs=1e-3
    )  # the MAP is the posterior mean
    x_new, y_new = torch.tensor(2.0, dtype=DT), torch.tensor([-1.0, 0.5, 3.0], dtype=DT)
    quadrature = torch.stack(
        [torch.trapezoid(normal_pdf(v, theta * x_new, sigma**2) * post, theta) for v in y_new]
    )
    formula = normal_pdf(y_new, mu * x_new, sigma**2 + x_new**2 * s)
    assert torch.allclose(quadrature, formula, rtol=1e-8)
    assert not torch.allclose(
        normal_pdf(y_new, mu * x_new, torch.tensor(sigma**2, dtype=DT)), formula, rtol=1e-2
    )


def _stationary_of_sgld_kernel(eps: float, grid: torch.Tensor) -> torch.Tensor:
    """Stationary cell probabilities of the exact SGLD kernel N(theta'; theta - eps U'(theta), 2
    eps) on the grid."""
    theta = grid.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(MIXTURE.potential(theta[:, None]).sum(), theta)
    kernel = normal_pdf(
        grid[None, :], (grid - eps * grad)[:, None], torch.tensor(2 * eps, dtype=DT)
    )
    kernel = kernel / kernel.sum(1, keepdim=True)
    pi = torch.full_like(grid, 1 / len(grid))
    for _ in range(20_000 if eps < 0.05 else 5000):
        pi = pi @ kernel
    return pi


def test_sgld_kernel_approaches_the_target_as_the_step_shrinks():
    """thm-langevin: the Euler-Maruyama chain's stationary law tends to exp(-U) / Z as eps -> 0
    (bias O(eps))."""
    grid = torch.linspace(-5, 5, 801, dtype=DT)
    target = MIXTURE.log_prob(grid).exp()
    target = target / target.sum()
    tv = [
        0.5 * (_stationary_of_sgld_kernel(eps, grid) - target).abs().sum().item()
        for eps in (0.2, 0.1, 0.05)
    ]
    assert tv[0] > tv[1] > tv[2] and tv[2] < 0.04
    assert tv[0] / tv[1] == pytest.approx(2, rel=0.25) and tv[1] / tv[2] == pytest.approx(
        2, rel=0.25
    )


@pytest.mark.parametrize("sigma2, eps", [(1.0, 0.1), (1.0, 1.0), (0.25, 0.3), (4.0, 7.0)])
def test_sgld_stationary_variance_on_a_gaussian(sigma2, eps):
    """thm-sgld-bias: the variance recursion's fixed point and 20,000 chains of dgm_lib's SGLD."""
    predicted = sigma2 / (1 - eps / (2 * sigma2))
    v = 0.0
    for _ in range(10_000):
        v = (1 - eps / sigma2) ** 2 * v + 2 * eps
    assert v == pytest.approx(predicted, rel=1e-12)
    samples = run_chains(
        "SGLD",
        lambda t: 0.5 * t[:, 0] ** 2 / sigma2,
        torch.zeros(20_000, 1, dtype=DT),
        ChainRun(400, eps, burn_in=300),
        generator=torch.Generator().manual_seed(0),
    )
    assert samples.square().mean().item() == pytest.approx(predicted, rel=0.02)


def test_sgld_diverges_beyond_the_stability_limit():
    """thm-sgld-bias: for eps > 2 sigma^2 the chains blow up; the chapter reports this as inf."""
    assert rescaled_gaussian_chains("SGLD", 0.01, 0.03) is None
    assert rescaled_gaussian_error("SGLD", 0.01, 0.03) == math.inf
    # eps / a = 1.5 < 2: stable but biased, variance a / (1 - eps / (2a)) = 4a along theta_1: error
    # about 4 - 1
    assert rescaled_gaussian_error("SGLD", 0.02, 0.03) == pytest.approx(3.0, abs=0.15)
    assert rescaled_gaussian_chains("SGLD", 0.012, 0.03) is None  # ... eps / a = 2.5 > 2: diverges


def test_model_average_never_loses_in_log_loss():
    """thm-bma-jensen: -log mean_t p_t(y) <= mean_t -log p_t(y), with equality for identical
    members."""
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(
        50, 200, 10, generator=gen, dtype=DT
    )  # (samples, test points, classes)
    y = torch.randint(0, 10, (200,), generator=gen)
    probs = logits.softmax(-1)[:, torch.arange(200), y]
    assert -probs.mean(0).log().mean() <= -probs.log().mean()
    same = probs[:1].expand(5, -1)
    assert (-same.mean(0).log().mean()).item() == pytest.approx(
        (-same.log().mean()).item(), rel=1e-14
    )


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_noise_moments(p):
    """thm-dropout-noise: xi_0 = b / (1 - p) has mean 1 and variance p / (1 - p), exactly (b in {0,
    1})."""
    values, weights = torch.tensor([0.0, 1 / (1 - p)], dtype=DT), torch.tensor([p, 1 - p], dtype=DT)
    mean = (weights * values).sum()
    var = (weights * (values - mean) ** 2).sum()
    assert mean.item() == pytest.approx(1.0, abs=1e-15) and var.item() == pytest.approx(
        p / (1 - p), rel=1e-13
    )
    theta = torch.tensor([-2.0, 0.3, 1.5], dtype=DT)
    masks = torch.bernoulli(
        torch.full((200_000, 3), 1 - p, dtype=DT), generator=torch.Generator().manual_seed(0)
    )
    xi = masks / (1 - p) * theta - theta
    assert torch.allclose(xi.var(0), p / (1 - p) * theta**2, rtol=0.03)


def _trajectory(make_optimizer) -> torch.Tensor:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).to(DT)
    optimizer = make_optimizer(net.parameters())
    gen = torch.Generator().manual_seed(1)
    for _ in range(15):
        x = torch.randn(16, 3, generator=gen, dtype=DT)
        optimizer.zero_grad()
        ((net(x)[:, 0] - x.sum(1).sin()) ** 2).mean().backward()
        optimizer.step()
    return nn.utils.parameters_to_vector(net.parameters()).detach()


def test_samplers_at_temperature_zero_are_their_optimizers():
    """The table's rows 1 and 3: SGLD at T = 0 is SGD, SGHMC at T = 0 is SGD with momentum 1 -
    alpha."""
    assert torch.equal(
        _trajectory(lambda p: SGLD(p, lr=0.1, temperature=0.0)),
        _trajectory(lambda p: torch.optim.SGD(p, lr=0.1)),
    )
    assert torch.allclose(
        _trajectory(lambda p: SGHMC(p, lr=0.05, friction=0.2, temperature=0.0)),
        _trajectory(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8)),
        rtol=0,
        atol=1e-13,
    )


def test_psgld_keeps_one_step_size_across_rescaling_where_sgld_fails():
    """The lecture's toy, as measured in the chapter: eps = 0.03 fixed, target N(0, diag(a, 1))."""
    for a in (0.01, 10.0):
        assert rescaled_gaussian_error("pSGLD", a, 0.03, alpha=0.999) < 0.1
    assert rescaled_gaussian_error("SGLD", 0.03, 0.03) > 0.5
    assert rescaled_gaussian_error("SGLD", 1.0, 0.03) < 0.1


def test_covariance_error_is_scale_free():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(4000, 50, 2, generator=gen, dtype=DT)
    for a in (1e-3, 1.0, 1e3):
        assert covariance_error(u * torch.tensor([math.sqrt(a), 1.0], dtype=DT), a) < 0.01
        assert covariance_error(
            u * torch.tensor([math.sqrt(2 * a), 1.0], dtype=DT), a
        ) == pytest.approx(1.0, abs=0.03)
    assert covariance_error(torch.full((3, 2, 2), math.inf, dtype=DT), 1.0) == math.inf


def test_mixture_density_cdf_and_total_variation():
    theta = torch.linspace(-8, 8, 160_001, dtype=DT)
    density = MIXTURE.log_prob(theta).exp()
    assert torch.trapezoid(density, theta).item() == pytest.approx(1.0, abs=1e-10)
    cut = theta <= 0.3
    assert torch.trapezoid(density[cut], theta[cut]).item() == pytest.approx(
        MIXTURE.cdf(torch.tensor(0.3, dtype=DT)).item(), abs=1e-8
    )
    gen = torch.Generator().manual_seed(0)
    k = torch.multinomial(MIXTURE.weights, 400_000, replacement=True, generator=gen)
    exact = MIXTURE.means[k] + MIXTURE.stds[k] * torch.randn(400_000, generator=gen, dtype=DT)
    edges = torch.linspace(-4, 4, 81, dtype=DT)
    assert MIXTURE.total_variation(exact, edges) < 0.01
    assert MIXTURE.total_variation(torch.full((100,), -1.2, dtype=DT), edges) > 0.9
    outside = torch.full((10,), 9.0, dtype=DT)  # all mass outside the bins: TV = 1 - P(outside)
    assert MIXTURE.total_variation(outside, edges) == pytest.approx(1.0, abs=1e-3)


def test_sgld_histogram_matches_the_mixture_and_sgd_collapses():
    """The chapter's sampling-dynamics claim at a smaller budget."""
    theta0 = torch.full((50, 1), -3.0, dtype=DT)
    edges = torch.linspace(-4, 4, 81, dtype=DT)
    run = ChainRun(3000, 0.03, burn_in=750, grad_noise=2.0)
    runs = {
        name: run_chains(
            name, MIXTURE.potential, theta0, run, generator=torch.Generator().manual_seed(1)
        )
        for name in ("SGLD", "SGD")
    }
    assert MIXTURE.total_variation(runs["SGLD"], edges) < 0.1
    assert MIXTURE.total_variation(runs["SGD"], edges) > 0.7 and (runs["SGD"] < 0).all()


def test_run_chains_rejects_bad_arguments():
    theta0 = torch.zeros(4, 2, dtype=DT)
    potential = lambda t: t.square().sum(1)  # noqa: E731
    with pytest.raises(ValueError, match="sampler"):
        run_chains("Adam", potential, theta0, ChainRun(10, 0.1))
    with pytest.raises(ValueError, match="theta0"):
        run_chains("SGLD", potential, torch.zeros(4, dtype=DT), ChainRun(10, 0.1))
    with pytest.raises(ValueError, match="burn_in"):
        ChainRun(10, 0.1, burn_in=10)
    with pytest.raises(ValueError, match="grad_noise"):
        ChainRun(10, 0.1, grad_noise=-1.0)
    with pytest.raises(ValueError, match="lr"):
        run_chains("SGLD", potential, theta0, ChainRun(10, -0.1))
    assert run_chains(
        "SGHMC", potential, theta0, ChainRun(10, 0.1, burn_in=4), friction=0.5
    ).shape == (6, 4, 2)


def test_moons_labels_and_distance_to_boundary():
    x, y = moons_classification(101, generator=torch.Generator().manual_seed(0))
    assert x.shape == (101, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert int((y == 0).sum()) == 50 and int((y == 1).sum()) == 51
    assert x[y == 0, 1].mean() > x[y == 1, 1].mean()  # the upper moon is class 0
    axis = torch.linspace(-1, 1, 21, dtype=DT)
    points = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1)
    labels = (points[..., 0] > 0.05).long()  # boundary between x_1 = 0 and x_1 = 0.1
    distance = distance_to_boundary(labels, points)
    expected = torch.minimum((points[..., 0] - 0.0).abs(), (points[..., 0] - 0.1).abs()).reshape(-1)
    assert torch.allclose(distance, expected, atol=1e-12)
    with pytest.raises(ValueError, match="single class"):
        distance_to_boundary(torch.zeros(21, 21, dtype=torch.long), points)


def test_exercise_references_pass_and_wrong_answers_fail(capsys):
    assert check("sgld.sgld_step", exercises._sgld_step)
    assert check("sgld.psgld_step", exercises._psgld_step)

    def no_rescaling(th, gp, gl, n_data, eps, xi):
        return th + eps * (gp + gl.sum(0)) + math.sqrt(2 * eps) * xi  # noqa: E731

    assert not check("sgld.sgld_step", no_rescaling)
    wrong_noise = lambda th, gp, gl, n_data, eps, xi: (  # noqa: E731
        th + eps * (gp + n_data / len(gl) * gl.sum(0)) + math.sqrt(eps) * xi
    )
    assert not check("sgld.sgld_step", wrong_noise)

    def no_lambda(th, f, v, eps, alpha, lam, xi):
        return exercises._psgld_step(th, f, v, eps, alpha, 0.0, xi)  # noqa: E731

    assert not check("sgld.psgld_step", no_lambda)
    assert "check 2/3" in capsys.readouterr().out


def test_sgld_explorer_draws_default_and_redraws():
    from dgm_lib.sgmcmc.explorers import sgld_explorer

    box = sgld_explorer()
    controls = box.children[0].children
    assert [c.value for c in controls] == [0.03, "none", 0.03]
    before = len(plt.get_fignums())
    assert before >= 1
    controls[2].value = 0.01  # SGLD diverges: the figure explains instead of failing
    controls[1].value = "0.999"
    assert len(plt.get_fignums()) == before + 2
    plt.close("all")
