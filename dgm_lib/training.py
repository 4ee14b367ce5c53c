"""fit(): the one training loop (progress bar, history, checkpoints, exact resume, NaN guard).

Data contract for exact resume. `data` is re-iterated once per epoch (`iter(data)`). All of its
randomness must come either from `generator` (passed to `fit`, used by the data only) or from the
global torch RNG at the start of an epoch (e.g. a shuffling DataLoader without a generator). A
checkpoint stores the RNG states taken just before `iter(data)` of the current epoch, the number of
batches drawn from it, and the RNG states after the last step; resuming restores the first,
re-creates the epoch and skips the drawn batches, then restores the second. On CPU a resumed run is
then bit-for-bit the uninterrupted one. The model's own randomness (dropout, reparameterization
noise) may use the global RNG freely. Skipped batches are drawn again (cheap for sampled data; a
DataLoader loads them again without running the model).

Under torchrun (a process group initialized, e.g. by dgm_lib.distributed.init_from_env) the same
loop trains data-parallel through dgm_lib.distributed: DDP, each rank's shard of every global
batch, the global batch's terms in the History of every rank, rank 0 alone writing checkpoints.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from dgm_lib import distributed
from dgm_lib.checks import check_positive_int
from dgm_lib.core import device_of, get_rng_state, set_rng_state
from dgm_lib.io import (
    CheckpointError,
    check_config,
    config_mismatch,
    load_checkpoint,
    save_checkpoint,
    state_dict_mismatch,
)

_STATE_KEYS = ("model", "optimizer", "step", "history", "position", "epoch_rng", "rng")
LossFn = Callable[[nn.Module, Any], Mapping[str, Tensor]]
Evaluate = Callable[[nn.Module], Mapping[str, float]]


class NonFiniteLossError(RuntimeError):
    """A loss term or the gradient norm became NaN/inf; the optimizer was not stepped."""

    def __init__(self, message: str, step: int, term: str, value: float, history: History):
        super().__init__(message)
        self.step, self.term, self.value, self.history = step, term, value, history


@dataclass
class History:
    """Every loss term at every step: `terms[name][k]` is the value at step k + 1.

    `evaluations[name]` lists [step, value] pairs of the metrics `FitOptions.evaluate` returned.

    Example:
        >>> history = History()
        >>> history.append({"loss": 2.0})
        >>> history.append({"loss": 1.0})
        >>> len(history), history.last("loss", n=2)
        (2, 1.5)
    """

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
        """Record the metrics of an evaluation after `step`.

        `evaluations[name]` gains [step, value].
        """
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
    """An epoch of minibatches of `data` in a fresh random order drawn with `generator` (for fit).

    `data` is a tensor, or a tuple of tensors of equal length (e.g. images and labels) shuffled
    together, giving tuple batches. With `transform`, each epoch's shuffled tensor becomes
    `transform(data, generator)` before it is split, e.g. dynamic binarization x ~ Bernoulli(p).

    Example:
        >>> batches = ShuffledBatches(torch.arange(5.0), 2, torch.Generator().manual_seed(0))
        >>> [len(b) for b in batches]
        [2, 2, 1]
    """

    def __init__(
        self,
        data: Tensor | tuple[Tensor, ...],
        batch_size: int,
        generator: torch.Generator,
        transform: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    ):
        if isinstance(data, tuple) and transform is not None:
            raise ValueError("transform applies to a tensor of data, not to a tuple of tensors")
        self.data, self.batch_size = data, check_positive_int(batch_size, "batch_size")
        self.generator, self.transform = generator, transform

    def _size(self) -> int:
        return len(self.data[0]) if isinstance(self.data, tuple) else len(self.data)

    def __len__(self) -> int:
        return math.ceil(self._size() / self.batch_size)

    def __iter__(self) -> Iterator[Tensor | tuple[Tensor, ...]]:
        order = torch.randperm(self._size(), generator=self.generator)
        if isinstance(self.data, tuple):
            return zip(*(t[order].split(self.batch_size) for t in self.data))
        shuffled = self.data[order]
        if self.transform is not None:
            shuffled = self.transform(shuffled, self.generator)
        return iter(shuffled.split(self.batch_size))


class WeightAverage(nn.Module):
    """An exponential moving average of a model's weights: theta_bar <- d theta_bar + (1 - d) theta.

    Wraps the model being trained: calling it calls `model`, and `average` holds the averaged
    copy (started at the model's weights). Both are in the state_dict, so fit's checkpoints carry
    the average and a resumed run continues it exactly. `attach(optimizer)` updates the average
    after every optimizer step; buffers are copied, not averaged. Ho et al. (2020) sample their
    DDPMs from such an average (d = 0.9999).

    Args:
        model: the network being trained (the optimizer holds its parameters).
        decay: d, in (0, 1); the average spans about 1 / (1 - d) steps.

    Example:
        >>> net = nn.Linear(1, 1, bias=False)
        >>> ema = WeightAverage(net, decay=0.75)
        >>> _ = net.weight.data.fill_(1.0), ema.average.weight.data.fill_(0.0)
        >>> ema.update()
        >>> ema.average.weight.item()  # 0.75 * 0 + 0.25 * 1
        0.25
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.model, self.decay = model, decay
        self.average = copy.deepcopy(model).requires_grad_(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The trained model's output: model(*args, **kwargs)."""
        return self.model(*args, **kwargs)

    @torch.no_grad()
    def update(self) -> None:
        """theta_bar <- d theta_bar + (1 - d) theta for every parameter; buffers copied."""
        for averaged, current in zip(self.average.parameters(), self.model.parameters()):
            averaged.lerp_(current, 1.0 - self.decay)
        for kept, buffer in zip(self.average.buffers(), self.model.buffers()):
            kept.copy_(buffer)

    def attach(self, optimizer: torch.optim.Optimizer) -> Any:
        """Update the average after every `optimizer.step()`; returns the hook's handle."""
        return optimizer.register_step_post_hook(lambda *_: self.update())


def adam_cosine(
    model: nn.Module, lr: float, steps: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """Adam(lr) and a cosine decay of its learning rate to 0 over `steps` scheduler steps.

    lr_t = lr (1 + cos(pi t / steps)) / 2 (Loshchilov & Hutter, SGDR, ICLR 2017).

    Returns:
        (optimizer, scheduler), for `fit(model, optimizer, data, options, scheduler=scheduler)`.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


@dataclass(frozen=True)
class FitOptions:
    """How `fit` trains: the number of steps and everything else but the model, optimizer and data.

    Attributes:
        steps: optimizer steps to take (in total, counting the steps of a resumed checkpoint).
        loss_fn: `loss_fn(model, batch)` -> dict of loss terms with "loss"; None calls the model.
        grad_clip: clip the gradient norm to this value (None: no clipping).
        progress: show a tqdm progress bar with the latest loss terms.
        checkpoint_path: save the full training state here (atomically) and resume from it.
        checkpoint_every: save every so many steps (and at the end).
        resume: continue from an existing checkpoint at `checkpoint_path`.
        config: what the checkpoint must record; a checkpoint with another config is refused.
        evaluate: `evaluate(model)` -> dict of metrics, run in eval mode without gradients.
        evaluate_every: evaluate every so many steps (and at the end).

    Example:
        >>> FitOptions(steps=100, grad_clip=1.0).checkpoint_every
        100
    """

    steps: int
    loss_fn: LossFn | None = None
    grad_clip: float | None = None
    progress: bool = True
    checkpoint_path: str | os.PathLike | None = None
    checkpoint_every: int = 100
    resume: bool = True
    config: dict | None = None
    evaluate: Evaluate | None = None
    evaluate_every: int = 1000

    def __post_init__(self) -> None:
        check_positive_int(self.steps, "steps")
        check_positive_int(self.checkpoint_every, "checkpoint_every")
        check_positive_int(self.evaluate_every, "evaluate_every")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be a positive number or None, got {self.grad_clip!r}")
        if self.config is not None:
            check_config(self.config)  # now, not at the first save after expensive steps
        if self.evaluate is not None and not callable(self.evaluate):
            kind = type(self.evaluate).__name__
            raise TypeError(
                f"evaluate must be a callable model -> dict of metrics or None, got {kind}"
            )


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a batch (tensor, tuple/list or dict of them) to `device`."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_to_device(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _loss_terms(model: nn.Module, batch: Any, loss_fn: LossFn | None) -> dict[str, Tensor]:
    """`loss_fn(model, batch)`, or `model(batch)` / `model(*batch)` / `model(**batch)`, checked."""
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
        raise TypeError(
            f"the model (or loss_fn) must return a dict of loss terms with a 'loss' key, got {got}"
        )
    for name, value in out.items():
        if isinstance(value, Tensor) and value.numel() != 1:
            raise ValueError(
                f"loss term {name!r} must be a scalar (one number, e.g. the batch's .mean()), "
                f"got a tensor of shape {tuple(value.shape)}"
            )
    if not isinstance(out["loss"], Tensor):
        raise TypeError(
            f"loss term 'loss' must be a scalar tensor to differentiate, got "
            f"{type(out['loss']).__name__}"
        )
    return dict(out)


def _guarded_backward(
    terms: dict[str, Tensor],
    optimizer: torch.optim.Optimizer,
    grad_clip: float | None,
    values: dict[str, float] | None = None,
    loss_scale: float = 1.0,
) -> tuple[dict[str, float], str | None]:
    """Backward of loss_scale x terms["loss"] and grad-norm clipping, unless a term is non-finite.

    `values` are the terms' floats when the caller has them (the global batch's, distributed).
    Returns the float value of every term (plus "gradient norm" if that is the culprit) and the
    name of the non-finite quantity (a term other than "loss" first), or None when the optimizer
    may step.
    """
    if values is None:
        values = {n: float(v.detach() if isinstance(v, Tensor) else v) for n, v in terms.items()}
    non_finite = [name for name, value in values.items() if not math.isfinite(value)]
    optimizer.zero_grad(set_to_none=True)
    if non_finite:
        return values, next((name for name in non_finite if name != "loss"), "loss")
    loss = terms["loss"] if loss_scale == 1.0 else terms["loss"] * loss_scale
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else math.inf))
    if not math.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return {**values, "gradient norm": norm}, "gradient norm"
    return values, None


def _evaluated(model: nn.Module, evaluate: Evaluate) -> dict[str, float]:
    """evaluate(model) in eval mode without gradients; the global RNG states are restored after."""
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


@dataclass
class _Run:
    """One fit() call: its objects, and where it stands (steps done, position in the epoch)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: Iterable
    options: FitOptions
    scheduler: Any
    generator: torch.Generator | None
    history: History = field(default_factory=History)
    step: int = 0
    position: int = 0  # batches drawn from the current epoch
    batches: Iterator | None = None
    epoch_rng: dict = field(default_factory=dict)  # RNG states just before iter(data)
    last_good: int | None = None  # step of the last checkpoint written or resumed
    signature: dict = field(default_factory=dict)  # what a resume must match (_signature)
    snapshot: tuple | None = None  # (step, position, epoch_rng, rng) when the current step began
    committing: bool = False  # the optimizer is stepping: the state is between two steps
    finishing: bool = False  # the step's evaluation or save is running: the step is not complete
    parallel: distributed.DataParallel | None = None  # under torchrun with W > 1 ranks

    def __post_init__(self) -> None:
        self.signature = _signature(self.optimizer)

    @property
    def path(self) -> Path | None:
        path = self.options.checkpoint_path
        return Path(path) if path is not None else None


def _plain(value: Any) -> Any:
    """A hyper-parameter as a plain value a checkpoint can hold (tuples as lists, tensors as
    floats, anything else as its repr)."""
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _hyper(groups: list[dict]) -> list[dict]:
    """The hyper-parameters of each parameter group (all keys but "params"), as plain values."""
    return [{k: _plain(v) for k, v in g.items() if k != "params"} for g in groups]


def _signature(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's class and hyper-parameters when fit starts: a resume must match them."""
    kind = type(optimizer)
    return {
        "optimizer": f"{kind.__module__}.{kind.__qualname__}",
        "hyper": _hyper(optimizer.param_groups),
    }


def _resume_mismatch(run: _Run, record: dict) -> str | None:
    """What differs between the checkpoint and what `run` trains (config, architecture,
    optimizer class or hyper-parameters), or None."""
    state = record["state"]
    problem = config_mismatch(record["config"], run.options.config or {})
    if problem:
        return f"config: {problem}"
    if not isinstance(state.get("model"), Mapping):
        return "it holds no model weights"
    problem = state_dict_mismatch(state["model"], run.model.state_dict())
    if problem:
        return f"architecture: {problem}"
    saved, now = state.get("signature"), run.signature
    if saved is None:  # written before signatures: compare the optimizer's saved groups
        groups = state.get("optimizer", {}).get("param_groups", [])
        saved = {"optimizer": now["optimizer"], "hyper": _hyper(groups)}
        if any("initial_lr" in g for g in groups):  # a scheduler moved lr: compare initial_lr
            now = {
                **now,
                "hyper": [{k: v for k, v in g.items() if k != "lr"} for g in now["hyper"]],
            }
            saved["hyper"] = [{k: v for k, v in g.items() if k != "lr"} for g in saved["hyper"]]
    if saved["optimizer"] != now["optimizer"]:
        return f"optimizer: {saved['optimizer']} in the file, now {now['optimizer']}"
    if len(saved["hyper"]) != len(now["hyper"]):
        n_old, n_new = len(saved["hyper"]), len(now["hyper"])
        return f"optimizer: {n_old} parameter groups in the file, now {n_new}"
    for k, (old, new) in enumerate(zip(saved["hyper"], now["hyper"])):
        problem = config_mismatch(old, new)
        if problem:
            return f"optimizer hyper-parameters of group {k}: {problem}"
    return None


def _save(run: _Run, rng: dict | None = None) -> None:
    """Write the full training state of `run` to its checkpoint path (`rng`: the RNG states to
    record, default the current ones)."""
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "step": run.step,
        "history": run.history.terms,
        "evaluations": run.history.evaluations,
        "position": run.position,
        "epoch_rng": run.epoch_rng,
        "rng": rng if rng is not None else get_rng_state(run.generator),
        "signature": run.signature,
    }
    if run.parallel is None:
        save_checkpoint(run.path, state, run.options.config or {})
    else:  # every rank's RNG states, so that each resumes its own stream; rank 0 writes
        state["ranks"] = run.parallel.gather_rng(run.epoch_rng, state["rng"])
        run.parallel.save(lambda: save_checkpoint(run.path, state, run.options.config or {}))
    run.last_good = run.step


def _restore(run: _Run, state: dict | None = None) -> dict:
    """Load the checkpoint (or its already loaded `state`) into model, optimizer and scheduler;
    returns its state."""
    if state is None:
        state = load_checkpoint(run.path, map_location="cpu", require=_STATE_KEYS)["state"]
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    return state


def _resumable_state(run: _Run) -> dict:
    """The state of the checkpoint at run.path; CheckpointError unless the same training (config,
    architecture, optimizer class and hyper-parameters) wrote it."""
    record = load_checkpoint(run.path, map_location="cpu", require=_STATE_KEYS)
    problem = _resume_mismatch(run, record)
    if problem:
        raise CheckpointError(
            f"checkpoint {run.path}: cannot resume, it was written by another training "
            f"({problem}); to start fresh, delete the file or pass another checkpoint_path "
            "(resume=False overwrites it)"
        )
    return record["state"]


def _resume(run: _Run) -> None:
    """Continue from the checkpoint: weights, history, RNG states and the data position."""
    state = _restore(run, _resumable_state(run))
    run.history = History(state["history"], state.get("evaluations", {}))
    run.step, run.position, run.epoch_rng = state["step"], state["position"], state["epoch_rng"]
    rng, own = state["rng"], True
    if run.parallel is not None:
        run.epoch_rng, rng, own = run.parallel.rank_rng(state)
    run.last_good = run.step
    if run.step >= run.options.steps:
        return
    set_rng_state(run.epoch_rng, run.generator)
    distributed.start_epoch(run.data, run.step - run.position)
    run.batches = iter(run.data)
    for drawn in range(run.position):
        if next(run.batches, None) is None:
            raise ValueError(
                f"data yields {drawn} batches per epoch, fewer than the {run.position} of the "
                "checkpoint"
            )
    set_rng_state(rng, run.generator)
    if not own:  # written by another number of ranks: rank 0's streams, forked per rank
        run.parallel.fork_rng()


def _next_batch(run: _Run) -> Any:
    """The next batch, starting a new epoch (and recording its RNG states) when one ends."""
    while True:
        if run.batches is None:
            run.epoch_rng = get_rng_state(run.generator)
            distributed.start_epoch(run.data, run.step)
            run.batches, run.position = iter(run.data), 0
        try:
            batch = next(run.batches)
        except StopIteration:
            if run.position == 0:
                raise ValueError(
                    "data yielded no batches in an epoch; pass a re-iterable (list, DataLoader), "
                    "not a one-shot generator"
                ) from None
            run.batches = None
            continue
        run.position += 1
        return batch


def _fail(run: _Run, values: dict[str, float], bad: str) -> NonFiniteLossError:
    """The error for a non-finite `bad` quantity, after restoring the last good checkpoint."""
    kept = f"no checkpoint, the model holds step {run.step}"
    if run.last_good is not None:
        _restore(run)
        kept = f"model, optimizer and scheduler restored to step {run.last_good} from {run.path}"
    what = "gradient norm" if bad == "gradient norm" else f"loss term {bad!r}"
    message = (
        f"non-finite {what} = {values[bad]} at step {run.step + 1}; optimizer not stepped; {kept}"
    )
    return NonFiniteLossError(message, run.step + 1, bad, values[bad], run.history)


def _train_step(run: _Run, batch: Any, device: torch.device) -> dict[str, float]:
    """Loss terms, NaN guard, backward, clipping, optimizer and scheduler step; records terms.

    Distributed: the rank's shard through DDP, the NaN guard on the global batch's terms.
    """
    if run.parallel is None:
        terms = _loss_terms(run.model, _to_device(batch, device), run.options.loss_fn)
        values, bad = _guarded_backward(terms, run.optimizer, run.options.grad_clip)
    else:
        batch, share = run.parallel.local(batch)
        terms = run.parallel.terms(_to_device(batch, device))
        values, bad = _guarded_backward(
            terms,
            run.optimizer,
            run.options.grad_clip,
            run.parallel.global_values(terms, share),
            run.parallel.loss_scale(share),
        )
    if bad is not None:
        raise _fail(run, values, bad)
    run.committing = True  # from here until the step is recorded, an interrupt cannot save
    run.optimizer.step()
    if run.scheduler is not None:
        run.scheduler.step()
    run.step += 1
    run.history.append(values)
    run.committing = False
    return values


def _after_step(run: _Run) -> None:
    """Evaluate and save a checkpoint when their step comes (and after the last step)."""
    options, last = run.options, run.step == run.options.steps
    if options.evaluate is not None and (run.step % options.evaluate_every == 0 or last):
        run.history.record_evaluation(run.step, _evaluated(run.model, options.evaluate))
    saving = run.path is not None and run.step % options.checkpoint_every == 0
    if saving or last:
        _check_parameters(run)  # once per save and at the end: one device sync
    if run.path is not None and (saving or last):
        _save(run)


def _non_finite_parameter(model: nn.Module) -> str | None:
    """The name of the first parameter holding NaN or inf, or None (one sync when all finite)."""
    params = list(model.named_parameters())
    if not params or bool(torch.stack([torch.isfinite(p).all() for _, p in params]).all()):
        return None
    return next(name for name, p in params if not torch.isfinite(p).all())


def _check_parameters(run: _Run) -> None:
    """NonFiniteLossError if an optimizer step made a parameter NaN/inf; restores the last good
    checkpoint first, so a diverged model never becomes the one saved."""
    bad = _non_finite_parameter(run.model)
    if bad is None:
        return
    kept = f"no checkpoint, the model holds the diverged step {run.step}"
    if run.last_good is not None:
        _restore(run)
        kept = f"model, optimizer and scheduler restored to step {run.last_good} from {run.path}"
    message = (
        f"non-finite parameter {bad!r} after step {run.step} (the optimizer step diverged: lower "
        f"the learning rate or set grad_clip); {kept}"
    )
    raise NonFiniteLossError(message, run.step, "parameters", math.nan, run.history)


def _save_on_interrupt(run: _Run) -> None:
    """On KeyboardInterrupt: save the last completed step (unless saved already or diverged)."""
    # interrupted while the step's evaluation or save ran: saving now would lose that evaluation
    # on resume, so the last checkpoint stays (the resumed run redoes this step exactly); under
    # torchrun the ranks stop at different points, so the last periodic checkpoint stays too
    if run.path is None or run.committing or run.finishing or run.snapshot is None:
        return
    if run.parallel is not None:  # no collective (gather of RNG states) after an interrupt
        return
    step, position, epoch_rng, rng = run.snapshot
    if run.step == step:  # interrupted inside a step before the optimizer moved: undo its batch
        run.position, run.epoch_rng = position, epoch_rng
    else:
        rng = None
    if run.step == run.last_good or _non_finite_parameter(run.model) is not None:
        return
    _save(run, rng)
    print(f"fit: interrupted; step {run.step} saved to {run.path} (run again to resume)")


def _warn_unsaved_generator(data: Iterable, generator: torch.Generator | None) -> None:
    """Warn when `data` draws from a torch.Generator that fit was not given (resume not exact)."""
    own = getattr(data, "generator", None)
    if isinstance(own, torch.Generator) and own is not generator:
        warnings.warn(
            f"data ({type(data).__name__}) draws from its own torch.Generator, which fit was not "
            "given, so a resumed run will not be bit-for-bit the uninterrupted one; pass it: "
            "fit(..., generator=data.generator)",
            stacklevel=3,
        )


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Iterable,
    options: FitOptions,
    *,
    scheduler: Any = None,
    generator: torch.Generator | None = None,
) -> History:
    """Train `model` for `options.steps` optimizer steps over the batches of `data`.

    Each step: batch -> model's device -> terms = loss_fn(model, batch) or model(batch) (a dict
    with "loss"; a tuple batch is unpacked, a dict passed as keywords) -> NaN guard -> backward ->
    optional grad-norm clipping -> NaN guard on the gradient norm -> optimizer.step() ->
    scheduler.step(). Every term is logged in the returned History and on the progress bar. With
    `options.checkpoint_path`, model, optimizer, scheduler, step, history, RNG states and data
    position are saved atomically every `checkpoint_every` steps and at the end, and an existing
    checkpoint is continued exactly (see the module docstring for the data contract). A non-finite
    term raises NonFiniteLossError naming the step and the term; the last good checkpoint stays on
    disk and is restored; so are non-finite parameters after an optimizer step, checked at every
    save and at the end. A KeyboardInterrupt saves the last completed step, then propagates.
    Resuming is bit-for-bit only when the data's own torch.Generator is passed as `generator`
    (fit warns when `data.generator` is one it was not given). `options.evaluate` runs every
    `evaluate_every` steps and at the end, without changing the training stream; its metrics go
    to `history.evaluations`.

    Args:
        model: an nn.Module returning a dict of loss terms (or used by `options.loss_fn`).
        optimizer: over the model's parameters.
        data: an iterable of batches, re-iterated every epoch (a list, a DataLoader).
        options: the number of steps and how to train (FitOptions).
        scheduler: a learning-rate scheduler stepped after every optimizer step, or None.
        generator: the torch.Generator the data draws from (saved and restored for resume).

    Returns:
        The History of every loss term (and of the evaluations).

    Example:
        >>> model = nn.Linear(1, 1)
        >>> def loss_fn(m, x):
        ...     return {"loss": (m(x) - 2 * x).square().mean()}
        >>> data = [torch.ones(4, 1)]
        >>> options = FitOptions(steps=200, loss_fn=loss_fn, progress=False)
        >>> history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), data, options)
        >>> history.last("loss") < 1e-6
        True
    """
    if not isinstance(options, FitOptions):
        raise TypeError(f"options must be a FitOptions, got {type(options).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer over the model's parameters (e.g. "
            f"torch.optim.Adam(model.parameters())), got {type(optimizer).__name__}"
        )
    if scheduler is not None and not all(
        callable(getattr(scheduler, m, None)) for m in ("step", "state_dict", "load_state_dict")
    ):
        raise TypeError(
            "scheduler must be a learning-rate scheduler object (e.g. "
            "torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max)) or None, got "
            f"{type(scheduler).__name__} {scheduler!r}"
        )
    if isinstance(data, Tensor):
        raise TypeError(
            "data must be an iterable of batches (e.g. a DataLoader or x.split(batch_size)), "
            "not a tensor"
        )
    run = _Run(model, optimizer, data, options, scheduler, generator)
    if distributed.is_distributed():
        loss_terms = partial(_loss_terms, loss_fn=options.loss_fn)
        run.parallel = distributed.DataParallel(model, loss_terms, data)
    if run.path is not None:
        _warn_unsaved_generator(data, generator)
    if run.path is not None and options.resume and run.path.exists():
        _resume(run)
        if run.step >= options.steps:
            return run.history
    elif run.parallel is not None:
        run.parallel.fork_rng()
    device, was_training = device_of(model), model.training
    model.train()
    bar = tqdm(
        total=options.steps,
        initial=run.step,
        disable=not options.progress or not distributed.is_main(),
        desc="fit",
        dynamic_ncols=True,
    )
    try:
        while run.step < options.steps:
            if run.path is not None:
                rng = get_rng_state(run.generator)
                run.snapshot = (run.step, run.position, run.epoch_rng, rng)
            values = _train_step(run, _next_batch(run), device)
            bar.set_postfix({name: f"{value:.4g}" for name, value in values.items()}, refresh=False)
            bar.update(1)
            run.finishing = True
            _after_step(run)
            run.finishing = False
    except KeyboardInterrupt:
        _save_on_interrupt(run)
        raise
    finally:
        bar.close()
        model.train(was_training)
    return run.history
