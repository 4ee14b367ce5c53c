"""Burn-in, thinning and Bayesian model averaging over SG-MCMC samples theta_t ~ p(theta | D)."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence, Union

import torch
from torch import Tensor, nn

from dgm_lib.checks import check_int

Sample = Union[Tensor, list[Tensor], dict[str, Tensor]]  # what SampleCollector stores per step


def _copy(model_or_params: nn.Module | Tensor | Iterable[Tensor]) -> Sample:
    """A detached copy: a module's state dict, a tensor, or a list of tensors."""
    if isinstance(model_or_params, nn.Module):
        return {k: t.detach().clone() for k, t in model_or_params.state_dict().items()}
    if isinstance(model_or_params, Tensor):
        return model_or_params.detach().clone()
    params = list(model_or_params) if isinstance(model_or_params, Iterable) else None
    if not params or not all(isinstance(t, Tensor) for t in params):
        raise TypeError(
            "model_or_params must be an nn.Module, a tensor or a non-empty iterable of tensors, "
            f"got {type(model_or_params).__name__}"
        )
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
    """Burn-in and thinning: keeps theta_t for t = burn_in + thin, burn_in + 2 thin, ...

    t counts the steps taken so far.
    """

    def __init__(self, burn_in: int, thin: int = 1) -> None:
        check_int(burn_in, "SampleCollector: burn_in", 0)
        check_int(thin, "SampleCollector: thin", 1)
        self.burn_in, self.thin = burn_in, thin
        self.samples: list[Sample] = []

    def maybe_collect(
        self, step: int, model_or_params: nn.Module | Tensor | Iterable[Tensor]
    ) -> bool:
        """Store a copy of the parameters if `step` is one to keep.

        Store a copy (state dict / tensor / list of tensors) iff step > burn_in and (step - burn_in)
        % thin == 0.
        """
        check_int(step, "SampleCollector: step", 0)
        keep = step > self.burn_in and (step - self.burn_in) % self.thin == 0
        if keep:
            self.samples.append(_copy(model_or_params))
        return keep

    def stacked(self) -> Tensor | list[Tensor] | dict[str, Tensor]:
        """The samples stacked along a new first dimension.

        The samples stacked along a new first dimension (a tensor, a list of tensors or a dict, like
        the samples).
        """
        if not self.samples:
            raise ValueError(
                "SampleCollector: no samples collected yet (is burn_in larger than the number of "
                "steps?)"
            )
        return _stack(self.samples)

    def predict(
        self,
        model: nn.Module | Callable[[Tensor, Tensor], Tensor],
        fn: Callable[[Tensor], Tensor] | None,
        x: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Bayesian model average over the collected samples.

        `bayesian_average(model, self.samples, x, fn)`.
        """
        return bayesian_average(model, self.samples, x, fn)


def _softmax(logits: Tensor) -> Tensor:
    return logits.softmax(-1)


def _evaluate(
    model: nn.Module | Callable[[Tensor, Tensor], Tensor], sample: Sample, x: Tensor
) -> Tensor:
    """model(x; theta) for one sample.

    Functional_call for a module, model(theta, x) for a plain function.
    """
    if not isinstance(model, nn.Module):
        return model(sample, x)
    if isinstance(sample, list):
        names = [name for name, _ in model.named_parameters()]
        if len(names) != len(sample):
            raise ValueError(
                f"a sample holds {len(sample)} tensors but the model has {len(names)} parameters"
            )
        sample = dict(zip(names, sample))
    if not isinstance(sample, dict):
        raise TypeError(
            "with an nn.Module, samples must be state dicts or lists of its parameters; for tensor "
            "samples pass a function model(theta, x)"
        )
    return torch.func.functional_call(model, sample, (x,))


@torch.no_grad()
def bayesian_average(
    model: nn.Module | Callable[[Tensor, Tensor], Tensor],
    samples: Sequence[Sample],
    x: Tensor,
    fn: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Bayesian model averaging p(y | x, D) ~ (1/T) sum_t p(y | x, theta_t): mean and std.

    p(y | x, theta_t) = fn(model(x; theta_t)), fn = softmax over the last dimension by default
    (pass e.g. `lambda out: out` for regression). A module is evaluated with each state dict (or
    list of its parameters) via torch.func.functional_call, in its current train/eval mode; a plain
    function is called as model(theta_t, x).

    Args:
        model: an nn.Module, or a function (theta, x) -> output.
        samples: the collected theta_t (state dicts, lists of parameters or tensors).
        x: the inputs.
        fn: maps an output to p(y | x, theta_t).

    Returns:
        (mean, std): the predictive mean and the population std over the samples (0 for one).
    """
    if len(samples) == 0:
        raise ValueError("bayesian_average: no samples (collect some after burn-in first)")
    fn = _softmax if fn is None else fn
    preds = torch.stack([fn(_evaluate(model, s, x)) for s in samples])
    return preds.mean(0), preds.std(0, correction=0)
