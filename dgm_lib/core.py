"""Device, seeding and RNG state, quick/full budgets: what every chapter and model starts from."""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

T = TypeVar("T")


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU.

    Returns:
        A torch.device; chapters put their models and data on it.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices).

    With `deterministic`, ask for deterministic kernels.

    Deterministic mode calls `torch.use_deterministic_algorithms(True, warn_only=True)` (an op
    without a deterministic kernel warns instead of failing), disables cuDNN autotuning and sets
    `CUBLAS_WORKSPACE_CONFIG` if unset. On CPU a seeded run is then bit-for-bit repeatable.

    Args:
        seed: an int in [0, 2**32).
        deterministic: also switch torch to deterministic algorithms.

    Example:
        >>> seed_everything(0)
        >>> a = torch.rand(2)
        >>> seed_everything(0)
        >>> torch.equal(a, torch.rand(2))
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))  # also seeds every CUDA / MPS device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def get_rng_state(generator: torch.Generator | None = None) -> dict:
    """The torch (CPU, CUDA), Python, NumPy and `generator` RNG states, as weights_only-safe types.

    Args:
        generator: a torch.Generator whose state is kept too, or None.

    Returns:
        A dict for `set_rng_state`.
    """
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state() if generator is not None else None,
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore the states returned by `get_rng_state` (and `generator`'s, if given).

    Example:
        >>> state = get_rng_state()
        >>> a = torch.rand(2)
        >>> set_rng_state(state)
        >>> torch.equal(a, torch.rand(2))
        True
    """
    keys = ("torch", "cuda", "generator", "python", "numpy")
    if not isinstance(state, dict) or not set(keys) <= state.keys():
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"state must be a dict from get_rng_state() with keys {keys}, got {got}")
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None:
        if state["generator"] is None:
            raise ValueError("generator given, but the saved RNG state holds no generator state")
        generator.set_state(state["generator"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))


def budget(quick: T, full: T) -> T:
    """`full` when `DGM_FULL=1` or a GPU (CUDA or MPS) is present, else `quick`.

    `DGM_FULL=0` forces quick.

    Chapters use it for training lengths: the committed outputs are the CPU quick-mode run.

    Example:
        >>> import os
        >>> os.environ["DGM_FULL"] = "0"
        >>> budget(quick=200, full=20_000)
        200
        >>> del os.environ["DGM_FULL"]
    """
    flag = os.environ.get("DGM_FULL", "").strip()
    if flag not in ("", "0", "1"):
        raise ValueError(
            f"environment variable DGM_FULL must be '0' or '1' (or unset), got {flag!r}"
        )
    if flag:
        return full if flag == "1" else quick
    return full if get_device().type != "cpu" else quick


def _first_tensor(module: nn.Module, floating: bool = False) -> Tensor | None:
    """The module's first parameter or buffer (the first floating-point one with `floating`)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point() or not floating:
            return tensor
    return None


def device_of(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU if it has none).

    Example:
        >>> device_of(nn.Linear(2, 2))
        device(type='cpu')
    """
    tensor = _first_tensor(module)
    return tensor.device if tensor is not None else torch.device("cpu")


def dtype_of(module: nn.Module) -> torch.dtype:
    """The dtype of the module's first floating-point parameter or buffer (else the default dtype).

    Example:
        >>> dtype_of(nn.Linear(2, 2).double())
        torch.float64
    """
    tensor = _first_tensor(module, floating=True)
    return tensor.dtype if tensor is not None else torch.get_default_dtype()
