"""dgm_lib.intrinsic_dim: projections, subspace training, the toy problem's d_int = 10, d_int90
sweeps (float64)."""

import json
import math

import pytest
import scipy.linalg
import torch
from torch import nn

from dgm_lib.intrinsic_dim import (
    PROJECTIONS,
    DenseProjection,
    FastfoodProjection,
    IntrinsicDimResult,
    SparseProjection,
    SubspaceModule,
    make_projection,
    measure_intrinsic_dimension,
    walsh_hadamard,
)
from dgm_lib.intrinsic_dim.chapter import ToyProblem, toy_objective
from dgm_lib.intrinsic_dim.projections import MAX_MATRIX_ENTRIES

pytestmark = pytest.mark.usefixtures("float64", "one_thread")


def group_sums() -> torch.Tensor:
    """A (10, 1000): row r sums the r-th group of 100 consecutive parameters, so J(theta) = ||1 - A
    theta||^2."""
    return torch.block_diag(*[torch.ones(1, 100)] * 10)


def subspace_minimum(model: SubspaceModule) -> float:
    """min over theta_d of J(theta_0 + P theta_d) in closed form: J is quadratic, so it is a
    least-squares residual."""
    A, P = group_sums(), model.projection.matrix()
    M, r = A @ P, 1 - A @ model.theta_0
    x = torch.linalg.lstsq(M, r, driver="gelsd").solution
    return float((r - M @ x).pow(2).sum())


def toy_model(d: int, projection: str = "dense", seed: int = 0) -> SubspaceModule:
    return SubspaceModule(ToyProblem(torch.Generator().manual_seed(seed)), d, projection, seed=seed)


# ---------------------------------------------------------------- the toy problem


def test_toy_objective_values_and_shape():
    theta = torch.full((1000,), 0.01)  # every group sums to 1
    assert toy_objective(theta).item() == pytest.approx(0.0, abs=1e-24)
    assert toy_objective(torch.zeros(1000)).item() == 10.0
    batch = torch.randn(3, 4, 1000)
    J = toy_objective(batch)
    assert J.shape == (3, 4)
    assert torch.allclose(J, ((1 - batch @ group_sums().T) ** 2).sum(-1))


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_toy_intrinsic_dimension_is_10_in_closed_form(projection):
    minima = {d: subspace_minimum(toy_model(d, projection)) for d in range(1, 13)}
    for d in range(
        1, 10
    ):  # 10 independent constraints: a d < 10 subspace cannot satisfy all of them
        assert minima[d] > 1e-2, (d, minima[d])
    for d in (10, 11, 12):
        assert minima[d] < 1e-18, (d, minima[d])
    result = measure_intrinsic_dimension(
        lambda d: 1.0 if minima[d] < 1e-12 else 0.0,
        list(minima),
        baseline=1.0,
        baseline_kind="fixed",
        threshold_fraction=1.0,
    )
    assert result.d_int90 == 10


@pytest.mark.parametrize("d", [9, 10])
def test_toy_subspace_training_reaches_the_closed_form_optimum(d):
    model = toy_model(d)
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        max_iter=500,
        tolerance_grad=1e-14,
        tolerance_change=1e-20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = model()
        loss.backward()
        return loss

    optimizer.step(closure)
    best = subspace_minimum(model)
    J = model().item()
    if d == 10:
        assert J < 1e-6 and best < 1e-18
    else:
        assert best > 1e-2 and J == pytest.approx(best, rel=1e-8)


# ---------------------------------------------------------------- projections


def test_walsh_hadamard_matches_sylvester_matrix():
    for L in (1, 2, 8, 64):
        x = torch.randn(3, L)
        H = torch.tensor(scipy.linalg.hadamard(L), dtype=torch.float64)
        assert torch.allclose(walsh_hadamard(x), x @ H.T, atol=1e-12)
    with pytest.raises(ValueError, match="power-of-2"):
        walsh_hadamard(torch.randn(6))


@pytest.mark.parametrize("projection", ["dense", "sparse"])
def test_dense_and_sparse_columns_have_unit_norm_exactly(projection):
    P = make_projection(projection, 5000, 60, seed=3).matrix()
    assert P.shape == (5000, 60)
    assert torch.allclose(P.norm(dim=0), torch.ones(60), atol=1e-12)


