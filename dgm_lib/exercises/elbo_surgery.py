"""Checks of the exercises of the chapter "ELBO surgery", in the order of its graded path.

Warm-up: the KL term of the ELBO, KL(N(mu, diag sigma^2) || N(0, I)). Derivation: the marginal KL
of a linear-Gaussian encoder, which the ELBO surgery predicts equal to average KL - MI.
Implementations: the mutual information estimator and a flow prior's density. Experiment: the MI of
the zoo's standard VAE on the first n test digits (checked by its properties: at most log n, near
log n for a few digits, well below it for 1,000). Open question: what a better prior can and cannot
buy.

Expected answers come by another route than the student's: `gaussian_kl`, `log_q_agg` and
`log_normal_diag` of dgm_lib.vae; the surgery identity (average KL - MI) for the marginal KL;
`FlowPrior.log_prob` for a MAF prior, and the closed-form Gaussian for an elementwise affine flow.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from dgm_lib.flows import ElementwiseAffine, make_maf
from dgm_lib.flows.base import Transform
from dgm_lib.vae.priors import FlowPrior, gaussian_kl, log_normal_diag
from dgm_lib.vae.surgery import log_q_agg

from .registry import Case, open_question, register, register_reference

DT = torch.float64
_FLOAT32_HINT = (
    "do not create float64 constants; use math.log for Python numbers so everything follows the "
    "dtype of the inputs."
)

# --- warm-up: the KL term of the ELBO

_KL_HINT = (
    "KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_j (sigma_j^2 + mu_j^2 - 1 - log sigma_j^2), one "
    "number per row; check the signs: it is 0 for mu = 0, sigma = 1 and grows with |mu|."
)
_LOG_VAR_HINT = (
    "log_var is log sigma^2: the variance is sigma^2 = exp(log_var), and the log-term log sigma^2 "
    "is log_var itself (no further log, no square)."
)
_SUM_HINT = (
    "the KL of a diagonal Gaussian is the sum of the d one-dimensional KLs: .sum(-1) over the "
    "latent coordinates, not .mean(-1)."
)


@register_reference("elbo_surgery.kl_to_standard_normal")
def kl_to_standard_normal(mu: Tensor, log_var: Tensor) -> Tensor:
    """Reference: KL(N(mu, diag exp(log_var)) || N(0, I)) per row, shape (B,)."""
    return 0.5 * (log_var.exp() + mu**2 - 1 - log_var).sum(-1)


def _kl_case(mu: list, log_var: list, dtype: torch.dtype = DT) -> Case:
    mu_t, log_var_t = torch.tensor(mu, dtype=dtype), torch.tensor(log_var, dtype=dtype)
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == DT else {"rtol": 1e-5, "atol": 1e-6}
    return Case(args=(mu_t, log_var_t), expected=gaussian_kl(mu_t, log_var_t), **tol)


@register(
    "elbo_surgery.kl_to_standard_normal",
    "unit variances (log_var = 0), d = 1: KL = mu^2 / 2",
    hint=_KL_HINT,
)
def _kl_unit() -> Case:
    return _kl_case([[0.0], [1.0], [-2.0], [0.5]], [[0.0], [0.0], [0.0], [0.0]])


@register(
    "elbo_surgery.kl_to_standard_normal",
    "d = 1, mu = 0 and log-variances -3 to 2",
    hint=_LOG_VAR_HINT,
)
def _kl_log_var() -> Case:
    return _kl_case([[0.0], [0.0], [0.0], [0.0]], [[-3.0], [-0.5], [0.7], [2.0]])


@register(
    "elbo_surgery.kl_to_standard_normal",
    "a batch of 3 posteriors in d = 4 dimensions",
    hint=_SUM_HINT,
)
def _kl_batch() -> Case:
    gen = torch.Generator().manual_seed(0)
    mu, log_var = (
        torch.randn(3, 4, generator=gen, dtype=DT),
        torch.randn(3, 4, generator=gen, dtype=DT),
    )
    return _kl_case(mu.tolist(), log_var.tolist())


@register(
    "elbo_surgery.kl_to_standard_normal",
    "float32 inputs: the KL stays float32",
    hint=_FLOAT32_HINT,
)
def _kl_float32() -> Case:
    return _kl_case([[0.3, -1.0], [2.0, 0.1]], [[0.2, -1.0], [-2.0, 0.5]], dtype=torch.float32)


# --- derivation: the marginal KL of a linear-Gaussian encoder

_AGG_VARIANCE_HINT = (
    "q_agg is the law of z = a x + b + sigma eps with x ~ N(m, s^2) and eps ~ N(0, 1) independent: "
    "a Gaussian whose variance is a^2 s^2 + sigma^2 (variances add: not a^2 s^2 alone, not "
    "(a s + sigma)^2); then KL(N(mean, v) || N(0, 1)) = (v + mean^2 - 1 - log v) / 2."
)
_AGG_MEAN_HINT = (
    "the mean of q_agg is E[a x + b] = a m + b (not b alone, not m), and a may be negative: only "
    "a^2 enters the variance; KL(N(a m + b, v) || N(0, 1)) = (v + (a m + b)^2 - 1 - log v) / 2."
)


@register_reference("elbo_surgery.linear_gaussian_marginal_kl")
def linear_gaussian_marginal_kl(
    m: Tensor, s: Tensor, a: Tensor, b: Tensor, sigma: Tensor
) -> Tensor:
    """Reference: KL(q_agg || N(0, 1)) for x ~ N(m, s^2), q(z|x) = N(a x + b, sigma^2).

    q_agg = N(a m + b, a^2 s^2 + sigma^2), entry by entry.
    """
    mean, var = a * m + b, a**2 * s**2 + sigma**2
    return 0.5 * (var + mean**2 - 1 - torch.log(var))


def _surgery_prediction(m: Tensor, s: Tensor, a: Tensor, b: Tensor, sigma: Tensor) -> Tensor:
    """The ELBO surgery's prediction: average KL - MI, both in closed form.

    E_x KL(N(a x + b, sigma^2) || N(0, 1)) with E(a x + b)^2 = a^2 s^2 + (a m + b)^2, and
    MI = 1/2 log(1 + a^2 s^2 / sigma^2).
    """
    average_kl = 0.5 * (sigma**2 + a**2 * s**2 + (a * m + b) ** 2 - 1 - torch.log(sigma**2))
    mi = 0.5 * torch.log1p(a**2 * s**2 / sigma**2)
    return average_kl - mi


def _marginal_case(m: list, s: list, a: list, b: list, sigma: list) -> Case:
    args = tuple(torch.tensor(v, dtype=DT) for v in (m, s, a, b, sigma))
    return Case(args=args, expected=_surgery_prediction(*args), rtol=1e-9, atol=1e-9)


@register(
    "elbo_surgery.linear_gaussian_marginal_kl",
    "m = b = 0: KL(q_agg || p) = average KL - MI (ELBO surgery)",
    hint=_AGG_VARIANCE_HINT,
)
def _marginal_centred() -> Case:
    return _marginal_case(
        [0.0] * 4, [1.5, 1.0, 2.0, 0.5], [0.8, 1.0, 0.3, 2.0], [0.0] * 4, [1.0, 0.3, 0.1, 2.0]
    )


@register(
    "elbo_surgery.linear_gaussian_marginal_kl",
    "data mean m != 0, shifts b != 0 and negative slopes a: the same prediction",
    hint=_AGG_MEAN_HINT,
)
def _marginal_shifted() -> Case:
    return _marginal_case(
        [1.0, -2.0, 0.5], [1.5, 1.0, 0.7], [-0.8, 1.2, -2.0], [0.3, -1.0, 2.0], [0.5, 0.2, 1.0]
    )


_MI_HINT = (
    "build the (n, n) matrix of log N(z_i; mu_j, diag exp(log_var_j)) by broadcasting z[:, None] "
    "against mu[None]; its diagonal is log q(z_i|x_i), torch.logsumexp over j minus log n is log "
    "q_agg(z_i); return the mean of the difference. Never compute log(mean(exp(...))): densities "
    "under- or overflow."
)
_FLOW_HINT = (
    "z_star, log_det = transform(z) gives f(z) and log|det J_f(z)|; log N(z*; 0, I) = -|z*|^2 / 2 "
    "- (d/2) log(2 pi) with d = z.shape[1]; add (not subtract) log_det, one number per row."
)


@register_reference("elbo_surgery.mutual_information")
def mutual_information(mu: Tensor, log_var: Tensor, z: Tensor) -> Tensor:
    """Reference: 1/n sum_i [log q(z_i|x_i) - log q_agg(z_i)], a scalar."""
    return (log_normal_diag(z, mu, log_var) - log_q_agg(z, mu, log_var)).mean()


@register_reference("elbo_surgery.flow_prior_log_prob")
def flow_prior_log_prob(transform: Transform, z: Tensor) -> Tensor:
    """Reference: log p(z|lambda) = log N(f(z); 0, I) + log|det J_f(z)|, shape (B,)."""
    return FlowPrior(transform, z.shape[1]).log_prob(z)


def _posteriors(
    n: int, d: int, sigma: float, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, ...]:
    """n random posteriors N(mu_i, sigma_i^2 I) in d dimensions (sigma_i around `sigma`) and one
    draw z_i from each."""
    gen = torch.Generator().manual_seed(seed)
    mu = 1.5 * torch.randn(n, d, generator=gen, dtype=dtype)
    log_var = 2 * math.log(sigma) + 0.5 * torch.randn(n, d, generator=gen, dtype=dtype)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(n, d, generator=gen, dtype=dtype)
    return mu, log_var, z


def _mi_case(n: int, d: int, sigma: float, seed: int, dtype: torch.dtype = torch.float64) -> Case:
    mu, log_var, z = _posteriors(n, d, sigma, seed, dtype)
    expected = (log_normal_diag(z, mu, log_var) - log_q_agg(z, mu, log_var)).mean()
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    return Case(args=(mu, log_var, z), expected=expected, **tol)


@register("elbo_surgery.mutual_information", "200 overlapping posteriors in 2D", hint=_MI_HINT)
def _mi_overlapping() -> Case:
    return _mi_case(n=200, d=2, sigma=0.5, seed=0)


@register(
    "elbo_surgery.mutual_information",
    "50 narrow posteriors in 300 dimensions (sigma ~ 0.01): their densities overflow outside log "
    "space",
    hint=_MI_HINT,
)
def _mi_narrow() -> Case:
    return _mi_case(n=50, d=300, sigma=1e-2, seed=1)


@register(
    "elbo_surgery.mutual_information",
    "float32 inputs: the estimate stays float32",
    hint=_FLOAT32_HINT,
)
def _mi_float32() -> Case:
    return _mi_case(n=100, d=2, sigma=0.3, seed=2, dtype=torch.float32)


def _random_maf(seed: int, dtype: torch.dtype = torch.float64) -> Transform:
    """A 2-layer MAF on R^2 with non-trivial random weights, built without the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = make_maf(m=2, depth=2, hidden=(16,))
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return flow.transform.to(dtype).eval()


