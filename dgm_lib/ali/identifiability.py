"""The non-identifiability of ALI, on the lecture's two-mode example.

Data x in {x_1, x_2} and codes z in {z_1, z_2}, each uniform. The joints

    q_delta(x_i, z_j) = delta / 2 if i = j, (1 - delta) / 2 otherwise,    delta in [0, 1],

all have the same two uniform marginals, so a decoder joint p = q_delta matches an encoder joint
q = q_delta for every delta: "any delta in [0, 1] is a valid solution of ALI". Only delta = 0 or 1
is a meaningful mapping: x -> z -> x returns x with probability delta^2 + (1 - delta)^2, and the
conditional entropy H(x|z) = h(delta) (binary entropy, nats) vanishes only there. ALICE's
conditional-entropy term picks those solutions out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check_delta(delta: float) -> float:
    if not isinstance(delta, (int, float)) or not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta must be a number in [0, 1], got {delta!r}")
    return float(delta)


def delta_joint(delta: float) -> Tensor:
    """The 2 x 2 joint q_delta(x_i, z_j) (rows x, columns z), float64.

    Example:
        >>> delta_joint(1.0).tolist()
        [[0.5, 0.0], [0.0, 0.5]]
    """
    delta = _check_delta(delta)
    return torch.tensor([[delta, 1 - delta], [1 - delta, delta]], dtype=torch.float64) / 2


def ali_saddle_value(q: Tensor, p: Tensor) -> Tensor:
    """L_ALI at the optimal discriminator for discrete joints: sum q log D* + p log(1 - D*).

    D* = q / (q + p); cells where a joint is 0 contribute 0 (the limit of t log t). Equals
    -log 4 + 2 JSD(q || p).
    """
    if q.shape != p.shape:
        raise ValueError(
            f"q and p must have the same shape, got {tuple(q.shape)} and {tuple(p.shape)}"
        )
    total = q + p
    terms = torch.where(q > 0, q * torch.log(q / total), 0.0)
    terms = terms + torch.where(p > 0, p * torch.log(p / total), 0.0)
    return terms.sum()


def reconstruction_probability(delta: float) -> float:
    """P(x -> z -> x returns x) under q_delta: delta^2 + (1 - delta)^2.

    sum_x q(x) sum_z q(z|x) p(x|z).

    Computed from the joint (encoder q(z|x) and decoder p(x|z) both read off q_delta).
    """
    joint = delta_joint(delta)
    encoder = joint / joint.sum(1, keepdim=True)  # q(z|x), rows x
    decoder = joint / joint.sum(0, keepdim=True)  # p(x|z), columns z
    return float((joint.sum(1) * (encoder * decoder).sum(1)).sum())


def conditional_entropy(delta: float) -> float:
    """H(x|z) under q_delta in nats: h(delta) = -delta log delta - (1 - delta) log(1 - delta)."""
    delta = _check_delta(delta)
    return sum(-p * math.log(p) for p in (delta, 1 - delta) if p > 0)
