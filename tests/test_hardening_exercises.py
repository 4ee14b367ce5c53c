"""Hardening of check(): each bad student function fails with a friendly line, never a traceback
or a hang (issue items 1 and 14)."""

from __future__ import annotations

import math
import sys
import time

import pytest
import torch

from dgm_lib.exercises import check, runner

NAME = "intro.gaussian_log_prob"
SCALAR = "kl_duality.log_normalizer_is"  # an exercise whose answer is a Python number


def _endless(x, mu, sigma):
    while True:
        pass


def _interrupt(x, mu, sigma):
    raise KeyboardInterrupt


def _exit(x, mu, sigma):
    sys.exit(3)


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no message")


def _bad_str(x, mu, sigma):
    raise BadStr


def _in_place(x, mu, sigma):
    x -= mu  # the classic slip: changes the caller's tensor
    z = x / sigma
    return (-0.5 * z**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)


def _in_place_sigma(x, mu, sigma):
    result = _in_place(x.clone(), mu, sigma)
    sigma.fill_(1.0)
    return result


# item -> (student function, phrase of the printed failure line[, exercise])
BAD_FUNCTIONS = {
    "item_01_endless_loop": (_endless, "did not finish within 0.3 s"),
    "item_01_exec_endless_loop": (
        lambda x, mu, sigma: exec("while True: pass"),
        "did not finish within 0.3 s",
    ),
    "item_01_keyboard_interrupt": (_interrupt, "was interrupted (KeyboardInterrupt)"),
    "item_01_system_exit": (_exit, "called exit()/sys.exit(3)"),
    "item_14_complex_return": (
        lambda flow, log_target, z: 1j,
        "should be a real number, got a complex",
        SCALAR,
    ),
    "item_14_huge_int_return": (
        lambda flow, log_target, z: 10**400,
        "should be a real number of float size, got 1000",
        SCALAR,
    ),
    "item_14_complex_tensor_return": (
        lambda flow, log_target, z: torch.tensor(1j),
        "should be a real number, got a complex",
        SCALAR,
    ),
    "item_14_exception_whose_str_fails": (_bad_str, "raised BadStr: (its message could not"),
    "item_14_meta_tensor_return": (
        lambda x, mu, sigma: torch.empty(x.shape[0], device="meta", dtype=x.dtype),
        "is a tensor on the meta device",
    ),
    "item_14_meta_scalar_return": (
        lambda x, mu, sigma: torch.empty((), device="meta"),
        "is a tensor on the meta device",
    ),
    "item_14_in_place_modification": (_in_place, "modified its input #1 (positional) in place"),
    "item_14_in_place_sigma": (_in_place_sigma, "modified its input #3 (positional) in place"),
}


@pytest.mark.parametrize("case", list(BAD_FUNCTIONS))
def test_bad_student_function_fails_with_a_friendly_line(case, capsys):
    fn, phrase, *name = BAD_FUNCTIONS[case]
    name = name[0] if name else NAME
    start = time.monotonic()
    assert check(name, fn, time_limit=0.3).passed is False
    assert time.monotonic() - start < 5
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {name}: check ") and phrase in out and "Traceback" not in out


def test_item_01_time_limit_without_sigalrm_uses_a_watchdog_thread(monkeypatch, capsys):
    monkeypatch.setattr(runner, "_alarm_available", lambda: False)
    assert check(NAME, _endless, time_limit=0.3).passed is False
    assert "did not finish within 0.3 s" in capsys.readouterr().out
    assert check(NAME, _interrupt, time_limit=0.3).passed is False
    assert "KeyboardInterrupt" in capsys.readouterr().out


def test_item_01_time_limit_is_validated_and_leaves_no_alarm(capsys):
    with pytest.raises(ValueError, match="time_limit must be a positive number"):
        check(NAME, _endless, time_limit=0)
    with pytest.raises(TypeError, match="time_limit must be a real number"):
        check(NAME, _endless, time_limit="1")
    check(NAME, _endless, time_limit=0.2)
    import signal

    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


def _chatty(x, mu, sigma):
    for k in range(600_000):
        print(k)
    z = (x - mu) / sigma
    return (-0.5 * z**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_item_14_printed_output_is_capped(capsys):
    assert check(NAME, _chatty).passed is True
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["0", "1"] and len(out) < 200
    assert any("more printed lines hidden by check()" in line for line in out)
    assert out[-1].startswith("✓")
