"""ALICE's identity, in closed form on a linear-Gaussian joint.

ALICE (Li et al., NIPS 2017) adds a conditional-entropy term to ALI. In unsupervised learning it is
bounded by cycle consistency (C. Li's lecture):

    H^q(x|z) + E_{q(z)}[KL(q(x|z) || p_theta(x|z))] = -E_{q(x,z)}[log p_theta(x|z)],
    (conditional entropy)  (conditional distribution matching)   (cycle consistency)

so minimising the reconstruction term -E log p_theta(x|z), z ~ q_phi(z|x), drives both the
conditional entropy of x given its code and the mismatch of the two conditionals down. Here every
term is closed form: q(x) = N(m, S), q_phi(z|x) = N(A x + b, R), p_theta(x|z) = N(C z + c, V).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _logdet(matrix: Tensor) -> Tensor:
    return torch.linalg.slogdet(matrix)[1]


@dataclass(frozen=True)
class LinearGaussianJoint:
    """q(x) = N(m, S), encoder q(z|x) = N(A x + b, R), decoder p(x|z) = N(C z + c, V).

    Shapes: m (dx,), S (dx, dx), A (dz, dx), b (dz,), R (dz, dz), C (dx, dz), c (dx,), V (dx, dx);
    S, R, V symmetric positive definite. Use float64 for the identity checks.
    """

    m: Tensor
    S: Tensor
    A: Tensor
    b: Tensor
    R: Tensor
    C: Tensor
    c: Tensor
    V: Tensor

    def __post_init__(self) -> None:
        dx, dz = self.m.shape[0], self.b.shape[0]
        shapes = {"m": (dx,), "S": (dx, dx), "A": (dz, dx), "b": (dz,), "R": (dz, dz),
                  "C": (dx, dz), "c": (dx,), "V": (dx, dx)}  # fmt: skip
        for name, shape in shapes.items():
            value = getattr(self, name)
            if not isinstance(value, Tensor) or tuple(value.shape) != shape:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{name} must be a tensor of shape {shape}, got {got}")
        for name in ("S", "R", "V"):
            if torch.linalg.cholesky_ex(getattr(self, name)).info != 0:
                raise ValueError(f"{name} must be symmetric positive definite")

    @classmethod
    def random(cls, dx: int, dz: int, generator: torch.Generator) -> LinearGaussianJoint:
        """A random float64 joint: Gaussian entries, covariances a a^T + I / 2 (positive definite).

        Drawn in the order m, S, A, b, R, C, c, V from `generator`.
        """

        def spd(d: int) -> Tensor:
            a = torch.randn(d, d, generator=generator, dtype=torch.float64)
            return a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)

        def normal(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        return cls(normal(dx), spd(dx), normal(dz, dx), normal(dz), spd(dz), normal(dx, dz),
                   normal(dx), spd(dx))  # fmt: skip

    def moments(self) -> tuple[Tensor, Tensor]:
        """Mean and covariance of the encoder joint q(x, z) = q(x) q(z|x), stacked as (x, z)."""
        mean = torch.cat([self.m, self.A @ self.m + self.b])
        cross = self.S @ self.A.T
        cov = torch.cat(
            [
                torch.cat([self.S, cross], 1),
                torch.cat([cross.T, self.A @ self.S @ self.A.T + self.R], 1),
            ]
        )
        return mean, cov

    def conditional_entropy(self) -> Tensor:
        """H^q(x|z) = log det(2 pi e Sigma_{x|z}) / 2, Sigma_{x|z} = S - S A^T Sigma_z^{-1} A S."""
        return 0.5 * (len(self.m) * math.log(2 * math.pi * math.e) + _logdet(self._posterior()[1]))

    def _posterior(self) -> tuple[Tensor, Tensor]:
        """(K, Sigma_{x|z}): E_q[x|z] = m + K (z - E z) and the covariance of q(x|z)."""
        sigma_z = self.A @ self.S @ self.A.T + self.R
        gain = self.S @ self.A.T @ torch.linalg.inv(sigma_z)
        return gain, self.S - gain @ self.A @ self.S

    def conditional_mismatch(self) -> Tensor:
        """E_{q(z)} KL(q(x|z) || p(x|z)), both Gaussian, the mean difference affine in z.

        KL = [tr(V^-1 Sigma_{x|z}) + d^T V^-1 d - dx + log det V - log det Sigma_{x|z}] / 2 with
        d(z) = E_q[x|z] - (C z + c) = (K - C) z + (m - K E z - c), averaged over z ~ q(z).
        """
        gain, post = self._posterior()
        mean_z = self.A @ self.m + self.b
        sigma_z = self.A @ self.S @ self.A.T + self.R
        slope, offset = gain - self.C, self.m - gain @ mean_z - self.c
        precision = torch.linalg.inv(self.V)
        d_mean = slope @ mean_z + offset
        quadratic = torch.trace(precision @ slope @ sigma_z @ slope.T) + d_mean @ precision @ d_mean
        return 0.5 * (torch.trace(precision @ post) + quadratic - len(self.m)
                      + _logdet(self.V) - _logdet(post))  # fmt: skip

    def cycle_consistency(self) -> Tensor:
        """-E_{q(x,z)}[log p(x|z)] = [dx log 2 pi + log det V + E r^T V^-1 r] / 2, r = x - C z - c.

        r = [I, -C] (x, z) - c is Gaussian under q(x, z):
        E r^T V^-1 r = tr(V^-1 Cov r) + E r^T V^-1 E r.
        """
        mean, cov = self.moments()
        proj = torch.cat([torch.eye(len(self.m), dtype=mean.dtype), -self.C], 1)
        r_mean, r_cov = proj @ mean - self.c, proj @ cov @ proj.T
        precision = torch.linalg.inv(self.V)
        quadratic = torch.trace(precision @ r_cov) + r_mean @ precision @ r_mean
        return 0.5 * (len(self.m) * math.log(2 * math.pi) + _logdet(self.V) + quadratic)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n pairs (x, z) ~ q(x) q(z|x)."""
        mean, cov = self.moments()
        dx = len(self.m)
        noise = torch.randn(n, len(mean), generator=generator, dtype=mean.dtype)
        pairs = mean + noise @ torch.linalg.cholesky(cov).T
        return pairs[:, :dx], pairs[:, dx:]

    def decoder_log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """log p_theta(x|z) = log N(x; C z + c, V), one value per pair."""
        decoder = torch.distributions.MultivariateNormal(z @ self.C.T + self.c, self.V)
        return decoder.log_prob(x)
