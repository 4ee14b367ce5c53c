"""The explorers of chapter 07 "DDPM vs blur".

Beta schedules (eqs. 3, 5, 6) and the blur schedule (eq. 7).
"""

from __future__ import annotations

import math
from functools import lru_cache

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from dgm_lib import viz
from dgm_lib.data.mnist import load_mnist, mnist_images, to_unit
from dgm_lib.diffusion.cold import BlurDegradation, HybridDegradation
from dgm_lib.diffusion.schedules import PRESETS, cosine_schedule, linear_schedule
from dgm_lib.explorer import choices, explorer, interactive


@lru_cache(maxsize=1)
def _test_digits() -> torch.Tensor:
    """The first test digit of each class 0..7, in [-1, 1] (dgm_lib.diffusion.mnist_images), loaded
    once."""
    labels = load_mnist("test")[1]
    return mnist_images("test", "signed")[[int((labels == c).nonzero()[0]) for c in range(8)]]


# the presets' lines: model 2 at its T = 18,300 and at T = 1000 share one beta range, so one colour
PRESET_STYLES = {
    "default": ("C0", "--"), "model1": ("C1", "--"), "model2": ("C2", "--"),
    "model2_t1000": ("C2", ":"),
}  # fmt: skip


def _digit_rows(rows: list[tuple[str, torch.Tensor]], ax) -> None:
    """Rows of images in [-1, 1] (each (n, 1, 28, 28)) stacked into one grid on `ax`, each row's
    label on the left."""
    n = len(rows[0][1])
    viz.image_grid(to_unit(torch.cat([images for _, images in rows])), nrow=n, ax=ax)
    for k, (label, _) in enumerate(rows):
        ax.text(-4, 2 + 30 * k + 14, label, ha="right", va="center", fontsize=11)


def _log_slider(
    value: float, exponents: tuple[float, float], label: str, layout: widgets.Layout
) -> widgets.FloatLogSlider:
    """A slider over 10^exponents[0] .. 10^exponents[1] in steps of 10^0.05."""
    low, high = exponents
    return widgets.FloatLogSlider(
        value=value, base=10, min=low, max=high, step=0.05, description=label,
        readout_format=".1e", layout=layout,
    )  # fmt: skip


def beta_schedule_explorer(mode: str | None = None) -> widgets.Widget:
    """Noise schedules: alpha_t against t, and noised digits at t and T.

    Pick a preset of the report (default, model 1, model 2 at T = 18,300 or 1,000) or set the
    schedule yourself (linear, eq. 5, from beta_1 to beta_2, or cosine) and T: alpha_t (eq. 6)
    against t next to the presets, the signal alpha_T left at t = T, and test digits noised in
    closed form (eq. 3) at a chosen t and at T. The book's grid: the report's presets, model 2's
    betas at T = 1,000 to 18,300 (where do its digits disappear?) and the cosine schedule, each at
    t = T/10, 3T/10 and 6T/10.

    Args:
        mode: "live" (full-range controls, a kernel redraws) or "book" (precomputed grid); None
            reads $DGM_EXPLORERS.
    """
    labels = {
        "default": "default",
        "model1": "model 1",
        "model2": "model 2",
        "model2_t1000": "model 2, T = 1000",
    }
    eps = torch.randn(_test_digits().shape, generator=torch.Generator().manual_seed(0))

    def draw(kind: str, beta1: float, beta2: float, T: int, t: int) -> None:
        schedule = linear_schedule(beta1, beta2, T) if kind == "linear" else cosine_schedule(T)
        alpha = schedule.alpha.double()
        t = min(t, T)
        fig, axes = plt.subplots(1, 2, figsize=(14, 4.3), gridspec_kw={"width_ratios": [1, 1.25]})
        for name, (b1, b2, steps) in PRESETS.items():
            color, ls = PRESET_STYLES[name]
            axes[0].plot(
                linear_schedule(b1, b2, steps).alpha, lw=1.2, ls=ls, color=color, label=labels[name]
            )
        what = f"linear {beta1:.2g} $\\to$ {beta2:.2g}" if kind == "linear" else "cosine"
        axes[0].plot(alpha, color="black", lw=2.5, label=f"this schedule ({what})")
        axes[0].axvline(t, color="gray", ls=":")
        axes[0].set(
            xscale="log",
            xlim=(1, 20_000),
            ylim=(0, 1.02),
            xlabel="timestep t (log scale)",
            ylabel="$\\alpha_t$",
            title=f"T = {T}: signal left $\\alpha_T$ = {alpha[-1].item():.3g}",
        )
        axes[0].legend(loc="lower left", fontsize=9)
        x = _test_digits()
        a_t, a_T = alpha[t].item(), alpha[-1].item()
        rows = [
            ("x", x),
            (f"$z_{{{t}}}$", math.sqrt(a_t) * x + math.sqrt(1 - a_t) * eps),
            ("$z_T$", math.sqrt(a_T) * x + math.sqrt(1 - a_T) * eps),
        ]
        _digit_rows(rows, axes[1])
        axes[1].set_title(
            f"$z_t = \\sqrt{{\\alpha_t}}\\,x + \\sqrt{{1 - \\alpha_t}}\\,\\epsilon$: "
            f"$\\alpha_{{{t}}}$ = {a_t:.3g}, $\\alpha_T$ = {a_T:.3g}"
        )
        fig.tight_layout()

    def live() -> widgets.VBox:
        style, wide = {"description_width": "initial"}, widgets.Layout(width="270px")
        kind = widgets.ToggleButtons(
            options=["linear", "cosine"], value="linear", description="schedule", style=style
        )
        beta1 = _log_slider(1e-4, (-6, -1), "β₁", wide)
        beta2 = _log_slider(0.02, (-5, -0.5), "β₂", wide)
        steps = widgets.IntSlider(
            value=1000, min=10, max=20_000, step=10, description="T", layout=wide
        )
        t = widgets.IntSlider(value=300, min=0, max=1000, description="t", layout=wide)
        preset = widgets.Dropdown(
            options=[("custom", "custom")] + [(labels[p], p) for p in PRESETS],
            value="default",
            description="preset",
            style=style,
            layout=widgets.Layout(width="230px"),
        )
        box = interactive(draw, kind=kind, beta1=beta1, beta2=beta2, T=steps, t=t)
        # non-empty while a preset sets the sliders (then their changes keep the preset)
        applying = []

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

    model2 = PRESETS["model2"]
    schedules = {
        "default": ("linear", *PRESETS["default"]),
        "model 1": ("linear", *PRESETS["model1"]),
        "model 2, T = 18300": ("linear", *model2),
        **{f"model 2, T = {n}": ("linear", *model2[:2], n) for n in (1000, 3000, 6000)},
        "cosine, T = 1000": ("cosine", 0.0, 0.0, 1000),
    }

    def draw_book(schedule: str, fraction: float) -> None:
        kind, b1, b2, T = schedules[schedule]
        draw(kind, b1, b2, T, round(fraction * T))

    book = {
        "schedule": choices("schedule", list(schedules), "default", kind="dropdown"),
        "fraction": choices("t / T", [0.1, 0.3, 0.6], 0.3),
    }
    return explorer("beta_schedule", live, draw_book, book, mode=mode)


