"""The explorer of chapter 05 "SGLD": step size, preconditioner and target scale -> samples."""

from __future__ import annotations

import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from dgm_lib.explorer import choices, explorer, interactive
from dgm_lib.sgmcmc.chapter import covariance_error, rescaled_gaussian_chains


def sgld_explorer(mode: str | None = None) -> widgets.Widget:
    """SGLD and pSGLD samples of N(0, diag(a, 1)) for a step size and a preconditioner.

    Pick the step size eps, the preconditioner (none: SGLD; RMSprop: pSGLD) and the scale a of the
    target N(0, diag(a, 1)) of Li et al. (2016): samples of 100 seeded chains (2,000 steps, the
    second half kept) against the true density, and the whitened marginals against N(0, 1) with the
    covariance error of the chapter "SGLD". The book's grid: eps from 0.003 to 0.3, SGLD or pSGLD
    (alpha = 0.99), and the scale a from 0.01 to 10 (a kernel adds alpha = 0.999 and a = 30, 100).

    Args:
        mode: "live" or "book" (precomputed figures); None reads $DGM_EXPLORERS.
    """

    def draw(step_size: float, preconditioner: str, a: float) -> None:
        sampler, options = (
            ("SGLD", {})
            if preconditioner == "none"
            else ("pSGLD", {"alpha": float(preconditioner)})
        )
        samples = rescaled_gaussian_chains(sampler, a, step_size, **options)
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
        alpha = "" if sampler == "SGLD" else f" (alpha = {preconditioner})"
        name = f"{sampler}{alpha}, eps = {step_size:g}"
        t = torch.linspace(0, 2 * math.pi, 200)
        for k in (1, 2, 3):  # contours of N(0, diag(a, 1)) at 1, 2, 3 standard deviations
            axes[0].plot(k * math.sqrt(a) * t.cos(), k * t.sin(), color="black", lw=1, alpha=0.6)
        axes[0].set(
            xlim=(-4 * math.sqrt(a), 4 * math.sqrt(a)),
            ylim=(-4, 4),
            xlabel="$\\theta_1$",
            ylabel="$\\theta_2$",
        )
        if samples is None:
            axes[0].set_title(f"{name}: the chains diverged")
            axes[1].set_axis_off()
            axes[1].text(
                0.0,
                0.5,
                "The steps overshoot along the narrow direction theta_1 and the chains\n"
                f"blow up (SGLD is stable only for eps < 2a = {2 * a:g}).\n"
                "Lower eps or switch on the preconditioner.",
                transform=axes[1].transAxes,
                fontsize=12,
            )
            fig.tight_layout()
            return
        points = samples[::50].reshape(-1, 2)  # every 50th kept iterate of every chain
        axes[0].scatter(points[:, 0], points[:, 1], s=2, alpha=0.4)
        axes[0].set_title(f"{name}: samples on N(0, diag({a:g}, 1))")
        whitened = samples.reshape(-1, 2) / torch.tensor([math.sqrt(a), 1.0], dtype=samples.dtype)
        u = torch.linspace(-4, 4, 200)
        for j, label in enumerate(("$\\theta_1 / \\sqrt{a}$", "$\\theta_2$")):
            axes[1].hist(
                whitened[:, j].clamp(-4, 4).numpy(),
                bins=80,
                range=(-4, 4),
                density=True,
                alpha=0.45,
                label=f"{label}: variance {whitened[:, j].var().item():.2f}",
            )
        axes[1].plot(
            u, torch.exp(-0.5 * u**2) / math.sqrt(2 * math.pi), color="black", label="N(0, 1)"
        )
        axes[1].set(
            xlabel="whitened coordinate",
            ylabel="density",
            title=f"covariance error {covariance_error(samples, a):.3f} (0 = exact)",
        )
        axes[1].legend(loc="upper left", fontsize=9)
        fig.tight_layout()

    preconditioners = [
        ("none (SGLD)", "none"),
        ("RMSprop, alpha = 0.99 (pSGLD)", "0.99"),
        ("RMSprop, alpha = 0.999 (pSGLD)", "0.999"),
    ]
    steps, scales = [0.003, 0.01, 0.03, 0.1, 0.3], [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100]
    live = {
        "step_size": choices("step eps", steps, 0.03),
        "preconditioner": choices("preconditioner G", preconditioners, "none", "dropdown"),
        "a": choices("scale a", scales, 0.03),
    }
    book = {
        "step_size": choices("step eps", [0.003, 0.03, 0.3], 0.03),
        "preconditioner": choices("preconditioner G", preconditioners[:2], "none", "buttons"),
        "a": choices("scale a", [0.01, 0.1, 1, 10], 0.1),
    }
    return explorer("sgld", lambda: interactive(draw, **live), draw, book, mode=mode)
