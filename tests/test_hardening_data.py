"""Hardening of dgm_lib.data: bad arguments to the 2D targets and to load_mnist raise errors
naming the argument (issue items 5, 15, 16, 19)."""

from __future__ import annotations

import pytest
import torch

from dgm_lib.data.mnist import load_mnist, to_unit
from dgm_lib.data.toy2d import eight_gaussians, get_target, rings, two_moons

torch.set_num_threads(1)

# item -> (bad call, error type, phrase)
BAD_CALLS = {
    "item_05_integer_dtype": (
        lambda: get_target("two_moons").sample(3, dtype=torch.int64),
        TypeError,
        r"dtype must be a floating-point torch.dtype .*got torch.int64",
    ),
    "item_05_bool_dtype_checkerboard": (
        lambda: get_target("checkerboard").sample(3, dtype=torch.bool),
        TypeError,
        "dtype must be a floating-point torch.dtype",
    ),
    "item_05_complex_dtype": (
        lambda: get_target("eight_gaussians").sample(3, dtype=torch.complex64),
        TypeError,
        "dtype must be a floating-point torch.dtype",
    ),
    "item_05_string_dtype": (
        lambda: get_target("rings").sample(3, dtype="float32"),
        TypeError,
        "dtype must be a floating-point torch.dtype",
    ),
    "item_16_two_moons_zero_std": (
        lambda: two_moons(std=0),
        ValueError,
        "std must be a finite number > 0.0, got 0",
    ),
    "item_16_two_moons_negative_std": (
        lambda: two_moons(std=-0.1),
        ValueError,
        "std must be a finite number > 0.0, got -0.1",
    ),
    "item_16_eight_gaussians_zero_std": (
        lambda: eight_gaussians(std=0).log_prob(torch.zeros(1, 2)),
        ValueError,
        "std must be a finite number > 0.0",
    ),
    "item_16_eight_gaussians_inf_radius": (
        lambda: eight_gaussians(radius=float("inf")),
        ValueError,
        "radius must be a finite number",
    ),
    "item_16_rings_no_radii": (
        lambda: rings(radii=()),
        ValueError,
        r"radii must be a non-empty sequence of positive numbers, got \(\)",
    ),
    "item_16_rings_negative_radius": (
        lambda: rings(radii=(1.0, -1.0)),
        ValueError,
        r"radii\[1\] must be a finite number > 0.0",
    ),
    "item_16_rings_nan_std": (
        lambda: rings(std=float("nan")),
        ValueError,
        "std must be a finite number",
    ),
    "item_15_timeout_as_string": (
        lambda: load_mnist("test", "torchvision", timeout="3"),
        TypeError,
        "load_mnist: timeout must be a real number .*got str '3'",
    ),
    "item_15_timeout_nan": (
        lambda: load_mnist("test", "torchvision", timeout=float("nan")),
        ValueError,
        "load_mnist: timeout must be a positive number of seconds, got nan",
    ),
    "item_15_timeout_negative": (
        lambda: load_mnist("test", timeout=-1),
        ValueError,
        "load_mnist: timeout must be a positive number of seconds, got -1",
    ),
    "item_15_root_an_int": (
        lambda: load_mnist("test", "torchvision", root=123),
        TypeError,
        r"load_mnist: root must be a folder path \(str or os.PathLike\) or None, got int 123",
    ),
    "item_19_to_unit_of_a_string": (
        lambda: to_unit("x"),
        TypeError,
        "images must be a floating-point tensor, got a str",
    ),
    "item_19_to_unit_of_integers": (
        lambda: to_unit(torch.tensor([0, 255])),
        TypeError,
        "images must be a floating-point tensor, got a tensor of dtype torch.int64",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call()


def test_item_05_floating_dtypes_still_work():
    x = get_target("two_moons").sample(3, dtype=torch.float64)
    assert x.dtype == torch.float64 and x.shape == (3, 2)
