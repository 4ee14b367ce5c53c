"""Hardening of dgm_lib.flows: bad arguments and inputs raise errors naming the argument (issue
items 4, 6, 9, 13).

Empty batches are refused everywhere with "x is an empty batch" (the library's policy: a mean
over no sample would be NaN)."""

from __future__ import annotations

import pytest
import torch

from dgm_lib.flows import IAF, MAF, AffineCoupling, half_mask, make_maf, make_realnvp

torch.set_num_threads(1)
INF = float("inf")
F64 = torch.float64

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
    "item_06_float64_into_float32_realnvp": (
        lambda: make_realnvp(2, depth=1, hidden=(4,)).log_prob(torch.zeros(3, 2, dtype=F64)),
        TypeError,
        r"x has dtype torch.float64 but the model's parameters are torch.float32; convert the "
        r"model \(model.double\(\)\) or the input \(x.float\(\)\)",
    ),
    "item_06_float16_into_maf_layer": (
        lambda: MAF(2, (4,))(torch.zeros(3, 2, dtype=torch.float16)),
        TypeError,
        r"x has dtype torch.float16 .* \(model.half\(\)\)",
    ),
    "item_06_float64_into_float32_inverse": (
        lambda: make_maf(2, depth=1, hidden=(4,)).transform.inverse(torch.zeros(1, 2, dtype=F64)),
        TypeError,
        "z has dtype torch.float64",
    ),
    "item_06_float32_into_float64_flow": (
        lambda: make_realnvp(2, depth=1, hidden=(4,)).double().log_prob(torch.zeros(3, 2)),
        TypeError,
        r"convert the model \(model.float\(\)\) or the input \(x.double\(\)\)",
    ),
    "item_09_empty_batch_realnvp": (
        lambda: make_realnvp(2, depth=1, hidden=(4,)).log_prob(torch.zeros(0, 2)),
        ValueError,
        r"x is an empty batch, shape \(0, 2\); pass at least one sample",
    ),
    "item_09_empty_batch_maf_forward": (
        lambda: make_maf(2, depth=1, hidden=(4,))(torch.zeros(0, 2)),
        ValueError,
        "x is an empty batch",
    ),
    "item_13_inf_input_is_named_at_the_entry": (
        lambda: make_realnvp(2, depth=2, hidden=(4,)).log_prob(torch.tensor([[INF, 0.0]])),
        ValueError,
        r"^x contains inf \(1 of 2 entries\); allowed: finite values",
    ),
    "item_13_minus_inf_into_maf": (
        lambda: make_maf(2, depth=2, hidden=(4,)).log_prob(torch.tensor([[0.0, -INF]])),
        ValueError,
        r"^x contains inf",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call()


def test_item_06_matching_dtypes_still_work():
    flow = make_realnvp(2, depth=1, hidden=(4,)).double()
    assert flow.log_prob(torch.zeros(3, 2, dtype=F64)).dtype == F64
