"""dgm_lib.explorer: the live face in a kernel, the precomputed face for the published book.

The book face must hold, for every grid point, the figure the live face draws for those values,
and switch to it through jslinks alone (the browser test drives that in the built HTML).
"""

from __future__ import annotations

import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest
from ipywidgets.widgets.widget import _instances
from ipywidgets.widgets.widget_link import Link
from PIL import Image as PILImage

from dgm_lib import explorer as explorer_module
from dgm_lib.explorer import (
    Choices,
    choices,
    explorer,
    explorer_mode,
    grid_size,
    interactive,
    precomputed,
    render_png,
)


@pytest.fixture
def fake_png(monkeypatch):
    """render_png replaced by the repr of the values it was asked for (and a log of the calls)."""
    calls = []

    def render(draw, values, width):
        calls.append(dict(values))
        return repr(sorted(values.items())).encode()

    monkeypatch.setattr(explorer_module, "render_png", render)
    return calls


def _leaves(widget, path=()):
    """(grid path, figure box) of every leaf below a Stack, by walking the children."""
    if isinstance(widget, widgets.Stack):
        for i, child in enumerate(widget.children):
            yield from _leaves(child, path + (i,))
    else:
        yield path, widget


def _links_of(widget: widgets.Widget) -> list[Link]:
    """The jslinks whose target is `widget` (among the live widgets of the kernel)."""
    return [w for w in list(_instances.values()) if isinstance(w, Link) and w.target[0] is widget]


def _draw(a, b):
    plt.plot([0, a], [0, b])


BOOK = {
    "a": choices("a", [1, 2, 3], 2),
    "b": choices("b", [("low", 0.5), ("high", 1.5)], 1.5, kind="buttons"),
}


