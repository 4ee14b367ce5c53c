"""Linear flows z = W x.

Permutations, LU and QR parametrisations, Glow's invertible 1x1 convolution (Lecture 2).

A general W costs O(m^3) to invert and to take det of; parametrising W = P L U or W = Q R gives
log|det W| in O(m) from the triangular diagonals and W^{-1} z by triangular solves in O(m^2) (no
matrix inverse).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_features, check_positive_int, check_vector
from dgm_lib.flows.base import Transform, as_index


class Permutation(Transform):
    """z_i = x_{perm[i]} along dim 1 (features of (B, m) or channels of (B, C, H, W)).

    |det J| = 1, log-det 0.

    Between coupling or autoregressive layers it lets every variable be transformed (Dinh et al.,
    RealNVP, 2017).
    """

    def __init__(self, perm: Sequence[int] | Tensor):
        super().__init__()
        perm = torch.as_tensor(perm)
        if perm.numel() == 0:
            raise ValueError("perm must be a non-empty permutation of 0..m-1, got []")
        index = as_index(perm, "perm", perm.numel())
        self.register_buffer("perm", index)
        self.register_buffer("inverse_perm", torch.argsort(index))

    def extra_repr(self) -> str:
        return f"perm={self.perm.tolist()}"

    def _check(self, x: Tensor, name: str) -> None:
        check_features(x, name, len(self.perm))

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z[:, self.inverse_perm], z.new_zeros(z.shape[0])


class Reverse(Permutation):
    """z = (x_m, ..., x_1): the permutation that flips the autoregressive order; log-det 0."""

    def __init__(self, m: int):
        check_positive_int(m, "m")
        super().__init__(torch.arange(m - 1, -1, -1))


def _random_rotation(m: int) -> Tensor:
    """A random orthogonal (m, m) matrix.

    The Q of a QR decomposition of a Gaussian matrix (Glow's init).
    """
    q, r = torch.linalg.qr(torch.randn(m, m, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


class LULinear(Transform):
    """Linear flow z = W x with W = P L U.

    P a fixed permutation, L unit lower, U upper with diagonal U_jj = sign_j * exp(s_j).

    log|det J_f| = log|det W| = sum_j s_j in O(m); x = U^{-1} L^{-1} P^T z by two triangular solves,
    O(m^2). `weight` (default: a random rotation) is decomposed once; a singular weight raises
    ValueError. The signs sign_j = +-1 of U's diagonal are taken from that decomposition and kept
    as fixed buffers (as in Glow), so W stays invertible during training and any invertible weight
    is a valid start; with D = diag(sign), W = (P D)(D L D)(D U) is the lecture's P L U with a
    positive diagonal, P D a fixed signed permutation. Kingma & Dhariwal, Glow: Generative Flow
    with Invertible 1x1 Convolutions, NeurIPS 2018.
    """

    def __init__(self, m: int, weight: Tensor | None = None):
        super().__init__()
        self.m = check_positive_int(m, "m")
        w = _random_rotation(m) if weight is None else torch.as_tensor(weight, dtype=torch.float64)
        if w.shape != (m, m):
            raise ValueError(f"weight must have shape ({m}, {m}), got {tuple(w.shape)}")
        if not torch.isfinite(w).all():
            raise ValueError("weight must be finite, got NaN or inf entries")
        p, lower, upper = torch.linalg.lu(w)
        diag = torch.diagonal(upper)
        if (diag.abs() <= 1e-12 * w.abs().max().clamp_min(1e-300)).any():
            raise ValueError(
                f"weight is singular (a zero pivot in W = P L U); allowed: an invertible ({m}, "
                f"{m}) matrix"
            )
        dtype = torch.get_default_dtype()
        self.register_buffer("P", p.to(dtype))
        self.register_buffer("sign", torch.sign(diag).to(dtype))
        self.lower = nn.Parameter(torch.tril(lower, -1).to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_diag = nn.Parameter(diag.abs().log().to(dtype))

    def extra_repr(self) -> str:
        return f"m={self.m}"

    def _check(self, x: Tensor, name: str) -> None:
        check_vector(x, name, self.m)

    def factors(self) -> tuple[Tensor, Tensor, Tensor]:
        """(P, L, U) of W = P L U.

        L = I + strict lower part, U = strict upper part + diag(sign * exp(s)).
        """
        eye = torch.eye(self.m, dtype=self.lower.dtype, device=self.lower.device)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_diag))
        return self.P, lower, upper

    def weight(self) -> Tensor:
        """W = P L U (an O(m^3) product, for inspection; the flow never forms it)."""
        p, lower, upper = self.factors()
        return p @ lower @ upper

    def log_abs_det(self) -> Tensor:
        """log|det W| = sum_j s_j (|det P| = det L = 1)."""
        return self.log_diag.sum()

    def matmul_rows(self, rows: Tensor) -> Tensor:
        """W x for each row x of rows (..., m): x^T U^T L^T P^T, three O(m^2) products."""
        p, lower, upper = self.factors()
        return rows @ upper.T @ lower.T @ p.T

    def solve_rows(self, rows: Tensor) -> Tensor:
        """W^{-1} z for each row z of rows (..., m).

        y = L^{-1} P^T z, x = U^{-1} y by triangular solves.
        """
        p, lower, upper = self.factors()
        flat = rows.reshape(-1, self.m) @ p  # rows of P^T z
        y = torch.linalg.solve_triangular(lower.T, flat, upper=True, left=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper.T, y, upper=False, left=False)
        return x.reshape(rows.shape)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.matmul_rows(x), self.log_abs_det().expand(x.shape[0])

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.solve_rows(z), -self.log_abs_det().expand(z.shape[0])


class QRLinear(Transform):
    """Linear flow z = W x with W = Q R.

    Q = exp(A - A^T) orthogonal, R upper with positive diagonal exp(r).

    log|det J_f| = log|det R| = sum_j r_j in O(m); x = R^{-1} Q^T z by one product and a triangular
    solve. Q is the matrix exponential of a skew-symmetric matrix (a rotation, det Q = 1), starting
    at a random one. Hoogeboom, van den Berg, Welling, Emerging Convolutions for Generative
    Normalizing Flows, ICML 2019.
    """

    def __init__(self, m: int):
        super().__init__()
        self.m = check_positive_int(m, "m")
        self.skew = nn.Parameter(torch.triu(torch.randn(m, m), 1) / m**0.5)
        self.upper = nn.Parameter(torch.zeros(m, m))
        self.log_diag = nn.Parameter(torch.zeros(m))

    def extra_repr(self) -> str:
        return f"m={self.m}"

    def _check(self, x: Tensor, name: str) -> None:
        check_vector(x, name, self.m)

    def factors(self) -> tuple[Tensor, Tensor]:
        """(Q, R) of W = Q R.

        (Q, R): Q = exp(A - A^T) with A the strict upper part of `skew`, R = strict upper part +
        diag(exp(r)).
        """
        a = torch.triu(self.skew, 1)
        q = torch.linalg.matrix_exp(a - a.T)
        r = torch.triu(self.upper, 1) + torch.diag(torch.exp(self.log_diag))
        return q, r

    def weight(self) -> Tensor:
        """W = Q R."""
        q, r = self.factors()
        return q @ r

    def log_abs_det(self) -> Tensor:
        """log|det W| = sum_j r_j (|det Q| = 1)."""
        return self.log_diag.sum()

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q, r = self.factors()
        return x @ r.T @ q.T, self.log_abs_det().expand(x.shape[0])

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        q, r = self.factors()
        x = torch.linalg.solve_triangular(r.T, z @ q, upper=False, left=False)
        return x, -self.log_abs_det().expand(z.shape[0])


class InvConv1x1(Transform):
    """Glow's invertible 1x1 convolution on (B, C, H, W): z_{:, i, j} = W x_{:, i, j}.

    Log|det J_f| = H W log|det W|.

    With lu=True, W = P L U as in LULinear (O(C) log-det, triangular solves); with lu=False, W is a
    free matrix (log|det W| by an LU-based slogdet, O(C^3); inverse by a linear solve). Both start
    at a random rotation. Kingma & Dhariwal, Glow: Generative Flow with Invertible 1x1 Convolutions,
    NeurIPS 2018.
    """

    def __init__(self, channels: int, lu: bool = True):
        super().__init__()
        self.channels, self.lu = check_positive_int(channels, "channels"), bool(lu)
        if self.lu:
            self.linear = LULinear(channels)
        else:
            self.weight = nn.Parameter(_random_rotation(channels).to(torch.get_default_dtype()))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, lu={self.lu}"

    def _check(self, x: Tensor, name: str) -> None:
        check_features(x, name, self.channels)
        if x.dim() != 4:
            raise ValueError(
                f"{name} must have shape (batch, {self.channels}, H, W), got {tuple(x.shape)}"
            )

    def log_abs_det(self) -> Tensor:
        """log|det W| of the C x C kernel; ValueError if W became singular (lu=False only)."""
        if self.lu:
            return self.linear.log_abs_det()
        log_abs_det = torch.linalg.slogdet(self.weight).logabsdet
        if not torch.isfinite(log_abs_det):
            raise ValueError(
                "InvConv1x1 weight is singular (det W = 0); use lu=True to keep it invertible"
            )
        return log_abs_det

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_det = (x.shape[2] * x.shape[3] * self.log_abs_det()).expand(x.shape[0])
        rows = x.movedim(1, -1)
        z = self.linear.matmul_rows(rows) if self.lu else rows @ self.weight.T
        return z.movedim(-1, 1), log_det

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_det = -(z.shape[2] * z.shape[3] * self.log_abs_det()).expand(z.shape[0])
        rows = z.movedim(1, -1)
        x = (
            self.linear.solve_rows(rows)
            if self.lu
            else torch.linalg.solve(self.weight.T, rows, left=False)
        )
        return x.movedim(-1, 1), log_det
