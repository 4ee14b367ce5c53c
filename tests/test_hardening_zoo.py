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
    return None


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


@pytest.fixture
def probe():
    """A registered config whose training only records that it ran."""
    entry = zoo.register(_entry({}))
    TRAINED.clear()
    yield entry
    zoo._REGISTRY.pop(entry.name, None)


# item -> (bad call given tmp_path and monkeypatch, error type, phrase)
LOAD_CALLS = {
    "item_18_mistyped_directory": (
        lambda tmp, mp: zoo.load("hardening_probe", directory=tmp / "chekpoints", device="cpu"),
        zoo.CheckpointError,
        r"checkpoint folder .*chekpoints does not exist \(from directory=\)",
    ),
    "item_18_mistyped_environment_variable": (
        lambda tmp, mp: (
            mp.setenv("DGM_CHECKPOINT_DIR", str(tmp / "typo")),
            zoo.load("hardening_probe", device="cpu"),
        ),
        zoo.CheckpointError,
        r"typo does not exist \(from DGM_CHECKPOINT_DIR\)",
    ),
    "item_18_cuda_without_gpu": (
        lambda tmp, mp: (
            mp.setattr(torch.cuda, "is_available", lambda: False),
            zoo.load("hardening_probe", directory=tmp, device="cuda"),
        ),
        ValueError,
        r"device='cuda' but this machine has no cuda device; pass device='cpu'",
    ),
    "item_18_nonsense_device": (
        lambda tmp, mp: zoo.load("hardening_probe", directory=tmp, device="gpu0"),
        ValueError,
        r"device must be a device such as 'cpu' or 'cuda', got 'gpu0'",
    ),
    "item_18_train_on_cuda_without_gpu": (
        lambda tmp, mp: (
            mp.setattr(torch.cuda, "is_available", lambda: False),
            zoo.train("hardening_probe", directory=tmp, device="cuda:0"),
        ),
        ValueError,
        r"device='cuda:0' but this machine has no cuda device",
    ),
}


@pytest.mark.parametrize("case", list(LOAD_CALLS))
def test_bad_load_raises_before_any_training(case, probe, tmp_path, monkeypatch):
    call, error, phrase = LOAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call(tmp_path, monkeypatch)
    assert not TRAINED
