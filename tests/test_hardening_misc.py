"""Hardening of the smaller public helpers: metrics, core, training arguments, cold diffusion,
SG-MCMC samplers, Gaussian and logistic helpers (issue item 19)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm_lib.core import set_rng_state
from dgm_lib.dequantization import logistic
from dgm_lib.diffusion.cold import HybridDegradation
from dgm_lib.metrics import mean_and_se
from dgm_lib.sgmcmc import SGLD
from dgm_lib.training import FitOptions, fit
from dgm_lib.vae import gaussian_kl

torch.set_num_threads(1)
INF = float("inf")


def _fit(optimizer="sgd", scheduler=None):
    model = nn.Linear(2, 2)
    if optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    options = FitOptions(
        steps=1, loss_fn=lambda m, x: {"loss": m(x).square().mean()}, progress=False
    )
    return fit(model, optimizer, [torch.ones(2, 2)], options, scheduler=scheduler)


# item -> (bad call, error type, phrase)
BAD_CALLS = {
    "item_19_mean_and_se_of_one_value": (
        lambda: mean_and_se(torch.tensor([1.0])),
        ValueError,
        "values must hold at least 2 numbers for a standard error, got 1",
    ),
    "item_19_mean_and_se_of_none": (
        lambda: mean_and_se(torch.tensor([])),
        ValueError,
        "at least 2 numbers for a standard error, got 0",
    ),
    "item_19_mean_and_se_of_a_list": (
        lambda: mean_and_se([1.0, 2.0]),
        TypeError,
        "values must be a tensor, got list",
    ),
    "item_19_mean_and_se_with_nan": (
        lambda: mean_and_se(torch.tensor([1.0, float("nan")])),
        ValueError,
        r"values contains NaN \(1 of 2\)",
    ),
    "item_19_set_rng_state_of_empty_dict": (
        lambda: set_rng_state({}),
        ValueError,
        "state must be a dict from get_rng_state",
    ),
    "item_19_fit_without_optimizer": (
        lambda: _fit(optimizer=None),
        TypeError,
        "optimizer must be a torch.optim.Optimizer over the model's parameters .*got NoneType",
    ),
    "item_19_fit_with_scheduler_name": (
        lambda: _fit(scheduler="cosine"),
        TypeError,
        "scheduler must be a learning-rate scheduler object .*got str 'cosine'",
    ),
    "item_19_fit_with_a_non_module": (
        lambda: fit(lambda x: x, None, [torch.ones(1)], FitOptions(steps=1)),
        TypeError,
        "model must be a torch.nn.Module, got function",
    ),
    "item_19_hybrid_degradation_of_a_list": (
        lambda: HybridDegradation(T=5, image_size=4, kernel_size=3)([[0.0]], 3),
        TypeError,
        "x must be a floating-point tensor",
    ),
    "item_19_sgld_without_parameters": (
        lambda: SGLD([], lr=0.1),
        ValueError,
        "SGLD: params is an empty parameter list; it must hold at least one tensor",
    ),
    "item_19_gaussian_kl_of_inf_mu": (
        lambda: gaussian_kl(torch.tensor([[INF, 0.0]]), torch.zeros(1, 2)),
        ValueError,
        r"mu contains inf \(1 of 2 entries\)",
    ),
    "item_19_gaussian_kl_of_inf_log_var": (
        lambda: gaussian_kl(torch.zeros(1, 2), torch.tensor([[0.0, -INF]])),
        ValueError,
        "log_var contains inf",
    ),
    "item_19_logistic_of_inf_mu": (
        lambda: logistic.logistic_log_prob(torch.zeros(3), torch.full((3,), INF), torch.zeros(3)),
        ValueError,
        "mu contains inf",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call()
