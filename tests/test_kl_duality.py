"""The theorems of the KL-duality chapter, in float64: forward KL = NLL - H(pi), reverse KL by
LOTUS, the flow KL duality, MLE = ELBO with a deterministic encoder and decoder; plus the chapter's
zoo configs and estimators."""

import math
from dataclasses import replace

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from dgm_lib import zoo
from dgm_lib.data.toy2d import (
    ENERGIES,
    LIM,
    ConfinedEnergy,
    get_target,
    get_target_for_fit,
    grid_integral,
)
from dgm_lib.exercises import check, kl_duality  # noqa: F401  (registers the chapter's checks)
from dgm_lib.flows import Flow, StandardNormal, Transform, make_realnvp, recipes
from dgm_lib.flows import kl_duality as em

DTYPE = torch.float64


class Affine(Transform):
    """f(x) = A x + b with log|det J_f| = log|det A| (a test-local flow whose densities are
    Gaussian)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.a, self.b = a, b

    def _forward(self, x):
        return x @ self.a.T + self.b, torch.linalg.slogdet(self.a)[1].expand(len(x))

    def _inverse(self, z):
        return torch.linalg.solve(self.a, (z - self.b).T).T, -torch.linalg.slogdet(self.a)[
            1
        ].expand(len(z))


@pytest.fixture
def gaussian_case():
    """An affine flow p(x|theta) = N(-A^{-1} b, (A^T A)^{-1}) and a Gaussian target pi = N(mu,
    Sigma)."""
    a = torch.tensor([[1.3, 0.4], [-0.2, 0.7]], dtype=DTYPE)
    b = torch.tensor([0.5, -1.0], dtype=DTYPE)
    flow = Flow(StandardNormal(2), Affine(a, b)).to(DTYPE)
    a_inv = torch.linalg.inv(a)
    model = MultivariateNormal(-a_inv @ b, a_inv @ a_inv.T)
    covariance = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=DTYPE)
    target = MultivariateNormal(torch.tensor([1.0, -0.5], dtype=DTYPE), covariance)
    return flow, model, target, a, b


@pytest.fixture
def realnvp():
    """A float64 RealNVP with non-trivial random weights."""
    torch.manual_seed(0)
    flow = make_realnvp(m=2, depth=4, hidden=(16,)).to(DTYPE)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return flow.eval()


def within(estimate: tuple[float, float], exact: float, k: float = 4.0) -> bool:
    """|mean - exact| <= k standard errors."""
    mean, se = estimate
    return abs(mean - exact) <= k * se


def test_the_affine_flow_has_the_gaussian_density(gaussian_case):
    flow, model, _, _, _ = gaussian_case
    x = torch.randn(100, 2, dtype=DTYPE)
    assert torch.allclose(flow.log_prob(x), model.log_prob(x), atol=1e-12)


def test_forward_kl_is_nll_minus_entropy(gaussian_case):
    flow, model, target, a, b = gaussian_case
    # E_pi[-log p(x|theta)] in closed form: E|A x + b|^2 / 2 + log 2 pi - log|det A|
    mean_z = a @ target.mean + b
    nll = 0.5 * (mean_z @ mean_z + torch.trace(a @ target.covariance_matrix @ a.T)) + math.log(
        2 * math.pi
    )
    nll = nll - torch.linalg.slogdet(a)[1]
    assert torch.isclose(nll - target.entropy(), kl_divergence(target, model), atol=1e-12)
    x = target.sample((200_000,))
    assert within(em.mc_estimate(-flow.log_prob(x)), float(nll))
    assert torch.isclose(flow.forward_kl(x), -flow.log_prob(x).mean(), atol=1e-12)
    assert within(
        em.mc_estimate(em.forward_kl_terms(flow, target.log_prob, x)),
        float(kl_divergence(target, model)),
    )


def test_forward_kl_by_quadrature_equals_nll_minus_entropy(realnvp):
    target = get_target("eight_gaussians")
    integrand = lambda x: target.log_prob(x).exp() * (target.log_prob(x) - realnvp.log_prob(x))  # noqa: E731
    kl = grid_integral(integrand, 5.0, dtype=DTYPE)
    entropy = -grid_integral(
        lambda x: target.log_prob(x).exp() * target.log_prob(x), 5.0, dtype=DTYPE
    )
    x = target.sample(100_000, torch.Generator().manual_seed(1), dtype=DTYPE)
    assert kl > 0.1
    assert within(em.mc_estimate(-realnvp.log_prob(x)), kl + entropy)


def test_reverse_kl_by_lotus(gaussian_case):
    flow, model, target, _, _ = gaussian_case
    terms = em.reverse_kl_terms(flow, target.log_prob, 200_000, torch.Generator().manual_seed(0))
    assert within(em.mc_estimate(terms), float(kl_divergence(model, target)))
    # LOTUS term by term: through g and its log-det equals through f (Flow.log_prob) at x = g(z)
    z = torch.randn(500, 2, dtype=DTYPE)
    x, log_det_g = flow.transform.inverse(z)
    assert torch.allclose(flow.base.log_prob(z) - log_det_g, flow.log_prob(x), atol=1e-12)
    generator = torch.Generator().manual_seed(3)
    lotus = em.reverse_kl_terms(flow, target.log_prob, 64, torch.Generator().manual_seed(3)).mean()
    assert torch.isclose(
        flow.reverse_kl(target.log_prob, 64, generator=generator), lotus, atol=1e-12
    )


def test_reverse_kl_with_an_unnormalized_target_is_shifted_by_log_z(realnvp):
    energy = get_target("u1")
    terms = em.reverse_kl_terms(
        realnvp, lambda x: energy.log_prob(x) - 3.0, 100, torch.Generator().manual_seed(0)
    )
    shifted = em.reverse_kl_terms(realnvp, energy.log_prob, 100, torch.Generator().manual_seed(0))
    assert torch.allclose(terms - 3.0, shifted, atol=1e-12)


def test_kl_duality_for_gaussians_in_closed_form(gaussian_case):
    flow, model, target, a, b = gaussian_case
    # z = f(x) = A x + b with x ~ N(mu, Sigma) is N(A mu + b, A Sigma A^T)
    latent = MultivariateNormal(a @ target.mean + b, a @ target.covariance_matrix @ a.T)
    base = MultivariateNormal(torch.zeros(2, dtype=DTYPE), torch.eye(2, dtype=DTYPE))
    assert torch.isclose(kl_divergence(latent, base), kl_divergence(target, model), atol=1e-12)
    z = torch.randn(100, 2, dtype=DTYPE)
    assert torch.allclose(
        em.latent_log_prob(flow, target.log_prob, z), latent.log_prob(z), atol=1e-12
    )


def test_kl_duality_holds_term_by_term(realnvp):
    target = get_target("eight_gaussians")
    x = target.sample(2000, torch.Generator().manual_seed(0), dtype=DTYPE)
    forward = em.forward_kl_terms(realnvp, target.log_prob, x)
    latent = em.latent_kl_terms(realnvp, target.log_prob, x)
    assert forward.std() > 0.1
    assert torch.allclose(forward, latent, atol=1e-10)


def test_relaxed_elbo_tends_to_the_log_likelihood(realnvp):
    x = get_target("two_moons").sample(20, torch.Generator().manual_seed(0), dtype=DTYPE)
    log_p = realnvp.log_prob(x).detach()
    gaps = [
        (em.relaxed_elbo(realnvp, x, sigma, 256, torch.Generator().manual_seed(1))["elbo"] - log_p)
        .abs()
        .max()
        .item()
        for sigma in (1e-2, 1e-3, 1e-4)
    ]
    assert gaps[0] > 1e-3 and gaps[2] < 1e-6
    assert 30 < gaps[1] / gaps[2] < 300  # the gap is O(sigma^2)


def test_relaxed_elbo_of_an_affine_flow_in_closed_form(gaussian_case):
    flow, _, _, a, _ = gaussian_case
    x = torch.randn(5, 2, dtype=DTYPE)
    sigma = 0.3
    # with g linear, z - f(x) = sigma A eps and g(z) - x = sigma eps: ELBO = log p(x|theta) -
    # sigma^2 ||A||_F^2 / 2
    exact = flow.log_prob(x) - 0.5 * sigma**2 * a.square().sum()
    terms = em.relaxed_elbo(flow, x, sigma, 100_000, torch.Generator().manual_seed(0))
    assert torch.allclose(terms["elbo"], exact, atol=2e-3)
    assert torch.allclose(terms["elbo"], terms["reconstruction"] - terms["kl"], atol=1e-12)
    # g(z) - x = sigma eps exactly: E log N(x; g(z), sigma^2 I) = -log(2 pi sigma^2) - 1 in 2D
    expected = torch.full_like(exact, -math.log(2 * math.pi * sigma**2) - 1)
    assert torch.allclose(terms["reconstruction"], expected, atol=1e-2)


def test_relaxed_elbo_rejects_a_non_positive_sigma(realnvp):
    with pytest.raises(ValueError, match="sigma"):
        em.relaxed_elbo(realnvp, torch.zeros(3, 2, dtype=DTYPE), 0.0)


def test_mc_estimate_and_its_errors():
    mean, se = em.mc_estimate(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DTYPE))
    assert mean == 2.5 and math.isclose(
        se, torch.tensor([1.0, 2, 3, 4]).std().item() / 2, rel_tol=1e-6
    )
    with pytest.raises(ValueError, match="non-finite"):
        em.mc_estimate(torch.tensor([1.0, math.inf]))
    with pytest.raises(ValueError, match="shape"):
        em.mc_estimate(torch.ones(1))


def test_grid_integral_of_a_gaussian():
    normal = MultivariateNormal(torch.zeros(2, dtype=DTYPE), 0.25 * torch.eye(2, dtype=DTYPE))
    assert math.isclose(
        grid_integral(lambda x: normal.log_prob(x).exp(), dtype=DTYPE), 1.0, abs_tol=1e-9
    )
    assert math.isclose(
        grid_integral(lambda x: torch.ones(len(x), dtype=x.dtype), lim=2.0), 16.0, rel_tol=1e-12
    )


def test_mode_fractions():
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0]], dtype=DTYPE)
    x = torch.tensor([[0.1, 0.0], [9.0, 1.0], [11.0, 0.0], [-1.0, 2.0]], dtype=DTYPE)
    assert em.mode_fractions(x, means).tolist() == [0.5, 0.5]


def test_confined_energy_equals_the_energy_inside_the_box_and_is_integrable():
    for name in ENERGIES:
        confined, energy = get_target_for_fit(name), get_target(name)
        inside = (torch.rand(100, 2, dtype=DTYPE) * 2 - 1) * LIM
        assert torch.equal(confined.log_prob(inside), energy.log_prob(inside))
        far = torch.tensor([[LIM + 1.0, 0.0]], dtype=DTYPE)
        assert confined.log_prob(far) < energy.log_prob(far) - 40
        assert (
            confined.log_normalizer >= energy.log_normalizer - 1e-4
        )  # the box's mass plus the wall's
    # U1 and the banana decay on their own: the wall adds nothing
    for name in ("u1", "banana"):
        assert math.isclose(
            get_target_for_fit(name).log_normalizer, get_target(name).log_normalizer, abs_tol=1e-3
        )
    with pytest.raises(ValueError, match="energies"):
        ConfinedEnergy("two_moons")


def test_every_fit_is_registered_and_named():
    names = set(zoo.names())
    for target, directions in recipes.available_fits().items():
        for direction in directions:
            assert zoo.zoo_name("kl", direction, target) in names
    assert (
        "forward" not in recipes.available_fits()["u1"]
    )  # no sampler for an energy: no forward KL fit
    with pytest.raises(ValueError, match="no sideways KL fit"):
        em.load_fit("sideways", "u1")
    with pytest.raises(ValueError, match="no forward KL fit"):
        em.load_fit("forward", "u1")


def test_annealing_schedule():
    assert recipes.annealing(5, 0, 0.1) == [1.0] * 5
    betas = recipes.annealing(6, 4, 0.2)
    assert betas[0] == 0.2 and betas[4:] == [1.0, 1.0] and betas == sorted(betas)


@pytest.mark.parametrize("direction, target", [("forward", "eight_gaussians"), ("reverse", "u2")])
def test_recipes_train_and_decrease_the_loss(direction, target, monkeypatch):
    monkeypatch.setattr(recipes, "KL", replace(recipes.KL, steps=60))
    torch.manual_seed(0)
    flow = recipes.build_flow(target)
    history = (recipes.train_forward if direction == "forward" else recipes.train_reverse)(
        flow, target
    )
    losses = history["reverse_kl" if direction == "reverse" else "loss"]
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-10:]) < sum(losses[:10])


def test_the_shipped_fits_load_and_are_good():
    for target, directions in recipes.available_fits().items():
        for direction in directions:
            name = zoo.zoo_name("kl", direction, target)
            if not zoo.checkpoint_path(name).exists():
                pytest.skip(f"checkpoint of {name} missing")
    generator = torch.Generator().manual_seed(0)
    for name in ENERGIES:
        flow, target = em.load_fit("reverse", name), get_target_for_fit(name)
        with torch.no_grad():
            kl, se = em.mc_estimate(em.reverse_kl_terms(flow, target.log_prob, 5000, generator))
        assert -4 * se < kl + target.log_normalizer < 0.3, name
    pi = get_target("eight_gaussians")
    x = pi.sample(5000, generator)
    kls = {}
    for direction in recipes.DIRECTIONS:
        flow = em.load_fit(direction, "eight_gaussians")
        with torch.no_grad():
            forward, _ = em.mc_estimate(em.forward_kl_terms(flow, pi.log_prob, x))
            reverse, _ = em.mc_estimate(em.reverse_kl_terms(flow, pi.log_prob, 5000, generator))
            fractions = em.mode_fractions(flow.sample(5000, generator=generator), pi.means)
        kls[direction] = (forward, reverse, int((fractions < 0.01).sum()))
    assert kls["forward"][0] < 0.5 and kls["forward"][2] == 0  # mode covering
    assert kls["reverse"][2] >= 1  # mode seeking
    assert kls["forward"][0] < kls["reverse"][0] and kls["reverse"][1] < kls["forward"][1]


def test_exercise_checks_accept_the_solution_and_reject_a_wrong_sign(capsys):
    def lotus(flow, log_target, z):
        x, log_det_g = flow.transform.inverse(z)
        return flow.base.log_prob(z) - log_det_g - log_target(x)

    def wrong_sign(flow, log_target, z):
        x, log_det_g = flow.transform.inverse(z)
        return flow.base.log_prob(z) + log_det_g - log_target(x)

    def log_z(flow, log_target, z):
        return torch.logsumexp(-lotus(flow, log_target, z), 0) - math.log(len(z))

    def naive_log_z(flow, log_target, z):
        return torch.log(torch.exp(-lotus(flow, log_target, z)).mean())

    assert check("kl_duality.reverse_kl_lotus", lotus)
    assert not check("kl_duality.reverse_kl_lotus", wrong_sign)
    assert check("kl_duality.log_normalizer_is", log_z)
    assert not check("kl_duality.log_normalizer_is", naive_log_z)
    assert "overflows" in capsys.readouterr().out


def test_kl_direction_explorer_draws_every_choice():
    import matplotlib.pyplot as plt

    from dgm_lib.flows.explorers import kl_direction_explorer

    plt.close("all")
    box = kl_direction_explorer(device="cpu")
    target, direction = box.children[0].children
    assert (target.value, direction.value) == ("eight_gaussians", "reverse")
    assert len(plt.get_fignums()) == 1  # the default figure was drawn at construction
    target.value = "u1"
    direction.value = "forward"  # an energy has no sampler: the figure explains why there is no fit
    figure = plt.figure(plt.get_fignums()[-1])
    assert any("needs samples" in text.get_text() for ax in figure.axes for text in ax.texts)
    direction.value = "reverse"
    assert "KL(p" in plt.figure(plt.get_fignums()[-1]).axes[1].get_title()
    plt.close("all")
