"""Step-size schedules of SG-MCMC: Welling & Teh's eps_t = a (b + t)^(-gamma) as an lr scheduler."""

from __future__ import annotations

from typing import Callable

import torch
from torch.optim.lr_scheduler import LRScheduler

from dgm_lib.checks import check_int, check_real


def polynomial_decay(a: float, b: float, gamma: float) -> Callable[[int], float]:
    """The step-size schedule eps_t = a (b + t)^(-gamma), t = 0, 1, ... (Welling & Teh 2011).

    gamma in (0.5, 1] gives sum_t eps_t = inf and sum_t eps_t^2 < inf (the conditions for SGLD to
    converge without a Metropolis-Hastings test); gamma = 0 is the constant step a. Use it with
    `StepSizeSchedule(optimizer, schedule)`.

    Example:
        >>> eps = polynomial_decay(a=1.0, b=1.0, gamma=1.0)
        >>> [eps(t) for t in range(3)]
        [1.0, 0.5, 0.3333333333333333]
    """
    check_real(a, "a", lambda v: v > 0, "> 0", "polynomial_decay")
    check_real(b, "b", lambda v: v > 0, "> 0", "polynomial_decay")
    check_real(gamma, "gamma", lambda v: v >= 0, ">= 0", "polynomial_decay")

    def eps(t: int) -> float:
        check_int(t, "polynomial_decay: the step index t", 0)
        return a * (b + t) ** (-gamma)

    return eps


class StepSizeSchedule(LRScheduler):
    """Sets every group's step size to eps_t = schedule(t).

    Sets every group's step size to eps_t = schedule(t), t = number of `.step()` calls (t = 0 at
    construction).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: Callable[[int], float],
        last_epoch: int = -1,
    ) -> None:
        if not callable(schedule):
            raise TypeError(
                "StepSizeSchedule: schedule must be callable t -> eps_t, got "
                f"{type(schedule).__name__}"
            )
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """[eps_t] for each parameter group."""
        return [float(self.schedule(self.last_epoch))] * len(self.optimizer.param_groups)
