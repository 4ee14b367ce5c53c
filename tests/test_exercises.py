"""Exercises: check() messages, the student-notebook generator, and the committed notebooks kept in
sync."""

import ast
import math
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from dgm_lib.exercises import Case, check, known_exercises, register, registry, setup_cell
from dgm_lib.exercises.generate import (
    BEGIN,
    chapters_with_solutions,
    exercise_notebook,
    generate,
    main,
    stub_solutions,
)
from dgm_lib.exercises.runner import NOT_IMPLEMENTED

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
EXERCISES = BOOK / "exercises"
CONFIG = ROOT / "_config.yml"
CHAPTERS = chapters_with_solutions(BOOK)
STUDENT_NOTEBOOKS = sorted(EXERCISES.glob("*.ipynb"))
ids = lambda p: p.name  # noqa: E731


def repo_url() -> str:
    """`repository.url` from _config.yml."""
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["repository"]["url"]


# --- helpers: run a notebook's exercises without executing the whole notebook
# ------------------------------


def python_source(cell: nbformat.NotebookNode) -> str:
    """A code cell's source with IPython magics (`%...`, `!...`) turned into `pass`."""
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in cell.source.split("\n"))


def exercise_namespace(nb: nbformat.NotebookNode, marker: str) -> dict:
    """Run the notebook's top-level imports, then every code cell containing `marker`; return the
    namespace."""
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            tree = ast.parse(python_source(cell))
            imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
            exec(compile(ast.Module(imports, type_ignores=[]), "<imports>", "exec"), namespace)
    for cell in nb.cells:
        if cell.cell_type == "code" and marker in cell.source:
            try:
                exec(python_source(cell), namespace)
            except NotImplementedError:  # a stub at the top level of a cell raises right away
                pass
    return namespace


def exercise_checks(nb: nbformat.NotebookNode, marker: str) -> list[tuple[str, object]]:
    """(exercise name, function) of every `check("name", f)` call whose `f` a cell containing
    `marker` defines.

    Other calls (lambdas, loop variables: demos of wrong answers) are skipped.
    """
    namespace, calls = exercise_namespace(nb, marker), []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(python_source(cell))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[1], ast.Name)
                and node.args[1].id in namespace
            ):
                calls.append((node.args[0].value, namespace[node.args[1].id]))
    return calls


# --- the committed notebooks
# -----------------------------------------------------------------------------------


def test_there_are_chapters_with_exercises():
    assert CHAPTERS, f"no notebook in book/ contains {BEGIN!r}"


def test_regenerating_gives_byte_identical_notebooks(tmp_path):
    assert generate(BOOK, tmp_path, repo_url()) == sorted(p.name for p in CHAPTERS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in STUDENT_NOTEBOOKS], (
        "book/exercises/ does not match the chapters: run `make exercises`"
    )
    for path in STUDENT_NOTEBOOKS:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), (
            f"{path.name} is stale: run `make exercises`"
        )


def test_generation_is_deterministic():
    assert all(
        exercise_notebook(path, repo_url()) == exercise_notebook(path, repo_url())
        for path in CHAPTERS
    )


def test_check_mode_passes_on_the_committed_notebooks(capsys):
    assert main(["--check", "--book", str(BOOK), "--config", str(CONFIG)]) == 0
    assert capsys.readouterr().out == ""


def test_check_mode_lists_stale_and_orphan_notebooks_and_generation_fixes_them(tmp_path, capsys):
    out = tmp_path / "exercises"
    shutil.copytree(EXERCISES, out)
    stale = out / CHAPTERS[0].name
    stale.write_text(
        stale.read_text(encoding="utf-8").replace("Exercise", "Exercice"), encoding="utf-8"
    )
    (out / "99_removed_chapter.ipynb").write_text("{}", encoding="utf-8")
    args = ["--book", str(BOOK), "--config", str(CONFIG), "--out", str(out)]

    assert main(["--check", *args]) == 1
    printed = capsys.readouterr()
    assert f"stale: {stale}" in printed.out and "99_removed_chapter.ipynb" in printed.out
    assert "make exercises" in printed.err

    assert main(args) == 0
    assert not (out / "99_removed_chapter.ipynb").exists()
    assert stale.read_bytes() == (EXERCISES / stale.name).read_bytes()
    assert main(["--check", *args]) == 0


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_every_reference_solution_passes(path, capsys):
    calls = exercise_checks(nbformat.read(path, as_version=4), BEGIN)
    assert calls, (
        f"{path.name} has solutions but no "
        'check("chapter.name", function) of a function they define'
    )
    for name, function in calls:
        assert check(name, function).passed is True, capsys.readouterr().out


