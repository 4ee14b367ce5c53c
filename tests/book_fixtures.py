"""The book build shared by test_book.py and test_browser.py: one clean build per test session."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENDORED_MATHJAX = (
    ROOT / "book" / "_vendor" / "html" / "_static" / "vendor" / "mathjax" / "tex-chtml.js"
)
SCREENSHOTS = ROOT / "_build" / "screenshots"


@dataclass(frozen=True)
class BookBuild:
    """Where a build went, how it ended and what it printed."""

    html: Path
    returncode: int
    log: str

    def require_success(self) -> None:
        """Fail the calling test, with the end of the log, unless the build succeeded."""
        if self.returncode != 0:
            pytest.fail(f"jupyter-book build failed (exit {self.returncode}):\n{self.log[-6000:]}")


def toc_pages() -> list[str]:
    """Every page of _toc.yml (root first), as a path without suffix relative to the repository
    root."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))

    walk([toc])
    return pages


def book_config() -> dict:
    """The parsed _config.yml."""
    return yaml.safe_load((ROOT / "_config.yml").read_text())


_BUILD: BookBuild | None = None


def build_book(out_dir: Path) -> BookBuild:
    """Build the book from a clean output directory with warnings as errors (once per session)."""
    global _BUILD
    if _BUILD is None:
        if not VENDORED_MATHJAX.is_file():
            pytest.fail(f"{VENDORED_MATHJAX.relative_to(ROOT)} is missing: run `make vendor` first")
        jupyter_book = Path(sys.executable).parent / "jupyter-book"
        command = [
            str(jupyter_book),
            "build",
            str(ROOT),
            "--path-output",
            str(out_dir),
            "--warningiserror",
            "--keep-going",
        ]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        _BUILD = BookBuild(out_dir / "_build" / "html", done.returncode, done.stdout + done.stderr)
    return _BUILD


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory) -> BookBuild:
    """The session's book build (it may have failed: see BookBuild.require_success)."""
    return build_book(tmp_path_factory.mktemp("book"))
