"""Subspace training and the intrinsic dimension of objective landscapes (Li, Farkhoor, Liu, Yosinski, ICLR 2018).

Only d of the D native parameters are free: theta^(D) = theta_0^(D) + P theta^(d), with theta_0 the frozen random
initialisation, P a fixed random D x d projection with unit-norm columns, and theta^(d) in R^d trained from 0.
The intrinsic dimension d_int90 is the smallest d whose performance reaches 90% of the baseline.
Projections: dense Gaussian, very sparse (Li, Hastie, Church 2006) and Fastfood (Le, Sarlos, Smola 2013).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from dgm_lib.core import check_positive_int

PROJECTIONS = ("dense", "sparse", "fastfood")
BASELINE_KINDS = ("direct", "fixed")
MAX_MATRIX_ENTRIES = 50_000_000  # D * d above this: no dense D x d matrix (200 MB in float32)
TOY_GROUPS, TOY_GROUP_SIZE = 10, 100  # the lecture's toy problem: 10 groups of 100 parameters, D = 1000


def _check_dims(D: int, d: int) -> None:
    """D and d positive ints with d <= D, else TypeError/ValueError naming them."""
    check_positive_int(D, "D")
    check_positive_int(d, "d")
    if d > D:
        raise ValueError(f"d must be at most D = {D} (the number of native parameters), got d = {d}")


def _check_entries(D: int, d: int, what: str) -> None:
    """ValueError if a dense D x d matrix would have more than MAX_MATRIX_ENTRIES entries."""
    if D * d > MAX_MATRIX_ENTRIES:
        raise ValueError(
            f"{what}: a dense D x d matrix with D = {D}, d = {d} has {D * d:,} entries, more than the allowed "
            f"{MAX_MATRIX_ENTRIES:,}; use projection='sparse' or 'fastfood' for large D * d"
        )


def walsh_hadamard(x: Tensor) -> Tensor:
    """Unnormalised fast Walsh-Hadamard transform H x along the last dimension (a power of 2), O(L log L).

    H is the Sylvester-ordered L x L matrix of +-1 with H H^T = L I (Le, Sarlos, Smola 2013, Fastfood).
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
    """A fixed random map theta^(d) (d,) -> P theta^(d) (D,) with (approximately) unit-norm columns of P.

    P is drawn once from `seed` (on the CPU, so the same seed gives the same P on every device) and kept as
    buffers; the output follows the dtype and device of theta_d. Inputs (..., d) map to (..., D).
    """

    def __init__(self, D: int, d: int, seed: int = 0):
        super().__init__()
        _check_dims(D, d)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int in [0, 2**63), got {type(seed).__name__} {seed!r}")
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an int in [0, 2**63), got {seed}")
        self.D, self.d, self.seed = D, d, seed

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def forward(self, theta_d: Tensor) -> Tensor:
        if not isinstance(theta_d, Tensor) or not theta_d.is_floating_point():
            raise TypeError(f"theta_d must be a floating-point tensor, got {type(theta_d).__name__}")
        if theta_d.dim() == 0 or theta_d.shape[-1] != self.d:
            raise ValueError(f"theta_d must have shape (..., d) with d = {self.d}, got {tuple(theta_d.shape)}")
        return self._project(theta_d)

    def _project(self, theta_d: Tensor) -> Tensor:
        raise NotImplementedError

    def _buffer_dtype(self) -> torch.dtype:
        return next(b for b in self.buffers() if b.is_floating_point()).dtype

    def matrix(self) -> Tensor:
        """The dense D x d matrix P (small D * d only: ValueError above MAX_MATRIX_ENTRIES), columns P e_j."""
        _check_entries(self.D, self.d, f"{type(self).__name__}.matrix()")
        device = next(self.buffers()).device
        eye = torch.eye(self.d, dtype=self._buffer_dtype(), device=device)
        return self._project(eye).T.contiguous()

    def extra_repr(self) -> str:
        return f"D={self.D}, d={self.d}, seed={self.seed}"


class DenseProjection(Projection):
    """P_ij ~ N(0, 1), then each column divided by its norm over all D entries (all layers jointly).

    Li et al. (2018): theta^(D) = theta_0 + P theta^(d) with a dense Gaussian P; memory D * d (small models only).
    """

    def __init__(self, D: int, d: int, seed: int = 0):
        super().__init__(D, d, seed)
        _check_entries(D, d, "DenseProjection")
        P = torch.randn(D, d, generator=self._generator(), dtype=torch.float64)
        self.register_buffer("P", (P / P.norm(dim=0)).to(torch.get_default_dtype()))

    def _project(self, theta_d: Tensor) -> Tensor:
        return theta_d @ self.P.to(theta_d).T


