"""Checks of the exercises of the chapter "ALI and ALICE".

The graded path: the optimal discriminator of ALI from the joints' log-densities (warm-up), the
Jensen-Shannon divergence read off the value at that discriminator (derivation), the samplers'
non-saturating loss and ALICE's explicit cycle consistency (implementation), and a few steps of the
cycle term on the shipped ALI model (experiment: checked by the property, a reconstruction error far
below ALI's, not by exact numbers).
"""

from __future__ import annotations

import math

import torch

from dgm_lib import zoo
from dgm_lib.ali import delta_joint, explicit_cycle, optimal_logit, sampler_loss
from dgm_lib.ali.model import JointMatching
from dgm_lib.ali.recipes import evaluate
from dgm_lib.ali.toy import sample_x

from .registry import Case, open_question, register

DT = torch.float64

_D_HINT = (
    "D*(x, z) = q(x, z) / (q(x, z) + p(x, z)). Dividing by q, this is 1 / (1 + p / q) = "
    "sigmoid(log q - log p): use torch.sigmoid(log_q - log_p). Exponentiating log-densities of "
    "-1000 first gives 0 / 0 = NaN."
)
_CYCLE_HINT = (
    "For each row i, ||x_i - x^_i||_2^2 is the SUM over its coordinates of the squared "
    "differences; then average over the rows: (x - x_hat).square().sum(dim=1).mean(). "
    "Averaging over every entry at once divides by the dimension too."
)
_JSD_HINT = (
    "with D* = q / (q + p), the maximum of L_ALI is sum q log D* + p log(1 - D*) = -log 4 + 2 JSD, "
    "so JSD = (L + log 4) / 2 (do not forget the 1/2). A cell where q = 0 (or p = 0) contributes "
    "0, the limit of t log t, but 0 * log 0 is NaN in floating point: use torch.xlogy(q, D) and "
    "torch.xlogy(p, 1 - D), or torch.where."
)
_SAMPLER_HINT = (
    "the non-saturating loss swaps the discriminator's labels: -mean log(1 - sigma(f)) over the "
    "encoder pairs (logits_q) - mean log sigma(f) over the decoder pairs (logits_p), two separate "
    "means (the batches may differ in size). log sigma(f) = F.logsigmoid(f) and log(1 - sigma(f)) "
    "= F.logsigmoid(-f) stay finite for logits of +-1000, torch.log(torch.sigmoid(f)) does not."
)
_EXPERIMENT_HINT = (
    "make one optimizer over the encoder's AND the decoder's parameters (e.g. torch.optim.Adam("
    "[*model.encoder.parameters(), *model.decoder.parameters()], lr=1e-3, betas=(0.5, 0.999))); "
    "in each step draw a minibatch of 128 rows of x, loss = explicit_cycle(batch, "
    "model.reconstruct(batch)) (nothing detached), optimizer.zero_grad(), loss.backward(), "
    "optimizer.step(); return the model. Training the decoder alone cannot separate codes that "
    "ALI's encoder mixed."
)


def _d_case(log_q: list[float], log_p: list[float]) -> Case:
    q, p = torch.tensor(log_q, dtype=DT), torch.tensor(log_p, dtype=DT)
    return Case(args=(q, p), expected=optimal_logit(q, p).sigmoid(), rtol=1e-10, atol=1e-12)


@register("ali.optimal_discriminator", "equal and unequal densities", hint=_D_HINT)
def _d_simple() -> Case:
    return _d_case([-1.0, -2.0, -0.5], [-1.0, -1.0, -3.0])


@register("ali.optimal_discriminator", "log-densities of -1000 (tails)", hint=_D_HINT)
def _d_tails() -> Case:
    return _d_case([-1000.0, -1001.0, -5.0], [-1000.5, -1000.0, -1000.0])


def _cycle_case(n: int, d: int, seed: int) -> Case:
    g = torch.Generator().manual_seed(seed)
    x, x_hat = torch.randn(n, d, generator=g, dtype=DT), torch.randn(n, d, generator=g, dtype=DT)
    return Case(args=(x, x_hat), expected=explicit_cycle(x, x_hat, k=2), rtol=1e-10)


@register("ali.cycle_consistency", "points in 2D", hint=_CYCLE_HINT)
def _cycle_2d() -> Case:
    return _cycle_case(8, 2, 0)


@register("ali.cycle_consistency", "points in 5D (the sum over coordinates)", hint=_CYCLE_HINT)
def _cycle_5d() -> Case:
    return _cycle_case(6, 5, 1)


def _jsd(q: torch.Tensor, p: torch.Tensor) -> float:
    """Reference: JSD(q || p) = KL(q || m) / 2 + KL(p || m) / 2, m = (q + p) / 2, from its
    definition (not from the discriminator)."""
    m = (q + p) / 2
    return float((torch.xlogy(q, q / m).nansum() + torch.xlogy(p, p / m).nansum()) / 2)


