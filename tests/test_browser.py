"""The built book in headless Chromium with the network cut off: math, images, boxes, buttons,
widgets.

Pages are served from 127.0.0.1; every other request is aborted and recorded. Full-page screenshots
go to _build/screenshots/ for review.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
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
  const text = body.textContent;
  const found = ['\\\\(', '\\\\[', '$$'].filter(d => text.includes(d));
  // a single $ or a TeX command left in prose: math that MyST did not parse (e.g. a line of a
  // multi-line $...$ that began with "+" and became a list item)
  const stray = text.match(/\\$[^\\s$]{1,20}|\\\\(math|log|sum|frac|det|boldsymbol|mid)\\b/g);
  return found.concat(stray || []);
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


# Every explorer's controls (class dgm-control-K) and the figure on show (the visible
# dgm-figure-NAME-i-j-... box): its grid indices and the SHA-256 of the image bytes displayed.
SHOWN_FIGURE_JS = """async (explorer) => {
  const shown = Array.from(explorer.querySelectorAll('.dgm-figure'))
    .filter(e => e.checkVisibility());
  if (shown.length !== 1) return {count: shown.length};
  const cls = Array.from(shown[0].classList).find(c => c.startsWith('dgm-figure-'));
  const img = shown[0].querySelector('img');
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const sha = Array.from(digest).map(b => b.toString(16).padStart(2, '0')).join('');
  return {count: 1, cls, sha};
}"""
# Layout of an explorer: every control inside the explorer's box, no label cut off, slider tracks
# drawn, toggle buttons side by side, no TeX left in labels.
EXPLORER_LAYOUT_JS = """(explorer) => {
  const box = explorer.getBoundingClientRect();
  const problems = [];
  explorer.querySelectorAll('[class*="dgm-control-"]').forEach(control => {
    const r = control.getBoundingClientRect();
    if (r.left < box.left - 1 || r.right > box.right + 1) problems.push('control outside the box');
  });
  explorer.querySelectorAll('.widget-label, .widget-readout, .widget-toggle-button, select')
    .forEach(label => {
      if (label.scrollWidth > label.clientWidth + 1) problems.push('cut off: ' + label.textContent);
      const text = label.textContent;
      if (text.includes('$') || text.includes(String.fromCharCode(92))) {
        problems.push('raw TeX: ' + text);
      }
    });
  explorer.querySelectorAll('.noUi-base').forEach(track => {
    if (track.getBoundingClientRect().width < 40) problems.push('slider without a track');
  });
  explorer.querySelectorAll('.widget-toggle-buttons').forEach(group => {
    const tops = new Set(Array.from(group.querySelectorAll('button'))
      .map(b => Math.round(b.getBoundingClientRect().top)));
    if (tops.size > 1) problems.push('toggle buttons not in one row');
  });
  return problems;
}"""

# Code cells whose text is wider than their box (the reader would scroll sideways): the first line
# of each, with how many pixels it overflows.
DISPLAY_OVERFLOW_JS = """() => Array.from(
    document.querySelectorAll('.bd-article mjx-container[display="true"]'))
  .filter(m => m.scrollWidth > m.clientWidth + 1)
  .map(m => {
    const section = m.closest('section, div.section');
    const heading = section ? section.querySelector('h1, h2, h3, h4') : null;
    const math = m.querySelector('mjx-assistive-mml, math');
    return (heading ? heading.textContent.trim().slice(0, 40) : '?') + ': '
      + (math ? math.textContent.trim().slice(0, 40) : '') + ' (+'
      + (m.scrollWidth - m.clientWidth) + ' px)';
  })"""
CODE_OVERFLOW_JS = """() => Array.from(
    document.querySelectorAll('div.cell_input div.highlight pre'))
  .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
  .map(pre => pre.textContent.split('\\n')[0].slice(0, 60) + ' (+'
       + (pre.scrollWidth - pre.clientWidth) + ' px)')"""


@dataclass
class ExplorerReport:
    """What moving an explorer's controls showed: one entry per change of a control."""

    name: str
    figures: int  # grid points stored in the page
    controls: int
    changes: list[dict] = field(default_factory=list)
    layout_problems: list[str] = field(default_factory=list)


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
    explorers: list[ExplorerReport] = field(default_factory=list)
    code_overflow: list[str] = field(default_factory=list)  # code cells that scroll sideways
    display_overflow: list[str] = field(default_factory=list)  # displays wider than the column
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


