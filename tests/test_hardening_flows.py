"""Hardening of dgm_lib.flows: bad arguments and inputs raise errors naming the argument (issue
items 4, 6, 9, 13)."""

from __future__ import annotations

import pytest
import torch

from dgm_lib.flows import IAF, MAF, AffineCoupling, half_mask, make_maf, make_realnvp

torch.set_num_threads(1)
INF = float("inf")

# item -> (bad call, error type, phrase)
BAD_CALLS = {
    "item_04_coupling_infinite_bound": (
        lambda: AffineCoupling(half_mask(2), (4,), bound=INF),
        ValueError,
        "bound must be positive and finite, got inf",
    ),
    "item_04_maf_infinite_bound": (
        lambda: MAF(2, (4,), bound=INF),
        ValueError,
        "bound must be positive and finite",
    ),
    "item_04_iaf_nan_bound": (
        lambda: IAF(2, (4,), bound=float("nan")),
        ValueError,
        "bound must be positive and finite, got nan",
    ),
    "item_04_make_realnvp_infinite_bound": (
        lambda: make_realnvp(2, depth=1, hidden=(4,), bound=INF),
        ValueError,
        "bound must be positive and finite",
    ),
    "item_04_make_maf_infinite_bound": (
        lambda: make_maf(2, depth=1, hidden=(4,), bound=INF),
        ValueError,
        "bound must be positive and finite",
    ),
    "item_04_string_bound": (
        lambda: make_maf(2, depth=1, hidden=(4,), bound="5"),
        TypeError,
        "bound must be a real number",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call()
