"""Hardening of the VAE: inputs outside the likelihood's support, wrong dtypes and empty batches
raise errors naming the argument (issue items 3, 6, 9)."""

from __future__ import annotations

import pytest
import torch

from dgm_lib.vae import VAE, MLPDecoder, MLPEncoder, StandardNormalPrior

torch.set_num_threads(1)


def _vae(likelihood: str = "bernoulli") -> VAE:
    torch.manual_seed(0)
    return VAE(
        MLPEncoder(4, (8,), 2), MLPDecoder(2, (8,), (4,), likelihood), StandardNormalPrior(2)
    )


# item -> (bad call, error type, phrase)
BAD_CALLS = {
    "item_03_pixels_0_255_into_bernoulli_elbo": (
        lambda: _vae().elbo(torch.rand(3, 4) * 255),
        ValueError,
        r"x must lie in \[0.0, 1.0\] for a Bernoulli decoder .* x / 255",
    ),
    "item_03_negative_targets_into_bernoulli_iwae": (
        lambda: _vae().iwae(torch.rand(3, 4) - 1, k=2),
        ValueError,
        r"x must lie in \[0.0, 1.0\] for a Bernoulli decoder",
    ),
    "item_03_bernoulli_log_likelihood": (
        lambda: _vae().log_likelihood(torch.full((2, 4), 2.0), torch.zeros(2, 2)),
        ValueError,
        r"got values in \[2, 2\]",
    ),
    "item_03_inf_target": (
        lambda: _vae().elbo(torch.tensor([[0.0, 1.0, float("inf"), 0.5]])),
        ValueError,
        r"x contains inf \(1 of 4 entries\)",
    ),
    "item_06_float64_into_float32_vae": (
        lambda: _vae().elbo(torch.rand(3, 4, dtype=torch.float64)),
        TypeError,
        r"x has dtype torch.float64 but the model's parameters are torch.float32; .*x.float\(\)",
    ),
    "item_06_float16_latents_into_decode": (
        lambda: _vae().decode(torch.zeros(3, 2, dtype=torch.float16)),
        TypeError,
        "z has dtype torch.float16",
    ),
    "item_09_empty_batch_elbo": (
        lambda: _vae().elbo(torch.rand(0, 4)),
        ValueError,
        r"x is an empty batch, shape \(0, 4\)",
    ),
    "item_09_empty_batch_iwae": (
        lambda: _vae().iwae(torch.rand(0, 4), k=3),
        ValueError,
        "x is an empty batch",
    ),
    "item_09_empty_batch_forward": (
        lambda: _vae()(torch.rand(0, 4)),
        ValueError,
        "x is an empty batch",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call()


def test_item_03_valid_targets_and_gaussian_likelihood_are_accepted():
    assert torch.isfinite(_vae().elbo(torch.rand(3, 4))).all()
    assert torch.isfinite(_vae("gaussian").elbo(torch.rand(3, 4) * 255)).all()