def _stored_figures(browser_page) -> dict[str, dict[tuple[int, ...], str]]:
    """The figures in the page's saved widget state: explorer name -> grid indices -> SHA-256."""
    images, boxes = {}, []
    for script in browser_page.locator(
        'script[type="application/vnd.jupyter.widget-state+json"]'
    ).all():
        for model_id, model in json.loads(script.text_content())["state"].items():
            if model["model_name"] == "ImageModel":
                (buffer,) = [b for b in model.get("buffers", []) if b["path"] == ["value"]]
                images[model_id] = hashlib.sha256(base64.b64decode(buffer["data"])).hexdigest()
            classes = model["state"].get("_dom_classes", [])
            if model["model_name"] == "BoxModel" and "dgm-figure" in classes:
                boxes.append((classes, model["state"]["children"][0]))
    stored: dict[str, dict[tuple[int, ...], str]] = {}
    for classes, child in boxes:
        (cls,) = [c for c in classes if c.startswith("dgm-figure-")]
        name, *path = cls.removeprefix("dgm-figure-").split("-")
        stored.setdefault(name, {})[tuple(map(int, path))] = images[
            child.removeprefix("IPY_MODEL_")
        ]
    return stored


def _set_control(control, index: int) -> None:
    """Select option `index` of a book explorer's control as a reader would."""
    if control.locator("select").count():
        control.locator("select").select_option(index=index)
    elif control.locator("button").count():
        control.locator("button").nth(index).click()
    else:  # a SelectionSlider: its handle takes the arrow keys
        handle = control.locator(".noUi-handle")
        handle.focus()
        for _ in range(30):
            handle.press("ArrowLeft")
        for _ in range(index):
            handle.press("ArrowRight")


def _exercise_explorer(browser_page, explorer, name: str, stored: dict) -> ExplorerReport:
    """Move every control of one explorer to other values, recording what the page shows.

    For control k, start from the first grid point from which two successive changes of control k
    each change the stored figure (with two options: the other one and back), set every control
    there, then make those two changes. Each change records the grid point expected, the one
    shown, whether the bytes on show are the ones stored for it and whether they changed.
    """
    sizes = [max(path[k] for path in stored) + 1 for k in range(len(next(iter(stored))))]
    controls = [explorer.locator(f".dgm-control-{k}") for k in range(len(sizes))]
    report = ExplorerReport(name, len(stored), sum(c.count() for c in controls))
    report.layout_problems = explorer.evaluate(EXPLORER_LAYOUT_JS)
    shown = explorer.evaluate(SHOWN_FIGURE_JS)
    current = tuple(map(int, shown["cls"].split("-")[3:])) if shown["count"] == 1 else None
    report.changes.append({"expected": "default", "shown": current, "count": shown["count"]})
    if current is None:
        return report
    for k, size in enumerate(sizes):

        def with_k(path: tuple[int, ...], i: int, k: int = k) -> tuple[int, ...]:
            return path[:k] + (i,) + path[k + 1 :]

        def moves(path: tuple[int, ...], k: int = k, size: int = size) -> list[int]:
            """Two values of control k from `path`, each changing the figure on show."""
            targets: list[int] = []
            for _ in range(2):
                step = next((i for i in range(size) if i != path[k] and i not in targets
                             and stored[with_k(path, i)] != stored[path]), None)  # fmt: skip
                if step is None:
                    break
                targets.append(step)
                path = with_k(path, step)
            return targets

        start = next((p for p in sorted(stored) if len(moves(p)) == 2), None)
        if start is None:
            report.changes.append({"control": k, "expected": "a figure that changes"})
            continue
        for j, i in enumerate(start):
            if current[j] != i:
                _set_control(controls[j], i)
        current = start
        targets = moves(start)
        for n, i in enumerate(targets):
            before = stored[current]
            _set_control(controls[k], i)
            current = with_k(current, i)
            browser_page.wait_for_timeout(100)
            shown = explorer.evaluate(SHOWN_FIGURE_JS)
            path = tuple(map(int, shown["cls"].split("-")[3:])) if shown["count"] == 1 else None
            report.changes.append({
                "control": k,
                "expected": current,
                "shown": path,
                "stored_bytes": shown.get("sha") == stored[current],
                "changed": shown.get("sha") != before,
            })  # fmt: skip
            if k == 0 and n == 0:
                explorer.screenshot(path=str(SCREENSHOTS / f"explorer__{name}__a.png"))
            if k == len(sizes) - 1 and n == len(targets) - 1:
                explorer.screenshot(path=str(SCREENSHOTS / f"explorer__{name}__b.png"))
    return report


