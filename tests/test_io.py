"""dgm_lib.io: the atomic writer, checkpoints with clear errors, JSON and NPZ result files."""

import json

import numpy as np
import pytest
import torch

import dgm_lib
from dgm_lib import io as dgm_io
from dgm_lib.io import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    save_json,
    save_npz,
    write_atomic,
)

CONFIG = {"hidden": 8, "lr": 1e-3, "dims": (2, 8, 2), "net": {"act": "relu", "layers": 2}}


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "sub" / "model.pt"
    state = {"weight": torch.arange(6.0).reshape(2, 3), "step": 7, "names": ["a", "b"]}
    save_checkpoint(path, state, CONFIG)
    return path, state


def test_round_trip_keeps_state_and_metadata(ckpt):
    path, state = ckpt
    record = load_checkpoint(path, expected_config=CONFIG)
    assert torch.equal(record["state"]["weight"], state["weight"])
    assert record["state"]["step"] == 7 and record["state"]["names"] == ["a", "b"]
    assert record["config"]["net"] == CONFIG["net"]
    assert record["library_version"] == dgm_lib.__version__
    assert record["format_version"] == dgm_io.FORMAT_VERSION
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_save_is_atomic_and_leaves_no_temp_files(ckpt, monkeypatch):
    path, _ = ckpt
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(dgm_io.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"weight": torch.zeros(100)}, CONFIG)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]


def test_save_rejects_unsafe_state_and_config(tmp_path):
    with pytest.raises(TypeError, match="weights_only"):
        save_checkpoint(tmp_path / "x.pt", {"obj": object()}, {})
    with pytest.raises(TypeError, match="'net.act'"):
        save_checkpoint(tmp_path / "x.pt", {}, {"net": {"act": torch.nn.ReLU()}})
    with pytest.raises(CheckpointError, match="exceeds the budget of 1,000 bytes"):
        save_checkpoint(tmp_path / "x.pt", {"w": torch.zeros(1000)}, {}, max_bytes=1000)
    assert not list(tmp_path.iterdir())


def _one_line_error(path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "file not found" in _one_line_error(tmp_path / "nope.pt")


def test_truncated_and_corrupt_files(ckpt, tmp_path):
    path, _ = ckpt
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "corrupt or truncated" in _one_line_error(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert "corrupt or truncated" in _one_line_error(garbage)


def test_foreign_files(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    assert "not a dgm_lib checkpoint" in _one_line_error(plain)
    pickled = tmp_path / "pickled.pt"
    torch.save({"obj": np.random.RandomState(0)}, pickled)  # needs full unpickling: refused
    assert "corrupt or truncated" in _one_line_error(pickled)


def test_config_mismatch_names_the_key(ckpt):
    path, _ = ckpt
    message = _one_line_error(path, expected_config={**CONFIG, "hidden": 16})
    assert "config mismatch: 'hidden' is 8 in the file, expected 16" in message
    message = _one_line_error(path, expected_config={**CONFIG, "net": {"act": "tanh", "layers": 3}})
    assert "'net.act'" in message and "1 more" in message
    message = _one_line_error(path, expected_config={k: v for k, v in CONFIG.items() if k != "lr"})
    assert "'lr' is 0.001 in the file but absent" in message
    load_checkpoint(path, expected_config={**CONFIG, "dims": [2, 8, 2]})  # tuple == list


def test_version_mismatch(ckpt, monkeypatch):
    path, _ = ckpt
    monkeypatch.setattr(dgm_io, "__version__", "0.2.0")
    assert "written by dgm_lib 0.1.0, incompatible with 0.2.0" in _one_line_error(path)
    monkeypatch.setattr(dgm_io, "__version__", "0.1.7")
    load_checkpoint(path)  # patch releases read each other's checkpoints
    monkeypatch.setattr(dgm_io, "FORMAT_VERSION", 2)
    assert "format version 1, this dgm_lib reads 2" in _one_line_error(path)


def test_map_location(ckpt):
    path, _ = ckpt
    record = load_checkpoint(path, map_location="meta")
    assert record["state"]["weight"].device.type == "meta"


def test_checkpoint_error_is_a_runtime_error():
    assert issubclass(CheckpointError, RuntimeError)


def test_json_and_npz_files_are_written_atomically(tmp_path, monkeypatch):
    record = {"name": "x", "values": [1.0, 2.5]}
    path = save_json(tmp_path / "sub" / "r.json", record)
    assert json.loads(path.read_text()) == record and path.read_text().endswith("\n")
    arrays = {"a": np.arange(6, dtype=np.uint8).reshape(2, 3)}
    with np.load(save_npz(tmp_path / "r.npz", arrays)) as loaded:
        assert np.array_equal(loaded["a"], arrays["a"])

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(dgm_io.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, b"new")
    assert json.loads(path.read_text()) == record  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]  # no temp file left
