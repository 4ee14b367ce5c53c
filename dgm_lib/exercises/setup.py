"""The canonical first code cell of every chapter and exercise notebook (Colab install, device,
seed)."""

from __future__ import annotations

_TEMPLATE = """\
# Setup (identical in every chapter): install dgm_lib only when missing (Colab),
# pick the device, seed everything.
try:
    import dgm_lib
except ImportError:
    %pip install --quiet "dgm-lib @ git+{repo_url}"
    import dgm_lib
from dgm_lib.core import get_device, seed_everything

device = get_device()
seed_everything(0)"""


def setup_cell(repo_url: str) -> str:
    """The exact source of the setup cell for the repository at `repo_url` (`repository.url` in
    _config.yml)."""
    if (
        not isinstance(repo_url, str)
        or not repo_url.startswith("https://")
        or any(c in repo_url for c in ' "\n')
    ):
        raise ValueError(
            f"repo_url={repo_url!r}: expected an https:// URL without spaces or quotes"
        )
    return _TEMPLATE.format(repo_url=repo_url)
