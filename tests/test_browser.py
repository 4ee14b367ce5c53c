"""The built book in headless Chromium with the network cut off: math, images, boxes, buttons,
widgets.

Pages are served from 127.0.0.1; every other request is aborted and recorded. Full-page screenshots
go to _build/screenshots/ for review.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from book_fixtures import ROOT, SCREENSHOTS, BookBuild, book_config, toc_pages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every Jupyter Book 1.0.4 page (Sphinx 7.4) repeats sphinx-thebe's inline `const THEBE_JS_URL =
# ...` script: Sphinx registers inline scripts added after the builder started twice (filename None
# and ""). The second copy fails to redeclare the constant; the first one already defined it, so
# nothing is lost.
KNOWN_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)

# Text left in the page body (outside code) after MathJax ran: nothing that still looks like TeX
# delimiters.
RAW_TEX_JS = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll('pre, code, script, style, mjx-container, .MathJax')
    .forEach(e => e.remove());
  return ['\\\\(', '\\\\[', '$$'].filter(d => body.textContent.includes(d));
}"""
WAIT_FOR_IMAGES_JS = """() => Promise.all(Array.from(document.images).map(img => {
  img.loading = 'eager';
  return img.complete ? null : new Promise(done => { img.onload = img.onerror = done; });
}))"""
BROKEN_IMAGES_JS = """() => Array.from(document.images)
  .filter(img => !img.complete || img.naturalWidth === 0).map(img => img.getAttribute('src'))"""
# A sphinx-proof box is styled when its border has the colour proof.css assigns to its kind (an
# algorithm box has no side borders by design: sphinx-proof draws rules above and below its title
# instead, which are checked).
PROOF_BOXES_JS = """() => Array.from(document.querySelectorAll('div.proof.admonition')).map(box => {
  const kind = Array.from(box.classList).find(c => !['proof', 'admonition'].includes(c)) || 'proof';
  const wanted = getComputedStyle(document.documentElement)
    .getPropertyValue(`--${kind}-border-color`).trim();
  const probe = document.createElement('span');
  probe.style.color = wanted;
  document.body.appendChild(probe);
  const expected = getComputedStyle(probe).color;
  probe.remove();
  const style = getComputedStyle(box);
  const title = box.querySelector('.admonition-title');
  return {kind, wanted, expected, border: style.borderLeftColor, width: style.borderLeftWidth,
          titleTop: title ? getComputedStyle(title).borderTopWidth : '0px'};
})"""


@dataclass
class PageReport:
    """What one page looked like in the browser."""

    path: str
    math_elements: int = 0
    mjx_containers: int = 0
    mjx_errors: int = 0
    raw_tex: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    links: set[str] = field(default_factory=set)
    proof_boxes: list[dict] = field(default_factory=list)
    solutions: list[tuple[bool, bool]] = field(
        default_factory=list
    )  # (hidden at first, shown after a click)
    widget_states: int = 0
    widgets_rendered: int = 0
    errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)


@dataclass
class BrowserReport:
    """Every toc page's report, and the requests that tried to leave 127.0.0.1."""

    pages: dict[str, PageReport]
    blocked: list[str]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _expected_launch_links(page: str) -> set[str]:
    """The Colab and Binder URLs a notebook page must link to, derived from _config.yml."""
    config = book_config()
    org, repo = urlsplit(config["repository"]["url"]).path.strip("/").split("/")[:2]
    branch = config["repository"].get("branch", "main")
    launch = config["launch_buttons"]
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}[launch.get("notebook_interface", "classic")]
    return {
        f"{launch['colab_url'].rstrip('/')}/github/{org}/{repo}/blob/{branch}/{page}.ipynb",
        f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org}/{repo}/{branch}?urlpath={ui}/{page}.ipynb",
    }


