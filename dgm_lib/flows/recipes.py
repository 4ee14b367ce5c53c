"""Zoo configs of the flow chapters.

2D flows fitted by forward KL (chapter 01) and by reverse KL (02).

Chapter 01 "Change of variables": RealNVP and MAF fitted by forward KL (MLE) to the normalized 2D
targets of dgm_lib.data.toy2d, one config per flow, target and depth, named e.g. "maf_two_moons_8"
(2 x 4 x 3 = 24 small checkpoints). Every step draws a fresh batch from the target.

Chapter 02 "KL duality": RealNVPs named "kl_<direction>_<target>": reverse KL by LOTUS for the
energies u1-u4 and banana (confined to the box, toy2d.ConfinedEnergy), which needs only base samples
z ~ p(z), g, log|det J_g| and log pi(x) up to its constant (Rezende & Mohamed, ICML 2015, Fig. 3);
forward and reverse KL for the normalized multimodal targets: mode covering vs mode seeking.

Chapter 01 also ships planar flows (Rezende & Mohamed, ICML 2015) named "planar_<energy>_<K>",
fitted by the same reverse KL to the energies u1 and u2 with K = 2, 8, 32 layers (their Fig. 3):
a planar flow has an explicit g but no analytic f, which is what the reverse KL needs.

Regenerate one with `python -m dgm_lib.zoo train realnvp_rings_8`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from dgm_lib import zoo
from dgm_lib.data.toy2d import ENERGIES, WALL, TargetBatches, get_target, get_target_for_fit
from dgm_lib.flows.base import Flow
from dgm_lib.flows.builders import make_maf, make_planar, make_realnvp
from dgm_lib.training import FitOptions, History, adam_cosine, fit

CHECKPOINT_BYTES = 200_000  # the size budget of every 2D flow checkpoint

# Chapter 01: the grid of density fits.
FLOWS: tuple[str, ...] = ("realnvp", "maf")
TARGETS: tuple[str, ...] = ("two_moons", "eight_gaussians", "rings", "checkerboard")
DEPTHS: tuple[int, ...] = (2, 4, 8)

# Chapter 01: planar flows fitted by reverse KL to energies.
PLANAR_TARGETS: tuple[str, ...] = ("u1", "u2")
PLANAR_DEPTHS: tuple[int, ...] = (2, 8, 32)

# Chapter 02: the KL fits.
DIRECTIONS: tuple[str, ...] = ("forward", "reverse")
MULTIMODAL: tuple[str, ...] = ("eight_gaussians", "two_moons")


@dataclass(frozen=True)
class DensityRecipe:
    """Forward KL on fresh batches x ~ pi: Adam with cosine decay, grad-norm clipping."""

    realnvp_hidden: tuple[int, ...] = (64, 64)
    maf_hidden: tuple[int, ...] = (48, 48)  # MAF stores its masks too: both fit the budget at K = 8
    steps: int = 16_000
    batch_size: int = 512
    lr: float = 2e-3
    grad_clip: float = 10.0
    data_seed: int = 1

    def hidden(self, flow: str) -> tuple[int, ...]:
        """The hidden sizes of `flow`'s conditioners."""
        return self.realnvp_hidden if flow == "realnvp" else self.maf_hidden

    def config(self, flow: str, target: str, depth: int) -> dict:
        """The config the checkpoint of (flow, target, depth) records."""
        return {
            "flow": flow, "target": target, "depth": depth, "hidden": list(self.hidden(flow)),
            "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "schedule": "cosine",
            "grad_clip": self.grad_clip, "data_seed": self.data_seed,
        }  # fmt: skip


@dataclass(frozen=True)
class FlowSize:
    """A RealNVP on R^2: `depth` couplings with MLP conditioners of `hidden` sizes."""

    depth: int
    hidden: tuple[int, ...]
    bound: float = 5.0


