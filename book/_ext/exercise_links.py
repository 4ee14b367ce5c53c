"""Sphinx extension: every chapter page with a student notebook links to it in Colab and Binder.

The rocket button opens the chapter itself, solutions included. For a page `book/NN_topic` whose
student twin `book/exercises/NN_topic.ipynb` exists (`make exercises` writes one for every chapter
with solutions), this extension adds

- a line "Open the exercises in Colab · Binder" at the start of the page's "Exercises" section (at
  the top of the page when it has none), and
- the entries "Exercises in Colab" and "Exercises in Binder" to the rocket's menu.

The URLs are built the way sphinx-book-theme builds the launch buttons, from the theme options that
Jupyter Book derives from _config.yml (`repository.url`, `repository.branch`,
`repository.path_to_book` and `launch_buttons`): nothing is hard-coded.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

EXERCISES_DIR = "exercises"
LINK_CLASS = "dgm-exercise-link"
UI_PREFIX = {"classic": "tree", "jupyterlab": "lab/tree"}


def exercise_notebook(srcdir: str | Path, docname: str) -> str | None:
    """The student notebook of page `docname`, relative to the book root, or None without one.

    Args:
        srcdir: the book's source folder.
        docname: the page, e.g. "book/02_kl_duality".

    Returns:
        e.g. "book/exercises/02_kl_duality.ipynb".
    """
    page = PurePosixPath(docname)
    student = page.parent / EXERCISES_DIR / f"{page.name}.ipynb"
    return str(student) if (Path(srcdir) / student).is_file() else None


def launch_urls(theme_options: dict[str, Any], path: str) -> dict[str, str]:
    """{"Colab": url, "Binder": url} opening `path` (relative to the book root), as far as the
    launch buttons are configured; {} for a repository not on GitHub.

    Args:
        theme_options: html_theme_options (repository_url, repository_branch, path_to_docs,
            launch_buttons).
        path: the notebook, relative to the book root.
    """
    repository = theme_options.get("repository_url", "")
    if "github.com/" not in repository:
        return {}
    org, repo = repository.split("github.com/")[-1].strip("/").split("/")[:2]
    branch = theme_options.get("repository_branch") or "master"  # the theme's default
    book = theme_options.get("path_to_docs", "").strip("/")
    path_in_repo = f"{book}/{path}" if book else path
    launch = theme_options.get("launch_buttons", {})
    urls = {}
    colab = launch.get("colab_url", "").strip("/")
    if colab:
        urls["Colab"] = f"{colab}/github/{org}/{repo}/blob/{branch}/{path_in_repo}"
    binder = launch.get("binderhub_url", "").strip("/")
    if binder:
        ui = UI_PREFIX[launch.get("notebook_interface", "classic")]
        urls["Binder"] = f"{binder}/v2/gh/{org}/{repo}/{branch}?urlpath={ui}/{path_in_repo}"
    return urls


def _link_paragraph(urls: dict[str, str], path: str) -> nodes.paragraph:
    """"Open the exercises in Colab · Binder: the student notebook `path` ..." as docutils nodes."""
    paragraph = nodes.paragraph(classes=["dgm-exercise-links"])
    paragraph += nodes.strong(text="Open the exercises in ")
    for k, (provider, url) in enumerate(urls.items()):
        if k:
            paragraph += nodes.Text(" · ")
        paragraph += nodes.reference(provider, provider, refuri=url, classes=[LINK_CLASS])
    paragraph += nodes.Text(": the student notebook ")
    paragraph += nodes.literal(text=path)
    paragraph += nodes.Text(
        ", with every solution replaced by a stub to complete, a check after each exercise and "
        "a progress report at the end."
    )
    return paragraph


def add_exercise_links(app: Sphinx, doctree: nodes.document) -> None:
    """doctree-read: put the link line at the start of the "Exercises" section."""
    path = exercise_notebook(app.srcdir, app.env.docname)
    urls = launch_urls(app.config.html_theme_options, path) if path else {}
    if not urls:
        return
    sections = list(doctree.findall(nodes.section))
    if not sections:
        return
    target = next(
        (s for s in sections if s[0].astext().strip().lower().startswith("exercises")),
        sections[0],
    )
    target.insert(1, _link_paragraph(urls, path))  # right after the section's title


def add_launch_entries(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """html-page-context, after the theme's launch buttons: add the exercises to the rocket menu."""
    path = exercise_notebook(app.srcdir, pagename)
    urls = launch_urls(app.config.html_theme_options, path) if path else {}
    groups = [
        button
        for button in context.get("header_buttons", [])
        if button.get("label") == "launch-buttons"
    ]
    if not urls or not groups:
        return
    icons = {"Colab": "_static/images/logo_colab.png", "Binder": "_static/images/logo_binder.svg"}
    for provider, url in urls.items():
        groups[0]["buttons"].append(
            {
                "type": "link",
                "text": f"Exercises in {provider}",
                "tooltip": f"Open the exercise notebook {path} in {provider}",
                "icon": icons[provider],
                "url": url,
            }
        )


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the two hooks."""
    app.connect("doctree-read", add_exercise_links)
    # sphinx-book-theme adds its launch buttons at priority 501
    app.connect("html-page-context", add_launch_entries, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