def _flow_case(transform: Transform, z: Tensor) -> Case:
    with torch.no_grad():
        expected = FlowPrior(transform, z.shape[1]).log_prob(z)
    tol = {"rtol": 1e-9, "atol": 1e-9} if z.dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    return Case(args=(transform, z), expected=expected, **tol)


@register(
    "elbo_surgery.flow_prior_log_prob", "a random 2-layer MAF prior, 100 latents", hint=_FLOW_HINT
)
def _flow_maf() -> Case:
    z = torch.randn(100, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return _flow_case(_random_maf(seed=3), z)


@register(
    "elbo_surgery.flow_prior_log_prob",
    "an elementwise affine f(z) = (z - m) / s in 3D: the prior is N(m, diag s^2), in closed form",
    hint=_FLOW_HINT,
)
def _flow_affine() -> Case:
    mean = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64)
    log_std = torch.tensor([0.4, -0.7, 0.1], dtype=torch.float64)
    transform = ElementwiseAffine(3).to(torch.float64)
    with torch.no_grad():
        transform.mu.copy_(mean)
        transform.log_sigma.copy_(log_std)
    z = torch.randn(20, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return Case(
        args=(transform, z), expected=log_normal_diag(z, mean, 2 * log_std), rtol=1e-9, atol=1e-9
    )


@register(
    "elbo_surgery.flow_prior_log_prob",
    "a float32 MAF and float32 latents: the log-density stays float32",
    hint=_FLOAT32_HINT,
)
def _flow_float32() -> Case:
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    return _flow_case(_random_maf(seed=5, dtype=torch.float32), z)


# --- the experiment: the MI of the zoo's standard VAE against log n

MI_SIZES = (5, 50, 1000)
_MI_SIZE_HINT = (
    "mu, log_var = model.encode(x) under torch.no_grad(); one draw per digit, z = mu + exp(log_var "
    "/ 2) * eps with eps from torch.randn(mu.shape, generator=generator); for each n the MI of the "
    "first n digits alone: z[:n], mu[:n], log_var[:n] (your mutual_information, or log_normal_diag "
    "minus log_q_agg, averaged); return one float per size."
)


@lru_cache(maxsize=1)
def _zoo_vae_and_digits() -> tuple:
    """The zoo's standard VAE (CPU, eval) and the 1,000 binarized test digits, loaded once."""
    from dgm_lib import zoo
    from dgm_lib.data.mnist import mnist_images

    return zoo.load("vae_standard", device="cpu").eval(), mnist_images("test", "binarized")


@register_reference("elbo_surgery.mi_by_size")
def mi_by_size(model, x: Tensor, sizes, generator: torch.Generator) -> list[float]:
    """Reference: the MI estimate of the first n digits of x, for each n in sizes.

    One draw z_i ~ q(z|x_i) per digit; q_agg over the same n posteriors.
    """
    with torch.no_grad():
        mu, log_var = model.encode(x)
        z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=generator)
        return [mutual_information(mu[:n], log_var[:n], z[:n]).item() for n in sizes]


