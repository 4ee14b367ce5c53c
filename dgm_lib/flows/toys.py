"""Chapter 01 "Change of variables".

Held-out test sets of the 2D targets and the flows' test scores.

The density fits are zoo configs of dgm_lib.flows.recipes (e.g. "maf_two_moons_8"). The target's
exact log_prob gives the best achievable test NLL, the entropy H(pi) = -E_pi log pi(x), since
E_pi[-log p(x|theta)] - H(pi) = KL(pi || p(x|theta)) >= 0.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from dgm_lib.data.toy2d import get_target
from dgm_lib.metrics import mean_and_se

TEST_SIZE = 20_000  # held-out samples per target
TEST_SEED = 2026  # their seed, never used in training


def heldout_samples(target: str) -> Tensor:
    """The held-out test set of `target`.

    TEST_SIZE draws with seed TEST_SEED (never used in training), float32.
    """
    return get_target(target).sample(TEST_SIZE, torch.Generator().manual_seed(TEST_SEED))


@torch.no_grad()
def heldout_nll(
    log_prob_fn: Callable[[Tensor], Tensor], target: str, device: torch.device | str | None = None
) -> tuple[float, float]:
    """Mean and standard error of the test NLL -log p(x) of `target`, in nats.

    Mean and standard error of -log p(x) over the test set of `target` (moved to `device`), in nats;
    the target's own log_prob gives its entropy H(pi), the best achievable test NLL.
    """
    return mean_and_se(-log_prob_fn(heldout_samples(target).to(device)))


@torch.no_grad()
def heldout_kl(
    log_prob_fn: Callable[[Tensor], Tensor], target: str, device: torch.device | str | None = None
) -> tuple[float, float]:
    """KL(pi || p) = E_pi[log pi(x) - log p(x)] (= test NLL - H(pi)) on the test set of `target`.

    Mean and the standard error of the paired differences, in nats.
    """
    x = heldout_samples(target)
    return mean_and_se(
        get_target(target).log_prob(x.double()) - log_prob_fn(x.to(device)).double().cpu()
    )
