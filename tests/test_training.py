"""dgm_lib.training.fit: history, progress bar, exact resume after a crash, NaN guard, argument
checks."""

from collections import namedtuple

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dgm_lib.core import seed_everything
from dgm_lib.data.toy2d import get_target
from dgm_lib.io import CheckpointError, load_checkpoint
from dgm_lib.training import (
    FitOptions,
    History,
    NonFiniteLossError,
    ShuffledBatches,
    WeightAverage,
    _to_device,
    fit,
)


class Net(nn.Module):
    """A small regressor with dropout (so training consumes the global RNG) returning named loss
    terms."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 2))

    def forward(self, x):
        mse = (self.net(x) - x.flip(-1)).square().mean()
        reg = 1e-3 * sum(p.square().sum() for p in self.parameters())
        return {"loss": mse + reg, "mse": mse, "reg": reg}


class Sampled:
    """Re-iterable data drawing every batch from a toy target with a dedicated generator."""

    def __init__(self, generator, batches=7):
        self.generator, self.batches = generator, batches

    def __iter__(self):
        for _ in range(self.batches):
            yield get_target("two_moons").sample(16, generator=self.generator)


def _loader(generator):
    points = get_target("eight_gaussians").sample(100, generator=torch.Generator().manual_seed(5))
    return DataLoader(
        TensorDataset(points), batch_size=16, shuffle=True, generator=generator
    )  # 7 batches


def _global_loader(generator):
    points = get_target("rings").sample(100, generator=torch.Generator().manual_seed(5))
    return DataLoader(
        TensorDataset(points), batch_size=16, shuffle=True
    )  # shuffles with the global RNG


DATA = {"sampled": Sampled, "loader": _loader, "global_loader": _global_loader}


def _setup(seed, data_seed, make_data):
    """A fresh 'process': global seed, model, optimizer, scheduler, data generator and data."""
    seed_everything(seed)
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.7)
    generator = torch.Generator().manual_seed(data_seed)
    return dict(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=generator,
        data=make_data(generator),
    )


def _run(setup, steps, **options):
    return fit(
        setup["model"],
        setup["optimizer"],
        setup["data"],
        FitOptions(steps=steps, progress=False, **options),
        scheduler=setup["scheduler"],
        generator=setup["generator"],
    )


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _assert_identical(params_a, params_b, hist_a, hist_b):
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b))
    assert hist_a.terms == hist_b.terms


class Crash(Exception):
    """A simulated crash that fit cannot react to (like a killed process)."""


class CrashAt:
    """loss_fn that raises `error` (a crash, or KeyboardInterrupt) on its `at`-th call."""

    def __init__(self, at, error=Crash):
        self.at, self.calls, self.error = at, 0, error

    def __call__(self, model, batch):
        self.calls += 1
        if self.calls == self.at:
            raise self.error("simulated crash")
        return model(*batch) if isinstance(batch, list) else model(batch)


STEPS = 23


@pytest.fixture(scope="module")
def straight():
    """Uninterrupted reference runs, one per data kind."""
    runs = {}
    for kind, make_data in DATA.items():
        setup = _setup(0, 1, make_data)
        history = _run(setup, STEPS)
        runs[kind] = (_params(setup["model"]), history)
    return runs


@pytest.mark.parametrize("kind", DATA)
@pytest.mark.parametrize(
    "every, crash_at", [(5, 13), (7, 16)]
)  # mid-epoch, and at an epoch boundary
@pytest.mark.parametrize("error", [Crash, KeyboardInterrupt])
def test_resume_after_crash_is_bit_for_bit(kind, every, crash_at, error, straight, tmp_path):
    path = tmp_path / "run.pt"
    crashed = _setup(0, 1, DATA[kind])
    with pytest.raises(error):
        _run(
            crashed,
            STEPS,
            checkpoint_path=path,
            checkpoint_every=every,
            loss_fn=CrashAt(crash_at, error),
        )
    saved = load_checkpoint(path)["state"]
    # a crash keeps the last periodic save; an interrupt saves the last completed step
    last = crash_at - 1
    assert saved["step"] == (last if error is KeyboardInterrupt else last // every * every)
    resumed = _setup(42, 99, DATA[kind])  # another process: other seeds, other initial weights
    history = _run(resumed, STEPS, checkpoint_path=path, checkpoint_every=every)
    _assert_identical(_params(resumed["model"]), straight[kind][0], history, straight[kind][1])
    assert len(history) == STEPS and load_checkpoint(path)["state"]["step"] == STEPS


def test_resume_extends_a_finished_run(straight, tmp_path):
    path = tmp_path / "run.pt"
    first = _setup(0, 1, Sampled)
    half = _run(first, 11, checkpoint_path=path, checkpoint_every=1000)  # saved at the end only
    assert len(half) == 11 and load_checkpoint(path)["state"]["step"] == 11
    second = _setup(3, 4, Sampled)
    history = _run(second, STEPS, checkpoint_path=path)
    _assert_identical(
        _params(second["model"]), straight["sampled"][0], history, straight["sampled"][1]
    )
    again = _setup(5, 6, Sampled)  # already done: loads and returns without training
    assert _run(again, STEPS, checkpoint_path=path).terms == history.terms
    _assert_identical(_params(again["model"]), straight["sampled"][0], history, history)


def test_resume_false_starts_over_and_config_is_checked(tmp_path):
    path = tmp_path / "run.pt"
    _run(_setup(0, 1, Sampled), 4, checkpoint_path=path, config={"lr": 0.01})
    fresh = _setup(0, 1, Sampled)
    assert len(_run(fresh, 2, checkpoint_path=path, resume=False, config={"lr": 0.01})) == 2
    assert load_checkpoint(path)["state"]["step"] == 2
    with pytest.raises(CheckpointError, match="'lr' is 0.01 in the file, expected 0.1"):
        _run(_setup(0, 1, Sampled), 4, checkpoint_path=path, config={"lr": 0.1})


class NanAt:
    """loss_fn whose 'kl' term is NaN on its `at`-th call."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, model, batch):
        self.calls += 1
        terms = model(batch)
        kl = torch.tensor(float("nan") if self.calls == self.at else 0.0)
        return {**terms, "loss": terms["loss"] + kl, "kl": kl}


