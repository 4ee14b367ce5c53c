"""Variational autoencoders (Lecture 7).

Encoders, decoders, priors, posterior flows (with or without the context h(x)), ELBO, IWAE and
ELBO surgery.

x is data, z the latent; q(z|x, phi) the encoder, p(x|z, theta) the decoder, p(z) or p(z|lambda) the
prior, q_agg(z) = 1/n sum_i q(z|x_i) the aggregated posterior. The zoo configs of the MNIST VAEs
live in dgm_lib.vae.recipes (imported by dgm_lib.zoo on first use, not here).
"""

from dgm_lib.vae.iaf import ContextIAF, ContextIAFPosterior
from dgm_lib.vae.model import (
    VAE,
    ConvDecoder,
    ConvEncoder,
    IAFPosterior,
    MLPDecoder,
    MLPEncoder,
    PosteriorSample,
)
from dgm_lib.vae.priors import (
    FlowPrior,
    MoGPrior,
    StandardNormalPrior,
    VampPrior,
    gaussian_kl,
    log_normal_diag,
    log_normal_pairwise,
)
from dgm_lib.vae.surgery import elbo_surgery, log_q_agg

__all__ = [
    "VAE",
    "MLPEncoder",
    "MLPDecoder",
    "ConvEncoder",
    "ConvDecoder",
    "IAFPosterior",
    "ContextIAF",
    "ContextIAFPosterior",
    "PosteriorSample",
    "gaussian_kl",
    "log_normal_diag",
    "log_normal_pairwise",
    "StandardNormalPrior",
    "MoGPrior",
    "VampPrior",
    "FlowPrior",
    "elbo_surgery",
    "log_q_agg",
]
