"""Hardening of dgm_lib.diffusion: wrong dtypes, empty batches and a network, schedule and image
shape that do not fit together raise errors naming the argument (issue items 6, 9, 17)."""

from __future__ import annotations

import pytest
import torch

from dgm_lib.diffusion import DDPM, ReportCNN, linear_schedule

torch.set_num_threads(1)


def _ddpm(T: int = 10) -> DDPM:
    return DDPM(ReportCNN((4,), T=T, image_size=8), linear_schedule(T=T), shape=(1, 8, 8))


# item -> (bad call, error type, phrase)
BAD_CALLS = {
    "item_06_float64_into_float32_ddpm": (
        lambda: _ddpm()(torch.rand(2, 1, 8, 8, dtype=torch.float64)),
        TypeError,
        r"x has dtype torch.float64 but the model's parameters are torch.float32",
    ),
    "item_09_empty_batch_ddpm_loss": (
        lambda: _ddpm()(torch.rand(0, 1, 8, 8)),
        ValueError,
        r"x is an empty batch, shape \(0, 1, 8, 8\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call()
