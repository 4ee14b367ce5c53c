"""Normalizing flows in the notation of Lecture 2.

f: x -> z normalizes, g = f^{-1}: z -> x generates.

Every Transform maps x of shape (batch, *event) to (z, log|det J_f(x)|) with `forward` and back with
`inverse`; a Flow puts a StandardNormal base under a transform and gives log_prob, sample,
forward_kl and reverse_kl.
"""

from dgm_lib.flows.autoregressive import IAF, MADE, MAF
from dgm_lib.flows.base import Compose, Flow, Inverse, StandardNormal, Transform, batch_jacobian
from dgm_lib.flows.builders import make_maf, make_planar, make_realnvp
from dgm_lib.flows.coupling import AffineCoupling, channel_mask, checkerboard_mask, half_mask
from dgm_lib.flows.elementwise import ActNorm, ElementwiseAffine, Logit, Planar, Sigmoid
from dgm_lib.flows.linear import InvConv1x1, LULinear, Permutation, QRLinear, Reverse

__all__ = [
    "Transform",
    "Compose",
    "Inverse",
    "Flow",
    "StandardNormal",
    "batch_jacobian",
    "ElementwiseAffine",
    "ActNorm",
    "Planar",
    "Logit",
    "Sigmoid",
    "Permutation",
    "Reverse",
    "LULinear",
    "QRLinear",
    "InvConv1x1",
    "MADE",
    "MAF",
    "IAF",
    "AffineCoupling",
    "half_mask",
    "checkerboard_mask",
    "channel_mask",
    "make_realnvp",
    "make_maf",
    "make_planar",
]
