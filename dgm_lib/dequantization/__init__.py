"""Discrete data and continuous models (Lecture 7, first half).

Discretization through the CDF and dequantization.

Notation of the lecture: y in {0, ..., K-1}^D is discrete data (K = num_bins, 256 for pixels),
x = y + u is continuous, u ~ U[0, 1]^D (uniform dequantization) or u ~ q(u|y) (variational
dequantization, Flow++); P(y|theta) is a discrete model, p(x|theta) a continuous one.
Bits per dimension = -log2 P(y) / D. Two ways to make a continuous model meet discrete data:
- discretize the model: P(y|theta) = F(y + 0.5|theta) - F(y - 0.5|theta) with a (mixture of)
  logistic CDF F (Salimans et al., PixelCNN++, ICLR 2017): `logistic`;
- dequantize the data: maximize E_q [log p(y + u|theta) - log q(u|y)] <= log P(y|theta)
  (Theis et al., ICLR 2016; Ho et al., Flow++, ICML 2019): `uniform`, `variational`, `flow`.
"""

from dgm_lib.dequantization.discrete import NUM_BINS, bits_per_dim, check_discrete
from dgm_lib.dequantization.flow import (
    DequantizedFlow,
    Rescale,
    logit_preprocess,
    make_image_flow,
    make_vector_flow,
)
from dgm_lib.dequantization.logistic import (
    LOG_SCALE_MIN,
    MixtureOfLogistics,
    discretized_logistic_log_prob,
    discretized_mix_logistic_log_prob,
    logistic_cdf,
    logistic_log_prob,
    mix_logistic_cdf,
    mix_logistic_log_prob,
)
from dgm_lib.dequantization.uniform import UniformDequantizer, uniform_dequantize
from dgm_lib.dequantization.variational import VariationalDequantizer

__all__ = [
    "NUM_BINS",
    "bits_per_dim",
    "check_discrete",
    "DequantizedFlow",
    "Rescale",
    "logit_preprocess",
    "make_image_flow",
    "make_vector_flow",
    "LOG_SCALE_MIN",
    "MixtureOfLogistics",
    "discretized_logistic_log_prob",
    "discretized_mix_logistic_log_prob",
    "logistic_cdf",
    "logistic_log_prob",
    "mix_logistic_cdf",
    "mix_logistic_log_prob",
    "UniformDequantizer",
    "uniform_dequantize",
    "VariationalDequantizer",
]
