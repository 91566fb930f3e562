"""The built smoke book in a real browser: Debian's headless Chromium, driven by Selenium, without network.

Marked ``browser``: a plain ``pytest`` leaves it out; ``make test`` builds the
smoke book and then runs ``pytest -m browser``. Every page of
``_build/smoke/_build/html/`` must load without console errors, with every
image loaded, every link to the site's results present, no absolute
filesystem path, and its formulas typeset by the bundled MathJax; the
claims page's totals must be those of the chapters' results files.
Screenshots of two chapters go to ``_build/smoke/screenshots/``.
``MODGRAPH_BROWSER_PROFILE=quick`` checks another built book the same way.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from modgraph import book, paths, site

pytestmark = pytest.mark.browser

PROFILE = os.environ.get("MODGRAPH_BROWSER_PROFILE", "smoke")  # another built book: e.g. quick
SCREENSHOTS = ("01_curves", "06_pruning")
SKIP_DIRS = {"_static", "_sources", "_images", "results"}
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:home|root|tmp|usr|opt|work|var|mnt|srv|Users|private)/[\w.-]+")

PAGE_STATE = """
const done = arguments[arguments.length - 1];
const finish = () => {
  const bad = Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);
  const math = Array.from(document.querySelectorAll('span.math, div.math'));
  const raw = math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80));
  const body = document.body.cloneNode(true);
  body.querySelectorAll('pre, code, script, style').forEach(e => e.remove());
  const links = Array.from(document.querySelectorAll('[href], [src]')).map(e => e.getAttribute('href') || e.getAttribute('src'));
  const external = performance.getEntriesByType('resource').map(r => r.name).filter(n => !n.startsWith(location.origin) && !n.startsWith('data:'));
  done({badImages: bad, rawMath: raw, text: body.textContent, links: links, external: external, mathCount: math.length});
};
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  MathJax.startup.promise.then(finish, finish);
} else { finish(); }
"""


@pytest.fixture(scope="module")
def html_root() -> Path:
    root = paths.build_dir() / PROFILE / "_build" / "html"
    if not (root / "index.html").is_file():
        pytest.fail(f"no built {PROFILE} book at {paths.relative(root)}/: build it first with "
                    f"`python -m modgraph.book build --profile {PROFILE}` (make test does)")
    return root


@pytest.fixture(scope="module")
def base_url(html_root):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html_root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and chromedriver):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver "
                    "(make test installs them: apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)  # the last: no name resolves, so nothing can come from the network
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    drv.set_script_timeout(60)
    yield drv
    drv.quit()


WIDE_TABLES = """return [...document.querySelectorAll('.modgraph-table-wrap')]
    .filter(wrap => wrap.scrollWidth > wrap.clientWidth + 1)
    .map(wrap => [...wrap.querySelectorAll('th')].map(th => th.textContent).join(' | '));"""
"""The column headers of every table that needs its scroll bar at the test's window width (1280 px)."""

REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)


def site_pages(html_root: Path) -> list[str]:
    """Every HTML page of the site, but the redirect pages (``index.html``: to the root page)."""
    return sorted(p.relative_to(html_root).as_posix() for p in html_root.rglob("*.html")
                  if not SKIP_DIRS & set(p.relative_to(html_root).parts[:-1]) and not REDIRECT.search(p.read_text()))


def forbidden_paths() -> list[str]:
    return [str(paths.root()), str(Path.home()), os.path.realpath(sys.prefix)]


