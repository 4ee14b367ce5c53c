"""dgm_lib.zoo: register, load-or-train, size budget, stale-config detection, CLI."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from dgm_lib import zoo
from dgm_lib.data.toy2d import get_target
from dgm_lib.io import CheckpointError
from dgm_lib.training import FitOptions, fit

CONFIG = {"in": 2, "out": 2, "steps": 100, "lr": 0.1}


class Recipe:
    """Train a 2 -> 2 linear map to swap the coordinates of 8-Gaussians samples; counts calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        generator = torch.Generator().manual_seed(0)
        data = [get_target("eight_gaussians").sample(64, generator=generator) for _ in range(4)]
        return fit(
            model,
            torch.optim.Adam(model.parameters(), lr=CONFIG["lr"]),
            data,
            FitOptions(
                steps=CONFIG["steps"],
                loss_fn=lambda m, x: {"loss": (m(x) - x.flip(-1)).square().mean()},
                progress=False,
            ),
        )


@pytest.fixture
def entry(request, tmp_path, monkeypatch):
    """A throwaway config registered under a test-unique name, with checkpoints in a tmp dir."""
    monkeypatch.setenv("DGM_CHECKPOINT_DIR", str(tmp_path))
    recipe = Recipe()
    name = "test_linear_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    registered = zoo.register(
        zoo.Entry(
            name, build=lambda: nn.Linear(2, 2), train=recipe, config=CONFIG, max_bytes=20_000
        )
    )
    yield registered, recipe
    zoo._REGISTRY.pop(name, None)


def test_load_trains_when_missing_then_loads(entry, tmp_path, capsys):
    registered, recipe = entry
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    model = zoo.load(registered.name, device="cpu")
    assert torch.equal(torch.rand(3), expected_next)  # training did not disturb the caller's RNG
    assert recipe.calls == 1 and not model.training
    assert "no weights for" in capsys.readouterr().out
    path = tmp_path / f"{registered.name}.pt"
    assert path.exists() and zoo.checkpoint_path(registered.name) == path
    again = zoo.load(registered.name, device="cpu")
    assert recipe.calls == 1 and capsys.readouterr().out == ""
    assert torch.equal(model.weight, again.weight) and not again.training
    x = torch.randn(5, 2)
    with torch.no_grad():
        assert (again(x) - x.flip(-1)).abs().max() < 0.5  # it learned the swap


def test_train_is_reproducible_and_budgeted(entry, tmp_path):
    registered, _ = entry
    first = zoo.train(registered.name).read_bytes()
    second = zoo.train(registered.name, directory=tmp_path / "other")
    paths = (tmp_path / f"{registered.name}.pt", second)
    weights = [torch.load(p, weights_only=True)["state"]["model"]["weight"] for p in paths]
    assert torch.equal(*weights) and len(first) < registered.max_bytes
    zoo._REGISTRY[registered.name] = zoo.Entry(
        registered.name, registered.build, registered.train, CONFIG, 100
    )
    with pytest.raises(CheckpointError, match="exceeds the budget of 100 bytes"):
        zoo.train(registered.name, directory=tmp_path / "tiny")
    assert not (tmp_path / "tiny" / f"{registered.name}.pt").exists()


def test_stale_or_missing_weights(entry, tmp_path):
    registered, recipe = entry
    with pytest.raises(CheckpointError, match="file not found .*python -m dgm_lib.zoo train"):
        zoo.load(registered.name, train_if_missing=False)
    zoo.train(registered.name)
    longer = {**CONFIG, "steps": 40}
    zoo._REGISTRY[registered.name] = zoo.Entry(
        registered.name, registered.build, recipe, longer, 20_000
    )
    with pytest.raises(CheckpointError, match="'config.steps' is 100 in the file, expected 40"):
        zoo.load(registered.name)
    zoo._REGISTRY[registered.name] = zoo.Entry(
        registered.name, lambda: nn.Linear(2, 3), recipe, CONFIG, 20_000
    )
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        zoo.load(registered.name)


def test_register_rules(entry):
    registered, recipe = entry
    zoo.register(
        zoo.Entry(
            registered.name,
            build=registered.build,
            train=recipe,
            config=dict(CONFIG),
            max_bytes=20_000,
        )
    )
    with pytest.raises(ValueError, match="already registered"):
        zoo.register(
            zoo.Entry(
                registered.name,
                build=registered.build,
                train=recipe,
                config={"lr": 1},
                max_bytes=20_000,
            )
        )
    with pytest.raises(ValueError, match="max_bytes"):
        zoo.Entry("other", build=registered.build, train=recipe, config=CONFIG, max_bytes=0)
    with pytest.raises(ValueError, match="name"):
        zoo.Entry("bad/name", build=registered.build, train=recipe, config=CONFIG, max_bytes=10)
    with pytest.raises(TypeError, match="callables"):
        zoo.Entry("other", build=registered.build, train="recipe", config=CONFIG)
    assert (
        zoo.Entry("other", build=registered.build, train=recipe, config=CONFIG).max_bytes
        == zoo.MAX_BYTES
    )
    with pytest.raises(ValueError, match="unknown zoo config 'nope'; registered: .*test_linear"):
        zoo.load("nope")


