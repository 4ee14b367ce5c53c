"""The theorems of the chapter "ELBO surgery", in float64: the surgery identity (continuous and
empirical data), the range [0, log n] of the mutual information, the optimal prior q_agg, the flow
prior = flow posterior equivalence; plus the chapter's exercise checks and the latent-prior
explorer's closed-form re-parametrisations."""

import math

import pytest
import torch
from torch import Tensor, nn

from dgm_lib.exercises import check
from dgm_lib.flows import make_maf, make_realnvp
from dgm_lib.vae import (
    VAE,
    FlowPrior,
    IAFPosterior,
    MLPDecoder,
    MLPEncoder,
    MoGPrior,
    StandardNormalPrior,
    gaussian_kl,
    log_normal_diag,
    log_normal_pairwise,
    log_q_agg,
)

pytestmark = pytest.mark.usefixtures(
    "float64", "one_thread"
)  # conftest: float64 default dtype, one thread


def grid(lim: float, n: int) -> tuple[Tensor, float]:
    """Midpoints of an n x n grid on [-lim, lim]^2 and the cell area."""
    h = 2 * lim / n
    t = -lim + h * (torch.arange(n) + 0.5)
    return torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2), h * h


def posteriors(n: int, sigma: float, seed: int) -> tuple[Tensor, Tensor]:
    """n diagonal Gaussian posteriors in 2D: random means, stds around sigma."""
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, 2, generator=gen)
    log_var = 2 * math.log(sigma) + 0.3 * torch.randn(n, 2, generator=gen)
    return mu, log_var


def quadrature_terms(
    mu: Tensor, log_var: Tensor, log_prior, lim: float = 7.0, n_grid: int = 500
) -> dict[str, float]:
    """Average KL, MI and marginal KL of the empirical posteriors by midpoint quadrature on [-lim,
    lim]^2."""
    z, area = grid(lim, n_grid)
    log_q = log_normal_pairwise(z, mu, log_var)  # (M, n)
    log_agg = torch.logsumexp(log_q, 1) - math.log(len(mu))
    q = log_q.exp()
    log_p = log_prior(z)
    return {
        "avg_kl": (q * (log_q - log_p[:, None])).sum().item() * area / len(mu),
        "mi": (q * (log_q - log_agg[:, None])).sum().item() * area / len(mu),
        "marginal_kl": (log_agg.exp() * (log_agg - log_p)).sum().item() * area,
        "mass": q.sum().item() * area / len(mu),
    }


# --- the ELBO surgery theorem
# --------------------------------------------------------------------------------------


