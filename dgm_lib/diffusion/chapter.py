"""Chapter 07 "DDPM vs blur".

The study that samples every diffusion zoo model and scores it with FID.

`python -m dgm_lib.zoo study diffusion` (after the zoo trainings; one CPU thread) draws N_SAMPLES
images per model and sampling mode with a fixed seed: Algorithm 2 for the DDPMs (T = 18300 ancestral
steps for ddpm_model2), Algorithm 4 for the cold models, conditionally from the fully degraded test
digits D(x_test, T) and unconditionally from a black image and from the degraded prior (Bansal et
al.), plus the naive sampler from the same conditional starts (blur only: with the hybrid's
re-estimated noise the naive sampler and Algorithm 4 coincide). Each sample set gets FID
(dgm_lib.metrics.fid, classifier features) against the 1,000 test digits, next to the real-vs-real
floor at the same n. The study writes results/diffusion_study.json (final training losses, loss
curves, FIDs, sampling seconds, training commands and wall times from the training log, n) and
results/diffusion_samples.npz (uint8 samples and a few trajectories at the report's timesteps).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from dgm_lib import zoo
from dgm_lib.checks import check_positive_int
from dgm_lib.data.mnist import mnist_images, to_unit
from dgm_lib.diffusion.cold import BlurDegradation, ColdDiffusion
from dgm_lib.diffusion.ddpm import DDPM
from dgm_lib.io import load_checkpoint
from dgm_lib.metrics import fid, fid_floor

N_SAMPLES = 40  # samples per model and mode: the whole study in ~15 min on one thread
N_TRAJECTORIES = 4  # samples whose trajectories are kept
SEED = 0
LOSS_BLOCK = 50  # steps per point of the loss curve
LOSS_LAST = 100  # steps averaged into the final loss
JSON_PATH = zoo.results_dir() / "diffusion_study.json"
NPZ_PATH = zoo.results_dir() / "diffusion_samples.npz"
DEFAULT_STEPS = (
    1000,
    750,
    500,
    250,
    100,
    50,
    10,
    5,
    1,
)  # the report's appendix tables (sample timesteps)
CAPTURE: dict[str, tuple[int, ...]] = {
    "ddpm_default": DEFAULT_STEPS,
    "ddpm_model1": (1840, 1000, 540, 140, 40, 10, 5, 2, 1),
    "ddpm_model2": (18300, 10000, 5000, 1000, 500, 100, 50, 10, 1),
    "ddpm_model2_t1000": DEFAULT_STEPS,
    "ddpm_unet_default": DEFAULT_STEPS,
    "cold_blur": (500, 400, 300, 250, 200, 100, 50, 25, 1),
    "cold_hybrid": (500, 400, 300, 250, 200, 100, 50, 25, 1),
}
COLD_MODES = (
    "conditional",
    "naive",
    "black",
    "prior",
)  # the hybrid skips "naive": it equals Algorithm 4 there


def as_uint8(images: Tensor) -> np.ndarray:
    """Images in [-1, 1] (N, 1, H, W) -> uint8 (N, H, W) pixels round(255 to_unit(x))."""
    return (to_unit(images.detach().cpu().float()) * 255).round().to(torch.uint8)[:, 0].numpy()


def training_record(name: str) -> dict:
    """A zoo model's final loss, loss curve, steps and config, from its checkpoint.

    Final loss (mean of the last LOSS_LAST steps), loss curve (means of LOSS_BLOCK steps), steps and
    config of a zoo model, from its checkpoint.
    """
    checkpoint = load_checkpoint(zoo.checkpoint_path(name), map_location="cpu")
    loss = np.asarray(checkpoint["state"]["history"]["loss"], dtype=np.float64)
    blocks = loss[: len(loss) // LOSS_BLOCK * LOSS_BLOCK].reshape(-1, LOSS_BLOCK).mean(1)
    return {
        "final_loss": float(loss[-LOSS_LAST:].mean()),
        "loss_curve": blocks.round(6).tolist(),
        "steps": len(loss),
        "zoo_config": checkpoint["config"]["config"],
    }


def training_times(log: Path | None) -> tuple[str | None, dict[str, float]]:
    """The training command and each config's wall seconds, from a training log.

    The training command (the log's first "COMMAND: ..." line) and each config's wall seconds
    (/usr/bin/time -v).
    """
    if log is None or not log.is_file():
        return None, {}
    command, times, name = None, {}, None
    for line in log.read_text().splitlines():
        if line.startswith("COMMAND: ") and command is None:
            command = line[len("COMMAND: ") :]
        saved = re.match(r"^(\w+): saved ", line)
        if saved:
            name = saved.group(1)
        wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)$", line)
        if wall and name is not None:
            h, m, s = wall.groups()
            times[name] = round(int(h or 0) * 3600 + int(m) * 60 + float(s), 1)
            name = None
    return command, times


def _timed(fn: Callable, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def cold_starts(model: ColdDiffusion, mode: str, n: int, generator: torch.Generator) -> Tensor:
    """x_T for a sampling mode.

    D(x_test[:n], T) (conditional, naive), D(black, T) (black) or the degraded prior.
    """
    d, T = model.degradation, model.T
    degrade = (
        (lambda x: d(x, T))
        if isinstance(d, BlurDegradation)
        else (lambda x: d(x, T, generator=generator))
    )
    if mode in ("conditional", "naive"):
        return degrade(mnist_images("test", "signed")[:n])
    if mode == "black":
        return degrade(torch.full((n, 1, 28, 28), -1.0))
    return model.degraded_prior(mnist_images("train", "signed"), generator=generator).sample(
        n, generator=generator
    )


def sample_model(name: str, n: int) -> dict[str, tuple[Tensor, dict[int, Tensor], float]]:
    """Samples, trajectories and seconds of one zoo model in each sampling mode.

    {mode: (samples, trajectory of the first N_TRAJECTORIES samples at CAPTURE[name] + (0,),
    seconds)}.
    """
    model = zoo.load(name, device="cpu", train_if_missing=False)
    capture = (*CAPTURE[name], 0)
    out = {}
    if isinstance(model, DDPM):
        generator = torch.Generator().manual_seed(SEED)
        (x, kept), seconds = _timed(model.sample, n, generator, capture)
        out["ancestral"] = (x, kept, seconds)
        return out
    for mode in COLD_MODES:
        if mode == "naive" and not isinstance(model.degradation, BlurDegradation):
            continue
        generator = torch.Generator().manual_seed(SEED)
        starts = cold_starts(model, mode, n, generator)
        sampler = model.sample_naive if mode == "naive" else model.sample
        (x, kept), seconds = _timed(sampler, starts, generator, capture)
        out[mode] = (x, kept, seconds)
    return out


def run_study(
    names: Sequence[str], n: int = N_SAMPLES, log: Path | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Sample and score every config in `names` with n samples per sampling mode.

    Args:
        names: zoo configs of dgm_lib.diffusion.recipes (keys of CAPTURE).
        n: samples per model and mode.
        log: the log of the zoo trainings, for their command and wall times (see training_times).

    Returns:
        The JSON record and the NPZ arrays of the study.
    """
    check_positive_int(n, "n")
    start = time.perf_counter()
    test01 = to_unit(mnist_images("test", "signed"))
    command, times = training_times(log)
    record = {
        "n": n,
        "seed": SEED,
        "loss_last_steps": LOSS_LAST,
        "loss_block": LOSS_BLOCK,
        "n_trajectories": N_TRAJECTORIES,
        "fid_reference": "the 1000 test digits of load_mnist()",
        "fid_floor_n": fid_floor(n_train=n),
        "fid_floor_all_train": fid_floor(),
        "train_command": command,
        "configs": {},
    }
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        entry = {**training_record(name), "train_wall_seconds": times.get(name)}
        entry["modes"] = {}
        for mode, (x, kept, seconds) in sample_model(name, n).items():
            entry["modes"][mode] = {
                "fid": fid(to_unit(x), test01),
                "sampling_seconds": round(seconds, 2),
            }
            arrays[f"{name}__{mode}"] = as_uint8(x)
            steps = sorted(kept, reverse=True)
            arrays[f"{name}__{mode}__trajectory"] = np.stack(
                [as_uint8(kept[t][:N_TRAJECTORIES]) for t in steps]
            )
            arrays[f"{name}__{mode}__trajectory_steps"] = np.asarray(steps, dtype=np.int64)
            print(
                f"{name} {mode}: FID {entry['modes'][mode]['fid']:.2f}, {seconds:.1f} s", flush=True
            )
        record["configs"][name] = entry
    record["study_wall_seconds"] = round(time.perf_counter() - start, 1)
    return record, arrays
