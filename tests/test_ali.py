"""dgm_lib.ali: ALI's optimal discriminator and saddle value on closed-form Gaussians (float64),
the non-identifiability example, ALICE's identity on a linear-Gaussian joint, networks, losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from dgm_lib.ali import (
    LOG_4,
    LinearGaussianJoint,
    NoisySampler,
    PairDiscriminator,
    ali_saddle_value,
    ali_value,
    ali_value_on_grid,
    conditional_entropy,
    delta_joint,
    discriminator_loss,
    explicit_cycle,
    jensen_shannon_on_grid,
    optimal_logit,
    reconstruction_probability,
    sampler_loss,
)

DT = torch.float64


def _grid(n: int = 401, lim: float = 9.0) -> tuple[torch.Tensor, float]:
    """Centres of an n x n grid over [-lim, lim]^2 as (n*n, 2) pairs (x, z), and the cell area."""
    step = 2 * lim / n
    axis = -lim + step * (torch.arange(n, dtype=DT) + 0.5)
    xx, zz = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.flatten(), zz.flatten()], 1), step * step


def _gauss(mean, cov) -> MultivariateNormal:
    return MultivariateNormal(torch.tensor(mean, dtype=DT), torch.tensor(cov, dtype=DT))


Q = _gauss([0.0, 0.0], [[1.0, 0.6], [0.6, 1.0]])  # encoder joint q(x, z): correlated
P = _gauss([0.5, -0.3], [[1.5, -0.2], [-0.2, 0.8]])  # decoder joint p(x, z)


def test_optimal_discriminator_maximises_the_ali_value_on_gaussians():
    pairs, cell = _grid()
    log_q, log_p = Q.log_prob(pairs), P.log_prob(pairs)
    best = ali_value_on_grid(log_q, log_p, optimal_logit(log_q, log_p), cell)
    g = torch.Generator().manual_seed(0)
    for scale in (0.3, 0.1, 0.01):
        # f* + a smooth perturbation: a worse discriminator, by an amount of order scale^2
        bump = scale * torch.sin(pairs @ torch.randn(2, generator=g, dtype=DT) + 1.0)
        assert ali_value_on_grid(log_q, log_p, optimal_logit(log_q, log_p) + bump, cell) < best


def test_saddle_value_is_minus_log_4_plus_twice_the_jensen_shannon_divergence():
    pairs, cell = _grid()
    log_q, log_p = Q.log_prob(pairs), P.log_prob(pairs)
    value = ali_value_on_grid(log_q, log_p, optimal_logit(log_q, log_p), cell)
    jsd = jensen_shannon_on_grid(log_q, log_p, cell)
    assert 0 < jsd < math.log(2)
    assert value.item() == pytest.approx(-LOG_4 + 2 * jsd.item(), abs=1e-10)
    # at equality of the joints the value is -log 4 (quadrature: the grid holds all but ~1e-17 of
    # the mass), and the optimal discriminator is 1/2 everywhere
    log_q = Q.log_prob(pairs)
    same = ali_value_on_grid(log_q, log_q, optimal_logit(log_q, log_q), cell)
    assert same.item() == pytest.approx(-LOG_4, abs=1e-9)
    assert optimal_logit(log_q, log_q).abs().max() == 0


def test_monte_carlo_ali_value_agrees_with_quadrature_within_its_standard_error():
    pairs, cell = _grid()
    exact = ali_value_on_grid(
        Q.log_prob(pairs),
        P.log_prob(pairs),
        optimal_logit(Q.log_prob(pairs), P.log_prob(pairs)),
        cell,
    ).item()
    torch.manual_seed(0)
    xq, xp = Q.sample((200_000,)), P.sample((200_000,))
    estimate = ali_value(optimal_logit(Q.log_prob(xq), P.log_prob(xq)),
                         optimal_logit(Q.log_prob(xp), P.log_prob(xp))).item()  # fmt: skip
    assert estimate == pytest.approx(exact, abs=0.01)  # se about 0.002


def test_any_delta_is_an_ali_solution_but_only_0_and_1_reconstruct():
    for delta in (0.0, 0.25, 0.5, 0.9, 1.0):
        joint = delta_joint(delta)
        assert torch.equal(joint.sum(0), torch.tensor([0.5, 0.5], dtype=DT))
        assert torch.equal(joint.sum(1), torch.tensor([0.5, 0.5], dtype=DT))
        assert ali_saddle_value(joint, joint).item() == pytest.approx(-LOG_4, abs=1e-15)
        assert reconstruction_probability(delta) == pytest.approx(delta**2 + (1 - delta) ** 2)
    assert reconstruction_probability(1.0) == 1.0 and reconstruction_probability(0.5) == 0.5
    assert conditional_entropy(0.0) == conditional_entropy(1.0) == 0.0
    assert conditional_entropy(0.5) == pytest.approx(math.log(2))
    # mismatched deltas are not a saddle point: the value rises above -log 4
    assert ali_saddle_value(delta_joint(0.9), delta_joint(0.1)).item() > -LOG_4 + 0.1
    with pytest.raises(ValueError, match="delta must be a number in"):
        delta_joint(1.5)


def _random_joint(seed: int, dx: int = 3, dz: int = 2) -> LinearGaussianJoint:
    return LinearGaussianJoint.random(dx, dz, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conditional_entropy_plus_conditional_matching_is_cycle_consistency(seed):
    joint = _random_joint(seed)
    lhs = joint.conditional_entropy() + joint.conditional_mismatch()
    assert lhs.item() == pytest.approx(joint.cycle_consistency().item(), rel=1e-12)
    assert joint.conditional_mismatch() > 0


def test_cycle_consistency_closed_form_matches_monte_carlo():
    joint = _random_joint(0)
    x, z = joint.sample(200_000, torch.Generator().manual_seed(1))
    nll = -joint.decoder_log_prob(x, z)
    se = nll.std().item() / math.sqrt(len(nll))
    assert abs(nll.mean().item() - joint.cycle_consistency().item()) < 4 * se


def test_decoder_equal_to_the_true_conditional_leaves_only_the_conditional_entropy():
    joint = _random_joint(3)
    gain, post = joint._posterior()
    mean_z = joint.A @ joint.m + joint.b
    matched = LinearGaussianJoint(joint.m, joint.S, joint.A, joint.b, joint.R, gain,
                                  joint.m - gain @ mean_z, post)  # fmt: skip
    assert matched.conditional_mismatch().item() == pytest.approx(0.0, abs=1e-12)
    assert matched.cycle_consistency().item() == pytest.approx(
        matched.conditional_entropy().item(), rel=1e-12
    )


def test_linear_gaussian_joint_rejects_bad_shapes_and_covariances():
    joint = _random_joint(0)
    with pytest.raises(ValueError, match="A must be a tensor of shape"):
        LinearGaussianJoint(
            joint.m, joint.S, joint.A.T, joint.b, joint.R, joint.C, joint.c, joint.V
        )
    with pytest.raises(ValueError, match="V must be symmetric positive definite"):
        LinearGaussianJoint(joint.m, joint.S, joint.A, joint.b, joint.R, joint.C, joint.c, -joint.V)


def test_losses_at_the_undecided_discriminator_and_their_gradients():
    half = torch.zeros(5)
    assert discriminator_loss(half, half).item() == pytest.approx(LOG_4)
    assert sampler_loss(half, half).item() == pytest.approx(LOG_4)
    sure = torch.full((5,), 10.0)
    # a discriminator that is right scores ~0; its samplers' non-saturating loss is large
    assert discriminator_loss(sure, -sure) < 1e-3 and sampler_loss(sure, -sure) > 19
    assert explicit_cycle(torch.zeros(3, 2), torch.full((3, 2), 2.0), k=2).item() == 8.0
    with pytest.raises(ValueError, match="logits_first must be a non-empty vector"):
        discriminator_loss(torch.zeros(0), half)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        explicit_cycle(torch.zeros(3, 2), torch.zeros(3, 2), k=0)
    with pytest.raises(ValueError, match="x and x_hat must have the same shape"):
        explicit_cycle(torch.zeros(3, 2), torch.zeros(2, 2))


def test_networks_shapes_noise_and_errors():
    g = NoisySampler(2, 3, noise_dim=2, hidden=(16,))
    v = torch.zeros(6, 2)
    a = g(v, torch.Generator().manual_seed(0))
    b = g(v, torch.Generator().manual_seed(0))
    c = g(v, torch.Generator().manual_seed(1))
    assert a.shape == (6, 3) and torch.equal(a, b) and not torch.equal(a, c)
    deterministic = NoisySampler(2, 3, noise_dim=0, hidden=(16,))
    assert torch.equal(deterministic(v), deterministic(v))
    f = PairDiscriminator(2, 3, hidden=(8,))
    assert f(v, a).shape == (6,)
    with pytest.raises(ValueError, match="noise_dim must be an int >= 0"):
        NoisySampler(2, 3, noise_dim=-1)
    with pytest.raises(ValueError, match="u and v must hold the same number of rows"):
        f(v, a[:4])


# --- the toy, the game module and the shipped toy models


def test_frozen_call_passes_gradients_to_inputs_only():
    from dgm_lib.ali.model import _frozen

    net = PairDiscriminator(2, 2, hidden=(8,))
    u, v = torch.randn(4, 2, requires_grad=True), torch.randn(4, 2)
    _frozen(net, u, v).sum().backward()
    assert u.grad is not None and u.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(_frozen(net, u, v), net(u, v))


@pytest.mark.parametrize(
    "method",
    ["ali", "alice_explicit", "alice_implicit", "alice_explicit_mapping", "alice_implicit_mapping"],
)
def test_each_player_gets_the_gradient_of_its_own_loss(method):
    """One backward of the game's loss = the discriminators' gradient of their loss and the
    samplers' gradient of theirs (recomputed by hand from the same noise)."""
    from dgm_lib.ali.model import SUPERVISED, JointMatching
    from dgm_lib.ali.toy import paired_codes

    pairs = paired_codes() if method in SUPERVISED else None
    model = JointMatching(2, 2, method=method, lam=0.7, hidden=(8,), pairs=pairs)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    model(x)["loss"].backward()
    got = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(3)  # the same noise, drawn in forward's order
    z = torch.randn(16, 2)
    z_tilde, x_tilde = model.encoder(x), model.decoder(z)
    d = model.discriminator
    d_loss = discriminator_loss(d(x, z_tilde.detach()), d(x_tilde.detach(), z))
    cycle = None
    if method == "alice_explicit":
        cycle = explicit_cycle(x, model.reconstruct(x)) + explicit_cycle(z, model.encoder(x_tilde))
    elif method == "alice_implicit":
        x_hat, c = model.reconstruct(x), model.cycle_discriminator
        d_loss = d_loss + discriminator_loss(c(x, x), c(x, x_hat.detach()))
    elif method == "alice_explicit_mapping":
        px, pz = pairs
        cycle = explicit_cycle(px, model.decoder(pz)) + explicit_cycle(pz, model.encoder(px))
    elif method == "alice_implicit_mapping":
        px, pz = pairs
        x_map, m = model.decoder(pz), model.mapping_discriminator
        d_loss = d_loss + discriminator_loss(m(px, pz), m(x_map.detach(), pz))
    discriminators = [n for n, _ in model.named_parameters() if "discriminator" in n]
    d_grads = torch.autograd.grad(
        d_loss, [dict(model.named_parameters())[n] for n in discriminators]
    )
    for name, grad in zip(discriminators, d_grads):
        assert torch.allclose(got[name], grad, atol=1e-6), name
    samplers = [p for n, p in model.named_parameters() if "discriminator" not in n]
    g_loss = sampler_loss(d(x, z_tilde), d(x_tilde, z))
    if cycle is not None:
        g_loss = g_loss + 0.7 * cycle
    if method == "alice_implicit":
        g_loss = g_loss + 0.7 * sampler_loss(c(x, x), c(x, x_hat))
    if method == "alice_implicit_mapping":
        g_loss = g_loss + 0.7 * sampler_loss(m(px, pz), m(x_map, pz))
    g_grads = torch.autograd.grad(g_loss, samplers)
    names = [n for n, _ in model.named_parameters() if "discriminator" not in n]
    for name, grad in zip(names, g_grads):
        assert torch.allclose(got[name], grad, atol=1e-6), name


