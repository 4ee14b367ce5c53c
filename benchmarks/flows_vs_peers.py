"""Benchmark dgm_lib's MAF and RealNVP against zuko's and nflows' with the same architecture, data
and training.

Every library's flow is trained by forward KL (maximum likelihood) on a fixed training sample of a
2D toy target, in lockstep (at each step every library takes one step on the same batch, so they all
see the same machine load), with Adam at the same learning rate for the same number of steps, on one
CPU thread. It reports the median time per training step after a warm-up (zero_grad + forward +
backward + Adam step) as CPU time of the thread (what the step costs, not counting time the OS gives
to other processes) and as wall time, the sampling throughput (samples per CPU second, median of
repeated draws) and the test NLL (nats) after the last step, over seeds, with the ratios to zuko.
Not a test.

    .venv/bin/python benchmarks/flows_vs_peers.py            # defaults below, prints a markdown
        table
    .venv/bin/python benchmarks/flows_vs_peers.py --steps 500 --seeds 1   # a quick smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Callable

import torch
import zuko
from nflows.distributions.normal import StandardNormal as NflowsNormal
from nflows.flows.base import Flow as NflowsFlow
from nflows.transforms import (
    AffineCouplingTransform,
    CompositeTransform,
    MaskedAffineAutoregressiveTransform,
    ReversePermutation,
)
from torch import Tensor, nn

from dgm_lib.data.toy2d import get_target
from dgm_lib.flows import make_maf, make_realnvp

M = 2  # dimension of the toy targets


@dataclass
class Contender:
    """One library's flow behind a common interface: parameters, NLL of a batch, and sampling."""

    library: str
    model: str
    module: nn.Module
    nll: Callable[[Tensor], Tensor]
    sample: Callable[[int], Tensor]