@dataclass(frozen=True)
class KLRecipe:
    """The KL fits: the flow sizes, the training budget and the annealing.

    The KL fits: a flexible flow for the energies, a small one for the multimodal targets (it cannot
    represent pi exactly, so forward and reverse KL must compromise, and differently).
    """

    energy_flow: FlowSize = FlowSize(8, (64, 64))
    multimodal_flow: FlowSize = FlowSize(4, (32, 32))
    steps: int = 6000
    batch_size: int = 256
    lr: float = 1e-3
    anneal_steps: int = 2000  # the energies anneal beta from beta_0 to 1 over these steps
    beta_0: float = 0.05
    data_seed: int = 0

    def size(self, target: str) -> FlowSize:
        """The flow size used for `target`."""
        return self.energy_flow if target in ENERGIES else self.multimodal_flow

    def annealing(self, target: str) -> tuple[int, float]:
        """(anneal steps, beta_0) for `target`; (0, 1.0), no annealing, if normalized."""
        return (self.anneal_steps, self.beta_0) if target in ENERGIES else (0, 1.0)

    def config(self, direction: str, target: str) -> dict:
        """The config the checkpoint of the `direction` KL fit of `target` records."""
        size = self.size(target)
        flow = {"depth": size.depth, "hidden": list(size.hidden), "bound": size.bound}
        training = {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr}
        config = {"target": target, "direction": direction, "flow": flow, "training": training}
        if direction == "reverse":
            config["annealing"] = list(self.annealing(target))
            config["wall"] = WALL if target in ENERGIES else None
        return config


@dataclass(frozen=True)
class PlanarRecipe:
    """Reverse KL of planar flows on the confined energies, annealed as the chapter-02 fits."""

    steps: int = 6000
    batch_size: int = 256
    lr: float = 1e-3
    anneal_steps: int = 2000  # beta goes from beta_0 to 1 over these steps
    beta_0: float = 0.05

    def config(self, target: str, depth: int) -> dict:
        """The config the checkpoint of the planar fit of `target` with `depth` layers records."""
        return {
            "flow": "planar", "target": target, "depth": depth, "direction": "reverse",
            "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
            "schedule": "cosine", "annealing": [self.anneal_steps, self.beta_0], "wall": WALL,
        }  # fmt: skip


DENSITY = DensityRecipe()
KL = KLRecipe()
PLANAR = PlanarRecipe()


def build_density_flow(flow: str, depth: int) -> Flow:
    """The untrained flow of the density fits: make_realnvp or make_maf on R^2."""
    make = make_realnvp if flow == "realnvp" else make_maf
    return make(m=2, depth=depth, hidden=DENSITY.hidden(flow))


def train_density(model: Flow, target: str) -> None:
    """Forward KL (model(x)["loss"] = -mean log p(x|theta)) by DENSITY; no history is stored."""
    generator = torch.Generator().manual_seed(DENSITY.data_seed)
    optimizer, scheduler = adam_cosine(model, DENSITY.lr, DENSITY.steps)
    data = TargetBatches(get_target(target), DENSITY.batch_size, 100, generator)
    options = FitOptions(steps=DENSITY.steps, grad_clip=DENSITY.grad_clip, progress=False)
    fit(model, optimizer, data, options, scheduler=scheduler, generator=generator)


def available_fits() -> dict[str, tuple[str, ...]]:
    """For every target of chapter 02, the KL directions it has a config for.

    For every target of chapter 02, the KL directions it has a config for (forward needs samples).
    """
    fits = {target: ("reverse",) for target in ENERGIES}
    fits.update({target: DIRECTIONS for target in MULTIMODAL})
    return fits


def build_flow(target: str) -> Flow:
    """The untrained flow of the KL fits of `target`: RealNVP on R^2 of size KL.size(target)."""
    size = KL.size(target)
    return make_realnvp(m=2, depth=size.depth, hidden=size.hidden, bound=size.bound)


def annealing(steps: int, anneal_steps: int, beta_0: float) -> list[float]:
    """beta_t = min(1, beta_0 + (1 - beta_0) t / anneal_steps), t = 0..steps-1 (all 1 if 0 steps).

    Example:
        >>> annealing(4, 2, 0.5)
        [0.5, 0.75, 1.0, 1.0]
    """
    if anneal_steps == 0:
        return [1.0] * steps
    return [min(1.0, beta_0 + (1.0 - beta_0) * t / anneal_steps) for t in range(steps)]


