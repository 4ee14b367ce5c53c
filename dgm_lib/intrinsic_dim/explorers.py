"""The explorer of chapter 06 "Intrinsic dimension".

The lecture's toy problem, solved in closed form in random subspaces (the minimum that subspace
training converges to).
"""

from __future__ import annotations

from functools import lru_cache

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from dgm_lib.explorer import choices, explorer, interactive
from dgm_lib.intrinsic_dim.chapter import ToyProblem, toy_objective, toy_subspace_optimum
from dgm_lib.intrinsic_dim.projections import make_projection


@lru_cache(maxsize=None)
def _toy_optima(
    projection: str, seed: int
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, float]]]:
    """theta_0 of the seeded ToyProblem (float64) and, for d = 1..20, the subspace optimum (P
    theta_d*, J_min)."""
    theta_0 = ToyProblem(generator=torch.Generator().manual_seed(seed)).theta.detach().double()
    optima = []
    for d in range(1, 21):
        P = make_projection(projection, theta_0.numel(), d, seed).matrix().double()
        theta_d, j_min = toy_subspace_optimum(theta_0, P)
        optima.append((P @ theta_d, j_min))
    return theta_0, optima


def intrinsic_dimension_explorer(mode: str | None = None) -> widgets.Widget:
    """Pick d, the projection (dense, sparse, Fastfood) and a seed.

    The lecture's toy problem J(theta) = sum_r (1 - sum of group r)^2 on 1000 parameters, minimised
    over the random subspace theta_0 + P theta_d in closed form (what subspace training converges
    to): min J against d, and the ten group sums at the optimum against 1. The book's grid: d
    around the intrinsic dimension 10, every projection, three seeds (a kernel: d = 1..20, ten).

    Args:
        mode: "live" or "book" (precomputed figures); None reads $DGM_EXPLORERS.
    """

    def draw(d: int, projection: str, seed: int) -> None:
        theta_0, optima = _toy_optima(projection, seed)
        j_0 = float(toy_objective(theta_0))
        ratios = [j_min / j_0 for _, j_min in optima]
        fig, axes = plt.subplots(1, 2, figsize=(14, 4.4))
        dims = range(1, len(optima) + 1)
        axes[0].plot(dims, ratios, "o-", ms=4, label=f"{projection}, seed {seed}")
        axes[0].plot(
            range(1, 11),
            [1 - k / 10 for k in range(1, 11)],
            "k--",
            lw=1,
            label="average for dense P: 1 - d/10",
        )
        axes[0].plot([d], [ratios[d - 1]], "*", ms=16, color="C3", label=f"d = {d}")
        axes[0].axvline(10, color="gray", ls=":")
        axes[0].set(
            xlabel="subspace dimension d",
            ylabel="min J / J($\\theta_0$)",
            xticks=list(dims),
            title=f"best J in a random d-dimensional subspace (J($\\theta_0$) = {j_0:.0f})",
        )
        axes[0].legend(loc="upper right", fontsize=9)
        shift, j_min = optima[d - 1]
        groups = torch.arange(1, 11)
        before = theta_0.unflatten(0, (10, 100)).sum(1)
        after = (theta_0 + shift).unflatten(0, (10, 100)).sum(1)
        axes[1].bar(
            groups - 0.2, before.numpy(), width=0.4, color="lightgray", label="$\\theta_0$ (start)"
        )
        axes[1].bar(groups + 0.2, after.numpy(), width=0.4, color="C0", label="subspace optimum")
        axes[1].axhline(1, color="C3", lw=1.5, label="target: every group sums to 1")
        verdict = "all 10 constraints met" if j_min < 1e-12 * j_0 else "constraints violated"
        axes[1].set(
            xlabel="group r",
            ylabel="sum of the group's 100 parameters",
            xticks=groups.tolist(),
            title=f"d = {d}: min J = {round(j_min, 4) + 0.0:.4g} ({verdict})",
        )
        axes[1].legend(loc="lower left", fontsize=9)
        fig.tight_layout()

    style = {"description_width": "initial"}
    projections = [("dense", "dense"), ("sparse", "sparse"), ("Fastfood", "fastfood")]
    book = {
        "d": choices("subspace dim d", [1, 5, 9, 10, 11, 15], 9),
        "projection": choices("projection P", projections, "dense", kind="buttons"),
        "seed": choices("seed", [0, 1, 2], 0),
    }
    return explorer(
        "intrinsic_dimension",
        lambda: interactive(
            draw,
            d=widgets.IntSlider(value=9, min=1, max=20, description="subspace dim d", style=style),
            projection=book["projection"],
            seed=widgets.IntSlider(value=0, min=0, max=9, description="seed", style=style),
        ),
        draw,
        book,
        mode=mode,
    )
