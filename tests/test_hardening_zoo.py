"""Hardening of dgm_lib.zoo: configs are validated when registered, directories and devices when
loading (issue items 8, 18)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm_lib import zoo

torch.set_num_threads(1)
TRAINED: list[str] = []


def _train(model):
    TRAINED.append("trained")


def _entry(config):
    return zoo.Entry("hardening_probe", lambda: nn.Linear(1, 1), _train, config)


# item -> (bad call, error type, phrase)
BAD_CALLS = {
    "item_08_register_config_with_a_class": (
        lambda: zoo.register(_entry({"act": nn.ReLU})),
        TypeError,
        "config value 'act' must be a str, number, bool, None, list or dict",
    ),
    "item_08_register_config_with_a_tensor": (
        lambda: zoo.register(_entry({"w": torch.zeros(2)})),
        TypeError,
        "config value 'w' must be",
    ),
    "item_08_register_config_with_nan": (
        lambda: zoo.register(_entry({"lr": float("nan")})),
        ValueError,
        "config value 'lr' is NaN",
    ),
    "item_08_register_config_not_a_dict": (
        lambda: zoo.register(_entry("lr=0.1")),
        TypeError,
        "config must be a dict, got str",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    TRAINED.clear()
    with pytest.raises(error, match=phrase):
        call()
    assert not TRAINED and "hardening_probe" not in zoo._REGISTRY
