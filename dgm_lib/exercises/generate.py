"""Generate the student notebooks.

`python -m dgm_lib.exercises.generate [--check]` (run from the repository root).

Every book/*.ipynb containing a `### BEGIN SOLUTION` line becomes book/exercises/<same name>.ipynb
with outputs cleared, the setup cell kept verbatim (and verified), solutions replaced by `raise
NotImplementedError(...)` stubs, cells tagged `remove-in-exercise` dropped, and a last cell that
prints the progress report of the chapter's exercises. The output is deterministic, so regenerating
gives no diff.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor
from traitlets import Set

from .setup import setup_cell

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
REMOVE_TAG = "remove-in-exercise"
KEPT_NOTEBOOK_METADATA = ("kernelspec",)
HEADER = (
    "**Exercise notebook**, generated from the chapter `{name}` by `make exercises`.\nReplace "
    "every `raise NotImplementedError(...)` with your code, then run the `check(...)` cell that "
    "follows it."
)
PROGRESS_HEADER = (
    "## Your progress\n\nThe table lists this chapter's exercises with the verdict of each one's "
    "last `check(...)` (kept in `.dgm_progress.json` next to this notebook, so it survives a "
    "restart of the kernel); running it re-runs nothing."
)
PROGRESS_CELL = """\
# Progress report: passed / failing / not done yet, and the open questions.
from dgm_lib.exercises import progress

progress({chapters})"""
CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\w+)\.\w+["']""")


def stub_solutions(source: str) -> str:
    """Replace each BEGIN..END SOLUTION block by `raise NotImplementedError("Exercise: ...")` at the
    marker's indentation."""
    lines, out, begin = source.split("\n"), [], None
    for number, line in enumerate(lines, start=1):
        marker = line.strip()
        if marker == BEGIN:
            if begin is not None:
                raise ValueError(
                    f"line {number}: {BEGIN!r} inside the solution block opened on line {begin}"
                )
            begin = number
            indent = line[: len(line) - len(line.lstrip())]
            out.append(
                f"{indent}raise NotImplementedError("
                f'"Exercise: {_task(lines[: number - 1], indent)}")'
            )
        elif marker == END:
            if begin is None:
                raise ValueError(f"line {number}: {END!r} without a matching {BEGIN!r}")
            begin = None
        elif begin is None:
            out.append(line)
    if begin is not None:
        raise ValueError(f"line {begin}: {BEGIN!r} has no matching {END!r}")
    return "\n".join(out)


def _task(before: list[str], indent: str) -> str:
    """What the stub asks for.

    Complete the innermost enclosing function, else write the solution here.
    """
    for line in reversed(before):
        match = re.match(r"(\s*)(?:async\s+)?def\s+(\w+)", line)
        if match and len(match.group(1)) < len(indent):
            return f"complete {match.group(2)}"
    return "write your solution here"


def has_solution(nb: nbformat.NotebookNode) -> bool:
    """Whether any code cell of `nb` contains a BEGIN SOLUTION marker line."""
    return any(
        cell.cell_type == "code" and any(line.strip() == BEGIN for line in cell.source.split("\n"))
        for cell in nb.cells
    )


class ExercisePreprocessor(ClearOutputPreprocessor):
    """Turn an executed chapter into a student notebook (outputs cleared, solutions stubbed, tagged
    cells dropped)."""

    remove_metadata_fields = Set({"collapsed", "scrolled", "execution", "ExecuteTime"}).tag(
        config=True
    )

    def preprocess(
        self, nb: nbformat.NotebookNode, resources: dict
    ) -> tuple[nbformat.NotebookNode, dict]:
        """Drop tagged cells, keep minimal notebook metadata, add the header cell, then process each
        cell."""
        name = resources["chapter"]
        nb.cells = [
            cell for cell in nb.cells if REMOVE_TAG not in cell.get("metadata", {}).get("tags", [])
        ]
        header = nbformat.v4.new_markdown_cell(HEADER.format(name=name))
        header.id = "exercise-header"
        nb.cells.insert(0, header)
        nb.metadata = nbformat.NotebookNode(
            {k: nb.metadata[k] for k in KEPT_NOTEBOOK_METADATA if k in nb.metadata}
        )
        nb.nbformat, nb.nbformat_minor = 4, 5
        for index, cell in enumerate(nb.cells):
            cell.setdefault(
                "id", f"cell-{index}"
            )  # deterministic ids for chapters saved without them
        chapters = checked_chapters(nb)
        if chapters:
            nb.cells += progress_cells(chapters)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: nbformat.NotebookNode, resources: dict, index: int) -> tuple:
        """Clear the outputs of a code cell and stub its solution blocks."""
        cell, resources = super().preprocess_cell(cell, resources, index)
        if cell.cell_type == "code":
            try:
                cell.source = stub_solutions(cell.source)
            except ValueError as error:
                raise ValueError(f"{resources['chapter']}, cell {index}: {error}") from None
        return cell, resources