def test_surgery_for_linear_gaussian_encoder_and_continuous_data_by_quadrature():
    """x ~ N(0, s^2), q(z|x) = N(a x + b, sigma^2), p = N(0, 1): E_x KL(q(z|x) || p) = KL(q_agg ||
    p) + I[x, z], all three by 2D quadrature over (x, z), against the closed forms the chapter
    prints."""
    s, a, b, sigma = 1.5, 0.8, 0.3, 0.4
    h = 0.01
    x = torch.arange(-10, 10, h) + h / 2
    z = torch.arange(-10, 10, h) + h / 2
    log_px = -0.5 * (x / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
    log_q = -0.5 * ((z[None] - a * x[:, None] - b) / sigma) ** 2 - math.log(
        sigma * math.sqrt(2 * math.pi)
    )
    log_joint = log_px[:, None] + log_q
    log_agg = torch.logsumexp(log_joint, 0) + math.log(h)  # q_agg(z) = int p(x) q(z|x) dx
    log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    joint = log_joint.exp() * h * h
    avg_kl = (joint * (log_q - log_p[None])).sum().item()
    mi = (joint * (log_q - log_agg[None])).sum().item()
    marginal_kl = (log_agg.exp() * (log_agg - log_p)).sum().item() * h
    assert avg_kl == pytest.approx(marginal_kl + mi, abs=1e-8)
    v = a**2 * s**2 + sigma**2
    assert avg_kl == pytest.approx(
        0.5 * (sigma**2 + a**2 * s**2 + b**2 - 1 - math.log(sigma**2)), abs=1e-6
    )
    assert mi == pytest.approx(0.5 * math.log(v / sigma**2), abs=1e-6)
    assert marginal_kl == pytest.approx(0.5 * (v + b**2 - 1 - math.log(v)), abs=1e-6)


@pytest.mark.parametrize("prior", ["standard", "mog"])
def test_surgery_for_empirical_posteriors_by_quadrature(prior):
    """n = 6 posteriors: the average KL (closed form for N(0, I)) = MI + marginal KL, each by
    quadrature."""
    mu, log_var = posteriors(6, sigma=0.5, seed=0)
    if prior == "standard":
        log_prior = StandardNormalPrior(2).log_prob
    else:
        torch.manual_seed(1)
        log_prior = MoGPrior(2, n_components=3).log_prob
    with torch.no_grad():
        terms = quadrature_terms(mu, log_var, log_prior)
    assert terms["mass"] == pytest.approx(1.0, abs=1e-9)
    assert terms["avg_kl"] == pytest.approx(terms["mi"] + terms["marginal_kl"], abs=1e-9)
    if prior == "standard":
        assert terms["avg_kl"] == pytest.approx(gaussian_kl(mu, log_var).mean().item(), abs=1e-6)


def test_surgery_terms_split_exactly_on_the_same_samples():
    """The chapter's estimator: log q/p = log q/q_agg + log q_agg/p for every draw, so the averages
    add up exactly."""
    mu, log_var = posteriors(300, sigma=0.2, seed=2)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(
        mu.shape, generator=torch.Generator().manual_seed(3)
    )
    log_q, log_agg = log_normal_diag(z, mu, log_var), log_q_agg(z, mu, log_var)
    log_p = StandardNormalPrior(2).log_prob(z)
    avg_kl, mi, marginal_kl = (
        (log_q - log_p).mean(),
        (log_q - log_agg).mean(),
        (log_agg - log_p).mean(),
    )
    assert avg_kl.item() == pytest.approx((mi + marginal_kl).item(), abs=1e-12)


# --- 0 <= MI <= log n
# --------------------------------------------------------------------------------------------


def test_pointwise_bound_behind_mi_at_most_log_n():
    """The proof's key step: q_agg(z) >= q(z|x_i) / n, i.e. log q(z|x_i) - log q_agg(z) <= log n for
    every z and i."""
    mu, log_var = posteriors(50, sigma=0.05, seed=4)
    z = 3 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(5))
    log_q = log_normal_pairwise(z, mu, log_var)
    log_ratio = log_q - log_q_agg(z, mu, log_var)[:, None]
    assert log_ratio.max().item() <= math.log(50) + 1e-12


@pytest.mark.parametrize("sigma", [3.0, 0.5, 0.1, 0.02])
def test_mi_lies_in_zero_log_n(sigma):
    mu, log_var = posteriors(8, sigma=sigma, seed=6)
    with torch.no_grad():
        mi = quadrature_terms(mu, log_var, StandardNormalPrior(2).log_prob, lim=8.0, n_grid=1600)[
            "mi"
        ]
    assert -1e-9 <= mi <= math.log(8) + 1e-9


def test_mi_bounds_are_attained():
    """Identical posteriors: MI = 0 exactly; far apart (disjoint up to e^-800): MI = log n."""
    n = 5
    same_mu, same_log_var = torch.zeros(n, 2) + 0.3, torch.full((n, 2), -1.0)
    z = torch.randn(100, 2, generator=torch.Generator().manual_seed(7))
    mi_same = (
        log_normal_diag(z, same_mu[:1], same_log_var[:1]) - log_q_agg(z, same_mu, same_log_var)
    ).mean()
    assert mi_same.item() == pytest.approx(0.0, abs=1e-12)
    far_mu, far_log_var = 100 * torch.arange(n).repeat(2, 1).T.double(), torch.full((n, 2), -2.0)
    draws = far_mu + 0.37 * torch.randn(n, 2, generator=torch.Generator().manual_seed(8))
    mi_far = (
        log_normal_diag(draws, far_mu, far_log_var) - log_q_agg(draws, far_mu, far_log_var)
    ).mean()
    assert mi_far.item() == pytest.approx(math.log(n), abs=1e-12)