def _visit(browser_page, base: str, path: str) -> PageReport:
    report = PageReport(path)
    browser_page.on("pageerror", lambda error: report.errors.append(str(error)))
    browser_page.on("requestfailed", lambda request: report.failed_requests.append(request.url))
    browser_page.on(
        "response",
        lambda response: (
            response.status >= 400
            and report.failed_requests.append(f"{response.status} {response.url}")
        ),
    )
    browser_page.goto(f"{base}/{path}.html", wait_until="load")
    browser_page.evaluate(
        "() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null"
    )
    browser_page.evaluate(WAIT_FOR_IMAGES_JS)
    report.widget_states = browser_page.locator(
        'script[type="application/vnd.jupyter.widget-state+json"]'
    ).count()
    if report.widget_states:
        widgets = browser_page.locator(
            ".jupyter-widgets.widget-container, .jupyter-widgets.widget-inline-hbox"
        )
        try:
            widgets.first.wait_for(state="attached", timeout=20_000)
        except Exception:  # noqa: BLE001 (the count below records the failure)
            pass
        report.widgets_rendered = widgets.count()
    browser_page.evaluate("() => document.fonts.ready.then(() => null)")
    report.math_elements = browser_page.locator(".math").count()
    report.mjx_containers = browser_page.locator("mjx-container").count()
    report.mjx_errors = browser_page.locator("mjx-merror").count()
    report.raw_tex = browser_page.evaluate(RAW_TEX_JS)
    report.broken_images = browser_page.evaluate(BROKEN_IMAGES_JS)
    report.links = set(
        browser_page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    )
    report.proof_boxes = browser_page.evaluate(PROOF_BOXES_JS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser_page.screenshot(
        path=str(SCREENSHOTS / f"{path.replace('/', '__')}.png"), full_page=True
    )
    for solution in browser_page.locator("div.solution.admonition").all():
        body = solution.locator(":scope > :not(.admonition-title)").first
        hidden = not body.is_visible()
        solution.locator(":scope > .admonition-title").click()
        body.wait_for(state="visible", timeout=5_000)
        report.solutions.append((hidden, body.is_visible()))
    return report


@pytest.fixture(scope="module")
def browser_report(built_book: BookBuild) -> BrowserReport:
    """Open every toc page of the build in Chromium, offline, and record what rendered."""
    built_book.require_success()
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(built_book.html))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    blocked: list[str] = []

    def route(request_route) -> None:
        if request_route.request.url.startswith(base + "/"):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, service_workers="block"
            )
            context.route("**/*", route)
            pages = {}
            for path in toc_pages():
                browser_page = context.new_page()
                pages[path] = _visit(browser_page, base, path)
                browser_page.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return BrowserReport(pages, blocked)


def test_nothing_is_requested_outside_localhost(browser_report: BrowserReport) -> None:
    assert not browser_report.blocked, "\n".join(browser_report.blocked)


def test_every_local_request_succeeds(browser_report: BrowserReport) -> None:
    blocked = set(browser_report.blocked)
    failed = {
        path: [url for url in page.failed_requests if url not in blocked]
        for path, page in browser_report.pages.items()
    }
    assert not any(failed.values()), failed


def test_no_javascript_errors(browser_report: BrowserReport) -> None:
    errors = {
        path: [error for error in page.errors if error not in KNOWN_ERRORS]
        for path, page in browser_report.pages.items()
    }
    assert not any(errors.values()), errors


def test_math_is_typeset(browser_report: BrowserReport) -> None:
    intro = browser_report.pages[toc_pages()[0]]
    assert intro.math_elements > 0 and intro.mjx_containers >= intro.math_elements, intro
    for path, page in browser_report.pages.items():
        assert page.mjx_containers >= page.math_elements, f"{path}: untypeset math"
        assert page.mjx_errors == 0, f"{path}: {page.mjx_errors} MathJax errors"
        assert not page.raw_tex, f"{path}: raw TeX delimiters left in the text: {page.raw_tex}"


def test_no_broken_images(browser_report: BrowserReport) -> None:
    broken = {
        path: page.broken_images
        for path, page in browser_report.pages.items()
        if page.broken_images
    }
    assert not broken, broken


def test_theorem_boxes_are_styled(browser_report: BrowserReport) -> None:
    boxes = [(path, box) for path, page in browser_report.pages.items() for box in page.proof_boxes]
    assert boxes, "no sphinx-proof box found (the intro has a definition and a theorem)"
    for path, box in boxes:
        if box["kind"] == "algorithm":
            assert box["titleTop"] != "0px", (path, box)
            continue
        assert box["width"] != "0px", (path, box)
        if box["wanted"]:
            assert box["border"] == box["expected"], (path, box)


def test_solutions_start_collapsed_and_open_on_click(browser_report: BrowserReport) -> None:
    solutions = [
        (path, state) for path, page in browser_report.pages.items() for state in page.solutions
    ]
    assert solutions, "no solution found (the intro has one)"
    assert all(state == (True, True) for _, state in solutions), solutions


def test_repository_and_launch_buttons(browser_report: BrowserReport) -> None:
    repository = book_config()["repository"]["url"]
    for path, page in browser_report.pages.items():
        assert repository in page.links, f"{path}: no repository button"
    notebooks = [path for path in browser_report.pages if (ROOT / f"{path}.ipynb").is_file()]
    if not notebooks:
        pytest.skip("no notebook page in _toc.yml yet (launch buttons appear on notebook pages)")
    for path in notebooks:
        missing = _expected_launch_links(path) - browser_report.pages[path].links
        assert not missing, f"{path}: missing launch links {missing}"


def test_saved_widget_state_renders(browser_report: BrowserReport) -> None:
    pages = {path: page for path, page in browser_report.pages.items() if page.widget_states}
    if not pages:
        pytest.skip("no page has saved widget state yet")
    for path, page in pages.items():
        assert page.widgets_rendered > 0, f"{path}: saved widget state did not render"
