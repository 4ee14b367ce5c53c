"""Plotting helpers: the course's seaborn theme, image grids, 2D densities and samples (viz never trains)."""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import seaborn as sns
import torch
from matplotlib.axes import Axes
from torch import Tensor


def set_theme() -> None:
    """The course's plotting style: seaborn whitegrid, notebook context, colorblind palette."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def _axes(ax: Axes | None, title: str | None) -> Axes:
    ax = ax if ax is not None else plt.subplots()[1]
    if title is not None:
        ax.set_title(title)
    return ax


def image_grid(
    images: Tensor, nrow: int = 8, ax: Axes | None = None, title: str | None = None, padding: int = 2
) -> Axes:
    """Show a batch (B, C, H, W) or (B, H, W) of images in [0, 1] as one grid (torchvision.utils.make_grid)."""
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


@torch.no_grad()
def plot_density(
    log_prob_fn: Callable[[Tensor], Tensor],
    ax: Axes | None = None,
    lim: float = 4.0,
    n_grid: int = 200,
    title: str | None = None,
    device: torch.device | str | None = None,
    cmap: str = "viridis",
) -> Axes:
    """Heatmap of p(x) = exp(log_prob_fn(x)) on the square [-lim, lim]^2 (n_grid^2 points, default dtype)."""
    if n_grid < 2:
        raise ValueError(f"n_grid must be >= 2, got {n_grid}")
    t = torch.linspace(-lim, lim, n_grid, device=device)
    grid = torch.stack(torch.meshgrid(t, t, indexing="xy"), dim=-1).reshape(-1, 2)
    density = log_prob_fn(grid).exp().reshape(n_grid, n_grid).cpu()
    if torch.isnan(density).any():
        raise ValueError("log_prob_fn returned NaN on the plotting grid")
    ax = _axes(ax, title)
    ax.imshow(density.numpy(), extent=(-lim, lim, -lim, lim), origin="lower", cmap=cmap, aspect="equal")
    ax.grid(False)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return ax


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
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must be a tensor of shape (n, 2), got {getattr(x, 'shape', type(x))}")
    points = x.detach().to("cpu", torch.float64).numpy()
    ax = _axes(ax, title)
    ax.scatter(points[:, 0], points[:, 1], s=s, alpha=alpha, **scatter)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return ax
