"""Frechet distance and FID on the features of a small MNIST classifier shipped in the zoo (no
Inception download).

FID (Heusel et al., NeurIPS 2017; eq. 4 of the diffusion lecture) fits a Gaussian to the features of
real and of generated images and measures FID = ||mu_r - mu_g||^2 + Tr(Sigma_r + Sigma_g - 2
(Sigma_r Sigma_g)^{1/2}). Here the features are the 64 penultimate activations of
`dgm_lib.nets.MNISTClassifier` (zoo config "mnist_classifier" of dgm_lib.recipes, trained on the
4,000 training digits of load_mnist()), so the numbers are on their own scale: comparable with each
other at equal sample sizes, not with Inception FIDs. FID is biased upwards at small n, so compare
models at the same n; `fid_floor()` is the real-vs-real value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from dgm_lib import zoo
from dgm_lib.checks import check_positive_int
from dgm_lib.core import device_of, dtype_of
from dgm_lib.data.mnist import load_mnist
from dgm_lib.nets import MNISTClassifier

SQRTM_EPS = 1e-6  # pytorch-fid's offset added to both covariances when sqrtm of their product fails
# pytorch-fid's tolerance on the imaginary part of the diagonal of sqrtm(Sigma1 Sigma2)
IMAG_ATOL = 1e-3
# cdist without the shortcut via |a|^2 + |b|^2 - 2ab: a copied training digit is at 0 exactly
EXACT = "donot_use_mm_for_euclid_dist"


def mean_and_se(values: Tensor) -> tuple[float, float]:
    """Mean of a sample and its standard error std / sqrt(n), in float64 on the CPU, as floats.

    Example:
        >>> mean_and_se(torch.tensor([1.0, 2.0, 3.0]))
        (2.0, 0.5773502691896258)
    """
    if not isinstance(values, Tensor):
        raise TypeError(f"values must be a tensor, got {type(values).__name__}")
    values = values.detach().double().cpu()
    if values.numel() < 2:
        raise ValueError(
            f"values must hold at least 2 numbers for a standard error, got {values.numel()}"
        )
    if torch.isnan(values).any():
        raise ValueError(f"values contains NaN ({int(values.isnan().sum())} of {values.numel()})")
    return values.mean().item(), values.std().item() / values.numel() ** 0.5


def _as_float64(value, name: str) -> np.ndarray:
    """`value` (tensor or array-like) as a float64 NumPy array.

    ValueError naming `name` if it is not finite.
    """
    if isinstance(value, Tensor):
        value = value.detach().cpu().double().numpy()
    array = np.asarray(value, dtype=np.float64)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(
            f"{name} contains {bad} non-finite value(s) (NaN or inf) of {array.size}; allowed: "
            "finite"
        )
    return array


def _check_moments(mu: np.ndarray, sigma: np.ndarray, name: str) -> None:
    """mu must be (F,) and sigma a symmetric (F, F) matrix."""
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(
            f"mu{name} must have shape (F,) and sigma{name} (F, F), got {mu.shape} and "
            f"{sigma.shape}"
        )
    if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-10 * max(1.0, np.abs(sigma).max())):
        raise ValueError(f"sigma{name} must be a symmetric covariance matrix")


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) in float64 (eq. 4, Heusel et al.).

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2}). The square root is
    scipy.linalg.sqrtm as in pytorch-fid: when it is not finite (a singular product), both
    covariances get an offset 1e-6 I; its real part is kept, and an imaginary diagonal above 1e-3
    (covariances that are not positive semi-definite) is a ValueError. Never returns NaN.

    Args:
        mu1, sigma1: mean (F,) and covariance (F, F) of the first Gaussian (tensors or arrays).
        mu2, sigma2: those of the second.

    Returns:
        d^2 as a float.

    Example:
        >>> frechet_distance([0.0, 0.0], torch.eye(2), [3.0, 4.0], torch.eye(2))  # ||mu1 - mu2||^2
        25.0
    """
    mu1, sigma1 = _as_float64(mu1, "mu1"), _as_float64(sigma1, "sigma1")
    mu2, sigma2 = _as_float64(mu2, "mu2"), _as_float64(sigma2, "sigma2")
    _check_moments(mu1, sigma1, "1")
    _check_moments(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"mu1 and mu2 must have the same number of features, got {mu1.shape} and {mu2.shape}"
        )
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = SQRTM_EPS * np.eye(len(mu1))
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > IMAG_ATOL:
            raise ValueError(
                f"sqrtm(sigma1 sigma2) has an imaginary diagonal part up to {imag:.3g} (allowed "
                f"{IMAG_ATOL:g}): "
                "sigma1 and sigma2 must be positive semi-definite covariances"
            )
        covmean = covmean.real
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    if not math.isfinite(value):
        raise ValueError(
            f"the Frechet distance is not finite ({value}); check the scale of the covariances"
        )
    return value


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), in float64 on their device.

    mu = (1/N) sum_n f_n, Sigma = 1/(N - 1) sum_n (f_n - mu)(f_n - mu)^T (numpy.cov's convention,
    as pytorch-fid).
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a tensor of shape (N, F), got {type(features).__name__}")
    if features.dim() != 2 or features.shape[0] < 2 or features.shape[1] < 1:
        raise ValueError(
            f"features must have shape (N, F) with N >= 2 and F >= 1, got {tuple(features.shape)}"
        )
    if not torch.isfinite(features).all():
        raise ValueError("features contains non-finite values (NaN or inf); allowed: finite")
    f = features.detach().double()
    mu = f.mean(dim=0)
    centered = f - mu
    return mu, centered.T @ centered / (len(f) - 1)


