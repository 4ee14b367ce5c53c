"""The claims of the chapter "Intrinsic dimension", in float64: the toy problem's subspace minimum
(least squares, the rank condition with its counterexample, the average 1 - d/10 for dense
projections); plus the exercise checks."""

import pytest
import torch

from dgm_lib.exercises import check
from dgm_lib.exercises import intrinsic_dim as exercises  # noqa: F401  registers the chapter's checks
from dgm_lib.intrinsic_dim import make_projection
from dgm_lib.intrinsic_dim.chapter import ToyProblem, toy_objective

DT = torch.float64


def group_sums(x: torch.Tensor) -> torch.Tensor:
    """A x for the 10 x 1000 group matrix A, along the first dimension of x (1000, ...) -> (10,
    ...)."""
    return x.unflatten(0, (10, 100)).sum(1)


def subspace_minimum(theta_0: torch.Tensor, P: torch.Tensor) -> float:
    """min over theta_d of J(theta_0 + P theta_d), thm-toy-dint part 1: ||(I - Pi) b||^2 by least
    squares."""
    b = 1 - group_sums(theta_0)
    AP = group_sums(P)
    x = torch.linalg.lstsq(AP, b[:, None], driver="gelsd").solution
    return (b[:, None] - AP @ x).square().sum().item()


def theta_0(seed: int = 0) -> torch.Tensor:
    return ToyProblem(generator=torch.Generator().manual_seed(seed)).theta.detach().to(DT)


def test_subspace_minimum_is_the_distance_to_the_column_space():
    """Part 1: the least-squares value equals ||(I - Pi) b||^2 with Pi built from an orthonormal
    basis (QR), and no theta_d does better than it (random perturbations of the optimum only
    increase J)."""
    t0 = theta_0()
    P = make_projection("dense", 1000, 6, seed=3).matrix().to(DT)
    b = 1 - group_sums(t0)
    Q, _ = torch.linalg.qr(group_sums(P))
    value = subspace_minimum(t0, P)
    assert value == pytest.approx((b - Q @ (Q.T @ b)).square().sum().item(), rel=1e-10)
    x = torch.linalg.lstsq(group_sums(P), b[:, None]).solution[:, 0]
    assert toy_objective(t0 + P @ x).item() == pytest.approx(value, rel=1e-10)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        assert toy_objective(t0 + P @ (x + torch.randn(6, generator=gen, dtype=DT))).item() > value


def test_rank_deficient_subspace_misses_a_solution_even_with_d_above_10():
    """Part 2: with rank(A P) < 10 (here d = 15 but no column touches group 10) the proof's theta_0
    gives min J = 1."""
    gen = torch.Generator().manual_seed(0)
    P = torch.randn(1000, 15, generator=gen, dtype=DT)
    P[900:] = 0  # group 10 unreachable: rank(A P) = 9
    assert torch.linalg.matrix_rank(group_sums(P)) == 9
    v = torch.zeros(10, dtype=DT)
    v[9] = 1.0  # unit vector orthogonal to the column space of A P
    t0 = (
        torch.full((1000,), 0.01, dtype=DT) - torch.repeat_interleave(v, 100) / 100
    )  # 1/100 - A^T v / 100: b = v
    assert torch.allclose(1 - group_sums(t0), v, atol=1e-12)
    assert subspace_minimum(t0, P) == pytest.approx(1.0, rel=1e-10)


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
def test_toy_minimum_vanishes_exactly_from_d_10(projection):
    """Part 3 (and the chapter's check for all three projections): positive for d <= 9, zero for d
    >= 10."""
    t0 = theta_0()
    j0 = toy_objective(t0).item()
    for seed in range(3):
        values = [
            subspace_minimum(t0, make_projection(projection, 1000, d, seed).matrix().to(DT)) / j0
            for d in (5, 9, 10, 11, 16)
        ]
        assert min(values[:2]) > 1e-6 and max(values[2:]) < 1e-20


def test_dense_average_minimum_is_one_minus_d_over_10():
    """Part 3: E[min J | theta_0] = (1 - d/10) J(theta_0) for Gaussian P with unit-norm columns,
    over 2000 draws (Monte Carlo error of the mean below 0.005)."""
    t0 = theta_0(1)
    b = 1 - group_sums(t0)
    gen = torch.Generator().manual_seed(2)
    for d in (2, 5, 8):
        P = torch.randn(2000, 1000, d, generator=gen, dtype=DT)
        AP = (P / P.norm(dim=1, keepdim=True)).unflatten(1, (10, 100)).sum(2)  # (draws, 10, d)
        x = torch.linalg.lstsq(AP, b.expand(2000, 10)[..., None]).solution
        ratio = (b[:, None] - AP @ x).square().sum((1, 2)) / b.square().sum()
        assert ratio.mean().item() == pytest.approx(1 - d / 10, abs=0.02)


