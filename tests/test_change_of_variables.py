"""The theorems of the chapter "Change of variables", in float64, and its helpers (viz, zoo configs,
widget, checks)."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from dgm_lib import viz, zoo  # noqa: E402
from dgm_lib.data.toy2d import LIM, WALL, get_target, get_target_for_fit, grid_integral  # noqa: E402
from dgm_lib.exercises import change_of_variables as exercises  # noqa: E402
from dgm_lib.exercises import check  # noqa: E402
from dgm_lib.flows import (  # noqa: E402  # noqa: E402
    IAF,
    MAF,
    AffineCoupling,
    Compose,
    ElementwiseAffine,
    Flow,
    Planar,
    StandardNormal,
    batch_jacobian,
    half_mask,
    make_maf,
    make_realnvp,
    recipes,
    toys,
)
from dgm_lib.zoo import zoo_name  # noqa: E402

DT = torch.float64
ALPHA, BETA, A_SINE = 0.3, 2.0, 0.9


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def log_abs_det(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.slogdet(batch_jacobian(fn, x)).logabsdet


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the maps of the chapter
# --------------------------------------------------------------------------------------------------


def g_1d(z):
    return z + 2 * torch.tanh(3 * z)


def f_1d(x, steps: int = 60):
    lo, hi = x - 2, x + 2
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = g_1d(mid) < x
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def g_radial(z):
    return z * (1 + BETA / (ALPHA + z.norm(dim=-1, keepdim=True)))


def f_radial(x):
    r_x = x.norm(dim=-1, keepdim=True)
    b = ALPHA + BETA - r_x
    return x * 0.5 * (-b + torch.sqrt(b**2 + 4 * ALPHA * r_x)) / r_x


def log_det_g_radial(z):
    h = 1 / (ALPHA + z.norm(dim=-1))
    return torch.log1p(BETA * h) + torch.log1p(ALPHA * BETA * h**2)


def g_sine(z):
    return torch.stack(
        [z[..., 0] + A_SINE * torch.sin(z[..., 1]), z[..., 1] + A_SINE * torch.sin(z[..., 0])], -1
    )


def f_sine(x, steps: int = 400):
    z = x.clone()
    for _ in range(steps):
        z = x - A_SINE * torch.sin(z.flip(-1))
    return z


def log_normal(z):
    return -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


# --- change of variables theorem
# --------------------------------------------------------------------------------------------------


def test_change_of_variables_1d_matches_histogram():
    x = g_1d(torch.randn(400_000, 1, generator=gen(), dtype=DT))
    z_of = lambda t: f_1d(t[:, 0])  # noqa: E731
    right = lambda t: log_normal(z_of(t)[:, None]) - torch.log(1 + 6 / torch.cosh(3 * z_of(t)) ** 2)  # noqa: E731
    freq, mass = viz.binned_masses(x, right, 5.0, 100)
    _, wrong = viz.binned_masses(x, lambda t: log_normal(z_of(t)[:, None]), 5.0, 100)
    assert 0.5 * (freq - mass).abs().sum() < 0.01
    assert 0.5 * (freq - wrong).abs().sum() > 0.5


def test_change_of_variables_2d_radial_matches_histogram_and_integrates_to_one():
    x = g_radial(torch.randn(400_000, 2, generator=gen(), dtype=DT))

    def log_p(t):
        return log_normal(f_radial(t)) + log_abs_det(f_radial, t)

    freq, mass = viz.binned_masses(x, log_p, 5.0, 25)
    assert 0.5 * (freq - mass).abs().sum() < 0.02
    _, total = viz.binned_masses(x, log_p, 12.0, 60, sub=4)
    assert total.sum().item() == pytest.approx(1.0, abs=1e-4)


def test_change_of_variables_equals_product_of_gaussian_conditionals():
    """x_1 = z_1, x_2 = z_2 exp(x_1 / 2) + x_1^2 / 2: the theorem gives N(x_1; 0, 1) N(x_2; x_1^2 /
    2, e^{x_1})."""

    def f(x):
        return torch.stack([x[:, 0], (x[:, 1] - x[:, 0] ** 2 / 2) * torch.exp(-x[:, 0] / 2)], -1)

    x = 2 * torch.randn(200, 2, generator=gen(1), dtype=DT)
    theorem = log_normal(f(x)) + log_abs_det(f, x)
    conditionals = torch.distributions.Normal(0.0, 1.0).log_prob(
        x[:, 0]
    ) + torch.distributions.Normal(x[:, 0] ** 2 / 2, torch.exp(x[:, 0] / 2)).log_prob(x[:, 1])
    assert torch.allclose(theorem, conditionals, rtol=1e-12, atol=1e-12)


# --- volume change, inverse function theorem, composition
# -------------------------------------------------------


def test_cell_area_ratio_converges_to_abs_det_quadratically():
    errors = []
    for n_cells in (8, 16, 32):
        cells, centers = viz.grid_cells(math.pi, n_cells)
        image = g_sine(cells)
        x, y = image[..., 0], image[..., 1]
        area = 0.5 * (x * y.roll(-1, -1) - x.roll(-1, -1) * y).sum(-1)
        det = 1 - A_SINE**2 * torch.cos(centers[:, 0]) * torch.cos(centers[:, 1])
        assert torch.allclose(
            torch.linalg.det(batch_jacobian(g_sine, centers)), det, rtol=0, atol=1e-12
        )
        errors.append((area / (2 * math.pi / n_cells) ** 2 - det).abs().max().item())
    assert errors[0] / errors[1] > 3.3 and errors[1] / errors[2] > 3.7


@pytest.mark.parametrize("maps", [(f_radial, g_radial), (f_sine, g_sine)], ids=["radial", "sine"])
def test_inverse_function_theorem(maps):
    f, g = maps
    x = 3 * torch.randn(300, 2, generator=gen(2), dtype=DT)
    z = f(x)
    assert torch.allclose(g(z), x, rtol=0, atol=1e-12)
    product = batch_jacobian(g, z) @ batch_jacobian(f, x)
    assert torch.allclose(product, torch.eye(2, dtype=DT).expand_as(product), rtol=0, atol=1e-10)
    assert torch.allclose(log_abs_det(f, x), -log_abs_det(g, z), rtol=0, atol=1e-10)
    if g is g_radial:
        assert torch.allclose(log_abs_det(g, z), log_det_g_radial(z), rtol=0, atol=1e-12)


def test_composition_log_dets_add():
    w = torch.tensor([[1.0, 0.5], [-0.3, 0.8]], dtype=DT)
    layers = [
        (lambda z: z @ w.T, lambda z: torch.linalg.slogdet(w).logabsdet.expand(len(z))),
        (g_sine, lambda z: torch.log(1 - A_SINE**2 * torch.cos(z[:, 0]) * torch.cos(z[:, 1]))),
        (g_radial, log_det_g_radial),
    ]

    def composed(z):
        for g, _ in layers:
            z = g(z)
        return z

    z = torch.randn(300, 2, generator=gen(3), dtype=DT)
    summed, h = torch.zeros(len(z), dtype=DT), z
    for g, log_det in layers:
        summed, h = summed + log_det(h), g(h)
    assert torch.allclose(summed, log_abs_det(composed, z), rtol=0, atol=1e-12)


@pytest.mark.parametrize("build", [make_realnvp, make_maf], ids=["realnvp", "maf"])
def test_compose_of_library_layers_sums_log_dets(build):
    torch.manual_seed(0)
    flow = build(m=3, depth=4, hidden=(16, 16)).to(DT)
    x = torch.randn(50, 3, generator=gen(4), dtype=DT)
    z, log_det = flow.transform(x)
    per_layer, h = torch.zeros(len(x), dtype=DT), x
    for layer in flow.transform:
        h, ld = layer(h)
        per_layer = per_layer + ld
    assert isinstance(flow.transform, Compose) and torch.allclose(h, z)
    assert torch.allclose(log_det, per_layer, rtol=0, atol=1e-12)
    assert torch.allclose(
        log_det, log_abs_det(lambda v: flow.transform(v)[0], x), rtol=0, atol=1e-10
    )


# --- Jacobian structures and linear flows
# ---------------------------------------------------------------------------


def test_structured_jacobian_log_dets():
    m = 6
    g = gen(5)
    perm = torch.randperm(m, generator=g)
    lower = torch.tril(torch.randn(m, m, generator=g, dtype=DT), -1)
    s = 0.3 * torch.randn(m, generator=g, dtype=DT)
    x = torch.randn(100, m, generator=g, dtype=DT)
    assert torch.allclose(log_abs_det(lambda v: v[:, perm], x), torch.zeros(len(x), dtype=DT))
    assert torch.allclose(
        log_abs_det(torch.sinh, x), torch.log(torch.cosh(x)).sum(-1), rtol=0, atol=1e-12
    )

    def triangular(v):
        return v * torch.exp(s + torch.tanh(v @ lower.T)) + torch.sin(v @ lower.T)

    jac = batch_jacobian(triangular, x)
    assert (torch.triu(jac, 1) == 0).all()
    assert torch.allclose(
        log_abs_det(triangular, x), (s + torch.tanh(x @ lower.T)).sum(-1), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("m", [1, 5, 64])
def test_lu_and_qr_parametrisations(m):
    g = gen(m)
    p = torch.eye(m, dtype=DT)[torch.randperm(m, generator=g)]
    lower = torch.tril(torch.randn(m, m, generator=g, dtype=DT) / math.sqrt(m), -1) + torch.eye(
        m, dtype=DT
    )
    s = 0.2 * torch.randn(m, generator=g, dtype=DT)
    upper = torch.triu(torch.randn(m, m, generator=g, dtype=DT) / math.sqrt(m), 1) + torch.diag(
        s.exp()
    )
    skew = torch.randn(m, m, generator=g, dtype=DT)
    q = torch.linalg.matrix_exp(0.3 * (skew - skew.T))
    z = torch.randn(m, 4, generator=g, dtype=DT)
    w_lu, w_qr = p @ lower @ upper, q @ upper
    assert torch.linalg.slogdet(w_lu).logabsdet.item() == pytest.approx(s.sum().item(), abs=1e-10)
    assert torch.linalg.slogdet(w_qr).logabsdet.item() == pytest.approx(s.sum().item(), abs=1e-10)
    x_lu = torch.linalg.solve_triangular(
        upper,
        torch.linalg.solve_triangular(lower, p.T @ z, upper=False, unitriangular=True),
        upper=True,
    )
    x_qr = torch.linalg.solve_triangular(upper, q.T @ z, upper=True)
    assert torch.allclose(w_lu @ x_lu, z, atol=1e-10) and torch.allclose(w_qr @ x_qr, z, atol=1e-10)


# --- Gaussian autoregressive flows and coupling layers
# -------------------------------------------------------------


def passes(layer: nn.Module, method: str, x: torch.Tensor) -> tuple[int, tuple]:
    """Calls of the layer's first linear layer (one per network pass) during layer.<method>(x)."""
    calls = []
    first = next(mod for mod in layer.modules() if isinstance(mod, nn.Linear))
    handle = first.register_forward_hook(lambda *_: calls.append(1))
    try:
        result = getattr(layer, method)(x)
    finally:
        handle.remove()
    return len(calls), result


