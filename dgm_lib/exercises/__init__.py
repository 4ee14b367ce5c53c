"""Exercises: `check(name, fn)` runs hidden checks with hints.

`python -m dgm_lib.exercises.generate` writes student notebooks.
"""

from . import (  # noqa: F401  chapter check modules: importing one registers its checks (one name per chapter)
    ali,
    change_of_variables,
    dequantization,
    diffusion,
    elbo_surgery,
    intrinsic_dim,
    intro,
    kl_duality,
    sgld,
)
from .registry import Case, known_exercises, register
from .runner import check
from .setup import setup_cell

__all__ = ["Case", "check", "known_exercises", "register", "setup_cell"]
