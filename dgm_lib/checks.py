"""Argument validators shared by every module: each raises TypeError/ValueError naming the argument.

A message says the argument's name, the value it got and what is allowed, so that a wrong call fails
at once with a sentence the reader can act on (never a NaN later, never a shape error deep inside
torch).
"""

from __future__ import annotations

import itertools
import math
from numbers import Real
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn


def check_int(value: Any, name: str, low: int = 1) -> int:
    """`value` if it is an int >= `low` (bool excluded), else TypeError/ValueError naming `name`.

    Args:
        value: the argument to check.
        name: its name, for the message.
        low: the smallest allowed value (1: a positive int).

    Returns:
        `value`, unchanged.

    Example:
        >>> check_int(3, "steps")
        3
        >>> check_int(0, "steps")
        Traceback (most recent call last):
        ...
        ValueError: steps must be a positive int, got 0
    """
    allowed = "a positive int" if low == 1 else f"an int >= {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {allowed}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def check_positive_int(value: Any, name: str) -> int:
    """`value` if it is a positive int, else TypeError/ValueError naming `name`.

    `value` if it is a positive int, else TypeError/ValueError naming `name` (check_int with low =
    1).

    Example:
        >>> check_positive_int(True, "n")
        Traceback (most recent call last):
        ...
        TypeError: n must be a positive int, got bool True
    """
    return check_int(value, name, 1)


def check_sizes(values: Sequence[int], name: str) -> tuple[int, ...]:
    """`values` as a tuple of positive ints (layer widths, an event shape).

    `values` as a tuple of positive ints (layer widths, an event shape), else TypeError/ValueError.

    Example:
        >>> check_sizes([64, 64], "hidden")
        (64, 64)
    """
    if isinstance(values, int) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise TypeError(f"{name} must be a tuple of positive ints, got {values!r}")
    for k, v in enumerate(values):
        check_positive_int(v, f"{name}[{k}]")
    return tuple(values)


def check_number(value: Any, name: str, low: float = 0.0, *, inclusive: bool = False) -> float:
    """`value` as a float if it is a finite real number above `low`.

    `value` as a float if it is a finite real number > `low` (>= with `inclusive`), else ValueError.

    Example:
        >>> check_number(0.5, "noise_scale")
        0.5
        >>> check_number(0, "sigma_scale", inclusive=True)
        0.0
    """
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (value == low and not inclusive):
        bound = f">= {low}" if inclusive else f"> {low}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_real(
    value: Any, name: str, ok: Callable[[float], bool], allowed: str, owner: str = ""
) -> float:
    """`value` as a float if it is a finite real number with ok(value), else TypeError/ValueError.

    Args:
        value: the argument.
        name: its name.
        ok: the condition it must meet.
        allowed: the condition in words, for the message.
        owner: the class or function it belongs to, prefixed to the message.

    Example:
        >>> check_real(0.9, "alpha", lambda v: 0 <= v < 1, "in [0, 1)")
        0.9
    """
    prefix = f"{owner}: " if owner else ""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{prefix}{name} must be a real number ({allowed}), got {type(value).__name__} "
            f"{value!r}"
        )
    if not math.isfinite(value) or not ok(float(value)):
        raise ValueError(f"{prefix}{name} must be {allowed}, got {value!r}")
    return float(value)


