"""dgm_lib.flows layers, zuko-style, in float64: log-dets against autograd Jacobians (forward and
inverse), round trips, cancelling log-dets, gradients for every parameter, triangular autoregressive
Jacobians."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch.autograd.functional import jacobian

from dgm_lib.flows import (
    IAF,
    MADE,
    MAF,
    ActNorm,
    AffineCoupling,
    Compose,
    ElementwiseAffine,
    InvConv1x1,
    Inverse,
    Logit,
    LULinear,
    Permutation,
    Planar,
    QRLinear,
    Reverse,
    Sigmoid,
    Transform,
    channel_mask,
    checkerboard_mask,
    half_mask,
    make_maf,
    make_realnvp,
)

B = 3  # batch size of the Jacobian checks


def _normal(*shape: int) -> Callable[[torch.Generator], torch.Tensor]:
    return lambda g: torch.randn(B, *shape, generator=g)


def _uniform(*shape: int) -> Callable[[torch.Generator], torch.Tensor]:
    return lambda g: torch.rand(B, *shape, generator=g)


def _initialized_actnorm(*shape: int) -> ActNorm:
    """ActNorm after its data-dependent init on a shifted, scaled batch (the init sees the whole
    batch)."""
    layer = ActNorm(shape[0])
    layer(1.5 + 2.0 * torch.randn(16, *shape))
    return layer


# name -> (factory, input sampler); images are tiny (2 x 2 x 2) so their Jacobians are 8 x 8.
LAYERS: dict[str, tuple[Callable[[], Transform], Callable[[torch.Generator], torch.Tensor]]] = {
    "ElementwiseAffine": (lambda: ElementwiseAffine(3), _normal(3)),
    "ElementwiseAffine-image": (lambda: ElementwiseAffine(2), _normal(2, 2, 2)),
    "ActNorm": (lambda: _initialized_actnorm(3), _normal(3)),
    "ActNorm-image": (lambda: _initialized_actnorm(2, 2, 2), _normal(2, 2, 2)),
    "Planar": (lambda: Planar(3), _normal(3)),
    "Logit": (lambda: Logit(), _uniform(3)),
    "Logit-alpha": (lambda: Logit(alpha=0.05), _uniform(2, 2, 2)),
    "Sigmoid": (lambda: Sigmoid(), _normal(3)),
    "Permutation": (lambda: Permutation([2, 0, 3, 1]), _normal(4)),
    "Reverse-image": (lambda: Reverse(2), _normal(2, 2, 2)),
    "LULinear": (lambda: LULinear(4), _normal(4)),
    "QRLinear": (lambda: QRLinear(4), _normal(4)),
    "InvConv1x1": (lambda: InvConv1x1(2), _normal(2, 2, 2)),
    "InvConv1x1-dense": (lambda: InvConv1x1(2, lu=False), _normal(2, 2, 2)),
    "MAF": (lambda: MAF(4, (16, 16)), _normal(4)),
    "MAF-order": (lambda: MAF(4, (16,), order=[2, 0, 3, 1]), _normal(4)),
    "IAF": (lambda: IAF(4, (16, 16)), _normal(4)),
    "IAF-order": (lambda: IAF(4, (16,), order=[3, 2, 1, 0]), _normal(4)),
    "AffineCoupling-half": (lambda: AffineCoupling(half_mask(5), (16,)), _normal(5)),
    "AffineCoupling-complement": (lambda: AffineCoupling(~half_mask(5), (16,)), _normal(5)),
    "AffineCoupling-scattered": (
        lambda: AffineCoupling(torch.tensor([True, False, False, True, False]), (16,)),
        _normal(5),
    ),
    "AffineCoupling-checkerboard": (
        lambda: AffineCoupling(checkerboard_mask(2, 2), (8,), channels=2),
        _normal(2, 2, 2),
    ),
    "AffineCoupling-channel": (lambda: AffineCoupling(channel_mask(2), (8, 8)), _normal(2, 2, 2)),
    "Compose": (lambda: Compose(MAF(3, (8,)), AffineCoupling(half_mask(3), (8,))), _normal(3)),
    "Inverse": (lambda: Inverse(MAF(3, (8,))), _normal(3)),
    "Compose-image": (
        lambda: Compose(
            AffineCoupling(checkerboard_mask(2, 2), (4,), channels=2),
            InvConv1x1(2),
            AffineCoupling(~checkerboard_mask(2, 2), (4,), channels=2),
            ElementwiseAffine(2),
        ),
        _normal(2, 2, 2),
    ),
    "make_realnvp": (lambda: make_realnvp(2, depth=3, hidden=(8,)).transform, _normal(2)),
    "make_maf": (lambda: make_maf(3, depth=2, hidden=(8,)).transform, _normal(3)),
}


def _build(name: str, seed: int = 0) -> tuple[Transform, torch.Tensor]:
    """The layer with perturbed parameters (away from any identity init) and an input batch,
    float64."""
    torch.manual_seed(seed)
    factory, sampler = LAYERS[name]
    layer = factory().double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = sampler(torch.Generator().manual_seed(seed + 1)).double()
    return layer, x


def block_jacobians(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians (B, d, d) of fn at x (B, *event); asserts samples do not interact."""
    b, d = x.shape[0], x[0].numel()
    full = jacobian(lambda v: fn(v.reshape(x.shape)).reshape(-1), x.reshape(-1)).reshape(b, d, b, d)
    blocks = torch.stack([full[i, :, i] for i in range(b)])
    off = full.clone()
    for i in range(b):
        off[i, :, i] = 0
    assert off.abs().max() == 0, "samples of a batch must not interact"
    return blocks


