"""MNIST classifiers, their direct and subspace training, and the precomputed d sweeps of chapter "Intrinsic dimension".

Models of Li, Farkhoor, Liu, Yosinski (ICLR 2018): the fully connected 784-200-200-10 network (D = 199,210) and
LeNet (D = 44,426), trained on the 4,000 / 1,000 digit subset of load_mnist(). A sweep trains one subspace model
per d and the directly trained baseline with the same budget, and ships as small JSON package data:
`python -m dgm_lib.intrinsic_dim_models sweep NAME` writes dgm_lib/data/intrinsic_dim_NAME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import BatchSampler, RandomSampler

from dgm_lib.core import check_positive_int
from dgm_lib.data import load_mnist
from dgm_lib.training import ShuffledBatches
from dgm_lib.intrinsic_dim import IntrinsicDimResult, SubspaceModule, measure_intrinsic_dimension
from dgm_lib.nets import mlp
from dgm_lib.training import fit

DATA_DIR = Path(__file__).resolve().parent / "data"
PIXELS, CLASSES = 28 * 28, 10

# The recipe shared by every sweep and its baseline (calibrated on one CPU thread: at 30 epochs the direct FC
# and LeNet baselines are within 0.2 / 1 point of 100 epochs; Adam on theta_d did best at 0.03 among 0.003-0.1).
EPOCHS = 30
BATCH_SIZE = 128
LR = 1e-3  # Adam, direct training of all D parameters (the reference code's setting)
SUBSPACE_LR = 3e-2  # Adam on theta_d
SEED = 0


def fc_net(width: int = 200, depth: int = 2) -> nn.Sequential:
    """Fully connected ReLU classifier 784 -> width (x depth) -> 10; the default 784-200-200-10 has D = 199,210."""
    check_positive_int(width, "width")
    check_positive_int(depth, "depth")
    return nn.Sequential(nn.Flatten(), mlp([PIXELS, *[width] * depth, CLASSES]))


def lenet() -> nn.Sequential:
    """LeNet-5 style CNN for 1 x 28 x 28 digits: conv 6@5x5, pool, conv 16@5x5, pool, 120, 84, 10 (D = 44,426).

    The LeNet of Li et al. (2018) on MNIST (valid convolutions, max pooling, ReLU).
    """
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), mlp([16 * 4 * 4, 120, 84, CLASSES]),
    )


MODELS: dict[str, Callable[..., nn.Module]] = {"fc": fc_net, "lenet": lenet}


def num_parameters(model: nn.Module) -> int:
    """D: the number of native parameters of `model`."""
    return sum(p.numel() for p in model.parameters())


def _check_data(images: Tensor, labels: Tensor) -> None:
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.dim() < 2:
        raise TypeError(f"images must be a floating-point tensor (N, ...), got {getattr(images, 'shape', images)!r}")
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        got = getattr(labels, "shape", labels)
        raise ValueError(f"labels must be an int64 tensor of shape ({len(images)},), got {got}")


def _first_parameter(model: nn.Module) -> Tensor:
    """The tensor whose device and dtype the data must follow."""
    return next(model.parameters())


def train_classifier(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Minimise the mean cross-entropy of `model` on data = (images, labels) with Adam for `epochs` epochs.

    Minibatches are reshuffled every epoch with `generator`; works for a plain model (all D parameters) and a
    SubspaceModule (theta_d only); the data follow the model's device and dtype. Returns the model, trained in
    place (fit raises on a non-finite loss).
    """
    images, labels = data
    _check_data(images, labels)
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    like = _first_parameter(model)
    images, labels = images.to(like), labels.to(like.device)
    batches = BatchSampler(RandomSampler(range(len(labels)), generator=generator), batch_size, drop_last=False)

    def loss_fn(net: nn.Module, index: list[int]) -> dict[str, Tensor]:
        return {"loss": F.cross_entropy(net(images[index]), labels[index])}

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    fit(model, optimizer, batches, steps=epochs * len(batches), loss_fn=loss_fn, generator=generator, progress=False)
    return model


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Fraction of `images` whose arg-max class under `model` (in eval mode) equals the label.

    The images follow the device and dtype of the model's parameters.
    """
    _check_data(images, labels)
    was_training = model.training
    model.eval()
    like = _first_parameter(model)
    try:
        correct = sum(
            int((model(x.to(like)).argmax(-1) == y.to(like.device)).sum())
            for x, y in zip(images.split(batch_size), labels.split(batch_size))
        )
    finally:
        model.train(was_training)
    return correct / len(labels)


def _build(make_model: Callable[[], nn.Module], seed: int, device: torch.device | str | None) -> nn.Module:
    """make_model() with torch's global RNG seeded by `seed` (the caller's RNG state is restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model()
    return model.to(device) if device is not None else model


def direct_accuracy(
    make_model: Callable[[], nn.Module],
    epochs: int = EPOCHS,
    *,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    seed: int = SEED,
    device: torch.device | str | None = None,
) -> float:
    """The baseline: test accuracy of make_model() with all D parameters trained on load_mnist("train")."""
    model = _build(make_model, seed, device)
    train_classifier(model, load_mnist("train"), epochs, lr, batch_size, torch.Generator().manual_seed(seed))
    return accuracy(model, *load_mnist("test"))


