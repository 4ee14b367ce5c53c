"""The progress report: check() records each verdict, progress() prints them, use_or_reference()
lets a chapter cell wait for an unfinished exercise, open questions are listed without a check."""

from __future__ import annotations

import json
import math

import nbformat
import pytest
import torch

from dgm_lib.exercises import (
    Case,
    check,
    open_question,
    progress,
    register,
    register_reference,
    registry,
    tracker,
    use_or_reference,
)
from dgm_lib.exercises.generate import checked_chapters, exercise_notebook
from dgm_lib.exercises.intro import gaussian_log_prob as reference_log_prob
from dgm_lib.exercises.setup import setup_cell

NAME = "intro.gaussian_log_prob"


def student(x, mu, sigma):
    z = (x - mu) / sigma
    return (-0.5 * z**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(dim=-1)


def stub(x, mu, sigma):
    raise NotImplementedError("Exercise: complete stub")


def wrong(x, mu, sigma):
    return (-0.5 * ((x - mu) / sigma) ** 2).sum(dim=-1)


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    """A fresh kernel: no verdicts in memory, the file in a temporary folder."""
    path = tmp_path / "progress.json"
    monkeypatch.setenv(tracker.ENV_FILE, str(path))
    monkeypatch.setattr(tracker, "_VERDICTS", {})
    monkeypatch.setattr(tracker, "_PASSED_FUNCTIONS", {})
    return path


@pytest.fixture
def toy_chapter(monkeypatch):
    """A chapter "toy" with two checked exercises and an open question, in that order."""
    for attribute in ("_REGISTRY", "_OPEN", "_ORDER", "_REFERENCES"):
        monkeypatch.setattr(registry, attribute, dict(getattr(registry, attribute)))

    @register("toy.double", "x = 1", hint="return 2 * x.")
    def _double() -> Case:
        return Case(args=(1.0,), expected=2.0)

    open_question("toy.why", "why doubling")

    @register("toy.square", "x = 3", hint="return x * x.")
    def _square() -> Case:
        return Case(args=(3.0,), expected=9.0)

    register_reference("toy.square")(lambda x: x * x)
    return "toy"


def table(capsys, *chapters: str) -> dict[str, str]:
    """progress(*chapters) as {exercise: state}; asserts the header lines."""
    capsys.readouterr()
    progress(*chapters)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Progress: ") and lines[1].split() == ["exercise", "state"]
    return {line.split()[0]: line.split(None, 1)[1] for line in lines[2:]}


def test_verdicts_are_recorded_in_memory_and_in_the_file(progress_file, toy_chapter, capsys):
    assert table(capsys, "toy") == {
        "toy.double": "not done yet",
        "toy.why": tracker.OPEN_TEXT,
        "toy.square": "not done yet",
    }
    assert check("toy.double", lambda x: 2 * x).passed is True
    assert check("toy.square", lambda x: x + x).passed is False
    rows = table(capsys, "toy")
    assert rows["toy.double"] == "passed" and rows["toy.square"].startswith("failing")
    assert json.loads(progress_file.read_text()) == {
        "toy.double": "passed",
        "toy.square": "failing",
    }
    progress("toy")
    assert capsys.readouterr().out.startswith("Progress: 1 of 2 checked exercises pass")


def test_a_stub_counts_as_not_done_and_a_fix_as_passed(progress_file, capsys):
    assert check(NAME, stub).passed is False
    assert table(capsys, "intro") == {NAME: "not done yet"}
    assert check(NAME, wrong).passed is False
    assert table(capsys, "intro")[NAME].startswith("failing")
    assert check(NAME, student).passed is True
    assert table(capsys, "intro") == {NAME: "passed"}


def test_a_restarted_kernel_reads_the_verdicts_from_the_file(progress_file, capsys):
    check(NAME, student)
    tracker.forget()  # what a restart does to memory
    assert table(capsys, "intro") == {NAME: "passed"}


def test_the_progress_cell_reruns_no_student_code(progress_file, toy_chapter, capsys):
    calls = []

    def counted(x):
        calls.append(x)
        return 2 * x

    check("toy.double", counted)
    before = len(calls)
    table(capsys, "toy")
    assert len(calls) == before == 1


@pytest.mark.parametrize("where", ["unwritable", "corrupt", "disabled"])
def test_an_unusable_file_is_ignored_and_memory_keeps_the_verdicts(
    where, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(tracker, "_VERDICTS", {})
    monkeypatch.setattr(tracker, "_PASSED_FUNCTIONS", {})
    if where == "unwritable":  # its folder would have to be a regular file: mkdir fails
        (tmp_path / "file").write_text("")
        monkeypatch.setenv(tracker.ENV_FILE, str(tmp_path / "file" / "progress.json"))
    elif where == "corrupt":
        (tmp_path / "progress.json").write_text("{not json")
        monkeypatch.setenv(tracker.ENV_FILE, str(tmp_path / "progress.json"))
    else:
        monkeypatch.setenv(tracker.ENV_FILE, "")
        monkeypatch.chdir(tmp_path)
    assert check(NAME, student).passed is True
    out = capsys.readouterr().out
    assert out.startswith("✓") and "Traceback" not in out
    assert table(capsys, "intro") == {NAME: "passed"}
    if where == "corrupt":  # rewritten with the new verdict
        assert json.loads((tmp_path / "progress.json").read_text()) == {NAME: "passed"}
    if where == "disabled":
        assert list(tmp_path.iterdir()) == []


def test_the_default_file_is_in_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(tracker.ENV_FILE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracker, "_VERDICTS", {})
    check(NAME, stub)
    assert json.loads((tmp_path / tracker.DEFAULT_FILE).read_text()) == {NAME: "not done"}


def test_a_demonstration_of_wrong_answers_records_nothing(progress_file, capsys):
    check(NAME, student)
    assert check(NAME, wrong, record=False).passed is False
    assert table(capsys, "intro") == {NAME: "passed"}
    assert use_or_reference(NAME, student) is student


def test_use_or_reference_waits_for_the_check(progress_file, capsys):
    assert use_or_reference(NAME, stub) is reference_log_prob  # never checked
    note = capsys.readouterr().out
    assert note.startswith(f"⏳ this cell waits for exercise {NAME}: until check(") and (
        "reference meanwhile" in note
    )
    check(NAME, stub)
    assert use_or_reference(NAME, stub) is reference_log_prob
    check(NAME, student)
    capsys.readouterr()
    assert use_or_reference(NAME, student) is student
    assert capsys.readouterr().out == ""  # a passed exercise is used silently


def test_use_or_reference_notices_a_function_changed_after_its_check(progress_file, capsys):
    check(NAME, student)

    def student_edited(x, mu, sigma):
        return student(x, mu, sigma)

    capsys.readouterr()
    assert use_or_reference(NAME, student_edited) is reference_log_prob
    assert "student_edited changed since its check passed" in capsys.readouterr().out


def test_use_or_reference_takes_an_explicit_reference(progress_file, toy_chapter, capsys):
    def mine(x):
        return x

    assert use_or_reference("toy.square", mine).__name__ == "<lambda>"  # the registered one
    assert use_or_reference("toy.double", mine, reference=abs) is abs
    with pytest.raises(ValueError, match="no registered reference"):
        use_or_reference("toy.double", mine)
    with pytest.raises(ValueError, match="open question"):
        use_or_reference("toy.why", mine, reference=abs)


def test_an_open_question_has_no_check(toy_chapter):
    with pytest.raises(ValueError, match="is an open question: there is no automatic check"):
        check("toy.why", lambda: None)
    with pytest.raises(ValueError, match="declared an open question"):
        register("toy.why", "d", "h")
    with pytest.raises(ValueError, match="has checks"):
        open_question("toy.double", "d")
    assert registry.chapter_exercises("toy") == ["toy.double", "toy.why", "toy.square"]
    assert "toy.why" in registry.open_questions() and "toy.why" not in registry.known_exercises()


def test_every_registered_reference_passes_its_own_check(progress_file, capsys):
    assert registry._REFERENCES, "no reference registered"
    for name, reference in registry._REFERENCES.items():
        assert check(name, reference, record=False).passed is True, capsys.readouterr().out


def test_the_generator_appends_the_progress_cell(tmp_path):
    url = "https://example.org/owner/repo"
    cells = [
        nbformat.v4.new_code_cell(setup_cell(url)),
        nbformat.v4.new_code_cell(
            "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"
        ),
        nbformat.v4.new_code_cell('check("b.f", f)\ncheck( "a.g", g)\ncheck("b.h", h)'),
    ]
    path = tmp_path / "01_demo.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    assert checked_chapters(nbformat.read(path, as_version=4)) == ["b", "a"]
    nb = nbformat.reads(exercise_notebook(path, url), as_version=4)
    assert [cell.id for cell in nb.cells[-2:]] == ["exercise-progress-header", "exercise-progress"]
    assert nb.cells[-1].source.endswith('progress("b", "a")')
    assert nb.cells[-1].outputs == []
