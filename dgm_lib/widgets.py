"""ipywidgets explorers for the chapters, each saved with a useful default state (the HTML book shows it).

Every explorer is `explorer(draw, **controls)`: the controls above an Output widget that
`ipywidgets.interactive_output` fills with the figure `draw(**values)` draws, at once for the default values (so
an executed notebook stores that figure in its widget state) and again on every change.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from dgm_lib import viz, zoo
from dgm_lib.core import get_device
from dgm_lib.data.toy2d import get_target
from dgm_lib.flows import Flow, energy_models, toy_models


def explorer(draw: Callable[..., None], **controls: widgets.ValueWidget) -> widgets.VBox:
    """The controls in a row above an Output widget holding the figure of `draw(**values)`, redrawn on change."""
    return widgets.VBox([widgets.HBox(list(controls.values())), widgets.interactive_output(draw, controls)])


@lru_cache(maxsize=None)
def _toy_flow(flow: str, target: str, depth: int, device: str) -> Flow:
    """The shipped zoo flow `toy_models.zoo_name(flow, target, depth)` on `device`, loaded once."""
    return zoo.load(toy_models.zoo_name(flow, target, depth), device=device)


def flow_density_explorer(device: torch.device | str | None = None) -> widgets.VBox:
    """Pick a 2D target, RealNVP or MAF, and a depth K: the target density, the learned density of the shipped zoo
    checkpoint (test NLL next to the best achievable, the entropy H(pi)) and samples x = g(z)."""
    device = str(device or get_device())
    labels = {"realnvp": "RealNVP", "maf": "MAF"}

    def draw(target: str, flow: str, depth: int) -> None:
        model = _toy_flow(flow, target, depth, device)
        entropy, _ = toy_models.heldout_nll(get_target(target).log_prob, target)
        nll, _ = toy_models.heldout_nll(model.log_prob, target, device)
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
        title = f"target: H($\\pi$) = {entropy:.2f}"
        viz.plot_density(get_target(target).log_prob, ax=axes[0], n_grid=120, title=title)
        viz.plot_density(model.log_prob, ax=axes[1], n_grid=120, device=device,
                         title=f"{labels[flow]}, K = {depth}: test NLL = {nll:.2f}")
        samples = model.sample(2000, generator=torch.Generator(device=device).manual_seed(0))
        viz.plot_samples(samples, ax=axes[2], s=1, title=f"{labels[flow]}, K = {depth}: 2,000 samples")
        fig.tight_layout()

    return explorer(
        draw,
        target=widgets.Dropdown(options=toy_models.TARGETS, value="two_moons", description="target"),
        flow=widgets.ToggleButtons(options=[(labels[f], f) for f in toy_models.FLOWS], value="realnvp",
                                   description="flow"),
        depth=widgets.ToggleButtons(options=toy_models.DEPTHS, value=8, description="depth K"),
    )


@lru_cache(maxsize=None)
def _kl_fit(direction: str, target: str, device: str) -> Flow:
    """The shipped zoo flow fitted to `target` by `direction` KL on `device`, loaded once."""
    return energy_models.load_fit(direction, target, device)


def kl_direction_explorer(device: torch.device | str | None = None) -> widgets.VBox:
    """Pick a target and the direction of the KL: the target density, the shipped flow fitted with that KL, its
    samples x = g(z) and the divergences it reaches (an energy has no sampler, hence no forward-KL fit)."""
    device = str(device or get_device())
    fits = energy_models.available_fits()
    arrows = {"forward": "KL($\\pi$ || p)", "reverse": "KL(p || $\\pi$)"}

    def draw(target: str, direction: str) -> None:
        pi = energy_models.get_target_for_fit(target)
        log_z = getattr(pi, "log_normalizer", 0.0) if not getattr(pi, "normalized", False) else 0.0
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
        viz.plot_density(lambda x: pi.log_prob(x) - log_z, ax=axes[0], n_grid=120, title=f"target $\\pi$: {target}")
        if direction not in fits[target]:
            for ax in axes[1:]:
                ax.set_axis_off()
            axes[1].text(0.0, 0.5, "No forward-KL fit: the forward KL (MLE) needs samples x ~ $\\pi$,\n"
                         f"and the energy {target} gives only log $\\pi$(x) up to a constant.\n"
                         "The reverse KL needs exactly that: pick reverse.", transform=axes[1].transAxes, fontsize=12)
            fig.tight_layout()
            return
        flow = _kl_fit(direction, target, device)
        generator = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad():
            reverse = energy_models.reverse_kl_terms(flow, pi.log_prob, 5000, generator).mean().item() + log_z
            scores = f"{arrows['reverse']} = {reverse:.2f}"
            if hasattr(pi, "sample"):
                x = pi.sample(5000, generator=generator, device=device)
                forward = energy_models.forward_kl_terms(flow, pi.log_prob, x).mean().item()
                scores = f"{arrows['forward']} = {forward:.2f}, {scores}"
            samples = flow.sample(2000, generator=generator)
        viz.plot_density(flow.log_prob, ax=axes[1], n_grid=120, device=device,
                         title=f"fitted by {arrows[direction]}\n{scores}")
        viz.plot_samples(samples, ax=axes[2], s=1, title=f"2,000 samples x = g(z) of the {direction}-KL fit")
        fig.tight_layout()

    return explorer(
        draw,
        target=widgets.Dropdown(options=list(fits), value="eight_gaussians", description="target"),
        direction=widgets.ToggleButtons(options=[("forward KL (MLE)", "forward"), ("reverse KL (LOTUS)", "reverse")],
                                        value="reverse", description="direction"),
    )


# The latent-prior explorer of the chapter "ELBO surgery": prior families -> the zoo VAE trained with that prior.
LATENT_PRIOR_FAMILIES = {
    "standard N(0, I)": "vae_standard",
    "mixture of Gaussians": "vae_mog",
    "VampPrior": "vae_vamp",
    "flow (MAF)": "vae_flow_prior",
    "q_agg of K training digits": "vae_standard",
}


@lru_cache(maxsize=None)
def _latent_codes(name: str, split: str, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The zoo VAE `name`'s posteriors of the `split` digits: (mu, log_var, one draw z_i ~ q(z|x_i), log q_agg(z_i))
    with q_agg over all digits of the split, computed once (seeded)."""
    from dgm_lib.vae import log_q_agg
    from dgm_lib.vae.pretrained import binarized_mnist

    model = zoo.load(name, device=device)
    with torch.no_grad():
        x = binarized_mnist(split).to(device)
        post = model.sample_posterior(x, generator=torch.Generator(device).manual_seed(0))
        return post.mu, post.log_var, post.z[0], log_q_agg(post.z[0], post.mu, post.log_var)


