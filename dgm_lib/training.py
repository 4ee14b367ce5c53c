"""fit(): the one training loop (progress bar, history of loss terms, checkpoints, exact resume, NaN guard).

Data contract for exact resume. `data` is re-iterated once per epoch (`iter(data)`). All of its randomness
must come either from `generator` (passed to `fit`, used by the data only) or from the global torch RNG at the
start of an epoch (e.g. a shuffling DataLoader without a generator). A checkpoint stores the RNG states taken
just before `iter(data)` of the current epoch, the number of batches drawn from it, and the RNG states after
the last step; resuming restores the first, re-creates the epoch and skips the drawn batches, then restores
the second. On CPU a resumed run is then bit-for-bit the uninterrupted one. The model's own randomness
(dropout, reparameterization noise) may use the global RNG freely. Skipped batches are drawn again
(cheap for sampled data; a DataLoader loads them again without running the model).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dgm_lib.core import check_positive_int, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state


class NonFiniteLossError(RuntimeError):
    """A loss term or the gradient norm became NaN/inf; the optimizer was not stepped."""

    def __init__(self, message: str, step: int, term: str, value: float, history: "History"):
        super().__init__(message)
        self.step, self.term, self.value, self.history = step, term, value, history


@dataclass
class History:
    """Every loss term at every step: `terms[name][k]` is the value at step k + 1."""

    terms: dict[str, list[float]] = field(default_factory=dict)
    evaluations: dict[str, list[list[float]]] = field(default_factory=dict)

    def append(self, values: Mapping[str, float]) -> None:
        """Record one step; every step must report the same terms."""
        if self.terms and set(values) != set(self.terms):
            changed = f"from {sorted(self.terms)} to {sorted(values)}"
            raise ValueError(f"loss terms changed {changed} at step {len(self) + 1}")
        for name, value in values.items():
            self.terms.setdefault(name, []).append(float(value))

    def record_evaluation(self, step: int, values: Mapping[str, float]) -> None:
        """Record the metrics of an evaluation after `step`: `evaluations[name]` is a list of [step, value]."""
        for name, value in values.items():
            self.evaluations.setdefault(name, []).append([step, float(value)])

    def __len__(self) -> int:
        return len(next(iter(self.terms.values()), []))

    def __getitem__(self, term: str) -> list[float]:
        return self.terms[term]

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Each term as a float64 NumPy array of length `len(self)`."""
        return {name: np.asarray(values, dtype=np.float64) for name, values in self.terms.items()}

    def last(self, term: str = "loss", n: int = 1) -> float:
        """Mean of the last `n` values of `term`."""
        if term not in self.terms:
            raise KeyError(f"no loss term {term!r}; recorded terms: {sorted(self.terms)}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        tail = self.terms[term][-n:]
        return sum(tail) / len(tail)


class ShuffledBatches:
    """An epoch of minibatches of `data` in a fresh random order drawn with `generator` (a data loader for fit).

    With `transform`, each epoch's shuffled data becomes `transform(data, generator)` before it is split, e.g.
    dynamic binarization x ~ Bernoulli(intensity) drawn afresh every epoch.
    """

    def __init__(
        self,
        data: torch.Tensor,
        batch_size: int,
        generator: torch.Generator,
        transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ):
        self.data, self.batch_size = data, check_positive_int(batch_size, "batch_size")
        self.generator, self.transform = generator, transform

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        shuffled = self.data[torch.randperm(len(self.data), generator=self.generator)]
        if self.transform is not None:
            shuffled = self.transform(shuffled, self.generator)
        return iter(shuffled.split(self.batch_size))


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a batch (tensor, tuple/list or dict of them) to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_to_device(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _loss_terms(model: nn.Module, batch: Any, loss_fn: Callable | None) -> dict[str, torch.Tensor]:
    """Call `loss_fn(model, batch)`, or `model(batch)` / `model(*batch)` / `model(**batch)`, and check the dict."""
    if loss_fn is not None:
        out = loss_fn(model, batch)
    elif isinstance(batch, (list, tuple)):
        out = model(*batch)
    elif isinstance(batch, Mapping):
        out = model(**batch)
    else:
        out = model(batch)
    if not isinstance(out, Mapping) or "loss" not in out:
        got = f"dict with keys {sorted(out)}" if isinstance(out, Mapping) else type(out).__name__
        raise TypeError(f"the model (or loss_fn) must return a dict of loss terms with a 'loss' key, got {got}")
    return dict(out)


def _device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _guarded_backward(
    terms: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, grad_clip: float | None
) -> tuple[dict[str, float], str | None]:
    """Backward of terms["loss"] and grad-norm clipping, unless a term is non-finite.

    Returns the float value of every term (plus "gradient norm" if that is the culprit) and the name of the
    non-finite quantity (a term other than "loss" first), or None when the optimizer may step.
    """
    values = {name: float(v.detach() if isinstance(v, torch.Tensor) else v) for name, v in terms.items()}
    non_finite = [name for name, value in values.items() if not math.isfinite(value)]
    optimizer.zero_grad(set_to_none=True)
    if non_finite:
        return values, next((name for name in non_finite if name != "loss"), "loss")
    terms["loss"].backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else math.inf))
    if not math.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return {**values, "gradient norm": norm}, "gradient norm"
    return values, None


