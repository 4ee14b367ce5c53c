"""Zoo configs shared by the topics: the MNIST classifier whose features FID uses (dgm_lib.metrics).

Regenerate with `python -m dgm_lib.zoo train mnist_classifier`.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dgm_lib import zoo
from dgm_lib.data.mnist import load_mnist, to_unit
from dgm_lib.io import write_atomic
from dgm_lib.metrics import sample_report
from dgm_lib.nets import FEATURES, MNISTClassifier
from dgm_lib.training import FitOptions, History, ShuffledBatches, fit


@dataclass(frozen=True)
class ClassifierRecipe:
    """Adam on the cross-entropy of the 4,000 training digits of load_mnist(), in minibatches."""

    channels: tuple[int, int] = (16, 32)
    dropout: float = 0.25
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    data_seed: int = 0
    max_bytes: int = 600_000

    def config(self) -> dict:
        """The config the checkpoint records."""
        return {
            "channels": list(self.channels), "activation": "gelu", "features": FEATURES,
            "dropout": self.dropout, "optimizer": "adam", "lr": self.lr, "epochs": self.epochs,
            "batch_size": self.batch_size, "data_seed": self.data_seed,
            "data": "load_mnist('train')",
        }  # fmt: skip


CLASSIFIER = ClassifierRecipe()


def _cross_entropy(model: MNISTClassifier, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    x, y = batch
    return {"loss": F.cross_entropy(model(x), y)}


def train_fid_classifier(model: MNISTClassifier, recipe: ClassifierRecipe = CLASSIFIER) -> History:
    """Train the FID classifier by `recipe` (epochs of shuffled (image, label) minibatches)."""
    generator = torch.Generator().manual_seed(recipe.data_seed)
    data = ShuffledBatches(load_mnist("train"), recipe.batch_size, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    options = FitOptions(steps=recipe.epochs * len(data), loss_fn=_cross_entropy, progress=False)
    return fit(model, optimizer, data, options)


zoo.register(
    zoo.Entry(
        "mnist_classifier",
        build=MNISTClassifier,
        train=train_fid_classifier,
        config=CLASSIFIER.config(),
        max_bytes=CLASSIFIER.max_bytes,
    )
)


# The image models of the sample-quality report (issue 18), scored by one function at one n.
QUALITY_MODELS = (
    "ddpm_unet_wide", "ddpm_unet_long", "ddpm_unet_default", "ddpm_default", "ddpm_model1",
    "vae_standard", "deq_mnist_multiscale_uniform",
)  # fmt: skip


def samples01(
    name: str, n: int, seed: int = 0, batch: int = 250, partial: Path | None = None
) -> tuple[Tensor, float]:
    """n samples in [0, 1], (n, 1, 28, 28), of the zoo image model `name`, seeded, on one CPU.

    DDPM: Algorithm 2 mapped from [-1, 1]; cold diffusion: Algorithm 4 from its degraded prior
    (the generative mode: no test digit enters); a VAE: decoded prior draws E[x|z]; a dequantized
    flow: y = floor(x) over 255. The samples come `batch` at a time from one generator, so
    they depend on (name, n, seed, batch) only.

    Args:
        name: a zoo image model.
        n: how many samples.
        seed: the generator's seed.
        batch: samples per sampling call.
        partial: if given, the finished batches and the generator state are written there
            atomically after each batch, and a run killed midway continues from them (the
            result equals an uninterrupted run's); the file is removed at the end.

    Returns:
        (the samples, float32 on the CPU; the seconds spent sampling them, those of the
        killed runs that `partial` continues included).
    """
    from dgm_lib.dequantization.flow import DequantizedFlow
    from dgm_lib.diffusion.chapter import cold_starts
    from dgm_lib.diffusion.cold import ColdDiffusion
    from dgm_lib.diffusion.ddpm import DDPM
    from dgm_lib.vae.model import VAE

    if n < 1 or batch < 1:
        raise ValueError(f"n and batch must be at least 1, got n={n}, batch={batch}")
    model = zoo.load(name, device="cpu")
    if not isinstance(model, (DDPM, ColdDiffusion, DequantizedFlow, VAE)):
        raise ValueError(f"{name} is not an image model (DDPM, cold diffusion, VAE or flow)")
    generator = torch.Generator().manual_seed(seed)
    starts = cold_starts(model, "prior", n, generator) if isinstance(model, ColdDiffusion) else None
    key = {"name": name, "n": n, "seed": seed, "batch": batch}
    parts, earlier = _resume_samples(partial, key, generator)
    start = time.perf_counter() - earlier
    with torch.no_grad():
        for first in range(sum(len(p) for p in parts), n, batch):
            size = min(batch, n - first)
            if starts is not None:
                parts.append(to_unit(model.sample(starts[first : first + size])))
            elif isinstance(model, DDPM):
                parts.append(to_unit(model.sample(size, generator=generator)))
            elif isinstance(model, DequantizedFlow):
                parts.append(model.sample(size, generator=generator) / (model.num_bins - 1))
            else:
                parts.append(model.sample(size, generator=generator))
            parts[-1] = parts[-1].reshape(size, 1, 28, 28).float()
            if partial is not None:
                state = {
                    **key, "samples": torch.cat(parts), "generator": generator.get_state(),
                    "seconds": time.perf_counter() - start,
                }  # fmt: skip
                buffer = io.BytesIO()
                torch.save(state, buffer)
                write_atomic(partial, buffer.getvalue())
    seconds = time.perf_counter() - start
    if partial is not None:
        partial.unlink(missing_ok=True)
    return torch.cat(parts).clamp(0, 1), seconds


def _resume_samples(
    partial: Path | None, key: dict, generator: torch.Generator
) -> tuple[list[Tensor], float]:
    """The finished batches saved at `partial` by samples01 with the same `key` (restoring
    `generator` to where they ended) and the seconds they took, or ([], 0.0) without any."""
    if partial is None or not partial.is_file():
        return [], 0.0
    state = torch.load(partial, map_location="cpu", weights_only=True)
    found = {k: state[k] for k in key}
    if found != key:
        raise ValueError(
            f"partial={str(partial)!r} holds samples of {found}, not {key}; remove it to start over"
        )
    generator.set_state(state["generator"])
    print(f"samples01: continuing {key['name']} after {len(state['samples'])} samples", flush=True)
    return [state["samples"]], float(state["seconds"])


def recorded_evaluations(name: str) -> dict[str, list]:
    """The evaluations `fit` recorded while training `name` ({metric: [[step, value], ...]}),
    read from its resume file, or {} when it has none."""
    path = zoo.resume_path(name)
    if not path.is_file():
        return {}
    return torch.load(path, map_location="cpu", weights_only=True)["state"].get("evaluations", {})


def sample_quality_study(
    models: str = ",".join(QUALITY_MODELS), n: int = 1000, batch: int = 250
) -> dict:
    """The sample-quality report of each model (dgm_lib.metrics.sample_report of n samples).

    One pair of files per model, so that a model is scored once and a new one adds its own files.

    Returns {"sample_quality_NAME_N.json": the report, seconds, the evaluations recorded during
    training; "sample_quality_NAME_N.npz": {"samples": the first 64 samples as uint8 (64, 28, 28)}}
    for every NAME of the comma-separated `models`.
    """
    files = {}
    for name in models.split(","):
        partial = zoo.resume_path(f"sample_quality_{name}_{n}")
        samples, seconds = samples01(name, n, batch=batch, partial=partial)
        start = time.perf_counter()
        report = sample_report(samples)
        files[f"sample_quality_{name}_{n}.json"] = {
            **asdict(report), "fid_ratio": report.fid_ratio,
            "seconds": round(seconds + time.perf_counter() - start, 1), "batch": batch,
            "evaluations": recorded_evaluations(name),
        }  # fmt: skip
        images = (samples[:64, 0] * 255).round().to(torch.uint8).numpy()
        files[f"sample_quality_{name}_{n}.npz"] = {"samples": images}
    return files


def load_sample_quality(name: str, n: int = 1000) -> tuple[dict, Tensor]:
    """The shipped sample-quality report of zoo model `name` at n samples, and its 64 samples.

    Args:
        name: a zoo image model scored by `python -m dgm_lib.zoo study sample_quality`.
        n: the number of samples it was scored at.

    Returns:
        (the report as a dict: n, fid, fid_floor, confident, confident_real, nearest_train,
        nearest_train_real, fid_ratio, seconds, evaluations, command; the samples as floats in
        [0, 1], (64, 1, 28, 28)).
    """
    path = zoo.results_dir() / f"sample_quality_{name}_{n}.json"
    if not path.is_file():
        scored = sorted(p.name for p in zoo.results_dir().glob("sample_quality_*.json"))
        raise ValueError(f"no sample-quality report for name={name!r} at n={n}; shipped: {scored}")
    report = json.loads(path.read_text())
    samples = np.load(path.with_suffix(".npz"))["samples"]
    return report, torch.from_numpy(samples).float().div(255).unsqueeze(1)


def sample_quality_table(names: list[str], n: int = 1000) -> str:
    """The shipped sample-quality reports of zoo models `names` at n samples, one row each.

    Columns: FID against the test digits, the real-vs-real floor and their ratio; the confident
    share (the real test digits' share in the header); the median distance of a sample to its
    nearest training digit (the test digits' in the header). Read from the study files, so the
    table is the same on every machine.

    Args:
        names: zoo image models scored by `python -m dgm_lib.zoo study sample_quality`.
        n: the number of samples they were scored at.

    Returns:
        The table as text.
    """
    reports = [load_sample_quality(name, n)[0] for name in names]
    width = max(len(name) for name in names)
    real = reports[0]
    lines = [
        f"n = {n} samples per model; the real test digits: confident share "
        f"{real['confident_real']:.3f},",
        f"median distance to the nearest training digit {real['nearest_train_real']:.2f}",
        f"{'model':{width}s}    FID  floor  ratio  confident  nearest train",
    ]
    for name, r in zip(names, reports):
        lines.append(
            f"{name:{width}s} {r['fid']:6.1f} {r['fid_floor']:6.2f} {r['fid_ratio']:6.1f} "
            f"{r['confident']:10.3f} {r['nearest_train']:14.2f}"
        )
    return "\n".join(lines)


zoo.register_study(
    zoo.Study(
        "sample_quality",
        run=sample_quality_study,
        options=(
            zoo.StudyOption("models", str, ",".join(QUALITY_MODELS), "comma-separated zoo names"),
            zoo.StudyOption("n", int, 1000, "samples per model"),
            zoo.StudyOption(
                "batch",
                int,
                250,
                "samples per sampling call; a killed study resumes after "
                "the last finished one (its state in the zoo's resume/ folder)",
            ),
        ),
    )
)
