"""Files dgm_lib writes.

Checkpoints (.pt) and study results (.json, .npz), all through one atomic writer.

`write_atomic` writes a temporary file in the target's folder, fsyncs it and renames it over the
target, so a reader never sees a half-written file. Checkpoints are loaded with
`torch.load(weights_only=True)` and carry metadata (config, library and format version); a mismatch
or a corrupt file raises CheckpointError with a one-line explanation.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from dgm_lib import __version__

FORMAT_VERSION = 1
STALE_TEMP_SECONDS = 60.0  # a temp file older than this is a killed save's leftover


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, too large, or not what the caller expects."""


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically: a temp file in the same folder, fsync, then os.replace.

    Args:
        path: the target file; missing parent folders are created.
        data: the complete contents.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_atomic(folder / "a.txt", b"hello").read_bytes()
        b'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
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


def remove_stale_temp_files(path: str | os.PathLike, min_age: float = STALE_TEMP_SECONDS) -> int:
    """Delete the temp files `write_atomic` left beside `path` when a save was killed.

    Only `.NAME.*.tmp` files untouched for `min_age` seconds go (a save still running is younger).

    Returns:
        How many files were removed.
    """
    path, removed = Path(path), 0
    if not path.parent.is_dir():
        return 0
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime >= min_age:
                tmp.unlink()
                removed += 1
        except OSError:  # removed meanwhile, or not ours to delete
            continue
    return removed


