"""Random projections P: R^d -> R^D with unit-norm columns, for subspace training.

Li, Farkhoor, Liu, Yosinski, ICLR 2018.

Dense Gaussian, very sparse (Li, Hastie, Church, KDD 2006) and Fastfood (Le, Sarlos, Smola, ICML
2013), each drawn once from a seed and kept as buffers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_positive_int

PROJECTIONS = ("dense", "sparse", "fastfood")
MAX_MATRIX_ENTRIES = 50_000_000  # D * d above this: no dense D x d matrix (200 MB in float32)


def check_dims(D: int, d: int) -> None:
    """D and d positive ints with d <= D, else TypeError/ValueError naming them."""
    check_positive_int(D, "D")
    check_positive_int(d, "d")
    if d > D:
        raise ValueError(
            f"d must be at most D = {D} (the number of native parameters), got d = {d}"
        )


def _check_entries(D: int, d: int, what: str) -> None:
    """ValueError if a dense D x d matrix would have more than MAX_MATRIX_ENTRIES entries."""
    if D * d > MAX_MATRIX_ENTRIES:
        raise ValueError(
            f"{what}: a dense D x d matrix with D = {D}, d = {d} has {D * d:,} entries, more than "
            "the allowed "
            f"{MAX_MATRIX_ENTRIES:,}; use projection='sparse' or 'fastfood' for large D * d"
        )


def walsh_hadamard(x: Tensor) -> Tensor:
    """Unnormalised fast Walsh-Hadamard transform H x along the last dimension, O(L log L).

    L must be a power of 2; H is the Sylvester-ordered L x L matrix of +-1 with H H^T = L I (Le,
    Sarlos, Smola 2013, Fastfood).

    Example:
        >>> walsh_hadamard(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        tensor([1., 1., 1., 1.])
    """
    L = x.shape[-1]
    if L < 1 or L & (L - 1):
        raise ValueError(f"x must have a power-of-2 last dimension, got shape {tuple(x.shape)}")
    shape, h = x.shape, 1
    while h < L:
        pairs = x.reshape(*shape[:-1], L // (2 * h), 2, h)
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        x = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    return x.reshape(shape)


class Projection(nn.Module):
    """A fixed random map theta^(d) -> P theta^(d) with unit-norm columns.

    A fixed random map theta^(d) (d,) -> P theta^(d) (D,) with (approximately) unit-norm columns of
    P.

    P is drawn once from `seed` (on the CPU, so the same seed gives the same P on every device) and
    kept as buffers; the output follows the dtype and device of theta_d. Inputs (..., d) map to
    (..., D).
    """

    def __init__(self, D: int, d: int, seed: int = 0):
        super().__init__()
        check_dims(D, d)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(
                f"seed must be an int in [0, 2**63), got {type(seed).__name__} {seed!r}"
            )
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an int in [0, 2**63), got {seed}")
        self.D, self.d, self.seed = D, d, seed

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def forward(self, theta_d: Tensor) -> Tensor:
        if not isinstance(theta_d, Tensor) or not theta_d.is_floating_point():
            raise TypeError(
                f"theta_d must be a floating-point tensor, got {type(theta_d).__name__}"
            )
        if theta_d.dim() == 0 or theta_d.shape[-1] != self.d:
            raise ValueError(
                f"theta_d must have shape (..., d) with d = {self.d}, got {tuple(theta_d.shape)}"
            )
        return self._project(theta_d)

    def _project(self, theta_d: Tensor) -> Tensor:
        raise NotImplementedError

    def _buffer_dtype(self) -> torch.dtype:
        return next(b for b in self.buffers() if b.is_floating_point()).dtype

    def matrix(self) -> Tensor:
        """The dense D x d matrix P, column j = P e_j (small D * d only).

        ValueError above MAX_MATRIX_ENTRIES entries.
        """
        _check_entries(self.D, self.d, f"{type(self).__name__}.matrix()")
        device = next(self.buffers()).device
        eye = torch.eye(self.d, dtype=self._buffer_dtype(), device=device)
        return self._project(eye).T.contiguous()

    def extra_repr(self) -> str:
        return f"D={self.D}, d={self.d}, seed={self.seed}"


class DenseProjection(Projection):
    """P_ij ~ N(0, 1), then each column divided by its norm over all D entries (all layers jointly).

    Li et al. (2018): theta^(D) = theta_0 + P theta^(d) with a dense Gaussian P; memory D * d (small
    models only).
    """

    def __init__(self, D: int, d: int, seed: int = 0):
        super().__init__(D, d, seed)
        _check_entries(D, d, "DenseProjection")
        P = torch.randn(D, d, generator=self._generator(), dtype=torch.float64)
        self.register_buffer("P", (P / P.norm(dim=0)).to(torch.get_default_dtype()))

    def _project(self, theta_d: Tensor) -> Tensor:
        return theta_d @ self.P.to(theta_d).T


class SparseProjection(Projection):
    """Very sparse random projection.

    P_ij in {-1, 0, +1} with P(P_ij != 0) = 1/sqrt(D), columns scaled to unit norm.

    Li, Hastie, Church (KDD 2006) with s = sqrt(D); a column with no entry gets one at a random row.
    About d sqrt(D) non-zeros, kept as COO triplets (rows, cols, values); P theta_d is a gather and
    an index_add (6x faster than torch.sparse.mm here); `sparse_matrix()` gives the torch.sparse COO
    tensor.
    """

    def __init__(self, D: int, d: int, seed: int = 0):
        super().__init__(D, d, seed)
        g = self._generator()
        total = torch.tensor(float(D) * d, dtype=torch.float64)
        count = int(
            torch.binomial(
                total, torch.tensor(1.0 / math.sqrt(D), dtype=torch.float64), generator=g
            )
        )
        flat = torch.unique(
            torch.randint(D * d, (count,), generator=g)
        )  # row-major flat index row * d + col
        rows, cols = flat // d, flat % d
        empty = torch.ones(d, dtype=torch.bool)
        empty[cols] = False
        extra = torch.nonzero(empty).flatten()
        rows = torch.cat((rows, torch.randint(D, (len(extra),), generator=g)))
        cols = torch.cat((cols, extra))
        signs = torch.randint(0, 2, (len(rows),), generator=g, dtype=torch.float64) * 2 - 1
        per_column = torch.bincount(cols, minlength=d).to(torch.float64)
        values = (
            signs / per_column[cols].sqrt()
        )  # each column: n_j entries +-1/sqrt(n_j), norm exactly 1
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)
        self.register_buffer("values", values.to(torch.get_default_dtype()))

    @property
    def nnz(self) -> int:
        """Number of non-zero entries of P."""
        return len(self.values)

    def sparse_matrix(self) -> Tensor:
        """P as a coalesced torch.sparse COO tensor of shape (D, d)."""
        indices = torch.stack((self.rows, self.cols))
        return torch.sparse_coo_tensor(
            indices, self.values, (self.D, self.d), check_invariants=True
        ).coalesce()

    def matrix(self) -> Tensor:
        _check_entries(self.D, self.d, "SparseProjection.matrix()")
        return self.sparse_matrix().to_dense()

    def _project(self, theta_d: Tensor) -> Tensor:
        terms = theta_d[..., self.cols] * self.values.to(theta_d)
        out = theta_d.new_zeros(*theta_d.shape[:-1], self.D)
        return out.index_add(-1, self.rows.to(theta_d.device), terms)


class FastfoodProjection(Projection):
    """The Fastfood projection: Walsh-Hadamard transforms, O(D log d) per product.

    Fastfood: P theta_d = the first D entries of [V_1 x; ...; V_n x] / sqrt(D / L), V_b = H G_b Pi_b
    H B_b / s_b.

    x is theta_d zero-padded to L = 2^ceil(log2 d), n = ceil(D / L) independent blocks, H the L x L
    Walsh-Hadamard matrix, B_b random signs, Pi_b a random permutation, G_b ~ N(0, I) diagonal, s_b
    = sqrt(L ||G_b||^2) (each block has unit-norm columns), and the 1/sqrt(D / L) rescaling of the
    reference code of Li et al. (2018) makes the columns of P unit norm in expectation (exactly when
    L divides D). Le, Sarlos, Smola (ICML 2013). Cost O(D log d) per product, memory O(D); no D x d
    matrix.
    """

    def __init__(self, D: int, d: int, seed: int = 0):
        super().__init__(D, d, seed)
        g = self._generator()
        self.L = 1 << (d - 1).bit_length()
        self.blocks = -(-D // self.L)
        n, L = self.blocks, self.L
        B = torch.randint(0, 2, (n, L), generator=g, dtype=torch.float64) * 2 - 1
        Pi = torch.argsort(torch.rand(n, L, generator=g), dim=-1)
        G = torch.randn(n, L, generator=g, dtype=torch.float64)
        divisor = (L * G.pow(2).sum(-1)).sqrt() * math.sqrt(D / L)
        dtype = torch.get_default_dtype()
        self.register_buffer("B", B.to(dtype))
        self.register_buffer("Pi", Pi)
        self.register_buffer("G", G.to(dtype))
        self.register_buffer("divisor", divisor.to(dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, L={self.L}, blocks={self.blocks}"

    def _project(self, theta_d: Tensor) -> Tensor:
        x = nn.functional.pad(theta_d, (0, self.L - self.d)).unsqueeze(-2)  # (..., 1, L)
        y = walsh_hadamard(self.B.to(theta_d) * x)  # (..., n, L)
        y = torch.gather(y, -1, self.Pi.to(theta_d.device).expand(y.shape))
        y = walsh_hadamard(self.G.to(theta_d) * y) / self.divisor.to(theta_d).unsqueeze(-1)
        return y.flatten(-2)[..., : self.D]


def make_projection(kind: str, D: int, d: int, seed: int = 0) -> Projection:
    """The projection `kind` ("dense", "sparse" or "fastfood") from R^d to R^D, drawn with `seed`.

    Example:
        >>> P = make_projection("dense", D=100, d=3, seed=0)
        >>> P(torch.zeros(3)).shape
        torch.Size([100])
    """
    classes = {"dense": DenseProjection, "sparse": SparseProjection, "fastfood": FastfoodProjection}
    if kind not in classes:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {kind!r}")
    return classes[kind](D, d, seed)
