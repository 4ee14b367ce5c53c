"""Checks of the KL-duality chapter's exercises, in the order of its graded path.

Warm-up: the KL divergence between two Gaussians. Derivation: the latent KL of an affine flow, which
the duality theorem predicts equal to the forward KL. Implementations: the LOTUS reverse-KL
estimator and the importance-sampling log Z. Experiment: a Gaussian fitted to two modes by forward
and by reverse KL (checked by the property: it covers both, or it sits on one). Open question: why
the reverse fit sits on one mode, and remedies.

Expected answers are computed by another route than the one the student takes: through f and
Flow.log_prob at x = g(z) instead of through g's log-determinant, so the checks also catch a wrong
sign of log|det J_g|; the derivation's expected value is the x-space KL that the theorem equates
with the student's z-space KL.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from dgm_lib.data.toy2d import get_target
from dgm_lib.flows.base import Flow
from dgm_lib.flows.builders import make_realnvp

from .registry import Case, open_question, register, register_reference

_LOTUS_HINT = (
    "x, log_det_g = flow.transform.inverse(z) gives x = g(z) and log|det J_g(z)|; then log "
    "p(x|theta) = flow.base.log_prob(z) - log_det_g (minus: J_g is the inverse of J_f) and the "
    "terms are log p(x|theta) - log_target(x), one per row of z, not averaged."
)
_IS_HINT = (
    "the log-weights are w_i = log_target(x_i) - log p(x_i|theta) at x_i = g(z_i); return"
    " torch.logsumexp(w, 0) - log(n), never log(mean(exp(w))), which overflows for large weights."
)


_KL_HINT = (
    "KL(N(mu_p, sigma_p^2) || N(mu_q, sigma_q^2)) = log(sigma_q / sigma_p) + (sigma_p^2 + "
    "(mu_p - mu_q)^2) / (2 sigma_q^2) - 1/2, entry by entry (no sum)."
)
_VARIANCE_HINT = (
    "sigma_p and sigma_q are standard deviations: the formula squares them, sigma_p^2 and "
    "sigma_q^2, except inside log(sigma_q / sigma_p)."
)
_SWAP_HINT = (
    "the KL is not symmetric: KL(p || q) averages log(p / q) over p, so (mu_p, sigma_p) is the "
    "Gaussian in the numerator and the one averaged over; swapping the pairs gives KL(q || p)."
)
_AFFINE_HINT = (
    "z = f(x) = (x - b) / a with x ~ N(m, s^2) is Gaussian with mean (m - b) / a and standard "
    "deviation s / |a|; return KL(N(mean, std^2) || N(0, 1)) = (std^2 + mean^2 - 1) / 2 - log std."
)
_NEGATIVE_SCALE_HINT = (
    "a may be negative (g(z) = a z + b is still a bijection): the standard deviation of z is "
    "s / |a|, never s / a, whose log is NaN."
)


@register_reference("kl_duality.kl_gaussians")
def kl_gaussians(mu_p: Tensor, sigma_p: Tensor, mu_q: Tensor, sigma_q: Tensor) -> Tensor:
    """Reference: KL(N(mu_p, sigma_p^2) || N(mu_q, sigma_q^2)), entry by entry.

    KL = log(sigma_q / sigma_p) + (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2) - 1/2.

    Args:
        mu_p, sigma_p: mean and standard deviation of p (tensors of one shape).
        mu_q, sigma_q: mean and standard deviation of q (the same shape).

    Returns:
        The divergences, of that shape and dtype.
    """
    return torch.log(sigma_q / sigma_p) + (sigma_p**2 + (mu_p - mu_q) ** 2) / (2 * sigma_q**2) - 0.5


def _kl_case(mu_p: list, sigma_p: list, mu_q: list, sigma_q: list, dtype=torch.float64) -> Case:
    args = tuple(torch.tensor(v, dtype=dtype) for v in (mu_p, sigma_p, mu_q, sigma_q))
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    return Case(args=args, expected=kl_gaussians(*args), **tol)


@register("kl_duality.kl_gaussians", "equal Gaussians: KL = 0", hint=_KL_HINT)
def _kl_equal() -> Case:
    return _kl_case([0.0, 1.5, -2.0], [1.0, 0.3, 4.0], [0.0, 1.5, -2.0], [1.0, 0.3, 4.0])


@register(
    "kl_duality.kl_gaussians",
    "equal standard deviations 2, means 3 apart: KL = 9/8",
    hint=_VARIANCE_HINT,
)
def _kl_equal_widths() -> Case:
    return _kl_case([0.0, 1.0], [2.0, 0.5], [3.0, -1.0], [2.0, 0.5])


@register(
    "kl_duality.kl_gaussians",
    "p = N(0, 1) against q = N(1, 2^2) and three more pairs: KL(p || q) != KL(q || p)",
    hint=_SWAP_HINT,
)
def _kl_asymmetric() -> Case:
    return _kl_case([0.0, 2.0, -1.0, 0.5], [1.0, 0.5, 3.0, 1.0], [1.0, 0.0, 0.0, 0.5],
                    [2.0, 1.5, 1.0, 0.2])  # fmt: skip


@register(
    "kl_duality.kl_gaussians",
    "float32 inputs: the result stays float32",
    hint="do not create float64 constants; everything should follow the dtype of the inputs.",
)
def _kl_float32() -> Case:
    return _kl_case([0.0, 1.0], [1.0, 2.0], [0.5, -1.0], [1.5, 0.7], dtype=torch.float32)


@register_reference("kl_duality.affine_latent_kl")
def affine_latent_kl(m: Tensor, s: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Reference: KL(p(z|theta) || N(0, 1)) for z = (x - b) / a, x ~ N(m, s^2).

    p(z|theta) = N((m - b) / a, s^2 / a^2), so KL = (std^2 + mean^2 - 1) / 2 - log std.

    Args:
        m, s: mean and standard deviation of the target pi = N(m, s^2).
        a, b: the affine flow g(z) = a z + b (a != 0), f(x) = (x - b) / a.

    Returns:
        The latent KL, entry by entry.
    """
    mean, std = (m - b) / a, s / a.abs()
    return 0.5 * (std**2 + mean**2 - 1) - torch.log(std)


