"""Plotting helpers.

The course's seaborn theme, image grids, 2D densities and samples (viz never trains).
"""

from __future__ import annotations

import base64
import io
import timeit
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from IPython import get_ipython
from IPython.core.pylabtools import print_figure
from matplotlib.axes import Axes
from matplotlib.backends import backend_registry
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

# The book's figures are at most 14 inches wide and are shown scaled into its ~690-pixel text
# column: a label of s points in a figure W inches wide reads as about s * 9.6 / W pixels there.
# FONT_SCALE 1.3 (labels 15.6 pt, ticks 14.3 pt) keeps them at 10-11 pixels or more at W = 14.
FONT_SCALE = 1.3


def set_theme() -> None:
    """The course's plotting style: seaborn whitegrid, notebook context scaled by FONT_SCALE.

    Colorblind palette; fonts of the notebook context times FONT_SCALE, sized for figures of at
    most 14 inches shown in the book's text column. In a kernel, figures are then shown as
    256-colour PNGs (figure_png), which keeps a chapter's saved outputs about half as large.
    """
    sns.set_theme(
        context="notebook", style="whitegrid", palette="colorblind", font_scale=FONT_SCALE
    )
    shell = get_ipython()
    if shell is not None:
        # Import the backend first: the inline backend installs its own formatter on import.
        backend_registry.load_backend_module(plt.get_backend())
        shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


def palette_png(png: bytes, colors: int = 256) -> bytes:
    """The image `png` re-encoded as a PNG with a palette of `colors` colours (median cut).

    A plot has few distinct colours, so the palette keeps it nearly as it was (on a plot with a
    colour map, 99% of channel values within 8 levels of 255, mean error below 1) in a third to a
    half of the bytes. Alpha is dropped: the book's figures are opaque.

    Args:
        png: an encoded image (any format PIL reads).
        colors: the palette's size, 2 to 256.

    Returns:
        The encoded palette PNG, of the same width and height.
    """
    if not 2 <= colors <= 256:
        raise ValueError(f"colors must be in 2..256, got {colors}")
    try:
        image = Image.open(io.BytesIO(png))
    except (OSError, TypeError) as error:
        raise ValueError(f"png must be the bytes of an encoded image: {error}") from None
    image = image.convert("RGB").quantize(colors=colors)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return out.getvalue()


def figure_png(figure: Figure) -> str | None:
    """The figure as a kernel shows it (tight bounding box, the figure's dpi), as palette_png.

    Args:
        figure: a matplotlib Figure.

    Returns:
        The PNG in base64, as IPython's image/png formatter expects, or None for a figure with
        nothing drawn (then nothing is shown, as IPython does).
    """
    if not isinstance(figure, Figure):
        raise TypeError(f"figure must be a matplotlib Figure, got {type(figure).__name__}")
    png = print_figure(figure, "png", bbox_inches="tight")
    return None if png is None else base64.b64encode(palette_png(png)).decode("ascii")


def _check_points(x: Tensor, name: str) -> None:
    """ValueError naming `name` unless x is a tensor of 2D points, shape (n, 2)."""
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(
            f"{name} must be a tensor of shape (n, 2), got {getattr(x, 'shape', type(x))}"
        )


def _axes(ax: Axes | None, title: str | None) -> Axes:
    ax = ax if ax is not None else plt.subplots()[1]
    if title is not None:
        ax.set_title(title)
    return ax


def image_grid(
    images: Tensor,
    nrow: int = 8,
    ax: Axes | None = None,
    title: str | None = None,
    padding: int = 2,
) -> Axes:
    """Show a batch of images in [0, 1] as one grid.

    Show a batch (B, C, H, W) or (B, H, W) of images in [0, 1] as one grid
    (torchvision.utils.make_grid).
    """
    from torchvision.utils import make_grid

    if not isinstance(images, Tensor) or images.dim() not in (3, 4):
        got = getattr(images, "shape", type(images))
        raise ValueError(f"images must be a tensor of shape (B, C, H, W) or (B, H, W), got {got}")
    images = images.detach().to("cpu", torch.float32)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {images.shape[1]}")
    grid = make_grid(images.clamp(0, 1), nrow=nrow, padding=padding, pad_value=1.0)
    ax = _axes(ax, title)
    if images.shape[1] == 1:
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.set_axis_off()
    return ax


