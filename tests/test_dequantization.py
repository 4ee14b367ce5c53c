"""dgm_lib.dequantization in float64: discretized (mixture of) logistics sum to one and stay finite
with finite gradients at extreme parameters; the uniform-dequantization bound E_u log p(y + u) <=
log P(y) by Monte Carlo and quadrature; log-dets of Rescale / logit_preprocess / Sigmoid and of the
variational dequantizer against autograd; q(u|y) integrates to one; the variational bound beats the
uniform one after training on a discrete toy; bits/dim, argument errors, the zoo configs."""

from __future__ import annotations

import math

import pytest
import torch

from dgm_lib import zoo
from dgm_lib.data.mnist import mnist_images
from dgm_lib.dequantization import (
    LOG_SCALE_MIN,
    NUM_BINS,
    DequantizedFlow,
    MixtureOfLogistics,
    Rescale,
    UniformDequantizer,
    VariationalDequantizer,
    bits_per_dim,
    check_discrete,
    discretized_logistic_log_prob,
    discretized_mix_logistic_log_prob,
    logistic_cdf,
    logistic_log_prob,
    logit_preprocess,
    make_image_flow,
    make_vector_flow,
    mix_logistic_cdf,
    mix_logistic_log_prob,
    uniform_dequantize,
)
from dgm_lib.dequantization.chapter import evaluate_mnist, quantized_toy2d
from dgm_lib.dequantization.recipes import DEQUANTIZERS, build
from dgm_lib.flows import Sigmoid, batch_jacobian
from dgm_lib.training import FitOptions, fit

pytestmark = pytest.mark.usefixtures("float64", "one_thread")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _params(
    shape: tuple[int, ...], seed: int = 0, mu_scale: float = 100.0
) -> tuple[torch.Tensor, ...]:
    g = _gen(seed)
    logit_pi = torch.randn(shape, generator=g)
    mu = mu_scale * torch.randn(shape, generator=g)
    log_s = 3 * torch.randn(shape, generator=g)
    return logit_pi, mu, log_s


# --- bits/dim and checks
# --------------------------------------------------------------------------------------------------


def test_bits_per_dim_converts_nats():
    log_p = torch.tensor([-784 * math.log(2.0), 0.0, -2 * 784 * math.log(256.0)])
    assert torch.allclose(bits_per_dim(log_p, 784), torch.tensor([1.0, 0.0, 16.0]))


def test_check_discrete_accepts_integers_and_rejects_the_rest():
    check_discrete(torch.tensor([[0.0, 255.0]]), 256)
    check_discrete(torch.tensor([[0, 3]]), 4)
    for bad, match in [
        (torch.tensor([[0.5]]), "integer"),
        (torch.tensor([[256.0]]), r"\{0, ..., 255\}"),
        (torch.tensor([[-1.0]]), r"\{0, ..., 255\}"),
        (torch.tensor([[math.nan]]), "finite"),
        (torch.tensor([[math.inf]]), "finite"),
    ]:
        with pytest.raises(ValueError, match=f"pixels.*{match}|{match}"):
            check_discrete(bad, 256, name="pixels")
    with pytest.raises(ValueError, match="pixels"):
        check_discrete(torch.tensor([[0.5]]), 256, name="pixels")
    with pytest.raises(TypeError, match="y"):
        check_discrete([0, 1], 256)
    with pytest.raises(ValueError, match="num_bins"):
        check_discrete(torch.tensor([[0.0]]), 0)


# --- logistic and mixture
# --------------------------------------------------------------------------------------------------


