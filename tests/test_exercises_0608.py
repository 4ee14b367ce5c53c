"""The graded exercise paths of chapters 06 (intrinsic dimension) and 08 (ALI/ALICE).

Every check accepts the reference solution and correct alternatives (another solver, another seed,
another optimiser), and rejects at least one typical mistake with the check's own hint; the
experiments' checks verify a property of the result and say what is wrong with it.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from dgm_lib.ali import explicit_cycle
from dgm_lib.exercises import check, known_exercises
from dgm_lib.intrinsic_dim import SubspaceModule
from dgm_lib.intrinsic_dim.chapter import ToyProblem

DT = torch.float64
BOOK = Path(__file__).resolve().parents[1] / "book"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the chapters set it: small networks run as fast, and the experiments'
    checks stay far below their time limit on a loaded 2-core CPU (where two threads contend)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(name: str, fn, capsys) -> tuple[bool, str]:
    """check(name, fn): (passed, the printed line)."""
    capsys.readouterr()
    passed = check(name, fn)
    return passed, capsys.readouterr().out.strip()


def assert_fails(name: str, fn, capsys, *phrases: str) -> None:
    """fn fails check(name) with one friendly line containing every phrase (the hint's, the
    case's)."""
    passed, printed = run(name, fn, capsys)
    assert not passed, printed
    assert printed.startswith(f"✗ {name}: ") and "Hint: " in printed, printed
    assert "Traceback" not in printed and printed.count("\n") == 1, printed  # verdict, hint
    for phrase in phrases:
        assert phrase in printed, (phrase, printed)


KINDS = ("warm-up", "derivation", "implementation", "experiment", "open question")


@pytest.mark.parametrize(
    ("notebook", "chapter"),
    [("06_intrinsic_dimension.ipynb", "intrinsic_dim"), ("08_ali_alice.ipynb", "ali")],
)
def test_each_chapter_has_the_graded_path(notebook, chapter):
    """Every exercise title names its kind, every kind occurs, in the order of the path, and every
    registered check of the chapter is called by the chapter."""
    nb = nbformat.read(BOOK / notebook, as_version=4)
    titles = [
        cell.source.split("\n")[0]
        for cell in nb.cells
        if cell.cell_type == "markdown" and cell.source.startswith("```{exercise}")
    ]
    kinds = [next((k for k in KINDS if title.endswith(f"({k})")), None) for title in titles]
    assert None not in kinds, titles
    assert sorted(set(kinds), key=KINDS.index) == list(KINDS), titles
    assert kinds == sorted(kinds, key=KINDS.index), titles
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    names = [name for name in known_exercises() if name.startswith(f"{chapter}.")]
    assert len(names) >= len(KINDS) - 1  # the open question has no check
    assert all(f'check("{name}", ' in code for name in names), names


# --- chapter 06: intrinsic dimension ---------------------------------------------------------


def toy_objective(theta):
    return (1 - theta.reshape(*theta.shape[:-1], 10, 100).sum(-1)).square().sum(-1)


def test_toy_objective(capsys):
    assert run("intrinsic_dim.toy_objective", toy_objective, capsys)[0]
    # the groups are consecutive blocks of 100, not every 10th parameter
    assert_fails(
        "intrinsic_dim.toy_objective",
        lambda t: (1 - t.reshape(*t.shape[:-1], 100, 10).sum(-2)).square().sum(-1),
        capsys,
        "check 3/4",
        "10 groups of 100 consecutive parameters",
    )


def d_int90(dims, scores, baseline, fraction=0.9):
    return min(d for d, s in zip(dims, scores) if s >= fraction * baseline)


def test_d_int90(capsys):
    assert run("intrinsic_dim.d_int90", d_int90, capsys)[0]
    # the first crossing in list order is not the smallest d when the dims are unsorted
    assert_fails(
        "intrinsic_dim.d_int90",
        lambda dims, scores, baseline, fraction=0.9: next(
            d for d, s in zip(dims, scores) if s >= fraction * baseline
        ),
        capsys,
        "random order",
        "the dims need not be sorted",
    )


def dense_projection(sizes, d, generator):
    blocks = [torch.randn(s, d, generator=generator, dtype=DT) for s in sizes]
    norm = torch.cat(blocks).norm(dim=0)
    return tuple(b / norm for b in blocks)


def test_dense_projection(capsys):
    assert run("intrinsic_dim.dense_projection", dense_projection, capsys)[0]
    # normalising layer by layer
    assert_fails(
        "intrinsic_dim.dense_projection",
        lambda sizes, d, g: tuple(
            b / b.norm(dim=0) for b in (torch.randn(s, d, generator=g, dtype=DT) for s in sizes)
        ),
        capsys,
        "normalise jointly, not layer by layer",
    )


def group_sums(theta_0, P):
    return P.reshape(10, 100, -1).sum(1), 1 - theta_0.reshape(10, 100).sum(1)


def subspace_minimum_lstsq(theta_0, P):
    AP, b = group_sums(theta_0, P)
    theta_d = torch.linalg.lstsq(AP, b.unsqueeze(1)).solution.squeeze(1)
    return (b - AP @ theta_d).square().sum().item()


def subspace_minimum_pinv(theta_0, P):  # another solver, and a tensor instead of a float
    AP, b = group_sums(theta_0, P)
    residual = b - AP @ (torch.linalg.pinv(AP) @ b)
    return residual @ residual


def subspace_minimum_projector(theta_0, P):  # ||(I - Pi) b||^2 with Pi from an orthonormal basis
    AP, b = group_sums(theta_0, P)
    U, S, _ = torch.linalg.svd(AP, full_matrices=False)
    U = U[:, S > 1e-10 * S.max()]
    return float(b @ b - (U.T @ b) @ (U.T @ b))


@pytest.mark.parametrize(
    "fn", [subspace_minimum_lstsq, subspace_minimum_pinv, subspace_minimum_projector]
)
def test_subspace_minimum_accepts_every_correct_solver(fn, capsys):
    assert run("intrinsic_dim.subspace_minimum", fn, capsys)[0]


def test_subspace_minimum_is_not_zero_just_because_d_is_10(capsys):
    def shortcut(theta_0, P):
        return 0.0 if P.shape[1] >= 10 else subspace_minimum_lstsq(theta_0, P)

    assert_fails(
        "intrinsic_dim.subspace_minimum",
        shortcut,
        capsys,
        "check 3/3",
        "rank(A P) = 8 < 10",
        "it is 0 only when rank(A P) = 10",
    )


def test_subspace_minimum_catches_the_normal_equations_and_a_forgotten_theta_0(capsys):
    def normal_equations(theta_0, P):  # (A P)^T A P is singular for d > 10 or repeated columns
        AP, b = group_sums(theta_0, P)
        theta_d = torch.linalg.solve(AP.T @ AP, AP.T @ b)
        return (b - AP @ theta_d).square().sum().item()

    assert_fails(
        "intrinsic_dim.subspace_minimum", normal_equations, capsys, "the normal equations do not"
    )

    def no_theta_0(theta_0, P):  # b = 1: the start point forgotten
        return subspace_minimum_lstsq(torch.zeros_like(theta_0), P)

    assert_fails(
        "intrinsic_dim.subspace_minimum", no_theta_0, capsys, "check 1/3", "b = 1 - A theta_0"
    )

    def norm_not_squared(theta_0, P):
        return math.sqrt(subspace_minimum_lstsq(theta_0, P))

    assert_fails(
        "intrinsic_dim.subspace_minimum", norm_not_squared, capsys, "the SQUARED residual norm"
    )


def minimise(objective: torch.nn.Module, params, optimizer=None, steps: int = 1) -> None:
    """`steps` steps of `optimizer` (default L-BFGS with a strong Wolfe line search) on the module
    `objective()` over `params`."""
    params = list(params)
    opt = (
        optimizer(params)
        if optimizer
        else torch.optim.LBFGS(params, max_iter=200, line_search_fn="strong_wolfe")
    )

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)


