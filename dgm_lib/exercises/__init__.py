"""Exercises: `check(name, fn)` runs hidden checks with hints and records the verdict.

`progress(chapter)` prints the chapter's exercises and their state; `use_or_reference(name, fn)`
lets a chapter cell wait for an unfinished exercise by using the library's reference meanwhile.

`python -m dgm_lib.exercises.generate` writes student notebooks.
"""

from . import (  # noqa: F401  chapter check modules: importing one registers its checks (one name per chapter)  # noqa: F401  (modules, for tests and authors)
    ali,
    change_of_variables,
    dequantization,
    diffusion,
    elbo_surgery,
    intrinsic_dim,
    intro,
    kl_duality,
    registry,
    sgld,
    tracker,
)
from .registry import Case, known_exercises, open_question, register, register_reference
from .runner import check
from .setup import setup_cell
from .tracker import progress, use_or_reference

__all__ = [
    "Case",
    "check",
    "known_exercises",
    "open_question",
    "progress",
    "register",
    "register_reference",
    "setup_cell",
    "use_or_reference",
]