def test_logistic_density_is_the_derivative_of_its_cdf():
    x = torch.linspace(-5, 5, 41, requires_grad=True)
    mu, log_s = torch.tensor(0.3), torch.tensor(-0.2)
    (grad,) = torch.autograd.grad(logistic_cdf(x, mu, log_s).sum(), x)
    assert torch.allclose(grad, logistic_log_prob(x, mu, log_s).exp(), atol=1e-12)
    logit_pi, mus, log_ss = _params((3,), mu_scale=1.0)
    (grad,) = torch.autograd.grad(mix_logistic_cdf(x, logit_pi, mus, log_ss).sum(), x)
    assert torch.allclose(grad, mix_logistic_log_prob(x, logit_pi, mus, log_ss).exp(), atol=1e-12)


@pytest.mark.parametrize("num_bins", [256, 5])
def test_discretized_logistic_sums_to_one_over_all_bins(num_bins):
    y = torch.arange(num_bins, dtype=torch.float64)[
        :, None
    ]  # (K, 1) against 200 parameter draws (1, 200)
    _, mu, log_s = _params((1, 200), mu_scale=num_bins)
    mu = torch.cat([mu, torch.tensor([[-1e6, 1e6, 0.0, num_bins - 1.0, 127.3]])], 1)
    log_s = torch.cat([log_s, torch.tensor([[-20.0, -20.0, 10.0, -20.0, 5.0]])], 1)
    log_p = discretized_logistic_log_prob(y.expand(-1, mu.shape[1]), mu, log_s, num_bins)
    assert torch.isfinite(log_p).all()
    assert torch.allclose(log_p.exp().sum(0), torch.ones(mu.shape[1]), atol=1e-12)


@pytest.mark.parametrize("num_bins", [256, 5])
def test_discretized_mixture_sums_to_one_over_all_bins(num_bins):
    y = torch.arange(num_bins, dtype=torch.float64)[:, None]
    logit_pi, mu, log_s = _params((50, 4), seed=1, mu_scale=num_bins)
    log_p = discretized_mix_logistic_log_prob(y, logit_pi, mu, log_s, num_bins)  # (K, 50)
    assert log_p.shape == (num_bins, 50)
    assert torch.allclose(log_p.exp().sum(0), torch.ones(50), atol=1e-12)


def test_discretized_logistic_matches_the_cdf_difference():
    y = torch.arange(10, dtype=torch.float64)
    mu, log_s = torch.tensor(4.2), torch.tensor(0.1)
    cdf_hi = torch.where(y == 9, 1.0, logistic_cdf(y + 0.5, mu, log_s))
    cdf_lo = torch.where(y == 0, 0.0, logistic_cdf(y - 0.5, mu, log_s))
    assert torch.allclose(
        discretized_logistic_log_prob(y, mu, log_s, 10), torch.log(cdf_hi - cdf_lo), atol=1e-12
    )


def test_discretized_logistic_finite_values_and_gradients_at_extremes():
    y = torch.tensor([0.0, 1.0, 128.0, 254.0, 255.0]).repeat_interleave(4)
    mu = torch.tensor([-1e8, 1e8, 127.5, 0.0]).repeat(5).requires_grad_(True)
    log_s = torch.tensor([-50.0, -7.0, -3.0, 30.0]).repeat(5).requires_grad_(True)
    log_p = discretized_logistic_log_prob(y, mu, log_s)
    assert torch.isfinite(log_p).all()
    mu_grad, log_s_grad = torch.autograd.grad(log_p.sum(), (mu, log_s))
    assert torch.isfinite(mu_grad).all() and torch.isfinite(log_s_grad).all()
    logit_pi = torch.tensor([[0.0, 1e3, -1e3]]).requires_grad_(True)
    mix = discretized_mix_logistic_log_prob(
        y, logit_pi, mu[:, None].expand(-1, 3), log_s[:, None].expand(-1, 3)
    )
    grads = torch.autograd.grad(mix.sum(), (logit_pi, mu, log_s))
    assert torch.isfinite(mix).all() and all(torch.isfinite(g).all() for g in grads)
    # the clamp: a scale below exp(LOG_SCALE_MIN) gives the same probabilities as exp(LOG_SCALE_MIN)
    y1 = torch.tensor([3.0])
    assert torch.equal(
        discretized_logistic_log_prob(y1, torch.tensor([3.2]), torch.tensor([-40.0])),
        discretized_logistic_log_prob(y1, torch.tensor([3.2]), torch.tensor([LOG_SCALE_MIN])),
    )