@pytest.mark.parametrize("m", [1, 3, 7])
@pytest.mark.parametrize("cls", [MAF, IAF])
def test_gaussian_autoregressive_passes_and_triangular_jacobian(cls, m):
    torch.manual_seed(m)
    layer = cls(m, hidden=(16, 16)).to(DT)
    x = torch.randn(40, m, generator=gen(6), dtype=DT)
    n_f, (z, log_det_f) = passes(layer, "forward", x)
    n_g, (x_back, log_det_g) = passes(layer, "inverse", z)
    assert (n_f, n_g) == ((1, m) if cls is MAF else (m, 1))
    jac = batch_jacobian(lambda v: layer(v)[0], x)
    assert (torch.triu(jac, 1).abs() < 1e-14).all()
    assert torch.allclose(
        log_det_f, torch.log(torch.diagonal(jac, dim1=1, dim2=2)).sum(-1), rtol=0, atol=1e-10
    )
    assert torch.allclose(x_back, x, rtol=0, atol=1e-10) and torch.allclose(
        log_det_g, -log_det_f, atol=1e-10
    )


def test_coupling_is_an_autoregressive_flow_with_one_pass_each_way():
    m, d = 6, 3
    torch.manual_seed(7)
    layer = AffineCoupling(half_mask(m), (16, 16)).to(DT)
    x = torch.randn(40, m, generator=gen(8), dtype=DT)
    n_f, (z, log_det) = passes(layer, "forward", x)
    n_g, (x_back, _) = passes(layer, "inverse", z)
    jac = batch_jacobian(lambda v: layer(v)[0], x)
    assert (n_f, n_g) == (1, 1) and torch.allclose(x_back, x, atol=1e-12)
    assert (
        torch.equal(jac[:, :d, :d], torch.eye(d, dtype=DT).expand(len(x), d, d))
        and (torch.triu(jac, 1) == 0).all()
    )
    one_over_sigma = torch.diagonal(jac[:, d:, d:], dim1=1, dim2=2)
    assert torch.allclose(log_det, one_over_sigma.log().sum(-1), rtol=0, atol=1e-12)


