"""Subspace training and the intrinsic dimension of objective landscapes (Li, Farkhoor, Liu,
Yosinski, ICLR 2018).

Only d of the D native parameters are free: theta^(D) = theta_0^(D) + P theta^(d), with theta_0 the
frozen random initialisation, P a fixed random D x d projection with unit-norm columns, and
theta^(d) in R^d trained from 0. The intrinsic dimension d_int90 is the smallest d whose performance
reaches 90% of the baseline.
"""

from dgm_lib.intrinsic_dim.dimension import IntrinsicDimResult, measure_intrinsic_dimension
from dgm_lib.intrinsic_dim.projections import (
    PROJECTIONS,
    DenseProjection,
    FastfoodProjection,
    Projection,
    SparseProjection,
    make_projection,
    walsh_hadamard,
)
from dgm_lib.intrinsic_dim.subspace import SubspaceModule

__all__ = [
    "IntrinsicDimResult",
    "measure_intrinsic_dimension",
    "PROJECTIONS",
    "Projection",
    "DenseProjection",
    "SparseProjection",
    "FastfoodProjection",
    "make_projection",
    "walsh_hadamard",
    "SubspaceModule",
]