# The exercise checks accept the reference solutions of the chapter and reject typical mistakes.


def toy_objective_solution(theta):
    return (1 - theta.reshape(*theta.shape[:-1], 10, 100).sum(-1)).square().sum(-1)


def d_int90_solution(dims, scores, baseline, fraction=0.9):
    return min(d for d, s in zip(dims, scores) if s >= fraction * baseline)


def dense_projection_solution(layer_sizes, d, generator):
    blocks = [torch.randn(size, d, generator=generator, dtype=DT) for size in layer_sizes]
    norm = torch.cat(blocks).norm(dim=0)
    return tuple(block / norm for block in blocks)


@pytest.mark.parametrize(
    "name, fn",
    [
        ("intrinsic_dim.toy_objective", toy_objective_solution),
        ("intrinsic_dim.d_int90", d_int90_solution),
        ("intrinsic_dim.dense_projection", dense_projection_solution),
    ],
)
def test_exercise_checks_accept_the_solutions(name, fn, capsys):
    assert check(name, fn)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, fn",
    [
        (
            "intrinsic_dim.toy_objective",
            lambda theta: (1 - theta.reshape(-1, 100).sum(-1)).square().sum(),
        ),  # no batch
        (
            "intrinsic_dim.toy_objective",
            lambda theta: (1 - theta.reshape(*theta.shape[:-1], 100, 10).sum(-1)).square().sum(-1),
        ),  # strided groups instead of consecutive ones
        (
            "intrinsic_dim.d_int90",
            lambda dims, scores, baseline, fraction=0.9: next(
                d for d, s in zip(dims, scores) if s >= fraction * baseline
            ),
        ),  # first in list order
        (
            "intrinsic_dim.d_int90",
            lambda dims, scores, baseline, fraction=0.9: min(
                d for d, s in zip(dims, scores) if s > fraction * baseline
            ),
        ),  # strict inequality
        (
            "intrinsic_dim.d_int90",
            lambda dims, scores, baseline, fraction=0.9: min(
                d for d, s in zip(dims, scores) if s >= 0.9 * baseline
            ),
        ),  # ignores fraction
        (
            "intrinsic_dim.dense_projection",
            lambda sizes, d, g: tuple(
                b / b.norm(dim=0) for b in (torch.randn(s, d, generator=g, dtype=DT) for s in sizes)
            ),
        ),  # per layer
        (
            "intrinsic_dim.dense_projection",
            lambda sizes, d, g: tuple(torch.randn(s, d, generator=g, dtype=DT) for s in sizes),
        ),  # not normalised
    ],
)
def test_exercise_checks_reject_typical_mistakes(name, fn, capsys):
    assert not check(name, fn)
    assert "✗" in capsys.readouterr().out


# The widget's closed-form subspace optimum (also the chapter's numerical check) and the widget
# itself.


def test_toy_subspace_optimum_matches_least_squares_and_gradient_optimality():
    from dgm_lib.intrinsic_dim.chapter import toy_subspace_optimum

    t0 = theta_0(2)
    for d in (3, 9, 10, 14):
        P = make_projection("dense", 1000, d, seed=d).matrix().to(DT)
        theta_d, j_min = toy_subspace_optimum(t0, P)
        assert theta_d.dtype == DT and theta_d.shape == (d,)
        assert toy_objective(t0 + P @ theta_d).item() == pytest.approx(j_min, rel=1e-10, abs=1e-18)
        assert j_min == pytest.approx(subspace_minimum(t0, P), rel=1e-9, abs=1e-18)
        x = (t0 + P @ theta_d).requires_grad_(True)
        (grad,) = torch.autograd.grad(toy_objective(x), x)
        assert (P.T @ grad).abs().max().item() < 1e-8  # stationary in the subspace
    with pytest.raises(ValueError, match="theta_0 must have shape"):
        toy_subspace_optimum(torch.zeros(999, dtype=DT), torch.zeros(999, 3, dtype=DT))


def test_intrinsic_dimension_explorer_draws_default_and_redraws():
    import matplotlib.pyplot as plt

    from dgm_lib.intrinsic_dim.explorers import intrinsic_dimension_explorer

    box = intrinsic_dimension_explorer()
    controls = box.children[0].children
    assert [c.value for c in controls] == [9, "dense", 0]
    before = len(plt.get_fignums())
    assert before >= 1
    controls[0].value = 10
    controls[1].value = "fastfood"
    assert len(plt.get_fignums()) == before + 2
    plt.close("all")
