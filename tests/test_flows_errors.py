"""dgm_lib.flows raises clear errors: wrong feature size, NaN input, non-invertible configurations,
bad arguments."""

from __future__ import annotations

import pytest
import torch

from dgm_lib.flows import (
    IAF,
    MADE,
    MAF,
    ActNorm,
    AffineCoupling,
    Compose,
    ElementwiseAffine,
    Flow,
    InvConv1x1,
    Inverse,
    Logit,
    LULinear,
    Permutation,
    Planar,
    QRLinear,
    Reverse,
    Sigmoid,
    StandardNormal,
    channel_mask,
    checkerboard_mask,
    half_mask,
    make_maf,
    make_realnvp,
)

# name -> (layer, a valid input shape, a wrong input shape and the phrase the error must contain)
SHAPES = {
    "MAF": (lambda: MAF(3, (8,)), (4, 3), (4, 2), r"must have shape \(batch, 3\), got \(4, 2\)"),
    "IAF": (
        lambda: IAF(3, (8,)),
        (4, 3),
        (4, 3, 1),
        r"must have shape \(batch, 3\), got \(4, 3, 1\)",
    ),
    "AffineCoupling": (
        lambda: AffineCoupling(half_mask(4), (8,)),
        (4, 4),
        (4, 5),
        r"shape \(batch, 4\)",
    ),
    "AffineCoupling-image": (
        lambda: AffineCoupling(checkerboard_mask(2, 2), (4,), channels=2),
        (1, 2, 2, 2),
        (1, 2, 3, 2),
        "in dim 2",
    ),
    "AffineCoupling-channels": (
        lambda: AffineCoupling(channel_mask(4), (4,)),
        (1, 4, 2, 2),
        (1, 3, 2, 2),
        "4, H, W",
    ),
    "ElementwiseAffine": (lambda: ElementwiseAffine(3), (4, 3), (4, 2), "3 features/channels"),
    "ActNorm": (lambda: ActNorm(3), (4, 3), (4, 4), "3 features/channels"),
    "Planar": (lambda: Planar(3), (4, 3), (4, 2), "3 features/channels"),
    "Permutation": (lambda: Permutation([1, 0, 2]), (4, 3), (4, 2), "3 features/channels"),
    "LULinear": (lambda: LULinear(3), (4, 3), (4, 2), r"\(batch, 3\)"),
    "QRLinear": (lambda: QRLinear(3), (4, 3), (4, 2), r"\(batch, 3\)"),
    "InvConv1x1": (lambda: InvConv1x1(3), (1, 3, 2, 2), (1, 3, 4), r"\(batch, 3, H, W\)"),
    "Compose": (
        lambda: Compose(MAF(3, (8,)), Reverse(3)),
        (4, 3),
        (4, 2),
        r"3 features/channels|\(batch, 3\)",
    ),
}


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_wrong_feature_size_raises(name, direction):
    factory, good, bad, phrase = SHAPES[name]
    layer = factory()
    getattr(layer, direction)(torch.rand(good) + 0.5)  # the valid shape works
    name = "x" if direction == "forward" else "z"
    with pytest.raises(ValueError, match=rf"^{name} .*({phrase})"):
        getattr(layer, direction)(torch.rand(bad))


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_nan_input_raises(name, direction):
    factory, good, _, _ = SHAPES[name]
    x = torch.rand(good)
    x.view(-1)[1] = float("nan")
    with pytest.raises(ValueError, match=r"contains NaN \(1 of"):
        getattr(factory(), direction)(x)


@pytest.mark.parametrize(
    "layer", [Logit(), Sigmoid(), Inverse(MAF(2, (4,)))], ids=["Logit", "Sigmoid", "Inverse"]
)
def test_nan_input_raises_in_parameter_free_and_wrapped_layers(layer):
    with pytest.raises(ValueError, match="NaN"):
        layer(torch.tensor([[0.5, float("nan")]]))


def test_non_tensor_and_integer_inputs_raise_type_errors():
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        MAF(2, (4,))(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        MAF(2, (4,))([[0.0, 1.0]])
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        ElementwiseAffine(3)(torch.zeros(3))


def test_flow_checks_its_inputs():
    flow = make_maf(2, depth=1, hidden=(4,))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        flow.log_prob(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        flow(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        flow.sample(0)
    with pytest.raises(ValueError, match="log_target must map x of shape"):
        flow.reverse_kl(lambda x: x, 8)
    with pytest.raises(ValueError, match=r"z must have shape \(batch, 2\)"):
        StandardNormal(2).log_prob(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="transform must be a Transform"):
        Flow(StandardNormal(2), torch.nn.Linear(2, 2))


def test_non_invertible_configurations_raise():
    with pytest.raises(
        ValueError, match=r"weight is singular .* allowed: an invertible \(2, 2\) matrix"
    ):
        LULinear(2, weight=torch.tensor([[1.0, 2.0], [2.0, 4.0]]))
    with pytest.raises(ValueError, match=r"weight must have shape \(3, 3\)"):
        LULinear(3, weight=torch.eye(2))
    planar = Planar(2)
    with torch.no_grad():
        planar.w.zero_()
    with pytest.raises(ValueError, match="w = 0"):
        planar(torch.zeros(1, 2))
    with torch.no_grad():
        planar.w.fill_(1.0)
        planar.u.fill_(-1000.0)
    with pytest.raises(ValueError, match=r"w\^T u = -2000 makes w\^T u_hat = -1"):
        planar.inverse(torch.zeros(1, 2))
    dense = InvConv1x1(2, lu=False)
    with torch.no_grad():
        dense.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="singular"):
        dense(torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="mask must contain both True"):
        AffineCoupling(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must contain both True"):
        AffineCoupling(torch.zeros(1, 2, 2, dtype=torch.bool), channels=2)
    with pytest.raises(ValueError, match="perm must be a permutation of 0..2"):
        Permutation([0, 0, 2])
    with pytest.raises(ValueError, match="order must be a permutation of 0..2"):
        MAF(3, order=[0, 1, 3])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 0.5\)"):
        Logit(alpha=0.5)
    with pytest.raises(ValueError, match=r"x must lie in \(0, 1\) for Logit\(alpha=0.0\)"):
        Logit()(torch.tensor([[0.0, 0.5]]))
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        Logit(alpha=0.05)(torch.tensor([[1.5, 0.5]]))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        AffineCoupling(torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="mask has 3 channels, expected 1 or channels=2"):
        AffineCoupling(torch.ones(3, 1, 1, dtype=torch.bool), channels=2)
    with pytest.raises(ValueError, match="the conditioner net must output shape"):
        AffineCoupling(half_mask(4), torch.nn.Linear(2, 3))(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="m must be >= 2 for a coupling mask"):
        half_mask(1)
    with pytest.raises(ValueError, match="c must be >= 2"):
        channel_mask(1)
    with pytest.raises(TypeError, match="hidden must be a tuple of positive ints"):
        MADE(3, hidden=64)
    with pytest.raises(ValueError, match=r"hidden\[1\] must be a positive int, got 0"):
        MAF(3, hidden=(8, 0))
    with pytest.raises(ValueError, match="bound must be positive"):
        IAF(2, bound=0.0)
    with pytest.raises(ValueError, match="depth must be a positive int"):
        make_realnvp(2, depth=0)
    with pytest.raises(TypeError, match="m must be a positive int"):
        ElementwiseAffine(2.0)
    with pytest.raises(ValueError, match="transforms must hold at least one Transform"):
        Compose()
    with pytest.raises(ValueError, match="ActNorm's data-dependent init needs at least 2 values"):
        ActNorm(3)(torch.zeros(1, 3))