def train_forward(flow: Flow, target: str) -> History:
    """Forward KL = MLE: minimize -(1/n) sum log p(x_i|theta) over fresh batches x_i ~ pi."""
    generator = torch.Generator().manual_seed(KL.data_seed)
    data = TargetBatches(get_target(target), KL.batch_size, 100, generator)
    optimizer, scheduler = adam_cosine(flow, KL.lr, KL.steps)
    return fit(
        flow, optimizer, data, FitOptions(steps=KL.steps), scheduler=scheduler, generator=generator
    )


def fit_reverse_kl(
    flow: Flow, target: str, betas: list[float], batch_size: int, lr: float
) -> History:
    """Reverse KL by LOTUS: minimize E_{p(z)}[log p(z) - log|det J_g(z)| - beta_t log pi(g(z))].

    One step per beta_t of `betas` (Adam with cosine decay from `lr`, `batch_size` base samples z
    a step); pi is get_target_for_fit(target). The history's "reverse_kl" term is the beta = 1
    loss.
    """
    log_target = get_target_for_fit(target).log_prob
    steps = len(betas)
    optimizer, scheduler = adam_cosine(flow, lr, steps)

    def loss_fn(model: Flow, beta: float) -> dict[str, Tensor]:
        x, log_p = model.sample_with_log_prob(batch_size)
        log_pi = log_target(x)
        return {
            "loss": (log_p - beta * log_pi).mean(),
            "reverse_kl": (log_p - log_pi).mean().detach(),
        }

    return fit(
        flow, optimizer, betas, FitOptions(steps=steps, loss_fn=loss_fn), scheduler=scheduler
    )


def train_reverse(flow: Flow, target: str) -> History:
    """Reverse KL by LOTUS (fit_reverse_kl) with the KL recipe.

    The energies anneal the inverse temperature beta_t from beta_0 to 1 (Rezende & Mohamed 2015),
    letting the flow spread before the energy barriers set in; the multimodal targets use the
    plain objective (beta_t = 1), whose mode seeking the chapter studies.
    """
    betas = annealing(KL.steps, *KL.annealing(target))
    return fit_reverse_kl(flow, target, betas, KL.batch_size, KL.lr)


def train_planar(flow: Flow, target: str) -> None:
    """Reverse KL (fit_reverse_kl) of a planar flow to the energy `target`, by PLANAR.

    The checkpoint stores the weights only.
    """
    betas = annealing(PLANAR.steps, PLANAR.anneal_steps, PLANAR.beta_0)
    fit_reverse_kl(flow, target, betas, PLANAR.batch_size, PLANAR.lr)


def train_kl(flow: Flow, direction: str, target: str) -> None:
    """Train the `direction` KL fit of `target`; the checkpoint stores the weights only."""
    (train_forward if direction == "forward" else train_reverse)(flow, target)


for _flow in FLOWS:
    for _target in TARGETS:
        for _depth in DEPTHS:
            zoo.register(
                zoo.Entry(
                    zoo.zoo_name(_flow, _target, _depth),
                    build=partial(build_density_flow, _flow, _depth),
                    train=partial(train_density, target=_target),
                    config=DENSITY.config(_flow, _target, _depth),
                    max_bytes=CHECKPOINT_BYTES,
                )
            )
for _target, _directions in available_fits().items():
    for _direction in _directions:
        zoo.register(
            zoo.Entry(
                zoo.zoo_name("kl", _direction, _target),
                build=partial(build_flow, _target),
                train=partial(train_kl, direction=_direction, target=_target),
                config=KL.config(_direction, _target),
                max_bytes=CHECKPOINT_BYTES,
            )
        )
for _target in PLANAR_TARGETS:
    for _depth in PLANAR_DEPTHS:
        zoo.register(
            zoo.Entry(
                zoo.zoo_name("planar", _target, _depth),
                build=partial(make_planar, 2, _depth),
                train=partial(train_planar, target=_target),
                config=PLANAR.config(_target, _depth),
                max_bytes=CHECKPOINT_BYTES,
            )
        )
