"""dgm_lib.vae.VAE: likelihoods, ELBO and IWAE, gradients, fit(), shapes, dtypes, input errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dgm_lib.flows import make_maf, make_realnvp
from dgm_lib.training import FitOptions, fit
from dgm_lib.vae import (
    VAE,
    ConvDecoder,
    ConvEncoder,
    FlowPrior,
    IAFPosterior,
    MLPDecoder,
    MLPEncoder,
    MoGPrior,
    StandardNormalPrior,
    VampPrior,
    elbo_surgery,
    gaussian_kl,
)
from dgm_lib.vae.priors import LOG_VAR_BOUND

X_SHAPE = (1, 8, 8)


pytestmark = pytest.mark.usefixtures("one_thread")


def small_vae(
    prior: str = "standard",
    posterior: str = "gaussian",
    likelihood: str = "bernoulli",
    conv: bool = False,
) -> VAE:
    """A small VAE on 8x8 images with z_dim = 2."""
    if conv:
        encoder, decoder = (
            ConvEncoder(X_SHAPE, (4, 8), 2),
            ConvDecoder(2, (8, 4), X_SHAPE, likelihood),
        )
    else:
        encoder, decoder = MLPEncoder(64, (32,), 2), MLPDecoder(2, (32,), X_SHAPE, likelihood)
    priors = {
        "standard": lambda: StandardNormalPrior(2),
        "mog": lambda: MoGPrior(2, 3),
        "vamp": lambda: VampPrior(encoder, 4, X_SHAPE),
        "realnvp": lambda: FlowPrior(make_realnvp(2, depth=2, hidden=(8,)), 2),
        "maf": lambda: FlowPrior(make_maf(2, depth=2, hidden=(8,)), 2),
    }
    flow = IAFPosterior(2, depth=2, hidden=(8,)) if posterior == "iaf" else None
    return VAE(encoder, decoder, priors[prior](), flow)


def digits(n: int, seed: int = 0) -> torch.Tensor:
    """n binary 8x8 'images': a bright square at one of four random places, with 5% pixel noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, *X_SHAPE)
    corner = torch.randint(0, 4, (n,), generator=g)
    for i, c in enumerate(corner.tolist()):
        r, s = 4 * (c // 2), 4 * (c % 2)
        x[i, 0, r : r + 4, s : s + 4] = 1.0
    flip = torch.rand(x.shape, generator=g) < 0.05
    return torch.where(flip, 1 - x, x).to(torch.get_default_dtype())


def test_bernoulli_and_gaussian_log_likelihood_against_torch_distributions(float64):
    torch.manual_seed(0)
    x, z = digits(5), torch.randn(5, 2)
    bern = small_vae()
    expected = torch.distributions.Bernoulli(logits=bern.decode(z)).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(bern.log_likelihood(x, z), expected)
    torch.testing.assert_close(
        bern.log_likelihood(x.reshape(5, 64), z), expected
    )  # flat x is accepted
    gauss = small_vae(likelihood="gaussian", conv=True)
    mean, log_var = gauss.decode(z)
    expected = torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(gauss.log_likelihood(x, z), expected)
    zs = torch.randn(3, 5, 2)  # S latents per data point
    torch.testing.assert_close(gauss.log_likelihood(x, zs)[1], gauss.log_likelihood(x, zs[1]))


def test_elbo_terms_closed_form_kl_matches_monte_carlo(float64):
    torch.manual_seed(0)
    model, x = small_vae(), digits(4)
    closed = model.elbo_terms(x)
    assert model.closed_form_kl
    mu, log_var = model.encode(x)
    torch.testing.assert_close(closed["kl"], gaussian_kl(mu, log_var))
    post = model.sample_posterior(x, 20_000, torch.Generator().manual_seed(0))
    log_ratio = post.log_q - model.prior.log_prob(post.z.reshape(-1, 2)).reshape(post.log_q.shape)
    se = log_ratio.std(0) / math.sqrt(20_000)
    assert ((log_ratio.mean(0) - closed["kl"]).abs() < 4 * se).all()
    torch.testing.assert_close(closed["elbo"], closed["recon"] - closed["kl"])


def test_iwae_with_one_sample_is_the_monte_carlo_elbo(float64):
    torch.manual_seed(0)
    model, x = small_vae("mog", "iaf"), digits(6)
    elbo = model.elbo(x, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model.iwae(x, k=1, generator=torch.Generator().manual_seed(3)), elbo)


@pytest.mark.parametrize("prior", ["standard", "vamp"])
def test_iwae_is_above_the_elbo_and_increases_with_k(float64, prior):
    """E[IWAE_k] is non-decreasing in k and IWAE_1 = ELBO in expectation (Burda et al., Theorem 1);
    averaged over 64 points and 5 seeds the steps are far larger than the Monte Carlo noise."""
    torch.manual_seed(0)
    model, x = small_vae(prior), digits(64)
    fit(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-2),
        [x],
        FitOptions(steps=30, progress=False),
    )
    with torch.no_grad():
        elbo = torch.stack(
            [model.elbo(x, 20, torch.Generator().manual_seed(s)) for s in range(5)]
        ).mean()
        bounds = [
            torch.stack(
                [model.iwae(x, k, torch.Generator().manual_seed(s)) for s in range(5)]
            ).mean()
            for k in (1, 10, 100)
        ]
    assert bounds[0].item() == pytest.approx(elbo.item(), abs=0.3)
    assert elbo < bounds[1] - 0.1 < bounds[2] - 0.2


