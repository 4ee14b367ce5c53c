"""The registry of exercise checks.

`register` adds a check (a case built by reference code) to an exercise, `open_question` declares an
exercise without an automatic check, and `register_reference` names the library's reference
implementation that a chapter cell falls back to while the student's exercise is unfinished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

_REGISTRY: dict[str, dict[str, Check]] = {}
_OPEN: dict[str, str] = {}  # open questions: name -> what they ask
_ORDER: dict[str, None] = {}  # every exercise name, checked or open, in order of declaration
_REFERENCES: dict[str, Callable] = {}


@dataclass(frozen=True)
class Case:
    """One check's input and reference answer.

    `fn(*args, **kwargs)` should equal `expected` within tolerance.

    `expected` is a tensor, a Python number, or a tuple of these (e.g. a flow's `(z, log_det)`).
    An experiment, whose correct results differ between valid runs, passes `verify` instead:
    `verify(result)` returns None when the result has the property the check asks for, else what is
    wrong (shown to the student with the check's hint); `expected` is then unused.
    """

    args: tuple
    expected: Any = None
    kwargs: dict = field(default_factory=dict)
    rtol: float = 1e-6
    atol: float = 1e-8
    verify: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class Check:
    """A registered check: what it tests, a hint for students, the function building its `Case`."""

    description: str
    hint: str
    make_case: Callable[[], Case]


def _validate_name(name: str) -> None:
    """ValueError unless `name` reads "chapter.exercise"."""
    if not isinstance(name, str) or name.count(".") != 1 or not all(name.split(".")):
        raise ValueError(
            f"name={name!r}: expected 'chapter.exercise', e.g. 'intro.gaussian_log_prob'"
        )


def register(
    name: str, description: str, hint: str
) -> Callable[[Callable[[], Case]], Callable[[], Case]]:
    """Decorator: register `make_case() -> Case` as the next check of exercise `name`
    ("chapter.exercise")."""
    _validate_name(name)
    if not description or not hint:
        raise ValueError(f"exercise {name!r}: every check needs a non-empty description and hint")
    if name in _OPEN:
        raise ValueError(f"exercise {name!r} is declared an open question: it has no checks")

    def decorator(make_case: Callable[[], Case]) -> Callable[[], Case]:
        # re-registering (module reload) replaces
        key = f"{make_case.__module__}.{make_case.__qualname__}"
        _REGISTRY.setdefault(name, {})[key] = Check(description, hint, make_case)
        _ORDER.setdefault(name)
        return make_case

    return decorator


def open_question(name: str, description: str) -> None:
    """Declare exercise `name` ("chapter.exercise") an open question: no automatic check.

    The progress report lists it as "open question: compare with the solution"; the chapter
    gives a reference answer in its collapsed solution.

    Args:
        name: the exercise, e.g. "kl_duality.mode_seeking_remedies".
        description: what the question asks, in a few words.
    """
    _validate_name(name)
    if not description:
        raise ValueError(f"open question {name!r}: give a non-empty description")
    if name in _REGISTRY:
        raise ValueError(f"exercise {name!r} has checks: it cannot be an open question")
    _OPEN[name] = description
    _ORDER.setdefault(name)


def register_reference(name: str) -> Callable[[Callable], Callable]:
    """Decorator: the library's reference implementation of exercise `name`.

    `use_or_reference(name, fn)` returns it while the student's `fn` has not passed its check.
    """
    _validate_name(name)

    def decorator(reference: Callable) -> Callable:
        _REFERENCES[name] = reference
        return reference

    return decorator


def reference_for(name: str) -> Callable | None:
    """The reference implementation registered for exercise `name`, or None."""
    return _REFERENCES.get(name)


def known_exercises() -> list[str]:
    """The names of all exercises with checks, sorted (open questions: `open_questions()`)."""
    return sorted(_REGISTRY)


def open_questions() -> list[str]:
    """The names of all open questions, sorted."""
    return sorted(_OPEN)


def is_open_question(name: str) -> bool:
    """Whether exercise `name` is an open question (no automatic check)."""
    return name in _OPEN


def chapter_exercises(chapter: str) -> list[str]:
    """The exercises (checked and open) of `chapter`, e.g. "kl_duality", in declaration order."""
    return [
        name
        for name in _ORDER
        if name.split(".")[0] == chapter and (name in _REGISTRY or name in _OPEN)
    ]


def checks_for(name: str) -> list[Check]:
    """The checks of exercise `name` in registration order.

    ValueError listing the known names if unknown or an open question.
    """
    if name in _OPEN:
        raise ValueError(
            f"exercise {name!r} is an open question: there is no automatic check; compare your "
            "answer with the solution in the chapter"
        )
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown exercise name={name!r}; known exercises: {', '.join(known_exercises())}"
        )
    return list(_REGISTRY[name].values())
