"""The zoo: named model configs with shipped weights, and the studies that make the shipped results.

Every topic's `recipes` module registers its configs (`register(Entry(...))`) and studies
(`register_study(Study(...))`); CONFIG_MODULES lists those modules, imported on first use, never
when `dgm_lib.zoo` is imported. `load(name)` returns a model with its shipped weights
(dgm_lib/checkpoints/NAME.pt), or trains it with its recipe when the file is missing. One command
line regenerates every shipped artifact, each recording the command that made it:

    python -m dgm_lib.zoo list                     # configs, studies and their files
    python -m dgm_lib.zoo train NAME [NAME ...]    # retrain checkpoints
    python -m dgm_lib.zoo study NAME [options]     # recompute a study's result files

`--scale full` (train and study) picks a topic's full-scale recipe instead (the seeds' settings on
all 60,000 MNIST digits, registered with `scale="full"`), written beside the shipped files under
full/ so that the small, shipped checkpoints stay the default. Under torchrun (`torchrun
--nproc_per_node=N -m dgm_lib.zoo train NAME --scale full`) every rank trains its shard of each
global batch (dgm_lib.distributed) and rank 0 alone writes.

The checkpoint directory is DGM_CHECKPOINT_DIR if set, else the package's checkpoints/; study
results live in the package's results/.
"""

from __future__ import annotations

import argparse
import importlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from dgm_lib import distributed
from dgm_lib.checks import check_positive_int
from dgm_lib.core import get_device, get_rng_state, seed_everything, set_rng_state
from dgm_lib.data.mnist import DataUnavailableError
from dgm_lib.io import (
    CheckpointError,
    check_config,
    load_checkpoint,
    save_checkpoint,
    save_json,
    save_npz,
)
from dgm_lib.training import History

CONFIG_MODULES: tuple[str, ...] = (  # the recipes modules, one per line
    "dgm_lib.recipes",
    "dgm_lib.flows.recipes",
    "dgm_lib.vae.recipes",
    "dgm_lib.dequantization.recipes",
    "dgm_lib.intrinsic_dim.recipes",
    "dgm_lib.diffusion.recipes",
    "dgm_lib.ali.recipes",
)
# the size budget of a shipped checkpoint, unless its Entry sets a smaller one
MAX_BYTES = 3_000_000

SCALES = ("small", "full")  # the shipped recipes; the seeds' full-scale settings

_REGISTRY: dict[str, Entry] = {}
_STUDIES: dict[str, Study] = {}
_FULL: dict[str, Entry] = {}  # scale="full"
_FULL_STUDIES: dict[str, Study] = {}


@dataclass(frozen=True)
class Entry:
    """One named config: how to build the model, how to train it, and what determines its weights.

    Attributes:
        name: identifier-like (it names the file NAME.pt).
        build: `build()` makes the untrained model.
        train: `train(model)` trains it in place (returns a History or None); a `resumable` recipe
            takes `train(model, checkpoint_path=p)` and keeps its full training state at
            `p = resume_path(name)`, so a long training stopped midway continues exactly.
        config: everything that determines the weights (stored in the file, checked on load).
        max_bytes: the size budget of the checkpoint.
        seed: training starts with `seed_everything(seed)`.
        resumable: see `train`.
    """

    name: str
    build: Callable[[], nn.Module]
    train: Callable[..., History | None]
    config: dict
    max_bytes: int = MAX_BYTES
    seed: int = 0
    resumable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(
                f"name must be an identifier-like str (used as a file name), got {self.name!r}"
            )
        check_positive_int(self.max_bytes, "max_bytes")
        if not callable(self.build) or not callable(self.train):
            kinds = f"{type(self.build).__name__} and {type(self.train).__name__}"
            raise TypeError(f"build and train must be callables, got {kinds}")
        check_config(self.config)  # when registering, not when saving after training

    @property
    def file_config(self) -> dict:
        """The config stored in (and checked against) the checkpoint file."""
        return {"zoo_name": self.name, "seed": self.seed, "config": self.config}