# --- viz helpers
# --------------------------------------------------------------------------------------------------


def test_binned_masses_and_grid_cells():
    x = torch.rand(1000, 2, generator=gen(9), dtype=DT) * 2 - 1
    freq, mass = viz.binned_masses(
        x, lambda t: torch.full((len(t),), -math.log(4.0), dtype=DT), 1.0, 4
    )
    assert freq.shape == mass.shape == (4, 4) and freq.sum().item() == pytest.approx(1.0)
    assert torch.allclose(mass, torch.full((4, 4), 1 / 16, dtype=DT))
    with pytest.raises(ValueError, match="shape"):
        viz.binned_masses(torch.zeros(5, 3), lambda t: t[:, 0], 1.0, 4)
    cells, centers = viz.grid_cells(2.0, 5, n_points=4)
    assert cells.shape == (25, 16, 2) and centers.shape == (25, 2)
    x, y = cells[..., 0], cells[..., 1]
    area = 0.5 * (x * y.roll(-1, -1) - x.roll(-1, -1) * y).sum(-1)
    assert torch.allclose(area, torch.full((25,), 0.8**2, dtype=DT))  # counterclockwise, side 4 / 5
    ax = viz.plot_cells(cells, area, title="cells")
    assert ax.get_title() == "cells" and len(ax.collections) == 1


