"""Stochastic gradient MCMC: SGLD, pSGLD and SGHMC as torch optimizers, burn-in, thinning, Bayesian model averaging.

Notation of the lecture (C. Li; Li et al., AAAI 2016; Chen et al., AISTATS 2016). Data D = {d_i}_{i=1}^N, posterior
p(theta | D) ∝ p(theta) prod_{i=1}^N p(d_i | theta), potential U(theta) = -log p(theta) - sum_i log p(d_i | theta).
On a minibatch S_t of n data points the stochastic potential and its gradient are

    U~_t(theta) = -log p(theta) - (N / n) sum_{i in S_t} log p(d_i | theta),      f~_t = grad U~_t(theta_t),

an unbiased estimate of grad U. Samplers draw theta_t approximately from p(theta | D)^(1 / T) (temperature T = 1: the
posterior; T = 0: no noise, i.e. the matching optimizer: SGD, RMSprop, SGD with momentum).

The loss contract (the N/n scaling is the most common bug in SG-MCMC code). Backpropagate EXACTLY ONE of
  (a) num_data=None: loss = U~_t, i.e. (N / n) * minibatch SUM of -log p(d_i | theta), plus -log p(theta);
  (b) num_data=N:    loss = U~_t / N, i.e. minibatch MEAN of -log p(d_i | theta), plus -log p(theta) / N (the usual
      "mean loss + weight decay" of deep learning); the sampler multiplies the gradient by N to get f~_t.
With a minibatch sum and no N/n factor the sampler targets a posterior whose variance is about N/n times too large;
with a mean loss and num_data=None, about N times too large.

Step sizes: eps_t is each parameter group's "lr", so any torch.optim.lr_scheduler can drive it;
`polynomial_decay(a, b, gamma)` is Welling & Teh's eps_t = a (b + t)^(-gamma) and `StepSizeSchedule` applies it.
Noise xi_t ~ N(0, I) is drawn from `generator` (the global RNG if None) on the generator's device, in the parameter's
dtype, then moved to the parameter's device: a seeded run is bit-for-bit repeatable on CPU. A NaN or inf gradient
raises NonFiniteGradientError before any parameter changes.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "NonFiniteGradientError",
    "SGLD",
    "pSGLD",
    "SGHMC",
    "polynomial_decay",
    "StepSizeSchedule",
    "SampleCollector",
    "bayesian_average",
]


class NonFiniteGradientError(FloatingPointError):
    """A gradient holds NaN or inf; the sampler raised before changing any parameter."""


def _number(name: str, value: Any, ok: Callable[[float], bool], allowed: str, owner: str) -> None:
    """Raise TypeError/ValueError naming `name` unless `value` is a finite real number with ok(value)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a real number ({allowed}), got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or not ok(float(value)):
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")


