"""The explorer of chapter 04 "Dequantization": bits b, noise q(u|y) -> the bound against H(Pi)."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from dgm_lib.dequantization.chapter import (
    DEQUANTIZATION_NOISES,
    dequantization_bits,
    noise_log_q,
    quantized_density,
)
from dgm_lib.explorer import choices, explorer, interactive


def dequantization_explorer(mode: str | None = None) -> widgets.Widget:
    """The dequantization bound against the entropy of a quantized density.

    Pick the number of bits b of a quantized 1D density (K = 2^b bins) and the dequantization noise
    q(u|y): the discrete histogram Pi(y), the dequantized density pi(x) = Pi(y) q(x - y|y) against
    the continuous model p(x), and the bits/dim of the variational bound (uniform noise: the uniform
    bound) against the exact entropy H(Pi). The book's grid is the live one: b = 1..8, every noise.

    Args:
        mode: "live" or "book" (precomputed figures); None reads $DGM_EXPLORERS.
    """

    def draw(bits: int, noise: str) -> None:
        log_prob, pi = quantized_density(bits)
        k = len(pi)
        entropy, bound = dequantization_bits(bits, noise)
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.1))
        axes[0].bar(
            torch.arange(k).numpy(),
            pi.numpy(),
            width=1.0,
            align="edge",
            linewidth=0.5,
            edgecolor="white" if k <= 32 else None,
        )
        axes[0].set(
            xlabel="$y$",
            ylabel="$\\Pi(y)$",
            xlim=(0, k),
            title=f"data $\\Pi(y)$, K = $2^{{{bits}}}$ = {k} bins: H = {entropy:.3f} bits",
        )
        x = torch.linspace(0, k, max(2001, 8 * k + 1), dtype=torch.float64)[:-1]
        y = x.floor()
        u = (x - y).clamp(min=1e-9)
        log_p = log_prob(x)
        log_q = noise_log_q(noise, u, log_p, pi.log()[y.long()])
        axes[1].plot(
            x.numpy(),
            (pi.log()[y.long()] + log_q).exp().numpy(),
            lw=1.2,
            label="$\\pi(x) = \\Pi(y)\\, q(x - y|y)$",
        )
        axes[1].plot(
            x.numpy(), log_p.exp().numpy(), "--", color="black", lw=1, label="model $p(x)$"
        )
        what = "q(u|y) = p(y + u) / P(y)" if noise == "optimal" else DEQUANTIZATION_NOISES[noise]
        axes[1].set(
            xlabel="$x = y + u$",
            ylabel="density",
            xlim=(0, k),
            title=f"noise {what}\nbound {bound:.3f} bits/dim, "
            f"gap {round(bound - entropy, 3) + 0.0:.3f}",
        )
        axes[1].legend(loc="upper left", fontsize=9)
        all_bits = list(range(1, 9))
        for name, color in (("uniform", "C0"), ("beta", "C1")):
            gaps = [
                dequantization_bits(b, name)[1] - dequantization_bits(b, name)[0] for b in all_bits
            ]
            axes[2].semilogy(all_bits, gaps, "o--", color=color, label=DEQUANTIZATION_NOISES[name])
        if noise != "optimal":
            axes[2].semilogy(
                [bits], [bound - entropy], "*", ms=16, color="C3", label="this setting"
            )
        axes[2].set(
            xlabel="bits b",
            ylabel="bound - H($\\Pi$) (bits/dim)",
            title="gap of the bound to the exact entropy\n(optimal q: gap 0 at every b)",
        )
        axes[2].legend(loc="lower left", fontsize=9)
        fig.tight_layout()

    book = {
        "bits": choices("bits b", list(range(1, 9)), 3),
        "noise": choices(
            "noise q(u|y)",
            [(label, name) for name, label in DEQUANTIZATION_NOISES.items()],
            "uniform",
            kind="buttons",
        ),
    }
    return explorer("dequantization", lambda: interactive(draw, **book), draw, book, mode=mode)