def test_sparse_projection_density_and_values():
    D, d = 10_000, 200
    proj = SparseProjection(D, d, seed=1)
    assert proj.nnz / (D * d) == pytest.approx(
        1 / math.sqrt(D), rel=0.03
    )  # Li, Hastie, Church: s = sqrt(D)
    P = proj.matrix()
    nonzero = P != 0
    assert torch.allclose(
        P[nonzero].abs(), (1 / nonzero.sum(0).double().sqrt()).expand(D, d)[nonzero]
    )
    assert torch.equal(proj.sparse_matrix().to_dense(), P)


def test_sparse_projection_never_has_an_empty_column():
    P = SparseProjection(
        4, 4, seed=0
    ).matrix()  # s = 2: each column is empty with probability 1/16 before the fix
    assert (P != 0).any(0).all()
    assert torch.allclose(P.norm(dim=0), torch.ones(4))


def test_fastfood_columns_unit_norm_when_L_divides_D_and_close_otherwise():
    exact = FastfoodProjection(4096, 100, seed=0)  # L = 128 divides D
    assert exact.L == 128 and exact.blocks == 32
    assert torch.allclose(exact.matrix().norm(dim=0), torch.ones(100), atol=1e-12)
    approx = FastfoodProjection(
        3000, 100, seed=0
    )  # 23.4 blocks: the truncated block makes norms ~1
    norms = approx.matrix().norm(dim=0)
    assert (norms - 1).abs().max() < 0.05
    assert norms.pow(2).mean().item() == pytest.approx(1.0, abs=0.02)


def test_fastfood_is_the_stated_formula():
    D, d, seed = 40, 5, 2
    proj = FastfoodProjection(D, d, seed=seed)
    L = proj.L
    assert L == 8 and proj.blocks == 5
    H = torch.tensor(scipy.linalg.hadamard(L), dtype=torch.float64)
    blocks = []
    for b in range(proj.blocks):
        Pi = torch.eye(L)[proj.Pi[b]]  # (Pi x)_i = x_{pi(i)}
        G = torch.diag(proj.G[b])
        V = H @ G @ Pi @ H @ torch.diag(proj.B[b])
        blocks.append(V / math.sqrt(L * proj.G[b].pow(2).sum()))
    expected = torch.cat(blocks)[:D, :d] / math.sqrt(D / L)
    assert torch.allclose(proj.matrix(), expected, atol=1e-12)


def test_fastfood_matrix_equals_operator_on_basis_vectors():
    proj = FastfoodProjection(1000, 37, seed=5)
    columns = torch.stack([proj(e) for e in torch.eye(37)], dim=1)
    assert torch.allclose(proj.matrix(), columns, atol=1e-12)
    theta = torch.randn(37)
    assert torch.allclose(proj(theta), proj.matrix() @ theta, atol=1e-12)


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_batched_theta_matches_rows(projection):
    proj = make_projection(projection, 777, 20, seed=1)
    theta = torch.randn(2, 3, 20)
    out = proj(theta)
    assert out.shape == (2, 3, 777)
    assert torch.allclose(out[1, 2], proj(theta[1, 2]), atol=1e-12)


def offdiagonal(gram: torch.Tensor) -> torch.Tensor:
    return gram[~torch.eye(len(gram), dtype=torch.bool)]