def _latent_prior(
    family: str, k: int, temperature: float, depth: int, device: str
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[int, torch.Generator], torch.Tensor], str]:
    """(log p(z), sampler, description) of the prior `family` of its zoo VAE, re-parametrised in closed form: the
    K heaviest MoG components / first K pseudo-inputs / first K training digits, every std times T, the first
    `depth` MAF layers of the flow prior with z* ~ N(0, T^2 I)."""
    from dgm_lib.flows import Compose
    from dgm_lib.vae import log_normal_pairwise

    model = zoo.load(LATENT_PRIOR_FAMILIES[family], device=device)
    log_t2 = 2 * math.log(temperature)
    if family == "flow (MAF)":
        transform = Compose(*[model.prior.transform[j] for j in range(depth)])

        def log_prob(z: torch.Tensor) -> torch.Tensor:  # log N(f(z); 0, T^2 I) + log|det J_f(z)|
            z_star, log_det = transform(z)
            return log_det - 0.5 * (z_star.square().sum(-1) / temperature**2 + 2 * (math.log(2 * math.pi) + log_t2))

        def sample(n: int, generator: torch.Generator) -> torch.Tensor:
            return transform.inverse(temperature * torch.randn(n, 2, generator=generator, device=device))[0]

        return log_prob, sample, f"first {depth} of {len(model.prior.transform)} MAF layers, T = {temperature:g}"
    if family == "standard N(0, I)":
        log_pi, means, log_var = (torch.zeros(*shape, device=device) for shape in ((1,), (1, 2), (1, 2)))
        what = "$\\mathcal{N}(0, T^2 I)$"
    elif family == "mixture of Gaussians":
        log_pi, means, log_var = model.prior.components()
        top = log_pi.argsort(descending=True)[:k]
        log_pi, means, log_var = log_pi[top] - torch.logsumexp(log_pi[top], 0), means[top], log_var[top]
        what = f"{len(top)} heaviest of {model.prior.n_components} components"
    elif family == "VampPrior":
        means, log_var = model.encoder(model.prior.pseudo_inputs[:k])
        log_pi = torch.full((len(means),), -math.log(len(means)), device=device)
        what = f"first {len(means)} of {model.prior.n_pseudo} pseudo-inputs"
    else:
        means, log_var = (t[:k] for t in _latent_codes("vae_standard", "train", device)[:2])
        log_pi = torch.full((len(means),), -math.log(len(means)), device=device)
        what = f"q_agg of {len(means)} training digits"
    log_var = log_var + log_t2

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(log_pi + log_normal_pairwise(z, means, log_var), 1)

    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        pick = torch.multinomial(log_pi.exp(), n, replacement=True, generator=generator)
        return means[pick] + torch.exp(0.5 * log_var[pick]) * torch.randn(n, 2, generator=generator, device=device)

    return log_prob, sample, f"{what}, T = {temperature:g}"