class NflowsMLP(nn.Module):
    """Linear-ReLU-...-Linear (the conditioner of every library's coupling layers here), with
    nflows' context arg."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if k < len(sizes) - 2 else [])
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(x)


def dgm(model: str, depth: int, hidden: tuple[int, ...]) -> Contender:
    flow = (make_maf if model == "MAF" else make_realnvp)(M, depth=depth, hidden=hidden)
    return Contender("dgm_lib", model, flow, flow.forward_kl, flow.sample)


def zuko_flow(model: str, depth: int, hidden: tuple[int, ...]) -> Contender:
    cls = zuko.flows.MAF if model == "MAF" else zuko.flows.RealNVP
    flow = cls(
        M, transforms=depth, hidden_features=hidden
    )  # alternating orders / masks, as in dgm_lib
    return Contender(
        "zuko", model, flow, lambda x: -flow().log_prob(x).mean(), lambda n: flow().sample((n,))
    )


def nflows_flow(model: str, depth: int, hidden: tuple[int, ...]) -> Contender:
    transforms: list[nn.Module] = []
    for k in range(depth):
        if (
            model == "MAF"
        ):  # MADE with plain (non-residual) blocks: in -> h1 -> ... -> out, ReLU between
            transforms.append(
                MaskedAffineAutoregressiveTransform(
                    features=M,
                    hidden_features=hidden[0],
                    num_blocks=len(hidden) - 1,
                    use_residual_blocks=False,
                )
            )
            if k < depth - 1:
                transforms.append(ReversePermutation(M))
        else:
            mask = (torch.arange(M) % 2 == k % 2).int()  # 1 = transformed, alternating
            transforms.append(
                AffineCouplingTransform(mask, lambda i, o: NflowsMLP([i, *hidden, o]))
            )
    flow = NflowsFlow(CompositeTransform(transforms), NflowsNormal([M]))
    return Contender("nflows", model, flow, lambda x: -flow.log_prob(x).mean(), flow.sample)


LIBRARIES = {"dgm_lib": dgm, "zuko": zuko_flow, "nflows": nflows_flow}


@dataclass
class Result:
    step_seconds: list[float]  # CPU time of this thread per step (immune to other processes' load)
    step_wall_seconds: list[float]
    samples_per_second: float
    test_nll: float


def train_side_by_side(
    contenders: list[Contender], train: Tensor, test: Tensor, args: argparse.Namespace, seed: int
) -> list[Result]:
    """Train all contenders in lockstep: at every step each takes one Adam step on the same batch.

    Interleaving step by step exposes every library to the same machine load, which matters on a
    shared CPU. Batches come from a generator seeded with `seed` (an epoch is a permutation; the
    last partial batch is dropped).
    """
    optimizers = [torch.optim.Adam(c.module.parameters(), lr=args.lr) for c in contenders]
    order = torch.Generator().manual_seed(seed)
    times: list[list[float]] = [[] for _ in contenders]
    walls: list[list[float]] = [[] for _ in contenders]
    batches: list[Tensor] = []
    for _ in range(args.steps):
        if not batches:
            batches = [
                b
                for b in train[torch.randperm(len(train), generator=order)].split(args.batch_size)
                if len(b) == args.batch_size
            ][::-1]
        batch = batches.pop()
        for contender, optimizer, seconds, wall in zip(contenders, optimizers, times, walls):
            start, start_wall = time.thread_time(), time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            contender.nll(batch).backward()
            optimizer.step()
            seconds.append(time.thread_time() - start)
            wall.append(time.perf_counter() - start_wall)
    results = []
    for contender, seconds, wall in zip(contenders, times, walls):
        contender.module.eval()
        with torch.no_grad():
            test_nll = contender.nll(test).item()
        results.append(Result(seconds[args.warmup :], wall[args.warmup :], 0.0, test_nll))
    with torch.no_grad():  # sampling throughput, also interleaved
        draws: list[list[float]] = [[] for _ in contenders]
        for _ in range(args.sample_repeats):
            for contender, seconds in zip(contenders, draws):
                start = time.thread_time()
                contender.sample(args.sample_size)
                seconds.append(time.thread_time() - start)
    for result, seconds in zip(results, draws):
        result.samples_per_second = args.sample_size / statistics.median(seconds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="two_moons")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100, help="steps excluded from the timing")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample-size", type=int, default=10_000)
    parser.add_argument("--sample-repeats", type=int, default=5)
    parser.add_argument("--maf-depth", type=int, default=5)
    parser.add_argument("--realnvp-depth", type=int, default=8)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    torch.set_num_threads(args.threads)
    hidden = tuple(args.hidden)
    depth = {"MAF": args.maf_depth, "RealNVP": args.realnvp_depth}

    target = get_target(args.target)
    train = target.sample(
        args.n_train, generator=torch.Generator().manual_seed(0), dtype=torch.float32
    )
    test = target.sample(
        args.n_test, generator=torch.Generator().manual_seed(1), dtype=torch.float32
    )
    entropy = -target.log_prob(test.double()).mean().item()

    results: dict[tuple[str, str], list[Result]] = {}
    for seed in range(args.seeds):
        for model in ("MAF", "RealNVP"):
            contenders = []
            for library in args.libraries:
                torch.manual_seed(seed)
                contenders.append(LIBRARIES[library](model, depth[model], hidden))
            for library, result in zip(
                args.libraries, train_side_by_side(contenders, train, test, args, seed)
            ):
                results.setdefault((model, library), []).append(result)

    print(
        f"target {args.target} (test entropy {entropy:.3f} nats = best achievable NLL), "
        f"{args.n_train} train / "
        f"{args.n_test} test points, batch {args.batch_size}, Adam lr {args.lr}, {args.steps} "
        "steps, "
        f"{args.seeds} seeds, hidden {hidden}, MAF depth {depth['MAF']}, RealNVP depth "
        f"{depth['RealNVP']}, "
        f"{args.threads} thread(s); torch {torch.__version__}, zuko {version('zuko')}, nflows "
        f"{version('nflows')}, "
        f"{platform.processor() or platform.machine()}\n"
    )
    columns = (
        "library",
        "model",
        "ms/step (CPU)",
        "ms/step (wall)",
        "samples/s",
        "test NLL (mean ± sd)",
        "time ÷ zuko",
        "NLL − zuko",
    )
    print("| " + " | ".join(columns) + " |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model in ("MAF", "RealNVP"):
        summary = {}
        for library in args.libraries:
            runs = results[(model, library)]
            nlls = [r.test_nll for r in runs]
            summary[library] = (
                1e3 * statistics.median(t for r in runs for t in r.step_seconds),
                1e3 * statistics.median(t for r in runs for t in r.step_wall_seconds),
                statistics.median(r.samples_per_second for r in runs),
                statistics.mean(nlls),
                statistics.stdev(nlls) if len(nlls) > 1 else 0.0,
            )
        ref = summary.get("zuko")
        for library, (ms, wall, sps, nll, sd) in summary.items():
            ratio = f"{ms / ref[0]:.2f}" if ref else "-"
            delta = f"{nll - ref[3]:+.3f}" if ref else "-"
            row = (
                library,
                model,
                f"{ms:.2f}",
                f"{wall:.2f}",
                f"{sps:,.0f}",
                f"{nll:.3f} ± {sd:.3f}",
                ratio,
                delta,
            )
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
