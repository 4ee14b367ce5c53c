"""Hardening of fit(): a resume that does not match, a non-scalar loss, an unsavable config...
each bad call raises a clear error naming the argument (issue items 2, 7, 8, 11, 12, 19, 20)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm_lib.io import CheckpointError, load_checkpoint
from dgm_lib.training import FitOptions, NonFiniteLossError, ShuffledBatches, fit

torch.set_num_threads(1)
DATA = [torch.ones(4, 2), torch.zeros(4, 2)]


def _loss(model, x):
    return {"loss": (model(x) - x).square().mean()}


def _fit(model=None, optimizer=None, **options):
    model = model if model is not None else nn.Linear(2, 2)
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.1)
    opts = {"steps": 2, "loss_fn": _loss, "progress": False, **options}
    return fit(model, optimizer, DATA, FitOptions(**opts))


def _first(path):
    """A finished 2-step run at `path` (SGD lr=0.1 on Linear(2, 2), config None)."""
    torch.manual_seed(0)
    _fit(checkpoint_path=path)


# item -> (second call given a checkpoint of _first, error type, phrase)
RESUME = {
    "item_02_other_lr": (
        lambda p: _fit(
            optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.5), checkpoint_path=p
        ),
        CheckpointError,
        r"'lr' is 0.1 in the file, expected 0.5",
    ),
    "item_02_other_optimizer": (
        lambda p: _fit(
            optimizer=torch.optim.Adam(nn.Linear(2, 2).parameters(), lr=0.1), checkpoint_path=p
        ),
        CheckpointError,
        r"optimizer: torch.optim.sgd.SGD in the file, now torch.optim.adam.Adam",
    ),
    "item_02_other_architecture": (
        lambda p: _fit(model=nn.Sequential(nn.Linear(2, 2)), checkpoint_path=p),
        CheckpointError,
        r"architecture: parameter names differ",
    ),
    "item_02_other_shape": (
        lambda p: fit(
            (m := nn.Linear(2, 3)),
            torch.optim.SGD(m.parameters(), lr=0.1),
            DATA,
            FitOptions(steps=2, loss_fn=lambda m, x: {"loss": m(x).mean()}, checkpoint_path=p),
        ),
        CheckpointError,
        r"'weight' has shape \(2, 2\) in the file, the model has \(3, 2\)",
    ),
    "item_02_config_where_none_was": (
        lambda p: _fit(checkpoint_path=p, config={"lr": 0.1}),
        CheckpointError,
        r"config: 'lr' is missing in the file",
    ),
}


@pytest.mark.parametrize("case", list(RESUME))
def test_resume_of_another_training_is_refused(case, tmp_path):
    call, error, phrase = RESUME[case]
    path = tmp_path / "run.pt"
    _first(path)
    with pytest.raises(error, match=phrase) as info:
        call(path)
    assert "delete the file or pass another checkpoint_path" in str(info.value)


def test_item_02_matching_resume_still_continues(tmp_path):
    path = tmp_path / "run.pt"
    _first(path)
    torch.manual_seed(0)
    assert len(_fit(checkpoint_path=path, steps=3)) == 3


# item -> (bad call, error type, phrase)
BAD_CALLS = {
    "item_07_per_sample_loss_vector": (
        lambda: _fit(loss_fn=lambda m, x: {"loss": (m(x) - x).square().sum(1)}),
        ValueError,
        r"loss term 'loss' must be a scalar .*\.mean\(\).*got a tensor of shape \(4,\)",
    ),
    "item_07_per_sample_extra_term": (
        lambda: _fit(loss_fn=lambda m, x: {"loss": m(x).mean(), "kl": m(x).sum(1)}),
        ValueError,
        r"loss term 'kl' must be a scalar",
    ),
    "item_07_loss_is_a_float": (
        lambda: _fit(loss_fn=lambda m, x: {"loss": 1.0}),
        TypeError,
        "loss term 'loss' must be a scalar tensor to differentiate, got float",
    ),
    "item_08_config_holding_a_class_fails_before_training": (
        lambda: FitOptions(steps=2, config={"act": nn.ReLU}),
        TypeError,
        r"config value 'act' must be a str, number, bool, None, list or dict, got type",
    ),
    "item_08_config_not_a_dict": (
        lambda: FitOptions(steps=2, config=[("lr", 0.1)]),
        TypeError,
        "config must be a dict, got list",
    ),
    "item_13_nan_in_config": (
        lambda: FitOptions(steps=2, config={"opt": {"lr": float("nan")}}),
        ValueError,
        "config value 'opt.lr' is NaN; NaN never equals itself",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_raises_a_clear_error(case):
    call, error, phrase = BAD_CALLS[case]
    with pytest.raises(error, match=phrase):
        call()


class BlowUpAt:
    """loss_fn with a tiny gradient until call `at`, then a gradient of 10 per weight: with
    lr = 1e38 the optimizer step sends the weights to -inf while the loss itself is finite."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, model, x):
        self.calls += 1
        scale = 10.0 if self.calls >= self.at else 1e-40
        return {"loss": (model.weight * scale).sum()}


def _huge_lr_fit(path, at):
    model = nn.Linear(2, 2)
    options = FitOptions(
        steps=3, loss_fn=BlowUpAt(at), progress=False, checkpoint_path=path, checkpoint_every=1
    )
    fit(model, torch.optim.SGD(model.parameters(), lr=1e38), DATA, options)


def test_item_11_non_finite_parameters_are_never_saved(tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError, match=r"non-finite parameter 'weight' after step 2 "):
        _huge_lr_fit(path, at=2)
    saved = load_checkpoint(path)["state"]  # the last good checkpoint stays: step 1, finite
    assert saved["step"] == 1 and torch.isfinite(saved["model"]["weight"]).all()


def test_item_11_without_a_good_checkpoint_nothing_is_written(tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError, match="no checkpoint, the model holds the diverged"):
        _huge_lr_fit(path, at=1)
    assert not path.exists()


class InterruptAt:
    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, model, x):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return _loss(model, x)


def test_item_12_keyboard_interrupt_saves_then_reraises(tmp_path, capsys):
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        _fit(steps=10, checkpoint_path=path, checkpoint_every=100, loss_fn=InterruptAt(4))
    assert load_checkpoint(path)["state"]["step"] == 3
    assert "step 3 saved to" in capsys.readouterr().out


def test_item_20_data_generator_not_given_to_fit_warns(tmp_path):
    model = nn.Linear(2, 2)
    data = ShuffledBatches(torch.rand(8, 2), 4, torch.Generator().manual_seed(0))
    options = FitOptions(steps=2, loss_fn=_loss, progress=False, checkpoint_path=tmp_path / "r.pt")
    with pytest.warns(UserWarning, match="draws from its own torch.Generator, which fit was not"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), data, options)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        options = FitOptions(
            steps=2, loss_fn=_loss, progress=False, checkpoint_path=tmp_path / "s.pt"
        )
        fit(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            data,
            options,
            generator=data.generator,
        )
