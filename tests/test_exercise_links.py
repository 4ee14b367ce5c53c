"""Every chapter page with a student notebook links to it in Colab and Binder (issue 17): at its
"Exercises" section and in the rocket's menu, with URLs derived from _config.yml like the launch
buttons'."""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from book_fixtures import ROOT, BookBuild, book_config, toc_pages

sys.path.insert(0, str(ROOT / "book" / "_ext"))
from exercise_links import LINK_CLASS, exercise_notebook, launch_urls  # noqa: E402

EXERCISES = ROOT / "book" / "exercises"


def expected_links(page: str) -> dict[str, str]:
    """The Colab and Binder URLs of the student twin of `page`, derived from _config.yml."""
    config = book_config()
    org, repo = urlsplit(config["repository"]["url"]).path.strip("/").split("/")[:2]
    branch = config["repository"].get("branch", "main")
    launch = config["launch_buttons"]
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}[launch.get("notebook_interface", "classic")]
    folder, name = page.rsplit("/", 1)
    path = f"{folder}/exercises/{name}.ipynb"
    return {
        "Colab": f"{launch['colab_url'].rstrip('/')}/github/{org}/{repo}/blob/{branch}/{path}",
        "Binder": (
            f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org}/{repo}/{branch}?urlpath={ui}/{path}"
        ),
    }


class _Links(HTMLParser):
    """The exercise links of a page: in the body (class LINK_CLASS) and in the rocket's menu."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.menu: dict[str, str] = {}
        self._open: tuple[str, str] | None = None  # (where, href) of the <a> being read
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        attributes = {k: v or "" for k, v in attrs}
        classes = attributes.get("class", "").split()
        if LINK_CLASS in classes:
            self._open, self._text = ("body", attributes["href"]), ""
        elif "dropdown-item" in classes:
            self._open, self._text = ("menu", attributes.get("href", "")), ""

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open:
            where, href = self._open
            text = " ".join(self._text.split())
            if where == "body":
                self.body[text] = href
            elif text.startswith("Exercises in "):
                self.menu[text.removeprefix("Exercises in ")] = href
            self._open = None


def page_links(build: BookBuild, page: str) -> _Links:
    links = _Links()
    links.feed((build.html / f"{page}.html").read_text(encoding="utf-8"))
    return links


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_chapter_with_exercises_links_to_its_student_notebook(built_book: BookBuild):
    built_book.require_success()
    with_twin = [p for p in toc_pages() if (ROOT / f"{p}.ipynb").parent.joinpath(
        "exercises", f"{Path(p).name}.ipynb").is_file()]  # fmt: skip
    assert len(with_twin) == len(list(EXERCISES.glob("*.ipynb"))) > 0
    for page in toc_pages():
        links = page_links(built_book, page)
        if page in with_twin:
            assert links.body == expected_links(page), page
            assert links.menu == expected_links(page), page
        else:
            assert not links.body and not links.menu, page


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_link_line_opens_the_exercises_section(built_book: BookBuild):
    built_book.require_success()
    html = (built_book.html / "book" / "02_kl_duality.html").read_text(encoding="utf-8")
    section = html.index('<section id="exercises">')
    line = html.index('class="dgm-exercise-links"')
    assert section < line < html.index("ex-kl-gaussians", section)


def test_urls_follow_the_theme_options():
    options = {
        "repository_url": "https://github.com/org/repo",
        "repository_branch": "dev",
        "path_to_docs": "docs/",
        "launch_buttons": {
            "colab_url": "https://colab.example/",
            "binderhub_url": "https://binder.example",
            "notebook_interface": "classic",
        },
    }
    assert launch_urls(options, "book/exercises/01_x.ipynb") == {
        "Colab": "https://colab.example/github/org/repo/blob/dev/docs/book/exercises/01_x.ipynb",
        "Binder": "https://binder.example/v2/gh/org/repo/dev?urlpath=tree/docs/book/exercises/01_x.ipynb",
    }
    options["launch_buttons"] = {"colab_url": "https://colab.example"}
    assert list(launch_urls(options, "a.ipynb")) == ["Colab"]
    assert (
        launch_urls({**options, "repository_url": "https://gitlab.com/org/repo"}, "a.ipynb") == {}
    )


def test_only_pages_with_a_student_twin_get_links():
    assert exercise_notebook(ROOT, "book/02_kl_duality") == "book/exercises/02_kl_duality.ipynb"
    assert exercise_notebook(ROOT, "book/intro") is None
    assert exercise_notebook(ROOT, "book/appendix_benchmarks") is None
