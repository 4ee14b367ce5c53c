"""Diffusion models on MNIST (the M2 coursework report).

Noise schedules, DDPM, cold diffusion with blur, networks.

Images are scaled to [-1, 1]: x = 2 p - 1 for pixel intensities p in [0, 1]
(`dgm_lib.data.mnist_images(split, "signed")`); `dgm_lib.data.to_unit` maps back to [0, 1] for
plotting and FID.
"""

from dgm_lib.diffusion.cold import BlurDegradation, ColdDiffusion, DegradedPrior, HybridDegradation
from dgm_lib.diffusion.ddpm import DDPM
from dgm_lib.diffusion.nets import ReportCNN, UNet
from dgm_lib.diffusion.schedules import (
    PRESETS,
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    preset_schedule,
)

__all__ = [
    "PRESETS",
    "BlurDegradation",
    "ColdDiffusion",
    "DDPM",
    "DegradedPrior",
    "HybridDegradation",
    "NoiseSchedule",
    "ReportCNN",
    "UNet",
    "cosine_schedule",
    "linear_schedule",
    "preset_schedule",
]
