"""2D targets: normalized densities with `sample(n)` and exact `log_prob(x)`, and unnormalized
energies.

Normalized targets are exactly the densities their samplers draw from: two moons and rings are fine
mixtures of isotropic Gaussians placed along arcs (component spacing <= std, so the ridge is
smooth), 8 Gaussians is a Gaussian mixture, checkerboard is uniform on the black squares of [-4,
4)^2. Energy targets (U1-U4 of Rezende & Mohamed 2015, and a two-mode banana) give the unnormalized
`log_prob(x) = -U(x)` that reverse KL needs, and `log_normalizer = log of the integral of exp(-U)
over the box [-4, 4]^2`, computed once on a grid (U2-U4 are not integrable on all of R^2).
`sample(n, generator)` draws in float64 on the generator's device (CPU without one), then returns
the points on `device` (default: that device) in `dtype` (default: torch's default dtype);
`log_prob(x)` follows x.
"""

from __future__ import annotations

import math
from functools import cached_property, lru_cache
from typing import Callable, Iterator

import torch
from torch import Tensor

from dgm_lib.checks import check_float_dtype, check_number, check_positive_int, check_real

LIM = 4.0  # every target lives (essentially) in [-LIM, LIM]^2
ENERGIES: tuple[str, ...] = ("u1", "u2", "u3", "u4", "banana")  # the unnormalized targets
WALL = 0.1  # width of the Gaussian wall that confines the energies to the box [-LIM, LIM]^2


def _check_x(x: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point tensor, got {type(x).__name__} {getattr(x, 'dtype', '')}"
        )
    if x.shape[-1:] != (2,):
        raise ValueError(f"x must have shape (..., 2), got {tuple(x.shape)}")


def _sample_args(
    generator: torch.Generator | None, dtype: torch.dtype | None
) -> tuple[torch.device, torch.dtype]:
    """Sampling happens on the generator's device (CPU by default) in `dtype` (default dtype by
    default)."""
    if dtype is not None:
        check_float_dtype(dtype, "dtype")
    return (
        generator.device if generator is not None else torch.device("cpu"),
        dtype or torch.get_default_dtype(),
    )


