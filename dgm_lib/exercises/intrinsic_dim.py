"""Checks of the exercises of the chapter "Intrinsic dimension".

The graded path: the toy objective and d_int90 from a sweep (warm-ups), the subspace minimum of the
toy problem by least squares (derivation, part 1 of the chapter's theorem), a dense projection
whose columns are normalised jointly across all layers (implementation), and subspace training of
the toy problem (experiment: checked by the property the theorem predicts, not by exact numbers).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgm_lib.intrinsic_dim.chapter import ToyProblem, toy_objective, toy_subspace_optimum
from dgm_lib.intrinsic_dim.dimension import measure_intrinsic_dimension
from dgm_lib.intrinsic_dim.projections import make_projection

from .registry import Case, open_question, register

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
_MINIMUM_HINT = (
    "J(theta_0 + P theta_d) = ||b - A P theta_d||^2 with b = 1 - A theta_0: b holds the 10 group "
    "sums of theta_0 subtracted from 1 (theta_0.reshape(10, 100).sum(1)), A P the 10 group sums of "
    "every column of P (P.reshape(10, 100, d).sum(1)). Solve the least-squares problem with "
    "torch.linalg.lstsq or torch.linalg.pinv (they handle any rank, also d > 10 and repeated "
    "columns; the normal equations do not) and return the SQUARED residual norm, a number. Do "
    "not assume the minimum is 0 because d >= 10: it is 0 only when rank(A P) = 10."
)
_EXPERIMENT_HINT = (
    "for each d build a fresh toy = ToyProblem(generator=torch.Generator().manual_seed(seed))"
    ".double(), J_0 = toy().item(), model = SubspaceModule(toy, d, 'dense', seed=seed), and "
    "optimise model.parameters() (theta_d alone, never toy.parameters()) with torch.optim.LBFGS("
    "..., line_search_fn='strong_wolfe') and a closure that zeroes the gradients, as in the "
    "chapter; the problem is badly conditioned, so a few thousand Adam steps may not converge. "
    "Return the list [model().item() / J_0 for each d], in the order of dims."
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


def _minimum_case(theta_0: Tensor, P: Tensor) -> Case:
    """Reference: the closed form of part 1 of thm-toy-dint (dgm_lib's least-squares optimum)."""
    j_min = toy_subspace_optimum(theta_0, P)[1]
    return Case(args=(theta_0, P), expected=j_min, rtol=1e-8, atol=1e-8 * toy_objective(theta_0))


def _toy_start(seed: int) -> Tensor:
    return ToyProblem(generator=torch.Generator().manual_seed(seed)).double().theta.detach()


def _dense(d: int, seed: int) -> Tensor:
    return make_projection("dense", 1000, d, seed).matrix().to(torch.float64)


@register(
    "intrinsic_dim.subspace_minimum",
    "d = 4: the minimum is positive (d < 10)",
    hint=_MINIMUM_HINT,
)
def _minimum_below() -> Case:
    return _minimum_case(_toy_start(0), _dense(4, 0))


@register(
    "intrinsic_dim.subspace_minimum",
    "d = 10, theta_0 = 0: rank(A P) = 10, so the minimum is 0",
    hint=_MINIMUM_HINT,
)
def _minimum_full_rank() -> Case:
    return _minimum_case(torch.zeros(1000, dtype=torch.float64), _dense(10, 1))


@register(
    "intrinsic_dim.subspace_minimum",
    "d = 12 with repeated columns: rank(A P) = 8 < 10, the minimum stays positive",
    hint=_MINIMUM_HINT,
)
def _minimum_rank_deficient() -> Case:
    P = _dense(8, 2)
    return _minimum_case(_toy_start(2), torch.cat((P, P[:, :4]), dim=1))


def _experiment_verify(dims: tuple[int, ...]):
    """verify(ratios): one J / J(theta_0) per d; above 1e-3 for d < 10 (a random subspace of
    dimension 2 to 7 misses the solution set by far more, almost surely), below 1e-4 for d >= 10
    (the subspace reaches it: trained to convergence), never above 1 (training never got worse)."""

    def verify(result: object) -> str | None:
        if isinstance(result, Tensor):
            result = result.tolist()
        if not isinstance(result, (list, tuple)) or len(result) != len(dims):
            return f"return a list of {len(dims)} ratios J / J(theta_0), one per d of {list(dims)}"
        try:
            ratios = [float(r) for r in result]
        except (TypeError, ValueError):
            return "every entry should be a number J / J(theta_0)"
        for d, r in zip(dims, ratios):
            if not 0 <= r <= 1 + 1e-9:  # NaN fails too
                return (
                    f"at d = {d} you returned {r:.4g}, outside [0, 1]: return J after training "
                    "divided by J(theta_0), and training should never end above its start"
                )
            if d < 10 and r < 1e-3:
                return (
                    f"at d = {d} J fell to {r:.2g} J(theta_0), but no {d}-dimensional subspace "
                    "reaches the solution set (it needs rank(A P) = 10, so d >= 10): are you "
                    "training the native parameters toy.parameters() instead of theta_d?"
                )
            if d >= 10 and r > 1e-4:
                return (
                    f"at d = {d} J is still {r:.2g} J(theta_0) after training, but a "
                    f"{d}-dimensional random subspace contains a solution (J = 0): train to "
                    "convergence (L-BFGS with a strong Wolfe line search)"
                )
        return None

    return verify


@register(
    "intrinsic_dim.toy_subspace_training",
    "dims (2, 5, 10, 20), seed 0: J / J(theta_0) > 1e-3 below d = 10, < 1e-4 from d = 10 on",
    hint=_EXPERIMENT_HINT,
)
def _experiment_seed0() -> Case:
    dims = (2, 5, 10, 20)
    return Case(args=(list(dims), 0), verify=_experiment_verify(dims))


@register(
    "intrinsic_dim.toy_subspace_training",
    "dims (12, 3), seed 1 (any order of dims, another seed)",
    hint=_EXPERIMENT_HINT,
)
def _experiment_seed1() -> Case:
    dims = (12, 3)
    return Case(args=(list(dims), 1), verify=_experiment_verify(dims))


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


open_question(
    "intrinsic_dim.compressibility",
    "what d_int says about compressing a network: a bound, and what else the receiver needs",
)