@dataclass(frozen=True)
class StudyOption:
    """A command-line option of a study: `--NAME VALUE` becomes the keyword argument NAME."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str


@dataclass(frozen=True)
class Study:
    """A named study: `run(**options)` computes files from zoo models, written to results/.

    `run` returns {file name: content}: a dict for a .json file (the zoo adds "command": the exact
    command that made it) or a dict of arrays for a .npz file.
    """

    name: str
    run: Callable[..., dict[str, dict]]
    options: tuple[StudyOption, ...] = field(default=())

    def command(self, values: dict[str, Any]) -> str:
        """The command line that runs this study with `values` (defaults omitted)."""
        words = ["python -m dgm_lib.zoo study", self.name]
        for option in self.options:
            if values.get(option.name, option.default) != option.default:
                words.append(f"--{option.name.replace('_', '-')} {values[option.name]}")
        return " ".join(words)


def _check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return scale


def _configs(scale: str) -> dict[str, Entry]:
    return _FULL if _check_scale(scale) == "full" else _REGISTRY


def _studies(scale: str) -> dict[str, Study]:
    return _FULL_STUDIES if _check_scale(scale) == "full" else _STUDIES


def register(entry: Entry, scale: str = "small") -> Entry:
    """Add `entry` to the registry of `scale`; registering a name again with an equal config
    replaces it.

    Re-running a notebook cell registers the same config again; a different config or budget under
    a registered name raises ValueError.
    """
    registry = _configs(scale)
    old = registry.get(entry.name)
    if old is not None and (old.file_config, old.max_bytes) != (entry.file_config, entry.max_bytes):
        raise ValueError(
            f"zoo config {entry.name!r} is already registered with a different config or max_bytes"
        )
    registry[entry.name] = entry
    return entry


def register_study(study: Study, scale: str = "small") -> Study:
    """Add `study` to the studies `python -m dgm_lib.zoo study NAME [--scale full]` can run."""
    _studies(scale)[study.name] = study
    return study


def _import_recipes() -> None:
    for module in CONFIG_MODULES:
        importlib.import_module(module)


def names(scale: str = "small") -> list[str]:
    """Sorted names of all registered configs of `scale` ("small": the shipped ones, or "full").

    Example:
        >>> "vae_mog" in names() and "ddpm_default" in names()
        True
    """
    _import_recipes()
    return sorted(_configs(scale))


def study_names(scale: str = "small") -> list[str]:
    """Sorted names of all registered studies of `scale`."""
    _import_recipes()
    return sorted(_studies(scale))


def entry(name: str, scale: str = "small") -> Entry:
    """The registered config `name` of `scale` (ValueError listing the registered ones if unknown).

    Example:
        >>> entry("maf_two_moons_8").file_config["config"]["depth"]
        8
    """
    _import_recipes()
    registry = _configs(scale)
    if name not in registry:
        registered = ", ".join(sorted(registry)) or "(none)"
        at = f" at scale {scale!r}" if scale != "small" else ""
        raise ValueError(f"unknown zoo config {name!r}{at}; registered: {registered}")
    return registry[name]


def zoo_name(*parts: str | int) -> str:
    """The name of a config from its parts, joined by "_": one naming rule for every topic.

    Example:
        >>> zoo_name("maf", "two_moons", 8)
        'maf_two_moons_8'
        >>> zoo_name("kl", "reverse", "u1")
        'kl_reverse_u1'
    """
    if not parts or not all(isinstance(p, (str, int)) and not isinstance(p, bool) for p in parts):
        raise TypeError(f"parts must be one or more str or int, got {parts!r}")
    return "_".join(str(p) for p in parts)


def checkpoint_dir() -> Path:
    """DGM_CHECKPOINT_DIR if set, else the package's checkpoints/ folder."""
    env = os.environ.get("DGM_CHECKPOINT_DIR")
    return Path(env) if env else Path(__file__).resolve().parent / "checkpoints"


def results_dir() -> Path:
    """The package's results/ folder: the shipped study files."""
    return Path(__file__).resolve().parent / "results"


def _folder(directory: str | os.PathLike | None, scale: str) -> Path:
    """The checkpoint folder of `scale`: `directory` (default checkpoint_dir()), full/ in it."""
    folder = Path(directory) if directory is not None else checkpoint_dir()
    return folder / "full" if _check_scale(scale) == "full" else folder


def checkpoint_path(
    name: str, directory: str | os.PathLike | None = None, scale: str = "small"
) -> Path:
    """Where the weights of config `name` live (full/NAME.pt at scale "full")."""
    return _folder(directory, scale) / f"{name}.pt"


def resume_path(
    name: str, directory: str | os.PathLike | None = None, scale: str = "small"
) -> Path:
    """Where a resumable recipe keeps the full training state of config `name` (resume/NAME.pt)."""
    return _folder(directory, scale) / "resume" / f"{name}.pt"


