"""Diffusion models on MNIST (the M2 coursework report): noise schedules, DDPM, cold diffusion with blur, networks.

Images are scaled to [-1, 1]: x = 2 p - 1 for pixel intensities p in [0, 1] (mnist_images); to_unit maps back to
[0, 1] for plotting and FID.
"""

from __future__ import annotations

from torch import Tensor

from dgm_lib.data.mnist import load_mnist
from dgm_lib.diffusion.cold import BlurDegradation, ColdDiffusion, DegradedPrior, HybridDegradation
from dgm_lib.diffusion.ddpm import DDPM
from dgm_lib.diffusion.nets import ReportCNN, UNet
from dgm_lib.diffusion.schedules import PRESETS, NoiseSchedule, cosine_schedule, linear_schedule, preset_schedule


def mnist_images(split: str = "train") -> Tensor:
    """The digits of load_mnist(split) (4,000 train / 1,000 test) scaled to [-1, 1]: x = 2 p - 1, (N, 1, 28, 28)."""
    return load_mnist(split)[0] * 2 - 1


def to_unit(images: Tensor) -> Tensor:
    """Images in [-1, 1] back to [0, 1]: (x + 1) / 2, clamped (samples may overshoot)."""
    return ((images + 1) / 2).clamp(0, 1)


__all__ = [
    "PRESETS", "BlurDegradation", "ColdDiffusion", "DDPM", "DegradedPrior", "HybridDegradation", "NoiseSchedule",
    "ReportCNN", "UNet", "cosine_schedule", "linear_schedule", "mnist_images", "preset_schedule", "to_unit",
]