@dataclass(frozen=True)
class Grid:
    """The square [-lim, lim]^2 sampled at n x n points on `device`: where a density is evaluated.

    Example:
        >>> Grid(lim=1.0, n=3).points()[:2].tolist()
        [[-1.0, -1.0], [0.0, -1.0]]
    """

    lim: float = 4.0
    n: int = 200
    device: torch.device | str | None = None

    def points(self) -> Tensor:
        """The n^2 points (n^2, 2) in the default dtype, x_1 varying fastest."""
        if self.n < 2:
            raise ValueError(f"n must be >= 2, got {self.n}")
        t = torch.linspace(-self.lim, self.lim, self.n, device=self.device)
        return torch.stack(torch.meshgrid(t, t, indexing="xy"), dim=-1).reshape(-1, 2)

    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) for imshow."""
        return (-self.lim, self.lim, -self.lim, self.lim)


@torch.no_grad()
def _log_prob_on(log_prob_fn: Callable[[Tensor], Tensor], grid: Grid) -> Tensor:
    """log_prob_fn on the grid's points as an (n, n) CPU tensor; ValueError if it holds NaN."""
    log_p = log_prob_fn(grid.points()).reshape(grid.n, grid.n).cpu()
    if torch.isnan(log_p).any():
        raise ValueError("log_prob_fn returned NaN on the plotting grid")
    return log_p


def _heatmap(ax: Axes, image: Tensor, grid: Grid, names: str, **imshow: Any) -> Axes:
    """Show `image` over the grid's square, axes labelled names_1 and names_2."""
    ax.imshow(image.numpy(), extent=grid.extent(), origin="lower", aspect="equal", **imshow)
    ax.grid(False)
    ax.set_xlabel(f"${names}_1$")
    ax.set_ylabel(f"${names}_2$")
    return ax


def plot_density(
    log_prob_fn: Callable[[Tensor], Tensor],
    ax: Axes | None = None,
    grid: Grid = Grid(),
    title: str | None = None,
) -> Axes:
    """Heatmap of p(x) = exp(log_prob_fn(x)) on the grid's square.

    Args:
        log_prob_fn: maps points (k, 2) to log-densities (k,).
        ax: the axes to draw on (a new figure if None).
        grid: where to evaluate (the square, the resolution, the device of log_prob_fn).
        title: the axes' title.

    Returns:
        The axes.
    """
    density = _log_prob_on(log_prob_fn, grid).exp()
    return _heatmap(_axes(ax, title), density, grid, "x", cmap="viridis")


def plot_samples(
    x: Tensor,
    ax: Axes | None = None,
    lim: float = 4.0,
    title: str | None = None,
    s: float = 2.0,
    alpha: float = 0.5,
    **scatter,
) -> Axes:
    """Scatter plot of 2D samples x (n, 2) on the square [-lim, lim]^2."""
    _check_points(x, "x")
    points = x.detach().to("cpu", torch.float64).numpy()
    ax = _axes(ax, title)
    ax.scatter(points[:, 0], points[:, 1], s=s, alpha=alpha, **scatter)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return ax


def seconds_per_call(fn: Callable[[], object], min_time: float = 0.01, repeat: int = 3) -> float:
    """Wall-clock seconds per call of `fn()`: n doubles until n calls take `min_time`.

    Best of `repeat` such runs.
    """
    if min_time <= 0 or repeat < 1:
        raise ValueError(
            f"min_time must be > 0 and repeat >= 1, got min_time={min_time}, repeat={repeat}"
        )
    fn()  # warm-up (lazy initialisation, caches)
    n = 1
    while (elapsed := timeit.timeit(fn, number=n)) < min_time:
        n *= 2
    return min([elapsed, *timeit.repeat(fn, number=n, repeat=repeat - 1)]) / n


