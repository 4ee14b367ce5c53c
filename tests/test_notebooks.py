"""Hygiene of the committed chapter notebooks (book/*.ipynb): executed, clean outputs, small,
nbval-ready."""

import base64
import io
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("book/*.ipynb"))
CHAPTERS = [path for path in NOTEBOOKS if re.match(r"\d\d_", path.name)]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
LOCAL_PATH = re.compile(r"/work/|/root/|/home/|/tmp/")
MEMORY_ADDRESS = re.compile(r"0x[0-9a-f]{6,}")
# A chapter holds its explorers' precomputed figures (the published page's budget, 8 MB with its
# assets, is test_book's); the notebook itself stays small enough to open quickly in Colab.
MAX_BYTES = 3_000_000

ids = lambda p: p.name  # noqa: E731


def code_cells(nb: nbformat.NotebookNode) -> list:
    """The non-empty code cells (an empty cell is never executed, so it has no count)."""
    return [cell for cell in nb.cells if cell.cell_type == "code" and cell.source.strip()]


def output_texts(cell: nbformat.NotebookNode):
    """Every text an output of `cell` shows (streams, text-like MIME data, error text); no base64
    images."""
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            yield output.text
        elif output.output_type == "error":
            yield "\n".join([output.ename, output.evalue, *output.traceback])
        else:
            for mime, value in output.get("data", {}).items():
                if not mime.startswith("image/") or mime == "image/svg+xml":
                    yield value if isinstance(value, str) else json.dumps(value)


def displayed_widgets(cell: nbformat.NotebookNode) -> list[str]:
    """The model ids of the widgets that `cell` displays."""
    return [
        out.data[WIDGET_VIEW]["model_id"]
        for out in cell.get("outputs", [])
        if WIDGET_VIEW in out.get("data", {})
    ]


@pytest.fixture(params=NOTEBOOKS, ids=ids)
def notebook(request) -> tuple[Path, nbformat.NotebookNode]:
    return request.param, nbformat.read(request.param, as_version=4)


def test_there_are_notebooks():
    assert NOTEBOOKS and CHAPTERS


def test_is_a_valid_notebook(notebook):
    path, nb = notebook
    nbformat.validate(nb)


def test_is_committed_executed_in_order(notebook):
    path, nb = notebook
    counts = [cell.execution_count for cell in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts}; re-execute it top to bottom with `make execute`"
    )


def test_has_no_error_outputs(notebook):
    path, nb = notebook
    errors = [
        i
        for i, cell in enumerate(nb.cells)
        if any(o.output_type == "error" for o in cell.get("outputs", []))
    ]
    assert not errors, f"{path.name}: error outputs in cells {errors}"


def test_outputs_have_no_local_paths_or_memory_addresses(notebook):
    path, nb = notebook
    for index, cell in enumerate(nb.cells):
        for text in output_texts(cell):
            for pattern in (LOCAL_PATH, MEMORY_ADDRESS):
                match = pattern.search(text)
                assert match is None, (
                    f"{path.name}, cell {index}: output shows {match.group()!r}: {text[:200]!r}"
                )


def test_is_at_most_3_mb(notebook):
    path, _ = notebook
    assert path.stat().st_size <= MAX_BYTES, (
        f"{path.name} is {path.stat().st_size / 1e6:.2f} MB (max 3 MB)"
    )


def test_figures_are_palette_pngs(notebook):
    """Executed with viz.set_theme's figure_png: every shown PNG has a 256-colour palette."""
    path, nb = notebook
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png is not None:
                mode = Image.open(io.BytesIO(base64.b64decode(png))).mode
                assert mode == "P", f"{path.name}, cell {index}: a {mode} PNG (not figure_png's)"


def test_widget_cells_ignore_output_and_state_is_saved(notebook):
    path, nb = notebook
    shown = []
    for index, cell in enumerate(nb.cells):
        if displayed_widgets(cell):
            assert cell.source.startswith("# NBVAL_IGNORE_OUTPUT"), (
                f"{path.name}, cell {index} displays widgets: start it with `# NBVAL_IGNORE_OUTPUT`"
            )
            shown += displayed_widgets(cell)
    if shown:
        state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
        missing = [model for model in shown if model not in state]
        assert not missing, (
            f"{path.name}: no saved widget state for {missing}; re-execute it with `make execute`"
        )


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_chapter_has_a_check_output_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert any("# NBVAL_CHECK_OUTPUT" in cell.source.split("\n") for cell in code_cells(nb)), (
        f"{path.name}: print the key numbers, rounded, in a cell marked `# NBVAL_CHECK_OUTPUT`"
    )


def sanitize(text: str) -> str:
    """`text` after the regexes of book/sanitize.cfg, applied the way nbval applies them."""
    for regex, replace in get_sanitize_patterns(
        (ROOT / "book" / "sanitize.cfg").read_text(encoding="utf-8")
    ):
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "<Figure size 640x480 with 1 Axes at 0x7f3a2c1b9e50>",
            "<Figure size 640x480 with 1 Axes at 0xADDRESS>",
        ),
        ("trained in 12.3 s (4 ms per step)", "trained in DURATION (DURATION per step)"),
        ("Wall time: 1.52 s", "Wall time: TIME"),
        ("epoch 3: 100%|██████████| 200/200 [00:03<00:00, 61.23it/s, loss=1.2]", "PROGRESS-BAR"),
        ("saved to /tmp/tmpab12cd/model.pt", "saved to TEMP-PATH"),
        (
            "log p(x) = -1.837877, bits/dim = 1.25, 3 samples",
            "log p(x) = -1.837877, bits/dim = 1.25, 3 samples",
        ),
    ],
)
def test_sanitizer_masks_only_what_changes_between_runs(raw, clean):
    assert sanitize(raw) == clean


CELL_WIDTH = 88  # the HTML book shows this many columns of a code cell without scrolling


@pytest.mark.parametrize(
    "path",
    NOTEBOOKS + sorted(ROOT.glob("book/exercises/*.ipynb")),
    ids=lambda p: p.parent.name + "/" + p.name,
)
def test_code_cells_fit_the_page_width(path):
    """No line of a code cell is wider than CELL_WIDTH: nothing scrolls sideways in the HTML."""
    nb = nbformat.read(path, as_version=4)
    wide = [
        f"cell {k}, line {n}: {len(line)} characters"
        for k, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for n, line in enumerate(cell.source.splitlines(), start=1)
        if len(line) > CELL_WIDTH
    ]
    assert not wide, f"{path.name}: code lines over {CELL_WIDTH} characters: " + "; ".join(wide)


FIGSIZE = re.compile(r"figsize=\(\s*([0-9.]+)\s*,")


def test_figures_are_at_most_14_inches_wide():
    """Every literal figsize in the chapters and in dgm_lib is at most 14 inches wide.

    The HTML shows figures scaled into its ~690-pixel text column, so a wider figure's text falls
    below the size dgm_lib.viz.FONT_SCALE is chosen for.
    """
    sources = {
        f"{path.name} cell {k}": cell.source
        for path in CHAPTERS
        for k, cell in enumerate(nbformat.read(path, as_version=4).cells)
        if cell.cell_type == "code"
    }
    sources |= {str(p.relative_to(ROOT)): p.read_text() for p in ROOT.glob("dgm_lib/**/*.py")}
    found = [(where, float(w)) for where, src in sources.items() for w in FIGSIZE.findall(src)]
    assert len(found) > 40, "the figsize pattern no longer matches the book's figures"
    wide = [f"{where}: {width:g} in" for where, width in found if width > 14]
    assert not wide, "figures wider than 14 inches: " + "; ".join(wide)