# --- the uniform dequantization theorem on a mixture of logistics
# --------------------------------------------


def _mixture(seed: int = 0) -> MixtureOfLogistics:
    torch.manual_seed(seed)
    model = MixtureOfLogistics(3, dim=2, loc=5.0, scale=2.0)
    with torch.no_grad():
        model.log_s.copy_(torch.tensor([[-1.0, 0.0, 0.5], [-0.5, -1.5, 0.2]]))
    return model


def test_dequantized_log_prob_is_the_integral_of_the_density():
    model = _mixture()
    y = torch.tensor([[0.0, 3.0], [5.0, 9.0], [2.0, 2.0]])
    n = 2000  # midpoint rule on [0, 1]^2 per point, separable per dimension
    t = (torch.arange(n) + 0.5) / n
    log_p = mix_logistic_log_prob(
        y[:, None, :] + t[None, :, None], model.logit_pi, model.mu, model.log_s
    )  # (B, n, 2)
    quadrature = torch.log(log_p.exp().mean(1)).sum(1)
    assert torch.allclose(model.dequantized_log_prob(y), quadrature, atol=1e-6)


def test_uniform_bound_holds_by_monte_carlo_and_quadrature():
    model = _mixture()
    y = torch.tensor([[0.0, 3.0], [5.0, 9.0], [2.0, 2.0], [6.0, 4.0]])
    exact = model.dequantized_log_prob(y)
    u = torch.rand(20000, *y.shape, generator=_gen(1))
    mc = model.log_prob((y + u).reshape(-1, 2)).reshape(20000, -1)
    bound, se = mc.mean(0), mc.std(0) / math.sqrt(20000)
    assert (bound + 5 * se < exact).all()  # Jensen: E_u log p(y + u) <= log P(y)
    n = 2000
    t = (torch.arange(n) + 0.5) / n
    log_p = mix_logistic_log_prob(
        y[:, None, :] + t[None, :, None], model.logit_pi, model.mu, model.log_s
    )
    assert (log_p.mean(1).sum(1) <= exact).all()
    assert torch.allclose(log_p.mean(1).sum(1), bound, atol=6 * se.max().item())


def test_mixture_discrete_log_prob_sums_to_one_and_samples_follow_the_cdf():
    model = _mixture()
    grid = torch.cartesian_prod(torch.arange(16.0), torch.arange(16.0))
    assert math.isclose(model.discrete_log_prob(grid, 16).exp().sum().item(), 1.0, abs_tol=1e-12)
    x = model.sample(20000, _gen(3))
    assert x.shape == (20000, 2)
    point = torch.tensor([[4.0, 6.0]])
    empirical = (x <= point).double().mean(0)
    assert torch.allclose(empirical, model.cdf(point)[0], atol=0.015)
    out = model(x[:100])
    assert torch.allclose(out["loss"], -model.log_prob(x[:100]).mean())


# --- transforms: log-dets against autograd, round trips
# ----------------------------------------------------------


@pytest.mark.parametrize(
    "transform, low, high",
    [
        (Rescale(1 / 256), 0.0, 256.0),
        (logit_preprocess(256, 0.05), 0.0, 256.0),
        (Sigmoid(), -6.0, 6.0),
    ],
    ids=["rescale", "logit_preprocess", "sigmoid"],
)
def test_log_dets_match_autograd_and_round_trip(transform, low, high):
    x = low + (high - low) * torch.rand(4, 3, generator=_gen(2))
    z, log_det = transform(x)
    jac = batch_jacobian(lambda v: transform(v)[0], x)
    assert torch.allclose(log_det, torch.linalg.slogdet(jac).logabsdet, atol=1e-9)
    x_back, log_det_inv = transform.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-9)
    assert torch.allclose(log_det_inv, -log_det, atol=1e-9)


