"""Hardening of check(): each bad student function fails with a friendly line, never a traceback
or a hang (issue items 1 and 14)."""

from __future__ import annotations

import sys
import time

import pytest

from dgm_lib.exercises import check, runner

NAME = "intro.gaussian_log_prob"


def _endless(x, mu, sigma):
    while True:
        pass


def _interrupt(x, mu, sigma):
    raise KeyboardInterrupt


def _exit(x, mu, sigma):
    sys.exit(3)


# item -> (student function, phrase of the printed failure line)
BAD_FUNCTIONS = {
    "item_01_endless_loop": (_endless, "did not finish within 0.3 s"),
    "item_01_exec_endless_loop": (
        lambda x, mu, sigma: exec("while True: pass"),
        "did not finish within 0.3 s",
    ),
    "item_01_keyboard_interrupt": (_interrupt, "was interrupted (KeyboardInterrupt)"),
    "item_01_system_exit": (_exit, "called exit()/sys.exit(3)"),
}


@pytest.mark.parametrize("case", list(BAD_FUNCTIONS))
def test_bad_student_function_fails_with_a_friendly_line(case, capsys):
    fn, phrase = BAD_FUNCTIONS[case]
    start = time.monotonic()
    assert check(NAME, fn, time_limit=0.3) is False
    assert time.monotonic() - start < 5
    out = capsys.readouterr().out
    assert out.startswith(f"❌ {NAME}: check 1/") and phrase in out and "Traceback" not in out


def test_item_01_time_limit_without_sigalrm_uses_a_watchdog_thread(monkeypatch, capsys):
    monkeypatch.setattr(runner, "_alarm_available", lambda: False)
    assert check(NAME, _endless, time_limit=0.3) is False
    assert "did not finish within 0.3 s" in capsys.readouterr().out
    assert check(NAME, _interrupt, time_limit=0.3) is False
    assert "KeyboardInterrupt" in capsys.readouterr().out


def test_item_01_time_limit_is_validated_and_leaves_no_alarm(capsys):
    with pytest.raises(ValueError, match="time_limit must be a positive number"):
        check(NAME, _endless, time_limit=0)
    with pytest.raises(TypeError, match="time_limit must be a real number"):
        check(NAME, _endless, time_limit="1")
    check(NAME, _endless, time_limit=0.2)
    import signal

    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
