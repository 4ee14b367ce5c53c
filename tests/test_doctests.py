"""Every `Example:` in dgm_lib's docstrings runs as a doctest (offline, a few seconds in all)."""

import doctest
import importlib
import pkgutil

import pytest

import dgm_lib

MODULES = sorted(info.name for info in pkgutil.walk_packages(dgm_lib.__path__, "dgm_lib."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, one_thread):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_public_api_has_examples():
    """The modules a reader meets first show how to call them."""
    for name in ("dgm_lib.checks", "dgm_lib.core", "dgm_lib.training", "dgm_lib.zoo", "dgm_lib.io"):
        finder = doctest.DocTestFinder()
        examples = sum(len(t.examples) for t in finder.find(importlib.import_module(name)))
        assert examples >= 3, name
