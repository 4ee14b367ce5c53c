"""dgm_lib.metrics: the Frechet distance (eq. 4) in float64 against closed forms, its never-NaN
square root, the shipped MNIST classifier, and FID growing monotonically with blur and noise on real
digits."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from dgm_lib import metrics, zoo
from dgm_lib.data import load_mnist
from dgm_lib.nets import FEATURES


def random_covariance(d: int, rank: int, seed: int) -> torch.Tensor:
    """A random PSD matrix A A^T of the given rank, float64."""
    a = torch.randn(d, rank, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T


def exact_frechet(mu1, s1, mu2, s2) -> float:
    """Eq. 4 with Tr (S1 S2)^{1/2} = sum sqrt(eig(S1^{1/2} S2 S1^{1/2})) by symmetric
    eigendecompositions."""
    e, v = torch.linalg.eigh(s1)
    root = v @ torch.diag(e.clamp(min=0).sqrt()) @ v.T
    tr_covmean = torch.linalg.eigvalsh(root @ s2 @ root).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * tr_covmean)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def classifier():
    return zoo.load("mnist_classifier", train_if_missing=False, device="cpu")


@pytest.fixture(scope="module")
def test_digits():
    return load_mnist("test")[0]


# --- frechet_distance and feature_statistics
# ---------------------------------------------------------------


def test_distance_to_itself_is_zero(float64):
    mu, s = (
        torch.randn(16, generator=torch.Generator().manual_seed(0)),
        random_covariance(16, 32, 1),
    )
    assert abs(metrics.frechet_distance(mu, s, mu, s)) < 1e-9 * float(s.trace())


def test_equal_covariances_give_squared_mean_distance(float64):
    """pytorch-fid's test: Sigma1 = Sigma2 cancels the trace term and FID = ||mu1 - mu2||^2."""
    g = torch.Generator().manual_seed(2)
    mu1, mu2, s = (
        torch.randn(10, generator=g),
        torch.randn(10, generator=g),
        random_covariance(10, 20, 3),
    )
    expected = float((mu1 - mu2).pow(2).sum())
    assert metrics.frechet_distance(mu1, s, mu2, s) == pytest.approx(expected, rel=1e-9)
    assert metrics.frechet_distance(mu1, torch.eye(10), mu2, torch.eye(10)) == pytest.approx(
        expected, rel=1e-12
    )


def test_commuting_covariances_closed_form(float64):
    """Diagonal covariances: FID = ||mu1 - mu2||^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2."""
    g = torch.Generator().manual_seed(4)
    mu1, mu2 = torch.randn(8, generator=g), torch.randn(8, generator=g)
    d1, d2 = torch.rand(8, generator=g) + 0.1, torch.rand(8, generator=g) * 5
    expected = float((mu1 - mu2).pow(2).sum() + (d1.sqrt() - d2.sqrt()).pow(2).sum())
    assert metrics.frechet_distance(mu1, torch.diag(d1), mu2, torch.diag(d2)) == pytest.approx(
        expected, rel=1e-10
    )


def test_general_covariances_match_eigendecomposition_and_are_symmetric(float64):
    g = torch.Generator().manual_seed(5)
    mu1, mu2 = torch.randn(12, generator=g), torch.randn(12, generator=g)
    s1, s2 = random_covariance(12, 30, 6), random_covariance(12, 15, 7)
    d12, d21 = (
        metrics.frechet_distance(mu1, s1, mu2, s2),
        metrics.frechet_distance(mu2, s2, mu1, s1),
    )
    assert d12 == pytest.approx(exact_frechet(mu1, s1, mu2, s2), rel=1e-8)
    assert d12 == pytest.approx(d21, rel=1e-10)
    assert isinstance(d12, float) and d12 > 0


def test_numpy_inputs_give_the_same_value(float64):
    mu, s1, s2 = torch.zeros(6), random_covariance(6, 10, 8), random_covariance(6, 10, 9)
    as_numpy = metrics.frechet_distance(mu.numpy(), s1.numpy(), mu.numpy(), s2.numpy())
    assert as_numpy == metrics.frechet_distance(mu, s1, mu, s2)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_singular_product_where_sqrtm_fails_is_finite(float64):
    """Rank-one covariances u u^T, v v^T: scipy's sqrtm of the product returns NaN here; the
    pytorch-fid offset fallback gives Tr (S1 S2)^{1/2} = |u . v| up to the offset's effect."""
    u = torch.tensor([-1.6110329009398943, 0.5565812104032944, 0.8271360407621694])
    v = torch.tensor([1.1535048318570928, -0.30741064076685276, -1.6363346154578384])
    s1, s2, zero = torch.outer(u, u), torch.outer(v, v), torch.zeros(3)
    expected = float(u @ u + v @ v - 2 * (u @ v).abs())
    value = metrics.frechet_distance(zero, s1, zero, s2)
    assert math.isfinite(value) and value == pytest.approx(expected, abs=1e-2)