@pytest.mark.parametrize(
    "prior,posterior,conv",
    [
        ("standard", "gaussian", True),
        ("mog", "gaussian", False),
        ("vamp", "gaussian", False),
        ("realnvp", "gaussian", False),
        ("maf", "gaussian", False),
        ("standard", "iaf", False),
    ],
)
def test_every_parameter_gets_a_gradient(prior, posterior, conv):
    torch.manual_seed(0)
    model = small_vae(prior, posterior, "gaussian" if conv else "bernoulli", conv)
    terms = model(digits(16))
    assert set(terms) == {"loss", "elbo", "recon", "kl"}
    terms["loss"].backward()
    missing = [
        name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient for {missing}"


def test_beta_weights_the_kl_in_the_loss():
    torch.manual_seed(0)
    model, x = small_vae(), digits(8)
    terms = model(x)
    model.beta = 4.0
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(1)
    b = model.elbo_terms(x)
    torch.testing.assert_close(a["loss"], -(b["recon"] - 4.0 * b["kl"]).mean())
    assert terms["elbo"].requires_grad is False


@pytest.mark.parametrize("prior,posterior", [("vamp", "gaussian"), ("maf", "iaf")])
def test_fit_on_a_tiny_subset_decreases_the_loss(prior, posterior):
    torch.manual_seed(0)
    model, x = small_vae(prior, posterior), digits(64)
    history = fit(
        model,
        torch.optim.Adam(model.parameters(), lr=3e-3),
        list(x.split(32)),
        FitOptions(steps=150, progress=False),
    )
    assert history.last("loss", 10) < history["loss"][0] - 10
    assert all(math.isfinite(v) for v in history["loss"])


def test_sample_shapes_dtype_and_generator():
    model = small_vae("mog", conv=True)
    a = model.sample(5, generator=torch.Generator().manual_seed(0))
    b = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (5, *X_SHAPE) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not a.requires_grad


def test_float64_model_follows_its_dtype(float64):
    model, x = small_vae("realnvp", "iaf"), digits(4)
    assert x.dtype == torch.float64
    terms = model.elbo_terms(x, n_samples=2)
    assert all(v.dtype == torch.float64 and v.shape == (4,) for v in terms.values())
    assert model.iwae(x, 3).dtype == torch.float64 and model.sample(2).dtype == torch.float64


def test_extreme_inputs_give_finite_values():
    """Huge encoder outputs are clamped: log-variances stay in (-LOG_VAR_BOUND, LOG_VAR_BOUND), no
    NaN or inf."""
    torch.manual_seed(0)
    model = small_vae("mog", "iaf")
    x = 1e4 * digits(8)
    mu, log_var = model.encode(x)
    assert torch.isfinite(log_var).all() and log_var.abs().max() <= LOG_VAR_BOUND
    assert torch.isfinite(gaussian_kl(mu, log_var)).all()
    terms = model(x.clamp(0, 1))
    assert all(torch.isfinite(v).all() for v in terms.values())


def test_errors_name_the_argument_and_the_allowed_values():
    model = small_vae()
    with pytest.raises(ValueError, match=r"x must have shape \(B, 64\)"):
        model.elbo(torch.zeros(3, 1, 28, 28))
    with pytest.raises(TypeError, match="floating-point"):
        model.elbo(torch.zeros(3, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="z_dim must agree"):
        VAE(MLPEncoder(64, (8,), 3), MLPDecoder(3, (8,), X_SHAPE), StandardNormalPrior(2))
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        model.elbo_terms(digits(2), n_samples=0)
    with pytest.raises(ValueError, match="k must be a positive int"):
        model.iwae(digits(2), k=0)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        MLPDecoder(2, (8,), X_SHAPE, likelihood="poisson")
    with pytest.raises(ValueError, match="divisible"):
        ConvEncoder((1, 10, 10), (4, 8), 2)
    with pytest.raises(ValueError, match=r"z must have shape \(batch, 2\)"):
        StandardNormalPrior(2).log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="temperature must be a positive"):
        MoGPrior(2, 3, temperature=0.0)
    with pytest.raises(ValueError, match="x_shape"):
        VampPrior(MLPEncoder(64, (8,), 2), 4, (1, 28, 28))
    with pytest.raises(TypeError, match="Transform"):
        FlowPrior(nn.Linear(2, 2), 2)
    with pytest.raises(TypeError, match="posterior_flow"):
        VAE(
            MLPEncoder(64, (8,), 2),
            MLPDecoder(2, (8,), X_SHAPE),
            StandardNormalPrior(2),
            nn.Linear(2, 2),
        )
    with pytest.raises(ValueError, match="at least 2 data points"):
        elbo_surgery(model, digits(1))
    with pytest.raises(ValueError, match="x contains NaN"):
        model.elbo(torch.full((2, 64), float("nan")))
