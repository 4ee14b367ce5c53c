"""dgm_lib.flows Flow, StandardNormal, Compose and builders: normalized densities, LOTUS reverse KL,
fit()."""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch

from dgm_lib.data.toy2d import get_target
from dgm_lib.flows import (
    MAF,
    AffineCoupling,
    Compose,
    Flow,
    Inverse,
    StandardNormal,
    batch_jacobian,
    half_mask,
    make_maf,
    make_realnvp,
)
from dgm_lib.training import FitOptions, fit


def _perturbed(build: Callable[..., Flow], *args: Any, scale: float = 0.3, **kwargs: Any) -> Flow:
    """build(*args, **kwargs) under seed 0, with parameters moved away from their init."""
    torch.manual_seed(0)
    flow = build(*args, **kwargs)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn_like(p))
    return flow


def test_standard_normal(float64):
    base = StandardNormal(2, 3)
    z = torch.randn(4, 2, 3)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum((1, 2))
    torch.testing.assert_close(base.log_prob(z), expected)
    assert base.sample(5).shape == (5, 2, 3) and base.sample(5).dtype == torch.float64
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(base.sample(7, generator=g1), base.sample(7, generator=g2))
    assert StandardNormal((1, 2, 2)).event_shape == (1, 2, 2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("build", [make_realnvp, make_maf], ids=["realnvp", "maf"])
def test_log_prob_integrates_to_one_on_a_grid(build, float64):
    """The midpoint rule on [-16, 16]^2 gives 1 up to the mass outside the box, which samples
    measure."""
    flow = _perturbed(build, 2, depth=3, hidden=(16,), scale=0.1)
    n, lim = 800, 16.0
    h = 2 * lim / n
    t = -lim + h * (torch.arange(n) + 0.5)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        total = flow.log_prob(grid).exp().sum() * h * h
    outside = (
        (flow.sample(100_000, generator=torch.Generator().manual_seed(0)).abs() > lim)
        .any(1)
        .double()
        .mean()
    )
    assert total.item() == pytest.approx(1.0, abs=5e-3)
    assert total.item() == pytest.approx(1.0 - outside.item(), abs=5e-4)


def test_sample_with_log_prob_matches_log_prob(float64):
    flow = _perturbed(make_maf, 3, depth=2, hidden=(8,))
    x, log_p = flow.sample_with_log_prob(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(log_p, flow.log_prob(x), atol=1e-10, rtol=1e-10)
    again = flow.sample(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, x.detach(), atol=0, rtol=0)
    assert not again.requires_grad


def test_reverse_kl_is_the_lotus_formula(float64):
    """E_{p(z)}[log p(z) - log|det J_g(z)| - log pi(g(z))] with the same base draws, and it is
    differentiable."""
    flow = _perturbed(make_realnvp, 2, depth=2, hidden=(8,))
    target = get_target("u1")
    n = 256
    kl = flow.reverse_kl(target.log_prob, n, generator=torch.Generator().manual_seed(1))
    z = flow.base.sample(n, generator=torch.Generator().manual_seed(1))
    x, log_det_g = flow.transform.inverse(z)
    lotus = (flow.base.log_prob(z) - log_det_g - target.log_prob(x)).mean()
    torch.testing.assert_close(kl, lotus)
    kl.backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in flow.parameters())


def test_reverse_kl_is_zero_for_the_flow_itself_and_positive_otherwise(float64):
    flow = _perturbed(make_maf, 2, depth=2, hidden=(8,))
    exact = flow.reverse_kl(lambda x: flow.log_prob(x), 64)
    assert exact.abs().item() < 1e-10
    off = flow.reverse_kl(
        StandardNormal(2).log_prob, 4096, generator=torch.Generator().manual_seed(0)
    )
    assert off.item() > 0


def test_forward_kl_and_forward_dict(float64):
    flow = _perturbed(make_realnvp, 2, depth=2, hidden=(8,))
    x = torch.randn(10, 2)
    out = flow(x)
    assert set(out) == {"loss", "nll", "log_det"}
    torch.testing.assert_close(out["loss"], flow.forward_kl(x))
    torch.testing.assert_close(out["nll"], -flow.log_prob(x).mean().detach())
    torch.testing.assert_close(out["log_det"], flow.transform(x)[1].mean().detach())


def test_compose_sums_log_dets_and_inverts_in_reverse_order(float64):
    torch.manual_seed(0)
    a, b = MAF(3, (8,)), AffineCoupling(half_mask(3), (8,))
    x = torch.randn(4, 3)
    za, la = a(x)
    zb, lb = b(za)
    z, log_det = Compose(a, b)(x)
    torch.testing.assert_close(z, zb)
    torch.testing.assert_close(log_det, la + lb)
    assert len(Compose([a, b])) == 2 and Compose(a, b)[1] is b
    xi, li = Inverse(Compose(a, b))(z)
    torch.testing.assert_close(xi, x)
    torch.testing.assert_close(li, -log_det)


@pytest.mark.parametrize("build", [make_realnvp, make_maf], ids=["realnvp", "maf"])
def test_fit_trains_a_flow_on_two_moons(build):
    """fit() drives Flow.forward; 300 steps bring the test NLL of two moons within 0.5 nats of the
    entropy."""
    torch.manual_seed(0)
    target = get_target("two_moons")
    data = target.sample(4096, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    test = target.sample(2048, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    flow = build(2, depth=4, hidden=(32, 32))
    with torch.no_grad():
        before = flow.forward_kl(test).item()
    history = fit(
        flow,
        torch.optim.Adam(flow.parameters(), lr=1e-2),
        list(data.split(128)),
        FitOptions(steps=300, progress=False),
    )
    with torch.no_grad():
        after = flow.forward_kl(test).item()
    entropy = -target.log_prob(test.double()).mean().item()  # the best achievable NLL
    assert set(history.terms) == {"loss", "nll", "log_det"}
    assert after < before - 0.5 and after < entropy + 0.5, (before, after, entropy)
    assert math.isfinite(history.last("log_det"))


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
        ),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flow_follows_device_and_dtype(dtype, device):
    """Sampling follows the module (.to), log_prob follows its input; a CPU generator works for any
    device."""
    flow = make_realnvp(2, depth=2, hidden=(8,)).to(device=device, dtype=dtype)
    x = flow.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.device.type == device and x.dtype == dtype
    x2, log_p = flow.sample_with_log_prob(5)
    assert x2.device.type == device and log_p.dtype == dtype and log_p.shape == (5,)
    assert flow.log_prob(x).device.type == device and flow.log_prob(x).dtype == dtype
    assert flow.reverse_kl(get_target("u2").log_prob, 8).dtype == dtype


def test_batch_jacobian_of_a_linear_map_is_its_matrix(float64):
    A = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0], [4.0, 0.0, -2.0]])
    x = torch.randn(5, 3)
    jac = batch_jacobian(lambda v: v @ A.T + v.square(), x)
    torch.testing.assert_close(jac, A.expand(5, 3, 3) + torch.diag_embed(2 * x))
    with pytest.raises(ValueError, match="shape"):
        batch_jacobian(lambda v: v, torch.randn(2, 2, 2))
