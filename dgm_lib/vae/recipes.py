"""Zoo configs of chapter 03 "ELBO surgery": 2D-latent MNIST VAEs, one per prior (Lecture 7).

"vae_standard" (N(0, I)), "vae_mog" (mixture of Gaussians), "vae_vamp" (VampPrior), "vae_flow_prior"
(MAF prior) and "vae_iaf_posterior" (N(0, I) prior, IAF posterior conditioned on the encoder's
context h(x), Kingma et al. 2016) share the architecture (MLP encoder and Bernoulli decoder, z_dim =
2) and the training budget (Adam, RECIPE.epochs epochs over
the 4,000 training digits of load_mnist(), dynamically binarized: every epoch draws x ~
Bernoulli(pixel intensities) afresh). Regenerate one with `python -m dgm_lib.zoo train vae_mog`
(28-37 s each on one CPU thread, OMP_NUM_THREADS=1).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from dgm_lib import zoo
from dgm_lib.data.mnist import load_mnist
from dgm_lib.flows.builders import make_maf
from dgm_lib.training import FitOptions, History, ShuffledBatches, fit
from dgm_lib.vae.iaf import ContextIAFPosterior
from dgm_lib.vae.model import VAE, MLPDecoder, MLPEncoder
from dgm_lib.vae.priors import FlowPrior, MoGPrior, StandardNormalPrior, VampPrior

PRIORS: dict[str, str] = {  # zoo name -> prior (or "iaf": standard prior, context IAF posterior)
    "vae_standard": "standard",
    "vae_mog": "mog",
    "vae_vamp": "vamp",
    "vae_flow_prior": "flow",
    "vae_iaf_posterior": "iaf",
}


@dataclass(frozen=True)
class VAERecipe:
    """The shared architecture and training budget of the chapter's VAEs."""

    z_dim: int = 2
    encoder_hidden: tuple[int, ...] = (256, 256)
    decoder_hidden: tuple[int, ...] = (256, 256)
    n_components: int = 10  # the MoG prior
    n_pseudo: int = 100  # the VampPrior
    flow_depth: int = 4  # the MAF prior and the IAF posterior
    flow_hidden: tuple[int, ...] = (64, 64)
    context_dim: int = 32  # the size of h(x) that the encoder emits for the IAF posterior
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    data_seed: int = 1

    def config(self, prior: str) -> dict:
        """The config the checkpoint of the VAE with `prior` records."""
        common = {
            "z_dim": self.z_dim, "encoder_hidden": list(self.encoder_hidden),
            "decoder_hidden": list(self.decoder_hidden), "likelihood": "bernoulli",
            "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "data_seed": self.data_seed,
        }  # fmt: skip
        flow = {"flow_depth": self.flow_depth, "flow_hidden": list(self.flow_hidden)}
        extra = {
            "standard": {},
            "mog": {"n_components": self.n_components},
            "vamp": {"n_pseudo": self.n_pseudo, "pseudo_init": "training digits"},
            "flow": {"flow": "maf", **flow},
            "iaf": {
                "prior": "standard",
                "posterior": "context_iaf",
                "context_dim": self.context_dim,
                **flow,
            },
        }
        return {**common, "prior": prior, **extra[prior]}


RECIPE = VAERecipe()


def build(prior: str) -> VAE:
    """The untrained VAE with `prior` ("standard", "mog", "vamp", "flow" or "iaf")."""
    r = RECIPE
    context_dim = r.context_dim if prior == "iaf" else 0
    encoder = MLPEncoder(784, r.encoder_hidden, r.z_dim, context_dim=context_dim)
    decoder = MLPDecoder(r.z_dim, r.decoder_hidden, (1, 28, 28), "bernoulli")
    posterior_flow = None
    if prior == "mog":
        p = MoGPrior(r.z_dim, r.n_components)
    elif prior == "vamp":
        p = VampPrior(encoder, r.n_pseudo, (1, 28, 28))
    elif prior == "flow":
        p = FlowPrior(make_maf(r.z_dim, r.flow_depth, r.flow_hidden), r.z_dim)
    else:
        p = StandardNormalPrior(r.z_dim)
        if prior == "iaf":
            posterior_flow = ContextIAFPosterior(r.z_dim, context_dim, r.flow_depth, r.flow_hidden)
    return VAE(encoder, decoder, p, posterior_flow)


def binarize(images: Tensor, generator: torch.Generator) -> Tensor:
    """Dynamic binarization: x ~ Bernoulli(pixel intensity), drawn afresh every epoch."""
    return torch.bernoulli(images, generator=generator)


def train(model: VAE, epochs: int = RECIPE.epochs, progress: bool = False) -> History:
    """Adam on -ELBO over dynamically binarized training digits.

    a VampPrior starts from n_pseudo training digits.
    """
    generator = torch.Generator().manual_seed(RECIPE.data_seed)
    images = load_mnist("train")[0]  # stays on the CPU with the generator; fit() moves each batch
    if isinstance(model.prior, VampPrior):
        pick = torch.randperm(len(images), generator=generator)[: model.prior.n_pseudo]
        with torch.no_grad():
            model.prior.pseudo_inputs.copy_(images[pick])
    data = ShuffledBatches(images, RECIPE.batch_size, generator, binarize)
    optimizer = torch.optim.Adam(model.parameters(), lr=RECIPE.lr)
    options = FitOptions(steps=epochs * len(data), progress=progress)
    return fit(model, optimizer, data, options, generator=generator)


for _name, _prior in PRIORS.items():
    zoo.register(
        zoo.Entry(_name, build=partial(build, _prior), train=train, config=RECIPE.config(_prior))
    )
