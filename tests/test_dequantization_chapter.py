"""The claims of the chapter "Dequantization", in float64: the degenerate spike mixture (unbounded
likelihood at the integers, unbounded below between them), the CDF discretization with and without
the edge rule, the uniform and the variational dequantization bounds with their gaps as KL
divergences (tight for a staircase density and for the optimal noise); plus the exercise checks and
the dequantization explorer."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from dgm_lib.dequantization import (
    MixtureOfLogistics,
    VariationalDequantizer,
    discretized_mix_logistic_log_prob,
    logistic_log_prob,
    mix_logistic_cdf,
)
from dgm_lib.exercises import check

DT = torch.float64
NODES = (torch.arange(2000, dtype=DT) + 0.5) / 2000  # midpoint rule on [0, 1]


def spike_log_prob(
    x: torch.Tensor, values: torch.Tensor, weights: torch.Tensor, s: float
) -> torch.Tensor:
    """log p_s(x) = log sum_v Pi(v) prod_j Logistic(x_j | v_j, s), x (N, D), values (V, D): the
    theorem's mixture."""
    log_s = torch.tensor(math.log(s), dtype=DT)
    per_value = logistic_log_prob(x[:, None, :], values[None], log_s).sum(-1)  # (N, V)
    return torch.logsumexp(weights.log() + per_value, dim=1)


