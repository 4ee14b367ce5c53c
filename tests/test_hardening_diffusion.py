"""Hardening of dgm_lib.diffusion: wrong dtypes, empty batches and a network, schedule and image
shape that do not fit together raise errors naming the argument (issue items 6, 9, 17)."""

from __future__ import annotations

import pytest
import torch

from dgm_lib.diffusion import DDPM, ReportCNN, UNet, linear_schedule

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
    "item_17_net_T_differs_from_schedule_T": (
        lambda: DDPM(ReportCNN((4,), T=1000, image_size=8), linear_schedule(T=10), (1, 8, 8)),
        ValueError,
        r"net was built for T = 1000 timesteps but the schedule has T = 10",
    ),
    "item_17_unet_T_differs": (
        lambda: DDPM(UNet((8, 8), T=20), linear_schedule(T=10), (1, 8, 8)),
        ValueError,
        r"net was built for T = 20",
    ),
    "item_17_image_size_differs_from_shape": (
        lambda: DDPM(ReportCNN((4,), T=10, image_size=8), linear_schedule(T=10)),
        ValueError,
        r"net expects 8 x 8 images but shape is \(1, 28, 28\)",
    ),
    "item_17_channels_differ_from_shape": (
        lambda: DDPM(ReportCNN((4,), T=10, image_size=8), linear_schedule(T=10), (3, 8, 8)),
        ValueError,
        r"net expects 1 channel\(s\) but shape is \(3, 8, 8\)",
    ),
    "item_17_t_beyond_T": (
        lambda: ReportCNN((4,), T=10, image_size=8)(torch.rand(2, 1, 8, 8), torch.tensor([20, 30])),
        ValueError,
        r"t must lie in 0..T = 0..10 \(the network's T\), got values in 20..30",
    ),
    "item_17_negative_t": (
        lambda: ReportCNN((4,), T=10, image_size=8)(torch.rand(1, 1, 8, 8), torch.tensor([-1])),
        ValueError,
        r"t must lie in 0..T",
    ),
    "item_17_wrong_image_size": (
        lambda: ReportCNN((4,), T=10, image_size=8)(torch.rand(2, 1, 28, 28), torch.tensor([1, 2])),
        ValueError,
        r"x must have shape \(B, 1, 8, 8\) \(ReportCNN\(image_size=8\).*got \(2, 1, 28, 28\)",
    ),
    "item_17_wrong_image_size_through_ddpm": (
        lambda: _ddpm()(torch.rand(2, 1, 28, 28)),
        ValueError,
        r"x must have shape \(B, 1, 8, 8\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call()


def test_item_17_matching_net_schedule_and_shape_still_work():
    loss = _ddpm()(torch.rand(2, 1, 8, 8) * 2 - 1)["loss"]
    assert torch.isfinite(loss)
