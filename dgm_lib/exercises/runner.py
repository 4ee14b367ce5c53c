"""`check(name, fn)`.

Run an exercise's registered checks on a student's function and print a friendly verdict.
"""

from __future__ import annotations

import math
from numbers import Number
from typing import Any, Callable

import torch

from .registry import checks_for

NOT_IMPLEMENTED = "not implemented yet: replace the `raise NotImplementedError` with your code"


def check(name: str, fn: Callable) -> bool:
    """Run every check of exercise `name` on `fn`, print one pass/fail line with a hint, and return
    whether all passed."""
    checks = checks_for(name)
    if not callable(fn):
        raise TypeError(
            f"fn={fn!r} is a {type(fn).__name__}; pass the function itself, e.g. check({name!r}, "
            "my_function)"
        )
    for i, chk in enumerate(checks, start=1):
        case = chk.make_case()
        where = f"check {i}/{len(checks)} ({chk.description})"
        try:
            got = fn(*case.args, **case.kwargs)
        except NotImplementedError:
            return _fail(f"{name}: {NOT_IMPLEMENTED}.", chk.hint)
        except Exception as error:  # a student's bug: report it, never a traceback
            return _fail(f"{name}: {where} raised {_error_text(error)}.", chk.hint)
        problem = compare(got, case.expected, rtol=case.rtol, atol=case.atol)
        if problem is not None:
            return _fail(f"{name}: {where} failed: {problem}.", chk.hint)
    print(f"✅ {name}: all {len(checks)} checks passed")
    return True


def compare(got: Any, expected: Any, rtol: float, atol: float, what: str = "output") -> str | None:
    """None if `got` matches `expected` (type, shape, dtype, finiteness, values), else what is
    wrong."""
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{what} should be a tuple of {len(expected)} values, got {_describe(got)}"
        for k, (g, e) in enumerate(zip(got, expected)):
            problem = compare(g, e, rtol, atol, what=f"{what}[{k}]")
            if problem is not None:
                return problem
        return None
    if isinstance(expected, torch.Tensor):
        return _compare_tensor(got, expected, rtol, atol, what)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, Number):
        return f"{what} should be a number, got {_describe(got)}"
    if not math.isfinite(got):
        return f"{what} is {got}: NaN or inf"
    if not math.isclose(got, expected, rel_tol=rtol, abs_tol=atol):
        return f"{what} has the wrong value: expected {expected:.6g}, got {got:.6g}"
    return None


def _compare_tensor(
    got: Any, expected: torch.Tensor, rtol: float, atol: float, what: str
) -> str | None:
    """The tensor part of `compare`."""
    if not isinstance(got, torch.Tensor):
        return f"{what} should be a torch.Tensor, got {_describe(got)}"
    if got.shape != expected.shape:
        return f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    if got.dtype != expected.dtype:
        return (
            f"{what}: expected dtype {expected.dtype}, got {got.dtype} "
            "(keep the dtype of the inputs)"
        )
    got = got.detach().cpu()
    expected = expected.cpu()
    bad = ~torch.isfinite(got) & torch.isfinite(expected)
    if bad.any():
        return (
            f"{what} contains NaN or inf in {int(bad.sum())} of {got.numel()} entries: "
            f"got {_preview(got)}"
        )
    if not torch.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
        error = (got - expected).abs().nan_to_num().max().item()
        return (
            f"{what} has wrong values (max abs error {error:.3g}): "
            f"expected {_preview(expected)}, got {_preview(got)}"
        )
    return None


def _fail(message: str, hint: str) -> bool:
    """Print a failure line with its hint; return False."""
    print(f"❌ {message} Hint: {hint}")
    return False


def _describe(value: Any) -> str:
    """A short description of a value's type (and shape for tensors)."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return "None (did you forget `return`?)" if value is None else f"a {type(value).__name__}"


def _preview(t: torch.Tensor, k: int = 4) -> str:
    """The first `k` entries of a tensor, rounded, e.g. `[-1.8379, 0.5, ...]`."""
    flat = t.flatten().tolist()
    shown = ", ".join(f"{v:.5g}" if isinstance(v, float) else str(v) for v in flat[:k])
    return f"[{shown}{', ...' if len(flat) > k else ''}]"


def _error_text(error: BaseException, limit: int = 200) -> str:
    """An exception's type and the first line of its message (shortened to `limit` characters), no
    traceback."""
    text = (str(error).strip().splitlines() or [""])[0]
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