def test_every_registered_exercise_has_a_reference_solution():
    covered = {
        name
        for path in CHAPTERS
        for name, _ in exercise_checks(nbformat.read(path, as_version=4), BEGIN)
    }
    assert set(known_exercises()) <= covered, (
        f"checks without a chapter solution: {set(known_exercises()) - covered}"
    )


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=ids)
def test_every_stub_fails_with_a_helpful_message(path, capsys):
    nb = nbformat.read(path, as_version=4)
    assert not chapters_with_solutions(path.parent), f"{path.name} still contains a solution"
    assert all(
        not cell.get("outputs") and cell.get("execution_count") is None
        for cell in nb.cells
        if cell.cell_type == "code"
    )
    calls = exercise_checks(nb, 'raise NotImplementedError("Exercise: ')
    assert calls, f'{path.name}: no check("chapter.name", function) of a stubbed function'
    for name, function in calls:
        capsys.readouterr()
        assert check(name, function).passed is False
        printed = capsys.readouterr().out
        assert (
            printed.startswith(f"✗ {name}: {NOT_IMPLEMENTED}.\n  Hint: ")
            and "Traceback" not in printed
        )


# --- check(): friendly messages
# ---------------------------------------------------------------------------------


def reference(x, mu, sigma):
    z = (x - mu) / sigma
    return (-0.5 * z**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(dim=-1)


def run(fn, capsys) -> tuple[bool, str]:
    """check() on intro.gaussian_log_prob: (result, printed line)."""
    result = check("intro.gaussian_log_prob", fn).passed
    return result, capsys.readouterr().out.strip()


def test_a_correct_function_passes(capsys):
    assert run(reference, capsys) == (True, "✓ intro.gaussian_log_prob: all 3 checks passed")


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (
            lambda x, mu, s: -0.5 * ((x - mu) / s) ** 2,
            "check 1/3 (standard normal at the origin in 2D) failed: "
            "output: expected shape (1,), got (1, 2).\n  Hint: sum the terms",
        ),
        (
            lambda x, mu, s: reference(x, mu, s).float(),
            "expected dtype torch.float64, got torch.float32",
        ),
        (
            lambda x, mu, s: reference(x, mu, s) * float("nan"),
            "output contains NaN or inf in 1 of 1 entries: got [nan]",
        ),
        (
            lambda x, mu, s: (-0.5 * ((x - mu) / s) ** 2).sum(-1),
            "output has wrong values (max abs error 1.84): expected [-1.8379], got [0]",
        ),
        (
            lambda x, mu, s: None,
            "output should be a torch.Tensor, got None (did you forget `return`?)",
        ),
        (
            lambda x, mu, s: x.reshape(7),
            "raised RuntimeError: shape '[7]' is invalid for input of size 2.\n  Hint: ",
        ),
        (lambda x, mu: x, "raised TypeError: "),
    ],
    ids=["shape", "dtype", "nan", "values", "none", "exception", "signature"],
)
def test_wrong_answers_get_a_friendly_message(fn, expected, capsys):
    result, printed = run(fn, capsys)
    assert result is False
    assert (
        printed.startswith("✗ intro.gaussian_log_prob: ")
        and expected in printed
        and "Hint: " in printed
    )
    assert "Traceback" not in printed and printed.count("\n") == 1  # the verdict, the hint


def test_the_underflow_check_names_its_own_hint(capsys):
    def naive(x, mu, s):
        return torch.log(torch.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))).sum(
            -1
        )

    result, printed = run(naive, capsys)
    assert (
        not result
        and "check 3/3" in printed
        and "[-inf]" in printed
        and "Hint: work in log space" in printed
    )


def test_not_implemented_gets_a_friendly_message(capsys):
    def stub(x, mu, sigma):
        raise NotImplementedError("Exercise: complete stub")

    result, printed = run(stub, capsys)
    assert not result and printed.startswith(
        f"✗ intro.gaussian_log_prob: {NOT_IMPLEMENTED}.\n  Hint: "
    )


def test_unknown_name_raises_listing_the_known_names():
    with pytest.raises(
        ValueError, match=r"unknown exercise name='intro\.nope'.*intro\.gaussian_log_prob"
    ):
        check("intro.nope", reference)


def test_a_non_callable_raises():
    with pytest.raises(TypeError, match="fn="):
        check("intro.gaussian_log_prob", 3.0)


def test_check_leaves_the_global_random_state_alone(capsys):
    state = torch.get_rng_state()
    check("intro.gaussian_log_prob", reference)
    assert torch.equal(state, torch.get_rng_state())


def test_tuples_and_numbers_are_compared(capsys, monkeypatch):
    monkeypatch.setattr(
        registry, "_REGISTRY", dict(registry._REGISTRY)
    )  # keep "test.pair" out of the real registry

    @register("test.pair", "a pair", hint="return (x, x.sum()).")
    def _pair() -> Case:
        x = torch.arange(3.0, dtype=torch.float64)
        return Case(args=(x,), expected=(x, 3.0))

    assert check("test.pair", lambda x: (x, x.sum())).passed is True
    assert check("test.pair", lambda x: x).passed is False
    assert check("test.pair", lambda x: (x, 4.0)).passed is False
    printed = capsys.readouterr().out.splitlines()  # verdict, then hint, per check() call
    assert "output should be a tuple of 2 values, got a tensor of shape (3,)" in printed[1]
    assert "output[1] has the wrong value: expected 3, got 4" in printed[3]