@pytest.mark.parametrize("name", list(LAYERS))
def test_forward_log_det_is_log_abs_det_of_jacobian(name, float64):
    layer, x = _build(name)
    _, log_det = layer(x)
    expected = torch.linalg.slogdet(block_jacobians(lambda v: layer(v)[0], x)).logabsdet
    assert log_det.shape == (B,)
    torch.testing.assert_close(log_det, expected, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", list(LAYERS))
def test_inverse_log_det_is_log_abs_det_of_jacobian(name, float64):
    layer, x = _build(name)
    z = layer(x)[0].detach()
    _, log_det = layer.inverse(z)
    expected = torch.linalg.slogdet(block_jacobians(lambda v: layer.inverse(v)[0], z)).logabsdet
    torch.testing.assert_close(log_det, expected, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", list(LAYERS))
def test_round_trip_and_log_dets_cancel(name, float64):
    layer, x = _build(name)
    z, log_det_f = layer(x)
    x_back, log_det_g = layer.inverse(z)
    assert z.shape == x.shape and x_back.shape == x.shape
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(log_det_f + log_det_g, torch.zeros(B), atol=1e-10, rtol=0)
    z_again, _ = layer(layer.inverse(z)[0])
    torch.testing.assert_close(z_again, z, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_parameter_gets_a_nonzero_gradient(name, float64):
    """Both directions are differentiable in the parameters and in the input."""
    layer, x = _build(name)
    x.requires_grad_(True)
    z, log_det_f = layer(x)
    x_gen, log_det_g = layer.inverse(0.9 * z.detach())  # stays in (0, 1) for Sigmoid
    (z.square().sum() + log_det_f.sum() + x_gen.square().sum() + log_det_g.sum()).backward()
    assert x.grad is not None and x.grad.abs().max() > 0
    for pname, p in layer.named_parameters():
        assert p.grad is not None, f"{pname} received no gradient"
        assert p.grad.abs().max() > 0, f"{pname} received a zero gradient"


def _rank_jacobian(
    layer: Transform, x: torch.Tensor, order: torch.Tensor, inverse: bool
) -> torch.Tensor:
    """Jacobian of one sample with rows and columns sorted by the autoregressive rank."""
    fn = layer.inverse if inverse else layer
    jac = block_jacobians(lambda v: fn(v)[0], x[:1])[0]
    by_rank = torch.argsort(order)
    return jac[by_rank][:, by_rank]


@pytest.mark.parametrize("cls", [MAF, IAF])
@pytest.mark.parametrize("order", [None, [2, 0, 3, 1]])
@pytest.mark.parametrize("inverse", [False, True])
def test_autoregressive_jacobian_is_lower_triangular_in_the_order(cls, order, inverse, float64):
    torch.manual_seed(0)
    layer = cls(4, (16, 16), order=order)
    x = torch.randn(2, 4)
    jac = _rank_jacobian(layer, x, layer.made.order, inverse)
    assert torch.triu(jac, diagonal=1).abs().max() == 0
    assert torch.tril(jac, diagonal=-1).abs().max() > 0  # really autoregressive, not elementwise


@pytest.mark.parametrize("order", [None, [3, 1, 0, 2]])
def test_made_output_j_depends_only_on_earlier_ranks(order, float64):
    torch.manual_seed(0)
    made = MADE(4, (32, 32), out_per_dim=3, order=order)
    x = torch.randn(1, 4)
    jac = jacobian(lambda v: made(v[None])[0], x[0])  # (m, out_per_dim, m)
    rank = made.order
    allowed = rank[None, :] < rank[:, None]  # output j may depend on input i iff rank[i] < rank[j]
    assert jac.shape == (4, 3, 4)
    assert jac.abs().amax(1)[~allowed].max() == 0
    assert (jac.abs().amax(1)[allowed] > 0).all()


def test_maf_samples_in_m_passes_and_iaf_normalizes_in_m_passes(float64):
    """Sequential directions call the MADE m times, parallel directions once."""
    torch.manual_seed(0)
    for cls, sequential in ((MAF, "inverse"), (IAF, "forward")):
        layer = cls(5, (8,))
        calls = []
        layer.made.net.register_forward_hook(lambda *args: calls.append(1))
        x = torch.randn(2, 5)
        for direction in ("forward", "inverse"):
            calls.clear()
            getattr(layer, direction)(x)
            assert len(calls) == (5 if direction == sequential else 1), (cls.__name__, direction)


@pytest.mark.parametrize(
    "mask", [half_mask(4), ~half_mask(4), torch.tensor([False, True, False, True])]
)
def test_coupling_passes_the_conditioning_part_through(mask, float64):
    torch.manual_seed(0)
    layer = AffineCoupling(mask, (8,))
    x = torch.randn(6, 4)
    z, _ = layer(x)
    torch.testing.assert_close(z[:, mask], x[:, mask], atol=0, rtol=0)
    assert (z[:, ~mask] != x[:, ~mask]).all()
    image_mask = checkerboard_mask(2, 4)
    image_layer = AffineCoupling(image_mask, (4,), channels=3)
    x = torch.randn(2, 3, 2, 4)
    z, _ = image_layer(x)
    keep = image_mask.expand(3, 2, 4)
    torch.testing.assert_close(z[:, keep], x[:, keep], atol=0, rtol=0)
    assert (z[:, ~keep] != x[:, ~keep]).all()


def test_masks():
    assert half_mask(5).tolist() == [True, True, False, False, False]
    assert checkerboard_mask(2, 3).tolist() == [[[True, False, True], [False, True, False]]]
    assert channel_mask(4).flatten().tolist() == [True, True, False, False]


def test_scales_are_soft_clamped_and_exp_never_overflows(float64):
    """Huge inputs/params give finite outputs: |log sigma| < bound in every layer."""
    torch.manual_seed(0)
    layer = MAF(2, (8,), bound=3.0)
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(1e3)
    x = 1e3 * torch.randn(4, 2)
    z, log_det = layer(x)
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    assert (log_det.abs() <= 2 * 3.0).all()
    coupling = AffineCoupling(half_mask(2), (8,), bound=3.0).float()
    with torch.no_grad():
        for p in coupling.parameters():
            p.mul_(1e4)
    z, log_det = coupling.inverse(torch.full((4, 2), 1e4, dtype=torch.float32))
    assert torch.isfinite(z).all() and (log_det.abs() <= 3.0).all()


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(LAYERS))
def test_follows_device_and_dtype_of_its_input(name, dtype, device):
    """Built in float64, moved with .to(device, dtype): parameters, buffers and outputs follow;
    round trip holds."""
    layer, x = _build(name)
    layer, x = layer.to(device=device, dtype=dtype), x.to(device=device, dtype=dtype)
    for tensor in (*layer.parameters(), *(b for b in layer.buffers() if b.is_floating_point())):
        assert tensor.device.type == device and tensor.dtype == dtype
    z, log_det_f = layer(x)
    x_back, log_det_g = layer.inverse(z)
    for out in (z, log_det_f, x_back, log_det_g):
        assert out.device.type == device and out.dtype == dtype and torch.isfinite(out).all()
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(x_back, x, atol=tol, rtol=tol)
    torch.testing.assert_close(log_det_f + log_det_g, torch.zeros_like(log_det_f), atol=tol, rtol=0)


def test_planar_constraint_makes_w_dot_u_hat_at_least_minus_one(float64):
    """u_hat = u + (m(w^T u) - w^T u) w / |w|^2 with m(a) = -1 + softplus(a): w^T u_hat = m(w^T u) >
    -1."""
    torch.manual_seed(0)
    layer = Planar(3)
    for scale in (0.1, 1.0, 5.0):
        with torch.no_grad():
            layer.u.copy_(scale * torch.randn(3))
            layer.w.copy_(torch.randn(3))
            layer.u.copy_(layer.u - 2 * scale * layer.w)  # push w^T u negative
        u_hat, slack = layer.u_hat()
        wu = layer.w @ layer.u
        torch.testing.assert_close(layer.w @ u_hat, -1 + torch.nn.functional.softplus(wu))
        torch.testing.assert_close(slack, 1 + layer.w @ u_hat)
        assert slack > 0
        z, log_det = layer(torch.randn(4, 3))
        assert torch.isfinite(log_det).all()
        torch.testing.assert_close(layer.inverse(z)[1], -log_det)
        # u_hat differs from u only along w
        residual = (u_hat - layer.u) - (
            (u_hat - layer.u) @ layer.w
        ) * layer.w / layer.w.square().sum()
        assert residual.abs().max() < 1e-12


def test_lu_and_qr_log_dets_come_from_the_parametrisation(float64):
    torch.manual_seed(0)
    weight = torch.randn(5, 5)
    lu = LULinear(5, weight=weight)
    torch.testing.assert_close(lu.weight(), weight)
    p, lower, upper = lu.factors()
    assert (
        torch.equal(torch.diagonal(lower), torch.ones(5)) and torch.triu(lower, 1).abs().max() == 0
    )
    assert torch.tril(upper, -1).abs().max() == 0 and torch.equal(p @ p.T, torch.eye(5))
    torch.testing.assert_close(lu.log_abs_det(), torch.linalg.slogdet(weight).logabsdet)
    qr = _build("QRLinear")[0]
    q, r = qr.factors()
    torch.testing.assert_close(q @ q.T, torch.eye(4))
    assert (torch.diagonal(r) > 0).all() and torch.tril(r, -1).abs().max() == 0
    torch.testing.assert_close(qr.log_abs_det(), torch.linalg.slogdet(qr.weight()).logabsdet)
    z, _ = qr(torch.eye(4))
    torch.testing.assert_close(z, qr.weight().T)  # rows of the output are W e_j


@pytest.mark.parametrize("lu", [True, False])
def test_invconv1x1_is_a_1x1_convolution(lu, float64):
    torch.manual_seed(0)
    layer = InvConv1x1(3, lu=lu)
    kernel = layer.linear.weight() if lu else layer.weight
    x = torch.randn(2, 3, 4, 5)
    z, log_det = layer(x)
    torch.testing.assert_close(z, torch.nn.functional.conv2d(x, kernel[:, :, None, None]))
    torch.testing.assert_close(log_det, 20 * torch.linalg.slogdet(kernel).logabsdet.expand(2))


@pytest.mark.parametrize("lu", [True, False])
@pytest.mark.parametrize("shape", [(3, 4, 4), (3, 2, 5)])
def test_invconv1x1_log_det_is_hw_log_abs_det_w_by_autograd(lu, shape, float64):
    """The full autograd Jacobian of a C x H x W image is kron(W, I_HW) (channel-major order), so
    log|det J_f| = H W log|det W|; the layer's log-det matches both, forward and inverse."""
    channels, height, width = shape
    torch.manual_seed(0)
    layer = InvConv1x1(channels, lu=lu)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    kernel = (layer.linear.weight() if lu else layer.weight).detach().contiguous()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    z, log_det = layer(x)
    jac = block_jacobians(lambda v: layer(v)[0], x)
    assert jac.shape == (2, x[0].numel(), x[0].numel())
    torch.testing.assert_close(jac[0], torch.kron(kernel, torch.eye(height * width)))
    closed_form = height * width * torch.linalg.slogdet(kernel).logabsdet
    torch.testing.assert_close(torch.linalg.slogdet(jac).logabsdet, closed_form.expand(2))
    torch.testing.assert_close(log_det, closed_form.expand(2), atol=1e-12, rtol=0)
    _, log_det_g = layer.inverse(z)
    torch.testing.assert_close(log_det_g, -closed_form.expand(2), atol=1e-12, rtol=0)


def test_lu_linear_keeps_the_signs_of_u_diagonal_fixed(float64):
    """U_jj = sign_j exp(s_j) with signs from the initial decomposition: W = (P D)(D L D)(D U) has
    a positive-diagonal D U, sign(det W) = det P * prod sign_j stays fixed, log|det W| = sum s_j."""
    weight = torch.tensor([[-1.0, 0.5, 0.0], [0.0, 2.0, 1.0], [0.3, -1.0, 2.0]])
    assert torch.linalg.det(weight) < 0
    layer = LULinear(3, weight=weight)
    p, lower, upper = layer.factors()
    torch.testing.assert_close(layer.weight(), weight)
    assert (layer.sign < 0).any() and torch.equal(torch.sign(torch.diagonal(upper)), layer.sign)
    d = torch.diag(layer.sign)
    assert (torch.diagonal(d @ upper) > 0).all()
    torch.testing.assert_close(torch.diagonal(d @ lower @ d), torch.ones(3))
    torch.testing.assert_close((p @ d) @ (d @ lower @ d) @ (d @ upper), weight)
    sign_det = torch.linalg.det(p) * layer.sign.prod()
    with torch.no_grad():
        for param in layer.parameters():
            param.add_(0.5 * torch.randn_like(param))
    sign, log_abs_det = torch.linalg.slogdet(layer.weight())
    assert sign == sign_det == torch.sign(torch.linalg.det(weight))
    torch.testing.assert_close(log_abs_det, layer.log_diag.sum())
    torch.testing.assert_close(layer.log_abs_det(), log_abs_det)


def test_actnorm_data_dependent_init(float64):
    torch.manual_seed(0)
    layer = ActNorm(2)
    x = (
        torch.randn(4, 2, 3, 3) * torch.tensor([3.0, 0.5])[:, None, None]
        + torch.tensor([1.0, -2.0])[:, None, None]
    )
    z, _ = layer(x)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(2))
    torch.testing.assert_close(z.std((0, 2, 3), unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    assert bool(layer.initialized) and "initialized" in layer.state_dict()
    mu = layer.mu.detach().clone()
    layer(x + 10)
    assert torch.equal(layer.mu.detach(), mu)  # initialized once


def test_logit_with_alpha_maps_the_endpoints_to_finite_values(float64):
    z, log_det = Logit(alpha=0.05)(torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(z, torch.tensor([[-1.0, 1.0]]) * torch.logit(torch.tensor(0.95)))
    assert torch.isfinite(log_det).all()
    x, _ = Sigmoid()(torch.tensor([[-800.0, 800.0]]))
    z, log_det = Logit().inverse(torch.tensor([[-800.0, 800.0]]))
    assert torch.isfinite(log_det).all() and torch.equal(x, z)