def test_plot_scaling_fits_power_laws_and_seconds_per_call():
    sizes = [8, 16, 32, 64]
    slopes = viz.plot_scaling(
        {"cubic": (sizes, [1e-9 * m**3 for m in sizes]), "flat": (sizes, [1e-6] * 4)}
    )
    assert slopes["cubic"] == pytest.approx(3.0) and slopes["flat"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="fit_last"):
        viz.plot_scaling({"a": ([1, 2], [1.0, 2.0])}, fit_last=1)
    assert 0 < viz.seconds_per_call(lambda: sum(range(100)), min_time=1e-3) < 1e-2


# --- zoo configs, widget, exercise checks
# ---------------------------------------------------------------------------


def test_toy_zoo_configs_are_registered_and_validated():
    names = [
        zoo_name(f, t, d) for f in recipes.FLOWS for t in recipes.TARGETS for d in recipes.DEPTHS
    ]
    assert len(names) == 24 and set(names) <= set(zoo.names())
    assert {zoo.entry(name).max_bytes for name in names} == {recipes.CHECKPOINT_BYTES}
    for name in (zoo_name("maf", "u1", 8), zoo_name("maf", "rings", 3)):
        with pytest.raises(ValueError, match=f"unknown zoo config '{name}'"):
            zoo.load(name)


def test_shipped_toy_flows_fit_their_targets():
    """Every shipped checkpoint is within budget, loads, and has KL(pi || p) >= 0 within noise;
    depth helps."""
    total, kl = 0, {}
    for flow in recipes.FLOWS:
        for target in recipes.TARGETS:
            for depth in recipes.DEPTHS:
                name = zoo_name(flow, target, depth)
                path = zoo.checkpoint_path(name)
                assert path.exists(), f"missing checkpoint: python -m dgm_lib.zoo train {name}"
                total += path.stat().st_size
                assert path.stat().st_size <= zoo.entry(name).max_bytes
                model = zoo.load(name, train_if_missing=False, device="cpu")
                kl[flow, target, depth] = mean, se = toys.heldout_kl(model.log_prob, target)
                assert mean > -3 * se
            assert kl[flow, target, 8][0] < kl[flow, target, 2][0]
    assert total < 5 * 2**20


