"""Shared pytest fixtures: float64 math, a headless matplotlib backend, and a no-network guard."""

import os
import socket
import tempfile

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# check() records verdicts in ./.dgm_progress.json by default: tests (and the notebook kernels they
# start) write to a private temporary file instead of the repository.
os.environ["DGM_PROGRESS_FILE"] = os.path.join(
    tempfile.mkdtemp(prefix="dgm_progress_"), "progress.json"
)
pytest_plugins = ("book_fixtures",)  # the session fixture built_book of the book and browser tests


@pytest.fixture
def float64():
    """Run the test with torch's default dtype set to float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch.float64
    torch.set_default_dtype(previous)


@pytest.fixture
def no_network(monkeypatch):
    """Make any outgoing connection (and DNS lookup) through Python's socket module fail at once."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def one_thread():
    """Tiny matmuls: one thread avoids OpenMP oversubscription on a loaded machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
