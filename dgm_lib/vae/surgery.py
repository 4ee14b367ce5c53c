"""ELBO surgery (Hoffman & Johnson, 2016).

The average KL splits into mutual information and marginal KL.

1/n sum_i KL(q(z|x_i) || p(z)) = I_q[x, z] + KL(q_agg(z) || p(z)), with the aggregated posterior
q_agg(z) = 1/n sum_i q(z|x_i), I_q[x, z] = 1/n sum_i KL(q(z|x_i) || q_agg(z)) in [0, log n], so that
1/n sum_i L_i = reconstruction - I_q[x, z] - KL(q_agg || p): the prior appears only in the marginal
KL (Lecture 7). Hoffman & Johnson, ELBO surgery: yet another way to carve up the variational
evidence lower bound, NIPS AABI 2016.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dgm_lib.checks import check_positive_int, check_tensor, check_vector
from dgm_lib.metrics import mean_and_se
from dgm_lib.vae.model import VAE
from dgm_lib.vae.priors import PAIRWISE_CHUNK, check_gaussian, log_normal_diag

TERMS = ("recon", "mi", "marginal_kl", "avg_kl", "elbo")


def _encode(model: VAE, batches: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor | None]:
    """(mu, log_var, h) of all batches, concatenated; h is None without a context posterior."""
    parts = [model.encode_with_context(b) for b in batches]
    mu, log_var = (torch.cat([p[k] for p in parts], 0) for k in (0, 1))
    h = torch.cat([p[2] for p in parts], 0) if model.context_posterior else None
    return mu, log_var, h


def log_q_agg(z: Tensor, mu: Tensor, log_var: Tensor) -> Tensor:
    """The aggregated posterior: log q_agg(z) = logsumexp_n log N(z; mu_n, sigma_n^2) - log n.

    Args:
        z: latent points (M, d).
        mu: the n encoder means (n, d).
        log_var: their log-variances (n, d).

    Returns:
        log q_agg(z), shape (M,), computed in chunks of rows of z.

    Example:
        >>> mu, log_var = torch.zeros(3, 2), torch.zeros(3, 2)  # three copies of N(0, I)
        >>> round(log_q_agg(torch.zeros(1, 2), mu, log_var).item(), 4)
        -1.8379
    """
    check_gaussian(mu, log_var)
    check_vector(z, "z", mu.shape[1])
    rows = max(1, PAIRWISE_CHUNK // mu.numel())
    chunks = [
        torch.logsumexp(log_normal_diag(c[:, None, :], mu, log_var), 1) for c in z.split(rows)
    ]
    return torch.cat(chunks, 0) - math.log(mu.shape[0])


def log_q_agg_context(model: VAE, z: Tensor, mu: Tensor, log_var: Tensor, h: Tensor) -> Tensor:
    """log q_agg(z) = logsumexp_n log q(z|x_n) - log n for a context-conditioned posterior flow.

    log q(z|x_n) = log N(f_n(z); mu_n, sigma_n^2) + log|det J_{f_n}(z)|, with f_n the inverse of
    the flow under the context h(x_n): every pair (z_m, x_n) needs its own sequential inversion,
    O(M n) flow passes.

    Args:
        model: a VAE whose posterior flow is a ContextIAFPosterior.
        z: latent points (M, d).
        mu: the n encoder means (n, d).
        log_var: their log-variances (n, d).
        h: their contexts h(x_n) (n, context_dim).

    Returns:
        log q_agg(z), shape (M,).
    """
    if not model.context_posterior:
        raise ValueError("model must have a ContextIAFPosterior; use log_q_agg otherwise")
    check_gaussian(mu, log_var)
    check_vector(z, "z", mu.shape[1])
    n = mu.shape[0]
    rows = max(1, PAIRWISE_CHUNK // (n * (h.shape[1] + mu.shape[1])))
    out = []
    for c in z.split(rows):
        pairs = c[:, None, :].expand(len(c), n, -1).reshape(-1, c.shape[1])
        z0, log_det = model.posterior_flow.inverse(pairs, h.repeat(len(c), 1))
        log_q = log_normal_diag(z0.reshape(len(c), n, -1), mu, log_var)
        out.append(torch.logsumexp(log_q + log_det.reshape(len(c), n), 1))
    return torch.cat(out, 0) - math.log(n)


@torch.no_grad()
def elbo_surgery(
    model: VAE,
    x: Tensor,
    n_samples: int = 1,
    generator: torch.Generator | None = None,
    *,
    batch_size: int = 500,
    aggregate: bool = True,
) -> dict[str, float]:
    """The ELBO surgery terms of `model` on data x (n points), averaged over the points.

    recon = 1/n sum_i E_q log p(x_i|z), avg_kl = 1/n sum_i E_q[log q(z|x_i) - log p(z)],
    mi = 1/n sum_i E_q[log q(z|x_i) - log q_agg(z)] (the mutual information I_q[x, z] <= log n),
    marginal_kl = 1/n sum_i E_q[log q_agg(z) - log p(z)] and elbo = recon - avg_kl, with
    avg_kl = mi + marginal_kl exactly (Hoffman & Johnson, 2016): every term uses the same draws
    z ~ q(z|x_i), and q_agg is over all n encodings. With a posterior flow, q is its push-forward;
    with a context-conditioned one (ContextIAFPosterior), q_agg needs a flow inversion for every
    pair of points (log_q_agg_context), O(n^2) sequential passes.

    Args:
        model: a VAE.
        x: the data (n, ...), n >= 2.
        n_samples: draws z ~ q(z|x_i) per point.
        generator: the source of the draws.
        batch_size: points per encoder/decoder pass.
        aggregate: whether to estimate the terms of q_agg, mi and marginal_kl (False: left out).

    Returns:
        {term: mean} for recon, mi, marginal_kl, avg_kl, elbo, with `<term>_se` the standard error
        over the n points (std / sqrt(n)), plus log_n and n.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a dgm_lib.vae.VAE, got {type(model).__name__}")
    check_positive_int(n_samples, "n_samples")
    check_positive_int(batch_size, "batch_size")
    check_tensor(x, "x")
    if not isinstance(aggregate, bool):
        raise TypeError(f"aggregate must be a bool, got {type(aggregate).__name__} {aggregate!r}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(
            f"x must hold at least 2 data points (q_agg over one point is its posterior), got {n}"
        )
    batches = x.split(batch_size)
    mu, log_var, h = _encode(model, batches)
    sums = {"recon": 0.0, "log_q": 0.0, "log_agg": 0.0, "log_p": 0.0}
    for _ in range(n_samples):
        post = model.sample_q(mu, log_var, 1, generator, h)
        z0, z = post.z0[0], post.z[0]
        zs = z.split(batch_size)
        sums["recon"] = sums["recon"] + torch.cat(
            [model.log_likelihood(b, c) for b, c in zip(batches, zs)]
        )
        sums["log_q"] = sums["log_q"] + post.log_q[0]
        if aggregate and model.context_posterior:
            sums["log_agg"] = sums["log_agg"] + log_q_agg_context(model, z, mu, log_var, h)
        elif aggregate:
            sums["log_agg"] = sums["log_agg"] + log_q_agg(z0, mu, log_var) - post.log_det[0]
        sums["log_p"] = sums["log_p"] + torch.cat([model.prior.log_prob(c) for c in zs])
    if not aggregate:
        sums["log_agg"] = torch.zeros_like(sums["log_q"])  # unused: mi and marginal_kl left out
    recon, log_q, log_agg, log_p = (
        sums[k].double() / n_samples for k in ("recon", "log_q", "log_agg", "log_p")
    )
    per_point = {
        "recon": recon,
        "mi": log_q - log_agg,
        "marginal_kl": log_agg - log_p,
        "avg_kl": log_q - log_p,
        "elbo": recon - (log_q - log_p),
    }
    out: dict[str, float] = {}
    for name in TERMS if aggregate else ("recon", "avg_kl", "elbo"):
        out[name], out[f"{name}_se"] = mean_and_se(per_point[name])
    out["log_n"], out["n"] = math.log(n), n
    return out
