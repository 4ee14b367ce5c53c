"""Zoo configs of the KL-duality chapter, and the Monte Carlo KL estimators that chapter, its widget and tests share.

Configs (train one with `python -m dgm_lib.zoo train NAME`), RealNVPs of the sizes in FLOWS:
- `kl_reverse_<energy>` for the unnormalized energies u1-u4 and banana of dgm_lib.data.toy2d: reverse KL by
  LOTUS, which needs only base samples z ~ p(z), g, log|det J_g| and log pi(x) up to its constant
  (Rezende & Mohamed, Variational inference with normalizing flows, ICML 2015, Fig. 3).
- `kl_forward_<target>` and `kl_reverse_<target>` for the normalized multimodal targets in MULTIMODAL (exact
  log_prob and a sampler): forward KL (MLE on samples x ~ pi) against reverse KL, mode covering vs mode seeking.
Notation of Lecture 2: x data, z noise, f: x -> z normalizes, g = f^{-1} generates, pi(x) the target.
"""

from __future__ import annotations

import math
from functools import cached_property, lru_cache, partial
from typing import Callable

import torch
from torch import Tensor

from dgm_lib import zoo
from dgm_lib.core import mean_and_se
from dgm_lib.data.toy2d import LIM, Target, get_target
from dgm_lib.flows.base import Flow, batch_jacobian
from dgm_lib.flows.builders import make_realnvp
from dgm_lib.flows.toy_models import TargetBatches
from dgm_lib.training import History, fit

LogDensity = Callable[[Tensor], Tensor]

ENERGIES: tuple[str, ...] = ("u1", "u2", "u3", "u4", "banana")
MULTIMODAL: tuple[str, ...] = ("eight_gaussians", "two_moons")
DIRECTIONS: tuple[str, ...] = ("forward", "reverse")
# RealNVP sizes: the energies get a flexible flow; the multimodal targets a small one that cannot represent pi
# exactly, so that forward and reverse KL must compromise, and compromise differently.
FLOWS = {
    **{t: {"depth": 8, "hidden": [64, 64], "bound": 5.0} for t in ENERGIES},
    **{t: {"depth": 4, "hidden": [32, 32], "bound": 5.0} for t in MULTIMODAL},
}
TRAINING = {"steps": 6000, "batch_size": 256, "lr": 1e-3}
ANNEALING = {**{t: (2000, 0.05) for t in ENERGIES}, **{t: (0, 1.0) for t in MULTIMODAL}}  # (steps, beta_0)
MAX_BYTES = 200_000
WALL = 0.1  # width of the Gaussian wall that confines the energies to the box [-LIM, LIM]^2


class ConfinedEnergy:
    """An energy target of toy2d confined to the box: log pi~(x) = -U(x) - |relu(|x| - LIM)|^2 / (2 WALL^2).

    Inside [-LIM, LIM]^2 this is the energy's own -U(x); outside, a steep Gaussian wall makes exp(-U) integrable
    on R^2 (U2-U4 are ridges along x_1 that never decay), so KL(p(x|theta) || pi) exists for every energy.
    `log_normalizer` is log Z of the confined density (grid quadrature), so log pi = log pi~ - log Z.
    """

    def __init__(self, name: str):
        if name not in ENERGIES:
            raise ValueError(f"name must be one of the energies {ENERGIES}, got {name!r}")
        self.name, self.energy = name, get_target(name)

    def log_prob(self, x: Tensor) -> Tensor:
        """-U(x) - |relu(|x| - LIM)|^2 / (2 WALL^2), unnormalized, shape x.shape[:-1]."""
        outside = torch.relu(x.abs() - LIM)
        return self.energy.log_prob(x) - 0.5 * (outside / WALL).square().sum(-1)

    @cached_property
    def log_normalizer(self) -> float:
        """log Z = log of the integral of pi~ over R^2 (midpoint rule on [-LIM - 8 WALL, LIM + 8 WALL]^2)."""
        integral = grid_integral(lambda x: self.log_prob(x).exp(), LIM + 8 * WALL, n_grid=600, dtype=torch.float64)
        return math.log(integral)


@lru_cache(maxsize=None)
def get_target_for_fit(name: str) -> ConfinedEnergy | Target:
    """The target the configs fit: the confined energy for the energies, toy2d's target otherwise."""
    return ConfinedEnergy(name) if name in ENERGIES else get_target(name)


