"""Uniform dequantization: x = y + u, u ~ U[0, 1)^D (Theis et al., ICLR 2016; Dinh et al., RealNVP).

A continuous density p on [0, K)^D then gives E_u log p(y + u) <= log P(y), P(y) = int p(y + u) du:
maximizing the left side trains a discrete model P (Jensen).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_integer_valued, check_tensor


def _float_dtype(y: Tensor) -> torch.dtype:
    """y's dtype if floating, else torch's default dtype."""
    return y.dtype if y.is_floating_point() else torch.get_default_dtype()


def uniform_dequantize(y: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x = y + u with u ~ U[0, 1)^D drawn per entry (uniform dequantization, Theis et al., 2016).

    The noise is drawn on the generator's device (y's without one); x is on y's device, in y's
    dtype if floating, else in the default dtype.

    Example:
        >>> x = uniform_dequantize(torch.tensor([[0, 3]]), torch.Generator().manual_seed(0))
        >>> bool(((x >= torch.tensor([0, 3])) & (x < torch.tensor([1, 4]))).all())
        True
    """
    check_integer_valued(y, "y")
    dtype = _float_dtype(y)
    device = generator.device if generator is not None else y.device
    u = torch.rand(y.shape, generator=generator, device=device, dtype=dtype).to(y.device)
    return y.to(dtype) + u


class UniformDequantizer(nn.Module):
    """q(u|y) = U[0, 1]^D.

    x = y + u and log q(u|y) = 0 (Theis et al., 2016; Dinh et al., RealNVP, 2017).
    """

    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(x = y + u, log q(u|y) = 0 of shape (B,)), u ~ U[0, 1)^D."""
        x = uniform_dequantize(y, generator)
        if x.dim() < 2:
            raise ValueError(f"y must have shape (batch, *event), got {tuple(y.shape)}")
        return x, x.new_zeros(x.shape[0])

    def log_q(self, u: Tensor, y: Tensor) -> Tensor:
        """log q(u|y) = 0 inside [0, 1]^D, -inf outside, shape (B,)."""
        check_tensor(u, "u")
        inside = ((u >= 0) & (u <= 1)).reshape(u.shape[0], -1).all(1)
        return torch.where(inside, 0.0, -math.inf).to(u.dtype)
