"""Every chapter and exercise notebook starts with the canonical setup cell, pointing at
`repository.url`."""

from pathlib import Path

import nbformat
import pytest
import yaml

from dgm_lib.exercises import setup_cell

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "_config.yml"
NOTEBOOKS = sorted(ROOT.glob("book/*.ipynb")) + sorted(ROOT.glob("book/exercises/*.ipynb"))

CANONICAL = """\
# Setup (identical in every chapter): install dgm_lib only when missing (Colab),
# pick the device, seed everything.
try:
    import dgm_lib
except ImportError:
    %pip install --quiet "dgm-lib @ git+https://example.org/owner/repo"
    import dgm_lib
from dgm_lib.core import get_device, seed_everything

device = get_device()
seed_everything(0)"""


@pytest.fixture(scope="module")
def repo_url() -> str:
    """`repository.url` from _config.yml (the single source of the URL)."""
    if not CONFIG.is_file():
        pytest.skip(
            "_config.yml does not exist yet: it holds repository.url, which the setup cell must use"
        )
    url = (
        (yaml.safe_load(CONFIG.read_text(encoding="utf-8")) or {}).get("repository", {}).get("url")
    )
    assert url, "_config.yml has no repository.url"
    return url


def test_setup_cell_is_the_canonical_text():
    assert setup_cell("https://example.org/owner/repo") == CANONICAL


@pytest.mark.parametrize("url", ["", "github.com/a/b", "https://a b", 'https://x"', None])
def test_setup_cell_rejects_a_bad_url(url):
    with pytest.raises(ValueError, match="repo_url"):
        setup_cell(url)


def test_there_are_notebooks_to_check():
    assert NOTEBOOKS, "no book/*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_first_code_cell_is_the_setup_cell(path, repo_url):
    nb = nbformat.read(path, as_version=4)
    first = next((cell for cell in nb.cells if cell.cell_type == "code"), None)
    assert first is not None, f"{path.name} has no code cell"
    assert first.source == setup_cell(repo_url), (
        f"{path.name}: the first code cell must be exactly "
        f"dgm_lib.exercises.setup_cell({repo_url!r})"
    )