def _jsd_case(q: torch.Tensor, p: torch.Tensor) -> Case:
    return Case(args=(q, p), expected=_jsd(q, p), rtol=1e-9, atol=1e-12)


@register("ali.jsd_from_discriminator", "two delta joints, delta = 0.8 and 0.3", hint=_JSD_HINT)
def _jsd_delta() -> Case:
    return _jsd_case(delta_joint(0.8), delta_joint(0.3))


@register(
    "ali.jsd_from_discriminator",
    "random 3 x 4 joints (no zero cell)",
    hint=_JSD_HINT,
)
def _jsd_random() -> Case:
    g = torch.Generator().manual_seed(0)
    q, p = torch.rand(3, 4, generator=g, dtype=DT) + 0.1, torch.rand(3, 4, generator=g, dtype=DT)
    return _jsd_case(q / q.sum(), p / p.sum())


@register(
    "ali.jsd_from_discriminator",
    "delta = 1 against delta = 0: disjoint supports, JSD = log 2",
    hint=_JSD_HINT,
)
def _jsd_disjoint() -> Case:
    return _jsd_case(delta_joint(1.0), delta_joint(0.0))


def _sampler_case(n: int, m: int, scale: float, seed: int) -> Case:
    g = torch.Generator().manual_seed(seed)
    q = scale * torch.randn(n, generator=g, dtype=DT)
    p = scale * torch.randn(m, generator=g, dtype=DT)
    return Case(args=(q, p), expected=sampler_loss(q, p), rtol=1e-10, atol=1e-12)


@register("ali.sampler_loss", "8 logits of each joint", hint=_SAMPLER_HINT)
def _sampler_simple() -> Case:
    return _sampler_case(8, 8, 2.0, 0)


@register("ali.sampler_loss", "3 encoder pairs, 7 decoder pairs (two means)", hint=_SAMPLER_HINT)
def _sampler_sizes() -> Case:
    return _sampler_case(3, 7, 2.0, 1)


@register("ali.sampler_loss", "logits of size 1000 (a confident discriminator)", hint=_SAMPLER_HINT)
def _sampler_confident() -> Case:
    q, p = torch.tensor([1000.0, -3.0], dtype=DT), torch.tensor([-1000.0, 2.0, 0.5], dtype=DT)
    return Case(args=(q, p), expected=sampler_loss(q, p), rtol=1e-10, atol=1e-12)


EXPERIMENT_STEPS = 100  # a few hundred ms on one CPU thread; ALI's error drops about 50-fold


def _experiment_case(data_seed: int, steps: int) -> Case:
    """The shipped ALI model and 2,048 toy points; verify: after `steps` cycle steps, the
    reconstruction error (dgm_lib.ali.recipes.evaluate, seeded test points) is below a tenth of
    ALI's and more than 90% of the reconstructions keep their mode (ALI: about half)."""
    with torch.random.fork_rng():  # building the networks draws, evaluate seeds: keep the state
        model = zoo.load("alice_toy_ali", device="cpu", train_if_missing=False)
        before = evaluate(model)["reconstruction_mse"]
    x, _ = sample_x(2048, torch.Generator().manual_seed(data_seed))

    def verify(result: object) -> str | None:
        if not isinstance(result, JointMatching):
            return (
                f"return the trained model itself (the JointMatching you were given), got "
                f"{type(result).__name__}"
            )
        with torch.random.fork_rng(), torch.no_grad():
            after = evaluate(result)
        mse, kept = after["reconstruction_mse"], after["mode_kept"]
        if not math.isfinite(mse) or mse >= before:
            return (
                f"the reconstruction error did not drop (ALI's {before:.3g}, after your steps "
                f"{mse:.3g}): are the steps minimising the cycle loss, with optimizer.step()?"
            )
        if mse > 0.1 * before or kept < 0.9:
            return (
                f"the reconstruction error dropped from ALI's {before:.3g} to {mse:.3g} only, and "
                f"{kept:.0%} of the reconstructions keep their mode; {steps} steps of the cycle "
                f"term reach below {0.1 * before:.3g} and 90%"
            )
        return None

    return Case(args=(model, x, steps), verify=verify)


@register(
    "ali.cycle_steps",
    f"the shipped ALI model, {EXPERIMENT_STEPS} steps: error below a tenth of ALI's, mode kept",
    hint=_EXPERIMENT_HINT,
)
def _experiment_default() -> Case:
    return _experiment_case(0, EXPERIMENT_STEPS)


@register(
    "ali.cycle_steps",
    "other training points (data seed 1), 150 steps",
    hint=_EXPERIMENT_HINT,
)
def _experiment_other() -> Case:
    return _experiment_case(1, 150)


open_question(
    "ali.unified_view",
    "GAN, ALI, CycleGAN, ALICE and the conditional GAN as joint matching: what each term fixes",
)