def toy_training(dims, seed, *, native=False, adam=False, divide=True):
    """The experiment's reference (L-BFGS on theta_d) and its typical mistakes."""
    ratios = []
    for d in dims:
        toy = ToyProblem(generator=torch.Generator().manual_seed(seed)).double()
        J_0 = toy().item()
        model = SubspaceModule(toy, d, "dense", seed=seed)
        trained = toy if native else model  # native: the mistake of training all 1000 weights
        if adam:  # 50 Adam steps: far from converged on this badly conditioned problem
            minimise(trained, trained.parameters(), lambda p: torch.optim.Adam(p, lr=0.1), 50)
        else:
            minimise(trained, trained.parameters())
        J = trained().item()
        ratios.append(J / J_0 if divide else J)
    return ratios


def test_toy_subspace_training_accepts_the_reference_and_other_valid_runs(capsys):
    assert run("intrinsic_dim.toy_subspace_training", toy_training, capsys)[0]

    def other_seed_and_settings(dims, seed):  # another seed, a longer history, a tensor result
        ratios = []
        for d in dims:
            toy = ToyProblem(generator=torch.Generator().manual_seed(seed + 100)).double()
            J_0 = toy().detach()
            model = SubspaceModule(toy, d, "dense", seed=seed + 7)
            lbfgs = partial(torch.optim.LBFGS, max_iter=500, history_size=50, tolerance_grad=1e-9)
            minimise(model, model.parameters(), lbfgs)
            ratios.append(model().detach() / J_0)
        return torch.stack(ratios)

    assert run("intrinsic_dim.toy_subspace_training", other_seed_and_settings, capsys)[0]


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"native": True}, "are you training the native parameters"),
        ({"divide": False}, "outside [0, 1]"),
        ({"adam": True}, "train to convergence"),
    ],
    ids=["native-parameters", "J-not-ratio", "not-converged"],
)
def test_toy_subspace_training_catches_typical_mistakes(kwargs, phrase, capsys):
    assert_fails(
        "intrinsic_dim.toy_subspace_training",
        lambda dims, seed: toy_training(dims, seed, **kwargs),
        capsys,
        phrase,
        "never toy.parameters()",  # the hint
    )


