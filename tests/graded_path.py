"""Shared assertions of the chapters' graded exercise paths (tests/test_exercises_*.py)."""

from __future__ import annotations

from typing import Callable

import pytest

from dgm_lib.exercises import check, registry


def checked_exercises(chapter: str) -> list[str]:
    """The exercises of `chapter` that have an automatic check, in declaration order."""
    return [n for n in registry.chapter_exercises(chapter) if not registry.is_open_question(n)]


def assert_path(chapter: str, names: list[str]) -> None:
    """The chapter declares exactly `names` (short names) in this order, the last an open
    question."""
    assert registry.chapter_exercises(chapter) == [f"{chapter}.{n}" for n in names]
    assert registry.is_open_question(f"{chapter}.{names[-1]}")


def assert_reference_passes(name: str, capsys) -> None:
    assert check(name, registry.reference_for(name), record=False).passed is True, (
        capsys.readouterr().out
    )


def assert_mistake_fails(
    chapter: str, exercise: str, fn: Callable, which: str, phrase: str, capsys
) -> None:
    """`fn` fails exercise `chapter.exercise` at check `which` ("check 2/3"), and the failure line
    or its hint contains `phrase`; no traceback."""
    assert check(f"{chapter}.{exercise}", fn, record=False).passed is False
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {chapter}.{exercise}: {which} ") and phrase in out, out
    assert "Traceback" not in out


def graded_path_tests(chapter: str, names: list[str], mistakes: dict[str, tuple]) -> tuple:
    """The three tests every chapter's graded path gets, to assign in its test module: the path is
    declared in order (`names`, the last an open question), every reference passes, and every
    typical mistake in `mistakes` ({id: (exercise, fn, which check, phrase)}) fails with its
    hint."""

    def test_the_graded_path_is_declared_in_order() -> None:
        assert_path(chapter, names)

    @pytest.mark.parametrize("name", checked_exercises(chapter))
    def test_the_reference_passes(name, capsys) -> None:
        assert_reference_passes(name, capsys)

    @pytest.mark.parametrize("mistake", list(mistakes))
    def test_a_typical_mistake_fails_with_its_hint(mistake, capsys) -> None:
        assert_mistake_fails(chapter, *mistakes[mistake], capsys)

    return (
        test_the_graded_path_is_declared_in_order,
        test_the_reference_passes,
        test_a_typical_mistake_fails_with_its_hint,
    )