def _mi_sizes_property(result: object) -> str | None:
    """None if the MI estimates behave as the surgery says on the zoo VAE, else what is wrong."""
    if not isinstance(result, (tuple, list)) or len(result) != len(MI_SIZES):
        return f"return a list of {len(MI_SIZES)} numbers, one MI per size {MI_SIZES}"
    values = [float(v) for v in result]
    shown = ", ".join(f"n = {n}: {v:.3f}" for n, v in zip(MI_SIZES, values))
    if not all(math.isfinite(v) for v in values):
        return f"the estimates ({shown}) should be finite"
    for n, v in zip(MI_SIZES, values):
        if v < -0.05:
            return (
                f"the MI of n = {n} digits is {v:.3f} < 0 ({shown}); an MI is >= 0: did you forget "
                "the - log n of log q_agg = logsumexp_j log q(z|x_j) - log n?"
            )
        if v > math.log(n) + 1e-3:
            return (
                f"the MI of n = {n} digits is {v:.3f}, above its ceiling log n = {math.log(n):.3f} "
                f"({shown}); q_agg must be the mixture of exactly the n posteriors whose draws you "
                "average (mu[:n], log_var[:n])"
            )
    small, large = values[0], values[-1]
    if small < math.log(MI_SIZES[0]) - 0.3:
        return (
            f"{MI_SIZES[0]} digits have nearly disjoint posteriors, so their MI should be close to "
            f"log {MI_SIZES[0]} = {math.log(MI_SIZES[0]):.3f}; got {small:.3f} ({shown})"
        )
    if not 5.45 < large < 6.05:
        why = (
            "did you use z = mu instead of a draw z ~ q(z|x)? Without the noise the estimate "
            "overstates the MI"
            if large >= 6.05
            else "is the noise scale exp(log_var / 2), the standard deviation?"
        )
        return (
            f"the MI of the 1000 test digits should lie near 5.7 nats, well below log 1000 = 6.908 "
            f"(their posteriors overlap); got {large:.3f} ({shown}): {why}"
        )
    return None


@register(
    "elbo_surgery.mi_by_size",
    "the zoo's vae_standard on the first 5, 50 and 1000 test digits (any seed)",
    hint=_MI_SIZE_HINT,
)
def _mi_sizes() -> Case:
    model, x = _zoo_vae_and_digits()
    generator = torch.Generator().manual_seed(20)
    return Case(args=(model, x, MI_SIZES, generator), verify=_mi_sizes_property)


open_question(
    "elbo_surgery.what_a_prior_can_buy",
    "what a better prior can and cannot improve, and what posterior collapse does to the terms",
)