def test_fastfood_and_dense_agree_in_distribution():
    """Both: E[P^T P] = I with unit diagonal, off-diagonals of order 1/sqrt(D), P theta ~ N(0,
    ||theta||^2 / D).

    Dense: an off-diagonal entry is the dot product of two independent uniform unit vectors,
    variance 1/D. Fastfood: per block (P^T P)_jk = b_j b_k sum_i (w_i - 1/L) h_ij h_ik with w_i =
    G_i^2 / ||G||^2 (H's columns are orthogonal), variance ~ sum_i Var(G_i^2) / L^2 = 2 / L;
    averaged over D / L blocks: 2 / D, a sqrt(2) larger spread than dense, as the Gaussian scaling G
    adds the variance of G_i^2.
    """
    D, d = 16_384, 64
    expected_off_std = {"dense": 1.0, "fastfood": math.sqrt(2)}  # times 1/sqrt(D)
    for kind in ("dense", "fastfood"):
        proj = make_projection(kind, D, d, seed=0)
        P = proj.matrix()
        gram = P.T @ P
        off = offdiagonal(gram) * math.sqrt(D)
        assert gram.diagonal().sub(1).abs().max() < 1e-12, kind
        assert abs(off.mean().item()) < 0.1 and off.std().item() == pytest.approx(
            expected_off_std[kind], rel=0.08
        ), (kind, off.mean().item(), off.std().item())
        theta = torch.randn(d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        y = proj(theta) * math.sqrt(D) / theta.norm()  # ~ N(0, 1) entries
        mean, var = y.mean().item(), y.var().item()
        kurtosis = ((y - mean) ** 4).mean().item() / var**2
        assert (
            abs(mean) < 0.05
            and var == pytest.approx(1.0, abs=0.05)
            and kurtosis == pytest.approx(3.0, abs=0.2)
        ), (kind, mean, var, kurtosis)


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_projection_is_seeded(projection):
    a, b, c = (make_projection(projection, 500, 10, seed=s).matrix() for s in (4, 4, 5))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_output_dtype_and_device_follow_theta_d(projection):
    torch.set_default_dtype(torch.float32)
    try:
        proj = make_projection(projection, 300, 7)
    finally:
        torch.set_default_dtype(torch.float64)
    for dtype in (torch.float32, torch.float64):
        out = proj(torch.randn(7, dtype=dtype))
        assert out.dtype == dtype and out.device == torch.device("cpu")
    if torch.cuda.is_available():
        assert proj.to("cuda")(torch.randn(7, device="cuda")).device.type == "cuda"


# ---------------------------------------------------------------- SubspaceModule


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_subspace_module_starts_at_theta_0_and_only_theta_d_learns(projection):
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = SubspaceModule(net, 12, projection, seed=1)
    assert [name for name, _ in model.named_parameters()] == ["theta_d"]
    assert model.D == sum(p.numel() for p in net.parameters()) == 5 * 16 + 16 + 16 * 3 + 3
    x = torch.randn(8, 5)
    assert torch.allclose(model(x), net(x), atol=1e-14)  # theta_d = 0 is the initialisation
    theta_0 = model.theta_0.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        assert model.theta_d.grad is not None and model.theta_d.grad.abs().sum() > 0
        assert all(p.grad is None for p in net.parameters())
        assert not model.theta_0.requires_grad and model.theta_0.grad is None
        optimizer.step()
    assert model.theta_d.abs().sum() > 0
    assert torch.equal(model.theta_0, theta_0)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    native = model.native_parameters()
    assert list(native) == [name for name, _ in net.named_parameters()]
    assert torch.allclose(
        torch.cat([t.flatten() for t in native.values()]), model.theta(), atol=1e-14
    )
    trained_net = small_net()
    trained_net.load_state_dict(native)
    assert torch.allclose(trained_net(x), model(x), atol=1e-12)


def test_theta_is_theta_0_plus_p_theta_d():
    model = SubspaceModule(small_net(), 6, "dense", seed=2)
    with torch.no_grad():
        model.theta_d.copy_(torch.randn(6))
    assert torch.allclose(
        model.theta(), model.theta_0 + model.projection.matrix() @ model.theta_d, atol=1e-14
    )


def test_compressed_is_d_numbers_and_a_seed_and_rebuilds_theta():
    model = SubspaceModule(small_net(), 6, "fastfood", seed=7)
    with torch.no_grad():
        model.theta_d.copy_(torch.randn(6))
    stored = model.compressed()
    assert set(stored) == {"theta_d", "seed", "d", "projection"} and stored["theta_d"].shape == (6,)
    rebuilt = SubspaceModule(small_net(), stored["d"], stored["projection"], seed=stored["seed"])
    with torch.no_grad():
        rebuilt.theta_d.copy_(stored["theta_d"])
    assert torch.equal(rebuilt.theta(), model.theta())


def test_subspace_module_to_dtype_and_train_mode_reach_the_wrapped_module():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    model = SubspaceModule(net.float(), 5, "sparse")
    assert model.theta_d.dtype == torch.float32
    model = model.double()
    assert model.theta_d.dtype == model.theta_0.dtype == torch.float64
    assert (
        net[1].running_mean.dtype == torch.float64
        and model.projection.values.dtype == torch.float64
    )
    model.eval()
    assert not net.training and not net[2].training
    out = model(torch.randn(6, 3))
    assert out.dtype == torch.float64
    model.train()
    assert net.training


def test_subspace_module_errors_name_the_argument():
    net = small_net()
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        SubspaceModule(lambda x: x, 3)
    with pytest.raises(ValueError, match="module must have parameters"):
        SubspaceModule(nn.ReLU(), 3)
    with pytest.raises(ValueError, match="d must be a positive int, got 0"):
        SubspaceModule(net, 0)
    with pytest.raises(TypeError, match="d must be a positive int"):
        SubspaceModule(net, 2.5)
    with pytest.raises(ValueError, match=r"d must be at most D = 147 .*got d = 148"):
        SubspaceModule(net, 148)
    with pytest.raises(
        ValueError, match=r"projection must be one of \('dense', 'sparse', 'fastfood'\), got 'qr'"
    ):
        SubspaceModule(net, 3, "qr")


def test_projection_errors():
    with pytest.raises(ValueError, match=r"projection must be one of .*got 'gaussian'"):
        make_projection("gaussian", 10, 2)
    with pytest.raises(ValueError, match="d must be at most D"):
        DenseProjection(10, 11)
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*63\), got -1"):
        SparseProjection(10, 2, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        FastfoodProjection(10, 2, seed=1.5)
    with pytest.raises(ValueError, match="use projection='sparse' or 'fastfood'"):
        DenseProjection(MAX_MATRIX_ENTRIES // 10 + 1, 10)
    big = FastfoodProjection(199_210, 1000)
    with pytest.raises(ValueError, match="199,210,000 entries"):
        big.matrix()
    assert big(torch.randn(1000)).shape == (199_210,)  # the operator itself scales
    proj = SparseProjection(10, 3)
    with pytest.raises(ValueError, match=r"theta_d must have shape \(\.\.\., d\) with d = 3"):
        proj(torch.zeros(4))
    with pytest.raises(TypeError, match="theta_d must be a floating-point tensor"):
        proj(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., 1000\)"):
        toy_objective(torch.zeros(999))


# ---------------------------------------------------------------- d_int90


def test_d_int90_is_the_first_d_reaching_90_percent_of_the_baseline():
    scores = {10: 0.3, 50: 0.85, 100: 0.89, 200: 0.95, 400: 0.97}
    result = measure_intrinsic_dimension(scores.__getitem__, list(scores), baseline=0.98)
    assert result.threshold == pytest.approx(0.882)
    assert result.d_int90 == 100 and result.baseline_kind == "direct"
    lower = measure_intrinsic_dimension(
        scores.__getitem__, list(scores), baseline=0.98, threshold_fraction=0.5
    )
    assert lower.d_int90 == 50
    never = measure_intrinsic_dimension(scores.__getitem__, [10, 50], baseline=0.98)
    assert never.d_int90 is None


def test_result_json_round_trip_and_consistency_check():
    result = measure_intrinsic_dimension(
        lambda d: d / 1000, [100, 500, 950], baseline=1.0, baseline_kind="fixed"
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert IntrinsicDimResult.from_dict(data) == result and result.d_int90 == 950
    data["d_int90"] = 500
    with pytest.raises(ValueError, match="stored d_int90 = 500 but the stored scores give 950"):
        IntrinsicDimResult.from_dict(data)


def test_measure_intrinsic_dimension_errors():
    ok = lambda d: 0.5  # noqa: E731
    with pytest.raises(ValueError, match="dims must be strictly increasing"):
        measure_intrinsic_dimension(ok, [10, 5], 1.0)
    with pytest.raises(ValueError, match="dims must be a non-empty sequence of positive ints"):
        measure_intrinsic_dimension(ok, [], 1.0)
    with pytest.raises(ValueError, match="baseline must be a positive finite number"):
        measure_intrinsic_dimension(ok, [1], float("nan"))
    with pytest.raises(ValueError, match=r"baseline_kind must be one of \('direct', 'fixed'\)"):
        measure_intrinsic_dimension(ok, [1], 1.0, baseline_kind="best")
    with pytest.raises(ValueError, match=r"threshold_fraction must be in \(0, 1\]"):
        measure_intrinsic_dimension(ok, [1], 1.0, threshold_fraction=90)
    with pytest.raises(ValueError, match="the score at d = 2 is nan"):
        measure_intrinsic_dimension(lambda d: float("nan") if d == 2 else 0.5, [1, 2], 1.0)
    with pytest.raises(TypeError, match="train_and_score must be a callable"):
        measure_intrinsic_dimension(0.5, [1], 1.0)


# ---------------------------------------------------------------- MNIST models and training


def test_model_sizes_match_the_paper():
    from dgm_lib.intrinsic_dim.classifiers import fc_net, lenet, num_parameters

    assert num_parameters(fc_net()) == 199_210  # 784-200-200-10
    assert num_parameters(lenet()) == 44_426
    assert num_parameters(fc_net(50, 1)) == 784 * 50 + 50 + 50 * 10 + 10
    assert (
        lenet()(torch.zeros(2, 1, 28, 28)).shape
        == fc_net()(torch.zeros(2, 1, 28, 28)).shape
        == (2, 10)
    )
    with pytest.raises(ValueError, match="width must be a positive int, got 0"):
        fc_net(width=0)


def test_subspace_training_on_digits_learns_and_leaves_the_module_unchanged():
    from dgm_lib.data import load_mnist
    from dgm_lib.intrinsic_dim.classifiers import accuracy, fc_net, train_classifier

    images, labels = load_mnist("train")
    images, labels = images[:500].double(), labels[:500]
    torch.manual_seed(0)
    net = fc_net(width=32, depth=1).double()
    before = [p.clone() for p in net.parameters()]
    model = SubspaceModule(net, 200, "fastfood")
    chance = accuracy(model, images, labels)
    train_classifier(
        model,
        (images, labels),
        epochs=20,
        lr=0.1,
        batch_size=100,
        generator=torch.Generator().manual_seed(0),
    )
    trained = accuracy(model, images, labels)
    assert trained > 0.7 and trained > chance + 0.4, (chance, trained)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))
    with pytest.raises(ValueError, match="labels must be an int64 tensor"):
        accuracy(model, images, labels.float())


def test_sweep_command_writes_a_loadable_record(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from dgm_lib import zoo
    from dgm_lib.intrinsic_dim import chapter, recipes

    monkeypatch.setattr(recipes, "RECIPE", replace(recipes.RECIPE, epochs=1))
    monkeypatch.setitem(
        recipes.SWEEPS,
        "tiny",
        recipes.Sweep({"w8": ("fc", {"width": 8, "depth": 1})}, (5, 40), "sparse"),
    )
    zoo.register_study(zoo.Study("intrinsic_dim_tiny", run=lambda: recipes.study("tiny")))
    try:
        assert zoo.main(["study", "intrinsic_dim_tiny", "--dir", str(tmp_path)]) == 0
    finally:
        zoo._STUDIES.pop("intrinsic_dim_tiny")
    out = capsys.readouterr().out
    assert "tiny w8 d = 40: test accuracy" in out and "d_int90" in out
    record = chapter.sweep_record("tiny", tmp_path)
    assert record["command"] == "python -m dgm_lib.zoo study intrinsic_dim_tiny"
    assert (
        record["D"] == {"w8": 784 * 8 + 8 + 8 * 10 + 10}
        and record["dims"] == [5, 40]
        and record["epochs"] == 1
    )
    assert record["threads"] == 1 and record["torch_version"] == torch.__version__
    result = chapter.load_sweep("tiny", tmp_path)
    assert (
        isinstance(result, IntrinsicDimResult)
        and result.dims == [5, 40]
        and 0 < result.baseline <= 1
    )
    with pytest.raises(FileNotFoundError, match="python -m dgm_lib.zoo study intrinsic_dim_nope"):
        chapter.sweep_record("nope")


def test_shipped_sweeps_match_the_recipe_and_resolve_d_int90():
    from functools import partial

    from dgm_lib import zoo
    from dgm_lib.intrinsic_dim import chapter, classifiers, recipes

    for name, spec in recipes.SWEEPS.items():
        record = chapter.sweep_record(name)
        assert f"intrinsic_dim_{name}" in zoo.study_names()
        assert record["command"] == f"python -m dgm_lib.zoo study intrinsic_dim_{name}"
        assert (record["dims"], record["projection"]) == (list(spec.dims), spec.projection)
        recipe = (
            record["epochs"],
            record["batch_size"],
            record["lr_direct"],
            record["lr_subspace"],
            record["seed"],
        )
        r = recipes.RECIPE
        assert recipe == (r.epochs, r.batch_size, r.lr, r.subspace_lr, r.seed), name
        assert record["threads"] == 1 and record["wall_time_s"] < 900, (
            name
        )  # one thread, about 10 minutes at most
        loaded = chapter.load_sweep(name)
        results = loaded if isinstance(loaded, dict) else {next(iter(spec.models)): loaded}
        assert set(results) == set(spec.models) == set(record["D"])
        for key, result in results.items():
            model, kwargs = spec.models[key]
            assert record["D"][key] == classifiers.num_parameters(
                partial(classifiers.MODELS[model], **kwargs)()
            )
            assert result.baseline_kind == "direct" and 0.9 < result.baseline <= 1, (
                name,
                key,
                result.baseline,
            )
            assert all(0 <= s <= 1 for s in result.scores)
            # the grid brackets the threshold: d_int90 exists and is not the grid's smallest d
            assert result.d_int90 is not None and result.d_int90 > result.dims[0], (
                name,
                key,
                result,
            )
    assert chapter.sweep_record("fc")["D"] == {"fc": 199_210}
    assert chapter.sweep_record("lenet")["D"] == {"lenet": 44_426}