def latent_prior_explorer(device: torch.device | str | None = None) -> widgets.VBox:
    """Pick a prior family of the 2D-latent MNIST VAEs and its parameters (components K, temperature T, flow depth):
    the aggregated posterior q_agg of the test digits, the prior p(z), KL(q_agg || p) and decoded samples z ~ p(z).
    Nothing is trained: every setting is a closed-form re-parametrisation of a shipped zoo prior."""
    from dgm_lib.vae import log_q_agg

    device = str(device or get_device())

    def draw(family: str, components: int, temperature: float, depth: int) -> None:
        name = LATENT_PRIOR_FAMILIES[family]
        model = zoo.load(name, device=device)
        mu, log_var, z, log_agg = _latent_codes(name, "test", device)
        lim = viz.latent_lim(mu)
        with torch.no_grad():
            log_prob, sample, what = _latent_prior(family, components, temperature, depth, device)
            marginal_kl = (log_agg - log_prob(z)).mean().item()  # KL(q_agg || p), z_i ~ q(z|x_i) = draws of q_agg
            images = model.decoder.mean(model.decoder(sample(36, torch.Generator(device).manual_seed(0))))
            fig, axes = plt.subplots(1, 3, figsize=(15, 5))
            viz.plot_latent_density(lambda v: log_q_agg(v, mu, log_var), ax=axes[0], lim=lim, device=device,
                                    title=f"{name}: log $q_{{agg}}$ (test digits)")
            viz.plot_latent_density(log_prob, ax=axes[1], lim=lim, device=device,
                                    title=f"log p(z): {what}\nKL($q_{{agg}}$ || p) = {marginal_kl:.2f} nats")
            viz.image_grid(images, nrow=6, ax=axes[2], title="decoded samples $z \\sim p(z)$")
        fig.tight_layout()

    narrow, slider = {"description_width": "initial"}, widgets.Layout(width="200px")
    return explorer(
        draw,
        family=widgets.Dropdown(options=list(LATENT_PRIOR_FAMILIES), value="standard N(0, I)", description="prior",
                                layout=widgets.Layout(width="250px"), style=narrow),
        components=widgets.SelectionSlider(options=[1, 2, 3, 5, 10, 20, 50, 100, 300, 1000, 4000], value=10,
                                           description="K", layout=slider, style=narrow),
        temperature=widgets.FloatSlider(value=1.0, min=0.25, max=3.0, step=0.05, description="T", layout=slider,
                                        style=narrow),
        depth=widgets.IntSlider(value=4, min=1, max=4, description="depth", layout=slider, style=narrow),
    )


