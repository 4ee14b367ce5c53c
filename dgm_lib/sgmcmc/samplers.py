"""Stochastic gradient MCMC samplers as torch optimizers: SGLD, pSGLD and SGHMC.

Notation of the lecture (C. Li; Li et al., AAAI 2016; Chen et al., AISTATS 2016). Data
D = {d_i}_{i=1}^N, posterior p(theta | D) ∝ p(theta) prod_{i=1}^N p(d_i | theta), potential
U(theta) = -log p(theta) - sum_i log p(d_i | theta). On a minibatch S_t of n data points the
stochastic potential and its gradient are

    U~_t(theta) = -log p(theta) - (N / n) sum_{i in S_t} log p(d_i | theta),
    f~_t = grad U~_t(theta_t),

an unbiased estimate of grad U. Samplers draw theta_t approximately from p(theta | D)^(1 / T)
(temperature T = 1: the posterior; T = 0: no noise, i.e. the matching optimizer: SGD, RMSprop, SGD
with momentum).

The loss contract (the N/n scaling is the most common bug in SG-MCMC code). Backpropagate EXACTLY
ONE of
  (a) num_data=None: loss = U~_t, i.e. (N / n) * minibatch SUM of -log p(d_i | theta), plus
      -log p(theta);
  (b) num_data=N: loss = U~_t / N, i.e. minibatch MEAN of -log p(d_i | theta), plus
      -log p(theta) / N (the usual "mean loss + weight decay" of deep learning); the sampler
      multiplies the gradient by N to get f~_t.
With a minibatch sum and no N/n factor the sampler targets a posterior whose variance is about N/n
times too large; with a mean loss and num_data=None, about N times too large.

Step sizes: eps_t is each parameter group's "lr", so any torch.optim.lr_scheduler can drive it
(dgm_lib.sgmcmc.schedules). Noise xi_t ~ N(0, I) is drawn from `generator` (the global RNG if None)
on the generator's device, in the parameter's dtype, then moved to the parameter's device: a seeded
run is bit-for-bit repeatable on CPU. A NaN or inf gradient raises NonFiniteGradientError before any
parameter changes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor

from dgm_lib.checks import check_int, check_real

__all__ = ["NonFiniteGradientError", "SGLD", "pSGLD", "SGHMC"]


class NonFiniteGradientError(FloatingPointError):
    """A gradient holds NaN or inf; the sampler raised before changing any parameter."""


def _check_num_data(value: Any, owner: str) -> None:
    """num_data is None or an int N >= 1 (the data set size)."""
    if value is not None:
        check_int(value, f"{owner}: num_data (None or the data set size N)", 1)


class _SGMCMC(torch.optim.Optimizer):
    """Shared machinery: argument checks, the scaled gradient f~_t and the noise xi_t ~ N(0, I)."""

    _checks: dict[str, tuple[Callable[[float], bool], str]] = {
        "lr": (lambda v: v > 0, "> 0"),
        "temperature": (lambda v: v >= 0, ">= 0"),
    }

    def __init__(
        self, params: Iterable, defaults: dict[str, Any], generator: torch.Generator | None
    ) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{type(self).__name__}: generator must be a torch.Generator or None, "
                f"got {type(generator).__name__}"
            )
        if isinstance(params, set):
            raise TypeError(
                f"{type(self).__name__}: params must be an ordered iterable (a list), not a set: "
                "the "
                "noise would be assigned to the parameters in a different order in every run"
            )
        self.generator = generator
        if isinstance(params, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Tensors (e.g. "
                "model.parameters() or [theta]), got a single Tensor"
            )
        params = list(params)
        if not params:
            raise ValueError(
                f"{type(self).__name__}: params is an empty parameter list; it must hold at least "
                "one tensor or parameter group (e.g. model.parameters() of a model with parameters)"
            )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Check the group's keys, hyperparameters and tensors, then add it.

        Check the group's keys, hyperparameters and tensors, then add it
        (torch.optim.Optimizer.add_param_group).
        """
        owner = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{owner}: a parameter group must be a dict, got {type(param_group).__name__}"
            )
        if "params" not in param_group:
            raise ValueError(
                f"{owner}: a parameter group needs a 'params' entry, got keys {sorted(param_group)}"
            )
        unknown = set(param_group) - set(self.defaults) - {"params", "param_names", "initial_lr"}
        if unknown:
            raise ValueError(
                f"{owner}: unknown key(s) {sorted(unknown)} in a parameter group; "
                f"allowed: {sorted(self.defaults)}"
            )
        self._check_group({**self.defaults, **param_group})
        params = param_group["params"]
        if not isinstance(params, set):  # torch itself rejects sets (unordered)
            params = [params] if isinstance(params, Tensor) else list(params)
            tensors = [p[1] if isinstance(p, tuple) else p for p in params]
            for i, p in enumerate(tensors):
                if isinstance(p, Tensor) and not p.is_floating_point():
                    raise TypeError(
                        f"{owner}: parameter {i} of a group has dtype {p.dtype}; "
                        "samplers need floating-point tensors"
                    )
            if len({id(p) for p in tensors}) != len(tensors):
                raise ValueError(
                    f"{owner}: a parameter group lists the same tensor twice "
                    "(it would be updated and noised twice per step)"
                )
            param_group = {**param_group, "params": params}
        super().add_param_group(param_group)

    def _check_group(self, group: Mapping[str, Any]) -> None:
        """Raise ValueError/TypeError naming the first hyperparameter outside its allowed range."""
        owner = type(self).__name__
        for name, (ok, allowed) in self._checks.items():
            check_real(group[name], name, ok, allowed, owner)
        _check_num_data(group["num_data"], owner)

    def _gradients(self) -> list[list[tuple[Tensor, Tensor]]]:
        """Per group, the pairs (theta, f~_t) with f~_t = N * grad if num_data=N else grad.

        Raises on NaN/inf.
        """
        owner = type(self).__name__
        pairs: list[list[tuple[Tensor, Tensor]]] = []
        for k, group in enumerate(self.param_groups):
            check_real(
                group["lr"],
                f"lr of parameter group {k}",
                lambda v: v > 0,
                "> 0 (a scheduler may have set it)",
                owner,
            )
            pairs.append([])
            for i, p in enumerate(group["params"]):
                if p.grad is not None and p.grad.is_sparse:
                    raise TypeError(
                        f"{owner}: sparse gradients are not supported (parameter {i} of group {k})"
                    )
                if p.grad is not None:
                    pairs[-1].append((p, p.grad))
        grads = [g for group_pairs in pairs for _, g in group_pairs]
        if grads and not bool(
            torch.stack([torch.isfinite(g).all().to(grads[0].device) for g in grads]).all()
        ):
            self._raise_non_finite()  # one device sync per step, then find the culprit
        return [
            [
                (p, g * group["num_data"] if group["num_data"] is not None else g)
                for p, g in group_pairs
            ]
            for group, group_pairs in zip(self.param_groups, pairs)
        ]

    def _raise_non_finite(self) -> None:
        """Raise NonFiniteGradientError naming the first parameter with a NaN or inf gradient."""
        for k, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    raise NonFiniteGradientError(
                        f"{type(self).__name__}: the gradient of parameter {i} of group {k} (shape "
                        f"{tuple(p.shape)}) "
                        "holds NaN or inf; no parameter was changed. Check the loss, or lower the "
                        "step size lr (the chain may have diverged)."
                    )

    def _noise(self, p: Tensor) -> Tensor:
        """xi ~ N(0, I) shaped like p, from the generator (on its device, in p's dtype), moved to
        p's device."""
        if self.generator is None:
            return torch.randn(p.shape, device=p.device, dtype=p.dtype)
        xi = torch.randn(
            p.shape, generator=self.generator, device=self.generator.device, dtype=p.dtype
        )
        return xi.to(p.device)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One sampler step on every parameter with a gradient.

        `closure` (optional) re-evaluates the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, pairs in zip(self.param_groups, self._gradients()):
            self._update(group, pairs)
        return loss

    def _update(self, group: dict[str, Any], pairs: list[tuple[Tensor, Tensor]]) -> None:
        raise NotImplementedError