class SparseProjection(Projection):
    """Very sparse random projection: P_ij in {-1, 0, +1} with P(P_ij != 0) = 1/sqrt(D), columns scaled to unit norm.

    Li, Hastie, Church (KDD 2006) with s = sqrt(D); a column with no entry gets one at a random row. About
    d sqrt(D) non-zeros, kept as COO triplets (rows, cols, values); P theta_d is a gather and an index_add
    (6x faster than torch.sparse.mm here); `sparse_matrix()` gives the torch.sparse COO tensor.
    """

    def __init__(self, D: int, d: int, seed: int = 0):
        super().__init__(D, d, seed)
        g = self._generator()
        total = torch.tensor(float(D) * d, dtype=torch.float64)
        count = int(torch.binomial(total, torch.tensor(1.0 / math.sqrt(D), dtype=torch.float64), generator=g))
        flat = torch.unique(torch.randint(D * d, (count,), generator=g))  # row-major flat index row * d + col
        rows, cols = flat // d, flat % d
        empty = torch.ones(d, dtype=torch.bool)
        empty[cols] = False
        extra = torch.nonzero(empty).flatten()
        rows = torch.cat((rows, torch.randint(D, (len(extra),), generator=g)))
        cols = torch.cat((cols, extra))
        signs = torch.randint(0, 2, (len(rows),), generator=g, dtype=torch.float64) * 2 - 1
        per_column = torch.bincount(cols, minlength=d).to(torch.float64)
        values = signs / per_column[cols].sqrt()  # each column: n_j entries +-1/sqrt(n_j), norm exactly 1
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
        return torch.sparse_coo_tensor(indices, self.values, (self.D, self.d), check_invariants=True).coalesce()

    def matrix(self) -> Tensor:
        _check_entries(self.D, self.d, "SparseProjection.matrix()")
        return self.sparse_matrix().to_dense()

    def _project(self, theta_d: Tensor) -> Tensor:
        terms = theta_d[..., self.cols] * self.values.to(theta_d)
        out = theta_d.new_zeros(*theta_d.shape[:-1], self.D)
        return out.index_add(-1, self.rows.to(theta_d.device), terms)


