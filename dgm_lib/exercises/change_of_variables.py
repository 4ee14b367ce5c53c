"""Checks of the exercises of the chapter "Change of variables", in the order of its graded path.

Warm-up: the log-determinant H W log|det W| of Glow's invertible 1x1 convolution. Derivation: the
density of a linear flow x = L z + b by the change of variables theorem, which the check compares
with the Gaussian N(b, L L^T) that the theorem predicts. Implementations: the forward pass of an
affine coupling layer and the MAF inverse in m passes. Experiment: a small RealNVP fitted to two
moons by maximum likelihood (checked by its held-out NLL, not its digits). Open question: why a flow
cannot separate the modes of a target.

Expected answers are computed by another route than the one the student takes: the full Jacobian
W kron I_HW instead of the closed form, the multivariate normal N(b, L L^T) instead of the change of
variables.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import torch
from torch import Tensor

from dgm_lib.data.toy2d import Target, get_target
from dgm_lib.flows import toys
from dgm_lib.flows.base import Flow
from dgm_lib.flows.builders import make_realnvp

from .registry import Case, open_question, register, register_reference

DT = torch.float64

# --- warm-up: the log-determinant of the invertible 1x1 convolution

_CONV_HINT = (
    "the same c x c matrix W acts on the channels of each of the H x W pixels, so J_f is block "
    "diagonal with H * W copies of W: return height * width * torch.linalg.slogdet(weight)"
    ".logabsdet (one number, not c or H + W copies)."
)
_CONV_SIGN_HINT = (
    "det W may be negative (a reflection is invertible too): the log-determinant is log|det W|, "
    "torch.linalg.slogdet(weight).logabsdet, never torch.logdet(weight), which is NaN for det < 0."
)


@register_reference("change_of_variables.conv1x1_log_det")
def conv1x1_log_det(weight: Tensor, height: int, width: int) -> Tensor:
    """Reference: log|det J_f| = H W log|det W| of the 1x1 convolution with kernel `weight` (c, c)
    on images of `height` x `width` pixels (Kingma and Dhariwal 2018), a scalar tensor."""
    return height * width * torch.linalg.slogdet(weight).logabsdet


def _kernel(c: int, seed: int, reflect: bool = False, dtype: torch.dtype = DT) -> Tensor:
    """A seeded invertible c x c kernel (identity plus noise); `reflect` flips one row (det < 0)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.eye(c, dtype=DT) + 0.4 * torch.randn(c, c, generator=gen, dtype=DT)
    if reflect == bool(torch.linalg.det(w) > 0):
        w[0] = -w[0]
    return w.to(dtype)


def _conv_case(c: int, height: int, width: int, seed: int, reflect: bool) -> Case:
    """The expected value by another route: slogdet of the full Jacobian W kron I_HW."""
    weight = _kernel(c, seed, reflect)
    jacobian = torch.kron(weight, torch.eye(height * width, dtype=DT))
    expected = float(torch.linalg.slogdet(jacobian).logabsdet)
    return Case(args=(weight, height, width), expected=expected, rtol=1e-9, atol=1e-9)


@register(
    "change_of_variables.conv1x1_log_det",
    "c = 3 channels, 4 x 5 pixels, det W > 0: the full (60, 60) Jacobian's log|det|",
    hint=_CONV_HINT,
)
def _conv_positive() -> Case:
    return _conv_case(3, 4, 5, seed=0, reflect=False)


@register(
    "change_of_variables.conv1x1_log_det",
    "c = 4 channels, 3 x 2 pixels, det W < 0 (a reflection)",
    hint=_CONV_SIGN_HINT,
)
def _conv_negative() -> Case:
    return _conv_case(4, 3, 2, seed=1, reflect=True)


# --- derivation: the density of a linear flow x = L z + b

_LINEAR_HINT = (
    "invert the flow, z = f(x) = L^{-1} (x - b) (torch.linalg.solve(L, (x - b).T).T: solve, not "
    "multiply by L), then log p(x) = log N(z; 0, I) - log|det L| (minus: |det J_f| = 1 / |det L|) "
    "with log N(z; 0, I) = -(z^2).sum(1) / 2 - m log(2 pi) / 2, one value per row."
)
_LINEAR_SIGN_HINT = (
    "det L may be negative: subtract log|det L| = torch.linalg.slogdet(L).logabsdet, never "
    "torch.logdet(L), which is NaN for det L < 0."
)