def _check_num_data(value: Any, owner: str) -> None:
    """num_data is None or an int N >= 1."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: num_data must be None or an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{owner}: num_data must be None or an int >= 1 (the data set size N), got {value}")


class _SGMCMC(torch.optim.Optimizer):
    """Shared machinery: argument checks, the scaled gradient f~_t and the noise xi_t ~ N(0, I)."""

    _checks: dict[str, tuple[Callable[[float], bool], str]] = {
        "lr": (lambda v: v > 0, "> 0"),
        "temperature": (lambda v: v >= 0, ">= 0"),
    }

    def __init__(self, params: Iterable, defaults: dict[str, Any], generator: torch.Generator | None) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{type(self).__name__}: generator must be a torch.Generator or None, "
                            f"got {type(generator).__name__}")
        if isinstance(params, set):
            raise TypeError(f"{type(self).__name__}: params must be an ordered iterable (a list), not a set: the "
                            "noise would be assigned to the parameters in a different order in every run")
        self.generator = generator
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Check the group's keys, hyperparameters and tensors, then add it (torch.optim.Optimizer.add_param_group)."""
        owner = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{owner}: a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{owner}: a parameter group needs a 'params' entry, got keys {sorted(param_group)}")
        unknown = set(param_group) - set(self.defaults) - {"params", "param_names", "initial_lr"}
        if unknown:
            raise ValueError(f"{owner}: unknown key(s) {sorted(unknown)} in a parameter group; "
                             f"allowed: {sorted(self.defaults)}")
        self._check_group({**self.defaults, **param_group})
        params = param_group["params"]
        if not isinstance(params, set):  # torch itself rejects sets (unordered)
            params = [params] if isinstance(params, Tensor) else list(params)
            tensors = [p[1] if isinstance(p, tuple) else p for p in params]
            for i, p in enumerate(tensors):
                if isinstance(p, Tensor) and not p.is_floating_point():
                    raise TypeError(f"{owner}: parameter {i} of a group has dtype {p.dtype}; "
                                    "samplers need floating-point tensors")
            if len({id(p) for p in tensors}) != len(tensors):
                raise ValueError(f"{owner}: a parameter group lists the same tensor twice "
                                 "(it would be updated and noised twice per step)")
            param_group = {**param_group, "params": params}
        super().add_param_group(param_group)

    def _check_group(self, group: Mapping[str, Any]) -> None:
        """Raise ValueError/TypeError naming the first hyperparameter outside its allowed range."""
        owner = type(self).__name__
        for name, (ok, allowed) in self._checks.items():
            _number(name, group[name], ok, allowed, owner)
        _check_num_data(group["num_data"], owner)

    def _gradients(self) -> list[list[tuple[Tensor, Tensor]]]:
        """Per group, the pairs (theta, f~_t) with f~_t = N * grad if num_data=N else grad; raises on NaN/inf."""
        owner = type(self).__name__
        pairs: list[list[tuple[Tensor, Tensor]]] = []
        for k, group in enumerate(self.param_groups):
            _number(f"lr of parameter group {k}", group["lr"], lambda v: v > 0, "> 0 (a scheduler may have set it)",
                    owner)
            pairs.append([])
            for i, p in enumerate(group["params"]):
                if p.grad is not None and p.grad.is_sparse:
                    raise TypeError(f"{owner}: sparse gradients are not supported (parameter {i} of group {k})")
                if p.grad is not None:
                    pairs[-1].append((p, p.grad))
        grads = [g for group_pairs in pairs for _, g in group_pairs]
        if grads and not bool(torch.stack([torch.isfinite(g).all().to(grads[0].device) for g in grads]).all()):
            self._raise_non_finite()  # one device sync per step, then find the culprit
        return [[(p, g * group["num_data"] if group["num_data"] is not None else g) for p, g in group_pairs]
                for group, group_pairs in zip(self.param_groups, pairs)]

    def _raise_non_finite(self) -> None:
        """Raise NonFiniteGradientError naming the first parameter whose gradient holds NaN or inf."""
        for k, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    raise NonFiniteGradientError(
                        f"{type(self).__name__}: the gradient of parameter {i} of group {k} (shape {tuple(p.shape)}) "
                        "holds NaN or inf; no parameter was changed. Check the loss, or lower the step size lr (the "
                        "chain may have diverged).")

    def _noise(self, p: Tensor) -> Tensor:
        """xi ~ N(0, I) shaped like p, from the generator (on its device, in p's dtype), moved to p's device."""
        if self.generator is None:
            return torch.randn(p.shape, device=p.device, dtype=p.dtype)
        xi = torch.randn(p.shape, generator=self.generator, device=self.generator.device, dtype=p.dtype)
        return xi.to(p.device)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One sampler step on every parameter with a gradient; `closure` (optional) re-evaluates the loss."""
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

    eps_t = lr (or the group's "lr" set by a scheduler), T = temperature, xi_t ~ N(0, I), f~_t = grad U~_t(theta_t):
    backpropagate U~_t with num_data=None, or U~_t / N (minibatch mean negative log-likelihood + prior / N) with
    num_data=N, in which case the gradient is multiplied by N. temperature=0 is plain SGD.
    """

    def __init__(self, params: Iterable, lr: float, *, num_data: int | None = None, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(params, dict(lr=lr, num_data=num_data, temperature=temperature), generator)

    def _update(self, group: dict[str, Any], pairs: list[tuple[Tensor, Tensor]]) -> None:
        eps, temperature = group["lr"], group["temperature"]
        for p, f in pairs:
            p.add_(f, alpha=-eps)
            if temperature > 0:
                p.add_(self._noise(p), alpha=math.sqrt(2.0 * eps * temperature))


class pSGLD(_SGMCMC):  # noqa: N801 (the paper's name)
    """Preconditioned SGLD (Li et al., AAAI 2016) with the RMSprop diagonal preconditioner G(theta_t).

    V(theta_t) = alpha V(theta_{t-1}) + (1 - alpha) f~_t ⊙ f~_t,   V(theta_1) = f~_1 ⊙ f~_1 (first step),
    G(theta_t) = diag(1 / (lambda + sqrt(V(theta_t)))),
    theta_{t+1} = theta_t - eps_t G(theta_t) f~_t + sqrt(2 eps_t T G(theta_t)) ⊙ xi_t,   xi_t ~ N(0, I);
    lambda = eps (the argument), eps_t = lr, T = temperature; temperature=0 is RMSprop (V started as below).

    Choices, stated: the correction term Gamma(theta) = sum_j dG_ij / dtheta_j is dropped, as in the paper's
    experiments: G must change slowly. With minibatch gradients V is dominated by the gradient noise and the default
    alpha = 0.99 is fine; with exact (noise-free) gradients V follows the chain's position and alpha must be close to
    1 (Li et al.'s 2D simulation uses 0.9999). V starts at the first squared gradient, as in the authors' code (V = 0
    would give G = 1 / lambda on the first step: a huge jump from a start near a mode). Li et al. accumulate V from the
    mean minibatch gradient, about f~_t / N; here V uses f~_t, which for small lambda only rescales eps_t.
    Loss contract as in SGLD: U~_t with num_data=None, or U~_t / N with num_data=N.
    """

    _checks = {
        **_SGMCMC._checks,
        "alpha": (lambda v: 0 <= v < 1, "in [0, 1)"),
        "eps": (lambda v: v > 0, "> 0 (lambda, keeps G finite)"),
    }

    def __init__(self, params: Iterable, lr: float, *, alpha: float = 0.99, eps: float = 1e-5,
                 num_data: int | None = None, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, num_data=num_data, temperature=temperature)
        super().__init__(params, defaults, generator)

    def _update(self, group: dict[str, Any], pairs: list[tuple[Tensor, Tensor]]) -> None:
        eps, alpha, lam, temperature = group["lr"], group["alpha"], group["eps"], group["temperature"]
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

    v_{t+1} = (1 - alpha) v_t - eta f~_t + sqrt(2 alpha eta T) xi_t,   theta_{t+1} = theta_t + v_{t+1}   (v_0 = 0),
    with learning rate eta = lr (= eps^2 / m for step eps and mass m), friction alpha = friction, T = temperature,
    xi_t ~ N(0, I). The gradient-noise estimate beta_hat of the paper is 0 (noise 2 (alpha - beta_hat) eta), so the
    minibatch noise should stay small against 2 alpha eta (small eta, or a larger friction). Loss contract as in SGLD:
    U~_t with num_data=None, or U~_t / N with num_data=N. temperature=0 is SGD with momentum 1 - alpha.
    """

    _checks = {**_SGMCMC._checks, "friction": (lambda v: 0 < v <= 1, "in (0, 1]")}

    def __init__(self, params: Iterable, lr: float, *, friction: float = 0.05, num_data: int | None = None,
                 temperature: float = 1.0, generator: torch.Generator | None = None) -> None:
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


def polynomial_decay(a: float, b: float, gamma: float) -> Callable[[int], float]:
    """The step-size schedule eps_t = a (b + t)^(-gamma), t = 0, 1, ... (Welling & Teh 2011).

    gamma in (0.5, 1] gives sum_t eps_t = inf and sum_t eps_t^2 < inf (the conditions for SGLD to converge without a
    Metropolis-Hastings test); gamma = 0 is the constant step a. Use it with `StepSizeSchedule(optimizer, schedule)`.
    """
    _number("a", a, lambda v: v > 0, "> 0", "polynomial_decay")
    _number("b", b, lambda v: v > 0, "> 0", "polynomial_decay")
    _number("gamma", gamma, lambda v: v >= 0, ">= 0", "polynomial_decay")

    def eps(t: int) -> float:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"polynomial_decay: the step index t must be an int >= 0, got {t!r}")
        return a * (b + t) ** (-gamma)

    return eps


class StepSizeSchedule(LRScheduler):
    """Sets every group's step size to eps_t = schedule(t), t = number of `.step()` calls (t = 0 at construction)."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Callable[[int], float],
                 last_epoch: int = -1) -> None:
        if not callable(schedule):
            raise TypeError(f"StepSizeSchedule: schedule must be callable t -> eps_t, got {type(schedule).__name__}")
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """[eps_t] for each parameter group."""
        return [float(self.schedule(self.last_epoch))] * len(self.optimizer.param_groups)


