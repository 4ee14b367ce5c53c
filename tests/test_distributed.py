"""Data-parallel fit under torchrun (issue 16): 2 gloo processes on the CPU train the same
parameters as one process with the same global batch, resume across ranks, rank 0 alone writes;
torchrun's environment is checked with clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ddp_worker
import pytest
import torch

from dgm_lib import distributed

ROOT = Path(__file__).resolve().parents[1]
# float64 on a small MLP: only the order of DDP's two-term gradient average differs from one process
TOLERANCE = 1e-12
TIMEOUT = 300  # seconds per torchrun launch: ~10 s on an idle 2-core machine


def _torchrun(spec: dict, folder: Path) -> list[dict]:
    """Run ddp_worker on 2 gloo ranks (torchrun --standalone picks a free port); each rank's
    result."""
    path = folder / f"{Path(spec['out']).name}.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    for name in distributed.ENV_VARS:
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(ROOT / "tests" / "ddp_worker.py"), str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(f"{spec['out']}.rank{r}.pt", weights_only=True) for r in range(2)]


def _max_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process for 5 and 10 steps; 2 ranks for 5 steps (checkpoint), then resumed to 10."""
    folder = tmp_path_factory.mktemp("ddp")
    torch.set_num_threads(1)
    single = {steps: ddp_worker.run({"steps": steps}) for steps in (5, 10)}
    checkpoint = folder / "fit.pt"
    spec = {"checkpoint": str(checkpoint), "checkpoint_every": 5}
    first = _torchrun({**spec, "steps": 5, "out": str(folder / "first")}, folder)
    shutil.copy(checkpoint, folder / "step5.pt")
    resumed = _torchrun({**spec, "steps": 10, "out": str(folder / "resumed")}, folder)
    return {"single": single, "first": first, "resumed": resumed, "folder": folder}


def test_two_ranks_train_the_parameters_of_one_process(runs):
    single, first = runs["single"][5], runs["first"]
    assert [r["world"] for r in first] == [2, 2]
    assert _max_difference(first[0]["params"], first[1]["params"]) == 0.0  # DDP keeps ranks equal
    assert _max_difference(first[0]["params"], single["params"]) < TOLERANCE
    for name, values in single["history"].items():  # the global batch's terms on every rank
        for rank in first:
            assert max(abs(a - b) for a, b in zip(values, rank["history"][name])) < TOLERANCE


def test_rank_zero_alone_writes_the_checkpoint(runs):
    first, resumed = runs["first"], runs["resumed"]
    assert first[0]["writers"] == [0] and first[1]["writers"] == []
    assert resumed[0]["writers"] == [0] and resumed[1]["writers"] == []
    record = torch.load(runs["folder"] / "step5.pt", weights_only=True)
    assert record["state"]["step"] == 5 and len(record["state"]["ranks"]) == 2
    assert not list(runs["folder"].glob(".*.tmp"))  # atomic: no temp file left


def test_resume_across_ranks_continues_the_run(runs):
    """Across the end of an epoch and its 7-example last batch (shards of 4 and 3)."""
    single, resumed = runs["single"][10], runs["resumed"]
    assert len(resumed[0]["history"]["loss"]) == 10
    assert _max_difference(resumed[0]["params"], resumed[1]["params"]) == 0.0
    assert _max_difference(resumed[0]["params"], single["params"]) < TOLERANCE


def test_one_process_resumes_a_checkpoint_of_two_ranks(runs, tmp_path):
    checkpoint = tmp_path / "fit.pt"
    shutil.copy(runs["folder"] / "step5.pt", checkpoint)
    result = ddp_worker.run({"steps": 10, "checkpoint": str(checkpoint), "checkpoint_every": 5})
    assert _max_difference(result["params"], runs["single"][10]["params"]) < TOLERANCE


TORCHRUN_ENV = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
TORCHRUN_ENV["MASTER_PORT"] = "29500"