class FastfoodProjection(Projection):
    """Fastfood: P theta_d = the first D entries of [V_1 x; ...; V_n x] / sqrt(D / L), V_b = H G_b Pi_b H B_b / s_b.

    x is theta_d zero-padded to L = 2^ceil(log2 d), n = ceil(D / L) independent blocks, H the L x L Walsh-Hadamard
    matrix, B_b random signs, Pi_b a random permutation, G_b ~ N(0, I) diagonal, s_b = sqrt(L ||G_b||^2) (each
    block has unit-norm columns), and the 1/sqrt(D / L) rescaling of the reference code of Li et al. (2018) makes
    the columns of P unit norm in expectation (exactly when L divides D). Le, Sarlos, Smola (ICML 2013).
    Cost O(D log d) per product, memory O(D); no D x d matrix.
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
    """The projection named `kind` ("dense", "sparse" or "fastfood") from R^d to R^D drawn with `seed`."""
    classes = {"dense": DenseProjection, "sparse": SparseProjection, "fastfood": FastfoodProjection}
    if kind not in classes:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {kind!r}")
    return classes[kind](D, d, seed)


class SubspaceModule(nn.Module):
    """Subspace training of any module: its parameters are theta^(D) = theta_0^(D) + P theta^(d), theta^(d) from 0.

    theta_0 is a frozen flat copy of the module's initial parameters (a buffer) and theta_d (d,) the ONLY
    parameter; forward(*args, **kwargs) = torch.func.functional_call(module, theta^(D) reshaped, args, kwargs).
    The wrapped module is not a registered submodule (its parameters stay out of `parameters()` and never
    receive gradients), but `.to()` / `.train()` reach it. Li, Farkhoor, Liu, Yosinski (ICLR 2018), Sec. 2.
    """

    def __init__(self, module: nn.Module, d: int, projection: str = "dense", seed: int = 0):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        named = list(module.named_parameters())
        if not named:
            raise ValueError(f"module must have parameters to re-parameterise, {type(module).__name__} has none")
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) > 1 or not named[0][1].is_floating_point():
            raise ValueError(f"module's parameters must share one floating dtype, got {sorted(map(str, dtypes))}")
        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
        object.__setattr__(self, "module", module)  # deliberately not a submodule: see the class docstring
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        theta_0 = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.D, self.d, self.seed, self.kind = theta_0.numel(), d, seed, projection
        _check_dims(self.D, d)
        self.register_buffer("theta_0", theta_0)
        self.projection = make_projection(projection, self.D, d, seed).to(theta_0)
        self.theta_d = nn.Parameter(torch.zeros(d, dtype=theta_0.dtype, device=theta_0.device))

    def _apply(self, fn, recurse: bool = True):
        self.module._apply(fn)  # the wrapped module's buffers (e.g. batch-norm statistics) follow .to()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> "SubspaceModule":
        self.module.train(mode)
        return super().train(mode)

    def theta(self) -> Tensor:
        """The flat native parameters theta^(D) = theta_0 + P theta^(d) (differentiable in theta_d)."""
        return self.theta_0 + self.projection(self.theta_d)

    def _params(self, theta: Tensor) -> dict[str, Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.numels), self.shapes)}

    def native_parameters(self) -> dict[str, Tensor]:
        """The current theta^(D) as the wrapped module's named parameters (detached copies)."""
        return {n: t.detach().clone() for n, t in self._params(self.theta()).items()}

    def compressed(self) -> dict[str, Any]:
        """What the trained model costs to store: d numbers plus the projection's seed and kind.

        Given the same initialisation theta_0 (itself reproducible from the model's seed), theta^(D) is rebuilt
        exactly as theta_0 + P theta^(d) with P regenerated from the seed.
        """
        return {"theta_d": self.theta_d.detach().clone(), "seed": self.seed, "d": self.d, "projection": self.kind}

    def forward(self, *args, **kwargs):
        return functional_call(self.module, self._params(self.theta()), args, kwargs)

    def extra_repr(self) -> str:
        return f"module={type(self.module).__name__}, D={self.D}, d={self.d}, projection={self.kind!r}"


def toy_objective(theta: Tensor) -> Tensor:
    """The lecture's toy problem J(theta) = sum_{r=1}^{10} (1 - sum_{i=100r-99}^{100r} theta_i)^2, theta (..., 1000).

    Ten linear constraints on 1000 parameters: the solution set has dimension 990, so d_int = 10 (Li et al. 2018).
    """
    size = TOY_GROUPS * TOY_GROUP_SIZE
    if not isinstance(theta, Tensor) or not theta.is_floating_point():
        raise TypeError(f"theta must be a floating-point tensor, got {type(theta).__name__}")
    if theta.dim() == 0 or theta.shape[-1] != size:
        raise ValueError(f"theta must have shape (..., {size}), got {tuple(theta.shape)}")
    sums = theta.unflatten(-1, (TOY_GROUPS, TOY_GROUP_SIZE)).sum(-1)
    return (1 - sums).pow(2).sum(-1)


def toy_subspace_optimum(theta_0: Tensor, P: Tensor) -> tuple[Tensor, float]:
    """argmin over theta_d of the toy objective J(theta_0 + P theta_d) and its minimum J_min, by least squares.

    J(theta_0 + P theta_d) = ||b - A P theta_d||^2 with A the 10 x 1000 group-sum matrix and b = 1 - A theta_0, so
    theta_d* is the minimum-norm least-squares solution and J_min = ||(I - Pi) b||^2, Pi the projection onto the
    columns of A P (Li et al. 2018, toy problem; the chapter's theorem thm-toy-dint). theta_0 (1000,), P (1000, d).
    """
    size, groups = TOY_GROUPS * TOY_GROUP_SIZE, (TOY_GROUPS, TOY_GROUP_SIZE)
    if theta_0.shape != (size,) or P.dim() != 2 or P.shape[0] != size:
        raise ValueError(f"theta_0 must have shape ({size},) and P ({size}, d), got {tuple(theta_0.shape)} and "
                         f"{tuple(P.shape)}")
    AP = P.unflatten(0, groups).sum(1)
    b = 1 - theta_0.unflatten(0, groups).sum(1)
    theta_d = torch.linalg.pinv(AP) @ b
    return theta_d, float((b - AP @ theta_d).square().sum())