Sample = Union[Tensor, list[Tensor], dict[str, Tensor]]  # what SampleCollector stores per step


def _copy(model_or_params: nn.Module | Tensor | Iterable[Tensor]) -> Sample:
    """A detached copy: a module's state dict, a tensor, or a list of tensors."""
    if isinstance(model_or_params, nn.Module):
        return {k: t.detach().clone() for k, t in model_or_params.state_dict().items()}
    if isinstance(model_or_params, Tensor):
        return model_or_params.detach().clone()
    params = list(model_or_params) if isinstance(model_or_params, Iterable) else None
    if not params or not all(isinstance(t, Tensor) for t in params):
        raise TypeError("model_or_params must be an nn.Module, a tensor or a non-empty iterable of tensors, "
                        f"got {type(model_or_params).__name__}")
    return [t.detach().clone() for t in params]


def _stack(samples: Sequence[Sample]) -> Tensor | list[Tensor] | dict[str, Tensor]:
    """Stack samples along a new first dimension, keeping their structure (tensor, list or dict)."""
    first = samples[0]
    if isinstance(first, dict):
        return {k: torch.stack([s[k] for s in samples]) for k in first}
    if isinstance(first, list):
        return [torch.stack(ts) for ts in zip(*samples)]
    return torch.stack(list(samples))