def test_nan_stops_and_restores_last_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    reference = _setup(0, 1, Sampled)
    _run(reference, 5, loss_fn=NanAt(0))
    setup = _setup(0, 1, Sampled)
    with pytest.raises(NonFiniteLossError) as info:
        _run(setup, STEPS, checkpoint_path=path, checkpoint_every=5, loss_fn=NanAt(8))
    error = info.value
    assert (error.step, error.term, len(error.history)) == (8, "kl", 7)
    assert (
        "loss term 'kl' = nan at step 8" in str(error)
        and "step 5" in str(error)
        and "\n" not in str(error)
    )
    assert load_checkpoint(path)["state"]["step"] == 5  # the last good checkpoint is kept
    assert all(
        torch.equal(a, b) for a, b in zip(_params(setup["model"]), _params(reference["model"]))
    )
    assert setup["optimizer"].state_dict()["state"][0]["step"] == 5


def test_nan_without_checkpoint_leaves_last_stepped_model():
    reference = _setup(0, 1, Sampled)
    _run(reference, 7, loss_fn=NanAt(0))
    setup = _setup(0, 1, Sampled)
    with pytest.raises(NonFiniteLossError, match="at step 8; optimizer not stepped; no checkpoint"):
        _run(setup, STEPS, loss_fn=NanAt(8))
    assert all(
        torch.equal(a, b) for a, b in zip(_params(setup["model"]), _params(reference["model"]))
    )


def test_non_finite_gradient_is_caught():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _params(model)

    def sqrt_of_zero(model, batch):  # finite loss (0), infinite/NaN gradient
        return {"loss": torch.sqrt(model(batch).sum() * 0)}

    with pytest.raises(NonFiniteLossError, match="gradient norm = nan at step 1") as info:
        fit(
            model,
            optimizer,
            [torch.ones(4, 2)],
            FitOptions(steps=3, loss_fn=sqrt_of_zero, progress=False),
        )
    assert info.value.term == "gradient norm"
    assert all(torch.equal(a, b) for a, b in zip(_params(model), before))
    assert all(p.grad is None for p in model.parameters())


