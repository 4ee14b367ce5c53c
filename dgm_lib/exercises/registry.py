"""The registry of exercise checks.

`register` adds a check (a case built by reference code) to an exercise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

_REGISTRY: dict[str, dict[str, Check]] = {}


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


def register(
    name: str, description: str, hint: str
) -> Callable[[Callable[[], Case]], Callable[[], Case]]:
    """Decorator: register `make_case() -> Case` as the next check of exercise `name`
    ("chapter.exercise")."""
    if not isinstance(name, str) or name.count(".") != 1 or not all(name.split(".")):
        raise ValueError(
            f"name={name!r}: expected 'chapter.exercise', e.g. 'intro.gaussian_log_prob'"
        )
    if not description or not hint:
        raise ValueError(f"exercise {name!r}: every check needs a non-empty description and hint")

    def decorator(make_case: Callable[[], Case]) -> Callable[[], Case]:
        # re-registering (module reload) replaces
        key = f"{make_case.__module__}.{make_case.__qualname__}"
        _REGISTRY.setdefault(name, {})[key] = Check(description, hint, make_case)
        return make_case

    return decorator


def known_exercises() -> list[str]:
    """The names of all registered exercises, sorted."""
    return sorted(_REGISTRY)


def checks_for(name: str) -> list[Check]:
    """The checks of exercise `name` in registration order.

    ValueError listing the known names if unknown.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown exercise name={name!r}; known exercises: {', '.join(known_exercises())}"
        )
    return list(_REGISTRY[name].values())