# --- the optimal prior is q_agg
# ----------------------------------------------------------------------------------


def test_q_agg_is_the_optimal_prior():
    """For fixed posteriors, KL(q_agg || p) = 0 for p = q_agg and > 0 otherwise, so q_agg maximizes
    the average ELBO; the maximal average KL term is the MI."""
    mu, log_var = posteriors(6, sigma=0.5, seed=9)
    torch.manual_seed(10)
    others = {
        "standard": StandardNormalPrior(2).log_prob,
        "mog": MoGPrior(2, n_components=6).log_prob,
    }
    with torch.no_grad():
        best = quadrature_terms(mu, log_var, lambda z: log_q_agg(z, mu, log_var))
        assert best["marginal_kl"] == pytest.approx(0.0, abs=1e-9)
        assert best["avg_kl"] == pytest.approx(best["mi"], abs=1e-9)
        for log_prior in others.values():
            assert quadrature_terms(mu, log_var, log_prior)["avg_kl"] > best["avg_kl"] + 1e-3


# --- flow prior = flow posterior
# ---------------------------------------------------------------------------------


class DecoderAfterG(nn.Module):
    """The decoder p(x | g(z*)) of the flow-posterior form: the flow prior's generating map g, then
    the decoder."""

    def __init__(self, decoder: MLPDecoder, transform: nn.Module):
        super().__init__()
        self.decoder, self.transform, self.z_dim = decoder, transform, decoder.z_dim

    def forward(self, z_star: Tensor):
        return self.decoder(self.transform.inverse(z_star)[0])

    def log_prob(self, x: Tensor, out) -> Tensor:
        return self.decoder.log_prob(x, out)

    def mean(self, out) -> Tensor:
        return self.decoder.mean(out)


@pytest.mark.parametrize("flow", ["maf", "realnvp", "iaf"])
def test_flow_prior_and_flow_posterior_elbos_are_equal_sample_by_sample(flow):
    """VAE(q, decoder, prior with f) and VAE(q then z* = f(z), decoder after g, N(0, I)) have the
    same ELBO on the same draws: the library's flow-prior and posterior-flow code paths, two routes
    to one number."""
    torch.manual_seed(11)
    transform = {
        "maf": lambda: make_maf(2, depth=2, hidden=(8,)).transform,
        "realnvp": lambda: make_realnvp(2, depth=4, hidden=(8,)).transform,
        "iaf": lambda: IAFPosterior(2, depth=2, hidden=(8,)),
    }[flow]()
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.3 * torch.randn_like(p))
    encoder = MLPEncoder(x_dim=4, hidden=(8,), z_dim=2)
    decoder = MLPDecoder(z_dim=2, hidden=(8,), x_shape=(4,), likelihood="gaussian")
    with_prior = VAE(encoder, decoder, FlowPrior(transform, 2))
    with_posterior = VAE(
        encoder, DecoderAfterG(decoder, transform), StandardNormalPrior(2), posterior_flow=transform
    )
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        prior_form = with_prior.elbo_terms(
            x, n_samples=8, generator=torch.Generator().manual_seed(13)
        )
        posterior_form = with_posterior.elbo_terms(
            x, n_samples=8, generator=torch.Generator().manual_seed(13)
        )
    for term in ("elbo", "recon", "kl"):
        torch.testing.assert_close(prior_form[term], posterior_form[term], rtol=0, atol=1e-10)


# --- the chapter's exercise checks and widget
# ----------------------------------------------------------------------


def reference_mutual_information(mu: Tensor, log_var: Tensor, z: Tensor) -> Tensor:
    pairwise = -0.5 * (
        (z[:, None] - mu[None]) ** 2 / log_var.exp()[None] + log_var[None] + math.log(2 * math.pi)
    )
    pairwise = pairwise.sum(-1)
    return (pairwise.diagonal() - torch.logsumexp(pairwise, 1) + math.log(len(z))).mean()