def test_toy_subspace_training_needs_one_ratio_per_d(capsys):
    assert_fails(
        "intrinsic_dim.toy_subspace_training",
        lambda dims, seed: toy_training(dims[:1], seed),
        capsys,
        "return a list of 4 ratios",
    )


# --- chapter 08: ALI and ALICE ---------------------------------------------------------------


def test_optimal_discriminator(capsys):
    assert run("ali.optimal_discriminator", lambda q, p: torch.sigmoid(q - p), capsys)[0]
    assert_fails(
        "ali.optimal_discriminator",
        lambda q, p: q.exp() / (q.exp() + p.exp()),
        capsys,
        "check 2/2",
        "Exponentiating log-densities",
    )


def jsd_from_discriminator(q, p):
    D = q / (q + p)
    value = (torch.xlogy(q, D) + torch.xlogy(p, 1 - D)).sum()
    return ((value + math.log(4)) / 2).item()


def jsd_by_definition(q, p):  # a correct alternative: the definition, as a tensor
    m = (q + p) / 2
    return (torch.xlogy(q, q / m).nansum() + torch.xlogy(p, p / m).nansum()) / 2


@pytest.mark.parametrize("fn", [jsd_from_discriminator, jsd_by_definition])
def test_jsd_accepts_the_reference_and_the_definition(fn, capsys):
    assert run("ali.jsd_from_discriminator", fn, capsys)[0]


def test_jsd_catches_the_missing_half_and_0_log_0(capsys):
    def no_half(q, p):
        D = q / (q + p)
        return ((torch.xlogy(q, D) + torch.xlogy(p, 1 - D)).sum() + math.log(4)).item()

    assert_fails("ali.jsd_from_discriminator", no_half, capsys, "do not forget the 1/2")

    def naive_log(q, p):  # 0 * log 0 = NaN where the supports are disjoint
        D = q / (q + p)
        return ((q * D.log() + p * (1 - D).log()).sum() + math.log(4)).item() / 2

    assert_fails(
        "ali.jsd_from_discriminator", naive_log, capsys, "check 3/3", "is nan", "torch.xlogy"
    )


def sampler_loss(logits_q, logits_p):
    return -(F.logsigmoid(-logits_q).mean() + F.logsigmoid(logits_p).mean())