def zoo_name(direction: str, target: str) -> str:
    """The zoo name of the fit of `target` by `direction` KL, e.g. kl_reverse_u1."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return f"kl_{direction}_{target}"


def available_fits() -> dict[str, tuple[str, ...]]:
    """For every target of this module, the KL directions it has a zoo config for (forward needs samples of pi)."""
    fits = {target: ("reverse",) for target in ENERGIES}
    fits.update({target: DIRECTIONS for target in MULTIMODAL})
    return fits


def build_flow(target: str) -> Flow:
    """The flow of the configs of `target`: RealNVP on R^2 with the depth, hidden sizes and bound of FLOWS[target]."""
    size = FLOWS[target]
    return make_realnvp(m=2, depth=size["depth"], hidden=tuple(size["hidden"]), bound=size["bound"])


def annealing(steps: int, anneal_steps: int, beta_0: float) -> list[float]:
    """Inverse temperatures beta_t = min(1, beta_0 + (1 - beta_0) t / anneal_steps), t = 0..steps-1 (all 1 if 0)."""
    if anneal_steps == 0:
        return [1.0] * steps
    return [min(1.0, beta_0 + (1.0 - beta_0) * t / anneal_steps) for t in range(steps)]


def _optimizer(flow: Flow) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam with cosine decay of the learning rate over the training steps."""
    optimizer = torch.optim.Adam(flow.parameters(), lr=TRAINING["lr"])
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, TRAINING["steps"])


def train_forward(flow: Flow, target: str) -> History:
    """Forward KL = MLE: minimize -(1/n) sum log p(x_i|theta) over fresh batches x_i ~ pi; returns the history."""
    generator = torch.Generator().manual_seed(0)
    data = TargetBatches(get_target(target), TRAINING["batch_size"], 100, generator)
    optimizer, scheduler = _optimizer(flow)
    return fit(flow, optimizer, data, steps=TRAINING["steps"], generator=generator, scheduler=scheduler)


def train_reverse(flow: Flow, target: str) -> History:
    """Reverse KL by LOTUS: minimize E_{p(z)}[log p(z) - log|det J_g(z)| - beta_t log pi(g(z))].

    The energies anneal the inverse temperature beta_t from beta_0 to 1 over ANNEALING[target] steps (Rezende &
    Mohamed 2015), letting the flow spread before the energy barriers set in; the multimodal targets use the
    plain objective (beta_t = 1), whose mode seeking the chapter studies. Returns the history, whose
    "reverse_kl" term is the beta = 1 loss.
    """
    log_target = get_target_for_fit(target).log_prob
    anneal_steps, beta_0 = ANNEALING[target]
    betas = annealing(TRAINING["steps"], anneal_steps, beta_0)
    optimizer, scheduler = _optimizer(flow)

    def loss_fn(model: Flow, beta: float) -> dict[str, Tensor]:
        x, log_p = model.sample_with_log_prob(TRAINING["batch_size"])
        log_pi = log_target(x)
        return {"loss": (log_p - beta * log_pi).mean(), "reverse_kl": (log_p - log_pi).mean().detach()}

    return fit(flow, optimizer, betas, steps=TRAINING["steps"], loss_fn=loss_fn, scheduler=scheduler)


def _register(direction: str, target: str) -> None:
    """Register the fit of `target` by `direction` KL; its checkpoint stores the weights only (no history)."""
    recipe = train_forward if direction == "forward" else train_reverse
    config = {"target": target, "direction": direction, "flow": FLOWS[target], "training": TRAINING}
    if direction == "reverse":
        config["annealing"] = list(ANNEALING[target])
        config["wall"] = WALL if target in ENERGIES else None

    def train(flow: Flow) -> None:
        recipe(flow, target)

    zoo.register(
        zoo_name(direction, target), build=partial(build_flow, target), train=train, config=config, max_bytes=MAX_BYTES
    )


for _target, _directions in available_fits().items():
    for _direction in _directions:
        _register(_direction, _target)


def load_fit(direction: str, target: str, device: torch.device | str | None = None) -> Flow:
    """The shipped flow fitted to `target` by `direction` KL, on `device` (trained now if its checkpoint is missing)."""
    if direction not in available_fits().get(target, ()):
        raise ValueError(f"no {direction} KL fit of target {target!r}; available: {available_fits()}")
    return zoo.load(zoo_name(direction, target), device=device)


# ---------------------------------------------------------------- estimators and checks of the chapter


def mc_estimate(terms: Tensor) -> tuple[float, float]:
    """Monte Carlo mean of per-sample terms and its standard error: (mean(t), std(t) / sqrt(n))."""
    if terms.dim() != 1 or len(terms) < 2:
        raise ValueError(f"terms must have shape (n,) with n >= 2, got {tuple(terms.shape)}")
    if not torch.isfinite(terms).all():
        raise ValueError(f"terms hold {int((~torch.isfinite(terms)).sum())} non-finite values")
    return mean_and_se(terms)


