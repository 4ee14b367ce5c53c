"""Stochastic gradient MCMC (C. Li's lecture).

SGLD, pSGLD and SGHMC as torch optimizers, step-size schedules, burn-in, thinning and Bayesian model
averaging.

The samplers' module docstring (dgm_lib.sgmcmc.samplers) states the notation and the loss contract
(the N/n scaling of the minibatch potential).
"""

from dgm_lib.sgmcmc.averaging import SampleCollector, bayesian_average
from dgm_lib.sgmcmc.samplers import SGHMC, SGLD, NonFiniteGradientError, pSGLD
from dgm_lib.sgmcmc.schedules import StepSizeSchedule, polynomial_decay

__all__ = [
    "NonFiniteGradientError",
    "SGLD",
    "pSGLD",
    "SGHMC",
    "polynomial_decay",
    "StepSizeSchedule",
    "SampleCollector",
    "bayesian_average",
]
