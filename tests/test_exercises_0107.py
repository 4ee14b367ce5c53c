"""The graded exercise paths of chapters 01 (change of variables) and 07 (DDPM vs blur).

Every check accepts the reference solution and correct alternatives (another order of operations,
another seed, another dtype route), and rejects typical mistakes with the check's own hint; the
experiments' checks verify a property of the result and say what is wrong with it.
"""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest
import torch

from dgm_lib.data.toy2d import get_target
from dgm_lib.exercises import change_of_variables as cv
from dgm_lib.exercises import check, diffusion, known_exercises, registry

DT = torch.float64
BOOK = Path(__file__).resolve().parents[1] / "book"
KINDS = ("warm-up", "derivation", "implementation", "experiment", "open question")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the chapters set it: the experiments' checks stay far below their time
    limit on a loaded 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(name: str, fn, capsys) -> tuple[bool, str]:
    """check(name, fn) without recording: (passed, the printed line)."""
    capsys.readouterr()
    passed = check(name, fn, record=False)
    return passed, capsys.readouterr().out.strip()


def assert_fails(name: str, fn, capsys, which: str, *phrases: str) -> None:
    """fn fails check `which` ("check 2/3") of `name` with one friendly line containing every
    phrase (the hint's, the failure's)."""
    passed, printed = run(name, fn, capsys)
    assert not passed, printed
    assert printed.startswith(f"✗ {name}: {which} ") and "Hint: " in printed, printed
    assert "Traceback" not in printed and printed.count("\n") == 1, printed  # verdict, hint
    for phrase in phrases:
        assert phrase in printed, (phrase, printed)


@pytest.mark.parametrize(
    ("notebook", "chapter"),
    [
        ("01_change_of_variables.ipynb", "change_of_variables"),
        ("07_ddpm_vs_blur.ipynb", "diffusion"),
    ],
)
def test_each_chapter_has_the_graded_path(notebook, chapter):
    """Every exercise title names its kind, every kind occurs, in the order of the path, every
    registered check of the chapter is called by the chapter, and the open question is declared
    last."""
    nb = nbformat.read(BOOK / notebook, as_version=4)
    titles = [
        line
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for line in cell.source.split("\n")
        if line.startswith("```{exercise}")
    ]
    kinds = [next((k for k in KINDS if title.endswith(f"({k})")), None) for title in titles]
    assert None not in kinds, titles
    assert sorted(set(kinds), key=KINDS.index) == list(KINDS), titles
    assert kinds == sorted(kinds, key=KINDS.index), titles
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    names = [name for name in known_exercises() if name.startswith(f"{chapter}.")]
    assert len(names) >= len(KINDS) - 1
    assert all(f'check("{name}", ' in code for name in names), names
    path = registry.chapter_exercises(chapter)
    assert len(path) >= len(KINDS) and registry.is_open_question(path[-1]), path
    assert not any(registry.is_open_question(name) for name in path[:-1]), path


@pytest.mark.parametrize(
    "name",
    [
        n
        for chapter in ("change_of_variables", "diffusion")
        for n in registry.chapter_exercises(chapter)
        if not registry.is_open_question(n)
    ],
)
def test_the_reference_passes(name, capsys):
    assert run(name, registry.reference_for(name), capsys)[0], capsys.readouterr().out


# --- chapter 01: change of variables -----------------------------------------------------------


def conv_by_eigenvalues(weight, height, width):  # another route: |det W| = prod |eigenvalues|
    return height * width * torch.linalg.eigvals(weight).abs().log().sum()


def test_conv1x1_log_det(capsys):
    name = "change_of_variables.conv1x1_log_det"
    assert run(name, conv_by_eigenvalues, capsys)[0]
    # log|det W| once: the H W copies of W on the Jacobian's diagonal forgotten
    assert_fails(
        name,
        lambda w, h, wd: torch.linalg.slogdet(w).logabsdet,
        capsys,
        "check 1/2",
        "H * W copies of W",
    )
    # H + W copies instead of H W
    assert_fails(
        name,
        lambda w, h, wd: (h + wd) * torch.linalg.slogdet(w).logabsdet,
        capsys,
        "check 1/2",
        "block diagonal",
    )
    # log det W: NaN for a reflection
    assert_fails(
        name,
        lambda w, h, wd: h * wd * torch.logdet(w),
        capsys,
        "check 2/2",
        "NaN or inf",
        "never torch.logdet(weight)",
    )


