"""dgm_lib.flows.multiscale and its zoo recipes, zuko-style in float64.

Log-dets against autograd Jacobians (forward and inverse), round trips, gradients for every
parameter, the split prior's density, errors naming the argument, the recipe's exact resume.
"""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
from torch.autograd.functional import jacobian

from dgm_lib import zoo
from dgm_lib.data.mnist import mnist_images
from dgm_lib.dequantization import (
    DequantizedFlow,
    UniformDequantizer,
    bits_per_dim,
    logit_preprocess,
)
from dgm_lib.dequantization.chapter import evaluate_mnist
from dgm_lib.flows import Compose, Flow, Inverse, StandardNormal, Transform
from dgm_lib.flows.multiscale import (
    ConvAffineCoupling,
    FactorOut,
    Squeeze,
    glow_step,
    make_multiscale_flow,
    multiscale_transform,
    sample_at_temperature,
)

B = 3  # batch size of the Jacobian checks


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _randomized(layer: Transform, shape: tuple[int, ...], scale: float = 0.3) -> Transform:
    """The layer after ActNorm's data-dependent init, all parameters moved off their init."""
    torch.manual_seed(0)
    layer(1.0 + 2.0 * torch.randn(16, *shape))
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn_like(p))
    return layer


# name -> (factory, event shape); images are tiny so Jacobians are at most 32 x 32.
LAYERS: dict[str, tuple[Callable[[], Transform], tuple[int, ...]]] = {
    "Squeeze": (Squeeze, (2, 4, 4)),
    "Unsqueeze": (lambda: Inverse(Squeeze()), (8, 2, 2)),
    "ConvAffineCoupling": (lambda: ConvAffineCoupling(4, 8), (4, 2, 2)),
    "ConvAffineCoupling-odd": (lambda: ConvAffineCoupling(3, 8), (3, 2, 2)),
    "glow_step": (lambda: glow_step(4, 8), (4, 2, 2)),
    "FactorOut": (lambda: FactorOut(4, None, 8), (4, 2, 2)),
    "FactorOut-inner": (lambda: FactorOut(4, glow_step(2, 8), 8), (4, 2, 2)),
    "multiscale-1x4x4": (
        lambda: multiscale_transform((1, 4, 4), levels=2, steps=2, hidden=8),
        (1, 4, 4),
    ),
    "multiscale-2x4x4": (
        lambda: multiscale_transform((2, 4, 4), levels=2, steps=1, hidden=8),
        (2, 4, 4),
    ),
    "multiscale-1x8x6": (
        lambda: multiscale_transform((1, 8, 6), levels=2, steps=1, hidden=4),
        (1, 8, 6),
    ),
    "multiscale-logit": (
        lambda: Compose(logit_preprocess(256, 0.05), multiscale_transform((1, 4, 4), 2, 1, 8)),
        (1, 4, 4),
    ),
}


def _layer_and_input(name: str) -> tuple[Transform, torch.Tensor]:
    factory, shape = LAYERS[name]
    layer = _randomized(factory(), shape) if name != "multiscale-logit" else factory()
    if name == "multiscale-logit":
        torch.manual_seed(0)
        layer(256 * torch.rand(16, *shape))  # ActNorm init on data in [0, 256)
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(0.3 * torch.randn_like(p))
        x = 256 * torch.rand(B, *shape, generator=torch.Generator().manual_seed(1))
    else:
        x = torch.randn(B, *shape, generator=torch.Generator().manual_seed(1))
    return layer, x