def _load_classifier(classifier: MNISTClassifier | None) -> MNISTClassifier:
    """The given classifier, or the shipped zoo one (on the default device)."""
    if classifier is None:
        return zoo.load("mnist_classifier")
    if not isinstance(classifier, MNISTClassifier):
        raise TypeError(
            f"classifier must be an MNISTClassifier or None, got {type(classifier).__name__}"
        )
    return classifier


def _check_images01(images: Tensor, name: str) -> None:
    """images must be a finite float tensor (N, 1, 28, 28) with values in [0, 1]."""
    if not isinstance(images, Tensor) or not images.is_floating_point():
        kind = (
            f"tensor of dtype {images.dtype}"
            if isinstance(images, Tensor)
            else type(images).__name__
        )
        raise TypeError(
            f"{name} must be a floating-point tensor (N, 1, 28, 28) in [0, 1], got a {kind}"
        )
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28) or len(images) == 0:
        raise ValueError(
            f"{name} must have shape (N, 1, 28, 28) with N >= 1, got {tuple(images.shape)}"
        )
    if not torch.isfinite(images).all():
        raise ValueError(
            f"{name} contains non-finite values (NaN or inf); allowed: finite values in [0, 1]"
        )
    low, high = images.min().item(), images.max().item()
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(
            f"{name} must have values in [0, 1], got [{low:.3g}, {high:.3g}] (map [-1, 1] images "
            "with (x + 1) / 2)"
        )


def _classify(
    images01: Tensor, net: MNISTClassifier, fn: Callable[[Tensor], Tensor], batch_size: int = 500
) -> Tensor:
    """fn(batch) for batches of images in [0, 1] cast to the classifier's device and dtype, with the
    classifier in eval mode (no dropout, its mode restored after), concatenated."""
    was_training = net.training
    net.eval()
    device, dtype = device_of(net), dtype_of(net)
    try:
        with torch.no_grad():
            return torch.cat([fn(b.to(device, dtype)) for b in images01.split(batch_size)])
    finally:
        net.train(was_training)


def mnist_features(
    images01: Tensor, classifier: MNISTClassifier | None = None, batch_size: int = 500
) -> Tensor:
    """The classifier's penultimate features (N, F) of images (N, 1, 28, 28) in [0, 1].

    Args:
        images01: MNIST-shaped images in [0, 1].
        classifier: an MNISTClassifier, or None for the shipped zoo "mnist_classifier".
        batch_size: images per forward pass (in eval mode, no dropout).

    Returns:
        The features, on the images' device.
    """
    _check_images01(images01, "images01")
    check_positive_int(batch_size, "batch_size")
    net = _load_classifier(classifier)
    return _classify(images01, net, net.features, batch_size).to(images01.device)


def fid(images_a01: Tensor, images_b01: Tensor, classifier: MNISTClassifier | None = None) -> float:
    """FID (eq. 4) between two sets of MNIST-shaped images in [0, 1], on the classifier's features.

    Args:
        images_a01: images (N, 1, 28, 28) in [0, 1], N >= 2.
        images_b01: the other set.
        classifier: an MNISTClassifier, or None for the shipped zoo "mnist_classifier".

    Returns:
        frechet_distance of the float64 feature_statistics of the two sets (symmetric).
    """
    for images, name in ((images_a01, "images_a01"), (images_b01, "images_b01")):
        _check_images01(images, name)
        if len(images) < 2:
            raise ValueError(
                f"{name} must hold at least 2 images to estimate a covariance, got {len(images)}"
            )
    net = _load_classifier(classifier)
    mu_a, sigma_a = feature_statistics(mnist_features(images_a01, net))
    mu_b, sigma_b = feature_statistics(mnist_features(images_b01, net))
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


