"""explorer(): the shared plumbing of every chapter's ipywidgets explorer.

Every explorer is `explorer(draw, **controls)`: the controls above an Output widget that
`ipywidgets.interactive_output` fills with the figure `draw(**values)` draws, at once for the
default values (so an executed notebook stores that figure in its widget state and the HTML book
shows it) and again on every change. The explorers themselves live beside their topic, in
`dgm_lib.<topic>.explorers`.
"""

from __future__ import annotations

from typing import Callable

import ipywidgets as widgets


def explorer(draw: Callable[..., None], **controls: widgets.ValueWidget) -> widgets.VBox:
    """The controls in a row above an Output widget with the figure of `draw(**values)`.

    Args:
        draw: draws one matplotlib figure for the controls' values (keyword arguments).
        controls: the widgets, by the name of the argument of `draw` they set.

    Returns:
        A VBox: children[0] the row of controls, children[1] the output.
    """
    return widgets.VBox(
        [widgets.HBox(list(controls.values())), widgets.interactive_output(draw, controls)]
    )
