"""Device, seeding, quick/full budgets and safe checkpoints shared by every chapter and model."""

from __future__ import annotations

import io
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Mapping, TypeVar

import numpy as np
import torch

from dgm_lib import __version__

FORMAT_VERSION = 1
T = TypeVar("T")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, too large, or does not match what the caller expects."""


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices); with `deterministic`, ask torch for deterministic kernels.

    Deterministic mode calls `torch.use_deterministic_algorithms(True, warn_only=True)` (an op without a
    deterministic kernel warns instead of failing), disables cuDNN autotuning and sets
    `CUBLAS_WORKSPACE_CONFIG` if unset. On CPU a seeded run is then bit-for-bit repeatable.
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
    """The states of the torch (CPU and CUDA), Python, NumPy RNGs and of `generator`, as weights_only-safe types."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state() if generator is not None else None,
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore the states returned by `get_rng_state` (and `generator`'s, if given)."""
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
    """`full` when `DGM_FULL=1` or a GPU (CUDA or MPS) is present, else `quick`; `DGM_FULL=0` forces `quick`.

    Chapters use it for training lengths: the committed outputs are the CPU quick-mode run.
    """
    flag = os.environ.get("DGM_FULL", "").strip()
    if flag not in ("", "0", "1"):
        raise ValueError(f"environment variable DGM_FULL must be '0' or '1' (or unset), got {flag!r}")
    if flag:
        return full if flag == "1" else quick
    return full if get_device().type != "cpu" else quick


def _check_config(value: Any, key: str = "") -> None:
    """Raise TypeError unless `value` is built from dict (str keys), list, tuple, str, int, float, bool, None."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"config keys must be str, got {type(k).__name__} {k!r} in {key or 'config'!r}")
            _check_config(v, f"{key}.{k}" if key else k)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_config(v, f"{key}[{i}]")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        allowed = "a str, number, bool, None, list or dict"
        raise TypeError(f"config value {key!r} must be {allowed}, got {type(value).__name__}")


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b": value}, with tuples compared as lists."""
    flat: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, Mapping):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return flat


def _config_mismatch(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """One phrase describing the first differing key (and how many more), or None when equal."""
    a, b = _flatten(found), _flatten(expected)
    diffs = []
    for key in sorted(a.keys() | b.keys()):
        if key not in a:
            diffs.append(f"{key!r} is missing in the file, expected {b[key]!r}")
        elif key not in b:
            diffs.append(f"{key!r} is {a[key]!r} in the file but absent from the expected config")
        elif a[key] != b[key]:
            diffs.append(f"{key!r} is {a[key]!r} in the file, expected {b[key]!r}")
    if not diffs:
        return None
    more = f" (and {len(diffs) - 1} more key(s) differ)" if len(diffs) > 1 else ""
    return diffs[0] + more


def _one_line(exc: BaseException) -> str:
    """The first line of an exception message, shortened."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def save_checkpoint(path: str | os.PathLike, state: dict, config: dict, max_bytes: int | None = None) -> Path:
    """Write {state, config, library version, format version} to `path` atomically (temp file + os.replace).

    The bytes are checked to load back with `torch.load(weights_only=True)` before anything is written, so a
    checkpoint on disk is always complete and safe to load; `max_bytes` rejects oversized files (CheckpointError).
    """
    path = Path(path)
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    _check_config(config)
    record = {"format_version": FORMAT_VERSION, "library_version": __version__, "config": config, "state": state}
    buffer = io.BytesIO()
    torch.save(record, buffer)
    data = buffer.getvalue()
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:
        raise TypeError(f"state for {path} holds objects that weights_only loading refuses: {_one_line(exc)}") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise CheckpointError(f"checkpoint {path}: {len(data):,} bytes exceeds the budget of {max_bytes:,} bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike,
    expected_config: dict | None = None,
    map_location: str | torch.device | None = None,
) -> dict:
    """Load a checkpoint written by `save_checkpoint` with `torch.load(weights_only=True)`.

    Returns the record {"state", "config", "library_version", "format_version"}. A missing, corrupt or
    truncated file, another format version, another library release (major.minor), or a config different
    from `expected_config` raises CheckpointError with a one-line message naming the file and the mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable (corrupt or truncated?): {_one_line(exc)}") from exc
    if not isinstance(record, dict) or not {"format_version", "library_version", "config", "state"} <= record.keys():
        raise CheckpointError(f"checkpoint {path}: not a dgm_lib checkpoint (no format/version metadata)")
    if record["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {record['format_version']!r}, this dgm_lib reads {FORMAT_VERSION}"
        )
    if str(record["library_version"]).split(".")[:2] != __version__.split(".")[:2]:
        raise CheckpointError(
            f"checkpoint {path}: written by dgm_lib {record['library_version']}, incompatible with {__version__} "
            "(regenerate it)"
        )
    if expected_config is not None:
        mismatch = _config_mismatch(record["config"], expected_config)
        if mismatch:
            raise CheckpointError(f"checkpoint {path}: config mismatch: {mismatch}")
    return record


def check_positive_int(value: int, name: str) -> int:
    """`value` if it is a positive int, else TypeError/ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean of a sample and its standard error std / sqrt(n), computed in float64 on the CPU, as Python floats."""
    values = values.detach().double().cpu()
    return values.mean().item(), values.std().item() / values.numel() ** 0.5