class SGLD(_SGMCMC):
    """SGLD (Welling & Teh 2011): theta_{t+1} = theta_t - eps_t f~_t + sqrt(2 eps_t T) xi_t.

    eps_t = lr (or the group's "lr" set by a scheduler), T = temperature, xi_t ~ N(0, I),
    f~_t = grad U~_t(theta_t): backpropagate U~_t with num_data=None, or U~_t / N (minibatch mean
    negative log-likelihood + prior / N) with num_data=N, in which case the gradient is multiplied
    by N. temperature=0 is plain SGD.

    Example:
        >>> theta = torch.zeros(1, requires_grad=True)
        >>> sampler = SGLD([theta], lr=0.01, generator=torch.Generator().manual_seed(0))
        >>> for _ in range(100):  # U(theta) = theta^2 / 2: the chain samples N(0, 1)
        ...     sampler.zero_grad()
        ...     (0.5 * theta**2).sum().backward()
        ...     sampler.step()
        >>> bool(theta.abs() < 5)
        True
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        *,
        num_data: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(params, dict(lr=lr, num_data=num_data, temperature=temperature), generator)

    def _update(self, group: dict[str, Any], pairs: list[tuple[Tensor, Tensor]]) -> None:
        eps, temperature = group["lr"], group["temperature"]
        for p, f in pairs:
            p.add_(f, alpha=-eps)
            if temperature > 0:
                p.add_(self._noise(p), alpha=math.sqrt(2.0 * eps * temperature))


class pSGLD(_SGMCMC):  # noqa: N801 (the paper's name)
    """Preconditioned SGLD (Li et al., AAAI 2016) with RMSprop's diagonal preconditioner G(theta_t).

    V(theta_t) = alpha V(theta_{t-1}) + (1 - alpha) f~_t ⊙ f~_t,   V(theta_1) = f~_1 ⊙ f~_1 (first
    step),
    G(theta_t) = diag(1 / (lambda + sqrt(V(theta_t)))),
    theta_{t+1} = theta_t - eps_t G(theta_t) f~_t + sqrt(2 eps_t T G(theta_t)) ⊙ xi_t,   xi_t ~ N(0,
    I);
    lambda = eps (the argument), eps_t = lr, T = temperature; temperature=0 is RMSprop (V started as
    below).

    Choices, stated: the correction term Gamma(theta) = sum_j dG_ij / dtheta_j is dropped, as in the
    paper's experiments: G must change slowly. With minibatch gradients V is dominated by the
    gradient noise and the default alpha = 0.99 is fine; with exact (noise-free) gradients V follows
    the chain's position and alpha must be close to 1 (Li et al.'s 2D simulation uses 0.9999). V
    starts at the first squared gradient, as in the authors' code (V = 0 would give G = 1 / lambda
    on the first step: a huge jump from a start near a mode). Li et al. accumulate V from the mean
    minibatch gradient, about f~_t / N; here V uses f~_t, which for small lambda only rescales
    eps_t. Loss contract as in SGLD: U~_t with num_data=None, or U~_t / N with num_data=N.
    """

    _checks = {
        **_SGMCMC._checks,
        "alpha": (lambda v: 0 <= v < 1, "in [0, 1)"),
        "eps": (lambda v: v > 0, "> 0 (lambda, keeps G finite)"),
    }

    def __init__(
        self,
        params: Iterable,
        lr: float,
        *,
        alpha: float = 0.99,
        eps: float = 1e-5,
        num_data: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, num_data=num_data, temperature=temperature)
        super().__init__(params, defaults, generator)

    def _update(self, group: dict[str, Any], pairs: list[tuple[Tensor, Tensor]]) -> None:
        eps, alpha, lam, temperature = (
            group["lr"],
            group["alpha"],
            group["eps"],
            group["temperature"],
        )
        for p, f in pairs:
            state = self.state[p]
            if "V" in state:
                state["V"].mul_(alpha).addcmul_(f, f, value=1.0 - alpha)
            else:
                state["V"] = f * f
            v = state["V"]
            g = (v.sqrt() + lam).reciprocal_()
            p.addcmul_(g, f, value=-eps)
            if temperature > 0:
                p.addcmul_(g.sqrt_(), self._noise(p), value=math.sqrt(2.0 * eps * temperature))


class SGHMC(_SGMCMC):
    """Stochastic gradient Hamiltonian Monte Carlo (Chen et al. 2014) in its SGD-with-momentum form.

    v_{t+1} = (1 - alpha) v_t - eta f~_t + sqrt(2 alpha eta T) xi_t,   theta_{t+1} = theta_t +
    v_{t+1}   (v_0 = 0),
    with learning rate eta = lr (= eps^2 / m for step eps and mass m), friction alpha = friction, T
    = temperature,
    xi_t ~ N(0, I). The gradient-noise estimate beta_hat of the paper is 0 (noise 2 (alpha -
    beta_hat) eta), so the
    minibatch noise should stay small against 2 alpha eta (small eta, or a larger friction). Loss
    contract as in SGLD:
    U~_t with num_data=None, or U~_t / N with num_data=N. temperature=0 is SGD with momentum 1 -
    alpha.
    """

    _checks = {**_SGMCMC._checks, "friction": (lambda v: 0 < v <= 1, "in (0, 1]")}

    def __init__(
        self,
        params: Iterable,
        lr: float,
        *,
        friction: float = 0.05,
        num_data: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        defaults = dict(lr=lr, friction=friction, num_data=num_data, temperature=temperature)
        super().__init__(params, defaults, generator)

    def _update(self, group: dict[str, Any], pairs: list[tuple[Tensor, Tensor]]) -> None:
        eta, alpha, temperature = group["lr"], group["friction"], group["temperature"]
        for p, f in pairs:
            state = self.state[p]
            if "momentum" not in state:
                state["momentum"] = torch.zeros_like(p)
            v = state["momentum"]
            v.mul_(1.0 - alpha).add_(f, alpha=-eta)
            if temperature > 0:
                v.add_(self._noise(p), alpha=math.sqrt(2.0 * alpha * eta * temperature))
            p.add_(v)