def check_float_tensor(x: Any, name: str) -> None:
    """TypeError unless `x` is a floating-point tensor; ValueError if it holds NaN."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        kind = f"tensor of dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor, got a {kind}")
    _check_no_nan(x, name)


def check_finite_tensor(x: Any, name: str) -> None:
    """TypeError unless `x` is a floating-point tensor; ValueError if it holds NaN or inf.

    Example:
        >>> check_finite_tensor(torch.tensor([0.0, float("inf")]), "mu")
        Traceback (most recent call last):
        ...
        ValueError: mu contains inf (1 of 2 entries); allowed: finite values
    """
    check_float_tensor(x, name)
    _check_finite(x, name)


def _check_no_nan(x: Tensor, name: str) -> None:
    if torch.isnan(x).any():
        count = int(torch.isnan(x).sum())
        raise ValueError(f"{name} contains NaN ({count} of {x.numel()} entries); allowed: no NaN")


def _check_finite(x: Tensor, name: str) -> None:
    """ValueError naming NaN or inf entries of `x` (one device sync when all are finite)."""
    if torch.isfinite(x).all():
        return
    _check_no_nan(x, name)
    count = int(torch.isinf(x).sum())
    raise ValueError(
        f"{name} contains inf ({count} of {x.numel()} entries); allowed: finite values"
    )


def check_tensor(x: Any, name: str) -> None:
    """TypeError unless `x` is a floating-point tensor (batch, *event); ValueError if the batch is
    empty or it holds NaN or inf.

    Example:
        >>> check_tensor(torch.zeros(3), "x")
        Traceback (most recent call last):
        ...
        ValueError: x must have shape (batch, *event) with at least 2 dimensions, got (3,)
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        kind = (
            f"{type(x).__name__} of dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        )
        raise TypeError(
            f"{name} must be a floating-point tensor of shape (batch, *event), got a {kind}"
        )
    if x.dim() < 2:
        raise ValueError(
            f"{name} must have shape (batch, *event) with at least 2 dimensions, got "
            f"{tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(
            f"{name} is an empty batch, shape {tuple(x.shape)}; pass at least one sample"
        )
    _check_finite(x, name)


def check_vector(x: Any, name: str, m: int) -> None:
    """check_tensor, and the shape must be (batch, m)."""
    check_tensor(x, name)
    if x.dim() != 2 or x.shape[1] != m:
        raise ValueError(f"{name} must have shape (batch, {m}), got {tuple(x.shape)}")


def check_features(x: Any, name: str, features: int) -> None:
    """check_tensor, and dim 1 (features of (B, m), channels of (B, C, H, W)) must be `features`."""
    check_tensor(x, name)
    if x.shape[1] != features:
        raise ValueError(
            f"{name} must have {features} features/channels in dim 1, got shape {tuple(x.shape)}"
        )


def check_integer_valued(y: Any, name: str) -> None:
    """TypeError unless `y` is a real tensor; ValueError for non-finite or non-integer entries."""
    if not isinstance(y, Tensor) or y.dtype == torch.bool or y.is_complex():
        kind = f"tensor of dtype {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
        raise TypeError(f"{name} must be a real tensor of integer values, got a {kind}")
    if y.is_floating_point():
        bad = ~torch.isfinite(y)
        if bad.any():
            raise ValueError(
                f"{name} must be finite, got {int(bad.sum())} non-finite entries (NaN or inf)"
            )
        frac = y != torch.round(y)
        if frac.any():
            example = y[frac].flatten()[0].item()
            raise ValueError(
                f"{name} must hold integer values, got {int(frac.sum())} non-integer entries, "
                f"e.g. {example}"
            )


def check_in_range(x: Tensor, name: str, low: float, high: float, why: str = "") -> None:
    """ValueError unless every entry of the tensor `x` lies in [low, high] (one device sync).

    Example:
        >>> check_in_range(torch.tensor([0.0, 255.0]), "x", 0.0, 1.0)
        Traceback (most recent call last):
        ...
        ValueError: x must lie in [0.0, 1.0], got values in [0, 255]
    """
    if x.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if lo < low or hi > high or math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{name} must lie in [{low}, {high}]{why}, got values in [{lo:g}, {hi:g}]")


def check_bound(value: Any, name: str = "bound") -> float:
    """`value` as a float if it is a finite positive real number (a soft-clamp bound), else
    TypeError/ValueError.

    Example:
        >>> check_bound(float("inf"))
        Traceback (most recent call last):
        ...
        ValueError: bound must be positive and finite, got inf
    """
    return check_real(value, name, lambda v: v > 0, "positive and finite")


def check_float_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """`dtype` if it is a floating-point torch.dtype, else TypeError naming `name`.

    Example:
        >>> check_float_dtype(torch.int64)
        Traceback (most recent call last):
        ...
        TypeError: dtype must be a floating-point torch.dtype (e.g. torch.float32), got torch.int64
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point torch.dtype (e.g. torch.float32), got {dtype!r}"
        )
    return dtype


def check_dtype_matches(x: Tensor, module: nn.Module, name: str = "x") -> None:
    """TypeError unless the floating tensor `x` has the dtype of the module's parameters.

    A module without floating parameters or buffers accepts any dtype. No device sync.

    Example:
        >>> check_dtype_matches(torch.zeros(1, 2, dtype=torch.float64), nn.Linear(2, 2))
        Traceback (most recent call last):
        ...
        TypeError: x has dtype torch.float64 but the model's parameters are torch.float32; ...
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        return
    tensors = itertools.chain(module.parameters(), module.buffers())
    own = next((t for t in tensors if t.is_floating_point()), None)
    if own is None or own.dtype == x.dtype:
        return
    methods = {torch.float64: "double", torch.float32: "float", torch.float16: "half"}
    for_model = f"model.{methods[x.dtype]}()" if x.dtype in methods else f"model.to({x.dtype})"
    for_x = f"{name}.{methods[own.dtype]}()" if own.dtype in methods else f"{name}.to({own.dtype})"
    raise TypeError(
        f"{name} has dtype {x.dtype} but the model's parameters are {own.dtype}; convert the "
        f"model ({for_model}) or the input ({for_x})"
    )