def subspace_accuracy(
    make_model: Callable[[], nn.Module],
    d: int,
    projection: str = "fastfood",
    epochs: int = EPOCHS,
    *,
    lr: float = SUBSPACE_LR,
    batch_size: int = BATCH_SIZE,
    seed: int = SEED,
    device: torch.device | str | None = None,
) -> float:
    """Test accuracy of make_model() trained in a random d-dimensional subspace on load_mnist("train").

    theta^(D) = theta_0 + P theta^(d): theta_0 the model's initialisation under `seed`, P drawn with `seed`,
    only theta^(d) trained (Adam, from 0). Li et al. (2018), Sec. 2.
    """
    model = SubspaceModule(_build(make_model, seed, device), d, projection, seed)
    train_classifier(model, load_mnist("train"), epochs, lr, batch_size, torch.Generator().manual_seed(seed))
    return accuracy(model, *load_mnist("test"))


# name -> the architectures swept (key -> (model name, kwargs)), the d grid and the projection.
SWEEPS: dict[str, dict] = {
    "fc": {
        "models": {"fc": ("fc", {})},
        "dims": [50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1250, 1500, 2000],
        "projection": "fastfood",
    },
    "lenet": {
        "models": {"lenet": ("lenet", {})},
        "dims": [25, 50, 75, 100, 150, 200, 250, 300, 350, 400, 500, 750, 1000],
        "projection": "fastfood",
    },
    "fc_family": {
        "models": {
            f"width{w}_depth{k}": ("fc", {"width": w, "depth": k}) for w in (50, 100, 200) for k in (1, 2, 3)
        },
        "dims": [300, 450, 600, 750, 1000],
        "projection": "fastfood",
    },
}


def sweep_path(name: str) -> Path:
    """Where the shipped results of sweep `name` live: dgm_lib/data/intrinsic_dim_NAME.json."""
    if name not in SWEEPS:
        raise ValueError(f"sweep must be one of {tuple(SWEEPS)}, got {name!r}")
    return DATA_DIR / f"intrinsic_dim_{name}.json"


def run_sweep(name: str, log: Callable[[str], None] = print) -> dict:
    """Run sweep `name`: per architecture, the direct baseline and subspace accuracy at every d; the JSON record."""
    if name not in SWEEPS:
        raise ValueError(f"sweep must be one of {tuple(SWEEPS)}, got {name!r}")
    spec = SWEEPS[name]
    start = time.perf_counter()
    results, sizes = {}, {}
    for key, (model_name, kwargs) in spec["models"].items():
        make = partial(MODELS[model_name], **kwargs)
        sizes[key] = num_parameters(make())
        t0 = time.perf_counter()
        baseline = direct_accuracy(make)
        log(f"{name} {key} (D = {sizes[key]:,}): direct baseline {baseline:.4f} ({time.perf_counter() - t0:.1f} s)")

        def score(d: int) -> float:
            t = time.perf_counter()
            acc = subspace_accuracy(make, d, spec["projection"])
            log(f"{name} {key} d = {d}: test accuracy {acc:.4f} ({time.perf_counter() - t:.1f} s)")
            return acc

        results[key] = measure_intrinsic_dimension(score, spec["dims"], baseline, baseline_kind="direct")
        log(f"{name} {key}: d_int90 = {results[key].d_int90} (threshold {results[key].threshold:.4f})")
    return {
        "name": name,
        "command": f"python -m dgm_lib.intrinsic_dim_models sweep {name}",
        "data": "load_mnist(): 4000 train / 1000 test digits (subset)",
        "models": {key: [m, kwargs] for key, (m, kwargs) in spec["models"].items()},
        "D": sizes,
        "dims": spec["dims"],
        "projection": spec["projection"],
        "epochs": EPOCHS,
        "batch_size": BATCH_SIZE,
        "lr_direct": LR,
        "lr_subspace": SUBSPACE_LR,
        "optimizer": "Adam",
        "seed": SEED,
        "threads": torch.get_num_threads(),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "torch_version": torch.__version__,
        "results": {key: result.to_dict() for key, result in results.items()},
    }


def _write_json(path: Path, record: dict) -> None:
    """Write `record` to `path` atomically (temp file + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sweep_record(name: str) -> dict:
    """The shipped JSON record of sweep `name` (settings, D, wall time, torch version and results)."""
    path = sweep_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run: python -m dgm_lib.intrinsic_dim_models sweep {name}")
    return json.loads(path.read_text())


def load_sweep(name: str) -> IntrinsicDimResult | dict[str, IntrinsicDimResult]:
    """The shipped sweep `name`: an IntrinsicDimResult ("fc", "lenet"), or a dict key -> result ("fc_family")."""
    results = {key: IntrinsicDimResult.from_dict(r) for key, r in sweep_record(name)["results"].items()}
    return results if len(SWEEPS[name]["models"]) > 1 else next(iter(results.values()))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `python -m dgm_lib.intrinsic_dim_models sweep NAME [--out PATH]` (one CPU thread)."""
    parser = argparse.ArgumentParser(prog="python -m dgm_lib.intrinsic_dim_models", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="run a d sweep and write its JSON")
    sweep.add_argument("name", choices=tuple(SWEEPS))
    sweep.add_argument("--out", default=None, help="output file (default: the package's data/intrinsic_dim_NAME.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    record = run_sweep(args.name, log=lambda line: print(line, flush=True))
    path = Path(args.out) if args.out else sweep_path(args.name)
    _write_json(path, record)
    print(f"{args.name}: wrote {path} ({record['wall_time_s']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