def sgld_explorer() -> widgets.VBox:
    """Pick the step size eps, the preconditioner (none: SGLD; RMSprop: pSGLD) and the scale a of the target
    N(0, diag(a, 1)) of Li et al. (2016): samples of 100 seeded chains (2,000 steps, the second half kept) against the
    true density, and the whitened marginals against N(0, 1) with the covariance error of the chapter "SGLD"."""
    from dgm_lib.sgmcmc_models import covariance_error, rescaled_gaussian_chains

    def draw(step_size: float, preconditioner: str, a: float) -> None:
        sampler, options = ("SGLD", {}) if preconditioner == "none" else ("pSGLD", {"alpha": float(preconditioner)})
        samples = rescaled_gaussian_chains(sampler, a, step_size, **options)
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
        name = f"{sampler}{'' if sampler == 'SGLD' else f' (alpha = {preconditioner})'}, eps = {step_size:g}"
        t = torch.linspace(0, 2 * math.pi, 200)
        for k in (1, 2, 3):  # contours of N(0, diag(a, 1)) at 1, 2, 3 standard deviations
            axes[0].plot(k * math.sqrt(a) * t.cos(), k * t.sin(), color="black", lw=1, alpha=0.6)
        axes[0].set(xlim=(-4 * math.sqrt(a), 4 * math.sqrt(a)), ylim=(-4, 4), xlabel="$\\theta_1$",
                    ylabel="$\\theta_2$")
        if samples is None:
            axes[0].set_title(f"{name}: the chains diverged")
            axes[1].set_axis_off()
            axes[1].text(0.0, 0.5, "The steps overshoot along the narrow direction theta_1 and the chains\n"
                         f"blow up (SGLD is stable only for eps < 2a = {2 * a:g}).\n"
                         "Lower eps or switch on the preconditioner.", transform=axes[1].transAxes, fontsize=12)
            fig.tight_layout()
            return
        points = samples[::50].reshape(-1, 2)  # every 50th kept iterate of every chain
        axes[0].scatter(points[:, 0], points[:, 1], s=2, alpha=0.4)
        axes[0].set_title(f"{name}: samples on N(0, diag({a:g}, 1))")
        whitened = samples.reshape(-1, 2) / torch.tensor([math.sqrt(a), 1.0], dtype=samples.dtype)
        u = torch.linspace(-4, 4, 200)
        for j, label in enumerate(("$\\theta_1 / \\sqrt{a}$", "$\\theta_2$")):
            axes[1].hist(whitened[:, j].clamp(-4, 4).numpy(), bins=80, range=(-4, 4), density=True, alpha=0.45,
                         label=f"{label}: variance {whitened[:, j].var().item():.2f}")
        axes[1].plot(u, torch.exp(-0.5 * u**2) / math.sqrt(2 * math.pi), color="black", label="N(0, 1)")
        axes[1].set(xlabel="whitened coordinate", ylabel="density",
                    title=f"covariance error {covariance_error(samples, a):.3f} (0 = exact)")
        axes[1].legend(loc="upper left", fontsize=9)
        fig.tight_layout()

    style = {"description_width": "initial"}
    return explorer(
        draw,
        step_size=widgets.SelectionSlider(options=[0.003, 0.01, 0.03, 0.1, 0.3], value=0.03, description="step eps",
                                          style=style),
        preconditioner=widgets.Dropdown(options=[("none (SGLD)", "none"), ("RMSprop, alpha = 0.99 (pSGLD)", "0.99"),
                                                 ("RMSprop, alpha = 0.999 (pSGLD)", "0.999")], value="none",
                                        description="preconditioner G", style=style),
        a=widgets.SelectionSlider(options=[0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100], value=0.03,
                                  description="scale a", style=style),
    )


# The dequantization explorer of the chapter "Dequantization": a fixed density on [0, 1] (a mixture of logistics
# with a narrow third peak) quantized to K = 2^b bins; nothing is trained, every number is a quadrature.
DEQUANTIZATION_DENSITY = {"weights": (0.45, 0.35, 0.2), "means": (0.22, 0.55, 0.83), "scales": (0.05, 0.08, 0.012)}
DEQUANTIZATION_NOISES = {"uniform": "uniform U[0, 1]", "beta": "Beta(2, 2) bump", "optimal": "optimal p(u|y)"}


def quantized_density(bits: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The explorer's density at b bits, in float64: (log p(x) on x in [0, K), the continuous model truncated to
    [0, K) and renormalized; Pi(y) = int_0^1 p(y + u) du over the K = 2^b bins, i.e. the model's own discretization)."""
    from dgm_lib.dequantization import mix_logistic_cdf, mix_logistic_log_prob

    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 12:
        raise ValueError(f"bits must be an int in 1..12, got {bits!r}")
    k = 2**bits
    dt = torch.float64
    logit_pi = torch.tensor(DEQUANTIZATION_DENSITY["weights"], dtype=dt).log()
    mu = k * torch.tensor(DEQUANTIZATION_DENSITY["means"], dtype=dt)
    log_s = (k * torch.tensor(DEQUANTIZATION_DENSITY["scales"], dtype=dt)).log()
    cdf = mix_logistic_cdf(torch.arange(k + 1, dtype=dt), logit_pi, mu, log_s)
    log_z = (cdf[-1] - cdf[0]).log()

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return mix_logistic_log_prob(x, logit_pi, mu, log_s) - log_z

    return log_prob, (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])