def test_history_and_progress_bar(capsys):
    setup = _setup(0, 1, Sampled)
    setup["model"].eval()
    history = fit(
        setup["model"], setup["optimizer"], setup["data"], FitOptions(steps=9, grad_clip=1.0)
    )
    assert not setup["model"].training  # the caller's mode is restored
    arrays = history.as_arrays()
    assert set(arrays) == {"loss", "mse", "reg"} and all(a.shape == (9,) for a in arrays.values())
    assert history.last() == history["loss"][-1] == arrays["loss"][-1]
    assert history.last("mse", n=3) == pytest.approx(arrays["mse"][-3:].mean())
    assert arrays["loss"][-1] < arrays["loss"][0]
    err = capsys.readouterr().err
    assert "9/9" in err and "loss=" in err and "mse=" in err
    with pytest.raises(KeyError, match="no loss term 'kl'"):
        history.last("kl")
    with pytest.raises(ValueError, match="loss terms changed"):
        History({"loss": [1.0]}).append({"loss": 0.5, "kl": 0.1})


def test_batches_move_to_device_and_are_unpacked():
    Pair = namedtuple("Pair", "x y")
    batch = {
        "a": torch.zeros(2),
        "b": [torch.ones(1), (torch.ones(1), 3)],
        "c": Pair(torch.zeros(1), "s"),
    }
    moved = _to_device(batch, torch.device("meta"))
    assert (
        moved["a"].is_meta
        and moved["b"][0].is_meta
        and moved["b"][1][0].is_meta
        and moved["b"][1][1] == 3
    )
    assert isinstance(moved["c"], Pair) and moved["c"].x.is_meta and moved["c"].y == "s"

    class TwoArgs(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x, y):
            return {"loss": ((x * self.w).sum(-1) - y).square().mean()}

    model = TwoArgs()
    data = DataLoader(TensorDataset(torch.randn(8, 2), torch.randn(8)), batch_size=4)
    history = fit(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        data,
        FitOptions(steps=3, progress=False),
    )
    assert len(history) == 3
    model_kw = TwoArgs()
    fit(
        model_kw,
        torch.optim.SGD(model_kw.parameters(), lr=0.1),
        [{"x": torch.ones(3, 2), "y": torch.zeros(3)}],
        FitOptions(steps=2, progress=False),
    )


def test_argument_errors():
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [torch.randn(4, 2)]
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        fit(model, optimizer, data, FitOptions(steps=0))
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit(model, optimizer, data, FitOptions(steps=1, checkpoint_every=0))
    with pytest.raises(ValueError, match="grad_clip"):
        fit(model, optimizer, data, FitOptions(steps=1, grad_clip=-1.0))
    with pytest.raises(TypeError, match="not a tensor"):
        fit(model, optimizer, torch.randn(10, 2), FitOptions(steps=1))
    with pytest.raises(TypeError, match="'loss' key, got Tensor"):
        fit(
            model,
            optimizer,
            data,
            FitOptions(steps=1, loss_fn=lambda m, b: m(b)["loss"], progress=False),
        )
    with pytest.raises(ValueError, match="no batches"):
        fit(model, optimizer, [], FitOptions(steps=1, progress=False))
    one_shot = (torch.randn(4, 2) for _ in range(2))
    with pytest.raises(ValueError, match="one-shot generator"):
        fit(model, optimizer, one_shot, FitOptions(steps=3, progress=False))


def test_shuffled_batches_cover_the_data_once_per_epoch_in_a_fresh_order():
    data = torch.arange(10.0)
    batches = ShuffledBatches(data, 4, torch.Generator().manual_seed(0))
    first, second = list(batches), list(batches)
    assert len(batches) == 3 and [len(b) for b in first] == [4, 4, 2]
    assert torch.equal(torch.cat(first).sort().values, data) and torch.equal(
        torch.cat(second).sort().values, data
    )
    assert not torch.equal(torch.cat(first), torch.cat(second))
    doubled = ShuffledBatches(data, 4, torch.Generator().manual_seed(0), lambda x, g: 2 * x)
    assert torch.equal(torch.cat(list(doubled)), 2 * torch.cat(first))
    with pytest.raises(ValueError, match="batch_size"):
        ShuffledBatches(data, 0, torch.Generator())


def _noisy_metric(model):
    """An evaluation that draws from the global RNG (as sampling does) and reads the weights."""
    assert not model.training and not torch.is_grad_enabled()
    return {"norm": float(model.net[0].weight.norm()), "draw": float(torch.randn(()))}


