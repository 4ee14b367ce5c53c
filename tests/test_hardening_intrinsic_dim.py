"""Hardening of dgm_lib.intrinsic_dim: wrong dtypes, results and callbacks raise errors naming the
argument (issue items 6, 8, 19)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm_lib.intrinsic_dim import (
    IntrinsicDimResult,
    SubspaceModule,
    measure_intrinsic_dimension,
)

torch.set_num_threads(1)


# item -> (bad call, error type, phrase)
BAD_CALLS = {
    "item_06_float64_into_float32_subspace": (
        lambda: SubspaceModule(nn.Linear(3, 2), d=2)(torch.zeros(4, 3, dtype=torch.float64)),
        TypeError,
        r"x has dtype torch.float64 but the model's parameters are torch.float32; .*x.float",
    ),
    "item_08_score_none_fails_after_the_first_d": (
        lambda: measure_intrinsic_dimension(_counted(lambda d: None), [1, 2], 1.0),
        TypeError,
        r"train_and_score\(1\) returned NoneType None; it must return the score",
    ),
    "item_08_score_nan": (
        lambda: measure_intrinsic_dimension(_counted(lambda d: float("nan")), [1, 2], 1.0),
        ValueError,
        r"the score at d = 1 is nan \(returned by train_and_score\(1\)\); scores must be finite",
    ),
    "item_08_score_tensor_of_many": (
        lambda: measure_intrinsic_dimension(_counted(lambda d: torch.ones(2)), [1, 2], 1.0),
        TypeError,
        r"train_and_score\(1\) returned Tensor",
    ),
    "item_19_from_empty_dict": (
        lambda: IntrinsicDimResult.from_dict({}),
        ValueError,
        r"data is not an IntrinsicDimResult.to_dict\(\) record: missing keys \['dims'",
    ),
    "item_19_from_non_dict": (
        lambda: IntrinsicDimResult.from_dict([1, 2]),
        TypeError,
        "data must be a dict from to_dict",
    ),
}

CALLS: list[int] = []


def _counted(fn):
    """fn, recording every d it is called with in CALLS."""

    def wrapped(d):
        CALLS.append(d)
        return fn(d)

    return wrapped


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    CALLS.clear()
    with pytest.raises(error, match=phrase):
        call()
    assert len(CALLS) <= 1  # a bad score stops the sweep at once


def test_item_19_round_trip_still_works():
    result = measure_intrinsic_dimension(lambda d: d / 4, [1, 2, 4], 1.0)
    assert IntrinsicDimResult.from_dict(result.to_dict()) == result