def _affine_case(m: list, s: list, a: list, b: list) -> Case:
    """The duality's prediction: KL(pi || p(x|theta)) = KL(N(m, s^2) || N(b, a^2)), in x-space."""
    m, s, a, b = (torch.tensor(v, dtype=torch.float64) for v in (m, s, a, b))
    return Case(args=(m, s, a, b), expected=kl_gaussians(m, s, b, a.abs()), rtol=1e-9, atol=1e-9)


@register(
    "kl_duality.affine_latent_kl",
    "positive scales a: the latent KL equals the forward KL in x-space",
    hint=_AFFINE_HINT,
)
def _affine_positive() -> Case:
    return _affine_case([1.0, 0.0, -2.0], [0.5, 1.0, 3.0], [2.0, 1.0, 0.7], [0.0, 0.0, 1.0])


@register(
    "kl_duality.affine_latent_kl",
    "negative scales a (a flip): the same prediction",
    hint=_NEGATIVE_SCALE_HINT,
)
def _affine_negative() -> Case:
    return _affine_case([1.0, 3.0], [0.5, 2.0], [-2.0, -0.5], [0.5, 1.0])


def _flow(seed: int, dtype: torch.dtype = torch.float64) -> Flow:
    """A small RealNVP (depth 4) with non-trivial random weights, built without touching the global
    RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = make_realnvp(m=2, depth=4, hidden=(16,))
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return flow.to(dtype).eval()


def _base_points(n: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _log_weights(flow: Flow, log_target: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """log pi(x) - log p(x|theta) at x = g(z), with log p(x|theta) through f (Flow.log_prob)."""
    with torch.no_grad():
        x = flow.transform.inverse(z)[0]
        return log_target(x) - flow.log_prob(x)


@register_reference("kl_duality.reverse_kl_lotus")
def reverse_kl_lotus(flow: Flow, log_target: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """Reference: the LOTUS terms log p(z) - log|det J_g(z)| - log pi(g(z)), one per row of z.

    Args:
        flow: the flow (g = flow.transform.inverse).
        log_target: log pi, possibly unnormalized.
        z: base samples, shape (n, m).

    Returns:
        The terms, shape (n,); their mean estimates KL(p || pi) - log Z.
    """
    x, log_det_g = flow.transform.inverse(z)
    return flow.base.log_prob(z) - log_det_g - log_target(x)


@register_reference("kl_duality.log_normalizer_is")
def log_normalizer_is(flow: Flow, log_target: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """Reference: log (1/n) sum_i pi~(x_i) / p(x_i|theta), x_i = g(z_i), in log space.

    Args:
        flow: the proposal flow.
        log_target: log pi~, unnormalized.
        z: base samples, shape (n, m).

    Returns:
        The importance-sampling estimate of log Z, a scalar tensor.
    """
    log_w = -reverse_kl_lotus(flow, log_target, z)
    return torch.logsumexp(log_w, dim=0) - math.log(len(z))


def _lotus_case(seed: int, target: str, n: int, dtype: torch.dtype = torch.float64) -> Case:
    flow, z = _flow(seed, dtype), _base_points(n, seed, dtype)
    log_target = get_target(target).log_prob
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    return Case(args=(flow, log_target, z), expected=-_log_weights(flow, log_target, z), **tol)


@register(
    "kl_duality.reverse_kl_lotus",
    "5 base points, a RealNVP of depth 4, the U1 energy",
    hint=_LOTUS_HINT,
)
def _lotus_u1() -> Case:
    return _lotus_case(seed=0, target="u1", n=5)


@register(
    "kl_duality.reverse_kl_lotus",
    "200 base points, 8 Gaussians target (normalized)",
    hint=_LOTUS_HINT,
)
def _lotus_eight_gaussians() -> Case:
    return _lotus_case(seed=1, target="eight_gaussians", n=200)


@register(
    "kl_duality.reverse_kl_lotus",
    "a float32 flow and float32 z: the terms stay float32",
    hint="do not create float64 constants; everything should follow the dtype of z.",
)
def _lotus_float32() -> Case:
    return _lotus_case(seed=2, target="banana", n=50, dtype=torch.float32)


def _is_case(seed: int, target: str, n: int, offset: float) -> Case:
    flow, z = _flow(seed), _base_points(n, seed)
    energy = get_target(target).log_prob

    def log_target(x: Tensor) -> Tensor:
        return energy(x) + offset

    w = _log_weights(flow, log_target, z)
    return Case(
        args=(flow, log_target, z),
        expected=float(torch.logsumexp(w, 0) - math.log(n)),
        rtol=1e-9,
        atol=1e-9,
    )


@register("kl_duality.log_normalizer_is", "1000 base points, the banana energy", hint=_IS_HINT)
def _is_banana() -> Case:
    return _is_case(seed=3, target="banana", n=1000, offset=0.0)


@register(
    "kl_duality.log_normalizer_is",
    "an energy shifted by +1000 (log Z grows by 1000): exp overflows",
    hint=_IS_HINT,
)
def _is_overflow() -> Case:
    return _is_case(seed=4, target="u1", n=100, offset=1000.0)


# --- the experiment: one Gaussian fitted to two modes by forward and by reverse KL

MODES = (-2.0, 2.0)  # the two components of the 1D target, equal weights
MODE_STD = 0.5
_FIT_HINT = (
    "forward: the MLE of a Gaussian is the mean and standard deviation of the samples. reverse: "
    "parametrize mu and log sigma, draw x = mu + sigma * eps with eps ~ N(0, 1) from the "
    "generator (reparametrization: gradients flow through x), start from mu = 1, sigma = 1 and "
    "minimize mean(log q(x) - log_target(x)) with Adam for a few hundred steps; return (mu, sigma)."
)


def two_modes_log_prob(x: Tensor) -> Tensor:
    """log pi(x) of the 1D target pi = N(-2, 0.5^2) / 2 + N(2, 0.5^2) / 2, entry by entry."""
    components = torch.stack([-0.5 * ((x - mode) / MODE_STD) ** 2 for mode in MODES]) - math.log(
        MODE_STD * math.sqrt(2 * math.pi)
    )
    return torch.logsumexp(components, dim=0) - math.log(len(MODES))


def two_modes_sample(n: int, generator: torch.Generator | None = None) -> Tensor:
    """n float64 samples of the two-mode target."""
    modes = torch.tensor(MODES, dtype=torch.float64)
    which = torch.randint(len(MODES), (n,), generator=generator)
    return modes[which] + MODE_STD * torch.randn(n, generator=generator, dtype=torch.float64)


@register_reference("kl_duality.fit_gaussian")
def fit_gaussian(
    direction: str,
    log_target: Callable[[Tensor], Tensor],
    samples: Tensor,
    generator: torch.Generator,
    steps: int = 200,
) -> tuple[float, float]:
    """Reference: the Gaussian N(mu, sigma^2) fitted to a 1D target by forward or reverse KL.

    Forward KL = maximum likelihood on `samples` (closed form: their mean and standard deviation);
    reverse KL = min E_q[log q(x) - log pi(x)] by LOTUS, x = mu + sigma eps, eps ~ N(0, 1), Adam,
    from mu = 1, sigma = 1 (mu = 0, between the modes, is a local minimum of the reverse KL).

    Args:
        direction: "forward" or "reverse".
        log_target: log pi (reverse KL).
        samples: samples of pi, shape (n,) (forward KL).
        generator: the random numbers of the reverse fit.
        steps: Adam steps of the reverse fit.

    Returns:
        (mu, sigma).
    """
    if direction == "forward":
        return samples.mean().item(), samples.std(correction=0).item()
    mu = torch.ones((), dtype=torch.float64, requires_grad=True)  # start off-centre: mu = 1
    log_sigma = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([mu, log_sigma], lr=0.05)
    for _ in range(steps):
        eps = torch.randn(128, generator=generator, dtype=torch.float64)
        x = mu + log_sigma.exp() * eps
        log_q = -log_sigma - 0.5 * eps**2 - 0.5 * math.log(2 * math.pi)
        loss = (log_q - log_target(x)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return mu.item(), log_sigma.exp().item()


def _mu_sigma(result: object) -> tuple[float, float]:
    """(mu, sigma) as floats from a pair of numbers or 0-dim tensors."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise TypeError("return a pair (mu, sigma)")
    return float(result[0]), float(result[1])


