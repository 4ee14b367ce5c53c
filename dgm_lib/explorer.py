"""explorer(): every chapter's ipywidgets explorer, live in a kernel and precomputed for the book.

An explorer has two faces. In a kernel (Jupyter, Colab) it is live: its controls span their full
range and `ipywidgets.interactive_output` redraws the figure `draw(**values)` on every change. The
published HTML book has no kernel, so when the chapters are executed for the book (the environment
variable DGM_EXPLORERS=book, set by `make execute`) the explorer instead draws one PNG per point
of a grid of control values, at execute time, and stores them in nested `Stack` widgets: the
Stack at depth k holds one child per value of control k, and its `selected_index` is `jslink`ed to
that control's `index`. The widget state saved in the notebook then switches figures in the
browser with no kernel and no network (ipywidgets' HTML manager runs the links). The grids are
small and chosen to teach; the live face keeps the full range.

The browser test finds each explorer by its CSS class `dgm-explorer-NAME`, its controls by
`dgm-control-K` (K = depth) and the figure for grid indices (i, j, ...) by
`dgm-figure-NAME-i-j-...`.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Literal

import ipywidgets as widgets
import matplotlib.pyplot as plt

from dgm_lib.viz import palette_png

MODE_VARIABLE = "DGM_EXPLORERS"
# The book's text column is about 720 pixels wide; a wider stored figure is only scaled down.
COLUMN_PIXELS = 720
MODES = ("live", "book")
CONTROL_KINDS = {
    "slider": widgets.SelectionSlider,
    "buttons": widgets.ToggleButtons,
    "dropdown": widgets.Dropdown,
}


def _row() -> widgets.Layout:
    """A row that wraps onto the next line where the content width ends (nothing is cut off)."""
    return widgets.Layout(display="flex", flex_flow="row wrap", align_items="center")


@dataclass(frozen=True)
class Choices:
    """The values one control takes in the published book: labelled options and a default.

    Args:
        description: the control's label (plain words or Unicode: no TeX, the book's widget labels
            are not typeset).
        options: (label, value) pairs, in the order the control shows them.
        value: the default value (one of the options' values).
        kind: "slider" (SelectionSlider, for ordered values), "buttons" (ToggleButtons, for a few
            categories) or "dropdown".
    """

    description: str
    options: tuple[tuple[str, Any], ...]
    value: Any
    kind: Literal["slider", "buttons", "dropdown"] = "slider"

    def __post_init__(self) -> None:
        values = [value for _, value in self.options]
        if len(values) < 2:
            raise ValueError(f"Choices {self.description!r}: options needs at least 2 values")
        if self.value not in values:
            raise ValueError(f"Choices {self.description!r}: value {self.value!r} not in options")
        if self.kind not in CONTROL_KINDS:
            raise ValueError(
                f"Choices kind must be one of {sorted(CONTROL_KINDS)}, not {self.kind!r}"
            )

    @property
    def index(self) -> int:
        """The position of the default value among the options."""
        return [value for _, value in self.options].index(self.value)

    def control(self, by_index: bool = True) -> widgets.ValueWidget:
        """The selection widget of these choices, set to the default.

        Args:
            by_index: the widget's values are the options' positions (the book face jslinks its
                `index`); False: the options' values themselves (a live face of the same grid).
        """
        style = {"description_width": "initial"}
        if self.kind == "buttons":
            style["button_width"] = "auto"
        options = [
            (label, i if by_index else value) for i, (label, value) in enumerate(self.options)
        ]
        # a slider needs a width for its track; buttons and menus take what their labels need
        width = "330px" if self.kind == "slider" else "auto"
        return CONTROL_KINDS[self.kind](
            options=options,
            value=self.index if by_index else self.value,
            description=self.description,
            style=style,
            layout=widgets.Layout(width=width, margin="2px 16px 2px 0"),
        )


def choices(
    description: str,
    options: list[Any] | list[tuple[str, Any]],
    value: Any,
    kind: Literal["slider", "buttons", "dropdown"] = "slider",
) -> Choices:
    """Choices from plain values (labelled by `str`) or (label, value) pairs.

    Example:
        >>> choices("T", [10, 100, 1000], 100).options
        (('10', 10), ('100', 100), ('1000', 1000))
    """
    pairs = tuple(o if isinstance(o, tuple) else (f"{o:g}" if isinstance(o, float) else str(o), o)
                  for o in options)  # fmt: skip
    return Choices(description, pairs, value, kind)


def explorer_mode(mode: str | None = None) -> str:
    """ "live" (a kernel redraws) or "book" (precomputed figures): `mode`, else $DGM_EXPLORERS.

    Raises:
        ValueError: naming the argument or the variable, for a value other than "live"/"book".
    """
    if mode is None:
        mode = os.environ.get(MODE_VARIABLE, "live")
        if mode not in MODES:
            raise ValueError(f"environment variable {MODE_VARIABLE} must be one of {MODES}")
    elif mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return mode


def interactive(
    draw: Callable[..., None], **controls: widgets.ValueWidget | Choices
) -> widgets.VBox:
    """The live face: the controls in a row above an Output widget with `draw(**values)`.

    Args:
        draw: draws one matplotlib figure for the controls' values (keyword arguments).
        controls: the widgets (or Choices, shown as their selection widget), by the name of the
            argument of `draw` they set.

    Returns:
        A VBox: children[0] the row of controls, children[1] the output.
    """
    controls = {
        name: c.control(by_index=False) if isinstance(c, Choices) else c
        for name, c in controls.items()
    }
    return widgets.VBox(
        [
            widgets.HBox(list(controls.values()), layout=_row()),
            widgets.interactive_output(draw, controls),
        ]
    )


def render_png(draw: Callable[..., None], values: dict[str, Any], width: int) -> bytes:
    """The figure `draw(**values)` draws, `width` pixels wide, as palette_png (a third the bytes).

    dpi = width / (figure width in inches).

    Every figure opened meanwhile is closed afterwards, so the notebook shows it only through the
    explorer; figures opened before are left alone.
    """
    before = set(plt.get_fignums())
    with plt.ioff():
        plt.figure()  # a fresh current figure, whether `draw` makes its own or draws on gcf()
        draw(**values)
        buffer = io.BytesIO()
        figure = plt.gcf()
        figure.savefig(buffer, format="png", dpi=width / figure.get_figwidth())
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
    return palette_png(buffer.getvalue())


def precomputed(
    name: str,
    draw: Callable[..., None],
    book: dict[str, Choices],
    *,
    width: int = COLUMN_PIXELS,
    same: Callable[..., Hashable] | None = None,
) -> widgets.VBox:
    """The book face: a figure per grid point in nested Stacks jslinked to selection controls.

    Args:
        name: the explorer's name, in its CSS class `dgm-explorer-NAME`.
        draw: draws one matplotlib figure for keyword arguments named as `book`'s keys.
        book: the choices of every argument of `draw`, in the order of the controls.
        width: the stored PNGs' width in pixels, whatever the figure's size in inches.
        same: maps the values of a grid point to a key that is equal for grid points drawing the
            same figure (a control without effect there), which are then drawn once; default:
            every grid point is drawn.

    Returns:
        A VBox of the row of controls, the outermost Stack and a caption. Identical figures
        (where a control has no effect at some grid point) are stored once and shown by every
        grid point that draws them.

    Example:
        >>> def draw(a, b):
        ...     plt.plot([0, a], [0, b])
        >>> box = precomputed("line", draw, {"a": choices("a", [1, 2], 1),
        ...                                  "b": choices("b", [1, 2, 3], 3)})
        >>> [c.index for c in box.children[0].children], box.children[1].selected_index
        ([0, 2], 0)
    """
    if not name.replace("_", "").isalnum():
        raise ValueError(f"name must be letters, digits and underscores, not {name!r}")
    if not book:
        raise ValueError("book must give the choices of at least one control")
    names, grid = list(book), list(book.values())
    controls = [c.control() for c in grid]
    for k, control in enumerate(controls):
        control.add_class(f"dgm-control-{k}")
    images: dict[str, widgets.Image] = {}
    pngs: dict[Hashable, bytes] = {}
    # One Layout model for all boxes and stacks, one for all images: the saved widget state
    # holds every model, and a layout per widget was a tenth of a chapter's bytes.
    plain, fit = widgets.Layout(), widgets.Layout(max_width="100%", height="auto")

    def figure(path: tuple[int, ...]) -> widgets.Box:
        values = {n: c.options[i][1] for n, c, i in zip(names, grid, path)}
        key = path if same is None else same(**values)
        if key not in pngs:
            pngs[key] = render_png(draw, values, width)
        png = pngs[key]
        digest = hashlib.sha256(png).hexdigest()
        if digest not in images:
            images[digest] = widgets.Image(value=png, format="png", layout=fit)
        box = widgets.Box([images[digest]], layout=plain)
        box.add_class("dgm-figure")
        box.add_class(f"dgm-figure-{name}-" + "-".join(map(str, path)))
        return box

    def level(path: tuple[int, ...]) -> widgets.Widget:
        k = len(path)
        if k == len(grid):
            return figure(path)
        stack = widgets.Stack(
            [level(path + (i,)) for i in range(len(grid[k].options))],
            selected_index=grid[k].index,
            layout=plain,
        )
        widgets.jslink((controls[k], "index"), (stack, "selected_index"))
        return stack

    caption = widgets.HTML(
        f"<small>{grid_size(book)} figures drawn in advance; run this notebook in Jupyter or "
        "Colab for the full range of every control.</small>"
    )
    box = widgets.VBox([widgets.HBox(controls, layout=_row()), level(()), caption])
    box.add_class("dgm-explorer")
    box.add_class(f"dgm-explorer-{name}")
    return box


def grid_size(book: dict[str, Choices]) -> int:
    """The number of grid points (figures drawn) of `book`: the product of its option counts."""
    return math.prod(len(c.options) for c in book.values())


def explorer(
    name: str,
    live: Callable[[], widgets.Widget],
    draw: Callable[..., None],
    book: dict[str, Choices],
    *,
    width: int = COLUMN_PIXELS,
    same: Callable[..., Hashable] | None = None,
    mode: str | None = None,
) -> widgets.Widget:
    """The explorer `name`: `live()` in a kernel, `precomputed(name, draw, book)` for the book.

    Args:
        name: the explorer's name (its CSS class in the book).
        live: builds the live face (usually `interactive(draw, **controls)` with full-range
            controls), called only in live mode.
        draw: the book face's drawing function, its arguments named as `book`'s keys.
        book: the grid of the published book.
        width: the book's PNGs' width in pixels.
        same: the key of grid points that draw the same figure (see `precomputed`).
        mode: "live" or "book"; None reads $DGM_EXPLORERS (default live).
    """
    if explorer_mode(mode) == "live":
        return live()
    return precomputed(name, draw, book, width=width, same=same)