def plot_scaling(
    timings: dict[str, tuple[Sequence[int], Sequence[float]]],
    ax: Axes | None = None,
    fit_last: int = 3,
    title: str | None = None,
    xlabel: str = "dimension $m$",
) -> dict[str, float]:
    """Log-log plot of seconds against size per operation, {label: (sizes, seconds)}.

    Returns the fitted slopes.

    The slope k of log t = k log m + c is fitted to the `fit_last` largest sizes (t ~ m^k), where
    fixed per-call overheads no longer dominate, and shown in the legend.
    """
    if fit_last < 2:
        raise ValueError(f"fit_last must be >= 2 (a line needs two points), got {fit_last}")
    ax = _axes(ax, title)
    slopes = {}
    for label, (sizes, seconds) in timings.items():
        if len(sizes) != len(seconds) or len(sizes) < fit_last:
            raise ValueError(
                f"timings[{label!r}]: need equally many sizes and times, at least "
                f"fit_last={fit_last}"
            )
        log_m, log_t = np.log(np.asarray(sizes, float)), np.log(np.asarray(seconds, float))
        slope, intercept = np.polyfit(log_m[-fit_last:], log_t[-fit_last:], 1)
        line = ax.loglog(sizes, seconds, "o-", label=f"{label}: slope {slope:.1f}")[0]
        fitted = np.exp(intercept + slope * log_m[-fit_last:])
        ax.loglog(np.exp(log_m[-fit_last:]), fitted, "--", color=line.get_color(), lw=3, alpha=0.4)
        slopes[label] = float(slope)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("seconds per call")
    ax.legend(fontsize="small")
    return slopes


def binned_masses(
    samples: Tensor, log_prob_fn: Callable[[Tensor], Tensor], lim: float, bins: int, sub: int = 4
) -> tuple[Tensor, Tensor]:
    """Per-bin frequencies of samples and masses of a density on a regular grid.

    Per-bin probabilities on the regular grid of bins^d cells over [-lim, lim]^d, for samples (n,
    d), d = 1 or 2.

    Returns (frequencies of the samples, integral of exp(log_prob_fn) over each cell by the midpoint
    rule on sub^d points), both of shape (bins,) * d, in the samples' dtype. Mass outside the box is
    not counted.
    """
    if not isinstance(samples, Tensor) or samples.dim() != 2 or samples.shape[1] not in (1, 2):
        raise ValueError(
            "samples must be a tensor of shape (n, 1) or (n, 2), got "
            f"{getattr(samples, 'shape', None)}"
        )
    d, dtype = samples.shape[1], samples.dtype
    edges = torch.linspace(-lim, lim, bins + 1, dtype=dtype)
    frequencies = torch.histogramdd(samples.detach().cpu(), [edges] * d).hist / len(samples)
    h = 2 * lim / bins
    t = -lim + h * (torch.arange(bins * sub, dtype=dtype) + 0.5) / sub
    points = torch.stack(torch.meshgrid(*[t] * d, indexing="ij"), dim=-1).to(samples.device)
    density = log_prob_fn(points.reshape(-1, d)).exp().cpu().reshape((bins, sub) * d)
    return frequencies, density.mean(dim=tuple(range(1, 2 * d, 2))) * h**d


def grid_cells(lim: float, n_cells: int, n_points: int = 16) -> tuple[Tensor, Tensor]:
    """The n_cells^2 square cells of a regular grid on [-lim, lim]^2.

    Boundaries, counterclockwise with n_points per edge, (n_cells^2, 4 n_points, 2), and centers
    (n_cells^2, 2), in float64.
    """
    h = 2 * lim / n_cells
    t = torch.arange(n_points, dtype=torch.float64) / n_points
    zero, one = torch.zeros_like(t), torch.ones_like(t)
    square = torch.cat(
        [torch.stack(e, dim=-1) for e in ((t, zero), (one, t), (1 - t, one), (zero, 1 - t))]
    )
    k = torch.arange(n_cells, dtype=torch.float64)
    corners = -lim + h * torch.stack(torch.meshgrid(k, k, indexing="xy"), dim=-1).reshape(-1, 2)
    return corners[:, None, :] + h * square, corners + h / 2