@pytest.mark.parametrize(
    "changes, error, phrase",
    [
        ({"MASTER_PORT": None}, RuntimeError, r"rendezvous variable\(s\) MASTER_PORT are not set"),
        ({"RANK": None, "WORLD_SIZE": None}, RuntimeError, r"RANK, WORLD_SIZE are not set"),
        ({"WORLD_SIZE": "0"}, ValueError, r"WORLD_SIZE='0': must be an integer >= 1"),
        ({"WORLD_SIZE": "two"}, ValueError, r"WORLD_SIZE='two'"),
        ({"RANK": "2"}, ValueError, r"RANK='2': must be an integer in \[0, 1\]"),
        ({"MASTER_PORT": "70000"}, ValueError, r"MASTER_PORT='70000'"),
    ],
)
def test_init_from_env_names_the_bad_variable(monkeypatch, changes, error, phrase):
    for name, value in {**TORCHRUN_ENV, **changes}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(error, match=phrase):
        distributed.init_from_env()
    assert not distributed.is_distributed()


def test_init_from_env_refuses_an_unknown_backend(monkeypatch):
    for name, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="backend must be 'gloo', 'nccl' or None"):
        distributed.init_from_env(backend="mpi")


def test_shard_splits_a_global_batch_into_near_equal_parts():
    x, index = torch.arange(7.0), list(range(7))
    parts = [distributed.shard((x, x), r, 2) for r in range(2)]
    assert [len(p[0][0]) for p in parts] == [3, 4] and sum(p[1] for p in parts) == 1.0
    assert distributed.shard(index, 1, 2) == ([3, 4, 5, 6], 4 / 7)
    assert distributed.shard({"x": x}, 0, 3)[0]["x"].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="batch of 1 example\\(s\\) cannot be split over world"):
        distributed.shard(x[:1], 0, 2)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        distributed.shard(x, 2, 2)


def test_one_process_is_not_distributed():
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)


# --scale full: the seeds' settings are registered, not run here; without full MNIST they refuse.
def test_full_scale_recipes_have_the_seeds_settings(tmp_path):
    from dgm_lib import zoo

    assert zoo.names("full") == ["cold_blur", "ddpm_default", "ddpm_model1", "ddpm_model2"]
    schedules = {n: zoo.entry(n, "full").config.get("schedule") for n in zoo.names("full")}
    assert schedules == {
        "cold_blur": None,
        "ddpm_default": [1e-4, 0.02, 1000],
        "ddpm_model1": [1e-5, 0.01, 1840],
        "ddpm_model2": [1e-5, 1e-3, 18300],
    }
    for name in zoo.names("full"):
        config = zoo.entry(name, "full").config
        assert (config["epochs"], config["lr"], config["hidden"]) == (100, 2e-4, [16, 32, 32, 16])
        assert "60,000" in config["data"] and zoo.entry(name, "full").resumable
    assert zoo.entry("cold_blur", "full").config["T"] == 500
    assert zoo.entry("ddpm_default").config["lr"] == 1e-3  # the shipped recipe stays the default
    assert (
        zoo.checkpoint_path("ddpm_default", tmp_path, "full") == tmp_path / "full/ddpm_default.pt"
    )
    assert zoo.study_names("full") == ["intrinsic_dim_fc", "intrinsic_dim_lenet"]
    from dgm_lib.intrinsic_dim.recipes import FULL_RECIPE

    assert FULL_RECIPE.source == "torchvision"
    with pytest.raises(ValueError, match="scale must be one of \\('small', 'full'\\)"):
        zoo.names("huge")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "ddpm_default", "--scale", "full"],
        ["study", "intrinsic_dim_fc", "--scale", "full"],
    ],
)
def test_full_scale_refuses_without_full_mnist(no_network, monkeypatch, tmp_path, argv):
    from dgm_lib import zoo

    monkeypatch.setenv("HOME", str(tmp_path))  # no MNIST under ~/.cache/dgm_lib/mnist
    with pytest.raises(SystemExit, match=r"full MNIST \(train\) is not in .* 60,000 training"):
        zoo.main([*argv, "--dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_study_without_a_full_scale_recipe_is_refused(capsys):
    from dgm_lib import zoo

    with pytest.raises(SystemExit):
        zoo.main(["study", "diffusion", "--scale", "full"])
    assert "study 'diffusion' has no full scale recipe" in capsys.readouterr().err