def test_choices_label_values_and_validate():
    assert choices("T", [0.5, 1.0], 1.0).options == (("0.5", 0.5), ("1", 1.0))
    assert BOOK["a"].index == 1 and BOOK["b"].index == 1
    with pytest.raises(ValueError, match="value 4 not in options"):
        choices("a", [1, 2], 4)
    with pytest.raises(ValueError, match="at least 2"):
        choices("a", [1], 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        Choices("a", (("1", 1), ("2", 2)), 1, kind="knob")


def test_choices_control_by_index_and_by_value():
    by_index, by_value = BOOK["b"].control(), BOOK["b"].control(by_index=False)
    assert isinstance(by_index, widgets.ToggleButtons)
    assert by_index.value == 1 and by_index.index == 1
    assert by_value.value == 1.5 and by_value.index == 1
    assert isinstance(BOOK["a"].control(), widgets.SelectionSlider)


def test_mode_comes_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.delenv("DGM_EXPLORERS", raising=False)
    assert explorer_mode() == "live"
    monkeypatch.setenv("DGM_EXPLORERS", "book")
    assert explorer_mode() == "book" and explorer_mode("live") == "live"
    monkeypatch.setenv("DGM_EXPLORERS", "static")
    with pytest.raises(ValueError, match="DGM_EXPLORERS"):
        explorer_mode()
    with pytest.raises(ValueError, match="mode must be one of"):
        explorer_mode("html")


def test_book_face_holds_one_figure_per_grid_point_in_nested_stacks(fake_png):
    box = precomputed("demo", _draw, BOOK)
    row, stack, caption = box.children
    assert "dgm-explorer-demo" in box._dom_classes
    assert "6 figures drawn in advance" in caption.value
    assert [c.index for c in row.children] == [1, 1]
    leaves = dict(_leaves(stack))
    assert sorted(leaves) == [(i, j) for i in range(3) for j in range(2)] and grid_size(BOOK) == 6
    for (i, j), leaf in leaves.items():
        values = {"a": BOOK["a"].options[i][1], "b": BOOK["b"].options[j][1]}
        assert leaf.children[0].value == repr(sorted(values.items())).encode()
        assert f"dgm-figure-demo-{i}-{j}" in leaf._dom_classes
    assert len(fake_png) == 6
    # two Layout models in all: one for the boxes and stacks, one for the images
    stacks = [stack, *stack.children]
    assert len({id(w.layout) for w in [*stacks, *leaves.values()]}) == 1
    assert len({id(leaf.children[0].layout) for leaf in leaves.values()}) == 1
    assert leaves[0, 0].children[0].layout.max_width == "100%"


def test_every_stack_is_jslinked_to_its_control(fake_png):
    box = precomputed("demo", _draw, BOOK)
    (control_a, control_b), outer = box.children[0].children, box.children[1]
    inner = list(outer.children)
    for stack, control in [(outer, control_a)] + [(s, control_b) for s in inner]:
        (link,) = _links_of(stack)
        assert link.source == (control, "index") and link.target == (stack, "selected_index")
        assert stack.selected_index == control.index


def test_same_draws_each_distinct_figure_once_and_stores_it_once(fake_png):
    # b has no effect when a == 1: those grid points share one render and one Image widget
    def same(a, b):
        return a, None if a == 1 else b

    box = precomputed("demo", _draw, BOOK, same=same)
    leaves = dict(_leaves(box.children[1]))
    assert len(fake_png) == 5
    assert leaves[0, 0].children[0] is leaves[0, 1].children[0]
    assert leaves[1, 0].children[0] is not leaves[1, 1].children[0]


def test_real_figures_are_palette_pngs_of_the_drawing():
    plt.figure()  # a figure left open by someone else: not drawn on, not closed
    before = plt.get_fignums()
    png = render_png(_draw, {"a": 1, "b": 2}, width=200)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert PILImage.open(io.BytesIO(png)).mode == "P"
    assert PILImage.open(io.BytesIO(png)).size[0] == 200  # whatever the figure's inches
    assert render_png(_draw, {"a": 1, "b": 2}, width=200) == png
    assert render_png(_draw, {"a": 2, "b": 2}, width=200) != png
    assert plt.get_fignums() == before, "render_png must close its figures, and only those"
    plt.close("all")


def test_explorer_picks_the_face_by_mode(fake_png):
    live = explorer("demo", lambda: interactive(_draw, **BOOK), _draw, BOOK, mode="live")
    assert isinstance(live.children[1], widgets.Output)
    assert [c.value for c in live.children[0].children] == [2, 1.5]
    book = explorer(
        "demo", lambda: pytest.fail("live built in book mode"), _draw, BOOK, mode="book"
    )
    assert isinstance(book.children[1], widgets.Stack)


def test_precomputed_rejects_bad_names_and_empty_grids(fake_png):
    with pytest.raises(ValueError, match="name must be"):
        precomputed("two words", _draw, BOOK)
    with pytest.raises(ValueError, match="book must give"):
        precomputed("demo", _draw, {})


@pytest.mark.parametrize(
    "module, function, kwargs",
    [
        ("flows", "flow_density_explorer", {"device": "cpu"}),
        ("flows", "kl_direction_explorer", {"device": "cpu"}),
        ("vae", "latent_prior_explorer", {"device": "cpu"}),
        ("dequantization", "dequantization_explorer", {}),
        ("sgmcmc", "sgld_explorer", {}),
        ("intrinsic_dim", "intrinsic_dimension_explorer", {}),
        ("diffusion", "beta_schedule_explorer", {}),
        ("diffusion", "blur_schedule_explorer", {}),
        ("ali", "alice_explorer", {}),
    ],
)
def test_chapter_explorers_book_grid(monkeypatch, module, function, kwargs):
    """Every chapter explorer's book face: 10 to 60 figures, one per grid point, and the grid's
    first and last points drawn for real (their values are valid arguments of the drawing)."""
    import importlib

    real, drawn = explorer_module.render_png, []

    def render(draw, values, width):
        drawn.append((draw, values))
        return repr(sorted(values.items())).encode()

    monkeypatch.setattr(explorer_module, "render_png", render)
    make = getattr(importlib.import_module(f"dgm_lib.{module}.explorers"), function)
    box = make(mode="book", **kwargs)
    leaves = dict(_leaves(box.children[1]))
    assert 10 <= len(drawn) <= len(leaves) <= 60
    for draw, values in (drawn[0], drawn[-1]):
        assert real(draw, values, 200)[:4] == b"\x89PNG"
