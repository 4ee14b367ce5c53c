"""dgm_lib.viz: every helper draws on the Agg backend and returns its Axes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

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
