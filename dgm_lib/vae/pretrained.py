"""Zoo configs: 2D-latent MNIST VAEs, one per prior, for the chapter "ELBO surgery" (Lecture 7).

"vae_standard" (N(0, I)), "vae_mog" (mixture of Gaussians), "vae_vamp" (VampPrior), "vae_flow_prior" (MAF prior)
and "vae_iaf_posterior" (N(0, I) prior, IAF posterior) share the architecture (MLP encoder and Bernoulli decoder,
z_dim = 2) and the training budget (Adam, EPOCHS epochs over the 4,000 training digits of load_mnist(),
dynamically binarized: every epoch draws x ~ Bernoulli(pixel intensities) afresh). `binarized_mnist("test")` is
the fixed binarization the chapter and `evaluate` use. Regenerate one with `python -m dgm_lib.zoo train vae_mog`
(28-37 s each on one CPU thread, OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from dgm_lib.data.mnist import load_mnist
from dgm_lib.flows.builders import make_maf
from dgm_lib.flows.base import check_positive_int
from dgm_lib.training import History, ShuffledBatches, fit
from dgm_lib.vae.model import VAE, IAFPosterior, MLPDecoder, MLPEncoder
from dgm_lib.vae.priors import FlowPrior, MoGPrior, StandardNormalPrior, VampPrior
from dgm_lib.vae.surgery import elbo_surgery
from dgm_lib.zoo import register

Z_DIM = 2
ENCODER_HIDDEN, DECODER_HIDDEN = (256, 256), (256, 256)
EPOCHS, BATCH_SIZE, LR, DATA_SEED = 100, 100, 1e-3, 1
TEST_SEED = 2026  # the fixed binarization of the test digits
N_COMPONENTS, N_PSEUDO, FLOW_DEPTH, FLOW_HIDDEN = 10, 100, 4, (64, 64)
MAX_BYTES = 3_000_000


def binarized_mnist(split: str = "test", seed: int = TEST_SEED) -> Tensor:
    """The digits of load_mnist(split), binarized once: x ~ Bernoulli(pixel intensity) with `seed`, (N, 1, 28, 28)."""
    images, _ = load_mnist(split)
    return torch.bernoulli(images, generator=torch.Generator().manual_seed(seed))


def _binarize(images: Tensor, generator: torch.Generator) -> Tensor:
    """Dynamic binarization: x ~ Bernoulli(pixel intensity), drawn afresh every epoch."""
    return torch.bernoulli(images, generator=generator)


def _build(prior: str) -> VAE:
    encoder = MLPEncoder(784, ENCODER_HIDDEN, Z_DIM)
    decoder = MLPDecoder(Z_DIM, DECODER_HIDDEN, (1, 28, 28), "bernoulli")
    posterior_flow = None
    if prior == "mog":
        p = MoGPrior(Z_DIM, N_COMPONENTS)
    elif prior == "vamp":
        p = VampPrior(encoder, N_PSEUDO, (1, 28, 28))
    elif prior == "flow":
        p = FlowPrior(make_maf(Z_DIM, FLOW_DEPTH, FLOW_HIDDEN), Z_DIM)
    else:
        p = StandardNormalPrior(Z_DIM)
        if prior == "iaf":
            posterior_flow = IAFPosterior(Z_DIM, FLOW_DEPTH, FLOW_HIDDEN)
    return VAE(encoder, decoder, p, posterior_flow)


def _train(model: VAE, epochs: int = EPOCHS, progress: bool = False) -> History:
    """Adam on -ELBO over dynamically binarized training digits; a VampPrior starts from N_PSEUDO training digits."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    images = load_mnist("train")[0]  # stays on the CPU with the generator; fit() moves each batch to the model
    if isinstance(model.prior, VampPrior):
        pick = torch.randperm(len(images), generator=generator)[: model.prior.n_pseudo]
        with torch.no_grad():
            model.prior.pseudo_inputs.copy_(images[pick])
    data = ShuffledBatches(images, BATCH_SIZE, generator, _binarize)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    return fit(model, optimizer, data, steps=epochs * len(data), generator=generator, progress=progress)


@torch.no_grad()
def evaluate(
    model: VAE, x: Tensor, *, k: int = 100, n_samples: int = 10, generator: torch.Generator | None = None
) -> dict[str, float]:
    """Test metrics per digit in nats: elbo_surgery(model, x, n_samples) (elbo, recon, mi, marginal_kl, avg_kl and
    their standard errors) plus iwae = mean IWAE bound with k samples (an estimate of log p(x|theta)) and its se."""
    out = elbo_surgery(model, x, n_samples, generator)
    iwae = torch.cat([model.iwae(b, k, generator) for b in x.split(100)]).double()
    out["iwae"], out["iwae_se"] = iwae.mean().item(), iwae.std().item() / math.sqrt(len(iwae))
    return out


PRIORS: dict[str, str] = {
    "vae_standard": "standard",
    "vae_mog": "mog",
    "vae_vamp": "vamp",
    "vae_flow_prior": "flow",
    "vae_iaf_posterior": "iaf",
}


def _register_all() -> None:
    common = {
        "z_dim": Z_DIM, "encoder_hidden": list(ENCODER_HIDDEN), "decoder_hidden": list(DECODER_HIDDEN),
        "likelihood": "bernoulli", "epochs": EPOCHS, "batch_size": BATCH_SIZE, "lr": LR, "data_seed": DATA_SEED,
    }
    extra = {
        "standard": {},
        "mog": {"n_components": N_COMPONENTS},
        "vamp": {"n_pseudo": N_PSEUDO, "pseudo_init": "training digits"},
        "flow": {"flow": "maf", "flow_depth": FLOW_DEPTH, "flow_hidden": list(FLOW_HIDDEN)},
        "iaf": {"prior": "standard", "posterior": "iaf", "flow_depth": FLOW_DEPTH, "flow_hidden": list(FLOW_HIDDEN)},
    }
    for name, prior in PRIORS.items():
        config = {**common, "prior": prior, **extra[prior]}
        register(name, build=partial(_build, prior), train=_train, config=config, max_bytes=MAX_BYTES)


_register_all()