def _noise_log_q(noise: str, u: torch.Tensor, log_p: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
    """log q(u|y) of the explorer's noise: uniform 0, Beta(2, 2) log 6u(1-u), optimal log p(y + u) - log Pi(y)
    (u, log p(y + u) and log Pi(y) broadcast together)."""
    if noise == "uniform":
        return torch.zeros_like(u)
    if noise == "beta":
        return math.log(6.0) + u.log() + (1 - u).log()
    if noise == "optimal":
        return log_p - log_pi
    raise ValueError(f"noise must be one of {sorted(DEQUANTIZATION_NOISES)}, got {noise!r}")


@lru_cache(maxsize=None)
def dequantization_bits(bits: int, noise: str, points: int = 2**15) -> tuple[float, float]:
    """(H(Pi), the bound) in bits/dim for the explorer's density at b bits and the noise q(u|y): the bound is
    -E_Pi E_q[log p(y + u) - log q(u|y)] / ln 2 by the midpoint rule on `points` nodes in total (>= 16 per bin)."""
    from dgm_lib.dequantization import bits_per_dim

    log_prob, pi = quantized_density(bits)
    k = len(pi)
    m = max(16, points // k)
    u = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    log_p = log_prob((torch.arange(k, dtype=torch.float64)[:, None] + u).flatten()).reshape(k, m)
    log_q = _noise_log_q(noise, u.expand(k, m), log_p, pi.log()[:, None])
    bound = (pi * (log_q.exp() * (log_p - log_q)).mean(1)).sum()
    entropy = -(pi * pi.log()).sum()
    return float(bits_per_dim(-entropy, 1)), float(bits_per_dim(bound, 1))


def dequantization_explorer() -> widgets.VBox:
    """Pick the number of bits b of a quantized 1D density (K = 2^b bins) and the dequantization noise q(u|y): the
    discrete histogram Pi(y), the dequantized density pi(x) = Pi(y) q(x - y|y) against the continuous model p(x),
    and the bits/dim of the variational bound (uniform noise: the uniform bound) against the exact entropy H(Pi)."""

    def draw(bits: int, noise: str) -> None:
        log_prob, pi = quantized_density(bits)
        k = len(pi)
        entropy, bound = dequantization_bits(bits, noise)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
        axes[0].bar(torch.arange(k).numpy(), pi.numpy(), width=1.0, align="edge", linewidth=0.5,
                    edgecolor="white" if k <= 32 else None)
        axes[0].set(xlabel="$y$", ylabel="$\\Pi(y)$", xlim=(0, k),
                    title=f"data $\\Pi(y)$, K = $2^{{{bits}}}$ = {k} bins: H = {entropy:.3f} bits")
        x = torch.linspace(0, k, max(2001, 8 * k + 1), dtype=torch.float64)[:-1]
        y = x.floor()
        u = (x - y).clamp(min=1e-9)
        log_p = log_prob(x)
        log_q = _noise_log_q(noise, u, log_p, pi.log()[y.long()])
        axes[1].plot(x.numpy(), (pi.log()[y.long()] + log_q).exp().numpy(), lw=1.2,
                     label="$\\pi(x) = \\Pi(y)\\, q(x - y|y)$")
        axes[1].plot(x.numpy(), log_p.exp().numpy(), "--", color="black", lw=1, label="model $p(x)$")
        what = "q(u|y) = p(y + u) / P(y)" if noise == "optimal" else DEQUANTIZATION_NOISES[noise]
        axes[1].set(xlabel="$x = y + u$", ylabel="density", xlim=(0, k),
                    title=f"noise {what}\nbound {bound:.3f} bits/dim, gap {round(bound - entropy, 3) + 0.0:.3f}")
        axes[1].legend(loc="upper left", fontsize=9)
        all_bits = list(range(1, 9))
        for name, color in (("uniform", "C0"), ("beta", "C1")):
            gaps = [dequantization_bits(b, name)[1] - dequantization_bits(b, name)[0] for b in all_bits]
            axes[2].semilogy(all_bits, gaps, "o--", color=color, label=DEQUANTIZATION_NOISES[name])
        if noise != "optimal":
            axes[2].semilogy([bits], [bound - entropy], "*", ms=16, color="C3", label="this setting")
        axes[2].set(xlabel="bits b", ylabel="bound - H($\\Pi$) (bits/dim)",
                    title="gap of the bound to the exact entropy\n(optimal q: gap 0 at every b)")
        axes[2].legend(loc="lower left", fontsize=9)
        fig.tight_layout()

    return explorer(
        draw,
        bits=widgets.IntSlider(value=3, min=1, max=8, description="bits b", style={"description_width": "initial"}),
        noise=widgets.ToggleButtons(options=[(label, name) for name, label in DEQUANTIZATION_NOISES.items()],
                                    value="uniform", description="noise q(u|y)",
                                    style={"description_width": "initial", "button_width": "auto"}),
    )


# The explorers of the chapter "DDPM vs blur": beta schedules (eqs. 3, 5, 6) and the blur schedule (eq. 7).
@lru_cache(maxsize=1)
def _test_digits() -> torch.Tensor:
    """The first test digit of each class 0..7, in [-1, 1] (dgm_lib.diffusion.mnist_images), loaded once."""
    from dgm_lib.data.mnist import load_mnist
    from dgm_lib.diffusion import mnist_images

    labels = load_mnist("test")[1]
    return mnist_images("test")[[int((labels == c).nonzero()[0]) for c in range(8)]]


def _digit_rows(rows: list[tuple[str, torch.Tensor]], ax) -> None:
    """Rows of images in [-1, 1] (each (n, 1, 28, 28)) stacked into one grid on `ax`, each row's label on the left."""
    from dgm_lib.diffusion import to_unit

    n = len(rows[0][1])
    viz.image_grid(to_unit(torch.cat([images for _, images in rows])), nrow=n, ax=ax)
    for k, (label, _) in enumerate(rows):
        ax.text(-4, 2 + 30 * k + 14, label, ha="right", va="center", fontsize=11)


def beta_schedule_explorer() -> widgets.VBox:
    """Pick a preset of the report (default, model 1, model 2 at T = 18,300 or 1,000) or set the schedule yourself
    (linear, eq. 5, from beta_1 to beta_2, or cosine) and T: alpha_t (eq. 6) against t next to the presets, the signal
    alpha_T left at t = T, and test digits noised in closed form (eq. 3) at a chosen t and at T."""
    from dgm_lib.diffusion.schedules import PRESETS, cosine_schedule, linear_schedule

    labels = {"default": "default", "model1": "model 1", "model2": "model 2", "model2_t1000": "model 2, T = 1000"}
    eps = torch.randn(_test_digits().shape, generator=torch.Generator().manual_seed(0))

    def draw(kind: str, beta1: float, beta2: float, T: int, t: int) -> None:
        schedule = linear_schedule(beta1, beta2, T) if kind == "linear" else cosine_schedule(T)
        alpha = schedule.alpha.double()
        t = min(t, T)
        fig, axes = plt.subplots(1, 2, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1, 1.25]})
        for name, (b1, b2, steps) in PRESETS.items():
            axes[0].plot(linear_schedule(b1, b2, steps).alpha, lw=1, ls="--", alpha=0.7, label=labels[name])
        what = f"linear {beta1:.2g} $\\to$ {beta2:.2g}" if kind == "linear" else "cosine"
        axes[0].plot(alpha, color="black", lw=2.5, label=f"this schedule ({what})")
        axes[0].axvline(t, color="gray", ls=":")
        axes[0].set(xscale="log", xlim=(1, 20_000), ylim=(0, 1.02), xlabel="timestep t (log scale)",
                    ylabel="$\\alpha_t$", title=f"T = {T}: signal left $\\alpha_T$ = {alpha[-1].item():.3g}")
        axes[0].legend(loc="lower left", fontsize=9)
        x = _test_digits()
        a_t, a_T = alpha[t].item(), alpha[-1].item()
        rows = [("x", x), (f"$z_{{{t}}}$", math.sqrt(a_t) * x + math.sqrt(1 - a_t) * eps),
                ("$z_T$", math.sqrt(a_T) * x + math.sqrt(1 - a_T) * eps)]
        _digit_rows(rows, axes[1])
        axes[1].set_title(f"$z_t = \\sqrt{{\\alpha_t}}\\,x + \\sqrt{{1 - \\alpha_t}}\\,\\epsilon$: "
                          f"$\\alpha_{{{t}}}$ = {a_t:.3g}, $\\alpha_T$ = {a_T:.3g}")
        fig.tight_layout()

    style, wide = {"description_width": "initial"}, widgets.Layout(width="270px")
    kind = widgets.ToggleButtons(options=["linear", "cosine"], value="linear", description="schedule", style=style)
    beta1 = widgets.FloatLogSlider(value=1e-4, base=10, min=-6, max=-1, step=0.05, description="$\\beta_1$",
                                   readout_format=".1e", layout=wide)
    beta2 = widgets.FloatLogSlider(value=0.02, base=10, min=-5, max=-0.5, step=0.05, description="$\\beta_2$",
                                   readout_format=".1e", layout=wide)
    steps = widgets.IntSlider(value=1000, min=10, max=20_000, step=10, description="T", layout=wide)
    t = widgets.IntSlider(value=300, min=0, max=1000, description="t", layout=wide)
    preset = widgets.Dropdown(options=[("custom", "custom")] + [(labels[p], p) for p in PRESETS], value="default",
                              description="preset", style=style, layout=widgets.Layout(width="230px"))
    box = explorer(draw, kind=kind, beta1=beta1, beta2=beta2, T=steps, t=t)
    applying = []  # non-empty while a preset sets the sliders (their changes must not reset the preset to custom)

    def apply_preset(change: dict) -> None:
        if change["new"] == "custom":
            return
        b1, b2, n = PRESETS[change["new"]]
        applying.append(True)
        kind.value, beta1.value, beta2.value, steps.value = "linear", b1, b2, n
        applying.pop()

    def on_control(change: dict) -> None:
        t.max = steps.value
        beta1.disabled = beta2.disabled = kind.value == "cosine"
        if not applying and preset.value != "custom":
            preset.value = "custom"

    preset.observe(apply_preset, names="value")
    for control in (kind, beta1, beta2, steps):
        control.observe(on_control, names="value")
    box.children[0].children = (preset, *box.children[0].children)
    return box


