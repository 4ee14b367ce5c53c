"""The explorers of chapters 01 "Change of variables" and 02 "KL duality": the shipped 2D flows."""

from __future__ import annotations

from functools import lru_cache

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from dgm_lib import viz, zoo
from dgm_lib.core import get_device
from dgm_lib.data.toy2d import get_target, get_target_for_fit
from dgm_lib.explorer import choices, explorer, interactive
from dgm_lib.flows import recipes
from dgm_lib.flows.base import Flow
from dgm_lib.flows.kl_duality import forward_kl_terms, load_fit, reverse_kl_terms
from dgm_lib.flows.toys import heldout_entropy, heldout_nll


@lru_cache(maxsize=None)
def _toy_flow(flow: str, target: str, depth: int, device: str) -> Flow:
    """The shipped zoo flow `zoo_name(flow, target, depth)` on `device`, loaded once."""
    return zoo.load(zoo.zoo_name(flow, target, depth), device=device)


def flow_density_explorer(
    device: torch.device | str | None = None, mode: str | None = None
) -> widgets.Widget:
    """Pick a 2D target, RealNVP or MAF, and a depth K.

    The target density, the learned density of the shipped zoo checkpoint (test NLL next to the best
    achievable, the entropy H(pi)) and samples x = g(z). Every shipped checkpoint is a choice, so
    the book's grid is the live one.

    Args:
        device: where the flows run (default: the best available).
        mode: "live" or "book" (precomputed figures); None reads $DGM_EXPLORERS.
    """
    device = str(device or get_device())
    labels = {"realnvp": "RealNVP", "maf": "MAF"}

    def draw(target: str, flow: str, depth: int) -> None:
        model = _toy_flow(flow, target, depth, device)
        entropy, _ = heldout_entropy(target)
        nll, _ = heldout_nll(model.log_prob, target, device)
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
        title = f"target: H($\\pi$) = {entropy:.2f}"
        viz.plot_density(get_target(target).log_prob, ax=axes[0], grid=viz.Grid(n=120), title=title)
        viz.plot_density(
            model.log_prob,
            ax=axes[1],
            grid=viz.Grid(n=120, device=device),
            title=f"{labels[flow]}, K = {depth}: test NLL = {nll:.2f}",
        )
        samples = model.sample(2000, generator=torch.Generator(device=device).manual_seed(0))
        viz.plot_samples(
            samples, ax=axes[2], s=1, title=f"{labels[flow]}, K = {depth}: 2,000 samples"
        )
        fig.tight_layout()

    book = {
        "target": choices("target", list(recipes.TARGETS), "two_moons", kind="dropdown"),
        "flow": choices("flow", [(labels[f], f) for f in recipes.FLOWS], "realnvp", "buttons"),
        "depth": choices("depth K", list(recipes.DEPTHS), 8, kind="buttons"),
    }
    return explorer("flow_density", lambda: interactive(draw, **book), draw, book, mode=mode)


@lru_cache(maxsize=None)
def _kl_fit(direction: str, target: str, device: str) -> Flow:
    """The shipped zoo flow fitted to `target` by `direction` KL on `device`, loaded once."""
    return load_fit(direction, target, device)


def kl_direction_explorer(
    device: torch.device | str | None = None, mode: str | None = None
) -> widgets.Widget:
    """Pick a target and the direction of the KL.

    The target density, the shipped flow fitted with that KL, its samples x = g(z) and the
    divergences it reaches (an energy has no sampler, hence no forward-KL fit). Every shipped fit
    is a choice, so the book's grid is the live one.

    Args:
        device: where the flows run (default: the best available).
        mode: "live" or "book" (precomputed figures); None reads $DGM_EXPLORERS.
    """
    device = str(device or get_device())
    fits = recipes.available_fits()
    arrows = {"forward": "KL($\\pi$ || p)", "reverse": "KL(p || $\\pi$)"}

    def draw(target: str, direction: str) -> None:
        pi = get_target_for_fit(target)
        log_z = getattr(pi, "log_normalizer", 0.0) if not getattr(pi, "normalized", False) else 0.0
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
        viz.plot_density(
            lambda x: pi.log_prob(x) - log_z,
            ax=axes[0],
            grid=viz.Grid(n=120),
            title=f"target $\\pi$: {target}",
        )
        if direction not in fits[target]:
            for ax in axes[1:]:
                ax.set_axis_off()
            axes[1].text(
                0.0,
                0.5,
                "No forward-KL fit: the forward KL (MLE) needs samples x ~ $\\pi$,\n"
                f"and the energy {target} gives only log $\\pi$(x) up to a constant.\n"
                "The reverse KL needs exactly that: pick reverse.",
                transform=axes[1].transAxes,
                fontsize=12,
            )
            fig.tight_layout()
            return
        flow = _kl_fit(direction, target, device)
        generator = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad():
            reverse = reverse_kl_terms(flow, pi.log_prob, 5000, generator).mean().item() + log_z
            scores = f"{arrows['reverse']} = {reverse:.2f}"
            if hasattr(pi, "sample"):
                x = pi.sample(5000, generator=generator, device=device)
                forward = forward_kl_terms(flow, pi.log_prob, x).mean().item()
                scores = f"{arrows['forward']} = {forward:.2f}, {scores}"
            samples = flow.sample(2000, generator=generator)
        viz.plot_density(
            flow.log_prob,
            ax=axes[1],
            grid=viz.Grid(n=120, device=device),
            title=f"fitted by {arrows[direction]}\n{scores}",
        )
        viz.plot_samples(
            samples, ax=axes[2], s=1, title=f"2,000 samples x = g(z) of the {direction}-KL fit"
        )
        fig.tight_layout()

    book = {
        "target": choices("target", list(fits), "eight_gaussians", kind="dropdown"),
        "direction": choices(
            "direction",
            [("forward KL (MLE)", "forward"), ("reverse KL (LOTUS)", "reverse")],
            "reverse",
            kind="buttons",
        ),
    }
    return explorer("kl_direction", lambda: interactive(draw, **book), draw, book, mode=mode)