def save_json(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write `record` as indented JSON (one space, trailing newline) with `write_atomic`."""
    return write_atomic(path, (json.dumps(record, indent=1) + "\n").encode())


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write `arrays` as a compressed NumPy .npz file with `write_atomic`."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return write_atomic(path, buffer.getvalue())


def _check_config(value: Any, key: str = "") -> None:
    """TypeError unless `value` is made of dict (str keys), list, tuple, str, number, bool, None."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                where = key or "config"
                raise TypeError(
                    f"config keys must be str, got {type(k).__name__} {k!r} in {where!r}"
                )
            _check_config(v, f"{key}.{k}" if key else k)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_config(v, f"{key}[{i}]")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        allowed = "a str, number, bool, None, list or dict"
        raise TypeError(
            f"config value {key!r} must be {allowed}, got {type(value).__name__} {value!r}"
        )
    elif isinstance(value, float) and math.isnan(value):
        raise ValueError(
            f"config value {key!r} is NaN; NaN never equals itself, so a checkpoint with it could "
            "never be loaded again"
        )


def check_config(config: Any, name: str = "config") -> dict:
    """`config` if it is a dict a checkpoint can store and compare, else TypeError/ValueError.

    Allowed: str keys; str, number (not NaN), bool, None, list, tuple and dict values.

    Example:
        >>> check_config({"lr": float("nan")})
        Traceback (most recent call last):
        ...
        ValueError: config value 'lr' is NaN; NaN never equals itself, so a checkpoint with it ...
    """
    if not isinstance(config, dict):
        raise TypeError(f"{name} must be a dict, got {type(config).__name__}")
    _check_config(config)
    return config


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


def config_mismatch(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """One phrase describing the first key where two configs differ, or None when they are equal."""
    return _config_mismatch(found, expected)


def state_dict_mismatch(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """One phrase naming the first tensor whose name or shape differs between two state_dicts.

    Example:
        >>> state_dict_mismatch({"w": torch.zeros(2)}, {"w": torch.zeros(3)})
        "'w' has shape (2,) in the file, the model has (3,)"
    """
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    if missing or extra:
        parts = [
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {extra[:3]}" if extra else "",
        ]
        return "parameter names differ: " + ", ".join(p for p in parts if p)
    for key, value in expected.items():
        shape = tuple(getattr(found[key], "shape", ()))
        if shape != tuple(getattr(value, "shape", ())):
            return f"{key!r} has shape {shape} in the file, the model has {tuple(value.shape)}"
    return None


def _digest(value: Any, h: Any) -> None:
    """Feed a canonical byte form of `value` (tensors by dtype, shape and bytes) into hash `h`."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        h.update(f"D{len(value)}:".encode())
        for k, v in value.items():
            _digest(k, h)
            _digest(v, h)
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__[0]}{len(value)}:".encode())
        for v in value:
            _digest(v, h)
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())


def content_hash(config: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    """The SHA-256 of a checkpoint's config and state (tensor bytes included), as hex."""
    h = hashlib.sha256()
    _digest({"config": config, "state": state}, h)
    return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    """The first line of an exception message, shortened."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def save_checkpoint(
    path: str | os.PathLike, state: dict, config: dict, max_bytes: int | None = None
) -> Path:
    """Write {state, config, library version, format version} to `path` with `write_atomic`.

    The bytes are checked to load back with `torch.load(weights_only=True)` before anything is
    written, so a checkpoint on disk is always complete and safe to load.

    Args:
        path: the .pt file.
        state: tensors and plain values (a model's state_dict, an optimizer's, a history).
        config: plain values (str, numbers, bool, None, lists, dicts) that determine the state.
        max_bytes: reject a larger file with CheckpointError.

    Returns:
        The path written.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    check_config(config)
    record = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "config": config,
        "state": state,
        "sha256": content_hash(config, state),
    }
    buffer = io.BytesIO()
    torch.save(record, buffer)
    data = buffer.getvalue()
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:
        raise TypeError(
            f"state for {path} holds objects that weights_only loading refuses: {_one_line(exc)}"
        ) from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise CheckpointError(
            f"checkpoint {path}: {len(data):,} bytes exceeds the budget of {max_bytes:,} bytes"
        )
    return write_atomic(path, data)


def load_checkpoint(
    path: str | os.PathLike,
    expected_config: dict | None = None,
    map_location: str | torch.device | None = None,
    *,
    require: Sequence[str] = (),
) -> dict:
    """Load a checkpoint written by `save_checkpoint` with `torch.load(weights_only=True)`.

    A missing, corrupt or truncated file, a content hash that does not match (files written with
    one), non-finite model weights, a malformed record, another format version, another library
    release (major.minor), or a config different from `expected_config` raises CheckpointError
    with a one-line message naming the file and the mismatch. Stale temp files of killed saves
    beside the file are removed.

    Args:
        path: the .pt file.
        expected_config: the config the file must hold, or None to accept any.
        map_location: as in torch.load (a device string is checked first).
        require: keys the state must hold (e.g. "model"), else CheckpointError.

    Returns:
        The record {"state", "config", "library_version", "format_version"}.
    """
    path = Path(path)
    _check_map_location(map_location)
    remove_stale_temp_files(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path}: unreadable (corrupt or truncated?): {_one_line(exc)}"
        ) from exc
    keys = {"format_version", "library_version", "config", "state"}
    if not isinstance(record, dict) or not keys <= record.keys():
        raise CheckpointError(
            f"checkpoint {path}: not a dgm_lib checkpoint (no format/version metadata)"
        )
    if record["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {record['format_version']!r}, "
            f"this dgm_lib reads {FORMAT_VERSION}"
        )
    if str(record["library_version"]).split(".")[:2] != __version__.split(".")[:2]:
        raise CheckpointError(
            f"checkpoint {path}: written by dgm_lib {record['library_version']}, incompatible with "
            f"{__version__} (regenerate it)"
        )
    _check_record(path, record, require)
    if expected_config is not None:
        mismatch = _config_mismatch(record["config"], expected_config)
        if mismatch:
            raise CheckpointError(f"checkpoint {path}: config mismatch: {mismatch}")
    return record


def _check_map_location(map_location: Any) -> None:
    """ValueError for a device string torch does not know (not the file's fault)."""
    if isinstance(map_location, str):
        try:
            torch.device(map_location)
        except RuntimeError as exc:
            raise ValueError(
                f"map_location must name a device such as 'cpu' or 'cuda:0', got "
                f"{map_location!r}: {_one_line(exc)}"
            ) from exc


def _on_meta(value: Any) -> bool:
    """Whether a state holds tensors without data (map_location="meta"): nothing to verify."""
    if isinstance(value, torch.Tensor):
        return value.is_meta
    if isinstance(value, Mapping):
        return any(_on_meta(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_on_meta(v) for v in value)
    return False


def _check_record(path: Path, record: dict, require: Sequence[str]) -> None:
    """CheckpointError for a malformed record, a content hash that does not match (checkpoints
    written with one), or non-finite model weights."""
    if not isinstance(record["config"], dict) or not isinstance(record["state"], dict):
        raise CheckpointError(f"checkpoint {path}: malformed, config and state must be dicts")
    state = record["state"]
    missing = [key for key in require if key not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path}: malformed, its state has no {missing} (keys: {sorted(state)})"
        )
    stored = record.get("sha256")
    if (
        stored is not None
        and not _on_meta(state)
        and stored != content_hash(record["config"], state)
    ):
        raise CheckpointError(
            f"checkpoint {path}: content hash mismatch, the file is corrupt (a flipped bit, a "
            "partial copy); regenerate or re-download it"
        )
    model = state.get("model")
    if model is None:
        return
    if not isinstance(model, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in model.values()
    ):
        raise CheckpointError(f"checkpoint {path}: malformed, 'model' must map names to tensors")
    for name, tensor in model.items():
        if tensor.is_floating_point() and not tensor.is_meta and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"checkpoint {path}: weight {name!r} holds NaN or inf; the file records a "
                "diverged model (retrain it)"
            )