def _autograd_log_det(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """log|det d fn(x)[b] / d x[b]| per sample, from the autograd Jacobian of the flattened map."""
    out = []
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        jac = jacobian(lambda v: fn(v.reshape(xb.shape)).reshape(-1), xb.reshape(-1))
        out.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


@pytest.mark.parametrize("name", LAYERS)
def test_forward_log_det_is_autograd_jacobian(name):
    layer, x = _layer_and_input(name)
    z, log_det = layer(x)
    assert z.numel() == x.numel() and log_det.shape == (B,)
    expected = _autograd_log_det(lambda v: layer(v)[0], x)
    torch.testing.assert_close(log_det, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", LAYERS)
def test_inverse_log_det_is_autograd_jacobian_and_round_trip(name):
    layer, x = _layer_and_input(name)
    z, log_det = layer(x)
    x_back, inv_log_det = layer.inverse(z)
    torch.testing.assert_close(x_back, x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(inv_log_det, -log_det, rtol=1e-9, atol=1e-9)
    expected = _autograd_log_det(lambda v: layer.inverse(v)[0], z)
    torch.testing.assert_close(inv_log_det, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", [n for n in LAYERS if "squeeze" not in n.lower()])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_every_parameter_gets_a_gradient(name, direction):
    layer, x = _layer_and_input(name)
    if direction == "inverse":
        x = layer(x)[0].detach()
    out, log_det = layer(x) if direction == "forward" else layer.inverse(x)
    (out.square().sum() + log_det.sum()).backward()
    for pname, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_squeeze_layout():
    x = torch.arange(2 * 4 * 6, dtype=torch.float64).reshape(1, 2, 4, 6)
    z, _ = Squeeze()(x)
    assert z.shape == (1, 8, 2, 3)
    for c in range(2):
        for a in range(2):
            for b in range(2):
                torch.testing.assert_close(z[0, 4 * c + 2 * a + b], x[0, c, a::2, b::2])


def test_layers_start_at_identity_apart_from_actnorm_and_rotation():
    x = torch.randn(B, 4, 2, 2)
    for layer in (ConvAffineCoupling(4, 8), FactorOut(4, None, 8)):
        z, log_det = layer(x)
        torch.testing.assert_close(z, x)
        torch.testing.assert_close(log_det, torch.zeros(B))


def test_factor_out_is_the_conditional_gaussian_prior():
    """Flow(N(0, I), FactorOut(None)): log N(x_1; 0, I) + log N(x_2; mu(x_1), sigma(x_1)^2)."""
    layer = _randomized(FactorOut(4, None, 8), (4, 2, 2))
    flow = Flow(StandardNormal(4, 2, 2), layer)
    x = torch.randn(B, 4, 2, 2)
    mu, raw = layer.prior(x[:, :2]).chunk(2, dim=1)
    sigma = torch.exp(3 * torch.tanh(raw / 3))
    normal = torch.distributions.Normal
    expected = normal(0.0, 1.0).log_prob(x[:, :2]).sum((1, 2, 3)) + normal(mu, sigma).log_prob(
        x[:, 2:]
    ).sum((1, 2, 3))
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_multiscale_flow_sizes_and_sampling():
    flow = make_multiscale_flow(
        (1, 28, 28), levels=3, steps=1, hidden=4, preprocess=logit_preprocess()
    )
    y = torch.randint(0, 256, (2, 1, 28, 28)).double()
    model = DequantizedFlow(flow, UniformDequantizer())
    loss = model(y)["loss"]
    assert torch.isfinite(loss)
    g = torch.Generator().manual_seed(0)
    x = sample_at_temperature(flow, 3, 0.7, generator=g)
    edge = (
        256 * 0.05 / 0.9
    )  # the inverse logit maps R to (-edge, 256 + edge) before flooring and clamping
    assert x.shape == (3, 1, 28, 28) and ((x > -edge) & (x < 256 + edge)).all()
    y = model.sample(3, generator=g)
    assert ((y >= 0) & (y <= 255) & (y == y.round())).all()
    x1 = sample_at_temperature(flow, 3, 1.0, generator=torch.Generator().manual_seed(0))
    x2 = flow.sample(3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x1, x2)


def test_multiscale_flow_to_float32_and_back():
    flow = make_multiscale_flow((1, 4, 4), levels=2, steps=1, hidden=4)
    flow = flow.float()
    assert flow.log_prob(torch.randn(2, 1, 4, 4, dtype=torch.float32)).dtype == torch.float32
    assert flow.sample(2).dtype == torch.float32


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: Squeeze()(torch.randn(2, 1, 3, 4)), ValueError, ["x", "even", "(2, 1, 3, 4)"]),
        (lambda: Squeeze()(torch.randn(2, 4, 4)), ValueError, ["x", "(batch, C, H, W)"]),
        (
            lambda: Squeeze()(torch.ones(2, 1, 4, 4, dtype=torch.int64)),
            TypeError,
            ["x", "floating"],
        ),
        (lambda: Squeeze().inverse(torch.randn(2, 3, 2, 2)), ValueError, ["z", "multiple of 4"]),
        (lambda: ConvAffineCoupling(4)(torch.randn(2, 3, 2, 2)), ValueError, ["x", "4"]),
        (lambda: ConvAffineCoupling(1), ValueError, ["channels", ">= 2"]),
        (lambda: ConvAffineCoupling(4, 0), ValueError, ["hidden"]),
        (lambda: ConvAffineCoupling(4.0), TypeError, ["channels"]),
        (lambda: FactorOut(4, inner="glow"), TypeError, ["inner"]),
        (lambda: FactorOut(4)(torch.randn(2, 4, 2)), ValueError, ["x"]),
        (
            lambda: FactorOut(4).inverse(torch.full((2, 4, 2, 2), math.nan)),
            ValueError,
            ["z", "NaN"],
        ),
        (
            lambda: multiscale_transform((1, 28, 28), levels=4),
            ValueError,
            ["levels=4", "level 3 has 7 x 7", "levels <= 3"],
        ),
        (
            lambda: multiscale_transform((1, 3, 3), levels=1),
            ValueError,
            ["1 channel", "3 x 3", "fewer levels"],
        ),
        (lambda: multiscale_transform((28, 28)), ValueError, ["shape"]),
        (lambda: multiscale_transform((1, 28, 28), steps=0), ValueError, ["steps"]),
        (
            lambda: make_multiscale_flow((1, 4, 4), 2, 1, 4, preprocess="logit"),
            TypeError,
            ["preprocess"],
        ),
        (
            lambda: sample_at_temperature(make_multiscale_flow((1, 4, 4), 2, 1, 4), 2, 0.0),
            ValueError,
            ["temperature"],
        ),
        (lambda: sample_at_temperature(Squeeze(), 2), TypeError, ["flow"]),
    ],
)
def test_bad_input_raises_naming_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value)