def blur_schedule_explorer() -> widgets.VBox:
    """Set the blur schedule sigma_t = sigma_base + sigma_scale t (eq. 7), T and a step t, optionally with noise
    (the hybrid degradation): sigma_t and the std of the 27-tap kernel actually applied against t, and test digits
    degraded at t and at T."""
    from dgm_lib.diffusion.cold import BlurDegradation, HybridDegradation

    def draw(sigma_base: float, sigma_scale: float, T: int, t: int, noise_scale: float) -> None:
        blur = BlurDegradation(sigma_base, sigma_scale, T)
        t = min(t, T)
        steps = torch.arange(T + 1)
        offsets = torch.arange(blur.kernel_size, dtype=torch.float64) - blur.kernel_size // 2
        kernel_std = (blur.kernels.double() * offsets**2).sum(1).sqrt()
        fig, axes = plt.subplots(1, 2, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1, 1.25]})
        axes[0].plot(steps, blur.sigma(steps), lw=2.5, label="$\\sigma_t = \\sigma_{base} + \\sigma_{scale}\\, t$")
        axes[0].plot(steps, kernel_std, ls="--", label=f"std of the {blur.kernel_size}-tap kernel applied")
        axes[0].axvline(t, color="gray", ls=":")
        axes[0].set(xlabel="timestep t", ylabel="blur std (pixels)",
                    title=f"$\\sigma_t$ at t = {t}: {blur.sigma(t).item():.2f}, at T = {T}: {blur.sigma(T).item():.2f}")
        axes[0].legend(loc="upper left", fontsize=9)
        x = _test_digits()
        if noise_scale > 0:
            degrade = HybridDegradation(noise_scale, sigma_base, sigma_scale, T)
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
            rows = [degrade(x, t, noise=noise), degrade(x, T, noise=noise)]
            what = f"blur + {noise_scale:g} $\\sqrt{{t/T}}\\,\\epsilon$ (hybrid)"
        else:
            rows, what = [blur(x, t), blur(x, T)], "blur only"
        _digit_rows([("x", x), (f"D(x, {t})", rows[0]), (f"D(x, {T})", rows[1])], axes[1])
        axes[1].set_title(f"D(x, t): {what}")
        fig.tight_layout()

    style, wide = {"description_width": "initial"}, widgets.Layout(width="250px")
    steps = widgets.IntSlider(value=500, min=10, max=1000, step=10, description="T", layout=wide)
    t = widgets.IntSlider(value=200, min=0, max=500, description="t", layout=wide)
    widgets.dlink((steps, "value"), (t, "max"))
    return explorer(
        draw,
        sigma_base=widgets.FloatSlider(value=0.02, min=0.01, max=2.0, step=0.01, description="$\\sigma_{base}$",
                                       layout=wide),
        sigma_scale=widgets.FloatSlider(value=0.01, min=0.0, max=0.05, step=0.001, readout_format=".3f",
                                        description="$\\sigma_{scale}$", layout=wide),
        T=steps,
        t=t,
        noise_scale=widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="noise", layout=wide,
                                        style=style),
    )


