"""The explorer of chapter 08 "ALI and ALICE": the sweep's runs on the toy, by method and lambda.

Method, lambda and seed -> the codes, reconstructions and samples the study alice_sweep stored.
"""

from __future__ import annotations

from functools import lru_cache

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from dgm_lib import zoo
from dgm_lib.ali.toy import MODES
from dgm_lib.explorer import choices, explorer, interactive

SWEEP_NPZ = "alice_sweep.npz"
METHOD_LABELS = {
    "ali": "ALI",
    "alice_explicit": "ALICE, explicit cycle (l2)",
    "alice_implicit": "ALICE, implicit cycle (adversarial)",
}


@lru_cache(maxsize=1)
def _sweep() -> dict[str, np.ndarray]:
    """The arrays of the shipped study alice_sweep, loaded once."""
    with np.load(zoo.results_dir() / SWEEP_NPZ) as arrays:
        return dict(arrays)


def alice_explorer(mode: str | None = None) -> widgets.Widget:
    """Codes, reconstructions and samples of ALI or ALICE on the toy, by lambda and seed.

    Pick ALI or ALICE (explicit or implicit cycle consistency), the weight lambda of the CE term
    and a seed of the sweep: the codes z~ = g_phi(x) of 256 test points coloured by their mode, the
    reconstructions x -> z -> x, and samples x~ = g_theta(z). Every setting is a trained run of the
    shipped study alice_sweep, so the book's grid is the live one.

    Args:
        mode: "live" or "book" (precomputed figures); None reads $DGM_EXPLORERS.
    """
    sweep = _sweep()
    colors = plt.get_cmap("tab10")(sweep["labels"])

    def draw(method: str, lam: float, seed: int) -> None:
        key = f"{method}_{0.0 if method == 'ali' else lam:g}_{seed}"
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
        panels = (
            (sweep[f"{key}_codes"], "codes $\\tilde z = g_\\phi(x, \\zeta)$", "z"),
            (sweep[f"{key}_reconstructions"], "reconstructions $x \\to z \\to \\hat x$", "x"),
            (sweep[f"{key}_samples"], "samples $\\tilde x = g_\\theta(z, \\epsilon)$", "x"),
        )
        for ax, (points, title, space) in zip(axes, panels):
            if space == "x":
                ax.scatter(*MODES.T.numpy(), marker="x", s=60, color="black", zorder=3)
            ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.6,
                       c=colors if "samples" not in title else "C7")  # fmt: skip
            ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), title=title, aspect="equal",
                   xlabel=f"${space}_1$", ylabel=f"${space}_2$")  # fmt: skip
        what = METHOD_LABELS[method] + ("" if method == "ali" else f", lambda = {lam:g}")
        fig.suptitle(f"{what}, seed {seed} (colour: the mode of x)")
        fig.tight_layout()

    book = {
        "method": choices("method", [(v, k) for k, v in METHOD_LABELS.items()], "ali", "dropdown"),
        "lam": choices("λ", [0.1, 1.0, 10.0], 1.0),
        "seed": choices("seed", [0, 1, 2, 3], 0),
    }

    def same(method: str, lam: float, seed: int) -> tuple:
        return method, None if method == "ali" else lam, seed

    return explorer("alice", lambda: interactive(draw, **book), draw, book, same=same, mode=mode)
