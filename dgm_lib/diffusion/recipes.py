"""Zoo configs and the study of chapter 07 "DDPM vs blur".

The report's DDPMs, cold diffusion, a UNet.

ddpm_default, ddpm_model1, ddpm_model2 (T = 18300) and ddpm_model2_t1000 are the report's CNN
(ReportCNN) with the linear schedules of PRESETS; cold_blur and cold_hybrid are the same CNN as
restorer R(x_t, t) of the blur (eq. 7, T = RECIPE.cold_T) and of blur plus noise
(HybridDegradation); ddpm_unet_default is the small UNet with the default schedule. All train with
Adam for RECIPE.steps steps (the UNet RECIPE.unet_steps) of RECIPE.batch_size digits of
mnist_images("train", "signed") (4,000 digits in [-1, 1]): 48 epochs of the subset, far fewer steps
than the report's 100 epochs of 60,000 digits (~47,000 steps), so that each trains in about 4-5
minutes on one CPU thread. lr is 1e-3, not the report's 2e-4: with 3000 steps, 2e-4 left the default
DDPM at loss 0.040 with fragmented samples, 1e-3 reached 0.032 with connected, digit-like strokes
(measured on this CPU). Kernel size 3 (the report does not fix it): 5 cost twice as much per step
without visibly better samples.
ddpm_unet_long (issue 18) is the same UNet trained far longer: LONG_RUN.steps steps with a
cosine decay of the learning rate, resumable (its full training state stays in the zoo's resume/
folder, so a training cut short continues exactly), recording sample_quality every
LONG_RUN.eval_every steps. ddpm_unet_ema is the same training keeping an exponential moving average
of the weights (LONG_RUN.ema_decay), which it ships and samples from, as Ho et al. (2020) do.
ddpm_unet_wide is the UNet at twice the widths, (32, 64, 128), trained 16,000 steps the same way.
Regenerate one with `OMP_NUM_THREADS=1 python -m dgm_lib.zoo train ddpm_default`, the study with
`python -m dgm_lib.zoo study diffusion --train-log LOG` (LOG: the output of the trainings run
under /usr/bin/time -v, for their wall times).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from dgm_lib import zoo
from dgm_lib.core import seed_everything
from dgm_lib.data.mnist import full_mnist, mnist_images, to_unit
from dgm_lib.diffusion.chapter import N_SAMPLES, as_uint8, cold_starts, run_study
from dgm_lib.diffusion.cold import BlurDegradation, ColdDiffusion, HybridDegradation
from dgm_lib.diffusion.ddpm import DDPM
from dgm_lib.diffusion.nets import ReportCNN, UNet
from dgm_lib.diffusion.schedules import PRESETS, preset_schedule
from dgm_lib.metrics import confident_share, fid
from dgm_lib.training import (
    FitOptions,
    History,
    ShuffledBatches,
    WeightAverage,
    adam_cosine,
    fit,
)


@dataclass(frozen=True)
class DiffusionRecipe:
    """The networks and the training budget of the chapter's diffusion models."""

    hidden: tuple[int, ...] = (16, 32, 32, 16)  # the report's CNN
    kernel_size: int = 3
    n_time_features: int = 16
    unet_channels: tuple[int, ...] = (16, 32, 64)
    cold_T: int = 500
    noise_scale: float = 1.0  # the hybrid degradation's noise
    steps: int = 3000
    unet_steps: int = 1200
    batch_size: int = 64
    lr: float = 1e-3
    data_seed: int = 1
    max_bytes: int = 2_000_000

    def cnn_config(self) -> dict:
        """The ReportCNN's part of a config."""
        return {"hidden": list(self.hidden), "kernel_size": self.kernel_size,
                "n_time_features": self.n_time_features}  # fmt: skip


RECIPE = DiffusionRecipe()


def _cnn(T: int) -> ReportCNN:
    return ReportCNN(RECIPE.hidden, RECIPE.kernel_size, RECIPE.n_time_features, T)


def build_ddpm(preset: str) -> DDPM:
    """The untrained ddpm_<preset>.

    ReportCNN noise predictor with the linear schedule PRESETS[preset].
    """
    schedule = preset_schedule(preset)
    return DDPM(_cnn(schedule.T), schedule)


def build_unet(channels: tuple[int, ...] = RECIPE.unet_channels) -> DDPM:
    """The untrained ddpm_unet_default: UNet(channels) with the default schedule."""
    schedule = preset_schedule("default")
    return DDPM(UNet(channels, schedule.T, RECIPE.n_time_features), schedule)