def sampler_loss_bce(logits_q, logits_p):  # a correct alternative: cross-entropies, labels swapped
    return F.binary_cross_entropy_with_logits(
        logits_q, torch.zeros_like(logits_q)
    ) + F.binary_cross_entropy_with_logits(logits_p, torch.ones_like(logits_p))


@pytest.mark.parametrize("fn", [sampler_loss, sampler_loss_bce])
def test_sampler_loss_accepts_the_reference_and_cross_entropies(fn, capsys):
    assert run("ali.sampler_loss", fn, capsys)[0]


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (  # minimising L_ALI itself: the saturating form
            lambda q, p: F.logsigmoid(q).mean() + F.logsigmoid(-p).mean(),
            "check 1/3",
        ),
        (  # the discriminator's own loss: labels not swapped
            lambda q, p: -(F.logsigmoid(q).mean() + F.logsigmoid(-p).mean()),
            "check 1/3",
        ),
        (  # one mean over both batches weights the larger batch more
            lambda q, p: -torch.cat((F.logsigmoid(-q), F.logsigmoid(p))).mean() * 2,
            "check 2/3",
        ),
        (  # log of a sigmoid that rounded to 0 or 1
            lambda q, p: (
                -(torch.log(1 - torch.sigmoid(q)).mean() + torch.log(torch.sigmoid(p)).mean())
            ),
            "check 3/3",
        ),
    ],
    ids=["saturating", "labels-not-swapped", "one-mean", "log-sigmoid-overflow"],
)
def test_sampler_loss_catches_typical_mistakes(fn, phrase, capsys):
    assert_fails("ali.sampler_loss", fn, capsys, phrase, "swaps the discriminator's labels")


def test_cycle_consistency(capsys):
    assert run("ali.cycle_consistency", lambda x, y: (x - y).square().sum(1).mean(), capsys)[0]
    assert_fails(
        "ali.cycle_consistency",
        lambda x, y: (x - y).square().mean(),
        capsys,
        "divides by the dimension too",
    )


def cycle_steps(model, x, steps, *, lr=1e-3, which=("encoder", "decoder"), step=True):
    """The experiment's reference and its typical mistakes."""
    params = [p for name in which for p in getattr(model, name).parameters()]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    for _ in range(steps):
        batch = x[torch.randint(len(x), (128,))]
        loss = explicit_cycle(batch, model.reconstruct(batch))
        optimizer.zero_grad()
        loss.backward()
        if step:
            optimizer.step()
    return model


def test_cycle_steps_accepts_the_reference_and_other_valid_runs(capsys):
    torch.manual_seed(0)
    assert run("ali.cycle_steps", cycle_steps, capsys)[0]

    def other_run(model, x, steps):  # another seed, a larger learning rate, all parameters
        torch.manual_seed(5)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for start in range(0, steps * 64, 64):
            batch = x[start % len(x) :][:64]
            optimizer.zero_grad()
            explicit_cycle(batch, model.reconstruct(batch)).backward()
            optimizer.step()
        return model

    assert run("ali.cycle_steps", other_run, capsys)[0]


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"which": ("decoder",)}, "only, and"),
        ({"step": False}, "did not drop"),
    ],
    ids=["decoder-only", "no-optimizer-step"],
)
def test_cycle_steps_catches_typical_mistakes(kwargs, phrase, capsys):
    torch.manual_seed(0)
    assert_fails(
        "ali.cycle_steps",
        lambda model, x, steps: cycle_steps(model, x, steps, **kwargs),
        capsys,
        phrase,
        "Training the decoder alone cannot separate codes",  # the hint
    )


def test_cycle_steps_wants_the_model_back(capsys):
    def returns_the_loss(model, x, steps):
        cycle_steps(model, x, steps)
        return explicit_cycle(x, model.reconstruct(x)).item()

    assert_fails("ali.cycle_steps", returns_the_loss, capsys, "return the trained model itself")


def test_cycle_steps_check_leaves_the_global_random_state_alone(capsys):
    def untouched(model, x, steps):
        return model

    state = torch.get_rng_state()
    check("ali.cycle_steps", untouched)
    assert torch.equal(state, torch.get_rng_state())