class Target:
    """A 2D target; `normalized` says whether `log_prob` integrates to one."""

    name: str
    normalized: bool

    def log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class GaussianMixture(Target):
    """p(x) = sum_k w_k N(x; mu_k, std^2 I)."""

    normalized = True

    def __init__(self, name: str, means: Tensor, std: float, weights: Tensor | None = None):
        self.name, self.std = name, check_number(std, "std")
        if len(means) == 0:
            raise ValueError(f"{name}: a Gaussian mixture needs at least one component, got none")
        self.means = means.to(torch.float64)
        w = (
            torch.ones(len(means), dtype=torch.float64)
            if weights is None
            else weights.to(torch.float64)
        )
        self.weights = w / w.sum()

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """n draws: a component k ~ w, then mu_k + std * eps, eps ~ N(0, I); returns (n, 2)."""
        check_positive_int(n, "n")
        gen_device, dtype = _sample_args(generator, dtype)
        k = torch.multinomial(self.weights.to(gen_device), n, replacement=True, generator=generator)
        eps = torch.randn(n, 2, generator=generator, device=gen_device, dtype=torch.float64)
        x = self.means.to(gen_device)[k] + self.std * eps
        return x.to(device=device or gen_device, dtype=dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """log sum_k w_k N(x; mu_k, std^2 I), exact, on x's device and dtype; shape x.shape[:-1]."""
        _check_x(x)
        means = self.means.to(x)
        log_w = self.weights.log().to(x)
        chunks = []
        for c in x.reshape(-1, 2).split(
            8192
        ):  # |x - mu|^2 = |x|^2 - 2 x.mu + |mu|^2, a matmul per chunk
            sq = (
                c.square().sum(-1, keepdim=True) - 2 * c @ means.T + means.square().sum(-1)
            ).clamp_min(0)
            chunks.append(torch.logsumexp(log_w - sq / (2 * self.std**2), dim=-1))
        log_norm = math.log(2 * math.pi * self.std**2)
        return (torch.cat(chunks) - log_norm).reshape(x.shape[:-1])


def _arc(
    center: tuple[float, float], radius: float, start: float, stop: float, std: float
) -> Tensor:
    """Points on an arc at the midpoints of ceil(length / std) equal angle cells."""
    k = math.ceil(abs(stop - start) * radius / std)
    theta = start + (stop - start) * (torch.arange(k, dtype=torch.float64) + 0.5) / k
    return torch.stack([center[0] + radius * theta.cos(), center[1] + radius * theta.sin()], dim=-1)


def two_moons(std: float = 0.2) -> GaussianMixture:
    """Two interleaved half circles as a fine Gaussian mixture.

    Two interleaved half circles (radius 2, centers (-1, -0.5) and (1, 0.5)), equal mass, Gaussian
    noise `std`.
    """
    check_number(std, "std")
    upper = _arc((-1.0, -0.5), 2.0, 0.0, math.pi, std)
    lower = _arc((1.0, 0.5), 2.0, math.pi, 2 * math.pi, std)
    weights = torch.cat(
        [torch.full((len(upper),), 0.5 / len(upper)), torch.full((len(lower),), 0.5 / len(lower))]
    )
    return GaussianMixture("two_moons", torch.cat([upper, lower]), std, weights)


def eight_gaussians(radius: float = 2.5, std: float = 0.3) -> GaussianMixture:
    """Eight equal Gaussians N(mu_k, std^2 I), mu_k = radius (cos 2 pi k / 8, sin 2 pi k / 8)."""
    radius = check_real(radius, "radius", lambda v: True, "a finite number", "eight_gaussians")
    theta = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return GaussianMixture(
        "eight_gaussians", radius * torch.stack([theta.cos(), theta.sin()], -1), std
    )


def rings(radii: tuple[float, ...] = (0.8, 1.6, 2.4, 3.2), std: float = 0.1) -> GaussianMixture:
    """Concentric circles of the given radii, equal mass per ring, Gaussian noise `std`."""
    check_number(std, "std")
    if isinstance(radii, (str, bytes)) or not hasattr(radii, "__len__") or len(radii) == 0:
        raise ValueError(f"radii must be a non-empty sequence of positive numbers, got {radii!r}")
    for k, r in enumerate(radii):
        check_number(r, f"radii[{k}]")
    arcs = [_arc((0.0, 0.0), r, 0.0, 2 * math.pi, std) for r in radii]
    weights = torch.cat([torch.full((len(a),), 1.0 / (len(radii) * len(a))) for a in arcs])
    return GaussianMixture("rings", torch.cat(arcs), std, weights)


class Checkerboard(Target):
    """Uniform on the 8 black cells of a 4 x 4 board covering [-4, 4)^2.

    Uniform on the 8 black cells (i + j even) of a 4 x 4 board of 2 x 2 squares covering [-4, 4)^2.
    """

    name, normalized = "checkerboard", True
    _side = 2.0
    _log_density = -math.log(8 * 2.0 * 2.0)

    def _black_corners(self) -> Tensor:
        ij = torch.tensor(
            [(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0], dtype=torch.float64
        )
        return -LIM + self._side * ij

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """n draws: a black cell uniformly, then a uniform point in it; returns (n, 2)."""
        check_positive_int(n, "n")
        gen_device, dtype = _sample_args(generator, dtype)
        k = torch.randint(0, 8, (n,), generator=generator, device=gen_device)
        u = torch.rand(n, 2, generator=generator, device=gen_device, dtype=torch.float64)
        x = self._black_corners().to(gen_device)[k] + self._side * u
        return x.to(device=device or gen_device, dtype=dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """log(1/32) on the black cells, -inf elsewhere; on x's device and dtype."""
        _check_x(x)
        cell = torch.floor((x + LIM) / self._side)
        inside = ((cell >= 0) & (cell <= 3)).all(-1)
        black = (cell.sum(-1) % 2) == 0
        return torch.full_like(x[..., 0], self._log_density).masked_fill(
            ~(inside & black), -math.inf
        )


def _w1(z: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z[..., 0] / 4)


def _u1(z: Tensor) -> Tensor:
    r = z.norm(dim=-1)
    modes = torch.stack([-0.5 * ((z[..., 0] - 2) / 0.6) ** 2, -0.5 * ((z[..., 0] + 2) / 0.6) ** 2])
    return 0.5 * ((r - 2) / 0.4) ** 2 - torch.logsumexp(modes, dim=0)


def _u2(z: Tensor) -> Tensor:
    return 0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2


def _u3(z: Tensor) -> Tensor:
    w2 = 3 * torch.exp(-0.5 * ((z[..., 0] - 1) / 0.6) ** 2)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + w2) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b]), dim=0)