def reference_flow_prior_log_prob(transform, z: Tensor) -> Tensor:
    z_star, log_det = transform(z)
    return -0.5 * (z_star**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi) + log_det


def test_exercise_checks_pass_the_reference_solutions_and_catch_typical_mistakes(capsys):
    assert check("elbo_surgery.mutual_information", reference_mutual_information)
    assert check("elbo_surgery.flow_prior_log_prob", reference_flow_prior_log_prob)

    def naive_mutual_information(
        mu, log_var, z
    ):  # log(mean(exp(.))): overflows for narrow posteriors
        pairwise = (
            -0.5
            * (
                (z[:, None] - mu[None]) ** 2 / log_var.exp()[None]
                + log_var[None]
                + math.log(2 * math.pi)
            )
        ).sum(-1)
        return (pairwise.diagonal() - pairwise.exp().mean(1).log()).mean()

    def minus_log_det(transform, z):  # the sign of the log-determinant flipped
        return reference_flow_prior_log_prob(transform, z) - 2 * transform(z)[1]

    assert not check("elbo_surgery.mutual_information", naive_mutual_information)
    assert not check("elbo_surgery.flow_prior_log_prob", minus_log_det)
    assert "Hint" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("family", "k", "temperature", "depth"),
    [
        ("standard N(0, I)", 1, 1.7, 4),
        ("mixture of Gaussians", 3, 0.6, 4),
        ("flow (MAF)", 1, 1.3, 2),
    ],
)
def test_latent_prior_explorer_reparametrisations_are_normalized(family, k, temperature, depth):
    from dgm_lib.vae.explorers import latent_prior
    from dgm_lib.viz import latent_lim

    torch.set_default_dtype(torch.float32)  # the zoo models are float32
    log_prob, sample, _ = latent_prior(family, k, temperature, depth, "cpu")
    with torch.no_grad():
        draws = sample(20_000, torch.Generator().manual_seed(14))
        lim = 2 * latent_lim(draws)
        z, area = grid(lim, 1500)
        mass = sum(log_prob(c.float()).double().exp().sum().item() for c in z.split(250_000)) * area
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_latent_prior_explorer_builds_with_its_controls():
    import ipywidgets as widgets

    from dgm_lib.vae.explorers import latent_prior_explorer

    torch.set_default_dtype(torch.float32)
    box = latent_prior_explorer(device="cpu")
    controls, output = box.children
    assert isinstance(output, widgets.Output)
    assert [c.description for c in controls.children] == ["prior", "K", "T", "depth"]


def test_latent_plot_helpers():
    import matplotlib.pyplot as plt

    from dgm_lib.viz import Grid, latent_lim, plot_latent_codes, plot_latent_density

    z = torch.tensor([[0.5, -1.0], [2.0, 0.1], [-3.3, 0.0]])
    assert latent_lim(z, quantile=1.0, margin=1.0) == 4.0  # ceil(3.3)
    with pytest.raises(ValueError, match="shape"):
        latent_lim(z[:, :1])
    fig, ax = plt.subplots()
    plot_latent_codes(z, torch.tensor([0, 1, 1]), ax=ax, lim=4.0)
    assert len(ax.get_legend().get_texts()) == 2 and ax.get_xlim() == (-4.0, 4.0)
    with pytest.raises(ValueError, match="labels"):
        plot_latent_codes(z, torch.tensor([0, 1]), ax=ax)
    plot_latent_density(StandardNormalPrior(2).log_prob, ax=ax, grid=Grid(n=20), log_range=5.0)
    assert ax.images[-1].get_clim() == pytest.approx((-1.8379 - 5.0 - 0.0, -1.8379), abs=0.05)
    with pytest.raises(ValueError, match="NaN"):
        plot_latent_density(lambda v: torch.full((len(v),), float("nan")), ax=ax, grid=Grid(n=4))
    plt.close(fig)
