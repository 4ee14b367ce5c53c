"""The explorer of chapter 03 "ELBO surgery": latent priors of the shipped 2D-latent MNIST VAEs."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from dgm_lib import viz, zoo
from dgm_lib.core import get_device
from dgm_lib.data.mnist import mnist_images
from dgm_lib.explorer import choices, explorer, interactive
from dgm_lib.vae.priors import log_normal_pairwise
from dgm_lib.vae.surgery import log_q_agg

# Prior families -> the zoo VAE trained with that prior.
LATENT_PRIOR_FAMILIES = {
    "standard N(0, I)": "vae_standard",
    "mixture of Gaussians": "vae_mog",
    "VampPrior": "vae_vamp",
    "flow (MAF)": "vae_flow_prior",
    "q_agg of K training digits": "vae_standard",
}


@lru_cache(maxsize=None)
def _latent_codes(
    name: str, split: str, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The zoo VAE `name`'s posteriors of the `split` digits.

    (mu, log_var, one draw z_i ~ q(z|x_i), log q_agg(z_i)) with q_agg over all digits of the split,
    computed once (seeded).
    """
    model = zoo.load(name, device=device)
    with torch.no_grad():
        x = mnist_images(split, "binarized").to(device)
        post = model.sample_posterior(x, generator=torch.Generator(device).manual_seed(0))
        return post.mu, post.log_var, post.z[0], log_q_agg(post.z[0], post.mu, post.log_var)


def latent_prior(
    family: str, k: int, temperature: float, depth: int, device: str
) -> tuple[
    Callable[[torch.Tensor], torch.Tensor], Callable[[int, torch.Generator], torch.Tensor], str
]:
    """(log p(z), sampler, description) of a re-parametrised zoo prior.

    (log p(z), sampler, description) of the prior `family` of its zoo VAE, re-parametrised in closed
    form: the K heaviest MoG components / first K pseudo-inputs / first K training digits, every std
    times T, the first `depth` MAF layers of the flow prior with z* ~ N(0, T^2 I).
    """
    model = zoo.load(LATENT_PRIOR_FAMILIES[family], device=device)
    log_t2 = 2 * math.log(temperature)
    if family == "flow (MAF)":
        transform = model.prior.truncated(depth).transform

        def log_prob(z: torch.Tensor) -> torch.Tensor:  # log N(f(z); 0, T^2 I) + log|det J_f(z)|
            z_star, log_det = transform(z)
            return log_det - 0.5 * (
                z_star.square().sum(-1) / temperature**2 + 2 * (math.log(2 * math.pi) + log_t2)
            )

        def sample(n: int, generator: torch.Generator) -> torch.Tensor:
            return transform.inverse(
                temperature * torch.randn(n, 2, generator=generator, device=device)
            )[0]

        return (
            log_prob,
            sample,
            f"first {depth} of {model.prior.depth} MAF layers, T = {temperature:g}",
        )
    if family == "standard N(0, I)":
        log_pi, means, log_var = (
            torch.zeros(*shape, device=device) for shape in ((1,), (1, 2), (1, 2))
        )
        what = "$\\mathcal{N}(0, T^2 I)$"
    elif family == "mixture of Gaussians":
        log_pi, means, log_var = model.prior.components()
        top = log_pi.argsort(descending=True)[:k]
        log_pi, means, log_var = (
            log_pi[top] - torch.logsumexp(log_pi[top], 0),
            means[top],
            log_var[top],
        )
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
        return means[pick] + torch.exp(0.5 * log_var[pick]) * torch.randn(
            n, 2, generator=generator, device=device
        )

    return log_prob, sample, f"{what}, T = {temperature:g}"


def latent_prior_explorer(
    device: torch.device | str | None = None, mode: str | None = None
) -> widgets.Widget:
    """Latent priors of the 2D-latent MNIST VAEs against the aggregated posterior.

    Pick a prior family of the 2D-latent MNIST VAEs and its parameters (components K, temperature T,
    flow depth): the aggregated posterior q_agg of the test digits, the prior p(z), KL(q_agg || p)
    and decoded samples z ~ p(z). Nothing is trained: every setting is a closed-form
    re-parametrisation of a shipped zoo prior. The book's grid: every family (the flow prior with
    all 4 or its first 2 MAF layers), K = 1, 10, 100 and T = 0.5, 1, 2.

    Args:
        device: where the VAEs run (default: the best available).
        mode: "live" or "book" (precomputed figures); None reads $DGM_EXPLORERS.
    """
    device = str(device or get_device())

    def draw(family: str, components: int, temperature: float, depth: int) -> None:
        name = LATENT_PRIOR_FAMILIES[family]
        model = zoo.load(name, device=device)
        mu, log_var, z, log_agg = _latent_codes(name, "test", device)
        lim = viz.latent_lim(mu)
        with torch.no_grad():
            log_prob, sample, what = latent_prior(family, components, temperature, depth, device)
            # KL(q_agg || p), z_i ~ q(z|x_i) = draws of q_agg
            marginal_kl = (log_agg - log_prob(z)).mean().item()
            images = model.decoder.mean(
                model.decoder(sample(36, torch.Generator(device).manual_seed(0)))
            )
            fig, axes = plt.subplots(1, 3, figsize=(14, 4.7))
            viz.plot_latent_density(
                lambda v: log_q_agg(v, mu, log_var),
                ax=axes[0],
                grid=viz.Grid(lim, 150, device),
                title=f"{name}: log $q_{{agg}}$ (test digits)",
            )
            viz.plot_latent_density(
                log_prob,
                ax=axes[1],
                grid=viz.Grid(lim, 150, device),
                title=f"log p(z): {what}\nKL($q_{{agg}}$ || p) = {marginal_kl:.2f} nats",
            )
            viz.image_grid(images, nrow=6, ax=axes[2], title="decoded samples $z \\sim p(z)$")
        fig.tight_layout()

    narrow, slider = {"description_width": "initial"}, widgets.Layout(width="200px")

    def live() -> widgets.VBox:
        return interactive(
            draw,
            family=widgets.Dropdown(
                options=list(LATENT_PRIOR_FAMILIES),
                value="standard N(0, I)",
                description="prior",
                layout=widgets.Layout(width="250px"),
                style=narrow,
            ),
            components=widgets.SelectionSlider(
                options=[1, 2, 3, 5, 10, 20, 50, 100, 300, 1000, 4000],
                value=10,
                description="K",
                layout=slider,
                style=narrow,
            ),
            temperature=widgets.FloatSlider(
                value=1.0,
                min=0.25,
                max=3.0,
                step=0.05,
                description="T",
                layout=slider,
                style=narrow,
            ),
            depth=widgets.IntSlider(
                value=4, min=1, max=4, description="depth", layout=slider, style=narrow
            ),
        )

    # the book's families: the flow prior at two depths; K matters only where it counts components
    families = {f: (f, 4) for f in LATENT_PRIOR_FAMILIES}
    families["flow (MAF), first 2 layers"] = ("flow (MAF)", 2)
    counted = ("mixture of Gaussians", "VampPrior", "q_agg of K training digits")

    def draw_book(family: str, components: int, temperature: float) -> None:
        draw(families[family][0], components, temperature, families[family][1])

    def same(family: str, components: int, temperature: float) -> tuple:
        return family, components if family in counted else None, temperature

    book = {
        "family": choices("prior", list(families), "standard N(0, I)", kind="dropdown"),
        "components": choices("K", [1, 10, 100], 10),
        "temperature": choices("T", [0.5, 1.0, 2.0], 1.0),
    }
    return explorer("latent_prior", live, draw_book, book, same=same, mode=mode)