@pytest.mark.parametrize("dim", [1, 2])
def test_spike_mixture_likelihood_is_unbounded_above_at_integers_and_below_between_them(dim):
    """thm-degenerate, both parts, in D = 1 and 2: log p_s(y_i) >= -H - D log 4s on average, and
    pointwise log p_s(y + u) <= -D log s - sum_j min(u_j, 1 - u_j) / s for every u in (0, 1)^D."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 6, (300, dim), generator=gen).to(DT)
    values, counts = torch.unique(y, dim=0, return_counts=True)
    weights = counts.to(DT) / len(y)
    entropy = -(weights * weights.log()).sum()
    u = torch.rand(300, dim, generator=gen, dtype=DT).clamp(1e-6, 1 - 1e-6)
    dist = torch.minimum(u, 1 - u).sum(1)
    previous = -math.inf
    for s in (1.0, 0.3, 0.1, 0.03, 1e-2, 1e-3):
        at_points = spike_log_prob(y, values, weights, s).mean()
        assert at_points >= -entropy - dim * math.log(4 * s) - 1e-10
        assert at_points > previous  # grows as s shrinks
        previous = at_points
        between = spike_log_prob(y + u, values, weights, s)
        assert (between <= -dim * math.log(s) - dist / s + 1e-10).all()
    assert previous > 0 > -entropy  # beyond the best discrete model (mean log P <= -H <= 0)
    assert spike_log_prob(y + u, values, weights, 1e-3).mean() < -100


def test_spike_mixture_discrete_model_stays_a_distribution():
    """The discrete model P_s(y) = F(y + 1) - F(y) of the spikes is a probability (sum <= 1) for
    every scale."""
    for log_s in (0.0, -3.0, -7.0):
        model = MixtureOfLogistics(4, 1).to(DT)
        with torch.no_grad():
            model.logit_pi.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4]]).log())
            model.mu.copy_(torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
            model.log_s.fill_(log_s)
        total = model.dequantized_log_prob(torch.arange(4, dtype=DT)[:, None]).exp().sum()
        assert 0 < total <= 1 + 1e-12


def test_cdf_discretization_sums_to_one_with_the_edge_rule_and_loses_the_tails_without():
    """thm-cdf-sums-to-one: with the edge rule sum_y P(y) = 1; without it F(K - 0.5) - F(-0.5), the
    telescoped sum."""
    logit_pi = torch.tensor([0.0, 0.3, -0.2], dtype=DT)
    mu = torch.tensor([-2.0, 5.0, 17.0], dtype=DT)
    log_s = torch.tensor([0.5, 0.0, 1.0], dtype=DT)
    k = 16
    y = torch.arange(k, dtype=DT)
    with_edges = discretized_mix_logistic_log_prob(y, logit_pi, mu, log_s, num_bins=k).exp()
    assert with_edges.sum().item() == pytest.approx(1.0, abs=1e-13)
    no_edges = mix_logistic_cdf(y + 0.5, logit_pi, mu, log_s) - mix_logistic_cdf(
        y - 0.5, logit_pi, mu, log_s
    )
    inside = mix_logistic_cdf(
        torch.tensor(k - 0.5, dtype=DT), logit_pi, mu, log_s
    ) - mix_logistic_cdf(torch.tensor(-0.5, dtype=DT), logit_pi, mu, log_s)
    assert no_edges.sum().item() == pytest.approx(inside.item(), abs=1e-13)
    assert inside < 0.8  # the components at -2 and 17 put much of their mass outside [-0.5, 15.5]
    assert torch.allclose(with_edges[1:-1], no_edges[1:-1], rtol=1e-10)  # only the edge bins differ


def _mixture(seed: int) -> MixtureOfLogistics:
    """A random mixture of 4 logistics on [0, 8) in float64, fixed."""
    gen = torch.Generator().manual_seed(seed)
    model = MixtureOfLogistics(4, 1).to(DT)
    with torch.no_grad():
        model.logit_pi.copy_(torch.randn(1, 4, generator=gen, dtype=DT))
        model.mu.copy_(8 * torch.rand(1, 4, generator=gen, dtype=DT))
        model.log_s.copy_(torch.rand(1, 4, generator=gen, dtype=DT) * 2 - 1.5)
    return model.requires_grad_(False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uniform_dequantization_bound_and_its_gap(seed):
    """thm-uniform-dequantization: E_pi log p(x) <= E_Pi log P(y) for a random data distribution Pi,
    by quadrature; the gap for each y is KL(U || p(u|y)) with p(u|y) = p(y + u) / P(y), which
    integrates to one over the cube."""
    model = _mixture(seed)
    y = torch.arange(8, dtype=DT)[:, None]
    log_p_cube = model.log_prob((y + NODES).reshape(-1, 1)).reshape(8, -1)
    log_P = model.dequantized_log_prob(y)
    posterior = (log_p_cube - log_P[:, None]).exp()
    assert torch.allclose(posterior.mean(1), torch.ones(8, dtype=DT), atol=1e-6)
    gap = log_P - log_p_cube.mean(1)
    kl = (-(posterior.log())).mean(1)  # KL(U || p(u|y)) = int 1 * log(1 / p(u|y)) du
    assert torch.allclose(gap, kl, atol=1e-12) and (gap > 0).all()
    data = torch.rand(8, generator=torch.Generator().manual_seed(seed + 10), dtype=DT)
    data = data / data.sum()
    assert (data * log_p_cube.mean(1)).sum() <= (data * log_P).sum()


def test_uniform_bound_is_tight_for_a_staircase_density():
    """The bound of thm-uniform-dequantization is tight iff p is constant on each cube: the
    staircase p(x) = Pi(floor x) on [0, K) has E_u log p(y + u) = log P(y) = log Pi(y) exactly, a
    smooth density has a positive gap."""
    pi = torch.tensor([0.1, 0.4, 0.3, 0.2], dtype=DT)
    x = (torch.arange(4, dtype=DT)[:, None] + NODES).reshape(-1)
    log_staircase = pi.log()[x.floor().long()].reshape(4, -1)
    assert torch.allclose(log_staircase.mean(1), pi.log(), atol=1e-14)
    model = _mixture(3)
    y = torch.arange(4, dtype=DT)[:, None]
    smooth = model.log_prob(x[:, None]).reshape(4, -1).mean(1)
    assert (smooth < model.dequantized_log_prob(y)).all()


def test_variational_bound_gap_is_kl_and_vanishes_for_the_optimal_noise():
    """thm-variational-dequantization: L(q) = log P(y) - KL(q || p(u|y)) for q = Beta(2, 2), the
    uniform q (log q = 0) is the special case, and the optimal q = p(u|y) makes the bound tight."""
    model = _mixture(4)
    y = torch.arange(8, dtype=DT)[:, None]
    log_p_cube = model.log_prob((y + NODES).reshape(-1, 1)).reshape(8, -1)
    log_P = model.dequantized_log_prob(y)
    log_posterior = log_p_cube - log_P[:, None]
    for log_q in (
        torch.log(6 * NODES * (1 - NODES)).expand(8, -1),
        torch.zeros(8, len(NODES), dtype=DT),
        log_posterior,
    ):
        bound = (log_q.exp() * (log_p_cube - log_q)).mean(1)
        kl = (log_q.exp() * (log_q - log_posterior)).mean(1)
        assert torch.allclose(log_P - bound, kl, atol=1e-6) and (kl > -1e-9).all()
    tight = (log_posterior.exp() * (log_p_cube - log_posterior)).mean(1)
    assert torch.allclose(tight, log_P, atol=1e-6)


def test_flow_dequantizer_bound_by_sampling_matches_quadrature_and_stays_below_log_p():
    """The Flow++ noise of the chapter (D = 1): L(q) by Monte Carlo through the sampling pass agrees
    with the quadrature of q by the inverse pass, q integrates to one, and L(q) <= log P(y) for
    every y."""
    torch.manual_seed(0)
    q = VariationalDequantizer(1, depth=2, hidden=(16,), num_bins=8).to(DT)
    with torch.no_grad():
        for parameter in q.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))  # leave the identity start
        model = _mixture(5)
        y = torch.arange(8, dtype=DT)[:, None]
        log_q = q.log_q(NODES.repeat(8)[:, None], y.repeat_interleave(len(NODES), 0)).reshape(8, -1)
        log_p_cube = model.log_prob((y + NODES).reshape(-1, 1)).reshape(8, -1)
        quadrature = (log_q.exp() * (log_p_cube - log_q)).mean(1)
        x, log_q_draws = q(y.repeat(40_000, 1), torch.Generator().manual_seed(1))
        terms = (model.log_prob(x) - log_q_draws).reshape(40_000, 8)
        monte_carlo, se = terms.mean(0), terms.std(0) / math.sqrt(40_000)
    assert torch.allclose(log_q.exp().mean(1), torch.ones(8, dtype=DT), atol=1e-3)
    assert ((monte_carlo - quadrature).abs() < 5 * se + 1e-3).all()
    assert (quadrature < model.dequantized_log_prob(y)).all()


# --- exercise checks
# ---------------------------------------------------------------------------------------------


def _logistic_reference(y, mu, log_s, num_bins):
    s = log_s.exp()
    upper = torch.where(y == num_bins - 1, torch.inf, (y + 0.5 - mu) / s)
    lower = torch.where(y == 0, -torch.inf, (y - 0.5 - mu) / s)
    return torch.log(torch.sigmoid(upper) - torch.sigmoid(lower))


def _bound_reference(log_prob, y, u):
    n, b = u.shape[:2]
    return -log_prob((y + u).reshape(n * b, *y.shape[1:])).reshape(n, b).mean(0) / (
        y[0].numel() * math.log(2)
    )


def test_exercise_checks_pass_correct_answers_and_catch_the_classic_mistakes(capsys):
    assert check("dequantization.discretized_logistic", _logistic_reference)

    def no_edges(y, mu, log_s, num_bins):
        s = log_s.exp()
        return torch.log(torch.sigmoid((y + 0.5 - mu) / s) - torch.sigmoid((y - 0.5 - mu) / s))

    def log_scale_as_scale(y, mu, log_s, num_bins):  # s = log_s instead of exp(log_s)
        return _logistic_reference(y, mu, log_s.log(), num_bins)

    assert not check("dequantization.discretized_logistic", no_edges)
    assert "edge" in capsys.readouterr().out
    assert not check("dequantization.discretized_logistic", log_scale_as_scale)
    capsys.readouterr()

    assert check("dequantization.uniform_bound_bpd", _bound_reference)

    def nats(log_prob, y, u):
        return _bound_reference(log_prob, y, u) * math.log(2)

    def per_batch_dim(log_prob, y, u):
        return _bound_reference(log_prob, y, u) * y[0].numel() / y.numel()

    def first_draw_only(log_prob, y, u):
        return _bound_reference(log_prob, y, u[:1])

    for wrong in (nats, per_batch_dim, first_draw_only):
        assert not check("dequantization.uniform_bound_bpd", wrong)
        assert "D = y[0].numel()" in capsys.readouterr().out


# --- the dequantization explorer
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_explorer_density_is_normalized_and_the_bounds_are_ordered(bits):
    from dgm_lib.dequantization.chapter import dequantization_bits, quantized_density

    log_prob, pi = quantized_density(bits)
    k = 2**bits
    assert pi.dtype == DT and pi.shape == (k,) and pi.sum().item() == pytest.approx(1.0, abs=1e-12)
    x = torch.linspace(0, k, 200_001, dtype=DT)
    assert torch.trapezoid(log_prob(x).exp(), x).item() == pytest.approx(1.0, abs=1e-5)
    entropy, optimal = dequantization_bits(bits, "optimal")
    assert entropy == pytest.approx(-(pi * pi.log2()).sum().item(), abs=1e-12)
    assert optimal == pytest.approx(entropy, abs=1e-6)  # the optimal q closes the gap
    for noise in ("uniform", "beta"):
        assert dequantization_bits(bits, noise)[1] > entropy


def test_explorer_uniform_gap_shrinks_with_the_number_of_bits():
    from dgm_lib.dequantization.chapter import dequantization_bits

    gaps = [
        dequantization_bits(b, "uniform")[1] - dequantization_bits(b, "uniform")[0]
        for b in range(3, 9)
    ]
    assert all(
        a > 2 * b for a, b in zip(gaps, gaps[1:])
    )  # about fourfold per bit once p is smooth on a bin


def test_explorer_rejects_bad_arguments():
    from dgm_lib.dequantization.chapter import dequantization_bits, quantized_density

    with pytest.raises(ValueError, match="bits"):
        quantized_density(0)
    with pytest.raises(ValueError, match="bits"):
        quantized_density(True)
    with pytest.raises(ValueError, match="noise"):
        dequantization_bits(3, "gaussian")


def test_explorer_draws_default_and_redraws():
    from dgm_lib.dequantization.explorers import dequantization_explorer

    box = dequantization_explorer()
    controls = box.children[0].children
    assert [c.value for c in controls] == [3, "uniform"]
    before = len(plt.get_fignums())
    assert before >= 1
    controls[0].value = 8
    controls[1].value = "optimal"
    assert len(plt.get_fignums()) == before + 2
    plt.close("all")


def test_shipped_two_moons_flows_order_their_bounds_as_the_chapter_says():
    """deq_moons_*: on fresh quantized points, variational noise gives the lower bound, and k = 64
    importance samples tighten each bound (up to Monte Carlo noise of 0.005 bits/dim)."""
    from dgm_lib import zoo
    from dgm_lib.dequantization.chapter import quantized_toy2d
    from dgm_lib.dequantization.recipes import MOONS

    y = quantized_toy2d("two_moons", 2000, MOONS.num_bins, torch.Generator().manual_seed(1))
    bounds = {}
    with torch.no_grad():
        for name in ("uniform", "variational"):
            model = zoo.load(f"deq_moons_{name}").eval()
            bounds[name] = [
                model.bits_per_dim(y, k, torch.Generator().manual_seed(4)).item() for k in (1, 64)
            ]
    assert bounds["variational"][0] < bounds["uniform"][0]
    assert all(k64 <= k1 + 0.005 and 2.0 < k64 < 3.0 for k1, k64 in bounds.values()), bounds