def _visit(browser_page, base: str, path: str) -> PageReport:
    report = PageReport(path)
    browser_page.on("pageerror", lambda error: report.errors.append(str(error)))
    browser_page.on(
        "console",
        lambda message: message.type == "error" and report.errors.append(message.text),
    )
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
        stored = _stored_figures(browser_page)
        for name, figures in sorted(stored.items()):
            explorer = browser_page.locator(f".dgm-explorer-{name}")
            explorer.scroll_into_view_if_needed()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            report.explorers.append(_exercise_explorer(browser_page, explorer, name, figures))
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
    report.code_overflow = browser_page.evaluate(CODE_OVERFLOW_JS)
    report.display_overflow = browser_page.evaluate(DISPLAY_OVERFLOW_JS)
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


def test_every_explorer_switches_figures_without_a_kernel(browser_report: BrowserReport) -> None:
    """Each control of each explorer, moved to two other values, shows the figure stored for
    that grid point, and a different one than before."""
    explorers = {
        (path, explorer.name): explorer
        for path, page in browser_report.pages.items()
        for explorer in page.explorers
    }
    chapters = {
        path
        for path in browser_report.pages
        if (ROOT / f"{path}.ipynb").is_file()
        and "_explorer(" in (ROOT / f"{path}.ipynb").read_text()
    }
    assert chapters, "no chapter calls an explorer"
    assert {path for path, _ in explorers} == chapters, "a chapter without a book explorer"
    for (path, name), explorer in explorers.items():
        assert explorer.controls == len(explorer.changes[0]["shown"] or ()), (path, name)
        assert explorer.changes[0]["count"] == 1, (path, name, explorer.changes[0])
        for k in range(explorer.controls):
            of_k = [change for change in explorer.changes[1:] if change.get("control") == k]
            assert len(of_k) >= 2, (path, name, k, of_k)
            for change in of_k:
                assert change["shown"] == change["expected"], (path, name, change)
                assert change["stored_bytes"] and change["changed"], (path, name, change)


def test_explorers_fit_the_page(browser_report: BrowserReport) -> None:
    problems = {
        (path, explorer.name): explorer.layout_problems
        for path, page in browser_report.pages.items()
        for explorer in page.explorers
        if explorer.layout_problems
    }
    assert not problems, problems


def test_code_cells_do_not_scroll_sideways(browser_report: BrowserReport) -> None:
    """Every code line (at most 88 characters, tests/test_notebooks.py) fits its box at the
    browser's 1280-pixel viewport (_static/dgm.css sets the code font size)."""
    overflow = {path: page.code_overflow for path, page in browser_report.pages.items()
                if page.code_overflow}  # fmt: skip
    assert not overflow, overflow


def test_displays_fit_the_column(browser_report: BrowserReport) -> None:
    """No display equation is wider than the text column at the 1280-pixel viewport (a wide one
    would scroll in its own box, _static/dgm.css; split it over lines instead)."""
    overflow = {path: page.display_overflow for path, page in browser_report.pages.items()
                if page.display_overflow}  # fmt: skip
    assert not overflow, overflow
