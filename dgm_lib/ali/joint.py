"""ALI's objective for fixed joints: the optimal discriminator and the value it reaches.

ALI (Dumoulin et al., 2017; Donahue et al., 2017) matches two joints of data x and code z: the
encoder joint q(x, z) = q(x) q_phi(z|x) and the decoder joint p(x, z) = p(z) p_theta(x|z). Its
discriminator f_omega(x, z) gets pairs from both (C. Li's lecture, the ALICE paper's notation):

    L_ALI(theta, phi, omega) = E_{q(x,z)}[log sigma(f_omega(x, z))]
                               + E_{p(x,z)}[log(1 - sigma(f_omega(x, z)))].

For fixed joints the maximising discriminator is D*(x, z) = sigma(f*(x, z)) = q(x, z) / (q(x, z) +
p(x, z)), i.e. f* = log q - log p, and its value is -log 4 + 2 JSD(q(x, z) || p(x, z)): the
generator and encoder minimise a Jensen-Shannon divergence between the joints, whose minimum -log 4
is reached exactly when q(x, z) = p(x, z) (Goodfellow et al., 2014, on pairs). A GAN is the same
argument on x alone, so it matches marginals only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dgm_lib.checks import check_float_tensor

LOG_4 = math.log(4.0)


def optimal_logit(log_q: Tensor, log_p: Tensor) -> Tensor:
    """The logit of the optimal discriminator, f*(x, z) = log q(x, z) - log p(x, z).

    Args:
        log_q: log q(x, z) at some pairs (any shape).
        log_p: log p(x, z) at the same pairs.

    Returns:
        f* with the broadcast shape; D* = sigmoid(f*) = q / (q + p).

    Example:
        >>> optimal_logit(torch.tensor([0.0]), torch.tensor([0.0])).sigmoid()
        tensor([0.5000])
    """
    check_float_tensor(log_q, "log_q")
    check_float_tensor(log_p, "log_p")
    return log_q - log_p


def ali_value(logits_q: Tensor, logits_p: Tensor) -> Tensor:
    """Monte Carlo L_ALI: mean log sigma(f) over q-pairs plus mean log(1 - sigma(f)) over p-pairs.

    Args:
        logits_q: f_omega(x, z) at pairs drawn from q(x, z) (the encoder joint), shape (n,).
        logits_p: f_omega(x, z) at pairs drawn from p(x, z) (the decoder joint), shape (m,).

    Returns:
        The scalar estimate (log sigma(f) and log(1 - sigma(f)) as logsigmoid(f), logsigmoid(-f)).
    """
    for value, name in ((logits_q, "logits_q"), (logits_p, "logits_p")):
        check_float_tensor(value, name)
        if value.numel() == 0:
            raise ValueError(f"{name} must hold at least one logit")
    return F.logsigmoid(logits_q).mean() + F.logsigmoid(-logits_p).mean()


def ali_value_on_grid(log_q: Tensor, log_p: Tensor, logits: Tensor, cell: float) -> Tensor:
    """L_ALI by quadrature: sum over grid cells of [q log sigma(f) + p log(1 - sigma(f))] * cell.

    Args:
        log_q: log q(x, z) at the centres of a grid covering both joints' mass.
        log_p: log p(x, z) at the same centres.
        logits: a discriminator's f(x, z) there.
        cell: the volume of one grid cell.

    Returns:
        The scalar value (float64 inputs give a float64 value).
    """
    if not cell > 0:
        raise ValueError(f"cell must be a positive volume, got {cell!r}")
    terms = log_q.exp() * F.logsigmoid(logits) + log_p.exp() * F.logsigmoid(-logits)
    return terms.sum() * cell


def jensen_shannon_on_grid(log_q: Tensor, log_p: Tensor, cell: float) -> Tensor:
    """JSD(q || p) = KL(q || m) / 2 + KL(p || m) / 2, m = (q + p) / 2, by quadrature on a grid.

    Args:
        log_q: log q at the centres of a grid covering both densities' mass.
        log_p: log p at the same centres.
        cell: the volume of one grid cell.

    Returns:
        The scalar JSD in nats, in [0, log 2].
    """
    if not cell > 0:
        raise ValueError(f"cell must be a positive volume, got {cell!r}")
    log_m = torch.logaddexp(log_q, log_p) - math.log(2.0)
    kl_q = (log_q.exp() * (log_q - log_m)).sum() * cell
    kl_p = (log_p.exp() * (log_p - log_m)).sum() * cell
    return (kl_q + kl_p) / 2