@register_reference("change_of_variables.linear_flow_log_prob")
def linear_flow_log_prob(x: Tensor, L: Tensor, b: Tensor) -> Tensor:
    """Reference: log p(x) of x = g(z) = L z + b, z ~ N(0, I), by the change of variables.

    log p(x) = log N(L^{-1} (x - b); 0, I) - log|det L|, one value per row of x (n, m).
    """
    z = torch.linalg.solve(L, (x - b).T).T
    m = x.shape[1]
    return (
        -0.5 * (z**2).sum(dim=1)
        - 0.5 * m * math.log(2 * math.pi)
        - torch.linalg.slogdet(L).logabsdet
    )


def _linear_case(L: Tensor, b: Tensor, n: int, seed: int) -> Case:
    """The theorem's prediction: x = L z + b is N(b, L L^T), scored by MultivariateNormal."""
    x = torch.randn(n, len(b), generator=torch.Generator().manual_seed(seed), dtype=DT) * 2
    expected = torch.distributions.MultivariateNormal(b, covariance_matrix=L @ L.T).log_prob(x)
    return Case(args=(x, L, b), expected=expected, rtol=1e-9, atol=1e-9)


@register(
    "change_of_variables.linear_flow_log_prob",
    "m = 2, L = diag(2, 0.25): a stretch and a squeeze, det L = 1/2",
    hint=_LINEAR_HINT,
)
def _linear_diagonal() -> Case:
    L = torch.diag(torch.tensor([2.0, 0.25], dtype=DT))
    return _linear_case(L, torch.tensor([1.0, -1.0], dtype=DT), n=5, seed=0)


@register(
    "change_of_variables.linear_flow_log_prob",
    "m = 2, a shear and a rotation: L is not triangular, L^{-1} is not 1 / L",
    hint=_LINEAR_HINT,
)
def _linear_full() -> Case:
    L = torch.tensor([[1.0, 2.0], [-1.5, 0.5]], dtype=DT)
    return _linear_case(L, torch.tensor([0.5, 2.0], dtype=DT), n=7, seed=1)


@register(
    "change_of_variables.linear_flow_log_prob",
    "m = 3, det L < 0 (a reflection)",
    hint=_LINEAR_SIGN_HINT,
)
def _linear_reflection() -> Case:
    L = _kernel(3, seed=2, reflect=True)
    return _linear_case(L, torch.tensor([0.0, 1.0, -2.0], dtype=DT), n=6, seed=2)


# --- implementations: the affine coupling layer and the MAF inverse

Conditioner = Callable[[Tensor], tuple[Tensor, Tensor]]

_COUPLING_HINT = (
    "split x1 = x[:, :d], x2 = x[:, d:]; call mu, log_sigma = conditioner(x1) once; z2 = (x2 - mu) "
    "* exp(-log_sigma); return torch.cat([x1, z2], dim=1) and log_det = -log_sigma.sum(dim=1), one "
    "number per row (the Jacobian is prod 1/sigma)."
)
_MAF_HINT = (
    "start from x = torch.zeros_like(z) and repeat m = z.shape[1] times: mu, log_sigma = "
    "conditioner(x); x = z * exp(log_sigma) + mu. Output j only looks at x_1..x_{j-1}, so after "
    "pass k the first k coordinates are final. log_det = +log_sigma.sum(dim=1) from the last pass "
    "(g multiplies by sigma, f divides)."
)


@register_reference("change_of_variables.coupling_forward")
def _coupling_forward(x: Tensor, d: int, conditioner: Conditioner) -> tuple[Tensor, Tensor]:
    """Reference: z = [x_1, (x_2 - mu(x_1)) / sigma(x_1)], log|det J_f| = -sum log sigma(x_1)."""
    mu, log_sigma = conditioner(x[:, :d])
    return torch.cat([x[:, :d], (x[:, d:] - mu) / log_sigma.exp()], dim=1), -log_sigma.sum(dim=1)


