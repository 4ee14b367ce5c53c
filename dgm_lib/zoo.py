"""Named model configs -> pretrained weights shipped as package data (dgm_lib/checkpoints/NAME.pt); load-or-train.

A model module registers its configs at import time with `register(...)`; listing its dotted name in
CONFIG_MODULES (one line) makes the zoo import it lazily, on first use, never when `dgm_lib.zoo` is imported.
`load(name)` returns the model with its shipped weights, or trains it with the registered recipe when the
file is missing; `python -m dgm_lib.zoo train NAME` regenerates a checkpoint, `python -m dgm_lib.zoo list`
shows them all. The checkpoint directory is DGM_CHECKPOINT_DIR if set, else the package's checkpoints/.
"""

from __future__ import annotations

import argparse
import importlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from dgm_lib.core import (
    CheckpointError,
    get_device,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from dgm_lib.training import History

CONFIG_MODULES: tuple[str, ...] = (  # dotted names of the modules that call register(), one per line
    "dgm_lib.flows.energy_models",
    "dgm_lib.flows.toy_models",
    "dgm_lib.vae.pretrained",
    "dgm_lib.dequantization_models",
    "dgm_lib.metrics",
    "dgm_lib.diffusion.pretrained",
)

_REGISTRY: dict[str, "Entry"] = {}


@dataclass(frozen=True)
class Entry:
    """One named config: how to build the model, how to train it, and what determines its weights."""

    name: str
    build: Callable[[], nn.Module]
    train: Callable[[nn.Module], History | None]
    config: dict
    max_bytes: int
    seed: int = 0
    resumable: bool = False

    @property
    def file_config(self) -> dict:
        """The config stored in (and checked against) the checkpoint file."""
        return {"zoo_name": self.name, "seed": self.seed, "config": self.config}


def register(
    name: str,
    *,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], History | None],
    config: dict,
    max_bytes: int,
    seed: int = 0,
    resumable: bool = False,
) -> Entry:
    """Register config `name`: `build()` makes the untrained model, `train(model)` trains it in place.

    `config` must record everything that determines the weights (checked on load); `max_bytes` is the
    size budget of the checkpoint; training starts with `seed_everything(seed)`. A `resumable` recipe takes
    `train(model, checkpoint_path=p)` and keeps its full training state (optimizer, RNG, data position) at
    `p` = resume_path(name), so a long training stopped midway continues exactly. Registering a name again
    with the same config and budget replaces the entry (re-running a notebook cell); otherwise ValueError.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier-like str (used as a file name), got {name!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    if not callable(build) or not callable(train):
        raise TypeError(f"build and train must be callables, got {type(build).__name__} and {type(train).__name__}")
    entry = Entry(name, build, train, config, max_bytes, seed, resumable)
    old = _REGISTRY.get(name)
    if old is not None and (old.file_config, old.max_bytes) != (entry.file_config, entry.max_bytes):
        raise ValueError(f"zoo config {name!r} is already registered with a different config or max_bytes")
    _REGISTRY[name] = entry
    return entry


def _entries() -> dict[str, Entry]:
    """The registry, after importing every module in CONFIG_MODULES."""
    for module in CONFIG_MODULES:
        importlib.import_module(module)
    return _REGISTRY


def names() -> list[str]:
    """Sorted names of all registered configs."""
    return sorted(_entries())


def _entry(name: str) -> Entry:
    entries = _entries()
    if name not in entries:
        raise ValueError(f"unknown zoo config {name!r}; registered: {', '.join(sorted(entries)) or '(none)'}")
    return entries[name]


def checkpoint_dir() -> Path:
    """DGM_CHECKPOINT_DIR if set, else the package's checkpoints/ folder."""
    env = os.environ.get("DGM_CHECKPOINT_DIR")
    return Path(env) if env else Path(__file__).resolve().parent / "checkpoints"