def _u4(z: Tensor) -> Tensor:
    w3 = 3 * torch.sigmoid((z[..., 0] - 1) / 0.3)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + w3) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b]), dim=0)


def _banana(z: Tensor) -> Tensor:
    return (z[..., 0] ** 2 - 4) ** 2 / 4 + 0.5 * ((z[..., 1] - z[..., 0] ** 2 / 2 + 1) / 0.5) ** 2


class Energy(Target):
    """Unnormalized target pi(x) proportional to exp(-U(x)).

    `log_prob` returns -U(x), NOT normalized.
    """

    normalized = False

    def __init__(self, name: str, potential: Callable[[Tensor], Tensor], description: str):
        self.name, self.potential, self.description = name, potential, description

    def log_prob(self, x: Tensor) -> Tensor:
        """-U(x) (unnormalized), on x's device and dtype; shape x.shape[:-1]."""
        _check_x(x)
        return -self.potential(x)

    @cached_property
    def log_normalizer(self) -> float:
        """log Z of exp(-U) over the box [-4, 4]^2, by quadrature.

        log Z = log of the integral of exp(-U) over [-4, 4]^2 (midpoint rule, 1000 x 1000 cells,
        float64).
        """
        n = 1000
        h = 2 * LIM / n
        t = -LIM + h * (torch.arange(n, dtype=torch.float64) + 0.5)
        grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1)
        return float(torch.logsumexp(self.log_prob(grid).flatten(), 0) + 2 * math.log(h))


_FACTORIES: dict[str, Callable[[], Target]] = {
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "rings": rings,
    "checkerboard": Checkerboard,
    "u1": lambda: Energy(
        "u1", _u1, "U1 (Rezende & Mohamed 2015): a ring with two modes at x1 = +-2."
    ),
    "u2": lambda: Energy(
        "u2", _u2, "U2 (Rezende & Mohamed 2015): a sine-shaped ridge x2 = w1(x1)."
    ),
    "u3": lambda: Energy(
        "u3", _u3, "U3 (Rezende & Mohamed 2015): a sine ridge splitting into two branches."
    ),
    "u4": lambda: Energy(
        "u4", _u4, "U4 (Rezende & Mohamed 2015): two sine ridges joined by a sigmoid step."
    ),
    "banana": lambda: Energy(
        "banana",
        _banana,
        "Two-mode banana: U = (x1^2 - 4)^2 / 4 + (x2 - x1^2 / 2 + 1)^2 / (2 * 0.5^2).",
    ),
}
TARGETS: tuple[str, ...] = tuple(_FACTORIES)


