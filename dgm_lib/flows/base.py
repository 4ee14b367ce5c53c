"""Transforms, their composition and inverse, the standard normal base and the Flow (Lecture 2).

Notation of the lecture: x is data, z is noise, f: x -> z normalizes and g = f^{-1}: z -> x
generates. `Transform.forward(x) -> (z, log|det J_f(x)|)` and `Transform.inverse(z) -> (x, log|det
J_g(z)|)`; x has shape (batch, *event) and log-dets have shape (batch,). Every transform checks its
input (floating point, the right event shape, no NaN) and raises ValueError/TypeError naming the
argument.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_dtype_matches, check_positive_int, check_tensor

LOG_2PI = math.log(2 * math.pi)


def soft_clamp(raw: Tensor, bound: float) -> Tensor:
    """Bounded log-scale.

    log sigma = bound * tanh(raw / bound), in (-bound, bound), identity near 0.
    """
    return bound * torch.tanh(raw / bound)


def batch_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Per-sample Jacobians J[b] = d fn(x)[b] / d x[b] (B, m, m) of a row-wise fn on x (B, m).

    Rows of the batch are independent, so the autograd Jacobian of the batch sum sum_b fn(x)[b]
    holds all of them.

    Example:
        >>> batch_jacobian(lambda x: 3 * x, torch.ones(2, 2))[0]
        tensor([[3., 0.],
                [0., 3.]])
    """
    check_tensor(x, "x")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (batch, m), got {tuple(x.shape)}")
    with torch.enable_grad():
        return torch.autograd.functional.jacobian(lambda v: fn(v).sum(0), x).permute(1, 0, 2)


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum over every dimension but the first: (B, *event) -> (B,)."""
    return x.reshape(x.shape[0], -1).sum(1)


class Transform(nn.Module):
    """An invertible map f: x -> z with log|det J_f(x)|.

    `inverse` is g = f^{-1} with log|det J_g(z)|.

    Subclasses implement `_forward` and `_inverse` and may extend `_check` (called on every input).
    """

    def _check(self, x: Tensor, name: str) -> None:
        """Validate an input: a floating-point (batch, *event) tensor without NaN."""
        check_tensor(x, name)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """z = f(x) and log|det J_f(x)|, shape (B,)."""
        check_dtype_matches(x, self, "x")
        self._check(x, "x")
        return self._forward(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """x = g(z) = f^{-1}(z) and log|det J_g(z)| = -log|det J_f(g(z))|, shape (B,)."""
        check_dtype_matches(z, self, "z")
        self._check(z, "z")
        return self._inverse(z)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class Compose(Transform):
    """f = f_K o ... o f_1, log|det J_f(x)| = sum_k log|det J_{f_k}(x_{k-1})| (Lecture 2).

    `forward` applies transforms[0] first, `inverse` applies the inverses in reverse order.
    """

    def __init__(self, *transforms: Transform):
        super().__init__()
        if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
            transforms = tuple(transforms[0])
        if not transforms:
            raise ValueError("transforms must hold at least one Transform, got none")
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"transforms[{i}] must be a Transform, got {type(t).__name__}")
        self.transforms = nn.ModuleList(transforms)

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, k: int) -> Transform:
        return self.transforms[k]

    def _check(self, x: Tensor, name: str) -> None:
        """Each transform checks its own input."""

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = 0
        for t in self.transforms:
            x, log_det = t(x)
            total = total + log_det
        return x, total

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        total = 0
        for t in reversed(self.transforms):
            z, log_det = t.inverse(z)
            total = total + log_det
        return z, total


class Inverse(Transform):
    """The inverse transform: forward is g = f^{-1}, inverse is f (log-dets swap accordingly)."""

    def __init__(self, transform: Transform):
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(f"transform must be a Transform, got {type(transform).__name__}")
        self.transform = transform

    def _check(self, x: Tensor, name: str) -> None:
        """The wrapped transform checks the input."""

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x)

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform(z)


class StandardNormal(nn.Module):
    """The base density p(z) = N(z; 0, I): log p(z) = -|z|^2 / 2 - (d/2) log 2 pi.

    `event_shape` is the shape of one z. Sampling follows the device and dtype of the module's
    buffer (`.to(...)`), `log_prob` those of z.

    Example:
        >>> round(StandardNormal(2).log_prob(torch.zeros(1, 2)).item(), 4)  # -log(2 pi)
        -1.8379
    """

    def __init__(self, *event_shape: int):
        super().__init__()
        if len(event_shape) == 1 and isinstance(event_shape[0], (tuple, list, torch.Size)):
            event_shape = tuple(event_shape[0])
        if not event_shape:
            raise ValueError(
                "event_shape must be given, e.g. StandardNormal(2) or StandardNormal(1, 28, 28)"
            )
        for i, size in enumerate(event_shape):
            check_positive_int(size, f"event_shape[{i}]")
        self.event_shape = torch.Size(event_shape)
        self.register_buffer("_anchor", torch.zeros(()))  # carries device and dtype

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"

    def _check(self, z: Tensor) -> None:
        check_tensor(z, "z")
        if z.shape[1:] != self.event_shape:
            event = ", ".join(map(str, self.event_shape))
            raise ValueError(f"z must have shape (batch, {event}), got {tuple(z.shape)}")

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; 0, I) = -sum_j z_j^2 / 2 - (d/2) log(2 pi), shape (B,)."""
        self._check(z)
        return -0.5 * sum_except_batch(z.square()) - 0.5 * self.event_shape.numel() * LOG_2PI

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws z ~ N(0, I) on this module's device (drawn on the generator's device)."""
        check_positive_int(n, "n")
        device = generator.device if generator is not None else self._anchor.device
        z = torch.randn(
            (n, *self.event_shape), generator=generator, device=device, dtype=self._anchor.dtype
        )
        return z.to(self._anchor.device)


class Flow(nn.Module):
    """A normalizing flow.

    p(x|theta) = p(f(x)) |det J_f(x)| with base p(z) and transform f (Lecture 2).

    `forward(x)` returns the loss terms of forward-KL training, so `dgm_lib.training.fit(flow, ...)`
    works.
    """

    def __init__(self, base: StandardNormal, transform: Transform):
        super().__init__()
        if not hasattr(base, "log_prob") or not hasattr(base, "sample"):
            raise TypeError(
                "base must have log_prob and sample (e.g. StandardNormal), got "
                f"{type(base).__name__}"
            )
        if not isinstance(transform, Transform):
            raise TypeError(f"transform must be a Transform, got {type(transform).__name__}")
        self.base, self.transform = base, transform

    def _log_prob_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_dtype_matches(x, self, "x")
        z, log_det = self.transform(x)
        return self.base.log_prob(z) + log_det, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x|theta) = log p(f(x)) + log|det J_f(x)|, shape (B,) (change of variables)."""
        return self._log_prob_and_log_det(x)[0]

    def sample_with_log_prob(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """x = g(z), z ~ p(z), and log p(x|theta) = log p(z) - log|det J_g(z)|, differentiable.

        One pass of g gives both.
        """
        z = self.base.sample(n, generator=generator)
        x, log_det = self.transform.inverse(z)
        return x, self.base.log_prob(z) - log_det

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples x = g(z), z ~ p(z), without gradients (sample_with_log_prob differentiates)."""
        with torch.no_grad():
            return self.transform.inverse(self.base.sample(n, generator=generator))[0]

    def forward_kl(self, x: Tensor) -> Tensor:
        """Forward KL up to a constant = NLL: -(1/n) sum_i log p(x_i|theta), x_i ~ pi(x)."""
        return -self.log_prob(x).mean()

    def reverse_kl(
        self,
        log_target: Callable[[Tensor], Tensor],
        n: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Reverse KL by LOTUS: E_{p(z)}[log p(z) - log|det J_g(z)| - log pi(g(z))] on n samples.

        Only base samples, g and log pi are needed; `log_target` may be unnormalized (the KL is then
        shifted by log Z).

        Args:
            log_target: log pi(x) (up to a constant), x (n, m) -> (n,).
            n: the number of base samples.
            generator: the source of z ~ p(z).

        Returns:
            A scalar tensor, differentiable in the flow's parameters.
        """
        x, log_p = self.sample_with_log_prob(n, generator=generator)
        log_pi = log_target(x)
        if not isinstance(log_pi, Tensor) or log_pi.shape != log_p.shape:
            got = tuple(log_pi.shape) if isinstance(log_pi, Tensor) else type(log_pi).__name__
            raise ValueError(
                f"log_target must map x of shape {tuple(x.shape)} to shape ({n},), got {got}"
            )
        return (log_p - log_pi).mean()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Loss terms for fit(): loss = nll = -mean log p(x|theta), log_det = mean log|det J_f|."""
        log_p, log_det = self._log_prob_and_log_det(x)
        nll = -log_p.mean()
        return {"loss": nll, "nll": nll.detach(), "log_det": log_det.mean().detach()}


def as_index(values: Sequence[int] | Tensor, name: str, m: int) -> Tensor:
    """A permutation of 0..m-1 as a long tensor, else ValueError naming `name`."""
    index = torch.as_tensor(values).reshape(-1)
    if index.is_floating_point() or index.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {index.dtype}")
    index = index.long()
    if index.numel() != m or not torch.equal(index.sort().values, torch.arange(m)):
        raise ValueError(f"{name} must be a permutation of 0..{m - 1}, got {index.tolist()}")
    return index