def linear_by_inverse(x, L, b):  # another order: the inverse matrix, log|det L^{-1}|
    inv = torch.linalg.inv(L)
    z = (x - b) @ inv.T
    log_det_f = torch.linalg.slogdet(inv).logabsdet
    return log_det_f - 0.5 * z.square().sum(1) - x.shape[1] / 2 * math.log(2 * math.pi)


def test_linear_flow_log_prob(capsys):
    name = "change_of_variables.linear_flow_log_prob"
    assert run(name, linear_by_inverse, capsys)[0]
    # + log|det L|: the Jacobian of g instead of f
    assert_fails(
        name,
        lambda x, L, b: cv.linear_flow_log_prob(x, L, b) + 2 * torch.linalg.slogdet(L).logabsdet,
        capsys,
        "check 1/3",
        "minus: |det J_f| = 1 / |det L|",
    )
    # z = (x - b) L^{-1} in row convention without the transpose: right for diagonal L only
    assert_fails(
        name,
        lambda x, L, b: linear_by_inverse(x, L.T, b),
        capsys,
        "check 2/3",
        "L is not triangular",
        "solve, not multiply",
    )
    # the normalizing constant -m log(2 pi) / 2 left out
    assert_fails(
        name,
        lambda x, L, b: linear_by_inverse(x, L, b) + x.shape[1] / 2 * math.log(2 * math.pi),
        capsys,
        "check 1/3",
        "- m log(2 pi) / 2",
    )
    # log det L: NaN for a reflection
    assert_fails(
        name,
        lambda x, L, b: (
            linear_by_inverse(x, L, b) + torch.linalg.slogdet(L).logabsdet - torch.logdet(L)
        ),
        capsys,
        "check 3/3",
        "never torch.logdet(L)",
    )


def coupling_multiplied(x, d, conditioner):  # another order: sigma^{-1} as a factor
    mu, log_sigma = conditioner(x[:, :d])
    inv_sigma = torch.exp(-log_sigma)
    return torch.cat([x[:, :d], x[:, d:] * inv_sigma - mu * inv_sigma], 1), -log_sigma.sum(1)


def test_coupling_forward(capsys):
    name = "change_of_variables.coupling_forward"
    assert run(name, coupling_multiplied, capsys)[0]
    # + sum log sigma: the log-det of g
    assert_fails(
        name,
        lambda x, d, c: (cv._coupling_forward(x, d, c)[0], -cv._coupling_forward(x, d, c)[1]),
        capsys,
        "check 1/3",
        "log_det = -log_sigma.sum(dim=1)",
    )
    # one log-det for the batch instead of one per row
    assert_fails(
        name,
        lambda x, d, c: (cv._coupling_forward(x, d, c)[0], cv._coupling_forward(x, d, c)[1].sum()),
        capsys,
        "check 1/3",
        "one number per row",
    )


def maf_one_pass(z, conditioner):  # one pass: right only for a constant conditioner
    mu, log_sigma = conditioner(torch.zeros_like(z))
    x = z * log_sigma.exp() + mu
    return x, conditioner(x)[1].sum(1)


def test_maf_inverse(capsys):
    name = "change_of_variables.maf_inverse"
    # m passes that update every coordinate at once: another correct order
    assert run(name, lambda z, c: cv._maf_inverse(z, c), capsys)[0]
    assert_fails(name, maf_one_pass, capsys, "check 2/3", "repeat m = z.shape[1] times")
    # -sum log sigma: the log-det of f
    assert_fails(
        name,
        lambda z, c: (cv._maf_inverse(z, c)[0], -cv._maf_inverse(z, c)[1]),
        capsys,
        "check 1/3",
        "g multiplies by sigma, f divides",
    )


