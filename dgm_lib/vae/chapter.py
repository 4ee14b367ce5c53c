"""Chapter 03 "ELBO surgery": the test metrics of the shipped VAEs (dgm_lib.vae.recipes).

The chapter's test digits are `mnist_images("test", "binarized")` (dgm_lib.data.mnist): one fixed
Bernoulli draw of the pixel intensities.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgm_lib.metrics import mean_and_se
from dgm_lib.vae.model import VAE
from dgm_lib.vae.surgery import elbo_surgery


@torch.no_grad()
def evaluate(
    model: VAE,
    x: Tensor,
    *,
    k: int = 100,
    n_samples: int = 10,
    generator: torch.Generator | None = None,
    aggregate: bool | None = None,
) -> dict[str, float]:
    """Test metrics per digit in nats: the ELBO surgery terms and the IWAE bound.

    Args:
        model: a trained VAE.
        x: binarized digits (N, 1, 28, 28).
        k: importance samples of the IWAE bound log 1/k sum_s p(x, z_s) / q(z_s|x).
        n_samples: posterior draws per digit of elbo_surgery.
        generator: the source of every draw.
        aggregate: whether to estimate mi and marginal_kl, the terms of q_agg; None: unless the
            posterior is context-conditioned (its q_agg costs N^2 sequential flow inversions per
            draw, minutes for the 1,000 test digits on a CPU).

    Returns:
        elbo_surgery(model, x, n_samples) (elbo, recon, avg_kl, mi and marginal_kl if aggregate,
        and their standard errors) plus iwae, the mean IWAE bound (an estimate of log p(x|theta)),
        and iwae_se.
    """
    if aggregate is None:
        aggregate = not model.context_posterior
    out = elbo_surgery(model, x, n_samples, generator, aggregate=aggregate)
    iwae = torch.cat([model.iwae(b, k, generator) for b in x.split(100)])
    out["iwae"], out["iwae_se"] = mean_and_se(iwae)
    return out
