"""dgm_lib.core: device, seeding, RNG state, budget, a module's device and dtype."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from dgm_lib import core
from dgm_lib.core import budget, device_of, dtype_of, get_device, seed_everything


def test_get_device_is_cpu_here():
    assert get_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_seed_everything_repeats_all_generators():
    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])
    assert torch.are_deterministic_algorithms_enabled()


def test_rng_state_round_trip():
    generator = torch.Generator().manual_seed(1)
    state = core.get_rng_state(generator)
    first = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=generator))
    core.set_rng_state(state, generator)
    second = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=generator))
    assert (
        first[:2] == second[:2]
        and torch.equal(first[2], second[2])
        and torch.equal(first[3], second[3])
    )
    with pytest.raises(ValueError, match="no generator state"):
        core.set_rng_state(core.get_rng_state(), generator)


@pytest.mark.parametrize(
    "seed, error", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_seed_everything_rejects_bad_seeds(seed, error):
    with pytest.raises(error, match="seed"):
        seed_everything(seed)


def test_budget_follows_dgm_full(monkeypatch):
    monkeypatch.delenv("DGM_FULL", raising=False)
    assert budget(quick=10, full=1000) == (10 if get_device().type == "cpu" else 1000)
    monkeypatch.setenv("DGM_FULL", "1")
    assert budget(quick=10, full=1000) == 1000
    monkeypatch.setenv("DGM_FULL", "0")
    assert budget(quick=10, full=1000) == 10
    monkeypatch.setenv("DGM_FULL", "yes")
    with pytest.raises(ValueError, match="DGM_FULL"):
        budget(quick=10, full=1000)


def test_device_and_dtype_of_a_module():
    model = nn.Sequential(nn.Linear(2, 2)).double()
    assert device_of(model) == torch.device("cpu") and dtype_of(model) == torch.float64
    assert (
        device_of(nn.ReLU()) == torch.device("cpu")
        and dtype_of(nn.ReLU()) == torch.get_default_dtype()
    )
    with_buffer = nn.BatchNorm1d(2, affine=False)
    assert (
        dtype_of(with_buffer) == torch.float32
    )  # the first floating-point buffer, not num_batches_tracked