def test_evaluate_records_metrics_without_changing_the_training_stream(straight, tmp_path):
    setup = _setup(0, 1, _global_loader)
    history = _run(setup, STEPS, evaluate=_noisy_metric, evaluate_every=10)
    _assert_identical(
        _params(setup["model"]), straight["global_loader"][0], history, straight["global_loader"][1]
    )
    assert [step for step, _ in history.evaluations["norm"]] == [10, 20, STEPS]
    assert history.evaluations["norm"][-1][1] == pytest.approx(
        float(setup["model"].net[0].weight.norm())
    )
    assert setup["model"].training  # back in train mode


def test_evaluations_survive_resume(tmp_path):
    path = tmp_path / "run.pt"
    first = _setup(0, 1, Sampled)
    _run(
        first,
        12,
        checkpoint_path=path,
        checkpoint_every=4,
        evaluate=_noisy_metric,
        evaluate_every=5,
    )
    second = _setup(7, 8, Sampled)
    history = _run(second, STEPS, checkpoint_path=path, evaluate=_noisy_metric, evaluate_every=5)
    assert [step for step, _ in history.evaluations["norm"]] == [5, 10, 12, 15, 20, STEPS]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"evaluate": "fid"}, "evaluate must be a callable"),
        ({"evaluate": _noisy_metric, "evaluate_every": 0}, "evaluate_every must be a positive int"),
        ({"evaluate": lambda model: 3.0}, "evaluate must return a dict"),
    ],
)
def test_evaluate_errors(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        _run(_setup(0, 1, Sampled), 3, **kwargs)


def _averaged_setup(seed, data_seed, decay=0.8):
    """_setup with a WeightAverage of the model wrapped around it and attached to its optimizer."""
    setup = _setup(seed, data_seed, Sampled)
    setup["plain"] = setup["model"]
    setup["model"] = WeightAverage(setup["plain"], decay)
    setup["model"].attach(setup["optimizer"])
    return setup


def test_weight_average_is_the_ema_of_the_trained_weights(straight):
    """The trained weights equal a run without the average; the average equals
    theta_bar_k = d theta_bar_{k-1} + (1 - d) theta_k over the steps' weights, in float64."""
    setup = _averaged_setup(0, 1)
    start = [p.double() for p in _params(setup["plain"])]
    steps = []
    setup["optimizer"].register_step_post_hook(lambda *_: steps.append(_params(setup["plain"])))
    history = _run(setup, STEPS)
    _assert_identical(
        _params(setup["plain"]), straight["sampled"][0], history, straight["sampled"][1]
    )
    expected = start
    for weights in steps:
        expected = [0.8 * e + 0.2 * w.double() for e, w in zip(expected, weights)]
    assert len(steps) == STEPS
    for averaged, exact in zip(setup["model"].average.parameters(), expected):
        torch.testing.assert_close(averaged.double(), exact, rtol=0, atol=1e-6)
    assert (setup["model"].average.net[0].weight - setup["plain"].net[0].weight).abs().max() > 1e-3


def test_weight_average_resumes_exactly(tmp_path):
    """A crashed run with an average resumes to the uninterrupted average, bit for bit."""
    straight = _averaged_setup(0, 1)
    _run(straight, STEPS)
    path, crashed = tmp_path / "run.pt", _averaged_setup(0, 1)
    with pytest.raises(Crash):
        _run(crashed, STEPS, checkpoint_path=path, checkpoint_every=5, loss_fn=CrashAt(13))
    resumed = _averaged_setup(7, 8)
    _run(resumed, STEPS, checkpoint_path=path, checkpoint_every=5)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            resumed["model"].state_dict().values(), straight["model"].state_dict().values()
        )
    )


@pytest.mark.parametrize(
    "model, decay, error, match",
    [
        (Net(), 1.0, ValueError, r"decay must be in \(0, 1\), got 1.0"),
        (Net(), 0.0, ValueError, "decay must be in"),
        ("net", 0.9, TypeError, "model must be a torch.nn.Module, got str"),
    ],
)
def test_weight_average_errors(model, decay, error, match):
    with pytest.raises(error, match=match):
        WeightAverage(model, decay)
