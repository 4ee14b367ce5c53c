"""Benchmark dgm_lib's UNet + DDPM against diffusers' UNet2DModel + DDPMScheduler: same data, batch,
steps, threads.

Both noise predictors are trained on the 4,000 training digits of dgm_lib.data.mnist_images(split,
"signed") (scaled to [-1, 1]) with the DDPM loss (Algorithm 1) and Adam at the same learning rate,
for the same number of steps, in lockstep (at each step both take one step on the same batch, so
they see the same machine load), on one CPU thread. dgm_lib's model is the zoo's ddpm_unet_default
before training (dgm_lib.diffusion.recipes.build_unet(): UNet with channels RECIPE.unet_channels,
default linear schedule beta 1e-4 -> 0.02, T = 1000); diffusers' is a UNet2DModel of about the same
parameter count (three levels of DownBlock2D / UpBlock2D, no attention) with a DDPMScheduler of the
same betas and T, in its default configuration otherwise (clip_sample=True, variance "fixed_small").
Both sample by T ancestral steps (Algorithm 2 / DDPMScheduler.step), in alternating chunks.

Reported: median CPU and wall milliseconds per training step after a warm-up (zero_grad + loss +
backward + Adam step), CPU seconds per sampled image, the mean training loss over the last 100
steps, and the FID (dgm_lib.metrics, features of the shipped MNIST classifier) of the samples
against the 1,000 test digits, with the real-vs-real floor at the same number of samples; ratios are
time / diffusers. Not a test.

    .venv/bin/python benchmarks/ddpm_vs_diffusers.py            # defaults below (about 15 minutes
        of one thread)
    .venv/bin/python benchmarks/ddpm_vs_diffusers.py --quick    # smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from dgm_lib import metrics, zoo
from dgm_lib.data.mnist import mnist_images, to_unit
from dgm_lib.diffusion import recipes
from dgm_lib.diffusion.schedules import PRESETS
from dgm_lib.training import ShuffledBatches

BETA1, BETA2, T = PRESETS["default"]
DIFFUSERS_CHANNELS = (
    16,
    24,
    40,
)  # 295,705 parameters vs 299,217 for dgm_lib's UNet(16, 32, 64): the up path of
# UNet2DModel has layers_per_block + 1 ResNet blocks per level, so equal widths would give twice the
# parameters


@dataclass
class Contender:
    """One library's noise predictor behind a common interface: parameters, DDPM loss of a batch,
    sampling."""

    library: str
    model: str
    module: nn.Module
    loss: Callable[[Tensor], Tensor]
    predict: Callable[[Tensor, Tensor], Tensor]  # the noise predictor g_t[z_t] (for counting FLOPs)
    sample: Callable[[int, torch.Generator], Tensor]  # n images in [-1, 1]
    step_seconds: list[float] = field(
        default_factory=list
    )  # CPU time of this thread per training step
    step_wall_seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    sample_seconds: float = 0.0  # CPU time of sampling, all chunks
    samples: list[Tensor] = field(default_factory=list)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def mflops(self) -> float:
        """Millions of floating-point operations of one noise prediction for one image (torch's FLOP
        counter)."""
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            self.predict(torch.zeros(1, 1, 28, 28), torch.full((1,), T // 2))
        return counter.get_total_flops() / 1e6


def dgm() -> Contender:
    ddpm = recipes.build_unet()
    if ddpm.T != T or not math.isclose(ddpm.schedule.beta[-1].item(), BETA2, rel_tol=1e-6):
        raise RuntimeError(
            f"build_unet() no longer uses the default schedule (T = {ddpm.T}); update the benchmark"
        )
    channels = tuple(block.conv1.out_channels for block in ddpm.net.down)
    return Contender(
        "dgm_lib", f"UNet{channels} + DDPM", ddpm, lambda x: ddpm(x)["loss"], ddpm.net, ddpm.sample
    )


def diffusers_ddpm() -> Contender:
    unet = UNet2DModel(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=DIFFUSERS_CHANNELS,
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3, norm_num_groups=8,
    )  # fmt: skip
    scheduler = DDPMScheduler(
        num_train_timesteps=T, beta_start=BETA1, beta_end=BETA2, beta_schedule="linear"
    )

    def predict(z: Tensor, t: Tensor) -> Tensor:
        return unet(z, t).sample

    def loss(x: Tensor) -> Tensor:
        t = torch.randint(0, T, (len(x),))
        eps = torch.randn_like(x)
        return F.mse_loss(predict(scheduler.add_noise(x, eps, t), t), eps)

    @torch.no_grad()
    def sample(n: int, generator: torch.Generator) -> Tensor:
        scheduler.set_timesteps(T)
        z = torch.randn((n, 1, 28, 28), generator=generator)
        for t in scheduler.timesteps:
            z = scheduler.step(predict(z, t), t, z, generator=generator).prev_sample
        return z

    return Contender(
        "diffusers", f"UNet2DModel{DIFFUSERS_CHANNELS} + DDPMScheduler", unet, loss, predict, sample
    )


LIBRARIES = {"dgm_lib": dgm, "diffusers": diffusers_ddpm}


def train_side_by_side(
    contenders: list[Contender], images: Tensor, args: argparse.Namespace
) -> None:
    """Train all contenders in lockstep: at every step each takes an Adam step on one batch."""
    optimizers = [torch.optim.Adam(c.module.parameters(), lr=args.lr) for c in contenders]
    data = ShuffledBatches(images, args.batch_size, torch.Generator().manual_seed(args.seed))
    batches = iter(())
    for _ in range(args.steps):
        batch = next(batches, None)
        if (
            batch is None or len(batch) < args.batch_size
        ):  # a new epoch; the last partial batch is dropped
            batches = iter(data)
            batch = next(batches)
        for contender, optimizer in zip(contenders, optimizers):
            contender.module.train()
            start, start_wall = time.thread_time(), time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = contender.loss(batch)
            loss.backward()
            optimizer.step()
            contender.step_seconds.append(time.thread_time() - start)
            contender.step_wall_seconds.append(time.perf_counter() - start_wall)
            contender.losses.append(loss.item())


def sample_side_by_side(contenders: list[Contender], args: argparse.Namespace) -> None:
    """n samples from each contender in alternating chunks of args.sample_batch, each library with
    its own generator."""
    generators = [torch.Generator().manual_seed(args.seed + 1) for _ in contenders]
    for contender in contenders:
        contender.module.eval()
    done = 0
    while done < args.n_samples:
        n = min(args.sample_batch, args.n_samples - done)
        for contender, generator in zip(contenders, generators):
            start = time.thread_time()
            contender.samples.append(contender.sample(n, generator))
            contender.sample_seconds += time.thread_time() - start
        done += n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps")
    parser.add_argument("--warmup", type=int, default=20, help="steps excluded from the timing")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--n-samples", type=int, default=256, help="samples per library, for the FID"
    )
    parser.add_argument("--sample-batch", type=int, default=128, help="images per sampling chunk")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 steps, 16 samples")
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.n_samples, args.sample_batch = 60, 10, 16, 16
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    if args.n_samples < 2:
        parser.error("--n-samples must be at least 2 (FID needs a covariance)")
    torch.set_num_threads(args.threads)

    contenders = []
    for library in args.libraries:
        torch.manual_seed(args.seed)
        contenders.append(LIBRARIES[library]())
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    train_side_by_side(contenders, mnist_images("train", "signed"), args)
    train_wall = time.perf_counter() - start
    sample_side_by_side(contenders, args)
    total_wall = time.perf_counter() - start

    classifier = zoo.load("mnist_classifier", train_if_missing=False, device="cpu")
    test = to_unit(mnist_images("test", "signed"))
    floor = metrics.fid_floor(classifier, n_train=args.n_samples)
    rows = []
    for c in contenders:
        rows.append({
            "contender": c, "ms": statistics.median(c.step_seconds[args.warmup :]) * 1e3,
            "ms_wall": statistics.median(c.step_wall_seconds[args.warmup :]) * 1e3,
            "per_image": c.sample_seconds / args.n_samples,
            "loss": statistics.fmean(c.losses[-100:]),
            "fid": metrics.fid(to_unit(torch.cat(c.samples)), test, classifier),
        })  # fmt: skip
    ref = next((r for r in rows if r["contender"].library == "diffusers"), rows[-1])

    print(
        f"MNIST subset ({len(mnist_images('train', 'signed'))} training digits in [-1, 1]), batch "
        f"{args.batch_size}, Adam lr "
        f"{args.lr}, {args.steps} steps (timing after {args.warmup} warm-up steps), linear betas "
        f"{BETA1} -> {BETA2}, "
        f"T = {T} training and sampling steps, {args.n_samples} samples per library (chunks of "
        f"{args.sample_batch}), "
        f"FID against the {len(test)} test digits (real-vs-real floor at n = {args.n_samples}: "
        f"{floor:.1f}), "
        f"{args.threads} thread(s), seed {args.seed}; torch {torch.__version__}, diffusers "
        f"{version('diffusers')}, "
        f"{platform.processor() or platform.machine()}; wall time {train_wall / 60:.1f} min "
        "training, "
        f"{total_wall / 60:.1f} min in all\n"
    )
    columns = (
        "library",
        "model",
        "parameters",
        "MFLOPs/image",
        "ms/step (CPU)",
        "ms/step (wall)",
        "s/image (CPU)",
        "loss (last 100)",
        "FID",
        "step ÷ diffusers",
        "sampling ÷ diffusers",
        "FID − diffusers",
    )
    print("| " + " | ".join(columns) + " |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        c = r["contender"]
        print(
            f"| {c.library} | {c.model} | {c.parameters:,} | {c.mflops():.1f} | {r['ms']:.1f} | "
            f"{r['ms_wall']:.1f} | "
            f"{r['per_image']:.3f} | {r['loss']:.4f} | {r['fid']:.1f} | {r['ms'] / ref['ms']:.2f} "
            "| "
            f"{r['per_image'] / ref['per_image']:.2f} | {r['fid'] - ref['fid']:+.1f} |"
        )


if __name__ == "__main__":
    main()