@register_reference("change_of_variables.maf_inverse")
def _maf_inverse(z: Tensor, conditioner: Conditioner) -> tuple[Tensor, Tensor]:
    """Reference: x_j = z_j sigma_j(x_{1:j-1}) + mu_j(x_{1:j-1}), one j at a time.

    Log|det J_g| = sum log sigma.
    """
    x = torch.zeros_like(z)
    for j in range(z.shape[1]):
        mu, log_sigma = conditioner(x)
        x = torch.cat(
            [
                x[:, :j],
                z[:, j : j + 1] * log_sigma[:, j : j + 1].exp() + mu[:, j : j + 1],
                x[:, j + 1 :],
            ],
            1,
        )
    return x, conditioner(x)[1].sum(dim=1)


def _mlp_conditioner(d_in: int, d_out: int, seed: int) -> Conditioner:
    """A seeded float64 one-hidden-layer tanh MLP x_1 -> (mu, log_sigma), log_sigma tanh-bounded."""
    gen = torch.Generator().manual_seed(seed)
    w1, w2 = (
        torch.randn(*shape, generator=gen, dtype=torch.float64)
        for shape in ((16, d_in), (2 * d_out, 16))
    )

    def conditioner(x1: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = (torch.tanh(x1 @ w1.T) @ w2.T).chunk(2, dim=1)
        return mu, torch.tanh(raw)

    return conditioner


def _autoregressive_conditioner(m: int, seed: int, nonlinear: bool) -> Conditioner:
    """A seeded conditioner whose column j depends only on x_{1:j-1} (strictly lower triangular
    weights)."""
    gen = torch.Generator().manual_seed(seed)
    a, b, c = (
        torch.tril(torch.randn(m, m, generator=gen, dtype=torch.float64), -1) for _ in range(3)
    )
    shift = 0.5 * torch.randn(m, generator=gen, dtype=torch.float64)

    def conditioner(x: Tensor) -> tuple[Tensor, Tensor]:
        mu = x @ a.T + (torch.sin(x @ c.T) if nonlinear else 0)
        return mu, 0.5 * torch.tanh(x @ b.T) + shift

    return conditioner


def _z(batch: int, m: int, seed: int) -> Tensor:
    return torch.randn(batch, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _coupling_case(x: Tensor, d: int, conditioner: Conditioner) -> Case:
    return Case(
        args=(x, d, conditioner),
        expected=_coupling_forward(x, d, conditioner),
        rtol=1e-9,
        atol=1e-10,
    )


def _maf_case(z: Tensor, conditioner: Conditioner) -> Case:
    return Case(args=(z, conditioner), expected=_maf_inverse(z, conditioner), rtol=1e-9, atol=1e-10)


@register(
    "change_of_variables.coupling_forward",
    "m = 2, d = 1, a linear conditioner",
    hint=_COUPLING_HINT,
)
def _coupling_linear() -> Case:
    x = torch.tensor([[1.0, 2.0], [-0.5, 0.0], [0.0, 3.0]], dtype=torch.float64)
    return _coupling_case(x, 1, lambda x1: (0.5 * x1, math.log(2.0) * x1))


@register(
    "change_of_variables.coupling_forward",
    "m = 5, d = 2, an MLP conditioner, batch of 4",
    hint=_COUPLING_HINT,
)
def _coupling_mlp() -> Case:
    return _coupling_case(_z(4, 5, 1), 2, _mlp_conditioner(2, 3, seed=2))


@register(
    "change_of_variables.coupling_forward",
    "m = 6, d = 5: one transformed coordinate",
    hint=_COUPLING_HINT,
)
def _coupling_last() -> Case:
    return _coupling_case(_z(3, 6, 3), 5, _mlp_conditioner(5, 1, seed=4))


@register(
    "change_of_variables.maf_inverse",
    "m = 1: a constant conditioner, x = 2 z + 0.5",
    hint=_MAF_HINT,
)
def _maf_constant() -> Case:
    z = torch.tensor([[0.0], [1.0], [-2.0]], dtype=torch.float64)
    return _maf_case(z, lambda x: (torch.full_like(x, 0.5), torch.full_like(x, math.log(2.0))))


@register(
    "change_of_variables.maf_inverse", "m = 4, a linear autoregressive conditioner", hint=_MAF_HINT
)
def _maf_linear() -> Case:
    return _maf_case(_z(3, 4, 5), _autoregressive_conditioner(4, seed=6, nonlinear=False))


@register(
    "change_of_variables.maf_inverse",
    "m = 6, a nonlinear autoregressive conditioner, batch 8",
    hint=_MAF_HINT,
)
def _maf_nonlinear() -> Case:
    return _maf_case(_z(8, 6, 7), _autoregressive_conditioner(6, seed=8, nonlinear=True))


# --- the experiment: a small RealNVP fitted to two moons by maximum likelihood

FIT_TARGET = "two_moons"
KL_BAND = 0.6  # nats: the test NLL must come within this of H(pi); the best Gaussian is 0.9 away
_FIT_HINT = (
    "train the flow you are given: optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2); "
    "every step draw fresh x = target.sample(256, generator), loss = -flow.log_prob(x).mean() "
    "(the NLL: minus), optimizer.zero_grad(), loss.backward(), optimizer.step(); a few hundred "
    "steps; return the flow."
)


@register_reference("change_of_variables.fit_flow")
def fit_flow(flow: Flow, target: Target, generator: torch.Generator, steps: int = 300) -> Flow:
    """Reference: fit `flow` to `target` by maximum likelihood (forward KL) and return it.

    Adam (learning rate 1e-2) on a fresh batch of 256 samples of the target every step.

    Args:
        flow: the flow to train (in place).
        target: a toy2d target with `sample(n, generator)`.
        generator: the random numbers of the batches.
        steps: the number of Adam steps.

    Returns:
        The trained flow.
    """
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = -flow.log_prob(target.sample(256, generator)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return flow


def small_realnvp(seed: int) -> Flow:
    """The experiment's flow: RealNVP with 4 couplings of (32, 32) hidden units, seeded weights,
    built without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_realnvp(m=2, depth=4, hidden=(32, 32))


@lru_cache(maxsize=None)
def _entropy(target: str) -> float:
    return toys.heldout_entropy(target)[0]


def _test_nll(flow: Flow) -> float:
    """The held-out test NLL (20,000 samples of the target), nats."""
    with torch.no_grad():
        return toys.heldout_nll(flow.log_prob, FIT_TARGET)[0]


def _fits_the_moons(untrained_nll: float) -> Callable[[object], str | None]:
    """verify(result): the returned flow's test NLL lies within KL_BAND of H(pi)."""

    def verify(result: object) -> str | None:
        if not callable(getattr(result, "log_prob", None)):
            return f"return the trained flow (an object with log_prob), got {type(result).__name__}"
        nll, entropy = _test_nll(result), _entropy(FIT_TARGET)
        bound = entropy + KL_BAND
        what = f"the test NLL of your flow is {nll:.3g} nats, the band is below {bound:.2f}"
        if not math.isfinite(nll) or nll > untrained_nll - 0.1:
            return (
                f"{what}, and the untrained flow had {untrained_nll:.2f}: it did not learn; "
                "minimize -log_prob (not +log_prob), call optimizer.zero_grad() before every "
                "backward (else the gradients pile up) and optimizer.step() after it"
            )
        if nll > bound:
            return (
                f"{what} (H(pi) = {entropy:.2f}): it learned, but not enough; draw fresh samples "
                "every step (a fixed batch over-fits), a few hundred steps at learning rate 1e-2"
            )
        return None

    return verify


def _fit_case(seed: int) -> Case:
    flow = small_realnvp(seed)
    generator = torch.Generator().manual_seed(seed)
    verify = _fits_the_moons(_test_nll(flow))
    return Case(args=(flow, get_target(FIT_TARGET), generator), verify=verify)


@register(
    "change_of_variables.fit_flow",
    "RealNVP of depth 4 on two moons: test NLL within 0.6 nats of H(pi) (any seed)",
    hint=_FIT_HINT,
)
def _fit_two_moons() -> Case:
    return _fit_case(seed=11)


open_question(
    "change_of_variables.flows_cannot_tear",
    "why a flow cannot separate the modes of a target, and what that costs",
)