@lru_cache(maxsize=None)
def get_target(name: str) -> Target:
    """The target called `name` (one of TARGETS); the same instance on every call.

    Example:
        >>> target = get_target("eight_gaussians")
        >>> target.sample(4, torch.Generator().manual_seed(0)).shape, target.normalized
        (torch.Size([4, 2]), True)
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown target {name!r}; allowed: {', '.join(TARGETS)}")
    return _FACTORIES[name]()


def grid_integral(
    fn: Callable[[Tensor], Tensor],
    lim: float = LIM,
    n_grid: int = 400,
    dtype: torch.dtype | None = None,
) -> float:
    """Midpoint rule for the integral of fn(x) over [-lim, lim]^2 with n_grid^2 cells, in float64.

    fn gets batches of grid points of shape (k, 2) in `dtype` (default: torch's default dtype).

    Example:
        >>> round(grid_integral(lambda x: get_target("two_moons").log_prob(x).exp()), 4)
        1.0
    """
    h = 2 * lim / n_grid
    t = -lim + h * (torch.arange(n_grid, dtype=torch.float64) + 0.5)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(-1, 2)
    grid = grid.to(dtype or torch.get_default_dtype())
    values = torch.cat([fn(chunk).detach().double() for chunk in grid.split(40_000)])
    if not torch.isfinite(values).all():
        raise ValueError("fn returned non-finite values on the grid")
    return float(values.sum() * h * h)


class ConfinedEnergy:
    """An energy confined to the box: log pi~(x) = -U(x) - |relu(|x| - LIM)|^2 / (2 WALL^2).

    Inside [-LIM, LIM]^2 this is the energy's own -U(x); outside, a steep Gaussian wall makes
    exp(-U) integrable on R^2 (U2-U4 are ridges along x_1 that never decay), so the reverse KL
    KL(p(x|theta) || pi) exists for every energy. `log_normalizer` is log Z of the confined density
    (grid quadrature), so log pi = log pi~ - log Z.
    """

    def __init__(self, name: str):
        if name not in ENERGIES:
            raise ValueError(f"name must be one of the energies {ENERGIES}, got {name!r}")
        self.name, self.energy = name, get_target(name)

    def log_prob(self, x: Tensor) -> Tensor:
        """-U(x) - |relu(|x| - LIM)|^2 / (2 WALL^2), unnormalized, shape x.shape[:-1]."""
        outside = torch.relu(x.abs() - LIM)
        return self.energy.log_prob(x) - 0.5 * (outside / WALL).square().sum(-1)

    @cached_property
    def log_normalizer(self) -> float:
        """log Z of exp(-U) over the box [-4, 4]^2, by quadrature.

        log Z = log of the integral of pi~ over R^2 (midpoint rule on the box plus 8 WALL).
        """
        integral = grid_integral(
            lambda x: self.log_prob(x).exp(), LIM + 8 * WALL, n_grid=600, dtype=torch.float64
        )
        return math.log(integral)


@lru_cache(maxsize=None)
def get_target_for_fit(name: str) -> ConfinedEnergy | Target:
    """The target a flow is fitted to: an energy confined to the box, else `get_target(name)`."""
    return ConfinedEnergy(name) if name in ENERGIES else get_target(name)


class TargetBatches:
    """An epoch of `n_batches` fresh batches x ~ pi(x) of size `batch_size`, drawn with `generator`.

    A data loader for `dgm_lib.training.fit`: unlimited data, so no overfitting.

    Example:
        >>> batches = TargetBatches(get_target("rings"), 8, 3, torch.Generator().manual_seed(0))
        >>> [tuple(x.shape) for x in batches]
        [(8, 2), (8, 2), (8, 2)]
    """

    def __init__(self, target: Target, batch_size: int, n_batches: int, generator: torch.Generator):
        self.target, self.batch_size, self.n_batches = target, batch_size, n_batches
        self.generator = generator

    def __iter__(self) -> Iterator[Tensor]:
        return (self.target.sample(self.batch_size, self.generator) for _ in range(self.n_batches))