def forward_kl_terms(flow: Flow, log_target: LogDensity, x: Tensor) -> Tensor:
    """log pi(x) - log p(x|theta) at x ~ pi: their mean estimates KL(pi(x) || p(x|theta)) (exact log pi needed)."""
    return log_target(x) - flow.log_prob(x)


def reverse_kl_terms(flow: Flow, log_target: LogDensity, n: int, generator: torch.Generator | None = None) -> Tensor:
    """log p(z) - log|det J_g(z)| - log pi(g(z)), z ~ p(z) (LOTUS): mean = KL(p(x|theta) || pi) - log Z.

    log Z = 0 for a normalized log_target; n terms, one pass of g (Flow.sample_with_log_prob).
    """
    x, log_p = flow.sample_with_log_prob(n, generator=generator)
    return log_p - log_target(x)


def latent_log_prob(flow: Flow, log_target: LogDensity, z: Tensor) -> Tensor:
    """log p(z|theta) = log pi(g(z)) + log|det J_g(z)|: the density of z = f(x) for x ~ pi (KL duality)."""
    x, log_det_g = flow.transform.inverse(z)
    return log_target(x) + log_det_g


def latent_kl_terms(flow: Flow, log_target: LogDensity, x: Tensor) -> Tensor:
    """log p(z|theta) - log p(z) at z = f(x), x ~ pi: their mean estimates KL(p(z|theta) || p(z))."""
    z, _ = flow.transform(x)
    return latent_log_prob(flow, log_target, z) - flow.base.log_prob(z)


def grid_integral(
    fn: Callable[[Tensor], Tensor], lim: float = LIM, n_grid: int = 400, dtype: torch.dtype | None = None
) -> float:
    """Midpoint rule for the integral of fn(x) over [-lim, lim]^2 with n_grid^2 cells, summed in float64.

    fn gets batches of grid points of shape (k, 2) in `dtype` (default: torch's default dtype).
    """
    h = 2 * lim / n_grid
    t = -lim + h * (torch.arange(n_grid, dtype=torch.float64) + 0.5)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(-1, 2)
    grid = grid.to(dtype or torch.get_default_dtype())
    values = torch.cat([fn(chunk).detach().double() for chunk in grid.split(40_000)])
    if not torch.isfinite(values).all():
        raise ValueError("fn returned non-finite values on the grid")
    return float(values.sum() * h * h)


def mode_fractions(x: Tensor, means: Tensor) -> Tensor:
    """Fraction of the samples x (n, m) whose nearest mode is means[k], shape (K,)."""
    nearest = torch.cdist(x.double(), means.to(x.device, torch.float64)).argmin(dim=1)
    return torch.bincount(nearest, minlength=len(means)).double() / len(x)


def relaxed_elbo(
    flow: Flow, x: Tensor, sigma: float, n_samples: int = 64, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """ELBO of a VAE whose encoder and decoder are Gaussians of width sigma around f and g, per x (each term (B,)).

    q(z|x) = N(z; f(x), sigma^2 J_f J_f^T) and p(x|z) = N(x; g(z), sigma^2 I) tend to the deterministic
    delta(z - f(x)) and delta(x - g(z)) as sigma -> 0, where the ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) tends
    to log p(x|theta) (Nielsen et al., SurVAE Flows, NeurIPS 2020). Monte Carlo over n_samples antithetic pairs
    z = f(x) +- sigma J_f(x) eps, eps ~ N(0, I). Returns {"elbo", "reconstruction": E_q log p(x|z), "kl"}.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    batch, m = x.shape
    jac_f = batch_jacobian(lambda v: flow.transform(v)[0], x).detach()
    with torch.no_grad():
        z0, log_det_f = flow.transform(x)
        device = generator.device if generator is not None else x.device
        eps = torch.randn(n_samples, batch, m, generator=generator, dtype=x.dtype, device=device).to(x.device)
        eps = torch.cat([eps, -eps])  # antithetic pairs: the O(sigma) terms cancel
        z = z0 + sigma * torch.einsum("bij,sbj->sbi", jac_f, eps)
        x_rec, _ = flow.transform.inverse(z.reshape(-1, m))
        gauss = -0.5 * m * math.log(2 * math.pi * sigma**2)
        log_decoder = gauss - 0.5 * ((x - x_rec.reshape(-1, batch, m)) / sigma).square().sum(-1)
        log_prior = flow.base.log_prob(z.reshape(-1, m)).reshape(-1, batch)
        log_encoder = gauss - log_det_f - 0.5 * eps.square().sum(-1)
        reconstruction, kl = log_decoder.mean(0), (log_encoder - log_prior).mean(0)
        return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}