def test_logit_preprocess_includes_the_rescaling_log_det():
    x = torch.full((2, 784), 100.0)
    _, log_det = logit_preprocess(256, 0.05)(x)
    s = 0.05 + 0.9 * 100 / 256
    expected = 784 * (math.log(0.9) - math.log(s) - math.log(1 - s) - math.log(256))
    assert torch.allclose(log_det, torch.full((2,), expected))


def test_variational_dequantizer_log_q_is_the_inverse_pass_and_matches_autograd():
    torch.manual_seed(0)
    deq = VariationalDequantizer(3, depth=3, hidden=(16,), num_bins=8)
    for p in deq.parameters():  # leave the identity start
        p.data.normal_(0, 0.3, generator=_gen(4))
    y = torch.tensor([[0.0, 3.0, 7.0], [5.0, 1.0, 2.0]])
    x, log_q = deq(y, _gen(5))
    u = x - y
    assert ((u > 0) & (u < 1)).all()
    assert torch.allclose(deq.log_q(u, y), log_q, atol=1e-9)
    # log q(u|y) = log N(eps) - log|det du/deps| with the Jacobian of eps -> u from autograd
    c = y / 8 - 0.5
    eps, _ = deq._through_couplings(torch.log(u) - torch.log1p(-u), c, inverse=True)

    def to_u(e: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(deq._through_couplings(e, c, inverse=False)[0])

    jac = batch_jacobian(to_u, eps)
    expected = deq.base.log_prob(eps) - torch.linalg.slogdet(jac).logabsdet
    assert torch.allclose(log_q, expected, atol=1e-8)


def _integral_1d(deq: VariationalDequantizer, y: float, n: int = 20000) -> float:
    u = ((torch.arange(n) + 0.5) / n)[:, None]
    return deq.log_q(u, torch.full((n, 1), y)).exp().mean().item()


def test_log_q_integrates_to_one_in_1d_and_2d():
    torch.manual_seed(1)
    deq1 = VariationalDequantizer(1, depth=2, hidden=(8,), num_bins=4)
    for p in deq1.parameters():
        p.data.normal_(0, 0.5, generator=_gen(6))
    for y in (0.0, 3.0):
        assert math.isclose(_integral_1d(deq1, y), 1.0, abs_tol=2e-3)
    deq2 = VariationalDequantizer(2, depth=3, hidden=(8,), num_bins=4)
    for p in deq2.parameters():
        p.data.normal_(0, 0.5, generator=_gen(7))
    n = 400
    t = (torch.arange(n) + 0.5) / n
    u = torch.cartesian_prod(t, t)
    total = deq2.log_q(u, torch.tensor([[1.0, 2.0]]).expand(len(u), -1)).exp().mean().item()
    assert math.isclose(total, 1.0, abs_tol=5e-3)


def test_image_dequantizer_round_trip():
    torch.manual_seed(2)
    deq = VariationalDequantizer((1, 4, 4), depth=2, hidden=(8,), num_bins=NUM_BINS)
    for p in deq.parameters():
        p.data.normal_(0, 0.1, generator=_gen(8))
    y = torch.randint(0, 256, (3, 1, 4, 4), generator=_gen(9)).double()
    x, log_q = deq(y, _gen(10))
    assert x.shape == y.shape and log_q.shape == (3,)
    assert torch.allclose(deq.log_q(x - y, y), log_q, atol=1e-8)


# --- DequantizedFlow
# --------------------------------------------------------------------------------------------------


def test_dequantized_flow_bounds_and_shapes():
    torch.manual_seed(3)
    y = torch.randint(0, 256, (5, 1, 4, 4), generator=_gen(11)).double()
    for deq in (
        None,
        UniformDequantizer(),
        VariationalDequantizer((1, 4, 4), depth=2, hidden=(8,)),
    ):
        model = DequantizedFlow(make_image_flow((1, 4, 4), depth=2, hidden=(8,)), deq)
        assert model.elbo(y, _gen(0)).shape == (5,)
        assert model.log_prob_importance(y, 4, _gen(0)).shape == (5,)
        out = model(y)
        assert {"loss", "bpd", "log_q"} <= out.keys() and torch.isfinite(out["loss"])
        samples = model.sample(7, _gen(1))
        assert samples.shape == (7, 1, 4, 4)
        check_discrete(samples, 256)
    # the importance-weighted bound grows with k (averaged over draws), for a flow that is not the
    # identity
    model = DequantizedFlow(make_image_flow((1, 4, 4), depth=2, hidden=(8,)), UniformDequantizer())
    for p in model.parameters():
        p.data.normal_(0, 0.5, generator=_gen(14))
    with torch.no_grad():
        k1 = torch.stack([model.log_prob_importance(y, 1, _gen(s)) for s in range(50)])
        k16 = torch.stack([model.log_prob_importance(y, 16, _gen(s)) for s in range(50)])
    se = (k1.var(0) / 50 + k16.var(0) / 50).sqrt()
    assert (k16.mean(0) - k1.mean(0) > -3 * se).all() and (k16.mean(0) - k1.mean(0)).mean() > 0


def test_variational_bound_beats_uniform_after_training_on_a_discrete_toy():
    # two moons on a 4 x 4 grid: uniform noise forces boxes onto the flow, q(u|y) lets it stay
    # smooth
    y = quantized_toy2d("two_moons", 512, num_bins=4, generator=_gen(12))
    results = {}
    for name in ("uniform", "variational"):
        torch.manual_seed(0)
        deq = (
            UniformDequantizer()
            if name == "uniform"
            else VariationalDequantizer(2, 2, (16,), num_bins=4)
        )
        model = DequantizedFlow(make_vector_flow(2, 4, depth=2, hidden=(16,)), deq, num_bins=4)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        fit(model, optimizer, list(y.split(128)), FitOptions(steps=200, progress=False))
        with torch.no_grad():
            results[name] = model.bits_per_dim(y.repeat(8, 1), 1, _gen(13)).item()
    assert results["variational"] < results["uniform"] - 0.02, (
        results
    )  # measured 1.49 vs 1.57 bits/dim


def test_uniform_dequantize_stays_in_the_bin_and_is_seeded():
    y = torch.randint(0, 256, (50, 3), generator=_gen(20))
    x = uniform_dequantize(y, _gen(21))
    assert x.dtype == torch.float64 and torch.equal(torch.floor(x), y.double())
    assert torch.equal(x, uniform_dequantize(y, _gen(21))) and not torch.equal(
        x, uniform_dequantize(y, _gen(22))
    )
    assert uniform_dequantize(y.float(), _gen(21)).dtype == torch.float32
    u = x - y
    assert 0.4 < u.mean().item() < 0.6 and (u >= 0).all() and (u < 1).all()


def test_a_continuous_density_on_discrete_points_has_unbounded_likelihood():
    """The degenerate solution: logistic spikes at the integers give log p(y) ~ -log s -> +inf as s
    -> 0 (up to the LOG_SCALE_MIN clamp), while the discrete likelihood of the same model stays <=
    0."""
    y = torch.arange(4.0).repeat(8)[:, None]  # uniform on {0, 1, 2, 3}
    model = MixtureOfLogistics(4, dim=1)
    values = []
    with torch.no_grad():
        model.mu.copy_(torch.arange(4.0)[None])
        for log_s in (0.0, -2.0, -4.0, -6.0):
            model.log_s.fill_(log_s)
            values.append(
                (model.log_prob(y).mean().item(), model.dequantized_log_prob(y).mean().item())
            )
    continuous = [c for c, _ in values]
    assert all(b > a for a, b in zip(continuous, continuous[1:]))
    # separated spikes: p(y) = (1/4) * logistic peak 1 / (4 s), so log p(y) = -log 16 - log s
    assert continuous[-1] == pytest.approx(-math.log(16) + 6.0, abs=1e-6)
    assert continuous[-2] == pytest.approx(-math.log(16) + 4.0, abs=1e-3)
    assert all(d <= 0 for _, d in values)  # a probability is at most 1
    assert values[-1][1] < math.log(
        0.51
    )  # the spike at the bin's left edge keeps only about half of its mass


def test_dequantized_flow_objectives_are_the_named_quantities():
    torch.manual_seed(4)
    y = torch.randint(0, 16, (6, 2), generator=_gen(23)).double()
    flow = make_vector_flow(2, 16, depth=2, hidden=(8,))
    none, uniform = DequantizedFlow(flow, None, 16), DequantizedFlow(flow, UniformDequantizer(), 16)
    assert torch.equal(none.elbo(y), flow.log_prob(y))
    assert torch.equal(uniform.elbo(y, _gen(24)), flow.log_prob(uniform_dequantize(y, _gen(24))))
    # dequantizer None is evaluated with uniform u: the same number as the uniform model
    assert torch.equal(
        none.log_prob_importance(y, 3, _gen(25)), uniform.log_prob_importance(y, 3, _gen(25))
    )
    expected = bits_per_dim(flow.log_prob(uniform_dequantize(y, _gen(26))), 2).mean()
    assert torch.allclose(none.bits_per_dim(y, 1, _gen(26)), expected)
    out = none(y)
    assert (
        torch.allclose(out["loss"], bits_per_dim(flow.log_prob(y), 2).mean()) and out["log_q"] == 0
    )


def test_image_dequantizer_log_det_matches_autograd():
    torch.manual_seed(5)
    deq = VariationalDequantizer((2, 2, 2), depth=2, hidden=(8,), num_bins=4)
    for p in deq.parameters():
        p.data.normal_(0, 0.3, generator=_gen(27))
    y = torch.randint(0, 4, (3, 2, 2, 2), generator=_gen(28)).double()
    c = y / 4 - 0.5
    eps = torch.randn(3, 2, 2, 2, generator=_gen(29))
    h, log_det = deq._through_couplings(eps, c, inverse=False)
    c_flat = c.reshape(3, -1)

    def flat(
        e: torch.Tensor,
    ) -> torch.Tensor:  # rows of the batch are independent: per-sample Jacobian
        images = deq._through_couplings(
            e.reshape(-1, 2, 2, 2), c_flat[: len(e)].reshape(-1, 2, 2, 2), False
        )[0]
        return images.flatten(1)

    jac = batch_jacobian(flat, eps.flatten(1))
    assert torch.allclose(log_det, torch.linalg.slogdet(jac).logabsdet, atol=1e-9)
    back, log_det_inv = deq._through_couplings(h, c, inverse=True)
    assert torch.allclose(back, eps, atol=1e-10) and torch.allclose(
        log_det_inv, -log_det, atol=1e-10
    )


def test_data_helpers():
    pixels = mnist_images("test", "pixels")
    assert pixels.shape == (1000, 1, 28, 28)
    check_discrete(pixels, 256)
    assert pixels.max() == 255 and pixels.min() == 0
    toy = quantized_toy2d("two_moons", 500, num_bins=16, generator=_gen(30))
    assert toy.shape == (500, 2) and torch.equal(
        toy, quantized_toy2d("two_moons", 500, 16, _gen(30))
    )
    check_discrete(toy, 16)
    assert len(torch.unique(toy, dim=0)) > 20  # the moons cover many cells of the grid
    with pytest.raises(ValueError, match="split"):
        mnist_images("validation", "pixels")
    with pytest.raises(ValueError, match="scale"):
        mnist_images("test", "bytes")
    with pytest.raises(ValueError, match="num_bins"):
        quantized_toy2d("two_moons", 10, num_bins=0)
    with pytest.raises(ValueError, match="target"):
        quantized_toy2d("moon", 10)


def test_zoo_configs_share_the_flow_and_the_recipe():
    configs = {
        name: zoo.entry(name)
        for name in ("deq_mnist_none", "deq_mnist_uniform", "deq_mnist_variational")
    }
    flows = {}
    for name, entry in configs.items():
        assert entry.max_bytes <= 3_000_000
        common = {k: v for k, v in entry.config.items() if not k.startswith("dequantizer")}
        flows[name] = common
    assert flows["deq_mnist_none"] == flows["deq_mnist_uniform"] == flows["deq_mnist_variational"]
    model = configs["deq_mnist_variational"].build()
    assert isinstance(model, DequantizedFlow) and isinstance(
        model.dequantizer, VariationalDequantizer
    )
    assert configs["deq_mnist_none"].build().dequantizer is None


def test_evaluate_mnist_columns_on_an_untrained_model():
    torch.manual_seed(6)
    model = build("uniform")
    out = evaluate_mnist(model, k=4, n=8, generator=_gen(31))
    assert set(out) == {
        f"bpd_{c}{se}" for c in ("objective", "elbo", "importance") for se in ("", "_se")
    }
    assert all(math.isfinite(v) for v in out.values())
    # for the uniform model the objective and the k = 1 bound are the same quantity (independent
    # draws of u)
    assert abs(out["bpd_objective"] - out["bpd_elbo"]) < 4 * (out["bpd_elbo_se"] + 1e-3)
    assert out["bpd_importance"] <= out["bpd_elbo"] + 3 * out["bpd_elbo_se"]
    with pytest.raises(TypeError, match="model"):
        evaluate_mnist(model.flow)
    with pytest.raises(ValueError, match="k"):
        evaluate_mnist(model, k=0)


# --- errors
# --------------------------------------------------------------------------------------------------


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="scale"):
        Rescale(0.0)
    with pytest.raises(ValueError, match="alpha"):
        logit_preprocess(256, 0.0)
    with pytest.raises(ValueError, match="num_bins"):
        logit_preprocess(0)
    with pytest.raises(ValueError, match="dim"):
        bits_per_dim(torch.zeros(2), 0)
    with pytest.raises(TypeError, match="log_prob"):
        bits_per_dim([0.0], 2)
    with pytest.raises(TypeError, match="mu"):
        logistic_log_prob(torch.zeros(2), [0.0], torch.zeros(2))
    with pytest.raises(ValueError, match="log_s"):
        logistic_cdf(torch.zeros(2), torch.zeros(2), torch.tensor([0.0, math.nan]))
    with pytest.raises(ValueError, match="broadcast"):
        mix_logistic_log_prob(
            torch.zeros(3), torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 4)
        )
    with pytest.raises(ValueError, match="y"):
        discretized_logistic_log_prob(torch.tensor([256.0]), torch.zeros(1), torch.zeros(1))
    with pytest.raises(TypeError, match="mu"):
        discretized_mix_logistic_log_prob(
            torch.tensor([1.0]), torch.zeros(1, 2), None, torch.zeros(1, 2)
        )
    with pytest.raises(TypeError, match="logit_pi"):
        mix_logistic_cdf(
            torch.zeros(1),
            torch.zeros(1, 2, dtype=torch.long),
            torch.zeros(1, 2),
            torch.zeros(1, 2),
        )
    with pytest.raises(ValueError, match="y"):
        uniform_dequantize(torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match="n_components"):
        MixtureOfLogistics(0)
    with pytest.raises(ValueError, match="event_shape"):
        VariationalDequantizer((2, 3))
    with pytest.raises(ValueError, match="dim"):
        make_vector_flow(1)
    with pytest.raises(ValueError, match="shape"):
        make_image_flow((28, 28))
    with pytest.raises(TypeError, match="dequantizer"):
        DequantizedFlow(make_vector_flow(), "uniform")
    model = DequantizedFlow(make_vector_flow(2, 16), UniformDequantizer(), num_bins=16)
    with pytest.raises(ValueError, match="y"):
        model.elbo(torch.tensor([[16.0, 0.0]]))
    with pytest.raises(ValueError, match="k"):
        model.log_prob_importance(torch.tensor([[1.0, 0.0]]), 0)
    with pytest.raises(ValueError, match="y must have shape"):
        model.elbo(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="num_bins"):
        DequantizedFlow(make_vector_flow(2, 16), VariationalDequantizer(2, num_bins=8), num_bins=16)
    with pytest.raises(TypeError, match="flow"):
        DequantizedFlow(torch.nn.Linear(2, 2), None)
    with pytest.raises(ValueError, match="n"):
        model.sample(0)
    with pytest.raises(TypeError, match="y"):
        uniform_dequantize([[0.0]])
    mixture = MixtureOfLogistics(2, dim=3)
    for method in (
        mixture.log_prob,
        mixture.cdf,
        mixture.discrete_log_prob,
        mixture.dequantized_log_prob,
    ):
        with pytest.raises(ValueError, match=r"\(batch, 3\)"):
            method(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="y"):
        mixture.discrete_log_prob(torch.full((1, 3), 0.5))
    with pytest.raises(ValueError, match="n"):
        mixture.sample(0)
    with pytest.raises(ValueError, match="scale"):
        MixtureOfLogistics(2, scale=-1.0)
    deq = VariationalDequantizer(2, num_bins=8)
    with pytest.raises(ValueError, match="y must have shape"):
        deq(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="y"):
        deq(torch.full((4, 2), 8.0))
    with pytest.raises(ValueError, match="u must lie"):
        deq.log_q(torch.tensor([[0.0, 0.5]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="depth"):
        VariationalDequantizer(2, depth=0)
    with pytest.raises(TypeError, match="hidden"):
        VariationalDequantizer(2, hidden=16)
    with pytest.raises(ValueError, match="depth"):
        make_image_flow((1, 4, 4), depth=0)


# --- the shipped MNIST checkpoints
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_bpd() -> dict[str, dict[str, float]]:
    """evaluate_mnist (k = 4) on the first 60 test digits for each shipped deq_mnist_* model, in
    float32."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        out = {}
        for kind in DEQUANTIZERS:
            name = f"deq_mnist_{kind}"
            assert zoo.checkpoint_path(name).stat().st_size <= zoo.entry(name).max_bytes
            model = zoo.load(name, train_if_missing=False, device="cpu")
            out[kind] = evaluate_mnist(model, "test", k=4, n=60, generator=_gen(40))
        return out
    finally:
        torch.set_default_dtype(previous)


def test_shipped_models_tell_the_dequantization_story(shipped_bpd):
    none, uniform, variational = (shipped_bpd[k] for k in DEQUANTIZERS)
    assert 1.0 < uniform["bpd_elbo"] < 3.0 and uniform["bpd_importance"] <= uniform["bpd_elbo"]
    # no dequantization: the training objective (density at the integers) looks best, the valid
    # bound is worst
    assert none["bpd_objective"] < uniform["bpd_elbo"] - 0.5
    assert none["bpd_importance"] > uniform["bpd_importance"] + 0.3
    assert variational["bpd_importance"] <= variational["bpd_elbo"]
    # the variational bound is tighter than the uniform one (measured 2.02 vs 2.13 bits/dim on all
    # 1000 test digits)
    assert variational["bpd_elbo"] < uniform["bpd_elbo"] - 0.05
    assert variational["bpd_importance"] < uniform["bpd_importance"] - 0.05