# The intrinsic-dimension explorer of the chapter "Intrinsic dimension": the lecture's toy problem, solved in closed
# form in random subspaces (the minimum that subspace training converges to).
@lru_cache(maxsize=None)
def _toy_optima(projection: str, seed: int) -> tuple[torch.Tensor, list[tuple[torch.Tensor, float]]]:
    """theta_0 of the seeded ToyProblem (float64) and, for d = 1..20, the subspace optimum (P theta_d*, J_min)."""
    from dgm_lib.intrinsic_dim import ToyProblem, make_projection, toy_subspace_optimum

    theta_0 = ToyProblem(generator=torch.Generator().manual_seed(seed)).theta.detach().double()
    optima = []
    for d in range(1, 21):
        P = make_projection(projection, theta_0.numel(), d, seed).matrix().double()
        theta_d, j_min = toy_subspace_optimum(theta_0, P)
        optima.append((P @ theta_d, j_min))
    return theta_0, optima


def intrinsic_dimension_explorer() -> widgets.VBox:
    """Pick d, the projection (dense, sparse, Fastfood) and a seed: the lecture's toy problem J(theta) = sum_r
    (1 - sum of group r)^2 on 1000 parameters, minimised over the random subspace theta_0 + P theta_d in closed form
    (what subspace training converges to): min J against d, and the ten group sums at the optimum against 1."""
    from dgm_lib.intrinsic_dim import toy_objective

    def draw(d: int, projection: str, seed: int) -> None:
        theta_0, optima = _toy_optima(projection, seed)
        j_0 = float(toy_objective(theta_0))
        ratios = [j_min / j_0 for _, j_min in optima]
        fig, axes = plt.subplots(1, 2, figsize=(14, 4.4))
        dims = range(1, len(optima) + 1)
        axes[0].plot(dims, ratios, "o-", ms=4, label=f"{projection}, seed {seed}")
        axes[0].plot(range(1, 11), [1 - k / 10 for k in range(1, 11)], "k--", lw=1,
                     label="average for dense P: 1 - d/10")
        axes[0].plot([d], [ratios[d - 1]], "*", ms=16, color="C3", label=f"d = {d}")
        axes[0].axvline(10, color="gray", ls=":")
        axes[0].set(xlabel="subspace dimension d", ylabel="min J / J($\\theta_0$)", xticks=list(dims),
                    title=f"best J in a random d-dimensional subspace (J($\\theta_0$) = {j_0:.0f})")
        axes[0].legend(loc="upper right", fontsize=9)
        shift, j_min = optima[d - 1]
        groups = torch.arange(1, 11)
        before = theta_0.unflatten(0, (10, 100)).sum(1)
        after = (theta_0 + shift).unflatten(0, (10, 100)).sum(1)
        axes[1].bar(groups - 0.2, before.numpy(), width=0.4, color="lightgray", label="$\\theta_0$ (start)")
        axes[1].bar(groups + 0.2, after.numpy(), width=0.4, color="C0", label="subspace optimum")
        axes[1].axhline(1, color="C3", lw=1.5, label="target: every group sums to 1")
        verdict = "all 10 constraints met" if j_min < 1e-12 * j_0 else "constraints violated"
        axes[1].set(xlabel="group r", ylabel="sum of the group's 100 parameters", xticks=groups.tolist(),
                    title=f"d = {d}: min J = {round(j_min, 4) + 0.0:.4f} ({verdict})")
        axes[1].legend(loc="lower left", fontsize=9)
        fig.tight_layout()

    style = {"description_width": "initial"}
    return explorer(
        draw,
        d=widgets.IntSlider(value=9, min=1, max=20, description="subspace dim d", style=style),
        projection=widgets.ToggleButtons(options=[("dense", "dense"), ("sparse", "sparse"), ("Fastfood", "fastfood")],
                                         value="dense", description="projection P", style=style),
        seed=widgets.IntSlider(value=0, min=0, max=9, description="seed", style=style),
    )
