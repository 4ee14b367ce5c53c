"""Data-parallel training under torchrun: the helpers fit() calls when torch.distributed is up.

fit() stays one training loop. When a process group of more than one process is initialized
(`init_from_env()` under `torchrun --nproc_per_node=N`), fit wraps the loss computation in PyTorch's
DistributedDataParallel (DDP), every rank trains on its shard of each global batch, the logged
terms are those of the global batch, rank 0 alone writes checkpoints, and every rank resumes from
them. Otherwise nothing here runs and fit is the one-process loop, bit for bit.

Same global batch, same step. Every rank draws the same global batch B (ShuffledBatches with the
same seeded generator, a list, a seeded DataLoader) and keeps its slice b_r of n_r examples. For
a loss that is a mean over the batch plus batch-independent terms, L_B = sum_r (n_r / B) L_r; rank
r back-propagates (W n_r / B) L_r and DDP averages the W gradients, so every rank holds
grad L_B, the one-process gradient up to the order of the floating-point reduction (Goyal et al.
2017, "Accurate, large minibatch SGD"). A DataLoader over a DistributedSampler (`loader()`) is
already sharded: fit then trains on its batches as they come (equal shards).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dgm_lib.checks import check_positive_int

# what torchrun sets in every worker (its rendezvous result)
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
RANK_SEED_STRIDE = 1_000_003  # rank r > 0 reseeds its global torch RNG with initial_seed + r * this


def is_distributed() -> bool:
    """Whether a torch.distributed process group of more than one process is initialized."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes in the group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process is rank 0: the one that prints, shows progress and writes files."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """Whether any of torchrun's rendezvous variables (ENV_VARS) is set in the environment."""
    return any(name in os.environ for name in ENV_VARS)


def _env_int(name: str, low: int, high: int | None, hint: str) -> int:
    """The environment variable `name` as an int in [low, high], else ValueError naming it."""
    text = os.environ[name]
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name}={text!r}: must be {bound} ({hint})")
    return value


def _device_for(local_rank: int) -> torch.device:
    """cuda:LOCAL_RANK with CUDA (ValueError if the node has too few GPUs), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(
            f"LOCAL_RANK={local_rank} but this node has {count} GPU(s): pass "
            f"--nproc_per_node at most {count}"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_from_env(backend: str | None = None) -> torch.device:
    """Join the process group torchrun set up (env:// rendezvous); returns this rank's device.

    Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. The device is cuda:LOCAL_RANK
    (backend "nccl") when CUDA is available, else the CPU (backend "gloo"). Calling it again in an
    initialized process returns the device and checks nothing else.

    Args:
        backend: "gloo", "nccl" or None (nccl with CUDA, gloo without).

    Returns:
        The torch.device this rank trains on.

    Raises:
        RuntimeError: a rendezvous variable is missing (not started by torchrun).
        ValueError: a variable is not a valid integer, RANK is outside [0, WORLD_SIZE), or
            LOCAL_RANK names a GPU the node does not have.
    """
    missing = [name for name in ENV_VARS if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"torchrun's rendezvous variable(s) {', '.join(missing)} are not set; start the "
            "script with torchrun (python -m torch.distributed.run --nproc_per_node=N ...), which "
            f"sets {', '.join(ENV_VARS)}"
        )
    size = _env_int("WORLD_SIZE", 1, None, "the number of processes: nnodes x nproc_per_node")
    me = _env_int("RANK", 0, size - 1, f"this process's rank, below WORLD_SIZE={size}")
    local = _env_int("LOCAL_RANK", 0, None, "this process's rank on its node")
    _env_int("MASTER_PORT", 1, 65535, "the TCP port of rank 0's rendezvous")
    if backend is not None and backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo', 'nccl' or None, got {backend!r}")
    device = _device_for(local)
    if not dist.is_initialized():
        chosen = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(chosen, init_method="env://", rank=me, world_size=size)
    return device


def shutdown() -> None:
    """Leave the process group, if one is initialized (at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def _batch_size(batch: Any) -> int:
    """The number of examples of a batch: the length of its first tensor (or of an index list)."""
    if isinstance(batch, Tensor):
        return len(batch)
    if isinstance(batch, Mapping):
        return _batch_size(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)) and batch:
        nested = isinstance(batch[0], (Tensor, list, tuple, Mapping))
        return _batch_size(batch[0]) if nested else len(batch)
    raise TypeError(f"cannot shard a batch of type {type(batch).__name__} over ranks")


def _slice(batch: Any, start: int, stop: int) -> Any:
    """Examples [start, stop) of a batch: tensors along dim 0, containers element-wise, index
    lists (of ints) themselves."""
    if isinstance(batch, Tensor):
        return batch[start:stop]
    if isinstance(batch, Mapping):
        return {k: _slice(v, start, stop) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_slice(b, start, stop) for b in batch))
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], (Tensor, list, tuple)):
        return type(batch)(_slice(b, start, stop) for b in batch)
    return batch[start:stop]


def shard(batch: Any, rank: int, world: int) -> tuple[Any, float]:
    """Rank `rank`'s slice of a global batch of B examples, and its share n_r / B.

    The slices are contiguous and as equal as possible (sizes differ by at most one).

    Args:
        batch: a tensor, a tuple/list/dict of tensors of equal length, or a list of indices.
        rank: in [0, world).
        world: the number of ranks W (at most B).

    Returns:
        (the slice, n_r / B).

    Example:
        >>> shard(torch.arange(5), 1, 2)
        (tensor([2, 3, 4]), 0.6)
    """
    check_positive_int(world, "world")
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    size = _batch_size(batch)
    if size < world:
        raise ValueError(
            f"a global batch of {size} example(s) cannot be split over world size {world}: use a "
            "batch size of at least the number of processes"
        )
    start, stop = rank * size // world, (rank + 1) * size // world
    return _slice(batch, start, stop), (stop - start) / size