# --------------------------------------------------------------------------------------------------
# zoo recipes


def _recipes():
    from dgm_lib.dequantization import multiscale_mnist as multiscale_recipes

    return multiscale_recipes


def test_zoo_configs_are_registered_resumable_and_within_budget():
    recipes = _recipes()
    for dequantizer in recipes.DEQUANTIZERS:
        name = f"deq_mnist_multiscale_{dequantizer}"
        assert name in zoo.names()
        entry = zoo.entry(name)
        assert entry.resumable and entry.config["dequantizer"] == dequantizer
        model = entry.build()
        n_params = sum(p.numel() for p in model.parameters())
        assert (
            4 * n_params < 0.5 * entry.max_bytes
        )  # float32 weights, room for metadata and buffers


def test_existing_dequantization_configs_are_unchanged():
    config = zoo.entry("deq_mnist_uniform").config
    assert config["flow"] == "realnvp_checkerboard" and config["steps"] == 1200
    assert "levels" not in config


def test_warmup_cosine_schedule():
    f = _recipes().warmup_cosine
    assert f(0, 1000, 100) == pytest.approx(0.01) and f(99, 1000, 100) == pytest.approx(1.0)
    assert f(100, 1000, 100) == pytest.approx(1.0) and f(550, 1000, 100) == pytest.approx(0.5)
    assert f(1000, 1000, 100) == pytest.approx(0.0)