def test_offset_fallback_is_used_when_sqrtm_is_not_finite(float64, monkeypatch):
    """Force the first sqrtm to fail: the result comes from the offset covariances and stays
    accurate."""
    calls, original = [], scipy.linalg.sqrtm

    def failing_once(a):
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else original(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", failing_once)
    mu, s1, s2 = torch.zeros(5), random_covariance(5, 8, 10), random_covariance(5, 8, 11)
    value = metrics.frechet_distance(mu, s1, mu, s2)
    assert len(calls) == 2
    np.testing.assert_allclose(
        calls[1], ((s1 + 1e-6 * torch.eye(5)) @ (s2 + 1e-6 * torch.eye(5))).numpy()
    )
    assert value == pytest.approx(exact_frechet(mu, s1, mu, s2), rel=1e-5)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_low_rank_sample_covariances_are_finite(float64):
    """Fewer samples than features (N = 5 < F = 40): singular covariances, still a finite, accurate
    distance."""
    g = torch.Generator().manual_seed(12)
    a, b = torch.randn(5, 40, generator=g), torch.randn(5, 40, generator=g) + 0.5
    (mu1, s1), (mu2, s2) = metrics.feature_statistics(a), metrics.feature_statistics(b)
    value = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert math.isfinite(value) and value == pytest.approx(
        exact_frechet(mu1, s1, mu2, s2), rel=1e-4
    )


def test_feature_statistics_float64_like_numpy():
    f = torch.randn(50, 7, generator=torch.Generator().manual_seed(13))  # float32 in, float64 out
    mu, sigma = metrics.feature_statistics(f)
    assert mu.dtype == sigma.dtype == torch.float64 and mu.shape == (7,) and sigma.shape == (7, 7)
    x = f.double().numpy()
    np.testing.assert_allclose(mu.numpy(), x.mean(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x, rowvar=False), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((torch.tensor([float("nan"), 0.0]), torch.eye(2), torch.zeros(2), torch.eye(2)), "mu1"),
        (
            (
                torch.zeros(2),
                torch.eye(2),
                torch.zeros(2),
                torch.tensor([[1.0, 0], [0, float("inf")]]),
            ),
            "sigma2",
        ),
        ((torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2)), "sigma1"),
        ((torch.zeros(2, 1), torch.eye(2), torch.zeros(2), torch.eye(2)), "mu1"),
        ((torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3)), "mu2"),
        (
            (torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), torch.zeros(2), torch.eye(2)),
            "sigma1",
        ),
        ((torch.zeros(2), -torch.eye(2), torch.zeros(2), torch.eye(2)), "positive semi-definite"),
    ],
)
def test_frechet_distance_errors_name_the_argument(args, name):
    with pytest.raises(ValueError, match=name):
        metrics.frechet_distance(*args)


@pytest.mark.parametrize(
    "features",
    [
        torch.zeros(5),
        torch.zeros(1, 3),
        torch.zeros(4, 0),
        torch.tensor([[0.0, 1], [float("inf"), 0]]),
    ],
)
def test_feature_statistics_errors(features):
    with pytest.raises(ValueError, match="features"):
        metrics.feature_statistics(features)


# --- the shipped classifier and FID on images
# ------------------------------------------------------------


def test_shipped_classifier_accuracy_and_features(classifier, test_digits):
    labels = load_mnist("test")[1]
    with torch.no_grad():
        accuracy = (classifier(test_digits).argmax(1) == labels).double().mean().item()
    assert accuracy >= 0.95  # 0.962 on the 1,000 test digits when shipped
    features = metrics.mnist_features(test_digits, classifier)
    assert features.shape == (1000, FEATURES) and features.dtype == torch.float32
    assert bool((features.std(0) > 1e-3).all())  # no dead unit: full-rank feature covariance
    assert zoo.checkpoint_path("mnist_classifier").stat().st_size < 600_000