def is_sharded(data: Iterable) -> bool:
    """Whether `data` already yields this rank's shard (a DataLoader over a DistributedSampler)."""
    return isinstance(getattr(data, "sampler", None), DistributedSampler)


def start_epoch(data: Iterable, steps_before: int) -> None:
    """Tell a DistributedSampler which epoch begins (set_epoch), from the steps taken before it.

    Its order is seeded by (seed, epoch); every epoch of a DataLoader has len(data) batches, so the
    epoch is steps_before // len(data), also when a resumed run re-creates it. Other data: no-op.
    """
    if is_sharded(data):
        data.sampler.set_epoch(steps_before // len(data))


def loader(
    dataset: Dataset, batch_size: int, *, seed: int = 0, shuffle: bool = True, **kwargs: Any
) -> DataLoader:
    """A DataLoader of global batches of `batch_size`, split over the ranks when distributed.

    One process: DataLoader(dataset, batch_size, shuffled with a generator seeded `seed`). Under
    torchrun: each rank loads batch_size / W examples through a DistributedSampler(seed, shuffle)
    (equal shards: it pads the last ones), so only the rank's own examples are read.

    Args:
        dataset: a map-style Dataset.
        batch_size: the global batch size, a multiple of the world size W.
        seed: the seed of the shuffling.
        shuffle: reshuffle every epoch.
        **kwargs: passed to DataLoader (num_workers, pin_memory, ...).

    Returns:
        The DataLoader; pass `loader.generator` to fit as `generator` in one process.
    """
    check_positive_int(batch_size, "batch_size")
    world = world_size()
    if not is_distributed():
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size, shuffle=shuffle, generator=generator, **kwargs)
    if batch_size % world:
        raise ValueError(
            f"batch_size={batch_size} must be a multiple of the world size {world} (equal shards)"
        )
    sampler = DistributedSampler(dataset, world, rank(), shuffle=shuffle, seed=seed)
    return DataLoader(dataset, batch_size // world, sampler=sampler, **kwargs)


class _LossModule(nn.Module):
    """The model and its loss as one module, so DDP's forward is the whole loss computation and the
    loss function still receives the model itself (with all its methods)."""

    def __init__(self, model: nn.Module, loss_terms: Callable[[nn.Module, Any], dict]):
        super().__init__()
        self.model, self.loss_terms = model, loss_terms

    def forward(self, batch: Any) -> dict[str, Tensor]:
        return self.loss_terms(self.model, batch)


class DataParallel:
    """What fit needs in a run over W > 1 ranks: the DDP-wrapped loss, the rank's shard of each
    global batch, the global batch's loss terms, rank-0 writes and per-rank RNG states."""

    def __init__(
        self, model: nn.Module, loss_terms: Callable[[nn.Module, Any], dict], data: Iterable
    ):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.sharded = is_sharded(data)
        device = next(model.parameters()).device
        ids = [device] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(_LossModule(model, loss_terms), device_ids=ids)
        self.device = device if dist.get_backend() == "nccl" else torch.device("cpu")

    def local(self, batch: Any) -> tuple[Any, float]:
        """This rank's part of the global batch and its share n_r / B."""
        if self.sharded:
            return batch, 1 / self.world
        return shard(batch, self.rank, self.world)

    def terms(self, batch: Any) -> dict[str, Tensor]:
        """The loss terms of this rank's batch, through DDP (its backward averages gradients)."""
        return self.ddp(batch)

    def global_values(self, terms: Mapping[str, Any], share: float) -> dict[str, float]:
        """Every term of the global batch: sum over ranks of share_r x term_r (float64).

        A non-finite term on any rank is non-finite on every rank, so all ranks stop together.
        """
        local = [float(v.detach()) if isinstance(v, Tensor) else float(v) for v in terms.values()]
        values = torch.tensor(local, dtype=torch.float64, device=self.device) * share
        dist.all_reduce(values)
        return dict(zip(terms, values.tolist()))

    def loss_scale(self, share: float) -> float:
        """W n_r / B: DDP's average of the scaled rank losses' gradients is the global gradient."""
        return self.world * share

    def save(self, write: Callable[[], Any]) -> None:
        """`write()` on rank 0 alone, then every rank waits for it (the file is then complete)."""
        if self.rank == 0:
            write()
        dist.barrier()

    def gather_rng(self, epoch_rng: dict, rng: dict) -> list[dict]:
        """Every rank's {"epoch_rng", "rng"} (for the checkpoint), in rank order."""
        states: list[Any] = [None] * self.world
        dist.all_gather_object(states, {"epoch_rng": epoch_rng, "rng": rng})
        return states

    def rank_rng(self, state: Mapping[str, Any]) -> tuple[dict, dict, bool]:
        """This rank's (epoch_rng, rng) from a checkpoint and whether they are its own: its own
        when as many ranks wrote it, else rank 0's (then call `fork_rng` after restoring them)."""
        ranks = state.get("ranks")
        if isinstance(ranks, list) and len(ranks) == self.world:
            return ranks[self.rank]["epoch_rng"], ranks[self.rank]["rng"], True
        return state["epoch_rng"], state["rng"], False

    def fork_rng(self) -> None:
        """Rank r > 0 reseeds the global torch RNG with initial_seed + r x RANK_SEED_STRIDE, so the
        model's own noise (dropout, a diffusion model's t and eps) differs between shards; rank 0
        keeps the caller's stream."""
        if self.rank > 0:
            torch.manual_seed((torch.initial_seed() + self.rank * RANK_SEED_STRIDE) % 2**63)