def checkpoint_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Where the weights of config `name` live."""
    return (Path(directory) if directory is not None else checkpoint_dir()) / f"{name}.pt"


def resume_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Where a resumable recipe keeps the full training state of config `name` (resume/NAME.pt)."""
    return (Path(directory) if directory is not None else checkpoint_dir()) / "resume" / f"{name}.pt"


def _train(entry: Entry, device: torch.device, directory: str | os.PathLike | None) -> tuple[nn.Module, dict]:
    """Seed, build and train on `device`, then restore the caller's RNG states; returns model and checkpoint state."""
    caller_rng = get_rng_state()
    try:
        seed_everything(entry.seed)
        model = entry.build().to(device)
        if entry.resumable:
            history = entry.train(model, checkpoint_path=resume_path(entry.name, directory))
        else:
            history = entry.train(model)
    finally:
        set_rng_state(caller_rng)
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history.terms if isinstance(history, History) else None,
    }
    if isinstance(history, History) and history.evaluations:
        state["evaluations"] = history.evaluations
    return model.eval(), state


def train(name: str, *, device: torch.device | str | None = None, directory: str | os.PathLike | None = None) -> Path:
    """Train config `name` with its recipe and save the weights atomically (CheckpointError if over max_bytes)."""
    entry = _entry(name)
    _, state = _train(entry, torch.device(device) if device is not None else get_device(), directory)
    return save_checkpoint(checkpoint_path(name, directory), state, entry.file_config, max_bytes=entry.max_bytes)


def load(
    name: str,
    *,
    train_if_missing: bool = True,
    device: torch.device | str | None = None,
    directory: str | os.PathLike | None = None,
) -> nn.Module:
    """Config `name` in eval mode on `device` (default get_device()): shipped weights if present, else trained now."""
    entry = _entry(name)
    device = torch.device(device) if device is not None else get_device()
    path = checkpoint_path(name, directory)
    if not path.exists():
        if not train_if_missing:
            raise CheckpointError(f"checkpoint {path}: file not found (run: python -m dgm_lib.zoo train {name})")
        print(f"zoo: no weights for {name!r} at {path}; training it now with the registered recipe")
        model, state = _train(entry, device, directory)
        try:
            save_checkpoint(path, state, entry.file_config, max_bytes=entry.max_bytes)
        except OSError as exc:
            warnings.warn(f"zoo: trained {name!r} but could not save {path}: {exc}", stacklevel=2)
        return model
    record = load_checkpoint(path, expected_config=entry.file_config, map_location="cpu")
    model = entry.build()
    try:
        model.load_state_dict(record["state"]["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path}: weights do not fit the model built for {name!r}: {first}") from exc
    return model.to(device).eval()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `python -m dgm_lib.zoo list` and `python -m dgm_lib.zoo train NAME [NAME ...]`."""
    parser = argparse.ArgumentParser(prog="python -m dgm_lib.zoo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list registered configs and their checkpoints")
    train_cmd = commands.add_parser("train", help="train configs and save their checkpoints")
    train_cmd.add_argument("names", nargs="+", metavar="NAME")
    train_cmd.add_argument("--device", default=None, help="torch device (default: cuda, then mps, then cpu)")
    for cmd in commands.choices.values():
        cmd.add_argument("--dir", default=None, help="checkpoint directory (default: checkpoint_dir())")
    args = parser.parse_args(argv)
    if args.command == "list":
        if not names():
            print("no zoo configs registered")
        for name in names():
            path = checkpoint_path(name, args.dir)
            size = f"{path.stat().st_size:,} bytes" if path.exists() else "missing"
            print(f"{name}: {size} (budget {_entry(name).max_bytes:,}) {path}")
        return 0
    unknown = [name for name in args.names if name not in names()]
    if unknown:  # fail on a typo before training anything
        parser.error(f"unknown zoo config(s) {', '.join(unknown)}; registered: {', '.join(names()) or '(none)'}")
    for name in args.names:
        path = train(name, device=args.device, directory=args.dir)
        print(f"{name}: saved {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    from dgm_lib import zoo  # run on the imported module, where the config modules register

    raise SystemExit(zoo.main())
