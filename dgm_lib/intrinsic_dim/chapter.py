"""Chapter 06 "Intrinsic dimension".

The lecture's toy problem, and the d sweeps of MNIST classifiers.

The toy problem J(theta) = sum_r (1 - sum of group r of theta)^2 on D = 1000 parameters has d_int =
10 (ten linear constraints). The sweeps are studies of dgm_lib.intrinsic_dim.recipes, shipped as
results/intrinsic_dim_NAME.json; `load_sweep` reads them.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from dgm_lib import distributed, zoo
from dgm_lib.intrinsic_dim.classifiers import (
    MODELS,
    ClassifierTraining,
    direct_accuracy,
    num_parameters,
    subspace_accuracy,
)
from dgm_lib.intrinsic_dim.dimension import IntrinsicDimResult, measure_intrinsic_dimension

TOY_GROUPS = 10  # the lecture's toy problem: 10 groups of 100 parameters, D = 1000
TOY_GROUP_SIZE = 100
DATA = {  # what a sweep's record says of its digits, by ClassifierTraining.source
    "subset": "load_mnist(): 4000 train / 1000 test digits (subset)",
    "torchvision": "full_mnist(): 60000 train / 10000 test digits (torchvision MNIST)",
}


def _log(line: str) -> None:
    if distributed.is_main():  # under torchrun, one rank reports
        print(line, flush=True)


def toy_objective(theta: Tensor) -> Tensor:
    """The lecture's toy problem J(theta) = sum_r (1 - sum of group r)^2.

    The lecture's toy problem J(theta) = sum_{r=1}^{10} (1 - sum_{i=100r-99}^{100r} theta_i)^2,
    theta (..., 1000).

    Ten linear constraints on 1000 parameters: the solution set has dimension 990, so d_int = 10 (Li
    et al. 2018).
    """
    size = TOY_GROUPS * TOY_GROUP_SIZE
    if not isinstance(theta, Tensor) or not theta.is_floating_point():
        raise TypeError(f"theta must be a floating-point tensor, got {type(theta).__name__}")
    if theta.dim() == 0 or theta.shape[-1] != size:
        raise ValueError(f"theta must have shape (..., {size}), got {tuple(theta.shape)}")
    sums = theta.unflatten(-1, (TOY_GROUPS, TOY_GROUP_SIZE)).sum(-1)
    return (1 - sums).pow(2).sum(-1)


def toy_subspace_optimum(theta_0: Tensor, P: Tensor) -> tuple[Tensor, float]:
    """The minimum of the toy objective over a subspace, by least squares.

    argmin over theta_d of the toy objective J(theta_0 + P theta_d) and its minimum J_min, by least
    squares.

    J(theta_0 + P theta_d) = ||b - A P theta_d||^2 with A the 10 x 1000 group-sum matrix and b = 1 -
    A theta_0, so theta_d* is the minimum-norm least-squares solution and J_min = ||(I - Pi) b||^2,
    Pi the projection onto the columns of A P (Li et al. 2018, toy problem; the chapter's theorem
    thm-toy-dint). theta_0 (1000,), P (1000, d).
    """
    size, groups = TOY_GROUPS * TOY_GROUP_SIZE, (TOY_GROUPS, TOY_GROUP_SIZE)
    if theta_0.shape != (size,) or P.dim() != 2 or P.shape[0] != size:
        raise ValueError(
            f"theta_0 must have shape ({size},) and P ({size}, d), got {tuple(theta_0.shape)} and "
            f"{tuple(P.shape)}"
        )
    AP = P.unflatten(0, groups).sum(1)
    b = 1 - theta_0.unflatten(0, groups).sum(1)
    theta_d = torch.linalg.pinv(AP) @ b
    return theta_d, float((b - AP @ theta_d).square().sum())


class ToyProblem(nn.Module):
    """The toy objective as a module.

    1000 native parameters theta ~ N(0, I) (random init), forward() = J(theta).
    """

    def __init__(self, generator: torch.Generator | None = None):
        super().__init__()
        size = TOY_GROUPS * TOY_GROUP_SIZE
        self.theta = nn.Parameter(
            torch.randn(size, generator=generator, dtype=torch.get_default_dtype())
        )

    def forward(self) -> Tensor:
        return toy_objective(self.theta)


def run_sweep(
    name: str,
    models: dict[str, tuple[str, dict]],
    dims: Sequence[int],
    projection: str,
    training: ClassifierTraining,
) -> dict:
    """A d sweep: per architecture, the direct baseline and the subspace accuracy at every d.

    Args:
        name: the sweep's name (recorded).
        models: key -> (a model name of classifiers.MODELS, its keyword arguments).
        dims: the increasing grid of d.
        projection: the projection of subspace training.
        training: the budget of every run (baseline and subspace).

    Returns:
        The JSON record: settings, D of every model, wall time, torch version and the results
        (IntrinsicDimResult.to_dict() per model).
    """
    start = time.perf_counter()
    results, sizes = {}, {}
    for key, (model_name, kwargs) in models.items():
        make = partial(MODELS[model_name], **kwargs)
        sizes[key] = num_parameters(make())
        t0 = time.perf_counter()
        baseline = direct_accuracy(make, training)
        seconds = time.perf_counter() - t0
        _log(f"{name} {key} (D = {sizes[key]:,}): direct baseline {baseline:.4f} ({seconds:.1f} s)")

        def score(d: int) -> float:
            t = time.perf_counter()
            acc = subspace_accuracy(make, d, training, projection)
            _log(f"{name} {key} d = {d}: test accuracy {acc:.4f} ({time.perf_counter() - t:.1f} s)")
            return acc

        results[key] = measure_intrinsic_dimension(score, dims, baseline, baseline_kind="direct")
        _log(
            f"{name} {key}: d_int90 = {results[key].d_int90} (threshold "
            f"{results[key].threshold:.4f})"
        )
    return {
        "name": name,
        "data": DATA[training.source],
        "models": {key: [m, kwargs] for key, (m, kwargs) in models.items()},
        "D": sizes,
        "dims": list(dims),
        "projection": projection,
        "epochs": training.epochs,
        "batch_size": training.batch_size,
        "lr_direct": training.lr,
        "lr_subspace": training.subspace_lr,
        "optimizer": "Adam",
        "seed": training.seed,
        "threads": torch.get_num_threads(),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "torch_version": torch.__version__,
        "results": {key: result.to_dict() for key, result in results.items()},
    }


def sweep_record(name: str, directory: str | os.PathLike | None = None) -> dict:
    """The shipped JSON record of sweep `name` (settings, D, wall time, torch version, results).

    Args:
        name: "fc", "lenet" or "fc_family".
        directory: where the study wrote it (default: the package's results/).
    """
    folder = Path(directory) if directory is not None else zoo.results_dir()
    path = folder / f"intrinsic_dim_{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; run: python -m dgm_lib.zoo study intrinsic_dim_{name}"
        )
    return json.loads(path.read_text())


def load_sweep(
    name: str, directory: str | os.PathLike | None = None
) -> IntrinsicDimResult | dict[str, IntrinsicDimResult]:
    """The shipped sweep `name`.

    An IntrinsicDimResult for one model ("fc", "lenet"), else a dict key -> result ("fc_family").
    """
    record = sweep_record(name, directory)
    results = {key: IntrinsicDimResult.from_dict(r) for key, r in record["results"].items()}
    return results if len(record["models"]) > 1 else next(iter(results.values()))
