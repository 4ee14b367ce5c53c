"""Checks of the exercises of the chapter "Change of variables".

An affine coupling layer and the MAF inverse pass.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .registry import Case, register

Conditioner = Callable[[Tensor], tuple[Tensor, Tensor]]

_COUPLING_HINT = (
    "split x1 = x[:, :d], x2 = x[:, d:]; call mu, log_sigma = conditioner(x1) once; z2 = (x2 - mu) "
    "* exp(-log_sigma); return torch.cat([x1, z2], dim=1) and log_det = -log_sigma.sum(dim=1), one "
    "number per row (the Jacobian is prod 1/sigma)."
)
_MAF_HINT = (
    "start from x = torch.zeros_like(z) and repeat m = z.shape[1] times: mu, log_sigma = "
    "conditioner(x); x = z * exp(log_sigma) + mu. Output j only looks at x_1..x_{j-1}, so after "
    "pass k the first k coordinates are final. log_det = +log_sigma.sum(dim=1) from the last pass "
    "(g multiplies by sigma, f divides)."
)


def _coupling_forward(x: Tensor, d: int, conditioner: Conditioner) -> tuple[Tensor, Tensor]:
    """Reference: z = [x_1, (x_2 - mu(x_1)) / sigma(x_1)], log|det J_f| = -sum log sigma(x_1)."""
    mu, log_sigma = conditioner(x[:, :d])
    return torch.cat([x[:, :d], (x[:, d:] - mu) / log_sigma.exp()], dim=1), -log_sigma.sum(dim=1)


def _maf_inverse(z: Tensor, conditioner: Conditioner) -> tuple[Tensor, Tensor]:
    """Reference: x_j = z_j sigma_j(x_{1:j-1}) + mu_j(x_{1:j-1}), one j at a time.

    Log|det J_g| = sum log sigma.
    """
    x = torch.zeros_like(z)
    for j in range(z.shape[1]):
        mu, log_sigma = conditioner(x)
        x = torch.cat(
            [
                x[:, :j],
                z[:, j : j + 1] * log_sigma[:, j : j + 1].exp() + mu[:, j : j + 1],
                x[:, j + 1 :],
            ],
            1,
        )
    return x, conditioner(x)[1].sum(dim=1)


def _mlp_conditioner(d_in: int, d_out: int, seed: int) -> Conditioner:
    """A seeded float64 one-hidden-layer tanh MLP x_1 -> (mu, log_sigma), log_sigma tanh-bounded."""
    gen = torch.Generator().manual_seed(seed)
    w1, w2 = (
        torch.randn(*shape, generator=gen, dtype=torch.float64)
        for shape in ((16, d_in), (2 * d_out, 16))
    )

    def conditioner(x1: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = (torch.tanh(x1 @ w1.T) @ w2.T).chunk(2, dim=1)
        return mu, torch.tanh(raw)

    return conditioner


def _autoregressive_conditioner(m: int, seed: int, nonlinear: bool) -> Conditioner:
    """A seeded conditioner whose column j depends only on x_{1:j-1} (strictly lower triangular
    weights)."""
    gen = torch.Generator().manual_seed(seed)
    a, b, c = (
        torch.tril(torch.randn(m, m, generator=gen, dtype=torch.float64), -1) for _ in range(3)
    )
    shift = 0.5 * torch.randn(m, generator=gen, dtype=torch.float64)

    def conditioner(x: Tensor) -> tuple[Tensor, Tensor]:
        mu = x @ a.T + (torch.sin(x @ c.T) if nonlinear else 0)
        return mu, 0.5 * torch.tanh(x @ b.T) + shift

    return conditioner


def _z(batch: int, m: int, seed: int) -> Tensor:
    return torch.randn(batch, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _coupling_case(x: Tensor, d: int, conditioner: Conditioner) -> Case:
    return Case(
        args=(x, d, conditioner),
        expected=_coupling_forward(x, d, conditioner),
        rtol=1e-9,
        atol=1e-10,
    )


def _maf_case(z: Tensor, conditioner: Conditioner) -> Case:
    return Case(args=(z, conditioner), expected=_maf_inverse(z, conditioner), rtol=1e-9, atol=1e-10)


@register(
    "change_of_variables.coupling_forward",
    "m = 2, d = 1, a linear conditioner",
    hint=_COUPLING_HINT,
)
def _coupling_linear() -> Case:
    x = torch.tensor([[1.0, 2.0], [-0.5, 0.0], [0.0, 3.0]], dtype=torch.float64)
    return _coupling_case(x, 1, lambda x1: (0.5 * x1, math.log(2.0) * x1))


@register(
    "change_of_variables.coupling_forward",
    "m = 5, d = 2, an MLP conditioner, batch of 4",
    hint=_COUPLING_HINT,
)
def _coupling_mlp() -> Case:
    return _coupling_case(_z(4, 5, 1), 2, _mlp_conditioner(2, 3, seed=2))


@register(
    "change_of_variables.coupling_forward",
    "m = 6, d = 5: one transformed coordinate",
    hint=_COUPLING_HINT,
)
def _coupling_last() -> Case:
    return _coupling_case(_z(3, 6, 3), 5, _mlp_conditioner(5, 1, seed=4))


@register(
    "change_of_variables.maf_inverse",
    "m = 1: a constant conditioner, x = 2 z + 0.5",
    hint=_MAF_HINT,
)
def _maf_constant() -> Case:
    z = torch.tensor([[0.0], [1.0], [-2.0]], dtype=torch.float64)
    return _maf_case(z, lambda x: (torch.full_like(x, 0.5), torch.full_like(x, math.log(2.0))))


@register(
    "change_of_variables.maf_inverse", "m = 4, a linear autoregressive conditioner", hint=_MAF_HINT
)
def _maf_linear() -> Case:
    return _maf_case(_z(3, 4, 5), _autoregressive_conditioner(4, seed=6, nonlinear=False))


@register(
    "change_of_variables.maf_inverse",
    "m = 6, a nonlinear autoregressive conditioner, batch 8",
    hint=_MAF_HINT,
)
def _maf_nonlinear() -> Case:
    return _maf_case(_z(8, 6, 7), _autoregressive_conditioner(6, seed=8, nonlinear=True))