def page_problems(driver, base_url: str, html_root: Path, page: str) -> list[str]:
    driver.get(base_url + page)
    state = driver.execute_async_script(PAGE_STATE)
    problems = [f"console: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    problems += [f"image did not load: {src}" for src in state["badImages"]]
    problems += [f"table wider than the text column (columns: {columns})"
                 for columns in driver.execute_script(WIDE_TABLES)]
    problems += [f"formula not typeset: {tex!r}" for tex in state["rawMath"]]
    problems += [f"fetched from outside the site: {url}" for url in state["external"]]
    if "\\(" in state["text"] or "\\[" in state["text"]:
        problems.append("raw TeX delimiters in the page text")
    text = state["text"] + "\n" + "\n".join(state["links"])
    found = sorted({m.group(0) for m in ABSOLUTE.finditer(text)} | {p for p in forbidden_paths() if p in text})
    problems += [f"absolute filesystem path: {p}" for p in found]
    for ref in state["links"]:
        parsed = urlparse(ref)
        if parsed.scheme or parsed.netloc or not parsed.path:
            continue
        target = (html_root / page).parent / unquote(parsed.path)
        if not target.exists():
            problems.append(f"broken link: {ref}")
    return problems


def test_every_page_loads_cleanly_offline(driver, base_url, html_root):
    pages = site_pages(html_root)
    chapters = {f"{site.PAGES_DIR}/{name}.html" for name in book.notebook_names()}
    assert chapters <= set(pages) and f"{site.CLAIMS_PAGE}.html" in pages
    problems = {page: page_problems(driver, base_url, html_root, page) for page in pages}
    problems = {page: found for page, found in problems.items() if found}
    assert not problems, "\n".join(f"{page}:\n  " + "\n  ".join(found[:8]) for page, found in problems.items())


def test_index_redirects_to_the_introduction(driver, base_url, html_root):
    from selenium.webdriver.support.ui import WebDriverWait

    target = REDIRECT.search((html_root / "index.html").read_text()).group(1)
    assert target == "book/introduction.html" and (html_root / target).is_file()
    driver.get(base_url)
    WebDriverWait(driver, 20).until(lambda d: d.current_url == base_url + target)


def test_formulas_are_typeset_by_the_bundled_mathjax(driver, base_url, html_root):
    driver.get(base_url + "book/methods.html")
    state = driver.execute_async_script(PAGE_STATE)
    assert state["mathCount"] > 0 and not state["rawMath"]
    scripts = [s.get_attribute("src") for s in driver.find_elements("css selector", "script[src*='mathjax']")]
    assert scripts and all(s.startswith(base_url + "_static/mathjax/") for s in scripts)


def test_claims_page_totals_match_the_chapters_results(driver, base_url):
    names = book.notebook_names()
    claims = []
    for name in names:
        claims += json.loads((paths.results_dir(PROFILE) / f"{name}.json").read_text())["claims"]
    expected = site.claim_counts(claims)
    driver.get(base_url + f"{site.CLAIMS_PAGE}.html")
    totals = driver.find_element("css selector", "#claims-totals")
    assert int(totals.find_element("css selector", ".claims-total").get_attribute("data-total")) == len(claims)
    shown = {e.get_attribute("data-verdict"): int(e.text)
             for e in totals.find_elements("css selector", ".claims-count")}
    assert shown == expected
    rows = driver.find_elements("css selector", "table.claims-table tbody tr")
    assert len(rows) == len(claims)
    chapter_links = {a.get_attribute("href").rsplit("/", 1)[-1]
                     for a in driver.find_elements("css selector", "h2 a.reference")}
    assert chapter_links >= {f"{name}.html" for name in names}


def test_chapters_link_their_figures_and_rerun_commands(driver, base_url):
    driver.get(base_url + f"{site.PAGES_DIR}/01_curves.html")
    footers = driver.find_elements("css selector", ".figure-footer")
    assert footers, "no figure footer on the 01_curves page"
    for footer in footers:
        labels = [a.text for a in footer.find_elements("css selector", "a")]
        assert labels == ["PNG", "PDF", "numbers (JSON)"]
        assert footer.find_element("css selector", "pre").text.startswith(
            f"make figure NB=01_curves PROFILE={PROFILE} P=")
    assert not driver.find_elements("css selector", ".cell.tag_parameters, .cell.tag_injected-parameters")


def test_screenshots_of_two_chapters(driver, base_url):
    out = paths.build_dir() / PROFILE / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for name in SCREENSHOTS:
        driver.get(base_url + f"{site.PAGES_DIR}/{name}.html")
        driver.execute_async_script(PAGE_STATE)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": min(int(height), 20000), "deviceScaleFactor": 1,
                                "mobile": False})
        try:
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        path = out / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.stat().st_size > 10_000