def blur_schedule_explorer(mode: str | None = None) -> widgets.Widget:
    """The blur schedule: sigma_t against t, and degraded digits at t and T.

    Set the blur schedule sigma_t = sigma_base + sigma_scale t (eq. 7), T and a step t, optionally
    with noise (the hybrid degradation): sigma_t and the std of the 27-tap kernel actually applied
    against t, and test digits degraded at t and at T. The book's grid: the report's sigma_base =
    0.02, sigma_scale from half to four times the report's 0.01, T = 100, 300 and the report's 500,
    t = T/2, with and without noise.

    Args:
        mode: "live" (full-range controls, a kernel redraws) or "book" (precomputed grid); None
            reads $DGM_EXPLORERS.
    """

    def draw(sigma_base: float, sigma_scale: float, T: int, t: int, noise_scale: float) -> None:
        blur = BlurDegradation(sigma_base, sigma_scale, T)
        t = min(t, T)
        steps = torch.arange(T + 1)
        offsets = torch.arange(blur.kernel_size, dtype=torch.float64) - blur.kernel_size // 2
        kernel_std = (blur.kernels.double() * offsets**2).sum(1).sqrt()
        fig, axes = plt.subplots(1, 2, figsize=(14, 4.3), gridspec_kw={"width_ratios": [1, 1.25]})
        axes[0].plot(
            steps,
            blur.sigma(steps),
            lw=2.5,
            label="$\\sigma_t = \\sigma_{base} + \\sigma_{scale}\\, t$",
        )
        axes[0].plot(
            steps, kernel_std, ls="--", label=f"std of the {blur.kernel_size}-tap kernel applied"
        )
        axes[0].axvline(t, color="gray", ls=":")
        axes[0].set(
            xlabel="timestep t",
            ylabel="blur std (pixels)",
            title=f"$\\sigma_t$ at t = {t}: {blur.sigma(t).item():.2f}, "
            f"at T = {T}: {blur.sigma(T).item():.2f}",
        )
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

    def live() -> widgets.VBox:
        style, wide = {"description_width": "initial"}, widgets.Layout(width="250px")
        steps = widgets.IntSlider(
            value=500, min=10, max=1000, step=10, description="T", layout=wide
        )
        t = widgets.IntSlider(value=200, min=0, max=500, description="t", layout=wide)
        widgets.dlink((steps, "value"), (t, "max"))
        return interactive(
            draw,
            sigma_base=widgets.FloatSlider(
                value=0.02, min=0.01, max=2.0, step=0.01, description="σ_base", layout=wide
            ),
            sigma_scale=widgets.FloatSlider(
                value=0.01,
                min=0.0,
                max=0.05,
                step=0.001,
                readout_format=".3f",
                description="σ_scale",
                layout=wide,
            ),
            T=steps,
            t=t,
            noise_scale=widgets.FloatSlider(
                value=0.0,
                min=0.0,
                max=1.0,
                step=0.05,
                description="noise",
                layout=wide,
                style=style,
            ),
        )

    def draw_book(sigma_scale: float, T: int, noise_scale: float) -> None:
        draw(0.02, sigma_scale, T, T // 2, noise_scale)

    book = {
        "sigma_scale": choices("σ_scale", [0.005, 0.01, 0.02, 0.04], 0.01),
        "T": choices("T", [100, 300, 500], 500),
        "noise_scale": choices(
            "degradation", [("blur", 0.0), ("blur + noise 0.5", 0.5)], 0.0, kind="buttons"
        ),
    }
    return explorer("blur_schedule", live, draw_book, book, mode=mode)