class SampleCollector:
    """Burn-in and thinning: keeps theta_t for t = burn_in + thin, burn_in + 2 thin, ... (t = steps taken so far)."""

    def __init__(self, burn_in: int, thin: int = 1) -> None:
        for name, value, low in (("burn_in", burn_in, 0), ("thin", thin, 1)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"SampleCollector: {name} must be an int >= {low}, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"SampleCollector: {name} must be an int >= {low}, got {value}")
        self.burn_in, self.thin = burn_in, thin
        self.samples: list[Sample] = []

    def maybe_collect(self, step: int, model_or_params: nn.Module | Tensor | Iterable[Tensor]) -> bool:
        """Store a copy (state dict / tensor / list of tensors) iff step > burn_in and (step - burn_in) % thin == 0."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"SampleCollector: step must be an int >= 0, got {step!r}")
        keep = step > self.burn_in and (step - self.burn_in) % self.thin == 0
        if keep:
            self.samples.append(_copy(model_or_params))
        return keep

    def stacked(self) -> Tensor | list[Tensor] | dict[str, Tensor]:
        """The samples stacked along a new first dimension (a tensor, a list of tensors or a dict, like the samples)."""
        if not self.samples:
            raise ValueError("SampleCollector: no samples collected yet (is burn_in larger than the number of steps?)")
        return _stack(self.samples)

    def predict(self, model: nn.Module | Callable[[Tensor, Tensor], Tensor], fn: Callable[[Tensor], Tensor] | None,
                x: Tensor) -> tuple[Tensor, Tensor]:
        """Bayesian model average over the collected samples: `bayesian_average(model, self.samples, x, fn)`."""
        return bayesian_average(model, self.samples, x, fn)


def _softmax(logits: Tensor) -> Tensor:
    return logits.softmax(-1)


def _evaluate(model: nn.Module | Callable[[Tensor, Tensor], Tensor], sample: Sample, x: Tensor) -> Tensor:
    """model(x; theta) for one sample: functional_call for a module, model(theta, x) for a plain function."""
    if not isinstance(model, nn.Module):
        return model(sample, x)
    if isinstance(sample, list):
        names = [name for name, _ in model.named_parameters()]
        if len(names) != len(sample):
            raise ValueError(f"a sample holds {len(sample)} tensors but the model has {len(names)} parameters")
        sample = dict(zip(names, sample))
    if not isinstance(sample, dict):
        raise TypeError("with an nn.Module, samples must be state dicts or lists of its parameters; for tensor "
                        "samples pass a function model(theta, x)")
    return torch.func.functional_call(model, sample, (x,))


@torch.no_grad()
def bayesian_average(model: nn.Module | Callable[[Tensor, Tensor], Tensor], samples: Sequence[Sample], x: Tensor,
                     fn: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Bayesian model averaging p(y | x, D) ≈ (1/T) sum_t p(y | x, theta_t): the mean and std over the T samples.

    p(y | x, theta_t) = fn(model(x; theta_t)), fn = softmax over the last dimension by default (pass e.g.
    `lambda out: out` for regression). A module is evaluated with each state dict (or list of its parameters) via
    torch.func.functional_call, in its current train/eval mode; a plain function is called as model(theta_t, x).
    The std is the population std over samples (0 for one sample): the predictive uncertainty.
    """
    if len(samples) == 0:
        raise ValueError("bayesian_average: no samples (collect some after burn-in first)")
    fn = _softmax if fn is None else fn
    preds = torch.stack([fn(_evaluate(model, s, x)) for s in samples])
    return preds.mean(0), preds.std(0, correction=0)