def _covers_both_modes(result: object) -> str | None:
    mu, sigma = _mu_sigma(result)
    if abs(mu) < 0.3 and 1.8 < sigma < 2.3:
        return None
    return (
        f"the forward-KL fit N({mu:.2f}, {sigma:.2f}^2) should cover both modes, mean near 0 and "
        "standard deviation near sqrt(2^2 + 0.5^2) = 2.06 (moment matching)"
    )


def _sits_on_one_mode(result: object) -> str | None:
    mu, sigma = _mu_sigma(result)
    if min(abs(mu - mode) for mode in MODES) < 0.3 and 0.35 < sigma < 0.7:
        return None
    if sigma < 0.35:
        why = "it collapsed: did you leave out E_q log q(x) = -log sigma - 1/2 - log(2 pi)/2?"
    elif sigma > 2.6 or (abs(mu) < 1.5 and 0.8 < sigma < 1.2):
        why = (
            "it barely moved from its start or spread far beyond the modes: do gradients flow "
            "through x = mu + sigma * eps (no .detach(), no torch.no_grad())?"
        )
    elif abs(mu) < 0.3 and 1.5 < sigma < 1.9:
        why = (
            "it is stuck between the modes, at the local minimum of the reverse KL that a start at "
            "mu = 0 leads to; start off-centre, at mu = 1"
        )
    elif sigma > 1.5:
        why = "it covers both modes, as the forward KL does"
    else:
        why = "train for more steps"
    return (
        f"the reverse-KL fit N({mu:.2f}, {sigma:.2f}^2) should sit on one mode, mean near -2 or 2 "
        f"and standard deviation near 0.5 (mode seeking); {why}"
    )


def _fit_case(direction: str, seed: int) -> Case:
    generator = torch.Generator().manual_seed(seed)
    samples = two_modes_sample(4000, generator)
    verify = _covers_both_modes if direction == "forward" else _sits_on_one_mode
    return Case(args=(direction, two_modes_log_prob, samples, generator), verify=verify)


@register(
    "kl_duality.fit_gaussian",
    "forward KL (MLE) on 4000 samples of the two modes",
    hint=_FIT_HINT,
)
def _fit_forward() -> Case:
    return _fit_case("forward", seed=10)


@register("kl_duality.fit_gaussian", "reverse KL on the two modes (any seed)", hint=_FIT_HINT)
def _fit_reverse() -> Case:
    return _fit_case("reverse", seed=11)


open_question(
    "kl_duality.mode_seeking_remedies",
    "why the reverse-KL fit keeps one mode, and remedies against mode seeking",
)
