"""`check(name, fn)`.

Run an exercise's registered checks on a student's function and print a friendly verdict.
"""

from __future__ import annotations

import ctypes
import math
import signal
import sys
import threading
from dataclasses import dataclass
from numbers import Number
from typing import Any, Callable

import torch

from dgm_lib.checks import check_real

from .registry import Check, checks_for
from .tracker import FAILING, NOT_DONE, PASSED
from .tracker import record as record_verdict

# Check marks every font of the book and of Jupyter has (an emoji needs a colour-emoji font, which a
# headless browser or a bare Linux desktop lacks: it showed as an empty box).
PASS_MARK, FAIL_MARK = "✓", "✗"
NOT_IMPLEMENTED = "not implemented yet: replace the `raise NotImplementedError` with your code"
TIME_LIMIT = 10.0  # seconds per check; every reference solution takes well under one


class CheckTimeout(BaseException):
    """The student's function ran past the time limit (a BaseException: `except Exception` in the
    student's code does not swallow it)."""


@dataclass(frozen=True)
class Verdict:
    """What check() returns: true when every check passed; a notebook shows nothing for it.

    The verdict line check() printed already says it; a bare `True` box under every check cell
    would only repeat it.
    """

    state: str  # PASSED, FAILING or NOT_DONE (dgm_lib.exercises.tracker)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return self.state == PASSED

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        """Show nothing: IPython calls this instead of printing the repr of a cell's value."""


def check(
    name: str, fn: Callable, *, time_limit: float = TIME_LIMIT, record: bool = True
) -> Verdict:
    """Run every check of exercise `name` on `fn`, print one pass/fail line with a hint, and return
    the Verdict (true when all passed).

    Each call of `fn` gets `time_limit` seconds (SIGALRM in the main thread, as in Jupyter;
    elsewhere a watchdog thread interrupts it); an endless loop, a KeyboardInterrupt (the stop
    button) or a `sys.exit()` in `fn` fails the check with a message, never a traceback. `fn` runs
    on one torch thread, as every chapter sets it (small models are as fast on one, and on a busy
    CPU two threads wait for each other at every operation); the caller's count is restored. The
    verdict (passed, failing, not done) is recorded for the progress report
    (`dgm_lib.exercises.tracker`) unless `record` is False (a demonstration of wrong answers).
    """
    checks = checks_for(name)
    if not callable(fn):
        raise TypeError(
            f"fn={fn!r} is a {type(fn).__name__}; pass the function itself, e.g. check({name!r}, "
            "my_function)"
        )
    check_real(time_limit, "time_limit", lambda v: v > 0, "a positive number of seconds", "check")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        state = _run_checks(name, checks, fn, time_limit)
    finally:
        torch.set_num_threads(threads)
    if record:
        record_verdict(name, state, fn)
    return Verdict(state)


def _run_checks(name: str, checks: list[Check], fn: Callable, time_limit: float) -> str:
    """Run `checks` on `fn`, print the verdict line, and return the state PASSED, FAILING or
    NOT_DONE."""
    for i, chk in enumerate(checks, start=1):
        case = chk.make_case()
        where = f"check {i}/{len(checks)} ({chk.description})"
        args, kwargs = _copies(case.args), _copies(case.kwargs)
        try:
            with _CappedOutput():
                got = call_with_time_limit(fn, args, kwargs, time_limit)
        except NotImplementedError:
            _fail(f"{name}: {NOT_IMPLEMENTED}.", chk.hint)
            return NOT_DONE
        except CheckTimeout:
            return _fail(
                f"{name}: {where} did not finish within {time_limit:g} s (an endless loop? a "
                "loop whose condition never changes?); it was stopped.",
                chk.hint,
            )
        except KeyboardInterrupt:
            return _fail(f"{name}: {where} was interrupted (KeyboardInterrupt).", chk.hint)
        except SystemExit as error:
            return _fail(
                f"{name}: {where} called exit()/sys.exit({error.code!r}); return a value instead.",
                chk.hint,
            )
        except Exception as error:  # a student's bug: report it, never a traceback
            return _fail(f"{name}: {where} raised {_error_text(error)}.", chk.hint)
        modified = _modified_input(case.args, args, case.kwargs, kwargs)
        if modified is not None:
            return _fail(
                f"{name}: {where} failed: your function modified its input {modified} in place "
                "(e.g. x -= mu, x.add_(...), x[...] = ...); compute a new tensor instead "
                "(z = x - mu)",
                chk.hint,
            )
        try:
            if case.verify is not None:
                problem = case.verify(got)
            else:
                problem = compare(got, case.expected, rtol=case.rtol, atol=case.atol)
        except Exception as error:  # a value compare cannot handle: report, never a traceback
            problem = f"output could not be compared ({_error_text(error)})"
        if problem is not None:
            return _fail(f"{name}: {where} failed: {problem}.", chk.hint)
    print(f"{PASS_MARK} {name}: all {len(checks)} checks passed")
    return PASSED


def _alarm_available() -> bool:
    """SIGALRM can time a call: a POSIX platform, the main thread, and no alarm already pending."""
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )


