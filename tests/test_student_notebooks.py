"""The student notebooks of chapters 00 and 02 to 05 run top to bottom as handed out: every cell
that builds on an unfinished exercise waits for it (a note, the library's reference) instead of
raising, and the last cell reports the progress."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from nbclient import NotebookClient

from dgm_lib.exercises import registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "book" / "exercises"
# notebook -> its chapter prefix of exercise names
NOTEBOOKS = {
    "00_how_to_use.ipynb": "intro",
    "01_change_of_variables.ipynb": "change_of_variables",
    "02_kl_duality.ipynb": "kl_duality",
    "03_elbo_surgery.ipynb": "elbo_surgery",
}
# the notebooks with a later cell that builds on an exercise (and so waits for it). Chapters 04-06
# and 08 have none: their untouched notebooks rest on check() never raising
# (tests/test_exercises.py). Chapter 07 waits too, but executing it costs about 100 s of make
# test's budget; it was executed untouched by hand (no traceback) and is left out here.
WAITING = set(NOTEBOOKS)


def execute(path: Path, workdir: Path) -> nbformat.NotebookNode:
    """`path` executed in a fresh kernel (errors kept as outputs), over a private Unix socket."""
    nb = nbformat.read(path, as_version=4)
    manager = KernelManager(kernel_name="python3", transport="ipc", ip=str(workdir / "kernel"))
    client = NotebookClient(
        nb,
        km=manager,
        timeout=600,
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return nb


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_an_untouched_student_notebook_runs_without_a_traceback(name, tmp_path, monkeypatch):
    progress = tmp_path / "progress.json"
    monkeypatch.setenv("DGM_PROGRESS_FILE", str(progress))
    # the kernel imports this checkout's dgm_lib, not an installed copy
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    nb = execute(EXERCISES / name, tmp_path)
    errors = [
        f"cell {k}: {out.ename}: {out.evalue}"
        for k, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors, errors
    texts = [
        "".join(out.get("text", "") for out in cell.outputs)
        for cell in nb.cells
        if cell.cell_type == "code"
    ]
    chapter = NOTEBOOKS[name]
    checked = [n for n in registry.chapter_exercises(chapter) if not registry.is_open_question(n)]
    # every exercise's check said "not implemented yet", and a later cell waited for it
    for exercise in checked:
        assert any(f"✗ {exercise}: not implemented yet" in text for text in texts), exercise
    waits = any("this cell waits for exercise" in text for text in texts)
    assert waits == (name in WAITING)
    # the last cell is the progress report: nothing done, open questions listed
    report = texts[-1].splitlines()
    assert report[0].startswith(f"Progress: 0 of {len(checked)} checked exercises pass")
    rows = {line.split()[0]: line.split(None, 1)[1] for line in report[2:]}
    assert rows == {
        n: "open question: compare with the solution"
        if registry.is_open_question(n)
        else "not done yet"
        for n in registry.chapter_exercises(chapter)
    }
    assert json.loads(progress.read_text()) == {exercise: "not done" for exercise in checked}
