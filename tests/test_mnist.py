"""dgm_lib.data.mnist.load_mnist: the real subset, its deterministic split, and the offline fallback
(no network)."""

import threading
import time
from types import SimpleNamespace

import pytest
import torch
import torchvision.datasets

from dgm_lib.data import mnist
from dgm_lib.data.mnist import load_mnist


@pytest.fixture(scope="module")
def subset():
    return {split: load_mnist(split) for split in ("train", "test")}


def test_subset_shapes_ranges_and_labels(subset):
    for split, n in (("train", 4000), ("test", 1000)):
        images, labels = subset[split]
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert images.min() == 0.0 and images.max() == 1.0
        assert torch.bincount(labels, minlength=10).tolist() == [n // 10] * 10  # stratified
        assert len(set(labels[:50].tolist())) >= 8  # mixed order, not sorted by class
        assert 0.08 < images.mean() < 0.2  # real digits: mostly black background


def test_split_is_deterministic_and_disjoint(subset):
    again = load_mnist("train")
    assert torch.equal(again[0], subset["train"][0]) and torch.equal(again[1], subset["train"][1])
    train, test = subset["train"][0].flatten(1), subset["test"][0].flatten(1)
    everything = torch.cat([train, test])
    assert torch.unique(everything, dim=0).shape[0] == 5000  # no digit in both splits (or twice)
    assert (
        load_mnist("train")[0].data_ptr() != subset["train"][0].data_ptr()
    )  # callers get their own tensors


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of .*'valid'"):
        load_mnist("valid")
    with pytest.raises(ValueError, match="source must be one of"):
        load_mnist(source="web")


def _fake_mnist(fail_download=None, fail_local=True):
    """A stand-in for torchvision.datasets.MNIST: local files missing, download raising
    `fail_download`."""

    def make(root, train=True, download=False):
        if not download and fail_local:
            raise RuntimeError("Dataset not found. You can use download=True to download it")
        if download and fail_download is not None:
            raise fail_download
        n = 6 if train else 4
        return SimpleNamespace(
            data=torch.full((n, 28, 28), 255, dtype=torch.uint8), targets=torch.arange(n)
        )

    make.mirrors = ["https://mirror.invalid/mnist/"]
    return make


def test_offline_falls_back_to_subset_quickly(monkeypatch, no_network, tmp_path, subset):
    monkeypatch.setattr(torchvision.datasets, "MNIST", _fake_mnist())
    start = time.perf_counter()
    with pytest.warns(
        UserWarning, match=r"no MNIST mirror reachable .*using the real 5,000-digit subset"
    ) as record:
        images, labels = load_mnist("test", source="torchvision", root=tmp_path)
    assert time.perf_counter() - start < 2.0
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert torch.equal(images, subset["test"][0]) and torch.equal(labels, subset["test"][1])


def test_failed_download_falls_back(monkeypatch, tmp_path, subset):
    monkeypatch.setattr(mnist, "_reachable", lambda urls, timeout: True)
    failing = _fake_mnist(fail_download=RuntimeError("Error downloading train-images"))
    monkeypatch.setattr(torchvision.datasets, "MNIST", failing)
    with pytest.warns(UserWarning, match="Error downloading train-images"):
        images, _ = load_mnist("train", source="torchvision", root=tmp_path)
    assert torch.equal(images, subset["train"][0])
    unreachable = _fake_mnist(fail_download=OSError("[Errno 101] Network is unreachable"))
    monkeypatch.setattr(torchvision.datasets, "MNIST", unreachable)
    with pytest.warns(UserWarning, match="Network is unreachable"):
        assert load_mnist("train", source="torchvision", root=tmp_path)[0].shape == (
            4000,
            1,
            28,
            28,
        )


def test_torchvision_path_when_available(monkeypatch, no_network, tmp_path):
    monkeypatch.setattr(torchvision.datasets, "MNIST", _fake_mnist(fail_local=False))
    images, labels = load_mnist("train", source="torchvision", root=tmp_path)
    assert images.shape == (6, 1, 28, 28) and images.dtype == torch.float32 and images.max() == 1.0
    assert labels.dtype == torch.int64 and labels.tolist() == list(range(6))


def test_reachable_is_bounded_in_time(no_network):
    start = time.perf_counter()
    assert not mnist._reachable(
        ["https://mirror.invalid/a", "http://other.invalid:8080/b"], timeout=0.5
    )
    assert time.perf_counter() - start < 1.0


def test_reachable_gives_up_on_a_hanging_connection(monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(10)
        raise OSError("timed out")

    monkeypatch.setattr(mnist.socket, "create_connection", hang)
    start = time.perf_counter()
    assert not mnist._reachable(["https://mirror.invalid/a"], timeout=0.3)
    assert time.perf_counter() - start < 1.0
    release.set()
