"""dgm_lib.viz: every helper draws on the Agg backend and returns its Axes."""

import base64
import io
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from IPython.core.pylabtools import print_figure  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from PIL import Image  # noqa: E402

from dgm_lib import viz  # noqa: E402
from dgm_lib.data.toy2d import get_target  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_image_grid():
    viz.set_theme()
    ax = viz.image_grid(torch.rand(10, 1, 28, 28), nrow=5, title="digits")
    assert isinstance(ax, Axes) and ax.get_title() == "digits"
    assert ax.images[0].get_array().shape == (2 * 30 + 2, 5 * 30 + 2)
    _, given = plt.subplots()
    assert viz.image_grid(torch.rand(4, 3, 8, 8), ax=given) is given
    assert viz.image_grid(torch.rand(4, 8, 8)).images
    with pytest.raises(ValueError, match="1 or 3 channels"):
        viz.image_grid(torch.rand(4, 2, 8, 8))


def test_plot_density_and_samples():
    target = get_target("eight_gaussians")
    ax = viz.plot_density(target.log_prob, grid=viz.Grid(n=50), title="8 Gaussians")
    density = ax.images[0].get_array()
    assert isinstance(ax, Axes) and density.shape == (50, 50) and density.max() > 0
    ax = viz.plot_samples(target.sample(100), ax=ax, color="w")
    assert ax.get_xlim() == (-4.0, 4.0) and len(ax.collections) == 1
    with pytest.raises(ValueError, match="NaN"):
        viz.plot_density(lambda x: torch.full(x.shape[:-1], float("nan")), grid=viz.Grid(n=10))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        viz.plot_samples(torch.zeros(5, 3))


def _plot_png() -> bytes:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [0, 1, 0], label="line")
    ax.imshow(np.linspace(0, 1, 64).reshape(8, 8), extent=(0, 2, 0, 1), cmap="viridis")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    return buffer.getvalue()


def test_palette_png_keeps_a_plot_in_256_colours():
    png = _plot_png()
    small = viz.palette_png(png)
    before = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    after = Image.open(io.BytesIO(small))
    assert after.mode == "P" and after.size == (before.shape[1], before.shape[0])
    error = np.abs(np.asarray(after.convert("RGB"), dtype=int) - before)
    assert np.percentile(error, 99) <= 8 and error.mean() < 1.0, (error.mean(), error.max())
    assert len(small) < 0.8 * len(png)
    for colors in (1, 257):
        with pytest.raises(ValueError, match="colors must be in 2..256"):
            viz.palette_png(png, colors=colors)
    for bad in (b"not an image", "text"):
        with pytest.raises(ValueError, match="png must be the bytes of an encoded image"):
            viz.palette_png(bad)


def test_figure_png_is_the_kernel_view_in_base64():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    shown = Image.open(io.BytesIO(base64.b64decode(viz.figure_png(fig))))
    plain = Image.open(io.BytesIO(print_figure(fig, "png", bbox_inches="tight")))
    assert shown.mode == "P" and shown.size == plain.size
    assert viz.figure_png(plt.figure()) is None  # nothing drawn, nothing shown
    with pytest.raises(TypeError, match="figure must be a matplotlib Figure, got Axes"):
        viz.figure_png(ax)


def test_a_kernel_shows_figures_as_palette_pngs_after_set_theme():
    """Also after the inline backend's own first-figure setup and a later %matplotlib inline."""
    cells = [
        "import matplotlib.pyplot as plt\nfrom dgm_lib import viz\nviz.set_theme()",
        "plt.plot([1, 2, 3]);",
        "fig, ax = plt.subplots()\nax.imshow([[0, 1], [1, 0]])\nplt.show()",
        "%matplotlib inline\nplt.plot([1, 2]);",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    kernel_env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # conftest's Agg
    NotebookClient(notebook, kernel_name="python3", timeout=120).execute(env=kernel_env)
    modes = [
        Image.open(io.BytesIO(base64.b64decode(out.data["image/png"]))).mode
        for cell in notebook.cells[1:]
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    assert modes == ["P", "P", "P"]
