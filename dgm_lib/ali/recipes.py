"""Zoo configs of chapter 08: ALI and ALICE on the toy of the ALICE paper, and the sweep study.

The reference code's recipe: 2,048 training points of the five-mode x, batches of 128, Adam(1e-3,
beta_1 = 0.5), networks of two hidden layers of 256 units, 2D noise; 100 epochs (1,600 steps).
`python -m dgm_lib.zoo train alice_toy_ali` (or _alice_explicit, _alice_implicit) retrains one;
`python -m dgm_lib.zoo study alice_sweep` reruns the hyper-parameter sweep.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial

import torch

from dgm_lib import zoo
from dgm_lib.ali.model import METHODS, SUPERVISED, JointMatching
from dgm_lib.ali.toy import mode_metrics, paired_codes, sample_x
from dgm_lib.training import FitOptions, History, ShuffledBatches, fit


@dataclass(frozen=True)
class ToyRecipe:
    """The training recipe of the toy models (the ALICE reference code's, in fit's terms)."""

    n_train: int = 2048
    batch_size: int = 128
    steps: int = 1600
    lr: float = 1e-3
    beta1: float = 0.5
    hidden: tuple[int, ...] = (256, 256)
    lam: float = 1.0
    data_seed: int = 0
    n_test: int = 1024
    test_seed: int = 1

    def config(self, method: str, lam: float) -> dict:
        """The config a checkpoint records."""
        return {**asdict(self), "hidden": list(self.hidden), "method": method, "lam": lam}


RECIPE = ToyRecipe()


def build(method: str, lam: float = RECIPE.lam, recipe: ToyRecipe = RECIPE) -> JointMatching:
    """The untrained model of `method` with the recipe's networks (and one pair per mode for the
    semi-supervised methods, toy.paired_codes)."""
    pairs = paired_codes() if method in SUPERVISED else None
    return JointMatching(2, 2, 2, method, lam, recipe.hidden, pairs)


def train(model: JointMatching, recipe: ToyRecipe = RECIPE, progress: bool = False) -> History:
    """Adam(lr, (beta1, 0.999)) for recipe.steps steps of shuffled batches of training points."""
    generator = torch.Generator().manual_seed(recipe.data_seed)
    x, _ = sample_x(recipe.n_train, generator)
    data = ShuffledBatches(x, recipe.batch_size, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=(recipe.beta1, 0.999))
    return fit(model, optimizer, data, FitOptions(recipe.steps, progress=progress),
               generator=generator)  # fmt: skip


@torch.no_grad()
def outputs(model: JointMatching, recipe: ToyRecipe = RECIPE) -> dict[str, torch.Tensor]:
    """recipe.n_test fresh test points x with their labels, their codes z~ and reconstructions x^,
    and as many samples x~ (all seeded)."""
    generator = torch.Generator().manual_seed(recipe.test_seed)
    x, labels = sample_x(recipe.n_test, generator)
    torch.manual_seed(recipe.test_seed)  # the noise eps, zeta of the samplers
    codes = model.encoder(x)
    return {"x": x, "labels": labels, "codes": codes, "reconstructions": model.decoder(codes),
            "samples": model.sample(recipe.n_test, generator)}  # fmt: skip


def evaluate(model: JointMatching, recipe: ToyRecipe = RECIPE) -> dict[str, float]:
    """toy.mode_metrics of the model's `outputs`; for a semi-supervised model also "code_placed",
    the share of test codes z~ nearest to the paired code of their mode (chance: 1/5)."""
    out = outputs(model, recipe)
    metrics = mode_metrics(out["x"], out["labels"], out["reconstructions"], out["samples"])
    if model.method in SUPERVISED:
        placed = torch.cdist(out["codes"], paired_codes()[1]).argmin(1) == out["labels"]
        metrics["code_placed"] = float(placed.double().mean())
    return metrics


for _method in METHODS:
    zoo.register(
        zoo.Entry(
            f"alice_toy_{_method}",
            build=partial(build, _method),
            train=train,
            config=RECIPE.config(_method, RECIPE.lam),
            max_bytes=1_500_000,
        )
    )


def sweep(seeds: int = 4, lams: str = "0.1,1,10") -> dict:
    """Every method x lambda x seed trained by the recipe and scored by `evaluate`.

    Returns {"alice_sweep.json": {"runs": [{method, lam, seed, metrics..., seconds}]},
    "alice_sweep.npz": codes, reconstructions and samples of the first 256 test points per run
    ("METHOD_LAM_SEED_codes", ...), with "x" and "labels"}.
    """
    runs, arrays = [], {}
    for method in METHODS:
        for lam in [float(v) for v in lams.split(",")] if method != "ali" else [0.0]:
            for seed in range(seeds):
                torch.manual_seed(seed)
                model = build(method, lam)
                start = time.perf_counter()
                train(model, ToyRecipe(data_seed=seed))
                out = outputs(model)
                metrics = mode_metrics(out["x"], out["labels"], out["reconstructions"],
                                       out["samples"])  # fmt: skip
                runs.append({"method": method, "lam": lam, "seed": seed, **metrics,
                             "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
                for key in ("codes", "reconstructions", "samples"):
                    arrays[f"{method}_{lam:g}_{seed}_{key}"] = out[key][:256].numpy()
    arrays.update(x=out["x"][:256].numpy(), labels=out["labels"][:256].numpy())
    return {"alice_sweep.json": {"recipe": asdict(RECIPE), "runs": runs}, "alice_sweep.npz": arrays}


zoo.register_study(
    zoo.Study(
        "alice_sweep",
        run=sweep,
        options=(
            zoo.StudyOption("seeds", int, 4, "seeds per method and lambda"),
            zoo.StudyOption("lams", str, "0.1,1,10", "comma-separated lambdas of ALICE"),
        ),
    )
)