@dataclass(frozen=True)
class ColorScale:
    """How plot_cells colors its cells.

    The colormap, the colorbar's label and limits (None: the data's).
    """

    cmap: str = "viridis"
    label: str | None = None
    vmin: float | None = None
    vmax: float | None = None


def plot_cells(
    polygons: Tensor,
    values: Tensor | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    scale: ColorScale = ColorScale(),
) -> Axes:
    """Draw polygons, e.g. grid cells pushed through a map, colored by `values`.

    Draw polygons (n, k, 2), e.g. grid cells pushed through a map, filled by `values` (n,) with a
    colorbar of `scale`.
    """
    from matplotlib.collections import PolyCollection

    ax = _axes(ax, title)
    cells = PolyCollection(polygons.detach().cpu().numpy(), edgecolors="k", linewidths=0.4)
    if values is None:
        cells.set_facecolor("none")
    else:
        cells.set_array(values.detach().cpu().numpy())
        cells.set_cmap(scale.cmap)
        cells.set_clim(scale.vmin, scale.vmax)
        ax.figure.colorbar(cells, ax=ax, label=scale.label, shrink=0.8)
    ax.add_collection(cells)
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.grid(False)
    return ax


def latent_lim(z: Tensor, quantile: float = 0.98, margin: float = 1.2) -> float:
    """Half-width of a square view of 2D latent codes z (n, 2).

    `margin` times the `quantile` of |z_j|, rounded up.
    """
    _check_points(z, "z")
    if not 0 < quantile <= 1 or margin <= 0:
        raise ValueError(
            f"need 0 < quantile <= 1 and margin > 0, got quantile={quantile}, margin={margin}"
        )
    return float(
        np.ceil(margin * torch.quantile(z.detach().abs().double().cpu().flatten(), quantile).item())
    )


def plot_latent_density(
    log_prob_fn: Callable[[Tensor], Tensor],
    ax: Axes | None = None,
    grid: Grid = Grid(n=150),
    title: str | None = None,
    log_range: float = 12.0,
) -> Axes:
    """Heatmap of the log-density log p(z) on the grid's latent square, clipped to its top nats.

    Clipping to the top `log_range` nats keeps both spiky densities (mixtures of narrow posteriors)
    and their holes visible.

    Args:
        log_prob_fn: maps latent points (k, 2) to log-densities (k,).
        ax: the axes to draw on (a new figure if None).
        grid: where to evaluate.
        title: the axes' title.
        log_range: the range of log p shown, in nats below its maximum.

    Returns:
        The axes.
    """
    if log_range <= 0:
        raise ValueError(f"log_range must be > 0, got {log_range}")
    log_p = _log_prob_on(log_prob_fn, grid).double()
    top = log_p.max().item()
    clipped = log_p.clamp(min=top - log_range)
    ax = _axes(ax, title)
    return _heatmap(ax, clipped, grid, "z", cmap="viridis", vmin=top - log_range, vmax=top)


def plot_latent_codes(
    z: Tensor,
    labels: Tensor,
    ax: Axes | None = None,
    lim: float = 4.0,
    title: str | None = None,
    **scatter: Any,
) -> Axes:
    """Scatter of 2D latent codes colored by their integer labels.

    Scatter of 2D latent codes z (n, 2) colored by their integer labels (n,) (tab10), one legend
    entry per label; `scatter` goes to Axes.scatter (default s=4, alpha=0.8).
    """
    _check_points(z, "z")
    if not isinstance(labels, Tensor) or labels.shape != (len(z),):
        raise ValueError(
            f"labels must be a tensor of shape ({len(z)},), got "
            f"{getattr(labels, 'shape', type(labels))}"
        )
    ax = _axes(ax, title)
    points, labels = z.detach().to("cpu", torch.float64).numpy(), labels.cpu().numpy()
    colors = plt.get_cmap("tab10")
    for k, label in enumerate(np.unique(labels)):
        mask = labels == label
        ax.scatter(
            points[mask, 0],
            points[mask, 1],
            color=colors(k % 10),
            label=str(label),
            **{"s": 4.0, "alpha": 0.8, **scatter},
        )
    ax.legend(
        title="label",
        fontsize="x-small",
        markerscale=3,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return ax
