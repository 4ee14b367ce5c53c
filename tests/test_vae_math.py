"""dgm_lib.vae math in float64: Gaussian KL, normalized priors, flow prior and IAF posterior
densities, ELBO surgery."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from dgm_lib.flows import make_maf, make_realnvp
from dgm_lib.vae import (
    VAE,
    FlowPrior,
    IAFPosterior,
    MLPDecoder,
    MLPEncoder,
    MoGPrior,
    StandardNormalPrior,
    VampPrior,
    elbo_surgery,
    gaussian_kl,
    log_q_agg,
)
from dgm_lib.vae import priors as priors_module

pytestmark = pytest.mark.usefixtures("one_thread")


class LookupEncoder(nn.Module):
    """x_i = (mu_i, log_var_i) -> (mu_i, log_var_i): q(z|x_i) = N(mu_i, diag exp(log_var_i)) with
    known parameters."""

    def __init__(self, z_dim: int):
        super().__init__()
        self.z_dim, self.x_dim, self.x_shape = z_dim, 2 * z_dim, (2 * z_dim,)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, : self.z_dim], x[:, self.z_dim :]


def lookup_vae(prior: nn.Module, posterior_flow: nn.Module | None = None) -> VAE:
    """A VAE whose posteriors are given by the data (the decoder only enters the reconstruction
    term)."""
    d = prior.z_dim
    return VAE(
        LookupEncoder(d),
        MLPDecoder(d, (8,), x_shape=(2 * d,), likelihood="gaussian"),
        prior,
        posterior_flow,
    )


def grid(lim: float, n: int) -> tuple[Tensor, float]:
    """Midpoints of an n x n grid on [-lim, lim]^2 and the cell area."""
    h = 2 * lim / n
    t = -lim + h * (torch.arange(n) + 0.5)
    return torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2), h * h


def perturb(module: nn.Module, scale: float = 0.3) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def test_gaussian_kl_closed_form_against_torch_and_monte_carlo(float64):
    torch.manual_seed(0)
    mu, log_var = torch.randn(4, 3), torch.randn(4, 3)
    kl = gaussian_kl(mu, log_var)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p).sum(-1))
    z = q.sample((200_000,))
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    se = log_ratio.std(0) / math.sqrt(len(z))
    assert ((log_ratio.mean(0) - kl).abs() < 4 * se).all()
    assert (kl >= 0).all() and gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_mog_prior_is_normalized_and_sample_matches_log_prob(float64, temperature):
    torch.manual_seed(0)
    prior = perturb(MoGPrior(2, n_components=5, temperature=temperature), 0.5)
    z, area = grid(20.0, 600)
    with torch.no_grad():
        density = prior.log_prob(z).exp()
    assert (density.sum() * area).item() == pytest.approx(1.0, abs=1e-6)
    mean_from_density = (density[:, None] * z).sum(0) * area
    draws = prior.sample(200_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws.mean(0), mean_from_density, atol=0.03, rtol=0)
    log_pi, means, log_var = prior.components()
    expected = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=log_pi),
        torch.distributions.Independent(
            torch.distributions.Normal(means, (0.5 * log_var).exp()), 1
        ),
    ).log_prob(z[:100])
    torch.testing.assert_close(prior.log_prob(z[:100]), expected)


def test_vamp_prior_is_the_mixture_of_posteriors_of_pseudo_inputs(float64):
    torch.manual_seed(0)
    encoder = MLPEncoder(x_dim=6, hidden=(16,), z_dim=2)
    prior = VampPrior(encoder, n_pseudo=7)
    z, area = grid(15.0, 500)
    with torch.no_grad():
        log_p = prior.log_prob(z)
        mu, log_var = encoder(prior.pseudo_inputs)
    assert (log_p.exp().sum() * area).item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(
        log_p, log_q_agg(z, mu, log_var)
    )  # p(z) = 1/K sum_k q(z|u_k) = q_agg over u
    draws = prior.sample(100_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws.mean(0), mu.mean(0), atol=0.02, rtol=0)


@pytest.mark.parametrize("build", [make_realnvp, make_maf], ids=["realnvp", "maf"])
def test_flow_prior_is_the_change_of_variables_and_normalized(float64, build):
    torch.manual_seed(0)
    flow = perturb(build(2, depth=3, hidden=(16,)), 0.1)
    prior = FlowPrior(flow.transform, 2)
    z = torch.randn(5, 2)
    jacobians = [
        torch.autograd.functional.jacobian(lambda v: flow.transform(v[None])[0][0], v) for v in z
    ]
    log_det = torch.stack([torch.linalg.slogdet(j)[1] for j in jacobians])
    z_star = flow.transform(z)[0]
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z_star).sum(-1) + log_det
    torch.testing.assert_close(prior.log_prob(z), expected)
    torch.testing.assert_close(
        FlowPrior(flow, 2).log_prob(z), expected
    )  # a Flow is accepted: its transform is used
    points, area = grid(16.0, 600)
    with torch.no_grad():
        assert (prior.log_prob(points).exp().sum() * area).item() == pytest.approx(1.0, abs=5e-3)
    draws = prior.sample(4, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(flow.transform(draws)[0], eps)  # sample = g(z*), z* ~ N(0, I)


def test_iaf_posterior_log_det_against_autograd_and_round_trip(float64):
    torch.manual_seed(0)
    iaf = perturb(IAFPosterior(3, depth=3, hidden=(16, 16)), 0.2)
    z = torch.randn(6, 3)
    z_star, log_det = iaf(z)
    for i in range(len(z)):
        jac = torch.autograd.functional.jacobian(lambda v: iaf(v[None])[0][0], z[i])
        assert torch.linalg.slogdet(jac)[1].item() == pytest.approx(log_det[i].item(), abs=1e-10)
    back, log_det_inv = iaf.inverse(z_star)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(log_det_inv, -log_det)


def test_iaf_posterior_density_is_normalized(float64):
    """log q(z*|x) = log N(z; mu, sigma^2) - log|det J_g(z)| with z = g^{-1}(z*): integrates to 1 on
    a grid."""
    torch.manual_seed(0)
    iaf = perturb(IAFPosterior(2, depth=2, hidden=(16,)), 0.2)
    mu, log_var = torch.tensor([0.5, -1.0]), torch.tensor([-0.5, 0.3])
    points, area = grid(14.0, 500)
    with torch.no_grad():
        z, log_det_inv = iaf.inverse(points)
        log_q = (
            torch.distributions.Normal(mu, (0.5 * log_var).exp()).log_prob(z).sum(-1) + log_det_inv
        )
    assert (log_q.exp().sum() * area).item() == pytest.approx(1.0, abs=1e-4)
    model = lookup_vae(StandardNormalPrior(2), iaf)
    post = model.sample_posterior(torch.cat([mu, log_var])[None], n_samples=5)
    z_back, ld = iaf.inverse(post.z[:, 0])
    expected = torch.distributions.Normal(mu, (0.5 * log_var).exp()).log_prob(z_back).sum(-1) + ld
    torch.testing.assert_close(post.log_q[:, 0], expected)


def test_log_q_agg_is_the_mixture_and_chunking_is_exact(float64, monkeypatch):
    torch.manual_seed(0)
    mu, log_var, z = torch.randn(30, 2), torch.randn(30, 2), 2 * torch.randn(50, 2)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=torch.zeros(30)),
        torch.distributions.Independent(torch.distributions.Normal(mu, (0.5 * log_var).exp()), 1),
    )
    full = log_q_agg(z, mu, log_var)
    torch.testing.assert_close(full, mixture.log_prob(z))
    monkeypatch.setattr(priors_module, "PAIRWISE_CHUNK", 7)
    monkeypatch.setattr("dgm_lib.vae.surgery.PAIRWISE_CHUNK", 7)
    torch.testing.assert_close(log_q_agg(z, mu, log_var), full, atol=1e-12, rtol=0)
    pairwise = mixture.component_distribution.log_prob(z[:, None])
    torch.testing.assert_close(priors_module.log_normal_pairwise(z, mu, log_var), pairwise)


def _priors(d: int) -> dict[str, nn.Module]:
    torch.manual_seed(1)
    return {
        "standard": StandardNormalPrior(d),
        "mog": perturb(MoGPrior(d, 4)),
        "vamp": VampPrior(MLPEncoder(x_dim=5, hidden=(8,), z_dim=d), n_pseudo=3),
        "flow": FlowPrior(perturb(make_maf(d, depth=2, hidden=(8,)), 0.1), d),
    }


@pytest.mark.parametrize("prior_name", ["standard", "mog", "vamp", "flow"])
@pytest.mark.parametrize("with_flow", [False, True], ids=["gaussian_q", "iaf_q"])
def test_surgery_identity_holds_exactly_on_the_same_samples(float64, prior_name, with_flow):
    torch.manual_seed(0)
    prior = _priors(2)[prior_name]
    flow = perturb(IAFPosterior(2, depth=2, hidden=(8,)), 0.2) if with_flow else None
    x = torch.cat([torch.randn(40, 2), 0.5 * torch.randn(40, 2) - 1.0], 1)  # (mu_i, log_var_i)
    s = elbo_surgery(
        lookup_vae(prior, flow),
        x,
        n_samples=3,
        generator=torch.Generator().manual_seed(0),
        batch_size=16,
    )
    assert s["avg_kl"] == pytest.approx(s["mi"] + s["marginal_kl"], abs=1e-12)
    assert s["elbo"] == pytest.approx(s["recon"] - s["avg_kl"], abs=1e-12)
    assert -3 * s["mi_se"] <= s["mi"] <= s["log_n"] and s["log_n"] == pytest.approx(math.log(40))
    assert all(math.isfinite(v) for v in s.values())


def test_surgery_on_identical_posteriors_has_zero_mi_and_the_closed_form_kl(float64):
    """q(z|x_i) = q for all i: q_agg = q, so MI = 0 and marginal KL = KL(q || N(0, I)) (within Monte
    Carlo error)."""
    mu, log_var = torch.tensor([1.0, -2.0]), torch.tensor([0.4, -0.7])
    x = torch.cat([mu, log_var]).expand(64, 4).clone()
    s = elbo_surgery(
        lookup_vae(StandardNormalPrior(2)),
        x,
        n_samples=500,
        generator=torch.Generator().manual_seed(0),
    )
    assert s["mi"] == pytest.approx(0.0, abs=1e-12)
    closed = gaussian_kl(mu[None], log_var[None]).item()
    assert abs(s["marginal_kl"] - closed) < 4 * s["marginal_kl_se"] and s["marginal_kl_se"] < 0.03
    assert s["avg_kl"] == pytest.approx(s["marginal_kl"], abs=1e-12)


def test_surgery_with_a_posterior_flow_uses_the_push_forward_density(float64):
    """With an IAF posterior and identical q(z|x_i), log q_agg(z*) = log q(z*|x_i): MI = 0 (a wrong
    log-det sign in q_agg would leave -2 log|det J_g|); the marginal KL is E[log q(z*) - log p(z*)]
    with log q(z*) from the inverse."""
    torch.manual_seed(0)
    iaf = perturb(IAFPosterior(2, depth=2, hidden=(8,)), 0.3)
    mu, log_var = torch.tensor([0.5, -0.5]), torch.tensor([0.2, -0.4])
    x = torch.cat([mu, log_var]).expand(16, 4).clone()
    model = lookup_vae(StandardNormalPrior(2), iaf)
    s = elbo_surgery(model, x, n_samples=50, generator=torch.Generator().manual_seed(0))
    assert s["mi"] == pytest.approx(0.0, abs=1e-12)
    post = model.sample_posterior(x, 50, torch.Generator().manual_seed(0))
    z_star = post.z.reshape(-1, 2)
    z, log_det_inv = iaf.inverse(z_star)
    log_q = torch.distributions.Normal(mu, (0.5 * log_var).exp()).log_prob(z).sum(-1) + log_det_inv
    expected = (log_q - StandardNormalPrior(2).log_prob(z_star)).mean().item()
    assert s["marginal_kl"] == pytest.approx(
        expected, abs=1e-10
    )  # the same draws: the generator streams agree


def test_surgery_on_separated_posteriors_has_mi_log_n(float64):
    """n posteriors with means 15 stds apart: q_agg(z_i) = q(z_i|x_i) / n, so MI = log n; all KL_i
    are equal, so the standard error is the Monte Carlo error, and MI + marginal KL matches the
    closed-form average KL within it."""
    n, radius = 8, 12.0
    angle = 2 * math.pi * torch.arange(n) / n
    mu = radius * torch.stack([angle.cos(), angle.sin()], 1)
    log_var = torch.full((n, 2), math.log(0.25))
    s = elbo_surgery(
        lookup_vae(StandardNormalPrior(2)),
        torch.cat([mu, log_var], 1),
        500,
        torch.Generator().manual_seed(0),
    )
    assert s["mi"] == pytest.approx(math.log(n), abs=1e-12) and s["log_n"] == pytest.approx(
        math.log(n)
    )
    closed = gaussian_kl(mu, log_var).mean().item()
    assert abs(s["mi"] + s["marginal_kl"] - closed) < 4 * s["avg_kl_se"]
