"""Hardening of dgm_lib.intrinsic_dim: wrong dtypes, results and callbacks raise errors naming the
argument (issue items 6, 8, 19)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm_lib.intrinsic_dim import SubspaceModule

torch.set_num_threads(1)


# item -> (bad call, error type, phrase)
BAD_CALLS = {
    "item_06_float64_into_float32_subspace": (
        lambda: SubspaceModule(nn.Linear(3, 2), d=2)(torch.zeros(4, 3, dtype=torch.float64)),
        TypeError,
        r"x has dtype torch.float64 but the model's parameters are torch.float32; .*x.float",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call()
