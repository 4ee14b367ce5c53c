"""The intrinsic dimension d_int90.

The smallest d whose subspace training reaches 90% of the baseline.

Li, Farkhoor, Liu, Yosinski, Measuring the Intrinsic Dimension of Objective Landscapes, ICLR 2018.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any, Callable, Sequence

BASELINE_KINDS = ("direct", "fixed")


@dataclass
class IntrinsicDimResult:
    """A sweep over d: scores[k] is the score at dims[k].

    d_int90 the smallest d with score >= fraction * baseline.

    baseline_kind "direct": the baseline is the directly trained model's score; "fixed": a given
    number. d_int90 is None when no d of the sweep reaches the threshold.
    """

    dims: list[int]
    scores: list[float]
    baseline: float
    threshold_fraction: float = 0.9
    baseline_kind: str = "direct"
    d_int90: int | None = None

    @property
    def threshold(self) -> float:
        """threshold_fraction * baseline: the score a d must reach."""
        return self.threshold_fraction * self.baseline

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IntrinsicDimResult":
        """Rebuild from `to_dict()` output, checking that d_int90 is the one the scores give."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict from to_dict(), got {type(data).__name__}")
        keys = ("dims", "scores", "baseline", "baseline_kind", "threshold_fraction", "d_int90")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(
                f"data is not an IntrinsicDimResult.to_dict() record: missing keys {missing}"
            )
        result = _result(
            data["dims"],
            data["scores"],
            data["baseline"],
            data["baseline_kind"],
            data["threshold_fraction"],
        )
        if result.d_int90 != data["d_int90"]:
            raise ValueError(
                f"stored d_int90 = {data['d_int90']} but the stored scores give {result.d_int90}"
            )
        return result


def _check_dims_list(dims: Sequence[int]) -> list[int]:
    dims = list(dims)
    if not dims or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in dims):
        raise ValueError(f"dims must be a non-empty sequence of positive ints, got {dims!r}")
    if any(b <= a for a, b in zip(dims, dims[1:])):
        raise ValueError(f"dims must be strictly increasing, got {dims!r}")
    return dims


def _check_baseline(baseline: float, baseline_kind: str, threshold_fraction: float) -> None:
    if (
        isinstance(baseline, bool)
        or not isinstance(baseline, (int, float))
        or not math.isfinite(baseline)
        or baseline <= 0
    ):
        raise ValueError(f"baseline must be a positive finite number (a score), got {baseline!r}")
    if baseline_kind not in BASELINE_KINDS:
        raise ValueError(f"baseline_kind must be one of {BASELINE_KINDS}, got {baseline_kind!r}")
    if (
        isinstance(threshold_fraction, bool)
        or not isinstance(threshold_fraction, (int, float))
        or not 0 < threshold_fraction <= 1
    ):
        raise ValueError(f"threshold_fraction must be in (0, 1], got {threshold_fraction!r}")


def _result(
    dims: Sequence[int],
    scores: Sequence[float],
    baseline: float,
    baseline_kind: str,
    threshold_fraction: float,
) -> IntrinsicDimResult:
    """Validate a sweep and compute its d_int90."""
    dims = _check_dims_list(dims)
    _check_baseline(baseline, baseline_kind, threshold_fraction)
    scores = [float(s) for s in scores]
    if len(scores) != len(dims):
        raise ValueError(f"got {len(scores)} scores for {len(dims)} dims")
    for d, s in zip(dims, scores):
        if not math.isfinite(s):
            raise ValueError(f"the score at d = {d} is {s}; scores must be finite")
    threshold = threshold_fraction * baseline
    d_int = next((d for d, s in zip(dims, scores) if s >= threshold), None)
    return IntrinsicDimResult(
        dims, scores, float(baseline), float(threshold_fraction), baseline_kind, d_int
    )


def measure_intrinsic_dimension(
    train_and_score: Callable[[int], float],
    dims: Sequence[int],
    baseline: float,
    *,
    baseline_kind: str = "direct",
    threshold_fraction: float = 0.9,
) -> IntrinsicDimResult:
    """Score subspace training at every d in `dims` and return the sweep with its d_int90.

    d_int90 = min {d in dims : score(d) >= threshold_fraction * baseline} (Li et al. 2018, Sec. 2;
    higher scores are better, e.g. test accuracy), None if no d reaches it.

    Args:
        train_and_score: d -> the score of a model trained in a d-dimensional subspace.
        dims: the increasing grid of d.
        baseline: the score of the directly trained model (or a fixed target).
        baseline_kind: "direct" or "fixed".
        threshold_fraction: 0.9 for d_int90.

    Returns:
        The IntrinsicDimResult of the sweep.

    Example:
        >>> result = measure_intrinsic_dimension(lambda d: min(1.0, d / 100), [25, 50, 95], 1.0)
        >>> result.d_int90
        95
    """
    if not callable(train_and_score):
        raise TypeError(
            f"train_and_score must be a callable d -> score, got {type(train_and_score).__name__}"
        )
    dims = _check_dims_list(dims)
    _check_baseline(
        baseline, baseline_kind, threshold_fraction
    )  # argument errors before any training
    return _result(
        dims,
        [_score(train_and_score, d) for d in dims],
        baseline,
        baseline_kind,
        threshold_fraction,
    )


def _score(train_and_score: Callable[[int], float], d: int) -> float:
    """train_and_score(d), checked at once: a finite real number (not after the whole sweep)."""
    score = train_and_score(d)
    if isinstance(score, bool) or not isinstance(score, Real):
        raise TypeError(
            f"train_and_score({d}) returned {type(score).__name__} {score!r}; it must return the "
            "score as a finite number (did you forget `return`?)"
        )
    if not math.isfinite(score):
        raise ValueError(
            f"the score at d = {d} is {score} (returned by train_and_score({d})); scores must be "
            "finite"
        )
    return float(score)