class ToyProblem(nn.Module):
    """The toy objective as a module: 1000 native parameters theta ~ N(0, I) (random init), forward() = J(theta)."""

    def __init__(self, generator: torch.Generator | None = None):
        super().__init__()
        size = TOY_GROUPS * TOY_GROUP_SIZE
        self.theta = nn.Parameter(torch.randn(size, generator=generator, dtype=torch.get_default_dtype()))

    def forward(self) -> Tensor:
        return toy_objective(self.theta)


@dataclass
class IntrinsicDimResult:
    """A sweep over d: scores[k] is the score at dims[k]; d_int90 the smallest d with score >= fraction * baseline.

    baseline_kind "direct": the baseline is the directly trained model's score; "fixed": a given number.
    d_int90 is None when no d of the sweep reaches the threshold.
    """

    dims: list[int]
    scores: list[float]
    baseline: float
    threshold_fraction: float = 0.9
    baseline_kind: str = "direct"
    d_int90: int | None = None

    @property
    def threshold(self) -> float:
        """threshold_fraction * baseline: the score a d must reach."""
        return self.threshold_fraction * self.baseline

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IntrinsicDimResult":
        """Rebuild from `to_dict()` output, checking that d_int90 is the one the scores give."""
        result = _result(data["dims"], data["scores"], data["baseline"], data["baseline_kind"],
                         data["threshold_fraction"])
        if result.d_int90 != data["d_int90"]:
            raise ValueError(f"stored d_int90 = {data['d_int90']} but the stored scores give {result.d_int90}")
        return result


def _check_dims_list(dims: Sequence[int]) -> list[int]:
    dims = list(dims)
    if not dims or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in dims):
        raise ValueError(f"dims must be a non-empty sequence of positive ints, got {dims!r}")
    if any(b <= a for a, b in zip(dims, dims[1:])):
        raise ValueError(f"dims must be strictly increasing, got {dims!r}")
    return dims


def _check_baseline(baseline: float, baseline_kind: str, threshold_fraction: float) -> None:
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline) \
            or baseline <= 0:
        raise ValueError(f"baseline must be a positive finite number (a score), got {baseline!r}")
    if baseline_kind not in BASELINE_KINDS:
        raise ValueError(f"baseline_kind must be one of {BASELINE_KINDS}, got {baseline_kind!r}")
    if isinstance(threshold_fraction, bool) or not isinstance(threshold_fraction, (int, float)) \
            or not 0 < threshold_fraction <= 1:
        raise ValueError(f"threshold_fraction must be in (0, 1], got {threshold_fraction!r}")


def _result(
    dims: Sequence[int], scores: Sequence[float], baseline: float, baseline_kind: str, threshold_fraction: float
) -> IntrinsicDimResult:
    """Validate a sweep and compute its d_int90."""
    dims = _check_dims_list(dims)
    _check_baseline(baseline, baseline_kind, threshold_fraction)
    scores = [float(s) for s in scores]
    if len(scores) != len(dims):
        raise ValueError(f"got {len(scores)} scores for {len(dims)} dims")
    for d, s in zip(dims, scores):
        if not math.isfinite(s):
            raise ValueError(f"the score at d = {d} is {s}; scores must be finite")
    threshold = threshold_fraction * baseline
    d_int = next((d for d, s in zip(dims, scores) if s >= threshold), None)
    return IntrinsicDimResult(dims, scores, float(baseline), float(threshold_fraction), baseline_kind, d_int)


def measure_intrinsic_dimension(
    train_and_score: Callable[[int], float],
    dims: Sequence[int],
    baseline: float,
    *,
    baseline_kind: str = "direct",
    threshold_fraction: float = 0.9,
) -> IntrinsicDimResult:
    """Score subspace training at every d in `dims` (increasing) and return the sweep with its d_int90.

    d_int90 = min {d in dims : score(d) >= threshold_fraction * baseline} (Li et al. 2018, Sec. 2; higher scores
    are better, e.g. test accuracy), None if no d reaches it. The baseline is stated by `baseline_kind`.
    """
    if not callable(train_and_score):
        raise TypeError(f"train_and_score must be a callable d -> score, got {type(train_and_score).__name__}")
    dims = _check_dims_list(dims)
    _check_baseline(baseline, baseline_kind, threshold_fraction)  # argument errors before any training
    return _result(dims, [train_and_score(d) for d in dims], baseline, baseline_kind, threshold_fraction)
