"""Subspace training.

theta^(D) = theta_0^(D) + P theta^(d), only theta^(d) trained (Li et al., 2018).

theta_0 is the frozen random initialisation of any module, P a fixed random D x d projection
(dgm_lib.intrinsic_dim.projections) and theta^(d) in R^d starts at 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from dgm_lib.checks import check_dtype_matches
from dgm_lib.intrinsic_dim.projections import PROJECTIONS, check_dims, make_projection


class SubspaceModule(nn.Module):
    """Subspace training of any module: theta^(D) = theta_0^(D) + P theta^(d), theta^(d) from 0.

    theta_0 is a frozen flat copy of the module's initial parameters (a buffer) and theta_d (d,)
    the ONLY parameter; forward(*args, **kwargs) = torch.func.functional_call(module, theta^(D)
    reshaped, args, kwargs). The wrapped module is not a registered submodule (its parameters stay
    out of `parameters()` and never receive gradients), but `.to()` / `.train()` reach it. Li,
    Farkhoor, Liu, Yosinski (ICLR 2018), Sec. 2.

    Example:
        >>> model = SubspaceModule(nn.Linear(10, 2), d=3, projection="dense")
        >>> model.D, [tuple(p.shape) for p in model.parameters()]
        (22, [(3,)])
    """

    def __init__(self, module: nn.Module, d: int, projection: str = "dense", seed: int = 0):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        named = list(module.named_parameters())
        if not named:
            raise ValueError(
                f"module must have parameters to re-parameterise, {type(module).__name__} has none"
            )
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) > 1 or not named[0][1].is_floating_point():
            raise ValueError(
                f"module's parameters must share one floating dtype, got {sorted(map(str, dtypes))}"
            )
        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
        object.__setattr__(
            self, "module", module
        )  # deliberately not a submodule: see the class docstring
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        theta_0 = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.D, self.d, self.seed, self.kind = theta_0.numel(), d, seed, projection
        check_dims(self.D, d)
        self.register_buffer("theta_0", theta_0)
        self.projection = make_projection(projection, self.D, d, seed).to(theta_0)
        self.theta_d = nn.Parameter(torch.zeros(d, dtype=theta_0.dtype, device=theta_0.device))

    def _apply(self, fn, recurse: bool = True):
        self.module._apply(
            fn
        )  # the wrapped module's buffers (e.g. batch-norm statistics) follow .to()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> "SubspaceModule":
        self.module.train(mode)
        return super().train(mode)

    def theta(self) -> Tensor:
        """The flat native parameters theta^(D) = theta_0 + P theta^(d) (differentiable)."""
        return self.theta_0 + self.projection(self.theta_d)

    def _params(self, theta: Tensor) -> dict[str, Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.numels), self.shapes)}

    def native_parameters(self) -> dict[str, Tensor]:
        """The current theta^(D) as the wrapped module's named parameters (detached copies)."""
        return {n: t.detach().clone() for n, t in self._params(self.theta()).items()}

    def compressed(self) -> dict[str, Any]:
        """What the trained model costs to store: d numbers plus the projection's seed and kind.

        Given the same initialisation theta_0 (itself reproducible from the model's seed), theta^(D)
        is rebuilt exactly as theta_0 + P theta^(d) with P regenerated from the seed.
        """
        return {
            "theta_d": self.theta_d.detach().clone(),
            "seed": self.seed,
            "d": self.d,
            "projection": self.kind,
        }

    def forward(self, *args, **kwargs):
        """The wrapped module's forward with theta^(D) = theta_0 + P theta^(d) as its parameters."""
        if args:
            check_dtype_matches(args[0], self, "x")
        return functional_call(self.module, self._params(self.theta()), args, kwargs)

    def extra_repr(self) -> str:
        return (
            f"module={type(self.module).__name__}, D={self.D}, d={self.d}, projection={self.kind!r}"
        )
