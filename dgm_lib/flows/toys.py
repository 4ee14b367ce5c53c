"""Chapter 01 "Change of variables".

Held-out test sets of the 2D targets and the flows' test scores.

The density fits are zoo configs of dgm_lib.flows.recipes (e.g. "maf_two_moons_8"). The target's
exact log_prob gives the best achievable test NLL, the entropy H(pi) = -E_pi log pi(x), since
E_pi[-log p(x|theta)] - H(pi) = KL(pi || p(x|theta)) >= 0. The planar fits (e.g. "planar_u1_32")
are scored by the reverse KL, which needs only samples of the flow and log pi up to log Z.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
from torch import Tensor

from dgm_lib.core import device_of
from dgm_lib.data.toy2d import get_target, get_target_for_fit
from dgm_lib.flows.base import Flow
from dgm_lib.flows.kl_duality import mc_estimate, reverse_kl_terms
from dgm_lib.metrics import mean_and_se

TEST_SIZE = 20_000  # held-out samples per target
TEST_SEED = 2026  # their seed, never used in training


@lru_cache(maxsize=None)
def _heldout(target: str) -> tuple[Tensor, Tensor]:
    """(x, log pi(x) in float64) of the held-out test set of `target`, computed once."""
    x = get_target(target).sample(TEST_SIZE, torch.Generator().manual_seed(TEST_SEED))
    with torch.no_grad():
        return x, get_target(target).log_prob(x.double())


def heldout_samples(target: str) -> Tensor:
    """The held-out test set of `target`.

    TEST_SIZE draws with seed TEST_SEED (never used in training), float32 (a fresh copy).
    """
    return _heldout(target)[0].clone()


@torch.no_grad()
def heldout_nll(
    log_prob_fn: Callable[[Tensor], Tensor], target: str, device: torch.device | str | None = None
) -> tuple[float, float]:
    """Mean and standard error of the test NLL -log p(x) of `target`, in nats.

    Mean and standard error of -log p(x) over the test set of `target` (moved to `device`), in nats;
    the target's own log_prob gives its entropy H(pi), the best achievable test NLL.
    """
    return mean_and_se(-log_prob_fn(heldout_samples(target).to(device)))


def heldout_entropy(target: str) -> tuple[float, float]:
    """H(pi) = -E_pi log pi(x) on the test set of `target`: the best achievable test NLL.

    Args:
        target: a normalized target of dgm_lib.data.toy2d.

    Returns:
        The mean and its standard error in nats, from the float64 log pi(x) on the test set
        (computed once per target).
    """
    return mean_and_se(-_heldout(target)[1])


@torch.no_grad()
def heldout_kl(
    log_prob_fn: Callable[[Tensor], Tensor], target: str, device: torch.device | str | None = None
) -> tuple[float, float]:
    """KL(pi || p) = E_pi[log pi(x) - log p(x)] (= test NLL - H(pi)) on the test set of `target`.

    Mean and the standard error of the paired differences, in nats.
    """
    x, log_pi = _heldout(target)
    return mean_and_se(log_pi - log_prob_fn(x.to(device)).double().cpu())


@torch.no_grad()
def reverse_kl(flow: Flow, target: str, n: int = TEST_SIZE) -> tuple[float, float]:
    """KL(p(x|theta) || pi) = E_{p(z)}[log p(z) - log|det J_g(z)| - log pi~(g(z))] + log Z.

    pi~ is the target a flow is fitted to (get_target_for_fit: an energy confined to the box, with
    log Z by quadrature; log Z = 0 for a normalized target). The n base samples z are drawn with
    seed TEST_SEED on the flow's device; the terms are averaged in float64.

    Args:
        flow: a flow with a sampler g (any Flow).
        target: a target of dgm_lib.data.toy2d.
        n: the number of Monte Carlo samples (at least 2).

    Returns:
        The mean and its standard error, in nats.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2 (a standard error needs two samples), got {n!r}")
    pi = get_target_for_fit(target)
    log_z = 0.0 if getattr(pi, "normalized", False) else pi.log_normalizer
    generator = torch.Generator(device=device_of(flow)).manual_seed(TEST_SEED)
    mean, se = mc_estimate(reverse_kl_terms(flow, pi.log_prob, n, generator).double().cpu())
    return mean + log_z, se