def test_an_experiment_is_checked_by_its_property(capsys, monkeypatch):
    """verify(result) replaces the comparison: any result with the property passes; a result
    without it fails with verify's message and the hint; an error inside verify is reported."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def below_one(result) -> str | None:
        return None if float(result) < 1.0 else f"the loss {float(result):.3g} should be < 1"

    @register("test.experiment", "a trained loss", hint="train for more steps.")
    def _experiment() -> Case:
        return Case(args=(), verify=below_one)

    assert check("test.experiment", lambda: 0.3).passed is True
    assert check("test.experiment", lambda: 0.7).passed is True  # another valid run
    assert check("test.experiment", lambda: 2.0).passed is False
    assert check("test.experiment", lambda: "two").passed is False
    printed = capsys.readouterr().out
    assert "the loss 2 should be < 1" in printed and "train for more steps." in printed
    assert "could not be compared" in printed


@pytest.mark.parametrize("name", ["gaussian", "a.b.c", ".x", 3])
def test_register_rejects_a_bad_name(name):
    with pytest.raises(ValueError, match="chapter.exercise"):
        register(name, "d", "h")


# --- the generator
# ----------------------------------------------------------------------------------------------


def test_stub_keeps_the_indentation_and_the_code_around_the_solution():
    source = "\n".join(
        [
            "import torch",
            "",
            "def f(x):",
            '    """Doc."""',
            "    y = x + 1",
            "    ### BEGIN SOLUTION",
            "    return y * 2",
            "    ### END SOLUTION",
            "",
            "### BEGIN SOLUTION",
            "z = 3",
            "### END SOLUTION",
            "print('after')",
        ]
    )
    assert stub_solutions(source) == "\n".join(
        [
            "import torch",
            "",
            "def f(x):",
            '    """Doc."""',
            "    y = x + 1",
            '    raise NotImplementedError("Exercise: complete f")',
            "",
            'raise NotImplementedError("Exercise: write your solution here")',
            "print('after')",
        ]
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("### BEGIN SOLUTION\nx = 1", "line 1: '### BEGIN SOLUTION' has no matching"),
        ("x = 1\n### END SOLUTION", "line 2: '### END SOLUTION' without a matching"),
        (
            "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION",
            "line 2: '### BEGIN SOLUTION' inside",
        ),
    ],
)
def test_unmatched_markers_are_an_error(source, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        stub_solutions(source)


def write_chapter(path: Path, first_code: str) -> Path:
    """A small executed chapter with a solution, a tagged cell and notebook metadata."""
    cells = [
        nbformat.v4.new_markdown_cell("# Chapter"),
        nbformat.v4.new_code_cell(
            first_code, execution_count=1, outputs=[nbformat.v4.new_output("stream", text="cuda\n")]
        ),
        nbformat.v4.new_markdown_cell("the answer", metadata={"tags": ["remove-in-exercise"]}),
        nbformat.v4.new_code_cell(
            "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION",
            execution_count=2,
            metadata={"execution": {"iopub.status.busy": "2026-01-01T00:00:00"}, "tags": ["keep"]},
        ),
    ]
    nb = nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "widgets": {"state": {}},
            "language_info": {"name": "python", "version": "3.11.9"},
        },
    )
    nbformat.write(nb, path)
    return path


def test_generated_notebook_is_clean(tmp_path):
    url = "https://example.org/owner/repo"
    write_chapter(tmp_path / "01_demo.ipynb", setup_cell(url))
    (tmp_path / "02_no_exercises.ipynb").write_text(
        nbformat.writes(nbformat.v4.new_notebook()), encoding="utf-8"
    )
    out = tmp_path / "exercises"
    assert generate(tmp_path, out, url) == ["01_demo.ipynb"]
    text = (out / "01_demo.ipynb").read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    assert [cell.cell_type for cell in nb.cells] == ["markdown", "markdown", "code", "code"]
    assert nb.cells[2].source == setup_cell(url)
    assert nb.cells[3].source == 'def f(x):\n    raise NotImplementedError("Exercise: complete f")'
    assert nb.cells[3].metadata == {"tags": ["keep"]}
    assert all(cell.outputs == [] and cell.execution_count is None for cell in nb.cells[2:])
    assert dict(nb.metadata) == {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    assert text.endswith("}\n") and "2026" not in text
    assert generate(tmp_path, out, url) == []


def test_a_chapter_without_the_setup_cell_is_refused(tmp_path):
    write_chapter(tmp_path / "01_demo.ipynb", "import torch")
    with pytest.raises(ValueError, match="01_demo.ipynb: the first code cell must be exactly"):
        generate(tmp_path, tmp_path / "exercises", "https://example.org/owner/repo")


@pytest.mark.parametrize(
    "chapter",
    ["change_of_variables", "kl_duality", "elbo_surgery", "dequantization", "sgld",
     "intrinsic_dim", "diffusion", "ali"],
)  # fmt: skip
def test_every_chapter_has_five_checked_exercises_and_one_open_question(chapter):
    """The graded path of issue 17: at least five checked exercises and one open question (listed
    by the progress report) per chapter."""
    names = registry.chapter_exercises(chapter)
    open_questions = [n for n in names if registry.is_open_question(n)]
    assert len(names) - len(open_questions) >= 5 and len(open_questions) == 1, names