def _train(
    config: Entry, device: torch.device, directory: str | os.PathLike | None, scale: str = "small"
) -> tuple[nn.Module, dict]:
    """Seed, build and train on `device`, then restore the caller's RNG states.

    Returns the model and the state a checkpoint stores (CPU weights, history, evaluations).
    """
    caller_rng = get_rng_state()
    try:
        seed_everything(config.seed)
        model = config.build().to(device)
        if config.resumable:
            path = resume_path(config.name, directory, scale)
            history = config.train(model, checkpoint_path=path)
        else:
            history = config.train(model)
    finally:
        set_rng_state(caller_rng)
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history.terms if isinstance(history, History) else None,
    }
    if isinstance(history, History) and history.evaluations:
        state["evaluations"] = history.evaluations
    return model.eval(), state


def _usable_device(device: torch.device | str | None) -> torch.device:
    """`device` as a torch.device that exists on this machine (None: get_device()), else
    ValueError."""
    if device is None:
        return get_device()
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be a device such as 'cpu' or 'cuda', got {device!r}"
        ) from exc
    available = {
        "cuda": torch.cuda.is_available,
        "mps": lambda: torch.backends.mps.is_available(),
    }.get(device.type, lambda: True)
    if not available():
        raise ValueError(
            f"device={str(device)!r} but this machine has no {device.type} device; pass "
            "device='cpu' or leave it None (get_device() picks what exists)"
        )
    return device


def train(
    name: str,
    *,
    device: torch.device | str | None = None,
    directory: str | os.PathLike | None = None,
    scale: str = "small",
) -> Path:
    """Train config `name` of `scale` with its recipe and save its weights (CheckpointError if
    over budget); under torchrun every rank trains and rank 0 alone saves.

    Returns:
        The checkpoint path.
    """
    config = entry(name, scale)
    device = _usable_device(device)
    _, state = _train(config, device, directory, scale)
    path = checkpoint_path(name, directory, scale)
    if distributed.is_main():
        save_checkpoint(path, state, config.file_config, max_bytes=config.max_bytes)
    distributed.barrier()
    return path


