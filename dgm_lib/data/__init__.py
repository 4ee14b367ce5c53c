"""Data: 2D toy targets with exact densities; MNIST (a real subset offline, torchvision online)."""

from dgm_lib.data.mnist import load_mnist, mnist_images, to_unit
from dgm_lib.data.toy2d import TARGETS, get_target

__all__ = ["TARGETS", "get_target", "load_mnist", "mnist_images", "to_unit"]
