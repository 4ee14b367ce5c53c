"""Zoo configs of the chapter "DDPM vs blur": the report's four DDPM configs, cold diffusion (blur, hybrid), a UNet.

ddpm_default, ddpm_model1, ddpm_model2 (T = 18300) and ddpm_model2_t1000 are the report's CNN (ReportCNN, hidden
16, 32, 32, 16, kernel KERNEL_SIZE) with the linear schedules of PRESETS; cold_blur and cold_hybrid are the same CNN
as restorer R(x_t, t) of the blur (eq. 7, T = 500) and of blur plus noise (HybridDegradation, NOISE_SCALE);
ddpm_unet_default is the small UNet with the default schedule. All train with Adam, lr LR, for STEPS steps (the UNet
UNET_STEPS) of BATCH_SIZE digits of mnist_images("train") (4,000 digits in [-1, 1]): 48 epochs of the subset, far
fewer steps than the report's 100 epochs of 60,000 digits (~47,000 steps), so that each trains in about 4-5 minutes on
one CPU thread. LR is 1e-3, not the report's 2e-4: with 3000 steps, 2e-4 left the default DDPM at loss 0.040 with
fragmented samples, 1e-3 reached 0.032 with connected, digit-like strokes (measured on this CPU). Kernel size 3 (the
report does not fix it): 5 cost twice as much per step without visibly better samples.
Regenerate one with `OMP_NUM_THREADS=1 python -m dgm_lib.zoo train ddpm_default`.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn

from dgm_lib.diffusion import mnist_images
from dgm_lib.diffusion.cold import BlurDegradation, ColdDiffusion, HybridDegradation
from dgm_lib.diffusion.ddpm import DDPM
from dgm_lib.diffusion.nets import ReportCNN, UNet
from dgm_lib.diffusion.schedules import PRESETS, preset_schedule
from dgm_lib.training import History, ShuffledBatches, fit
from dgm_lib.zoo import register

HIDDEN, KERNEL_SIZE, N_TIME_FEATURES = (16, 32, 32, 16), 3, 16
UNET_CHANNELS = (16, 32, 64)
STEPS, UNET_STEPS, BATCH_SIZE, LR, DATA_SEED = 3000, 1200, 64, 1e-3, 1
COLD_T, NOISE_SCALE = 500, 1.0
MAX_BYTES = 2_000_000


def _cnn(T: int) -> ReportCNN:
    return ReportCNN(HIDDEN, KERNEL_SIZE, N_TIME_FEATURES, T)


def build_ddpm(preset: str) -> DDPM:
    """The untrained ddpm_<preset>: ReportCNN noise predictor with the report's linear schedule PRESETS[preset]."""
    schedule = preset_schedule(preset)
    return DDPM(_cnn(schedule.T), schedule)


def build_unet() -> DDPM:
    """The untrained ddpm_unet_default: UNet(UNET_CHANNELS) with the default schedule."""
    schedule = preset_schedule("default")
    return DDPM(UNet(UNET_CHANNELS, schedule.T, N_TIME_FEATURES), schedule)


def build_cold(hybrid: bool) -> ColdDiffusion:
    """The untrained cold_blur (blur of eq. 7, T = COLD_T) or cold_hybrid (plus noise NOISE_SCALE sqrt(t / T) eps)."""
    degradation = HybridDegradation(NOISE_SCALE, T=COLD_T) if hybrid else BlurDegradation(T=COLD_T)
    return ColdDiffusion(_cnn(COLD_T), degradation)


def train(model: nn.Module, steps: int = STEPS, lr: float = LR, progress: bool = False) -> History:
    """Adam(lr) for `steps` steps of BATCH_SIZE shuffled training digits (model(x) returns {"loss"})."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    data = ShuffledBatches(mnist_images("train"), BATCH_SIZE, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    return fit(model, optimizer, data, steps=steps, generator=generator, progress=progress)


CONFIGS: dict[str, tuple[Callable[[], nn.Module], dict]] = {
    **{
        f"ddpm_{p}": (partial(build_ddpm, p), {"kind": "ddpm", "net": "report_cnn", "schedule": list(PRESETS[p])})
        for p in ("default", "model1", "model2", "model2_t1000")
    },
    "cold_blur": (partial(build_cold, False), {"kind": "cold", "net": "report_cnn", "degradation": "blur"}),
    "cold_hybrid": (
        partial(build_cold, True),
        {"kind": "cold", "net": "report_cnn", "degradation": "hybrid", "noise_scale": NOISE_SCALE},
    ),
    "ddpm_unet_default": (
        build_unet,
        {"kind": "ddpm", "net": "unet", "channels": list(UNET_CHANNELS), "schedule": list(PRESETS["default"])},
    ),
}


def _register_all() -> None:
    cnn = {"hidden": list(HIDDEN), "kernel_size": KERNEL_SIZE, "n_time_features": N_TIME_FEATURES}
    for name, (build, config) in CONFIGS.items():
        unet = config["net"] == "unet"
        recipe = {"steps": UNET_STEPS if unet else STEPS, "lr": LR}
        full = {**config, **({} if unet else cnn), **recipe, "batch_size": BATCH_SIZE, "data_seed": DATA_SEED}
        if config["kind"] == "cold":
            full["T"] = COLD_T
        register(name, build=build, train=partial(train, **recipe), config=full, max_bytes=MAX_BYTES)


_register_all()
