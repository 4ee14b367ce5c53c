"""ALI and ALICE: adversarial joint distribution matching (C. Li's lecture, Deep Bayesian Learning).

ALI's objective and its optimum for fixed joints (joint), the non-identifiability example
(identifiability), ALICE's identity conditional entropy + conditional matching = cycle consistency
in closed form (conditional_entropy), the noise-input samplers and pair discriminators (networks)
and the non-saturating losses with ALICE's four CE terms (losses).
"""

from dgm_lib.ali.conditional_entropy import LinearGaussianJoint
from dgm_lib.ali.identifiability import (
    ali_saddle_value,
    conditional_entropy,
    delta_joint,
    reconstruction_probability,
)
from dgm_lib.ali.joint import (
    LOG_4,
    ali_value,
    ali_value_on_grid,
    jensen_shannon_on_grid,
    optimal_logit,
)
from dgm_lib.ali.losses import discriminator_loss, explicit_cycle, sampler_loss
from dgm_lib.ali.networks import NoisySampler, PairDiscriminator

__all__ = [
    "LOG_4",
    "LinearGaussianJoint",
    "NoisySampler",
    "PairDiscriminator",
    "ali_saddle_value",
    "ali_value",
    "ali_value_on_grid",
    "conditional_entropy",
    "delta_joint",
    "discriminator_loss",
    "explicit_cycle",
    "jensen_shannon_on_grid",
    "optimal_logit",
    "reconstruction_probability",
    "sampler_loss",
]