def fit(flow, target, generator, steps=300, *, sign=1, zero_grad=True, fixed=False, lr=1e-2):
    """A student's fit_flow with one of the typical mistakes switched on."""
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    x = target.sample(256, generator)
    for _ in range(steps):
        x = x if fixed else target.sample(256, generator)
        loss = -sign * flow.log_prob(x).mean()
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return flow


@pytest.mark.parametrize(
    ("mistake", "phrase"),
    [
        ({"sign": -1}, "minimize -log_prob (not +log_prob)"),
        ({"zero_grad": False}, "the gradients pile up"),
        ({"steps": 0}, "it did not learn"),
        ({"fixed": True}, "a fixed batch over-fits"),
        ({"lr": 1e-4}, "learned, but not enough"),
    ],
)
def test_fit_flow_mistakes(mistake, phrase, capsys):
    assert_fails(
        "change_of_variables.fit_flow",
        lambda flow, target, generator: fit(flow, target, generator, **mistake),
        capsys,
        "check 1/1",
        phrase,
        "the band is below 3.00",
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_flow_accepts_any_seed_and_optimiser(seed):
    """Other seeds of the flow and the batches, and another optimiser (RMSprop, 400 steps), all
    land in the band."""
    flow = cv.small_realnvp(seed)
    verify = cv._fits_the_moons(cv._test_nll(flow))
    generator = torch.Generator().manual_seed(100 + seed)
    assert verify(cv.fit_flow(flow, get_target("two_moons"), generator)) is None
    flow = cv.small_realnvp(10 + seed)
    optimizer = torch.optim.RMSprop(flow.parameters(), lr=3e-3)
    for _ in range(400):
        loss = -flow.log_prob(get_target("two_moons").sample(256, generator)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert verify(flow) is None


def test_fit_flow_returns_a_flow(capsys):
    assert_fails(
        "change_of_variables.fit_flow",
        lambda flow, target, generator: cv._test_nll(fit(flow, target, generator)),
        capsys,
        "check 1/1",
        "return the trained flow",
    )


# --- chapter 07: DDPM vs blur --------------------------------------------------------------------


def alpha_by_product(beta1, beta2, T):  # another route: the plain product, in float64
    beta = torch.linspace(beta1, beta2, T + 1, dtype=DT)
    return torch.cumprod(1 - beta, 0)


def test_alpha_schedule(capsys):
    name = "diffusion.alpha_schedule"
    assert run(name, alpha_by_product, capsys)[0]
    # the product of the betas instead of 1 - beta
    assert_fails(
        name,
        lambda b1, b2, T: torch.cumprod(torch.linspace(b1, b2, T + 1, dtype=DT), 0),
        capsys,
        "check 1/3",
        "not of beta_i",
    )
    # T values: t = 1..T, alpha_0 missing
    assert_fails(
        name,
        lambda b1, b2, T: torch.cumprod(1 - torch.linspace(b1, b2, T, dtype=DT), 0),
        capsys,
        "check 1/3",
        "expected shape (5,), got (4,)",
        "T + 1 values",
    )
    # float32
    assert_fails(
        name,
        lambda b1, b2, T: torch.cumprod(1 - torch.linspace(b1, b2, T + 1), 0),
        capsys,
        "check 1/3",
        "expected dtype torch.float64",
        "in float64",
    )


def posterior_from_noise(x, z_t, t, beta, alpha):  # another route: line 3 of Algorithm 2
    shape = (-1, 1, 1, 1)
    b, a = beta[t].view(shape), alpha[t].view(shape)
    eps = (z_t - a.sqrt() * x) / (1 - a).sqrt()
    return (z_t - b / (1 - a).sqrt() * eps) / (1 - b).sqrt()


def posterior_alpha_t(x, z_t, t, beta, alpha):
    shape = (-1, 1, 1, 1)
    b, a = beta[t].view(shape), alpha[t].view(shape)
    return (a.sqrt() * b * x + (1 - b).sqrt() * (1 - a) * z_t) / (1 - a)


def test_posterior_mean(capsys):
    name = "diffusion.posterior_mean"
    assert run(name, posterior_from_noise, capsys)[0]
    # alpha_t instead of alpha_{t-1} in the coefficient of x (and in 1 - alpha_{t-1})
    assert_fails(name, posterior_alpha_t, capsys, "check 1/2", "x gets alpha_{t-1}")
    # the two coefficients swapped between x and z_t
    assert_fails(
        name,
        lambda x, z, t, beta, alpha: diffusion.posterior_mean(z, x, t, beta, alpha),
        capsys,
        "check 1/2",
        "by Bayes",
    )
    # the first image's t for the whole batch
    assert_fails(
        name,
        lambda x, z, t, beta, alpha: diffusion.posterior_mean(
            x, z, t[:1].expand_as(t), beta, alpha
        ),
        capsys,
        "check 2/2",
        "one value per image",
    )


def test_forward_sample(capsys):
    name = "diffusion.forward_sample"
    # alpha_t instead of its square root
    assert_fails(
        name,
        lambda x, t, eps, alpha: (
            alpha[t].view(-1, 1, 1, 1) * x + (1 - alpha[t]).view(-1, 1, 1, 1) * eps
        ),
        capsys,
        "check 1/3",
        "not alpha_t itself",
    )
    # one alpha for the whole batch
    assert_fails(
        name,
        lambda x, t, eps, alpha: alpha[t[0]].sqrt() * x + (1 - alpha[t[0]]).sqrt() * eps,
        capsys,
        "check 2/3",
        "one alpha per sample",
    )


def test_cold_step(capsys):
    assert_fails(
        "diffusion.cold_step",
        lambda x_t, x0_hat, t, degrade: degrade(x0_hat, t - 1),
        capsys,
        "check 1/3",
        "the naive sampler",
    )


def denoise_ascending(model, z, t, generator):  # the steps in the wrong order
    with torch.no_grad():
        for s in range(1, t + 1):
            z = model.step(model.net(z, torch.full((len(z),), s)), s, z, generator)
    return z


def denoise_with_sign(model, z, t, generator, sign=1.0):
    beta, alpha = model.schedule.beta, model.schedule.alpha
    with torch.no_grad():
        for s in range(t, 0, -1):
            eps_hat = model.net(z, torch.full((len(z),), s))
            z = (z - sign * beta[s] / (1 - alpha[s]).sqrt() * eps_hat) / (1 - beta[s]).sqrt()
            if s > 1:
                z = z + beta[s].sqrt() * torch.randn(z.shape, generator=generator)
    return z


@pytest.mark.parametrize(
    ("mistake", "phrase"),
    [
        (lambda m, z, t, g: denoise_with_sign(m, z, t, g, sign=-1.0), "the images got noisier"),
        (lambda m, z, t, g: diffusion.denoise(m, z, 1, g), "did all t steps run"),
        (lambda m, z, t, g: z, "did all t steps run"),
        (denoise_ascending, "should fall below 0.6 times"),
        (lambda m, z, t, g: diffusion.denoise(m, z, t, g)[0], "a tensor of shape (8, 1, 28, 28)"),
    ],
)
def test_denoise_mistakes(mistake, phrase, capsys):
    assert_fails("diffusion.denoise", mistake, capsys, "check 1/1", phrase)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_denoise_accepts_any_seed_and_a_hand_written_step(seed, capsys):
    """Other noise (the generator's seed) and a step written out by hand instead of model.step."""
    case = diffusion._denoise_case(seed)
    assert case.verify(diffusion.denoise(*case.args)) is None
    case = diffusion._denoise_case(10 + seed)
    assert case.verify(denoise_with_sign(*case.args)) is None


def test_check_runs_the_student_on_one_thread_and_restores_the_count(capsys):
    """check() runs the function on one torch thread (as the chapters do) and restores the
    caller's count afterwards, also when the function raises."""
    seen = []

    def spy(*args):
        seen.append(torch.get_num_threads())
        return cv.fit_flow(*args)

    def broken(*args):
        seen.append(torch.get_num_threads())
        raise RuntimeError("a bug")

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert check("change_of_variables.fit_flow", spy, record=False).passed is True
        assert torch.get_num_threads() == 2
        assert check("change_of_variables.fit_flow", broken, record=False).passed is False
        assert torch.get_num_threads() == 2 and set(seen) == {1}
    finally:
        torch.set_num_threads(previous)
