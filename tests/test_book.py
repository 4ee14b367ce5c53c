"""The book builds cleanly (warnings are errors) into self-contained HTML that loads nothing from a
CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from book_fixtures import BookBuild, toc_pages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CDN_HOSTS = (
    "cdn.jsdelivr.net",
    "unpkg.com",
    "cdnjs.cloudflare.com",
    "cdn.plot.ly",
    "code.jquery.com",
    "ajax.googleapis.com",
    "fonts.googleapis.com",
    "fonts.gstatic.com",
    "polyfill.io",
)
# sphinx-thebe declares where it would fetch thebe from when a reader clicks its "live code" button;
# the book does not enable that button (launch_buttons.thebe is off), so the URL is never requested.
THEBE_DECLARATION = re.compile(r'const THEBE_JS_URL = "[^"]*";')
FETCHING_LINK_RELS = {
    "stylesheet",
    "preload",
    "modulepreload",
    "prefetch",
    "icon",
    "shortcut",
    "manifest",
}
VENDORED = (
    "_static/vendor/mathjax/tex-chtml.js",
    "_static/vendor/requirejs/require.js",
    "_static/vendor/jupyter-widgets/offline.js",
    "_static/vendor/jupyter-widgets/embed-amd.js",
)


class _Tags(HTMLParser):
    """Collects the attributes of <script>/<link>/<img> tags and the text of inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "link", "img"):
            self.tags.append((tag, {name: value or "" for name, value in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline.append(data)


def _parse(page: Path) -> _Tags:
    tags = _Tags()
    tags.feed(page.read_text(encoding="utf-8"))
    return tags


def _loaded_url(tag: str, attrs: dict[str, str]) -> str | None:
    """The URL a <script> or <link> tag makes the browser fetch, if any."""
    if tag == "script":
        return attrs.get("src") or None
    rels = set(attrs.get("rel", "").lower().split())
    return attrs.get("href") if rels & FETCHING_LINK_RELS else None


def _html_pages(build: BookBuild) -> list[Path]:
    """The built pages (not the theme's template fragments under _static/)."""
    build.require_success()
    return sorted(
        page
        for page in build.html.rglob("*.html")
        if page.relative_to(build.html).parts[0] != "_static"
    )


def test_build_succeeds_with_warnings_as_errors(built_book: BookBuild) -> None:
    assert built_book.returncode == 0, built_book.log[-6000:]
    assert "build succeeded" in built_book.log


def test_index_and_every_toc_page_exist(built_book: BookBuild) -> None:
    built_book.require_success()
    assert (built_book.html / "index.html").is_file()
    missing = [page for page in toc_pages() if not (built_book.html / f"{page}.html").is_file()]
    assert not missing, f"toc pages without HTML: {missing}"


def test_no_script_or_link_tag_loads_from_the_network(built_book: BookBuild) -> None:
    remote = []
    for page in _html_pages(built_book):
        for tag, attrs in _parse(page).tags:
            url = _loaded_url(tag, attrs)
            if url and (urlsplit(url).scheme or url.startswith("//")):
                remote.append(f"{page.relative_to(built_book.html)}: <{tag}> {url}")
    assert not remote, "\n".join(remote)


def test_no_cdn_url_in_script_or_link_tags(built_book: BookBuild) -> None:
    found = []
    for page in _html_pages(built_book):
        parsed = _parse(page)
        texts = [value for _, attrs in parsed.tags for value in attrs.values()]
        texts += [THEBE_DECLARATION.sub("", body) for body in parsed.inline]
        found += [
            f"{page.relative_to(built_book.html)}: {host}"
            for text in texts
            for host in CDN_HOSTS
            if host in text
        ]
    assert not found, "\n".join(sorted(set(found)))


def test_local_scripts_and_stylesheets_resolve_from_every_page(built_book: BookBuild) -> None:
    broken = []
    for page in _html_pages(built_book):
        for tag, attrs in _parse(page).tags:
            url = _loaded_url(tag, attrs)
            if url and not urlsplit(url).scheme:
                target = (page.parent / urlsplit(url).path).resolve()
                if not target.is_file():
                    broken.append(f"{page.relative_to(built_book.html)}: {url}")
    assert not broken, "\n".join(broken)


def test_vendored_javascript_is_in_the_output(built_book: BookBuild) -> None:
    built_book.require_success()
    for path in VENDORED:
        assert (built_book.html / path).is_file(), path
    fonts = built_book.html / "_static/vendor/mathjax/output/chtml/fonts/woff-v2"
    assert len(list(fonts.glob("*.woff"))) > 10, "MathJax CHTML fonts are missing"
    intro = _parse(built_book.html / f"{toc_pages()[0]}.html")
    sources = [attrs.get("src", "") for tag, attrs in intro.tags if tag == "script"]
    assert any(src.split("?")[0].endswith(VENDORED[0]) for src in sources), sources


def test_pages_with_widgets_load_the_vendored_widget_manager(built_book: BookBuild) -> None:
    pages = [
        page
        for page in _html_pages(built_book)
        if "application/vnd.jupyter.widget-state+json" in page.read_text(encoding="utf-8")
    ]
    if not pages:
        pytest.skip("no page has saved widget state yet")
    for page in pages:
        sources = [
            attrs.get("src", "").split("?")[0]
            for tag, attrs in _parse(page).tags
            if tag == "script"
        ]
        for path in VENDORED[1:]:
            assert any(src.endswith(path) for src in sources), f"{page.name} does not load {path}"


MAX_PAGE_BYTES = 8 * 1024 * 1024


def page_weight(page: Path) -> tuple[int, int]:
    """(own, shared) bytes of a page: its HTML with its images (the explorers' figures sit in the
    HTML's widget state), and the scripts and stylesheets it shares with other pages (the browser
    caches those across the book; each counted once)."""
    own, shared = {page}, set()
    for tag, attrs in _parse(page).tags:
        url = attrs.get("src") if tag == "img" else _loaded_url(tag, attrs)
        if url and not urlsplit(url).scheme:
            (own if tag == "img" else shared).add((page.parent / urlsplit(url).path).resolve())
    return tuple(
        sum(path.stat().st_size for path in files if path.is_file()) for files in (own, shared)
    )


def test_every_page_with_its_images_is_at_most_8_mb(built_book: BookBuild) -> None:
    """The explorers' precomputed figures sit in the page's widget state: the budget of a page."""
    weights = {
        page.relative_to(built_book.html).as_posix(): page_weight(page)[0]
        for page in _html_pages(built_book)
    }
    heavy = {
        page: f"{size / 2**20:.2f} MB" for page, size in weights.items() if size > MAX_PAGE_BYTES
    }
    assert not heavy, heavy


def test_theorems_figures_and_exercises_are_numbered_per_chapter(built_book: BookBuild) -> None:
    """With numbered: 1 on the chapters, chapter 5's theorems read "Theorem 5.k", not a book-wide
    count, and the chapter titles carry their number in the navigation."""
    page = (built_book.html / "book" / "05_sgld.html").read_text(encoding="utf-8")
    numbers = re.findall(r'<span class="caption-number">\s*(?:Theorem|Proposition|Definition)'
                         r"\s+([0-9.]+)", page)  # fmt: skip
    numbers += re.findall(r"(?:Theorem|Proposition|Definition|Lemma) ([0-9]+(?:\.[0-9]+)?)\b",
                          re.sub(r"<[^>]+>", " ", page))  # fmt: skip
    assert numbers, "chapter 05 shows no numbered theorem"
    assert all(number.startswith("5.") for number in numbers), sorted(set(numbers))
    exercises = re.findall(r"Exercise ([0-9]+(?:\.[0-9]+)?)", re.sub(r"<[^>]+>", " ", page))
    assert exercises and all(e.startswith("5.") for e in exercises), sorted(set(exercises))


def test_consecutive_prints_of_a_cell_show_as_one_block(built_book: BookBuild) -> None:
    """nb_merge_streams: no cell output of a chapter is split into consecutive stream boxes."""
    split = {}
    for page in _html_pages(built_book):
        text = page.read_text(encoding="utf-8")
        hits = re.findall(r'class="output stream highlight-myst-ansi notranslate">'
                          r'<div class="highlight"><pre><span></span>[^<]*</pre></div>\s*</div>\s*'
                          r'<div class="output stream', text)  # fmt: skip
        if hits:
            split[page.name] = len(hits)
    assert not split, split