def checked_chapters(nb: nbformat.NotebookNode) -> list[str]:
    """The chapter prefixes of the exercise names that `check("chapter.name", ...)` calls in `nb`
    use, in order of first appearance."""
    found: dict[str, None] = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            found.update(dict.fromkeys(CHECK_CALL.findall(cell.source)))
    return list(found)


def progress_cells(chapters: list[str]) -> list[nbformat.NotebookNode]:
    """The closing cells of a student notebook: a heading and `progress(*chapters)`."""
    header = nbformat.v4.new_markdown_cell(PROGRESS_HEADER)
    header.id = "exercise-progress-header"
    code = nbformat.v4.new_code_cell(
        PROGRESS_CELL.format(chapters=", ".join(f'"{chapter}"' for chapter in chapters))
    )
    code.id = "exercise-progress"
    return [header, code]


def verify_setup_cell(nb: nbformat.NotebookNode, repo_url: str, name: str) -> None:
    """ValueError unless the first code cell of `nb` is exactly `setup_cell(repo_url)`."""
    first = next((cell for cell in nb.cells if cell.cell_type == "code"), None)
    if first is None or first.source != setup_cell(repo_url):
        raise ValueError(
            f"{name}: the first code cell must be exactly "
            f"dgm_lib.exercises.setup_cell({repo_url!r}); "
            "copy it from book/00_how_to_use.ipynb"
        )


def exercise_notebook(chapter: Path, repo_url: str) -> str:
    """The JSON text of the student notebook generated from `chapter`."""
    nb = nbformat.read(chapter, as_version=4)
    verify_setup_cell(nb, repo_url, chapter.name)
    nb, _ = ExercisePreprocessor().preprocess(nb, {"chapter": chapter.name})
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def chapters_with_solutions(book: Path) -> list[Path]:
    """The notebooks directly in `book` (not in subfolders such as book/exercises/) that contain
    solutions."""
    return [
        path
        for path in sorted(book.glob("*.ipynb"))
        if has_solution(nbformat.read(path, as_version=4))
    ]


def repository_url(config: Path) -> str:
    """`repository.url` from the Jupyter Book configuration file."""
    import yaml  # a build-time dependency, not one of dgm_lib's

    if not config.is_file():
        raise FileNotFoundError(
            f"config={str(config)!r} does not exist; run from the repository root"
        )
    url = (
        (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("repository", {}).get("url")
    )
    if not url:
        raise ValueError(f"{config}: missing repository.url")
    return url


def generate(book: Path, out: Path, repo_url: str, check: bool = False) -> list[str]:
    """Write (or with `check`, only compare) the student notebooks in `out`.

    Return the names that were stale.
    """
    expected = {
        chapter.name: exercise_notebook(chapter, repo_url)
        for chapter in chapters_with_solutions(book)
    }
    stale = sorted(
        {name for name, text in expected.items() if _read(out / name) != text}
        | {path.name for path in out.glob("*.ipynb") if path.name not in expected}
    )
    if not check:
        out.mkdir(parents=True, exist_ok=True)
        for name in stale:
            if name in expected:
                (out / name).write_text(expected[name], encoding="utf-8", newline="\n")
            else:
                (out / name).unlink()
    return stale


def _read(path: Path) -> str | None:
    """The text of `path`, or None when it does not exist."""
    return path.read_text(encoding="utf-8") if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; exit status 1 with `--check` when an exercise notebook is stale."""
    parser = argparse.ArgumentParser(
        prog="python -m dgm_lib.exercises.generate", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--book", type=Path, default=Path("book"), help="folder of the chapter notebooks"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: BOOK/exercises)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("_config.yml"),
        help="Jupyter Book config with repository.url",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing stale exercise notebooks",
    )
    args = parser.parse_args(argv)
    out = args.out or args.book / "exercises"
    stale = generate(args.book, out, repository_url(args.config), check=args.check)
    for name in stale:
        print(f"{'stale' if args.check else 'updated'}: {out / name}")
    if args.check and stale:
        print("exercise notebooks are out of date: run `make exercises`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