def test_features_do_not_depend_on_batching_dtype_or_mode(classifier, test_digits):
    x = test_digits[:30]
    classifier.train()
    try:
        a = metrics.mnist_features(x, classifier, batch_size=7)
        assert classifier.training  # mode restored
    finally:
        classifier.eval()
    b = metrics.mnist_features(x.double(), classifier)  # cast to the classifier's dtype
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric(classifier, test_digits):
    a, b = test_digits[:400], test_digits[400:]
    assert abs(metrics.fid(a, a, classifier)) < 1e-6
    assert metrics.fid(a, b, classifier) == pytest.approx(metrics.fid(b, a, classifier), rel=1e-9)


def test_fid_floor_and_its_sample_size_bias(classifier):
    floor, floor_256 = metrics.fid_floor(classifier), metrics.fid_floor(classifier, n_train=256)
    assert 0 < floor < floor_256  # 2.19 and 13.5 when shipped: fewer samples, larger bias


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with standard deviation sigma (pixels), separable kernel of radius 3 sigma,
    reflect padding."""
    radius = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=images.dtype) / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    return F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))


def test_fid_grows_monotonically_with_blur(classifier, test_digits):
    x = test_digits[:500]
    values = [metrics.fid(x, blur(x, s), classifier) for s in (0.5, 0.8, 1.2, 1.8, 2.5)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_fid_grows_monotonically_with_noise(classifier, test_digits):
    x = test_digits[:500]
    g = torch.Generator().manual_seed(14)
    eps = torch.randn(x.shape, generator=g)
    values = [
        metrics.fid(x, (x + s * eps).clamp(0, 1), classifier) for s in (0.05, 0.1, 0.2, 0.35, 0.5)
    ]
    assert all(a < b for a, b in zip(values, values[1:])), values


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.zeros(4, 28, 28), "images01 must have shape"),
        (torch.zeros(4, 3, 28, 28), "images01 must have shape"),
        (torch.full((4, 1, 28, 28), float("nan")), "images01 contains non-finite"),
        (torch.full((4, 1, 28, 28), -1.0), r"images01 must have values in \[0, 1\]"),
    ],
)
def test_mnist_features_errors(classifier, images, match):
    with pytest.raises(ValueError, match=match):
        metrics.mnist_features(images, classifier)


def test_fid_and_floor_argument_errors(classifier, test_digits):
    with pytest.raises(ValueError, match="images_b01 must hold at least 2"):
        metrics.fid(test_digits[:5], test_digits[:1], classifier)
    with pytest.raises(ValueError, match="images_a01"):
        metrics.fid(test_digits[:5] * 2 - 1, test_digits[:5], classifier)
    with pytest.raises(TypeError, match="classifier"):
        metrics.fid(test_digits[:5], test_digits[:5], torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="images01"):
        metrics.mnist_features((test_digits[:5] * 255).to(torch.uint8), classifier)
    with pytest.raises(ValueError, match="n_train"):
        metrics.fid_floor(classifier, n_train=1)


def test_nearest_distances_are_exact_and_zero_for_copies():
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(30, 1, 28, 28, generator=g)
    images = torch.cat([reference[:3], torch.rand(5, 1, 28, 28, generator=g)])
    brute = torch.stack([(reference - x).flatten(1).norm(dim=1).min() for x in images]).double()
    got = metrics.nearest_distances(images, reference, chunk=3)
    assert torch.allclose(got, brute, atol=1e-9)
    assert got[:3].abs().max() == 0 and got[3:].min() > 1
    with pytest.raises(ValueError, match="reference01"):
        metrics.nearest_distances(images, reference[:0])


def test_sample_report_flags_copies_and_scores_noise_far_from_digits(classifier):
    """Training digits score a near-floor FID and are caught copying; uniform noise scores a
    high FID, few confident labels and no copying."""
    train, test = load_mnist("train")[0], load_mnist("test")[0]
    copies = metrics.sample_report(train[1000:1500], classifier)
    assert copies.n == 500 and copies.copies and copies.nearest_train == 0.0
    assert copies.confident_real == metrics.confident_share(test, classifier=classifier)
    assert copies.fid_ratio < 1.5
    noise = metrics.sample_report(
        torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)), classifier
    )
    assert not noise.copies and noise.fid_ratio > 5 and noise.confident < copies.confident
    with pytest.raises(ValueError, match="samples01 must hold 2 to 4000"):
        metrics.sample_report(train[:1], classifier)