def load(
    name: str,
    *,
    train_if_missing: bool = True,
    device: torch.device | str | None = None,
    directory: str | os.PathLike | None = None,
) -> nn.Module:
    """Config `name` in eval mode on `device` (default get_device()): shipped weights, else trained.

    Args:
        name: a registered config (see `names()`).
        train_if_missing: train with the recipe when the checkpoint is missing (else raise).
        device: where the model goes.
        directory: the checkpoint folder (default `checkpoint_dir()`).

    Returns:
        The model, in eval mode.
    """
    config = entry(name)
    device = _usable_device(device)
    path = checkpoint_path(name, directory)
    if not path.parent.is_dir():
        source = "directory=" if directory is not None else "DGM_CHECKPOINT_DIR"
        raise CheckpointError(
            f"checkpoint folder {path.parent} does not exist (from {source}); check the path "
            "for a typo, or create the folder to train into it"
        )
    if not path.exists():
        if not train_if_missing:
            raise CheckpointError(
                f"checkpoint {path}: file not found (run: python -m dgm_lib.zoo train {name})"
            )
        print(f"zoo: no weights for {name!r} at {path}; training it now with the registered recipe")
        model, state = _train(config, device, directory)
        try:
            save_checkpoint(path, state, config.file_config, max_bytes=config.max_bytes)
        except OSError as exc:
            warnings.warn(f"zoo: trained {name!r} but could not save {path}: {exc}", stacklevel=2)
        return model
    record = load_checkpoint(
        path, expected_config=config.file_config, map_location="cpu", require=("model",)
    )
    model = config.build()
    try:
        model.load_state_dict(record["state"]["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit the model built for {name!r}: {first}"
        ) from exc
    return model.to(device).eval()


def run_study(
    name: str, directory: str | os.PathLike | None = None, scale: str = "small", **options: Any
) -> dict[str, Path]:
    """Run study `name` of `scale` and write its files to `directory` (default results/); under
    torchrun rank 0 alone writes.

    Every .json file records "command": the command line that makes it again.

    Returns:
        {file name: path written}.
    """
    _import_recipes()
    studies = _studies(scale)
    if name not in studies:
        at = f" at scale {scale!r}" if scale != "small" else ""
        raise ValueError(f"unknown study {name!r}{at}; registered: {', '.join(sorted(studies))}")
    study = studies[name]
    values = {option.name: options.get(option.name, option.default) for option in study.options}
    unknown = sorted(set(options) - set(values))
    if unknown:
        raise ValueError(f"study {name!r} has no option(s) {unknown}; allowed: {sorted(values)}")
    folder = Path(directory) if directory is not None else results_dir()
    written = {}
    command = study.command(values) + (" --scale full" if scale == "full" else "")
    for file_name, content in study.run(**values).items():
        path = folder / file_name
        if not distributed.is_main():
            written[file_name] = path
        elif file_name.endswith(".json"):
            written[file_name] = save_json(path, {**content, "command": command})
        else:
            written[file_name] = save_npz(path, content)
    return written


def _list(directory: str | None) -> None:
    """Print every config (its checkpoint and budget) and every study (its files), both scales."""
    for scale in SCALES:
        flag = " --scale full" if scale == "full" else ""
        for name in names(scale):
            path = checkpoint_path(name, directory, scale)
            size = f"{path.stat().st_size:,} bytes" if path.exists() else "missing"
            print(f"{name}{flag}: {size} (budget {entry(name, scale).max_bytes:,}) {path}")
        for name in study_names(scale):
            print(
                f"study {name}: python -m dgm_lib.zoo study {name}{flag} "
                f"(writes to {results_dir()})"
            )


def _scale_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="small",
        help="small: the shipped recipes (default); full: the seeds' settings on all of MNIST",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dgm_lib.zoo", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list configs, studies and their files")
    listing.add_argument(
        "--dir", default=None, help="checkpoint directory (default: checkpoint_dir())"
    )
    train_cmd = commands.add_parser("train", help="train configs and save their checkpoints")
    train_cmd.add_argument("names", nargs="+", metavar="NAME")
    train_cmd.add_argument("--device", default=None, help="torch device (default: cuda, mps, cpu)")
    train_cmd.add_argument(
        "--dir", default=None, help="checkpoint directory (default: checkpoint_dir())"
    )
    _scale_option(train_cmd)
    study_cmd = commands.add_parser("study", help="run a study and write its result files")
    studies = study_cmd.add_subparsers(dest="study", required=True, metavar="NAME")
    for name in sorted(set(study_names()) | set(study_names("full"))):
        sub = studies.add_parser(name)
        sub.add_argument("--dir", default=None, help="output directory (default: results_dir())")
        _scale_option(sub)
        options = {
            o.name: o for scale in SCALES for o in getattr(_studies(scale).get(name), "options", ())
        }
        for option in options.values():
            flag = f"--{option.name.replace('_', '-')}"
            sub.add_argument(
                flag, dest=option.name, type=option.type, default=option.default, help=option.help
            )
    return parser


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Train or study as `args` say (in this process, one rank of torchrun's or the only one)."""
    say = print if distributed.is_main() else (lambda *a, **k: None)
    if args.command == "study":
        if args.study not in _studies(args.scale):
            parser.error(f"study {args.study!r} has no {args.scale} scale recipe")
        if args.scale == "small":
            torch.set_num_threads(1)
        options = {o.name: getattr(args, o.name) for o in _studies(args.scale)[args.study].options}
        for path in run_study(args.study, args.dir, args.scale, **options).values():
            say(f"{args.study}: wrote {path} ({path.stat().st_size:,} bytes)", flush=True)
        return
    unknown = [name for name in args.names if name not in names(args.scale)]
    if unknown:  # fail on a typo before training anything
        registered = ", ".join(names(args.scale)) or "(none)"
        at = f" at scale {args.scale!r}" if args.scale != "small" else ""
        parser.error(f"unknown zoo config(s) {', '.join(unknown)}{at}; registered: {registered}")
    device = args.device
    if distributed.launched_by_torchrun():
        device = distributed.init_from_env()
    for name in args.names:
        path = train(name, device=device, directory=args.dir, scale=args.scale)
        say(f"{name}: saved {path} ({path.stat().st_size:,} bytes)")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `list`, `train NAME [NAME ...] [--scale full]` and `study NAME [--scale full]
    [options]` (see the module doc); under torchrun, each rank runs it as one of the group."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        _list(args.dir)
        return 0
    if args.command == "study" and distributed.launched_by_torchrun():
        distributed.init_from_env()
    try:
        _run(args, parser)
    except DataUnavailableError as exc:
        raise SystemExit(f"zoo: {exc}") from None
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    from dgm_lib import zoo  # run on the imported module, where the recipes modules register

    raise SystemExit(zoo.main())
