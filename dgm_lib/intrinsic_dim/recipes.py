"""Studies of chapter 06 "Intrinsic dimension": the shipped d sweeps of MNIST classifiers.

A sweep trains, per architecture, the directly trained baseline and one subspace model per d with
the same budget (RECIPE), and ships its accuracies as results/intrinsic_dim_NAME.json:
`python -m dgm_lib.zoo study intrinsic_dim_fc` (also intrinsic_dim_lenet, intrinsic_dim_fc_family).
At full scale (`python -m dgm_lib.zoo study intrinsic_dim_fc --scale full`, also lenet) the FC and
LeNet sweeps train on all 60,000 digits and are scored on the 10,000 test digits (FULL_RECIPE),
where the lecture reports d_int90 = 750 (FC) and 290 (LeNet); they write
results/intrinsic_dim_NAME_full.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from dgm_lib import zoo
from dgm_lib.intrinsic_dim.chapter import run_sweep
from dgm_lib.intrinsic_dim.classifiers import ClassifierTraining

# The recipe shared by every sweep and its baseline (calibrated on one CPU thread: at 30 epochs the
# direct FC and LeNet baselines are within 0.2 / 1 point of 100 epochs; Adam on theta_d did best
# at 0.03 among 0.003-0.1; lr 1e-3 for direct training is the reference code's setting).
RECIPE = ClassifierTraining(epochs=30, batch_size=128, lr=1e-3, subspace_lr=3e-2, seed=0)
# Full MNIST: 10 epochs of 469 steps (4,690 steps a run, five times the 940 of RECIPE's 30 epochs of
# the subset), the same learning rates.
FULL_RECIPE = ClassifierTraining(
    epochs=10, batch_size=128, lr=1e-3, subspace_lr=3e-2, seed=0, source="torchvision"
)


@dataclass(frozen=True)
class Sweep:
    """A d sweep: the architectures, the grid of d and the projection.

    The architectures swept (key -> (model name of classifiers.MODELS, kwargs)), the grid of d and
    the projection.
    """

    models: dict[str, tuple[str, dict]]
    dims: tuple[int, ...]
    projection: str = "fastfood"


SWEEPS: dict[str, Sweep] = {
    "fc": Sweep(
        {"fc": ("fc", {})},
        (50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1250, 1500, 2000),
    ),
    "lenet": Sweep(
        {"lenet": ("lenet", {})}, (25, 50, 75, 100, 150, 200, 250, 300, 350, 400, 500, 750, 1000)
    ),
    "fc_family": Sweep(
        {
            f"width{w}_depth{k}": ("fc", {"width": w, "depth": k})
            for w in (50, 100, 200)
            for k in (1, 2, 3)
        },
        (300, 450, 600, 750, 1000),
    ),
}


def study(name: str) -> dict[str, dict]:
    """Run sweep `name` by RECIPE: {"intrinsic_dim_NAME.json": its record}."""
    sweep = SWEEPS[name]
    record = run_sweep(name, sweep.models, sweep.dims, sweep.projection, RECIPE)
    return {f"intrinsic_dim_{name}.json": record}


def study_full(name: str) -> dict[str, dict]:
    """Run sweep `name` by FULL_RECIPE on full MNIST: {"intrinsic_dim_NAME_full.json": record}."""
    sweep = SWEEPS[name]
    record = run_sweep(name, sweep.models, sweep.dims, sweep.projection, FULL_RECIPE)
    return {f"intrinsic_dim_{name}_full.json": record}


for _name in SWEEPS:
    zoo.register_study(zoo.Study(f"intrinsic_dim_{_name}", run=partial(study, _name)))
for _name in ("fc", "lenet"):
    zoo.register_study(
        zoo.Study(f"intrinsic_dim_{_name}", run=partial(study_full, _name)), scale="full"
    )