def test_config_modules_are_imported_lazily(tmp_path, monkeypatch):
    (tmp_path / "my_zoo_configs.py").write_text(
        textwrap.dedent("""
        from torch import nn
        from dgm_lib import zoo
        zoo.register(zoo.Entry("lazy_linear", build=lambda: nn.Linear(2, 2), train=lambda m: None,
                               config={}, max_bytes=10_000))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(zoo, "CONFIG_MODULES", ("my_zoo_configs",))
    monkeypatch.setenv("DGM_CHECKPOINT_DIR", str(tmp_path))
    assert "my_zoo_configs" not in sys.modules
    try:
        assert "lazy_linear" in zoo.names()
    finally:
        zoo._REGISTRY.pop("lazy_linear", None)
        sys.modules.pop("my_zoo_configs", None)


def test_cli_list_and_train(entry, tmp_path, capsys):
    registered, recipe = entry
    assert zoo.main(["list"]) == 0
    assert f"{registered.name}: missing" in capsys.readouterr().out
    assert (
        zoo.main(["train", registered.name, "--dir", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    )
    assert (
        "saved" in capsys.readouterr().out and (tmp_path / "cli" / f"{registered.name}.pt").exists()
    )
    assert zoo.main(["list", "--dir", str(tmp_path / "cli")]) == 0
    assert "bytes (budget 20,000)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        zoo.main(["train", registered.name, "typo"])
    assert "unknown zoo config(s) typo; registered: " in capsys.readouterr().err
    assert recipe.calls == 1  # the typo is found before anything trains


def test_python_dash_m_sees_registered_configs(tmp_path):
    """`python -m dgm_lib.zoo` runs main() on the imported dgm_lib.zoo, where config modules
    register."""
    script = textwrap.dedent(f"""
        import runpy, sys
        from torch import nn
        from dgm_lib import zoo
        zoo.register(zoo.Entry("cli_linear", build=lambda: nn.Linear(2, 2), train=lambda m: None,
                               config={{}}, max_bytes=10_000))
        sys.argv = ["zoo", "train", "cli_linear", "--dir", {str(tmp_path)!r}]
        runpy.run_module("dgm_lib.zoo", run_name="__main__")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "cli_linear: saved" in result.stdout and (tmp_path / "cli_linear.pt").exists()
    listed = subprocess.run(
        [sys.executable, "-m", "dgm_lib.zoo", "list"], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip()


def test_zoo_name_joins_its_parts():
    assert zoo.zoo_name("maf", "two_moons", 8) == "maf_two_moons_8"
    assert zoo.zoo_name("kl", "reverse", "u1") in zoo.names()
    with pytest.raises(TypeError, match="parts"):
        zoo.zoo_name()


CHAPTER_MODULES = {"recipes", "chapter", "toys", "kl_duality", "explorers"}


def test_only_recipes_modules_register_configs():
    """CONFIG_MODULES lists exactly the recipes modules; importing a model module registers nothing.

    (Chapter and explorer modules may use the zoo, and so import their topic's recipes.)
    """
    package = Path(zoo.__file__).parent
    recipes = sorted(
        ".".join(p.relative_to(package.parent).with_suffix("").parts)
        for p in package.rglob("recipes.py")
    )
    assert sorted(zoo.CONFIG_MODULES) == recipes
    others = sorted(
        ".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in package.rglob("*.py")
        if p.stem not in CHAPTER_MODULES and "exercises" not in p.parts
    )
    script = textwrap.dedent(f"""
        import importlib, sys
        for module in {others!r}:
            importlib.import_module(module)
        from dgm_lib import zoo
        registered = sorted(zoo._REGISTRY) + sorted(zoo._STUDIES)
        loaded = [m for m in zoo.CONFIG_MODULES if m in sys.modules]
        print(registered, loaded)
        sys.exit(1 if registered or loaded else 0)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_study_cli_writes_files_with_their_command(tmp_path, monkeypatch, capsys):
    calls = []

    def run(n, label):
        calls.append((n, label))
        return {"toy.json": {"n": n, "label": label}, "toy.npz": {"x": torch.arange(n).numpy()}}

    options = (zoo.StudyOption("n", int, 3, "size"), zoo.StudyOption("label", str, "a", "a label"))
    zoo.register_study(zoo.Study("toy_study", run=run, options=options))
    try:
        assert zoo.main(["study", "toy_study", "--n", "5", "--dir", str(tmp_path)]) == 0
        record = json.loads((tmp_path / "toy.json").read_text())
        assert record == {
            "n": 5,
            "label": "a",
            "command": "python -m dgm_lib.zoo study toy_study --n 5",
        }
        assert calls == [(5, "a")] and "toy_study: wrote" in capsys.readouterr().out
        with pytest.raises(ValueError, match="no option"):
            zoo.run_study("toy_study", tmp_path, size=2)
        with pytest.raises(ValueError, match="unknown study"):
            zoo.run_study("nope")
        assert "toy_study" in zoo.study_names()
    finally:
        zoo._STUDIES.pop("toy_study")


def test_shipped_sample_quality_reports_are_consistent():
    """Every shipped sample-quality file pair loads, names its command and holds 64 samples."""
    from dgm_lib.recipes import load_sample_quality

    files = sorted(zoo.results_dir().glob("sample_quality_*_1000.json"))
    assert files, "no shipped sample-quality report"
    for path in files:
        name = path.stem.removeprefix("sample_quality_").removesuffix("_1000")
        report, samples = load_sample_quality(name)
        assert report["n"] == 1000 and "--models" in report["command"] and name in report["command"]
        assert report["fid_ratio"] == pytest.approx(report["fid"] / report["fid_floor"])
        assert samples.shape == (64, 1, 28, 28) and 0 <= samples.min() <= samples.max() <= 1
    with pytest.raises(ValueError, match="name='no_such_model'"):
        load_sample_quality("no_such_model")


def test_samples01_draws_cold_diffusion_from_its_degraded_prior(monkeypatch):
    """A cold model is sampled generatively (Algorithm 4 from its prior), seeded, in batches."""
    from dgm_lib.diffusion.cold import BlurDegradation, ColdDiffusion
    from dgm_lib.diffusion.nets import ReportCNN
    from dgm_lib.recipes import samples01

    torch.manual_seed(0)
    small = ColdDiffusion(ReportCNN((4, 4), 3, 4, 5), BlurDegradation(T=5))  # the shipped T is 500
    monkeypatch.setattr(zoo, "load", lambda name, device: small)
    whole, batched = samples01("cold", 3, seed=1)[0], samples01("cold", 3, seed=1, batch=2)[0]
    assert whole.shape == (3, 1, 28, 28) and 0 <= whole.min() <= whole.max() <= 1
    torch.testing.assert_close(whole, batched, atol=1e-4, rtol=0)  # float32 kernels, batch size
    assert (whole - samples01("cold", 3, seed=2)[0]).abs().max() > 0.01
    monkeypatch.undo()
    with pytest.raises(ValueError, match="mnist_classifier is not an image model"):
        samples01("mnist_classifier", 2)


def test_samples01_resumes_a_killed_run_exactly(monkeypatch, tmp_path):
    """A run killed after its first batch continues from `partial` to the uninterrupted samples."""
    from dgm_lib.diffusion.ddpm import DDPM
    from dgm_lib.diffusion.nets import ReportCNN
    from dgm_lib.diffusion.schedules import linear_schedule
    from dgm_lib.recipes import samples01

    torch.manual_seed(0)
    small = DDPM(ReportCNN((4, 4), 3, 4, 5), linear_schedule(1e-4, 0.02, 5))
    monkeypatch.setattr(zoo, "load", lambda name, device: small)
    whole, _ = samples01("ddpm", 5, seed=3, batch=2)
    partial = tmp_path / "partial.pt"
    calls, sample = [], small.sample

    def killed_after_one_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return sample(*args, **kwargs)

    monkeypatch.setattr(small, "sample", killed_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        samples01("ddpm", 5, seed=3, batch=2, partial=partial)
    saved = torch.load(partial, weights_only=True)
    assert saved["samples"].shape == (2, 1, 28, 28) and saved["seconds"] > 0
    monkeypatch.setattr(small, "sample", sample)
    with pytest.raises(ValueError, match="partial=.*holds samples of .*'seed': 3"):
        samples01("ddpm", 5, seed=4, batch=2, partial=partial)
    resumed, seconds = samples01("ddpm", 5, seed=3, batch=2, partial=partial)
    assert torch.equal(resumed, whole) and not partial.exists()
    assert seconds > saved["seconds"]  # the killed run's seconds are counted
    with pytest.raises(ValueError, match="n and batch must be at least 1"):
        samples01("ddpm", 5, batch=0)
