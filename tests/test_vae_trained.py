"""ELBO surgery on trained VAEs (a small one trained here, and the zoo's MNIST VAEs) and the zoo
data helpers."""

from __future__ import annotations

import math

import pytest
import torch

from dgm_lib import zoo
from dgm_lib.data.mnist import mnist_images
from dgm_lib.training import FitOptions, ShuffledBatches, fit
from dgm_lib.vae import (
    VAE,
    MLPDecoder,
    MLPEncoder,
    StandardNormalPrior,
    VampPrior,
    elbo_surgery,
    gaussian_kl,
    recipes,
)
from dgm_lib.vae.chapter import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist_test() -> torch.Tensor:
    return mnist_images("test", "binarized")


def test_surgery_on_a_small_trained_vae_matches_the_closed_form_kl(float64, mnist_test):
    """MI + marginal KL (Monte Carlo, q_agg over all n points) = 1/n sum_i KL(q(z|x_i) || N(0, I))
    (closed form) within the Monte Carlo error measured across 8 seeds; 0 <= MI <= log n."""
    torch.manual_seed(0)
    x = mnist_test[:300].double()
    model = VAE(MLPEncoder(784, (64,), 2), MLPDecoder(2, (64,)), StandardNormalPrior(2))
    fit(
        model,
        torch.optim.Adam(model.parameters(), lr=3e-3),
        list(x.split(50)),
        FitOptions(steps=300, progress=False),
    )
    with torch.no_grad():
        closed = gaussian_kl(*model.encode(x)).mean().item()
    runs = [elbo_surgery(model, x, 20, torch.Generator().manual_seed(s)) for s in range(8)]
    total = torch.tensor([r["mi"] + r["marginal_kl"] for r in runs])
    assert abs(total.mean().item() - closed) < 5 * total.std().item() / math.sqrt(len(runs))
    for r in runs:
        assert r["avg_kl"] == pytest.approx(r["mi"] + r["marginal_kl"], abs=1e-10)
        assert 0 < r["mi"] <= r["log_n"] == pytest.approx(math.log(300))
    assert runs[0]["mi"] > 1.0  # the trained encoder carries information about x


def test_binarized_mnist_is_fixed_and_binary(mnist_test):
    again = mnist_images("test", "binarized")
    assert mnist_test.shape == (1000, 1, 28, 28) and torch.equal(mnist_test, again)
    assert set(mnist_test.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(mnist_test, mnist_images("test", "binarized", seed=1))


def test_binarized_batches_shuffle_and_redraw_every_epoch():
    images = torch.rand(250, 1, 28, 28)
    data = ShuffledBatches(images, 100, torch.Generator().manual_seed(0), recipes.binarize)
    first, second = list(data), list(data)
    assert len(data) == len(first) == 3 and [len(b) for b in first] == [100, 100, 50]
    assert set(torch.cat(first).unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(torch.cat(first), torch.cat(second))
    means = torch.stack([torch.cat(list(data)).mean() for _ in range(20)]).mean()
    assert means.item() == pytest.approx(images.mean().item(), abs=2e-3)  # E[Bernoulli(p)] = p


@pytest.mark.parametrize("name", list(recipes.PRIORS))
def test_zoo_vae_loads_and_its_surgery_terms_are_consistent(name, mnist_test):
    """The shipped weights load into the registered model (within the size budget) and give a
    sensible test ELBO."""
    assert zoo.checkpoint_path(name).stat().st_size <= zoo.entry(name).max_bytes
    model = zoo.load(name, train_if_missing=False, device="cpu")
    assert isinstance(model, VAE) and model.z_dim == 2
    x = mnist_test[:200]
    generator = torch.Generator().manual_seed(0)
    # aggregate=True: also the q_agg terms of the context-conditioned IAF posterior (200^2 pairs)
    s = evaluate(model, x, k=20, n_samples=2, generator=generator, aggregate=True)
    assert -175 < s["elbo"] < -120 and s["iwae"] > s["elbo"]
    assert s["avg_kl"] == pytest.approx(s["mi"] + s["marginal_kl"], abs=1e-6)
    assert 0 < s["mi"] <= s["log_n"] and s["marginal_kl"] > -0.5
    if isinstance(model.prior, VampPrior):
        assert (
            model.prior.encoder is model.encoder
        )  # the VampPrior shares phi with the encoder after loading
