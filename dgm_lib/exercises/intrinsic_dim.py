"""Checks of the exercises of the chapter "Intrinsic dimension".

The toy objective, d_int90 from a sweep, a dense projection whose columns are normalised jointly
across all layers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgm_lib.intrinsic_dim.chapter import toy_objective
from dgm_lib.intrinsic_dim.dimension import measure_intrinsic_dimension

from .registry import Case, register

_TOY_HINT = (
    "view the last axis as 10 groups of 100 consecutive parameters, "
    "theta.reshape(*theta.shape[:-1], 10, 100), sum each group (.sum(-1)), then ((1 - group_sums) "
    "** 2).sum(-1): one J per leading index, shape theta.shape[:-1]."
)
_D_INT_HINT = (
    "the threshold is fraction * baseline, and a score exactly at it counts (>=); among the d "
    "whose score reaches it return the smallest d (the dims need not be sorted, and the scores "
    "need not increase with d); return a Python int."
)
_DENSE_HINT = (
    "draw one block per layer, in order, with torch.randn(D_l, d, generator=generator, "
    "dtype=torch.float64); the squared norm of column j is the sum over ALL blocks of block[:, j] "
    "** 2 (normalise jointly, not layer by layer: torch.cat(blocks).norm(dim=0)); divide every "
    "block by that norm and return the blocks as a tuple."
)


def _theta(*shape: int, seed: int, scale: float = 0.02) -> Tensor:
    return scale * torch.randn(
        *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


@register(
    "intrinsic_dim.toy_objective", "theta = 0 (every group sums to 0, so J = 10)", hint=_TOY_HINT
)
def _toy_zero() -> Case:
    theta = torch.zeros(1000, dtype=torch.float64)
    return Case(args=(theta,), expected=toy_objective(theta), rtol=1e-12, atol=1e-12)


@register("intrinsic_dim.toy_objective", "a solution: every weight 1/100, J = 0", hint=_TOY_HINT)
def _toy_solution() -> Case:
    theta = torch.full((1000,), 0.01, dtype=torch.float64)
    return Case(args=(theta,), expected=toy_objective(theta), rtol=1e-10, atol=1e-12)


@register("intrinsic_dim.toy_objective", "random theta of shape (1000,)", hint=_TOY_HINT)
def _toy_random() -> Case:
    theta = _theta(1000, seed=0)
    return Case(args=(theta,), expected=toy_objective(theta), rtol=1e-10, atol=1e-12)


@register(
    "intrinsic_dim.toy_objective", "a batch of shape (2, 3, 1000): one J per (i, j)", hint=_TOY_HINT
)
def _toy_batch() -> Case:
    theta = _theta(2, 3, 1000, seed=1)
    return Case(args=(theta,), expected=toy_objective(theta), rtol=1e-10, atol=1e-12)


def _d_int90_case(
    dims: list[int], scores: list[float], baseline: float, fraction: float = 0.9
) -> Case:
    """Reference: dgm_lib's measure_intrinsic_dimension on the tabulated curve d -> score (its dims
    sorted)."""
    table = dict(zip(dims, scores))
    result = measure_intrinsic_dimension(
        table.__getitem__,
        sorted(dims),
        baseline,
        baseline_kind="fixed",
        threshold_fraction=fraction,
    )
    kwargs = {} if fraction == 0.9 else {"fraction": fraction}
    return Case(
        args=(dims, scores, baseline), kwargs=kwargs, expected=result.d_int90, rtol=0.0, atol=0.0
    )


@register("intrinsic_dim.d_int90", "an increasing accuracy curve, baseline 0.98", hint=_D_INT_HINT)
def _d_int_increasing() -> Case:
    return _d_int90_case([10, 50, 100, 200, 500, 1000], [0.21, 0.55, 0.79, 0.87, 0.91, 0.95], 0.98)


@register("intrinsic_dim.d_int90", "the same sweep with its dims in random order", hint=_D_INT_HINT)
def _d_int_unsorted() -> Case:
    return _d_int90_case([1000, 10, 500, 100, 200, 50], [0.95, 0.21, 0.91, 0.79, 0.87, 0.55], 0.98)


@register(
    "intrinsic_dim.d_int90",
    "a noisy curve that crosses the threshold, dips below it, and crosses again",
    hint=_D_INT_HINT,
)
def _d_int_noisy() -> Case:
    return _d_int90_case([100, 200, 300, 400, 500], [0.80, 0.885, 0.87, 0.89, 0.93], 0.98)


@register(
    "intrinsic_dim.d_int90",
    "a score exactly at the threshold 0.9 * 0.5 (it counts)",
    hint=_D_INT_HINT,
)
def _d_int_exact() -> Case:
    return _d_int90_case([1, 2, 3, 4], [0.1, 0.3, 0.9 * 0.5, 0.5], 0.5)


@register("intrinsic_dim.d_int90", "fraction = 0.5 instead of 0.9", hint=_D_INT_HINT)
def _d_int_fraction() -> Case:
    return _d_int90_case(
        [10, 50, 100, 200, 500, 1000], [0.21, 0.55, 0.79, 0.87, 0.91, 0.95], 0.98, fraction=0.5
    )


def _dense_projection(
    layer_sizes: list[int], d: int, generator: torch.Generator
) -> tuple[Tensor, ...]:
    """Reference: P_ij ~ N(0, 1) drawn layer by layer, every column of the stacked (D, d) matrix
    scaled to unit norm."""
    blocks = [
        torch.randn(size, d, generator=generator, dtype=torch.float64) for size in layer_sizes
    ]
    norm = torch.cat(blocks).norm(dim=0)
    return tuple(block / norm for block in blocks)


def _dense_case(layer_sizes: list[int], d: int, seed: int) -> Case:
    expected = _dense_projection(layer_sizes, d, torch.Generator().manual_seed(seed))
    return Case(
        args=(layer_sizes, d, torch.Generator().manual_seed(seed)),
        expected=expected,
        rtol=1e-10,
        atol=1e-12,
    )


@register("intrinsic_dim.dense_projection", "one layer of 6 parameters, d = 2", hint=_DENSE_HINT)
def _dense_one_layer() -> Case:
    return _dense_case([6], 2, seed=0)


@register(
    "intrinsic_dim.dense_projection",
    "a 3-2-1 network: layers of 6, 2, 2, 1 parameters, d = 3",
    hint=_DENSE_HINT,
)
def _dense_small_net() -> Case:
    return _dense_case([6, 2, 2, 1], 3, seed=1)


@register(
    "intrinsic_dim.dense_projection",
    "layers of 300, 10, 50 and 1 parameters, d = 20",
    hint=_DENSE_HINT,
)
def _dense_larger() -> Case:
    return _dense_case([300, 10, 50, 1], 20, seed=2)
