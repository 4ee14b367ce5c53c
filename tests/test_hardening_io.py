"""Hardening of dgm_lib.io: corrupt, diverged and malformed checkpoints, a bad map_location and
leftovers of killed saves (issue items 10, 12, 13)."""

from __future__ import annotations

import os
import struct

import pytest
import torch
from torch import nn

from dgm_lib import __version__, zoo
from dgm_lib.io import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)

torch.set_num_threads(1)
MARK = 1.2345  # a weight value easy to find in the file's bytes


def _saved(tmp_path, state=None, config=None):
    path = tmp_path / "ckpt.pt"
    state = state if state is not None else {"model": {"w": torch.full((16,), MARK)}}
    save_checkpoint(path, state, config or {"a": 1})
    return path


def _flip_bit(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(struct.pack("<f", MARK) * 4)
    data[at + 1] ^= 0x01
    path.write_bytes(bytes(data))
    return load_checkpoint(path)


def _raw(tmp_path, **fields):
    """A file holding a record with the metadata and `fields` (torch.save, no checks)."""
    path = tmp_path / "raw.pt"
    record = {"format_version": FORMAT_VERSION, "library_version": __version__, "config": {}}
    torch.save({**record, **fields}, path)
    return path


def _zoo_load_without_model(tmp_path):
    entry = zoo.Entry("hardening_io_probe", lambda: nn.Linear(1, 1), lambda m: None, {})
    zoo.register(entry)
    try:
        save_checkpoint(
            zoo.checkpoint_path(entry.name, tmp_path), {"history": None}, entry.file_config
        )
        return zoo.load(entry.name, directory=tmp_path, device="cpu")
    finally:
        zoo._REGISTRY.pop(entry.name, None)


# item -> (bad call given tmp_path, error type, phrase)
BAD_CALLS = {
    "item_10_flipped_bit": (
        _flip_bit,
        CheckpointError,
        r"content hash mismatch, the file is corrupt",
    ),
    "item_10_nan_weights": (
        lambda tmp: load_checkpoint(
            _saved(tmp, {"model": {"w": torch.tensor([0.0, float("nan")])}})
        ),
        CheckpointError,
        r"weight 'w' holds NaN or inf",
    ),
    "item_10_inf_weights_old_file": (
        lambda tmp: load_checkpoint(
            _raw(tmp, state={"model": {"b": torch.tensor([float("-inf")])}})
        ),
        CheckpointError,
        r"weight 'b' holds NaN or inf",
    ),
    "item_10_record_without_model_in_the_zoo": (
        _zoo_load_without_model,
        CheckpointError,
        r"malformed, its state has no \['model'\]",
    ),
    "item_10_state_not_a_dict": (
        lambda tmp: load_checkpoint(_raw(tmp, state=[1, 2])),
        CheckpointError,
        "malformed, config and state must be dicts",
    ),
    "item_10_model_not_tensors": (
        lambda tmp: load_checkpoint(_raw(tmp, state={"model": {"w": 1.0}})),
        CheckpointError,
        "malformed, 'model' must map names to tensors",
    ),
    "item_10_fit_checkpoint_without_optimizer": (
        lambda tmp: load_checkpoint(_saved(tmp), require=("model", "optimizer")),
        CheckpointError,
        r"its state has no \['optimizer'\]",
    ),
    "item_13_map_location_nonsense": (
        lambda tmp: load_checkpoint(_saved(tmp), map_location="nonsense"),
        ValueError,
        r"map_location must name a device such as 'cpu' or 'cuda:0', got 'nonsense'",
    ),
    "item_13_nan_in_config_is_refused_on_save": (
        lambda tmp: _saved(tmp, config={"lr": float("nan")}),
        ValueError,
        "config value 'lr' is NaN",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case, tmp_path):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call(tmp_path)


def test_item_10_new_checkpoints_carry_a_hash_and_old_ones_still_load(tmp_path):
    record = load_checkpoint(_saved(tmp_path))
    assert len(record["sha256"]) == 64
    old = _raw(tmp_path, state={"model": {"w": torch.ones(2)}})  # written before hashes
    assert torch.equal(load_checkpoint(old)["state"]["model"]["w"], torch.ones(2))


def test_item_12_stale_temp_files_are_removed_on_save_and_load(tmp_path):
    path = _saved(tmp_path)
    stale, fresh = tmp_path / ".ckpt.pt.abc.tmp", tmp_path / ".ckpt.pt.def.tmp"
    for tmp in (stale, fresh):
        tmp.write_bytes(b"partial")
    os.utime(stale, (0, 0))  # a killed save long ago
    load_checkpoint(path)
    assert not stale.exists() and fresh.exists()  # a save in progress is left alone
    os.utime(fresh, (0, 0))
    _saved(tmp_path)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