def test_held_out_bpd_is_the_evaluate_mnist_bound():
    """The evaluate metric is evaluate_mnist's bound bpd_elbo (k = 1), up to the noise draw."""
    torch.set_default_dtype(torch.float32)
    recipes = _recipes()
    flow = make_multiscale_flow((1, 28, 28), 3, 1, 4, logit_preprocess(256, recipes.ALPHA))
    model = DequantizedFlow(flow, UniformDequantizer())
    metric = recipes.held_out_bpd(model, n=40)
    reference = evaluate_mnist(model, "test", k=1, n=40, generator=torch.Generator().manual_seed(0))
    assert set(metric) == {"test_bpd", "train_bpd"}
    assert (
        abs(metric["test_bpd"] - reference["bpd_elbo"]) < 0.01
    )  # uniform noise moves the bound very little
    y = mnist_images("test", "pixels")[:40]
    direct = bits_per_dim(model.elbo(y, torch.Generator().manual_seed(0)), 784).mean().item()
    assert abs(metric["test_bpd"] - direct) < 0.01


def test_recipe_trains_and_resumes_exactly(tmp_path, monkeypatch):
    """The recipe's train() on a tiny flow: the loss falls; a killed run resumes bit-for-bit."""
    torch.set_default_dtype(torch.float32)
    recipes = _recipes()
    monkeypatch.setattr(recipes, "EVAL_EVERY", 3)
    monkeypatch.setattr(recipes, "CHECKPOINT_EVERY", 2)
    monkeypatch.setattr(recipes, "WARMUP", 2)
    kill = {"at": None}

    def metric(model):
        if kill["at"] is not None:
            kill["at"], at = None, kill["at"]
            raise KeyboardInterrupt(f"killed at {at}")
        return recipes.held_out_bpd(model, n=8)

    monkeypatch.setattr(recipes, "_logged_held_out_bpd", metric)

    def run(path, killed: bool) -> tuple:
        torch.manual_seed(0)
        flow = make_multiscale_flow((1, 28, 28), 2, 1, 4, logit_preprocess(256, recipes.ALPHA))
        model = DequantizedFlow(flow, UniformDequantizer())
        if killed:
            kill["at"] = 3
            with pytest.raises(
                KeyboardInterrupt
            ):  # evaluation of step 3 dies; the checkpoint holds step 2
                recipes.train(model, steps=6, checkpoint_path=path, progress=False)
            torch.manual_seed(123)  # the resumed process starts from another global RNG state
        history = recipes.train(model, steps=6, checkpoint_path=path, progress=False)
        return history, model

    full, model_a = run(tmp_path / "a.pt", killed=False)
    resumed, model_b = run(tmp_path / "b.pt", killed=True)
    assert full["loss"][-1] < full["loss"][0]
    assert full.terms == resumed.terms
    assert [s for s, _ in full.evaluations["test_bpd"]] == [3, 6]
    assert full.evaluations == resumed.evaluations
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dequantizer", ["uniform", "variational"])
def test_shipped_checkpoint_reaches_the_target(dequantizer):
    """A shipped multiscale checkpoint: within budget, at most 1.5 bits/dim on the test digits."""
    torch.set_default_dtype(torch.float32)
    name = f"deq_mnist_multiscale_{dequantizer}"
    path = zoo.checkpoint_path(name)
    if not path.exists():
        pytest.skip(f"{name} not trained yet (python -m dgm_lib.zoo train {name})")
    assert path.stat().st_size <= _recipes().MAX_BYTES
    model = zoo.load(name, train_if_missing=False, device="cpu")
    bound = evaluate_mnist(model, "test", k=1, generator=torch.Generator().manual_seed(0))
    assert bound["bpd_elbo"] <= 1.5
