"""ipywidgets explorers for the chapters, each saved with a useful default state (the HTML book shows it).

Every explorer is `explorer(draw, **controls)`: the controls above an Output widget that
`ipywidgets.interactive_output` fills with the figure `draw(**values)` draws, at once for the default values (so
an executed notebook stores that figure in its widget state) and again on every change.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from dgm_lib import viz, zoo
from dgm_lib.core import get_device
from dgm_lib.data.toy2d import get_target
from dgm_lib.flows import Flow, toy_models


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
