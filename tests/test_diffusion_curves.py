"""The FID-over-training curves (seed 004, Figs 5 and 10): fit's callback leaves training alone."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dgm_lib import zoo
from dgm_lib.core import seed_everything
from dgm_lib.diffusion import recipes
from dgm_lib.diffusion.cold import BlurDegradation, ColdDiffusion
from dgm_lib.diffusion.ddpm import DDPM
from dgm_lib.diffusion.nets import ReportCNN
from dgm_lib.diffusion.schedules import linear_schedule


@pytest.fixture
def small_curves(monkeypatch: pytest.MonkeyPatch) -> None:
    small = dataclasses.replace(recipes.CURVES, eval_every=2, eval_n=4, kept=3)
    monkeypatch.setattr(recipes, "CURVES", small)


def test_the_curve_does_not_change_the_trained_weights(
    small_curves: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Algorithm 2 at T = 1000 is the slow part; a draw from the sampler's own generator stands in
    def sample(self: DDPM, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand((n, 1, 28, 28), generator=generator) * 2 - 1

    monkeypatch.setattr(DDPM, "sample", sample)
    name = "ddpm_model2_t1000"
    model, history, kept = recipes.train_with_curve(name, steps=3)
    seed_everything(zoo.entry(name).seed)
    plain = zoo.entry(name).build()
    recipes.train(plain, 3)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    assert sorted(history.evaluations) == ["confident", "fid"]
    assert [step for step, _ in history.evaluations["fid"]] == [2, 3]
    assert [sorted(point) for point in kept] == [[""], [""]]


def test_a_ddpm_is_scored_by_algorithm_2(small_curves: None) -> None:
    torch.manual_seed(0)
    model = DDPM(ReportCNN((4, 4), 3, 4, 5), linear_schedule(1e-4, 0.02, 5))
    kept: list = []
    metrics = recipes.curve_point(model, kept)
    assert sorted(metrics) == ["confident", "fid"]
    assert math.isfinite(metrics["fid"]) and 0 <= metrics["confident"] <= 1
    assert kept[0][""].shape == (3, 28, 28) and kept[0][""].dtype == np.uint8


def test_a_cold_model_is_scored_from_blurred_test_digits_and_from_its_prior(
    small_curves: None,
) -> None:
    torch.manual_seed(0)
    model = ColdDiffusion(ReportCNN((4, 4), 3, 4, 5), BlurDegradation(T=5))
    kept: list = []
    metrics = recipes.curve_point(model, kept)
    assert sorted(metrics) == [
        "conditional_confident",
        "conditional_fid",
        "prior_confident",
        "prior_fid",
    ]
    assert all(math.isfinite(value) for value in metrics.values())
    assert sorted(kept[0]) == ["conditional_", "prior_"]
    assert all(images.shape == (3, 28, 28) for images in kept[0].values())


def test_train_with_curve_names_a_bad_config() -> None:
    with pytest.raises(ValueError, match="name: 'ddpm_nope'"):
        recipes.train_with_curve("ddpm_nope")
