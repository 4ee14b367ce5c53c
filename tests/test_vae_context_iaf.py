"""The IAF posterior conditioned on the encoder's context h(x) (Kingma et al., 2016, Algorithm 1):
log-dets against autograd in float64, triangular Jacobians, the context's effect, gradients,
errors, and the ELBO and IWAE against log p(x) by quadrature in a 2D latent."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from dgm_lib.flows import IAF, Compose
from dgm_lib.vae import (
    VAE,
    ContextIAF,
    ContextIAFPosterior,
    MLPDecoder,
    MLPEncoder,
    StandardNormalPrior,
    elbo_surgery,
)
from dgm_lib.vae.chapter import evaluate
from dgm_lib.vae.surgery import log_q_agg_context

pytestmark = pytest.mark.usefixtures("one_thread")


def perturb(module: nn.Module, scale: float = 0.3) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def small_vae(context_dim: int = 3, depth: int = 2, x_dim: int = 6) -> VAE:
    encoder = MLPEncoder(x_dim, (16,), 2, context_dim=context_dim)
    decoder = MLPDecoder(2, (16,), (x_dim,), "bernoulli")
    flow = ContextIAFPosterior(2, context_dim, depth=depth, hidden=(16,))
    return VAE(encoder, decoder, StandardNormalPrior(2), flow)


def grid(lim: float, n: int) -> tuple[Tensor, float]:
    """Midpoints of an n x n grid on [-lim, lim]^2 and the cell area."""
    h = 2 * lim / n
    t = -lim + h * (torch.arange(n) + 0.5)
    return torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2), h * h


@pytest.mark.parametrize("order", [None, [2, 0, 3, 1]])
def test_step_log_det_against_autograd_and_triangular_in_its_order(float64, order):
    """For fixed h, dz*/dz is triangular in the order with diagonal sigma, and log|det| matches."""
    torch.manual_seed(0)
    step = perturb(ContextIAF(4, context_dim=3, hidden=(16, 16), order=order), 0.3)
    z, h = torch.randn(5, 4), torch.randn(5, 3)
    z_star, log_det = step(z, h)
    assert z_star.shape == (5, 4) and log_det.shape == (5,) and z_star.dtype == torch.float64
    jac = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda v: step(v[None], h[i : i + 1])[0][0], z[i])
            for i in range(len(z))
        ]
    )
    torch.testing.assert_close(torch.linalg.slogdet(jac)[1], log_det, atol=1e-12, rtol=0)
    rank = step.made.order
    later = rank[None, :] >= rank[:, None]  # [j, i]: z_i not before z*_j in the order
    off = later & ~torch.eye(4, dtype=torch.bool)
    assert jac[:, off].abs().max() == 0  # z*_j depends only on z_i earlier in the order
    assert jac[:, ~later].abs().max() > 1e-3  # ... and does depend on them
    _, log_sigma = step.params(z, h)
    torch.testing.assert_close(jac.diagonal(dim1=1, dim2=2), log_sigma.exp())
    assert (log_sigma < 0).all()  # sigma = sigmoid(s) in (0, 1)


def test_posterior_log_det_against_autograd_and_round_trip(float64):
    torch.manual_seed(1)
    flow = perturb(ContextIAFPosterior(3, context_dim=4, depth=3, hidden=(16, 16)), 0.2)
    z, h = torch.randn(6, 3), torch.randn(6, 4)
    z_star, log_det = flow(z, h)
    for i in range(len(z)):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None], h[i : i + 1])[0][0], z[i])
        assert torch.linalg.slogdet(jac)[1].item() == pytest.approx(log_det[i].item(), abs=1e-10)
    back, log_det_inv = flow.inverse(z_star, h)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(log_det_inv, -log_det)


def test_the_step_is_algorithm_1_of_kingma_et_al(float64):
    """z* = sigmoid(s) z + (1 - sigmoid(s)) m with [m, s] the MADE output plus the context terms."""
    torch.manual_seed(2)
    step = perturb(ContextIAF(3, context_dim=2, hidden=(8,)), 0.3)
    z, h = torch.randn(4, 3), torch.randn(4, 2)
    net = step.made.net
    out = net[2:](net[1](net[0](z) + step.context(h))) + step.context_out(h)
    m, s = out.unflatten(1, (3, 2)).unbind(-1)
    z_star, log_det = step(z, h)
    torch.testing.assert_close(z_star, torch.sigmoid(s) * z + (1 - torch.sigmoid(s)) * m)
    torch.testing.assert_close(log_det, torch.log(torch.sigmoid(s)).sum(1))


def test_the_context_changes_every_coordinate_of_the_output(float64):
    """Different h, same z: every coordinate moves, the first in the order included (it sees no
    other latent, only h); the Jacobian in z changes too (the flow is not a prior in disguise)."""
    torch.manual_seed(3)
    flow = perturb(ContextIAFPosterior(2, context_dim=3, depth=2, hidden=(16,)), 0.3)
    z = torch.randn(1, 2).expand(5, 2)
    h = torch.randn(5, 3)
    z_star, log_det = flow(z, h)
    assert (z_star[1:] - z_star[0]).abs().min() > 1e-4
    assert (log_det[1:] - log_det[0]).abs().min() > 1e-4
    step = flow.steps[0]
    m, log_sigma = step.params(z, h)
    assert (m[1:] - m[0]).abs().min() > 1e-4 and (log_sigma[1:] - log_sigma[0]).abs().min() > 1e-4


def test_a_fresh_step_starts_with_the_gate_open_towards_identity():
    """s starts near +1 (Kingma et al.: a positive s): sigma near sigmoid(1), z* close to z."""
    torch.manual_seed(4)
    step = ContextIAF(2, context_dim=3)
    _, log_sigma = step.params(torch.zeros(64, 2), torch.zeros(64, 3))
    assert log_sigma.exp().mean().item() == pytest.approx(1 / (1 + math.exp(-1)), abs=0.1)


def test_every_parameter_receives_a_gradient_through_the_elbo():
    torch.manual_seed(5)
    model = small_vae()
    x = torch.rand(8, 6).round()
    model(x)["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert missing == []
    rows = model.encoder.net[-1].weight.grad[4:]  # the rows of h(x) in the encoder's last layer
    assert rows.abs().sum(1).min() > 0


def test_shapes_of_sampling_elbo_iwae_and_posterior_density():
    torch.manual_seed(6)
    model, x = small_vae(context_dim=5), torch.rand(7, 6).round()
    mu, log_var, h = model.encode_with_context(x)
    assert mu.shape == log_var.shape == (7, 2) and h.shape == (7, 5) and model.context_posterior
    post = model.sample_posterior(x, n_samples=3)
    assert post.z.shape == post.z0.shape == (3, 7, 2) and post.log_q.shape == (3, 7)
    assert model.elbo(x, n_samples=2).shape == model.iwae(x, k=4).shape == (7,)
    assert model.posterior_log_prob(post.z, x).shape == (3, 7)
    assert model.encode(x)[0].shape == (7, 2)  # encode keeps its (mu, log_var) contract
    plain = VAE(MLPEncoder(6, (8,), 2), MLPDecoder(2, (8,), (6,)), StandardNormalPrior(2))
    assert plain.encode_with_context(x)[2] is None and not plain.context_posterior


def test_sampled_log_q_is_the_density_at_the_sample(float64):
    """log q(z*|x) from the forward pass equals the density through the inverse at z*."""
    torch.manual_seed(7)
    model, x = perturb(small_vae(), 0.2), torch.rand(5, 6).round()
    post = model.sample_posterior(x, n_samples=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.posterior_log_prob(post.z, x), post.log_q)


def test_elbo_and_iwae_against_log_p_by_quadrature(float64):
    """In a 2D latent log p(x) = log sum_grid p(x|z) p(z) dz. The gap log p(x) - ELBO equals
    KL(q(z|x) || p(z|x)) >= 0, with q from the flow's inverse on the same grid; the IWAE bound lies
    between the ELBO and log p(x); q(z|x) integrates to one."""
    torch.manual_seed(8)
    model, x = perturb(small_vae(), 0.3), torch.rand(3, 6).round()
    points, area = grid(9.0, 400)
    z = points[:, None, :].expand(-1, 3, -1)
    with torch.no_grad():
        log_joint = model.log_likelihood(x, z) + model.prior.log_prob(points)[:, None]
        log_px = torch.logsumexp(log_joint, 0) + math.log(area)
        log_q = model.posterior_log_prob(z, x)
        q = log_q.exp() * area
        terms = q * (log_q - (log_joint - log_px))
        kl = torch.where(q > 0, terms, 0.0).sum(0)  # q log q -> 0 where q underflows
        elbo = model.elbo(x, n_samples=20_000, generator=torch.Generator().manual_seed(1))
        iwae = model.iwae(x, k=2000, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(q.sum(0), torch.ones(3), atol=1e-4, rtol=0)
    assert (kl > 1e-3).all()  # a strictly loose bound for this random model
    # the gap log p - ELBO is KL(q || p(z|x)): within the Monte Carlo error of the ELBO (its
    # standard error at 20,000 draws is below 0.01 nats for this model)
    torch.testing.assert_close(log_px - elbo, kl, atol=0.03, rtol=0)
    assert (elbo < iwae).all() and (iwae < log_px + 1e-3).all()


def test_surgery_identity_and_zero_mi_for_identical_digits(float64):
    """q_agg through the per-digit inversions: avg KL = MI + marginal KL on the same draws, MI <=
    log n; n copies of one digit have q_agg = q(z|x), so MI = 0."""
    torch.manual_seed(9)
    model = perturb(small_vae(), 0.2)
    x = torch.rand(12, 6).round()
    s = elbo_surgery(model, x, n_samples=3, generator=torch.Generator().manual_seed(0))
    assert s["avg_kl"] == pytest.approx(s["mi"] + s["marginal_kl"], abs=1e-10)
    assert -3 * s["mi_se"] <= s["mi"] <= s["log_n"]
    same = x[:1].expand(8, 6).clone()
    s = elbo_surgery(model, same, n_samples=3, generator=torch.Generator().manual_seed(0))
    assert s["mi"] == pytest.approx(0.0, abs=1e-10)
    mu, log_var, h = model.encode_with_context(x)
    post = model.sample_q(mu, log_var, 1, torch.Generator().manual_seed(1), h)
    mixture = torch.logsumexp(model.posterior_log_prob(post.z[0][:, None].expand(-1, 12, -1), x), 1)
    torch.testing.assert_close(
        log_q_agg_context(model, post.z[0], mu, log_var, h), mixture - math.log(12)
    )


def test_evaluate_leaves_out_the_q_agg_terms_of_a_context_posterior():
    torch.manual_seed(10)
    model, x = small_vae(), torch.rand(6, 6).round()
    out = evaluate(model, x, k=3, n_samples=2, generator=torch.Generator().manual_seed(0))
    assert "mi" not in out and "marginal_kl" not in out
    assert out["elbo"] == pytest.approx(out["recon"] - out["avg_kl"]) and out["iwae"] < 0
    full = evaluate(model, x, k=3, n_samples=2, aggregate=True)
    assert full["avg_kl"] == pytest.approx(full["mi"] + full["marginal_kl"], abs=1e-5)


def test_errors_name_the_argument():
    flow = ContextIAFPosterior(2, context_dim=3, depth=1, hidden=(8,))
    z, h = torch.randn(4, 2), torch.randn(4, 3)
    with pytest.raises(ValueError, match="context_dim"):
        ContextIAF(2, context_dim=0)
    with pytest.raises(TypeError, match="depth"):
        ContextIAFPosterior(2, 3, depth=1.5)
    with pytest.raises(ValueError, match="^h must have shape"):
        flow(z, torch.randn(4, 2))
    with pytest.raises(ValueError, match="^h must have one row per row of z"):
        flow(z, h[:3])
    with pytest.raises(ValueError, match="^z_star must have shape"):
        flow.inverse(torch.randn(4, 3), h)
    with pytest.raises(TypeError, match="^h must be a floating-point"):
        flow(z, h.long())
    with pytest.raises(ValueError, match="^h contains NaN"):
        flow(z, torch.full((4, 3), math.nan))
    with pytest.raises(TypeError, match="^z has dtype torch.float64"):
        flow(z.double(), h.double())
    with pytest.raises(ValueError, match="^encoder must emit a context h\\(x\\) of size 3"):
        VAE(MLPEncoder(6, (8,), 2), MLPDecoder(2, (8,), (6,)), StandardNormalPrior(2), flow)
    with pytest.raises(TypeError, match="^posterior_flow must be"):
        VAE(
            MLPEncoder(6, (8,), 2),
            MLPDecoder(2, (8,), (6,)),
            StandardNormalPrior(2),
            nn.Linear(2, 2),
        )
    with pytest.raises(ValueError, match="context_dim"):
        MLPEncoder(6, (8,), 2, context_dim=-1)
    model = small_vae()
    mu, log_var, h = model.encode_with_context(torch.rand(3, 6).round())
    with pytest.raises(ValueError, match="^h must be the encoder's context"):
        model.sample_q(mu, log_var)
    plain = VAE(
        MLPEncoder(6, (8,), 2),
        MLPDecoder(2, (8,), (6,)),
        StandardNormalPrior(2),
        Compose(IAF(2, (8,))),
    )
    with pytest.raises(ValueError, match="^h must be None"):
        plain.sample_q(mu, log_var, h=h)
    with pytest.raises(ValueError, match="^z must have shape \\(S, B, 2\\)"):
        model.posterior_log_prob(torch.randn(3, 2), torch.rand(3, 6))
    with pytest.raises(TypeError, match="^aggregate must be a bool"):
        elbo_surgery(model, torch.rand(3, 6).round(), aggregate="yes")
    with pytest.raises(ValueError, match="^model must have a ContextIAFPosterior"):
        log_q_agg_context(plain, torch.randn(2, 2), mu, log_var, h)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_follows_the_device_of_its_input():
    model = small_vae().cuda()
    x = torch.rand(4, 6, device="cuda").round()
    assert model.elbo(x).device.type == "cuda" and model.iwae(x, k=3).device.type == "cuda"