def call_with_time_limit(fn: Callable, args: tuple, kwargs: dict, seconds: float) -> Any:
    """`fn(*args, **kwargs)`, raising CheckTimeout after `seconds`.

    In the main thread of a POSIX Python (Jupyter's kernel, a script) a SIGALRM handler raises the
    timeout; otherwise `fn` runs in a daemon thread, which on timeout is sent CheckTimeout
    asynchronously (CPython) and abandoned if it still does not stop (a long C call).
    """
    if not _alarm_available():
        return _call_in_thread(fn, args, kwargs, seconds)

    def on_alarm(signum: int, frame: Any) -> None:
        raise CheckTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _call_in_thread(fn: Callable, args: tuple, kwargs: dict, seconds: float) -> Any:
    """The portable fallback of `call_with_time_limit`: a watchdog join on a worker thread."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=work, name="dgm_lib-check", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        _raise_in_thread(worker)
        worker.join(1.0)
        raise CheckTimeout
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _raise_in_thread(worker: threading.Thread) -> None:
    """Ask CPython to raise CheckTimeout in `worker` (no-op where the C API is missing)."""
    try:
        set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    except AttributeError:  # not CPython: the daemon thread is abandoned
        return
    set_async_exc(ctypes.c_ulong(worker.ident), ctypes.py_object(CheckTimeout))


def diagnosing(
    expected: Any, mistakes: dict[str, Any], rtol: float = 1e-6, atol: float = 1e-8
) -> Callable[[Any], str | None]:
    """A `Case.verify` that compares with `expected` and, on a mismatch, names the typical mistake.

    Args:
        expected: the reference answer (as for `compare`).
        mistakes: {message: the value that mistake produces}; a mistake whose value equals
            `expected` within the tolerance cannot be told apart and is skipped.
        rtol, atol: the tolerance of every comparison.

    Returns:
        verify(got): None if `got` matches `expected`; else the message of the first mistake it
        matches; else what `compare` found wrong.
    """
    telling = {
        message: value
        for message, value in mistakes.items()
        if compare(value, expected, rtol=rtol, atol=atol) is not None
    }

    def verify(got: Any) -> str | None:
        problem = compare(got, expected, rtol=rtol, atol=atol)
        if problem is None:
            return None
        for message, value in telling.items():
            if compare(got, value, rtol=rtol, atol=atol) is None:
                return message
        return problem

    return verify


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
        if got.is_meta:
            return f"{what} is a tensor on the meta device (no values); compute real values"
        got = got.item()
    if isinstance(got, complex) or isinstance(got, bool) or not isinstance(got, Number):
        return f"{what} should be a real number, got {_describe(got)}"
    try:
        got = float(got)
    except (OverflowError, TypeError, ValueError):
        return f"{what} should be a real number of float size, got {_short(got)}"
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
    if got.is_meta:
        return f"{what} is a tensor on the meta device (it has no values); compute real values"
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


def _short(value: Any, limit: int = 40) -> str:
    """repr of a value, shortened (a 400-digit int)."""
    try:
        text = repr(value)
    except Exception:
        return type(value).__name__
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def _copies(value: Any) -> Any:
    """Fresh copies of the tensors in a case's args/kwargs (tuples, lists and dicts of them), so
    the student's function cannot change the reference inputs."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_copies(v) for v in value)
    if isinstance(value, dict):
        return {k: _copies(v) for k, v in value.items()}
    return value


def _modified_input(args: tuple, got_args: tuple, kwargs: dict, got_kwargs: dict) -> str | None:
    """The name of the first tensor input the student changed in place, or None."""
    pairs = [(f"#{k + 1} (positional)", a, b) for k, (a, b) in enumerate(zip(args, got_args))]
    pairs += [(f"{k!r}", kwargs[k], got_kwargs[k]) for k in kwargs]
    for name, before, after in pairs:
        if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor):
            same = before.shape == after.shape and before.dtype == after.dtype
            if not same or not torch.allclose(before, after, rtol=0, atol=0, equal_nan=True):
                return name
    return None


class _CappedOutput:
    """Redirect stdout while the student's function runs, passing only the first MAX_LINES lines
    through and then one line saying how many were hidden."""

    MAX_LINES = 50

    def __init__(self) -> None:
        self.lines, self.hidden, self._target = 0, 0, None

    def __enter__(self) -> _CappedOutput:
        self._target = sys.stdout
        sys.stdout = self  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.stdout = self._target
        if self.hidden:
            print(f"... ({self.hidden} more printed lines hidden by check())")

    def write(self, text: str) -> int:
        room = self.MAX_LINES - self.lines
        if room > 0:
            shown = "".join(text.splitlines(keepends=True)[:room])
            self._target.write(shown)
            self.lines += shown.count("\n")
            self.hidden += text[len(shown) :].count("\n")
        else:
            self.hidden += text.count("\n")
        return len(text)

    def flush(self) -> None:
        self._target.flush()


def _fail(message: str, hint: str) -> str:
    """Print a failure line and, below it, its hint; return the state FAILING."""
    print(f"{FAIL_MARK} {message}\n  Hint: {hint}")
    return FAILING


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
    try:
        text = (str(error).strip().splitlines() or [""])[0]
    except Exception:  # a student's exception whose __str__ itself fails
        text = "(its message could not be shown)"
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
