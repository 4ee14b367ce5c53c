"""dgm_lib.diffusion: schedules (eq. 5-6), DDPM (eq. 3, Algorithms 1-2), cold diffusion (eq. 7,
Algorithms 3-4)."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from dgm_lib import zoo
from dgm_lib.data.mnist import mnist_images, to_unit
from dgm_lib.diffusion import (
    DDPM,
    PRESETS,
    BlurDegradation,
    ColdDiffusion,
    DegradedPrior,
    HybridDegradation,
    NoiseSchedule,
    ReportCNN,
    UNet,
    cosine_schedule,
    linear_schedule,
    preset_schedule,
    recipes,
)
from dgm_lib.diffusion import chapter as study


class ZeroNet(nn.Module):
    """Predicts zero noise / a zero image (a trainable-free stand-in for g_t and R)."""

    def forward(self, x, t):
        return torch.zeros_like(x)


class Oracle(nn.Module):
    """The restorer that knows the clean images: R(x_t, t) = x."""

    def __init__(self, x):
        super().__init__()
        self.x = x

    def forward(self, x_t, t):
        return self.x


# ---------------------------------------------------------------- schedules


def test_linear_schedule_matches_eq5_and_eq6(float64):
    s = linear_schedule(1e-4, 0.02, 10)
    t = torch.arange(11, dtype=torch.float64)
    beta = (0.02 - 1e-4) * t / 10 + 1e-4
    assert s.T == 10 and s.beta.dtype == torch.float64
    torch.testing.assert_close(s.beta, beta, rtol=0, atol=1e-15)
    torch.testing.assert_close(s.alpha, torch.cumprod(1 - beta, 0), rtol=1e-13, atol=0)
    torch.testing.assert_close(s.snr(), s.alpha / (1 - s.alpha))
    assert s.signal_left() == pytest.approx(float(torch.prod(1 - beta)), rel=1e-13)


def test_model2_signal_left_at_T1000_and_T18300(float64):
    """The report: model 2 at T = 1000 keeps ~60% of the signal; at T = 18300 alpha_T ~ 1e-4."""
    assert preset_schedule("model2_t1000").signal_left() == pytest.approx(0.603, abs=0.005)
    assert 5e-5 < preset_schedule("model2").signal_left() < 2e-4
    assert preset_schedule("default").signal_left() < 1e-4
    assert preset_schedule("model1").signal_left() < 1e-4
    assert PRESETS["model2"] == (1e-5, 1e-3, 18300)


def test_cosine_schedule(float64):
    s = cosine_schedule(1000)
    assert s.beta.max() <= 0.999 and s.beta.min() > 0
    assert torch.all(s.alpha[1:] < s.alpha[:-1])
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert s.alpha[500].item() == pytest.approx((1 - s.beta[0].item()) * f(500) / f(0), rel=1e-10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta1": 0.0}, "beta1"),
        ({"beta1": -1e-4}, "beta1"),
        ({"beta2": 1.0}, "beta2"),
        ({"beta2": float("nan")}, "beta2"),
        ({"beta1": float("inf")}, "beta1"),
        ({"T": 0}, "T"),
        ({"T": 2.5}, "T"),
    ],
)
def test_invalid_schedules_raise(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        linear_schedule(**kwargs)


def test_schedule_errors():
    with pytest.raises(ValueError, match="open interval"):
        NoiseSchedule(torch.tensor([0.1, 1.2]))
    with pytest.raises(ValueError, match="T"):
        cosine_schedule(0)
    with pytest.raises(ValueError, match="model1"):
        preset_schedule("model3")


# ---------------------------------------------------------------- DDPM


def test_eq3_matches_iterating_eq2_in_distribution(float64):
    """z_t from eq. 3 in one go and from T Markov steps (eq. 1-2): same mean and variance."""
    ddpm = DDPM(ZeroNet(), linear_schedule(1e-4, 0.02, 200), shape=(1, 2, 2))
    x = torch.tensor([[[[1.0, -0.5], [0.25, -1.0]]]]).expand(20000, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    chain = ddpm.forward_trajectory(x, [50, 200], g)
    for t in (50, 200):
        direct = ddpm.add_noise(x, torch.randn(x.shape, generator=g), t)
        a = ddpm.schedule.alpha[t]
        for z in (chain[t], direct):
            se = (1 / 20000) ** 0.5
            torch.testing.assert_close(z.mean(0), a.sqrt() * x[0], atol=5 * se, rtol=0)
            torch.testing.assert_close(
                z.var(0), (1 - a).expand(1, 2, 2), atol=5 * se * 2**0.5, rtol=0
            )
    assert torch.equal(
        ddpm.forward_trajectory(x[:3], 7, torch.Generator().manual_seed(1)),
        ddpm.forward_trajectory(x[:3], [7], torch.Generator().manual_seed(1))[7],
    )


def test_step_matches_algorithm2(float64):
    s = linear_schedule(1e-4, 0.02, 50)
    ddpm = DDPM(ZeroNet(), s, shape=(1, 3, 3))
    z, eps_hat = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    for t in (50, 7, 1):
        b, a = s.beta[t], s.alpha[t]
        mean = z / (1 - b).sqrt() - b / ((1 - a).sqrt() * (1 - b).sqrt()) * eps_hat
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(t))
        expected = mean + (b.sqrt() * noise if t > 1 else 0)
        got = ddpm.step(eps_hat, t, z, torch.Generator().manual_seed(t))
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    mixed = ddpm.step(eps_hat, torch.tensor([1, 1, 2, 2]), z, torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed[:2], ddpm.step(eps_hat[:2], 1, z[:2]))


def test_loss_and_sample_shapes_and_capture(float64):
    ddpm = DDPM(ZeroNet(), linear_schedule(T=20), shape=(1, 4, 4))
    x = torch.randn(8, 1, 4, 4)
    torch.manual_seed(0)
    loss = ddpm(x)["loss"]
    assert loss.dim() == 0 and 0.5 < loss.item() < 2  # ZeroNet: mean eps^2 ~ 1
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    sample, kept = ddpm.sample(5, g(), capture=(20, 10, 0))
    assert sample.shape == (5, 1, 4, 4) and sorted(kept) == [0, 10, 20]
    assert torch.equal(kept[0], sample) and torch.equal(ddpm.sample(5, g()), sample)
    with pytest.raises(ValueError, match="capture"):
        ddpm.sample(2, capture=(21,))
    with pytest.raises(ValueError, match="t must lie in 1..20"):
        ddpm.step(x, 0, x)


def test_algorithm2_with_exact_noise_predictor_for_point_data(float64):
    """Data x = 0: g_t[z_t] = z_t / sqrt(1 - alpha_t) is exact, and Algorithm 2 is the linear
    Gaussian chain z_{t-1} = c_t z_t + sqrt(beta_t) eps, c_t = (1 - beta_t / (1 - alpha_t)) / sqrt(1
    - beta_t); its sample variance must follow v_{t-1} = c_t^2 v_t + beta_t (no noise at t = 1) from
    v_T = 1. (With eq. 6's extra beta_0 the last step does not land exactly on 0: c_1 = 1 - beta_1 /
    (1 - alpha_1) != 0.)"""

    class Exact(nn.Module):
        def __init__(self, alpha):
            super().__init__()
            self.alpha = alpha

        def forward(self, z, t):
            return z / (1 - self.alpha[t]).sqrt().reshape(-1, 1, 1, 1)

    s = linear_schedule(1e-4, 0.02, 300)
    x = DDPM(Exact(s.alpha), s, shape=(1, 2, 2)).sample(20000, torch.Generator().manual_seed(0))
    v = torch.tensor(1.0, dtype=torch.float64)
    for t in range(300, 0, -1):
        c = (1 - s.beta[t] / (1 - s.alpha[t])) / (1 - s.beta[t]).sqrt()
        v = c**2 * v + (s.beta[t] if t > 1 else 0)
    assert 0 < v < 1e-3
    torch.testing.assert_close(x.var(0), v.expand(1, 2, 2), rtol=5 * (2 / 20000) ** 0.5, atol=0)
    assert x.mean(0).abs().max() < 5 * (v / 20000).sqrt()


# ---------------------------------------------------------------- cold diffusion


def test_blur_kernels_sum_to_one_with_the_schedule_std(float64):
    blur = BlurDegradation()
    k = blur.kernels
    assert k.shape == (501, 27)
    torch.testing.assert_close(k.sum(1), torch.ones(501), rtol=0, atol=1e-12)
    offsets = torch.arange(27, dtype=torch.float64) - 13
    std = (k * offsets**2).sum(1).sqrt()
    sigma = blur.sigma(torch.arange(501))
    torch.testing.assert_close(
        sigma[[0, 100, 500]], torch.tensor([0.02, 1.02, 5.02], dtype=torch.float64)
    )
    mid = slice(
        100, 301
    )  # sigma in [1, 3]: discretization and the 13-pixel truncation change the std by < 1%
    torch.testing.assert_close(std[mid], sigma[mid], rtol=0.01, atol=0)
    assert torch.all(std <= sigma + 1e-12)  # truncation can only shrink the spread


def test_blur_at_t0_is_identity_and_blur_preserves_mass(float64):
    blur = BlurDegradation()
    x = torch.rand(3, 2, 28, 28)
    assert torch.equal(blur(x, 0), x)
    y = blur(x, torch.tensor([0, 250, 500]))
    assert torch.equal(y[0], x[0])
    # reflect padding keeps constants constant; blur smooths (smaller total variation)
    c = torch.full((1, 1, 28, 28), 0.3)
    torch.testing.assert_close(blur(c, 500), c, rtol=0, atol=1e-12)
    assert (
        y[2].diff(dim=-1).abs().sum()
        < y[1].diff(dim=-1).abs().sum()
        < x[1].diff(dim=-1).abs().sum()
    )


def test_blur_matches_separable_convolution_with_reflect_padding(float64):
    blur = BlurDegradation(T=50, kernel_size=9)
    x = torch.randn(2, 1, 28, 28)
    k = blur.kernels[37]
    padded = nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    expected = nn.functional.conv2d(padded, (k[:, None] * k[None, :])[None, None])
    torch.testing.assert_close(blur(x, 37), expected, rtol=1e-12, atol=1e-12)


def test_algorithm4_with_oracle_restorer_returns_x_exactly(float64):
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    blur = BlurDegradation(T=60)
    model = ColdDiffusion(Oracle(x), blur)
    out, kept = model.sample(blur(x, 60), capture=(30,))
    assert torch.equal(out, x)
    torch.testing.assert_close(kept[30], blur(x, 30).cpu(), rtol=0, atol=1e-12)
    assert torch.equal(model.sample_naive(blur(x, 60)), x)
    hybrid = ColdDiffusion(Oracle(x), HybridDegradation(0.5, T=60))
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(hybrid.sample(hybrid.degradation(x, 60, g)), x, rtol=0, atol=1e-10)


def test_black_image_starts_give_identical_samples(float64):
    torch.manual_seed(0)
    model = ColdDiffusion(ReportCNN(T=20), BlurDegradation(T=20)).double()
    out = model.sample(torch.full((5, 1, 28, 28), -1.0))
    torch.testing.assert_close(
        out, out[:1].expand_as(out), rtol=0, atol=1e-12
    )  # identical up to rounding
    prior = model.degraded_prior(torch.rand(40, 1, 28, 28) * 2 - 1, rank=4)
    starts = prior.sample(5, generator=torch.Generator().manual_seed(0))
    varied = model.sample(starts)
    assert (varied - varied[:1]).abs().amax() > 1e-3


def test_hybrid_naive_sampler_equals_algorithm4(float64):
    """With the noise re-estimated from x_t, x_t - D(x0_hat, t) = 0: Algorithm 4 reduces to x_{t-1}
    = D(x0_hat, t-1)."""
    torch.manual_seed(0)
    model = ColdDiffusion(ReportCNN(T=15), HybridDegradation(0.7, T=15)).double()
    start = model.degradation(torch.rand(3, 1, 28, 28), 15, torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.sample(start), model.sample_naive(start), rtol=0, atol=1e-9)


def test_cold_loss_and_hybrid_noise(float64):
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    model = ColdDiffusion(Oracle(x), BlurDegradation(T=10))
    assert model(x)["loss"].item() == 0.0
    h = HybridDegradation(noise_scale=0.5, T=100)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(h(x, 25, noise=noise), h.blur(x, 25) + 0.25 * noise)
    assert torch.equal(h(x, 0), x)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(h(x, 100, g()), h(x, 100, g()))


def test_degraded_prior_recovers_a_low_rank_gaussian(float64):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 16, generator=g)
    data = 0.5 + torch.randn(20000, 3, generator=g) @ w + 0.1 * torch.randn(20000, 16, generator=g)
    prior = DegradedPrior.fit(data.reshape(-1, 1, 4, 4), rank=3)
    assert prior.residual_std.item() == pytest.approx(0.1, rel=0.05)
    cov = prior.components.T @ prior.components + prior.residual_std**2 * torch.eye(16)
    torch.testing.assert_close(cov, w.T @ w + 0.01 * torch.eye(16), atol=0.15, rtol=0.05)
    s = prior.sample(20000, noise=0.0, generator=g).reshape(-1, 16)
    torch.testing.assert_close(s.mean(0), torch.full((16,), 0.5), atol=0.1, rtol=0)


def test_cold_errors():
    with pytest.raises(ValueError, match="sigma_base"):
        BlurDegradation(sigma_base=0.0)
    with pytest.raises(ValueError, match="kernel_size"):
        BlurDegradation(kernel_size=57)
    with pytest.raises(ValueError, match="T"):
        BlurDegradation(T=0)
    with pytest.raises(ValueError, match="noise_scale"):
        HybridDegradation(noise_scale=-1.0)
    blur = BlurDegradation(T=10)
    with pytest.raises(ValueError, match="0..10"):
        blur(torch.zeros(1, 1, 28, 28), 11)
    with pytest.raises(ValueError, match="shape"):
        blur(torch.zeros(1, 1, 27, 27), 1)
    with pytest.raises(TypeError, match="degradation"):
        ColdDiffusion(ZeroNet(), nn.Identity())


# ---------------------------------------------------------------- nets and data


@pytest.mark.parametrize("make", [lambda: ReportCNN(T=1000), lambda: UNet((8, 16), T=1000)])
def test_nets_shapes_device_dtype(make, one_thread):
    torch.manual_seed(0)
    net = make()
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([1, 500, 1000])
    out = net(x, t)
    assert out.shape == x.shape and out.dtype == torch.float32
    with pytest.raises(ValueError, match="t must"):
        net(x, t.float())
    with pytest.raises(ValueError, match="x must"):
        net(x[:, :, :, :1].expand(3, 2, 28, 28), t)
    out64 = net.double()(x.double(), t)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out, rtol=1e-4, atol=1e-4)


def test_mnist_images_scaling():
    x = mnist_images("test", "signed")
    assert x.shape == (1000, 1, 28, 28) and x.min() == -1 and x.max() == 1
    torch.testing.assert_close(to_unit(x), (x + 1) / 2)


def test_zoo_configs_registered():
    names = set(zoo.names())
    assert set(recipes.CONFIGS) <= names
    assert {
        "ddpm_default",
        "ddpm_model1",
        "ddpm_model2",
        "ddpm_model2_t1000",
        "cold_blur",
        "cold_hybrid",
        "ddpm_unet_default",
    } <= names
    model = recipes.build_ddpm("model2")
    assert model.T == 18300 and model.net.time.T == 18300


def test_long_configs_extend_their_short_config():
    """Each long run: its short config's network (the wide UNet at its own widths), trained
    for its own steps, with a checkpoint budget its weights fit."""
    assert set(recipes.LONG_CONFIGS) <= set(zoo.names())
    for name, long in recipes.LONG_CONFIGS.items():
        entry, short = zoo.entry(name), zoo.entry(long.short)
        assert entry.config["steps"] == long.steps and entry.config["lr_schedule"] == "cosine"
        model = entry.build()
        assert sum(p.numel() for p in model.parameters()) * 4 < entry.max_bytes
        for key in ("kind", "net", "schedule"):
            assert entry.config[key] == short.config[key]
        if long.channels is None:
            assert entry.config.get("channels") == short.config.get("channels")
    wide = zoo.entry("ddpm_unet_wide")
    assert wide.config["channels"] == [32, 64, 128] and wide.config["steps"] == 16_000
    assert [b.conv1.out_channels for b in wide.build().net.down] == [32, 64, 128]


def test_study_helpers(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "COMMAND: nohup bash -c 'train all'\nddpm_default: saved /x/ddpm_default.pt (1 "
        "bytes)\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 4:05.50\ncold_blur: saved "
        "/x/cold_blur.pt (1 bytes)\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03\n"
    )
    command, times = study.training_times(log)
    assert command == "nohup bash -c 'train all'" and times == {
        "ddpm_default": 245.5,
        "cold_blur": 3723.0,
    }
    assert study.training_times(tmp_path / "missing.log") == (None, {})
    pixels = study.as_uint8(torch.tensor([-1.0, -0.5, 1.0, 3.0]).reshape(1, 1, 2, 2))
    assert pixels.dtype.name == "uint8" and pixels.tolist() == [[[0, 64], [255, 255]]]
    assert set(study.CAPTURE) == set(recipes.CONFIGS)
    assert "diffusion" in zoo.study_names()
    record = json.loads(study.JSON_PATH.read_text())
    # the shipped file keeps the command that made it, from before `python -m dgm_lib.zoo study
    # diffusion` replaced it (chapter 07 prints it in a checked cell)
    assert record["command"] == "python -m dgm_lib.diffusion.study"
    assert set(record["configs"]) == set(recipes.CONFIGS) and record["n"] == study.N_SAMPLES
    with np.load(study.NPZ_PATH) as arrays:
        assert arrays["ddpm_default__ancestral"].shape == (record["n"], 28, 28)


@pytest.mark.parametrize("name", sorted(recipes.CONFIGS))
def test_shipped_weights_beat_the_untrained_network(name, one_thread):
    """Each zoo checkpoint: under the 2 MB budget, and its Algorithm 1/3 loss on 256 test digits
    (same t and noise for both) is less than a third of the untrained network's."""
    path = zoo.checkpoint_path(name)
    assert path.stat().st_size < zoo.entry(name).max_bytes == 2_000_000
    trained = zoo.load(name, train_if_missing=False, device="cpu")
    build = recipes.CONFIGS[name][0]
    torch.manual_seed(0)
    untrained = build().eval()
    x = mnist_images("test", "signed")[:256]
    with torch.no_grad():
        losses = []
        for model in (trained, untrained):
            torch.manual_seed(1)
            losses.append(model(x)["loss"].item())
    assert losses[0] < losses[1] / 3, losses