def test_mode_metrics_of_perfect_and_of_collapsed_models():
    from dgm_lib.ali.toy import MODES, mode_metrics, sample_x

    x, labels = sample_x(500, torch.Generator().manual_seed(0))
    perfect = mode_metrics(x, labels, x.clone(), MODES.repeat(100, 1))
    assert perfect == {"reconstruction_mse": 0.0, "mode_kept": 1.0, "on_mode": 1.0, "modes_hit": 5}
    collapsed = mode_metrics(x, labels, torch.zeros_like(x), torch.zeros(500, 2))
    assert collapsed["modes_hit"] == 1 and collapsed["mode_kept"] < 0.3
    assert collapsed["reconstruction_mse"] > 4


def test_joint_matching_rejects_bad_arguments():
    from dgm_lib.ali.model import JointMatching

    with pytest.raises(ValueError, match="method must be one of"):
        JointMatching(method="bigan")
    with pytest.raises(ValueError, match="lam"):
        JointMatching(lam=-1.0)
    with pytest.raises(ValueError, match="x must"):
        JointMatching(2, 2, hidden=(8,))(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="pairs must be given exactly"):
        JointMatching(method="alice_explicit_mapping")
    with pytest.raises(ValueError, match="pairs must be given exactly"):
        JointMatching(method="ali", pairs=(torch.zeros(2, 2), torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="pairs must hold as many"):
        JointMatching(method="alice_explicit_mapping", pairs=(torch.zeros(2, 2), torch.zeros(3, 2)))


def test_shipped_toy_models_ali_does_not_reconstruct_alice_does():
    """The shipped checkpoints (1,600 steps each): ALICE keeps the mode of x -> z -> x, ALI
    does not (a training outcome, asserted as a band)."""
    from dgm_lib import zoo
    from dgm_lib.ali.recipes import evaluate

    scores = {
        method: evaluate(zoo.load(f"alice_toy_{method}", device="cpu", train_if_missing=False))
        for method in ("ali", "alice_explicit", "alice_implicit")
    }
    assert scores["ali"]["mode_kept"] < 0.8
    for method in ("alice_explicit", "alice_implicit"):
        assert scores[method]["mode_kept"] > 0.9, scores
        assert scores[method]["reconstruction_mse"] < scores["ali"]["reconstruction_mse"] / 10


def test_shipped_semi_supervised_models_put_each_mode_where_its_pair_says():
    """One pair per mode fixes the mapping (the lecture's Alice/Rabbit example): the codes of a
    mode land nearest the paired code of that mode, far above chance (1/5)."""
    from dgm_lib import zoo
    from dgm_lib.ali.recipes import evaluate

    for method in ("alice_explicit_mapping", "alice_implicit_mapping"):
        scores = evaluate(zoo.load(f"alice_toy_{method}", device="cpu", train_if_missing=False))
        assert scores["code_placed"] > 0.8, (method, scores)


def test_exercise_checks_pass_the_reference_and_catch_the_typical_mistakes(capsys):
    from dgm_lib.exercises import check

    assert check("ali.optimal_discriminator", lambda q, p: torch.sigmoid(q - p))
    # exponentiating first: 0 / 0 in the tails
    assert not check("ali.optimal_discriminator", lambda q, p: q.exp() / (q.exp() + p.exp()))
    assert "Exponentiating log-densities" in capsys.readouterr().out
    assert check("ali.cycle_consistency", lambda x, y: (x - y).square().sum(1).mean())
    # the mean over every entry divides by the dimension too
    assert not check("ali.cycle_consistency", lambda x, y: (x - y).square().mean())
    assert "divides by the dimension" in capsys.readouterr().out