@pytest.mark.parametrize("target", ["eight_gaussians", "u1"])
def test_reverse_kl_estimate_matches_quadrature(target):
    """For p = N(0, I) (an identity flow), the Monte Carlo reverse KL with log Z added agrees with
    the quadrature of p (log p - log pi~) + log Z over the box (log Z = 0 when normalized)."""
    flow = Flow(StandardNormal(2), ElementwiseAffine(2))  # mu = 0, sigma = 1: the identity
    pi = get_target_for_fit(target)
    log_z = pi.log_normalizer if target == "u1" else 0.0

    def integrand(x):
        log_p = -0.5 * x.square().sum(-1) - math.log(2 * math.pi)
        return log_p.exp() * (log_p - pi.log_prob(x))

    exact = grid_integral(integrand, LIM + 8 * WALL, n_grid=800, dtype=DT) + log_z
    mean, se = toys.reverse_kl(flow, target)
    assert 0 < se < 0.1 and abs(mean - exact) < 4 * se
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        toys.reverse_kl(flow, target, n=1)


def test_shipped_planar_flows_fit_their_energies():
    """Every planar checkpoint exists within budget and loads as K planar layers; its reverse KL
    is >= 0 within noise, falls with K by more than 3 standard errors, and K = 32 is within the
    chapter's bound."""
    bounds = {"u1": 0.1, "u2": 0.3}
    assert set(recipes.PLANAR_TARGETS) == set(bounds)
    for target in recipes.PLANAR_TARGETS:
        kls = []
        for depth in recipes.PLANAR_DEPTHS:
            name = zoo_name("planar", target, depth)
            path = zoo.checkpoint_path(name)
            assert path.exists(), f"missing checkpoint: python -m dgm_lib.zoo train {name}"
            assert path.stat().st_size <= zoo.entry(name).max_bytes
            flow = zoo.load(name, train_if_missing=False, device="cpu")
            assert len(flow.transform) == depth
            assert all(isinstance(layer, Planar) for layer in flow.transform)
            kls.append(toys.reverse_kl(flow, target))
        assert all(mean > -3 * se for mean, se in kls)
        assert all(a - 3 * sa > b + 3 * sb for (a, sa), (b, sb) in zip(kls, kls[1:]))
        assert kls[-1][0] + 3 * kls[-1][1] < bounds[target]


def test_heldout_nll_of_the_target_is_its_entropy():
    """Checkerboard is uniform on 8 squares of area 4: H = log 32 exactly, with zero spread."""
    entropy, se = toys.heldout_nll(get_target("checkerboard").log_prob, "checkerboard")
    assert entropy == pytest.approx(math.log(32), abs=1e-6) and se == pytest.approx(0.0, abs=1e-9)


def test_flow_density_explorer_draws_default_and_redraws():
    from dgm_lib.flows.explorers import flow_density_explorer

    box = flow_density_explorer(device="cpu")
    controls = box.children[0].children
    assert [c.value for c in controls] == ["two_moons", "realnvp", 8]
    before = len(plt.get_fignums())
    assert before >= 1  # the default figure was drawn at construction
    controls[1].value = "maf"
    assert len(plt.get_fignums()) == before + 1


def test_exercise_references_pass_and_wrong_answers_fail(capsys):
    assert check("change_of_variables.coupling_forward", exercises._coupling_forward)
    assert check("change_of_variables.maf_inverse", exercises._maf_inverse)
    assert not check(
        "change_of_variables.coupling_forward",
        lambda x, d, c: (x, torch.zeros(len(x), dtype=x.dtype)),
    )

    def one_pass(z, conditioner):  # a single pass is only right for m = 1
        mu, log_sigma = conditioner(torch.zeros_like(z))
        return z * log_sigma.exp() + mu, log_sigma.sum(1)

    assert not check("change_of_variables.maf_inverse", one_pass)
    assert "check 2/3" in capsys.readouterr().out