def confident_share(
    images01: Tensor, threshold: float = 0.9, classifier: MNISTClassifier | None = None
) -> float:
    """Share of images the classifier labels with confidence max_k p(k | x) >= threshold.

    For real test digits the shipped classifier gives about 0.94 at 0.9; a generator's samples that
    look like digits come close. Read it next to FID: speckle can be labelled confidently too.

    Args:
        images01: images (N, 1, 28, 28) in [0, 1].
        threshold: confidence in (0, 1).
        classifier: an MNISTClassifier, or None for the shipped zoo one.

    Returns:
        The share in [0, 1].
    """
    _check_images01(images01, "images01")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    net = _load_classifier(classifier)
    probs = _classify(images01, net, lambda b: net(b).softmax(-1))
    return float((probs.max(-1).values >= threshold).double().mean())


def fid_floor(classifier: MNISTClassifier | None = None, n_train: int | None = None) -> float:
    """Real-vs-real FID.

    Training digits against the 1,000 test digits of load_mnist() (n = 4000 vs 1000 by default).

    What a perfect generator scores against the test digits, up to the sample-size bias: with
    n_train, only the first n_train training digits (in the subset's mixed class order) are used,
    the floor of a model scored with n_train samples against the test digits (it grows as n_train
    shrinks).
    """
    train = load_mnist("train")[0]
    if n_train is not None and not 2 <= check_positive_int(n_train, "n_train") <= len(train):
        raise ValueError(f"n_train must be in [2, {len(train)}], got {n_train}")
    return fid(train[:n_train], load_mnist("test")[0], classifier)


@dataclass(frozen=True)
class SampleReport:
    """How much n samples of a generator look like MNIST digits, next to real digits' values.

    fid against the test digits and fid_floor (n training digits against them); confident share
    and confident_real (the test digits'); nearest_train: median Euclidean pixel distance of a
    sample to its nearest training digit, nearest_train_real: the same for the test digits (a
    model that copies its training digits sits below it).
    """

    n: int
    fid: float
    fid_floor: float
    confident: float
    confident_real: float
    nearest_train: float
    nearest_train_real: float

    @property
    def fid_ratio(self) -> float:
        """FID over the real-vs-real floor at the same n (1 would be a perfect generator)."""
        return self.fid / self.fid_floor

    @property
    def copies(self) -> bool:
        """Whether samples are closer to the training digits than test digits are."""
        return self.nearest_train < self.nearest_train_real


def nearest_distances(images01: Tensor, reference01: Tensor, chunk: int = 500) -> Tensor:
    """Euclidean pixel distance of each image to its nearest reference image: min_j ||x_i - r_j||.

    Args:
        images01: images (N, 1, 28, 28) in [0, 1].
        reference01: reference images (M, 1, 28, 28) in [0, 1], M >= 1.
        chunk: images compared at once (memory N x M floats per chunk).

    Returns:
        (N,) float64 distances.
    """
    _check_images01(images01, "images01")
    _check_images01(reference01, "reference01")
    if len(reference01) == 0:
        raise ValueError("reference01 must hold at least one image")
    reference = reference01.flatten(1).double().cpu()
    flat = images01.flatten(1).double().cpu()
    return torch.cat(
        [
            torch.cdist(part, reference, compute_mode=EXACT).min(1).values
            for part in flat.split(check_positive_int(chunk, "chunk"))
        ]
    )


def sample_report(samples01: Tensor, classifier: MNISTClassifier | None = None) -> SampleReport:
    """The sample-quality report of a generator's samples (one function for every image model).

    Args:
        samples01: n >= 2 samples (n, 1, 28, 28) in [0, 1]; n at most 4,000 (the training digits
            that give the real-vs-real floor at the same n).
        classifier: an MNISTClassifier, or None for the shipped zoo one.

    Returns:
        A SampleReport: FID against the 1,000 test digits with the floor of n training digits,
        the confident share (threshold 0.9) of samples and of test digits, and the median nearest-
        training-digit distance of samples and of test digits.
    """
    _check_images01(samples01, "samples01")
    train, test = load_mnist("train")[0], load_mnist("test")[0]
    if not 2 <= len(samples01) <= len(train):
        raise ValueError(f"samples01 must hold 2 to {len(train)} images, got {len(samples01)}")
    net = _load_classifier(classifier)
    return SampleReport(
        n=len(samples01),
        fid=fid(samples01, test, net),
        fid_floor=fid_floor(net, len(samples01)),
        confident=confident_share(samples01, classifier=net),
        confident_real=confident_share(test, classifier=net),
        nearest_train=float(nearest_distances(samples01, train).median()),
        nearest_train_real=float(nearest_distances(test, train).median()),
    )