def build_cold(hybrid: bool) -> ColdDiffusion:
    """The untrained cold_blur or cold_hybrid.

    The untrained cold_blur (blur of eq. 7) or cold_hybrid (plus noise noise_scale sqrt(t/T) eps).
    """
    T = RECIPE.cold_T
    degradation = HybridDegradation(RECIPE.noise_scale, T=T) if hybrid else BlurDegradation(T=T)
    return ColdDiffusion(_cnn(T), degradation)


def train(
    model: nn.Module,
    steps: int = RECIPE.steps,
    lr: float = RECIPE.lr,
    progress: bool = False,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    evaluate_every: int = 1000,
) -> History:
    """Adam(lr) for `steps` steps of shuffled training digits in [-1, 1].

    Adam(lr) for `steps` steps of shuffled training digits in [-1, 1] (model(x) returns {"loss"});
    `evaluate` (fit's callback) runs every `evaluate_every` steps without changing the training.
    """
    generator = torch.Generator().manual_seed(RECIPE.data_seed)
    data = ShuffledBatches(mnist_images("train", "signed"), RECIPE.batch_size, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    options = FitOptions(
        steps=steps, progress=progress, evaluate=evaluate, evaluate_every=evaluate_every
    )
    return fit(model, optimizer, data, options, generator=generator)


@dataclass(frozen=True)
class LongRun:
    """The long training of the UNet (issue 18): steps, and the sample quality recorded."""

    steps: int = 24_000
    eval_every: int = 3000
    eval_n: int = 64
    eval_seed: int = 0
    ema_decay: float = 0.9995  # ddpm_unet_ema: an average over about the last 2,000 steps


LONG_RUN = LongRun()


def sample_quality(model: DDPM, n: int = LONG_RUN.eval_n) -> dict[str, float]:
    """FID and confident share of n samples of Algorithm 2 against the 1,000 test digits.

    Args:
        model: a DDPM; sampled with a generator seeded LONG_RUN.eval_seed on its device.
        n: the number of samples (>= 2).

    Returns:
        {"fid": FID on the shipped classifier's features, "confident": the share of samples it
        labels with confidence >= 0.9}.
    """
    generator = torch.Generator(model.schedule.alpha.device).manual_seed(LONG_RUN.eval_seed)
    return scored(model.sample(n, generator=generator))


def scored(samples: Tensor, prefix: str = "") -> dict[str, float]:
    """{prefix + "fid": FID against the 1,000 test digits, prefix + "confident": confident share}.

    Args:
        samples: (n, 1, 28, 28) samples in [-1, 1], on any device.
        prefix: put before both metric names.
    """
    samples = to_unit(samples).cpu()
    test = mnist_images("test", "unit")
    return {f"{prefix}fid": fid(samples, test), f"{prefix}confident": confident_share(samples)}


def train_long(
    model: nn.Module,
    checkpoint_path: Path,
    progress: bool = False,
    ema_decay: float | None = None,
    steps: int | None = None,
    eval_every: int | None = None,
) -> History:
    """Adam(RECIPE.lr) with cosine decay over `steps` steps, resumable, with sample_quality.

    Args:
        model: an untrained DDPM (one of LONG_CONFIGS).
        checkpoint_path: where the full training state is kept (the zoo's resume_path).
        progress: show a progress bar.
        ema_decay: if given, keep a WeightAverage of the weights with this decay, record the
            sample quality of the average, and leave the average in `model` at the end (the
            trained weights are those of the same training without it).
        steps: the training steps (None: LONG_RUN.steps).
        eval_every: record sample_quality every this many steps (None: LONG_RUN.eval_every).

    Returns:
        The History, with the recorded sample quality in `evaluations`.
    """
    generator = torch.Generator().manual_seed(RECIPE.data_seed)
    data = ShuffledBatches(mnist_images("train", "signed"), RECIPE.batch_size, generator)
    steps = LONG_RUN.steps if steps is None else steps
    eval_every = LONG_RUN.eval_every if eval_every is None else eval_every
    optimizer, scheduler = adam_cosine(model, RECIPE.lr, steps)
    config = {"steps": steps, "lr": RECIPE.lr, "lr_schedule": "cosine",
              "eval_every": eval_every}  # fmt: skip
    trained, evaluate = model, sample_quality
    if ema_decay is not None:
        trained, config["ema_decay"] = WeightAverage(model, ema_decay), ema_decay
        trained.attach(optimizer)
        evaluate = lambda average: sample_quality(average.average)  # noqa: E731
    options = FitOptions(
        steps=steps, progress=progress, checkpoint_path=checkpoint_path,
        checkpoint_every=200, config=config, evaluate=evaluate, evaluate_every=eval_every,
    )  # fmt: skip
    history = fit(trained, optimizer, data, options, scheduler=scheduler, generator=generator)
    if ema_decay is not None:
        model.load_state_dict(trained.average.state_dict())
    return history


CONFIGS: dict[str, tuple[Callable[[], nn.Module], dict]] = {
    **{
        f"ddpm_{p}": (
            partial(build_ddpm, p),
            {"kind": "ddpm", "net": "report_cnn", "schedule": list(PRESETS[p])},
        )
        for p in ("default", "model1", "model2", "model2_t1000")
    },
    "cold_blur": (
        partial(build_cold, False),
        {"kind": "cold", "net": "report_cnn", "degradation": "blur"},
    ),
    "cold_hybrid": (
        partial(build_cold, True),
        {
            "kind": "cold",
            "net": "report_cnn",
            "degradation": "hybrid",
            "noise_scale": RECIPE.noise_scale,
        },
    ),
    "ddpm_unet_default": (
        build_unet,
        {
            "kind": "ddpm",
            "net": "unet",
            "channels": list(RECIPE.unet_channels),
            "schedule": list(PRESETS["default"]),
        },  # fmt: skip
    ),
}


def _register(name: str, build: Callable[[], nn.Module], config: dict) -> None:
    """Register config `name`: its own part of the config, the CNN's, and the training recipe."""
    unet = config["net"] == "unet"
    recipe = {"steps": RECIPE.unet_steps if unet else RECIPE.steps, "lr": RECIPE.lr}
    full = {
        **config, **({} if unet else RECIPE.cnn_config()), **recipe,
        "batch_size": RECIPE.batch_size, "data_seed": RECIPE.data_seed,
    }  # fmt: skip
    if config["kind"] == "cold":
        full["T"] = RECIPE.cold_T
    zoo.register(
        zoo.Entry(
            name,
            build=build,
            train=partial(train, **recipe),
            config=full,
            max_bytes=RECIPE.max_bytes,
        )  # fmt: skip
    )


def study(n: int = N_SAMPLES, train_log: Path | None = None) -> dict[str, Any]:
    """The chapter's study of every config above: see dgm_lib.diffusion.chapter.run_study."""
    record, arrays = run_study(list(CONFIGS), n, train_log)
    return {"diffusion_study.json": record, "diffusion_samples.npz": arrays}


for _name, (_build, _config) in CONFIGS.items():
    _register(_name, _build, _config)


@dataclass(frozen=True)
class LongConfig:
    """A long training: the short config it extends, and what it changes."""

    short: str
    ema_decay: float | None = None  # None: no weight average
    steps: int = LONG_RUN.steps
    eval_every: int = LONG_RUN.eval_every
    channels: tuple[int, ...] | None = None  # a UNet's widths; None: the short config's
    max_bytes: int = RECIPE.max_bytes


# The long runs (issue 18): LONG_RUN's 24,000 steps with the cosine schedule, resumable, the sample
# quality recorded every LONG_RUN.eval_every steps. The UNet, and the report's CNN with the default
# schedule (is its 11 x 11 receptive field, not the budget, what limits its samples?).
LONG_CONFIGS = {
    "ddpm_unet_long": LongConfig("ddpm_unet_default"),
    "ddpm_default_long": LongConfig("ddpm_default"),
    "ddpm_unet_ema": LongConfig("ddpm_unet_default", ema_decay=LONG_RUN.ema_decay),
    # four times the UNet's weights (1.1 M), for the confident share; 3.2 times the step's cost
    "ddpm_unet_wide": LongConfig(
        "ddpm_unet_default", steps=16_000, eval_every=4_000, channels=(32, 64, 128),
        max_bytes=5_000_000,
    ),
}  # fmt: skip
for _name, _long in LONG_CONFIGS.items():
    _build, _config = CONFIGS[_long.short]
    if _long.channels is not None:
        _build, _config = partial(build_unet, _long.channels), {
            **_config, "channels": list(_long.channels)
        }  # fmt: skip
    zoo.register(
        zoo.Entry(
            _name,
            build=_build,
            train=partial(
                train_long, ema_decay=_long.ema_decay, steps=_long.steps,
                eval_every=_long.eval_every,
            ),
            config={
                **_config,
                **({} if _config["net"] == "unet" else RECIPE.cnn_config()),
                "steps": _long.steps,
                "lr": RECIPE.lr,
                "lr_schedule": "cosine",
                "eval_every": _long.eval_every,
                "batch_size": RECIPE.batch_size,
                "data_seed": RECIPE.data_seed,
                **({} if _long.ema_decay is None else {"ema_decay": _long.ema_decay}),
            },
            max_bytes=_long.max_bytes,
            resumable=True,
        )
    )  # fmt: skip


@dataclass(frozen=True)
class FullScale:
    """The report's training at full scale (seed 004, appendix tables 1-4).

    Adam, lr 2e-4, 100 epochs of all 60,000 MNIST training digits in [-1, 1], the CNN (16, 32, 32,
    16). The report fixes neither the batch size nor the kernel size: 128 (469 steps an epoch,
    46,900 steps) and 7 x 7 convolutions (a receptive field of 25 x 25 pixels, where the small
    recipe's 3 x 3 sees 11 x 11), both the common settings of this CNN.
    """

    epochs: int = 100
    lr: float = 2e-4
    batch_size: int = 128
    kernel_size: int = 7
    checkpoint_every: int = 1000
    data_seed: int = 1


FULL = FullScale()
# the report's three DDPM configs (Model 2 at its T = 18,300) and its blur model (T = 500)
FULL_CONFIGS = {"ddpm_default": "default", "ddpm_model1": "model1", "ddpm_model2": "model2"}


def _full_cnn(T: int) -> ReportCNN:
    return ReportCNN(RECIPE.hidden, FULL.kernel_size, RECIPE.n_time_features, T)


def build_full(name: str) -> nn.Module:
    """The untrained full-scale model `name`: a DDPM of FULL_CONFIGS or "cold_blur"."""
    if name == "cold_blur":
        return ColdDiffusion(_full_cnn(RECIPE.cold_T), BlurDegradation(T=RECIPE.cold_T))
    schedule = preset_schedule(FULL_CONFIGS[name])
    return DDPM(_full_cnn(schedule.T), schedule)


def full_config(name: str) -> dict:
    """What determines the weights of full-scale `name` (recorded in its checkpoint)."""
    if name == "cold_blur":
        model = {"kind": "cold", "degradation": "blur", "T": RECIPE.cold_T}
    else:
        model = {"kind": "ddpm", "schedule": list(PRESETS[FULL_CONFIGS[name]])}
    return {
        **model, "net": "report_cnn", **RECIPE.cnn_config(), "kernel_size": FULL.kernel_size,
        "epochs": FULL.epochs, "lr": FULL.lr, "batch_size": FULL.batch_size,
        "data_seed": FULL.data_seed, "data": "torchvision MNIST train (60,000 digits, [-1, 1])",
    }  # fmt: skip


def train_full(model: nn.Module, checkpoint_path: Path, config: dict) -> History:
    """Adam(FULL.lr) for FULL.epochs epochs of the 60,000 digits in batches of FULL.batch_size.

    Resumable (the state is saved every FULL.checkpoint_every steps); under torchrun every rank
    trains its shard of each global batch (dgm_lib.distributed). DataUnavailableError when full
    MNIST is neither on disk nor downloadable.

    Args:
        model: an untrained model of build_full.
        checkpoint_path: where the full training state is kept (the zoo's resume_path).
        config: its full_config (a resume must match it).

    Returns:
        The History.
    """
    images, _ = full_mnist("train")
    generator = torch.Generator().manual_seed(FULL.data_seed)
    data = ShuffledBatches(images * 2 - 1, FULL.batch_size, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=FULL.lr)
    options = FitOptions(
        steps=FULL.epochs * len(data), checkpoint_path=checkpoint_path,
        checkpoint_every=FULL.checkpoint_every, config=config,
    )  # fmt: skip
    return fit(model, optimizer, data, options, generator=generator)


for _name in (*FULL_CONFIGS, "cold_blur"):
    zoo.register(
        zoo.Entry(
            _name,
            build=partial(build_full, _name),
            train=partial(train_full, config=full_config(_name)),
            config=full_config(_name),
            max_bytes=RECIPE.max_bytes,
            resumable=True,
        ),
        scale="full",
    )
zoo.register_study(
    zoo.Study(
        "diffusion",
        run=study,
        options=(
            zoo.StudyOption("n", int, N_SAMPLES, "samples per model and sampling mode"),
            zoo.StudyOption("train_log", Path, None, "log of the zoo trainings (time -v output)"),
        ),
    )
)


@dataclass(frozen=True)
class CurveRun:
    """The FID-over-training curves of the report's configs (seed 004, Figs 3, 5, 7, 8 and 10).

    Each config is retrained with its zoo recipe, scored every eval_every steps on eval_n samples
    (seed eval_seed); ddpm_model2 is left out by default: at T = 18,300 one point costs about 43
    minutes of one thread (64 samples x 18,300 network calls).
    """

    models: tuple[str, ...] = ("ddpm_default", "ddpm_model1", "ddpm_model2_t1000", "cold_blur")
    eval_every: int = 600
    eval_n: int = 64
    eval_seed: int = 0
    kept: int = 16  # samples kept per point for the figures


CURVES = CurveRun()
CURVE_COLD_MODES = ("conditional", "prior")


def curve_point(model: nn.Module, kept: list[dict[str, Tensor]]) -> dict[str, float]:
    """FID and confident share of CURVES.eval_n samples against the 1,000 test digits.

    A DDPM is sampled by Algorithm 2; a ColdDiffusion by Algorithm 4 from blurred test digits
    ("conditional_") and from its degraded prior ("prior_"). The first CURVES.kept samples of
    each are appended to `kept` as uint8 images.
    """
    generator = torch.Generator().manual_seed(CURVES.eval_seed)
    if isinstance(model, DDPM):
        samples = {"": model.sample(CURVES.eval_n, generator=generator)}
    else:
        samples = {
            f"{mode}_": model.sample(cold_starts(model, mode, CURVES.eval_n, generator))
            for mode in CURVE_COLD_MODES
        }
    kept.append({key: as_uint8(x[: CURVES.kept]) for key, x in samples.items()})
    return {name: value for key, x in samples.items() for name, value in scored(x, key).items()}


def train_with_curve(
    name: str, steps: int | None = None
) -> tuple[nn.Module, History, list[dict[str, Tensor]]]:
    """Build and train the config `name` as the zoo does, with curve_point as fit's callback.

    Args:
        name: a config of CONFIGS.
        steps: the training steps (None: the zoo recipe's).

    Returns:
        The trained model, its History (the curve in `evaluations`) and the kept samples.
    """
    if name not in CONFIGS:
        raise ValueError(f"name: {name!r} is not one of {', '.join(CONFIGS)}")
    entry = zoo.entry(name)
    seed_everything(entry.seed)  # as the zoo does before it builds and trains
    model = entry.build()
    kept: list[dict[str, Tensor]] = []
    history = train(
        model,
        entry.config["steps"] if steps is None else steps,
        evaluate=partial(curve_point, kept=kept),
        evaluate_every=CURVES.eval_every,
    )
    return model, history, kept


def curves_study(models: str = ",".join(CURVES.models)) -> dict[str, Any]:
    """Retrain each config with its zoo recipe, recording curve_point every CURVES.eval_every steps.

    The evaluation does not touch the training stream (fit restores the RNG states), so the
    retrained weights equal the shipped checkpoint's on the machine that trained it; the record
    keeps the largest difference as the check.

    Returns:
        {"fid_curves.json": per model {metric: [[step, value], ...], "max_weight_difference",
        "seconds"}, "fid_curves.npz": {"MODEL__KEY": uint8 samples (points, kept, 28, 28),
        "MODEL__steps": the steps}}.
    """
    record: dict[str, Any] = {"eval_every": CURVES.eval_every, "eval_n": CURVES.eval_n,
                              "eval_seed": CURVES.eval_seed, "models": {}}  # fmt: skip
    arrays: dict[str, Any] = {}
    for name in models.split(","):
        start = time.perf_counter()
        model, history, kept = train_with_curve(name)
        shipped = zoo.load(name, device="cpu", train_if_missing=False).state_dict()
        difference = max(
            (value - shipped[key]).abs().max().item() for key, value in model.state_dict().items()
        )
        record["models"][name] = {
            **history.evaluations, "max_weight_difference": difference,
            "seconds": round(time.perf_counter() - start, 1),
        }  # fmt: skip
        steps = [step for step, _ in next(iter(history.evaluations.values()))]
        arrays[f"{name}__steps"] = np.asarray(steps, dtype=np.int64)
        for key in kept[0]:
            arrays[f"{name}__{key or 'ancestral_'}"[:-1]] = np.stack([k[key] for k in kept])
        print(f"{name}: {record['models'][name]['seconds']} s, weights differ by {difference:.1e}")
    return {"fid_curves.json": record, "fid_curves.npz": arrays}


zoo.register_study(
    zoo.Study(
        "fid_curves",
        run=curves_study,
        options=(
            zoo.StudyOption("models", str, ",".join(CURVES.models), "comma-separated configs"),
        ),
    )
)
