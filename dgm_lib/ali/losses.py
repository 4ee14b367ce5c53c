"""The losses of ALI and ALICE in the non-saturating form (C. Li's lecture; Li et al., 2017).

With f the logit of a discriminator and s = sigma(f), a discriminator that tells the first kind of
pair (label 1) from the second (label 0) minimises

    discriminator_loss = -E_1[log s] - E_0[log(1 - s)]           (= -L, L the minimax objective)

and the samplers it judges minimise the non-saturating flip, -E_1[log(1 - s)] - E_0[log s]
(`sampler_loss`), which has the same fixed points as minimising L but strong gradients early.
ALI uses them on (x, z) pairs of the encoder (1) and decoder (0) joints. ALICE adds a
conditional-entropy (CE) term, in one of four forms:

- unsupervised, explicit cycle consistency: the l_k reconstruction ||x - x^||_k^k, x^ ~ p(x|z),
  z ~ q(z|x) (`explicit_cycle`);
- unsupervised, implicit cycle consistency (eq. 2): a discriminator on (x, x) against (x, x^)
  (the same two losses on those pairs);
- semi-supervised, explicit mapping: ||x - x^||_k^k for paired (x, z), x^ ~ p(x|z) (`explicit_cycle`
  on the pairs);
- semi-supervised, implicit mapping (eq. 3): a conditional GAN, a discriminator on paired (x, z)
  against (x^, z).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dgm_lib.checks import check_float_tensor


def _check_logits(logits_first: Tensor, logits_second: Tensor) -> None:
    for value, name in ((logits_first, "logits_first"), (logits_second, "logits_second")):
        check_float_tensor(value, name)
        if value.dim() != 1 or value.numel() == 0:
            raise ValueError(
                f"{name} must be a non-empty vector of logits, got {tuple(value.shape)}"
            )


def discriminator_loss(logits_first: Tensor, logits_second: Tensor) -> Tensor:
    """-mean log sigma(f) over first-kind pairs - mean log(1 - sigma(f)) over second-kind pairs.

    Example:
        >>> import torch
        >>> round(discriminator_loss(torch.zeros(3), torch.zeros(3)).item(), 4)  # log 4
        1.3863
    """
    _check_logits(logits_first, logits_second)
    return -(F.logsigmoid(logits_first).mean() + F.logsigmoid(-logits_second).mean())


def sampler_loss(logits_first: Tensor, logits_second: Tensor) -> Tensor:
    """The non-saturating loss of the samplers: the discriminator's loss with the labels swapped,
    -mean log(1 - sigma(f)) over first-kind pairs - mean log sigma(f) over second-kind pairs."""
    _check_logits(logits_first, logits_second)
    return -(F.logsigmoid(-logits_first).mean() + F.logsigmoid(logits_second).mean())


def explicit_cycle(x: Tensor, x_hat: Tensor, k: int = 2) -> Tensor:
    """Explicit cycle consistency (or mapping): mean over rows of ||x - x^||_k^k.

    With k = 2 this is -log p(x|z) of a Gaussian decoder of unit variance up to constants, the
    cycle-consistency side of ALICE's identity.

    Example:
        >>> import torch
        >>> explicit_cycle(torch.zeros(2, 2), torch.ones(2, 2), k=1).item()
        2.0
    """
    check_float_tensor(x, "x")
    check_float_tensor(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise ValueError(
            f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}"
        )
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return (x - x_hat).abs().pow(k).flatten(1).sum(1).mean()