def _evaluated(model: nn.Module, evaluate: Callable[[nn.Module], Mapping[str, float]]) -> dict[str, float]:
    """evaluate(model) in eval mode without gradients; the global RNG states are restored afterwards."""
    rng = get_rng_state()
    model.eval()
    try:
        with torch.no_grad():
            values = evaluate(model)
    finally:
        model.train()
        set_rng_state(rng)
    if not isinstance(values, Mapping):
        raise TypeError(f"evaluate must return a dict of metrics, got {type(values).__name__}")
    return {name: float(value) for name, value in values.items()}


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Iterable,
    *,
    steps: int,
    loss_fn: Callable[[nn.Module, Any], Mapping[str, torch.Tensor]] | None = None,
    config: dict | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    progress: bool = True,
    generator: torch.Generator | None = None,
    scheduler: Any = None,
    grad_clip: float | None = None,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    evaluate_every: int = 1000,
) -> History:
    """Train `model` for `steps` optimizer steps over the batches of `data` (re-iterated every epoch).

    Each step: batch -> model's device -> terms = loss_fn(model, batch) or model(batch) (a dict with "loss";
    a tuple batch is unpacked, a dict passed as keywords) -> NaN guard -> backward -> optional grad-norm
    clipping -> NaN guard on the gradient norm -> optimizer.step() -> scheduler.step(). Every term is logged
    in the returned History and shown on a tqdm progress bar. With `checkpoint_path`, model, optimizer,
    scheduler, step, history, RNG states and data position are saved atomically every `checkpoint_every`
    steps and at the end; with `resume`, an existing checkpoint (whose config must equal `config`) is
    continued exactly (see the module docstring for the data contract). A non-finite term raises
    NonFiniteLossError naming the step and the term; the last good checkpoint stays on disk and is
    restored into model, optimizer and scheduler. With `evaluate`, `evaluate(model)` runs every
    `evaluate_every` steps and at the end (eval mode, no gradients, global RNG states restored afterwards so
    the training stream is unchanged); its metrics go to `history.evaluations` (e.g. FID during training).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}")
    if isinstance(evaluate_every, bool) or not isinstance(evaluate_every, int) or evaluate_every < 1:
        raise ValueError(f"evaluate_every must be a positive int, got {evaluate_every!r}")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be a callable model -> dict of metrics or None, got {type(evaluate).__name__}")
    if isinstance(data, torch.Tensor):
        raise TypeError("data must be an iterable of batches (e.g. a DataLoader or x.split(batch_size)), not a tensor")

    path = Path(checkpoint_path) if checkpoint_path is not None else None
    device = _device_of(model)
    history, step, position = History(), 0, 0
    batches: Iterator | None = None
    epoch_rng: dict = {}
    last_good: int | None = None

    def save() -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "step": step,
            "history": history.terms,
            "evaluations": history.evaluations,
            "position": position,
            "epoch_rng": epoch_rng,
            "rng": get_rng_state(generator),
        }
        save_checkpoint(path, state, config or {})

    def restore() -> dict:
        state = load_checkpoint(path, expected_config=config, map_location="cpu")["state"]
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        return state

    if path is not None and resume and path.exists():
        state = restore()
        history = History(state["history"], state.get("evaluations", {}))
        step, position = state["step"], state["position"]
        epoch_rng, last_good = state["epoch_rng"], step
        if step >= steps:
            return history
        set_rng_state(epoch_rng, generator)
        batches = iter(data)
        for drawn in range(position):
            if next(batches, None) is None:
                raise ValueError(f"data yields {drawn} batches per epoch, fewer than the {position} of the checkpoint")
        set_rng_state(state["rng"], generator)

    was_training = model.training
    model.train()
    bar = tqdm(total=steps, initial=step, disable=not progress, desc="fit", dynamic_ncols=True)
    try:
        while step < steps:
            if batches is None:
                epoch_rng, batches, position = get_rng_state(generator), iter(data), 0
            try:
                batch = next(batches)
            except StopIteration:
                if position == 0:
                    raise ValueError(
                        "data yielded no batches in an epoch; pass a re-iterable (list, DataLoader), "
                        "not a one-shot generator"
                    ) from None
                batches = None
                continue
            position += 1
            terms = _loss_terms(model, _to_device(batch, device), loss_fn)
            values, bad = _guarded_backward(terms, optimizer, grad_clip)
            if bad is not None:
                kept = f"no checkpoint, the model holds step {step}"
                if last_good is not None:
                    restore()
                    kept = f"model, optimizer and scheduler restored to step {last_good} from {path}"
                what = "gradient norm" if bad == "gradient norm" else f"loss term {bad!r}"
                raise NonFiniteLossError(
                    f"non-finite {what} = {values[bad]} at step {step + 1}; optimizer not stepped; {kept}",
                    step + 1, bad, values[bad], history,
                )
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            history.append(values)
            bar.set_postfix({name: f"{value:.4g}" for name, value in values.items()}, refresh=False)
            bar.update(1)
            if evaluate is not None and (step % evaluate_every == 0 or step == steps):
                history.record_evaluation(step, _evaluated(model, evaluate))
            if path is not None and (step % checkpoint_every == 0 or step == steps):
                save()
                last_good = step
    finally:
        bar.close()
        model.train(was_training)
    return history