def test_long_run_with_weight_average_ships_the_average(monkeypatch, tmp_path):
    """ddpm_unet_ema's recipe: the trained weights equal the run without the average (its
    checkpoint keeps both), the model ends holding the average, evaluations score the average."""
    monkeypatch.setattr(recipes, "LONG_RUN", recipes.LongRun(steps=4, eval_every=2))
    scored = []
    monkeypatch.setattr(recipes, "sample_quality", lambda m: scored.append(m) or {"fid": 1.0})

    def trained(ema_decay):
        torch.manual_seed(0)
        model = DDPM(ReportCNN((4, 4), 3, 4, 5), linear_schedule(1e-4, 0.02, 5))
        path = tmp_path / f"{ema_decay}.pt"
        history = recipes.train_long(model, path, ema_decay=ema_decay)
        return model, torch.load(path, weights_only=True)["state"]["model"], history

    plain, _, _ = trained(None)
    averaged, state, history = trained(0.5)
    assert history.evaluations["fid"] == [[2, 1.0], [4, 1.0]]
    assert all(not isinstance(m, recipes.WeightAverage) for m in scored)
    for key, value in plain.state_dict().items():
        assert torch.equal(state[f"model.{key}"], value)
        assert torch.equal(state[f"average.{key}"], averaged.state_dict()[key])
    assert (averaged.net.out.weight - plain.net.out.weight).abs().max() > 1e-4
    assert zoo.entry("ddpm_unet_ema").config["ema_decay"] == recipes.LONG_RUN.ema_decay
