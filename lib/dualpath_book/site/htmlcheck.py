"""Open the built book in headless Chromium and check that every figure shows, offline.

A static check of ``<img src>`` misses what only a browser sees: a PNG that does not decode,
a stylesheet or script fetched from a CDN, a figure drawn by JavaScript. This module serves
``_build/html`` on 127.0.0.1, drives Debian's Chromium through ChromeDriver's W3C WebDriver
HTTP API (the standard library is enough, so no browser package joins the environment) and,
for every page of ``_toc.yml``, reports images that did not load, any resource that would
come from another host, a Try it page whose model did not load, tables and code blocks wider
than the text column, and the lines of code the page shows (the Reproduction pages may show at
most :data:`CODE_LINE_LIMIT`). Chromium resolves every host but 127.0.0.1 to NOTFOUND, so a page that
needs the internet shows it as a broken figure rather than quietly fetching it.

    python -m dualpath_book.site.htmlcheck _build/html --toc _toc.yml --screenshots /tmp/shots
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = ("install Debian's Chromium and its driver (`apt-get install chromium chromium-driver`) "
                "or pass --chromium/--chromedriver")

# Runs in the page: load every image eagerly, then poll until each has finished (loaded or
# failed) and MathJax has typeset, or a deadline passes; then report. Polling `complete`, not
# awaiting img.decode(), because decode() can stay pending in headless Chromium and hang the page.
_PAGE_PROBE = """
const done = arguments[arguments.length - 1];
let typeset = !(window.MathJax && MathJax.startup && MathJax.startup.promise);
if (!typeset) MathJax.startup.promise.then(() => { typeset = true; }, () => { typeset = true; });
const deadline = Date.now() + 30000;
(function poll() {
  // document.images is read afresh each time: the page may still be parsing on the first call
  const imgs = Array.from(document.images);
  imgs.forEach(img => { img.loading = 'eager'; });
  // the Try it page loads its model after the page has loaded (data-state: loading, ready or error)
  const demo = document.querySelector('.dualpath-try-it');
  const busy = document.readyState !== 'complete' || !typeset || imgs.some(img => !img.complete)
    || (demo !== null && demo.dataset.state !== 'ready' && demo.dataset.state !== 'error');
  if (busy && Date.now() < deadline) { setTimeout(poll, 100); return; }
  const attrs = Array.from(document.querySelectorAll(
      'img[src], script[src], link[rel~="stylesheet"][href], iframe[src], source[src], video[src], object[data]'))
    .map(el => el.src || el.href || el.data).filter(Boolean);
  // What the reader sees: tables and code wider than the text column (cut off, or behind a
  // scrollbar), and the lines of code a page shows (a collapsed <details> hides its cells).
  const column = document.querySelector('article') || document.querySelector('main') || document.body;
  const limit = column.clientWidth;
  const wide = Array.from(column.querySelectorAll('table, pre')).filter(el => el.offsetParent !== null)
    .filter(el => el.getBoundingClientRect().width > limit + 2 || el.scrollWidth > el.clientWidth + 2)
    .map(el => ({tag: el.tagName.toLowerCase(), width: Math.max(el.scrollWidth, Math.round(el.getBoundingClientRect().width)),
                 column: limit, text: el.innerText.trim().split('\\n')[0].slice(0, 60)}));
  const code = Array.from(column.querySelectorAll('div.cell_input pre'))
    .filter(el => el.offsetParent !== null && !el.closest('details:not([open])'))
    .reduce((n, el) => n + el.innerText.replace(/\\n+$/, '').split('\\n').length, 0);
  done({
    demo: demo && (demo.dataset.state + (demo.dataset.error ? ': ' + demo.dataset.error : '')),
    wide: wide,
    code: code,
    title: document.title,
    math: document.querySelectorAll('.math').length,
    typeset: document.querySelectorAll('mjx-container').length,
    images: imgs.map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
                              width: img.naturalWidth})),
    resources: performance.getEntriesByType('resource').map(e => e.name).concat(attrs),
  });
})();
"""


class BrowserMissing(RuntimeError):
    """Chromium or ChromeDriver is not installed."""


@dataclass
class PageReport:
    page: str
    title: str = ""
    images: int = 0
    equations: int = 0
    code_lines: int = 0                 # lines of code the page shows (collapsed cells excluded)
    code_limit: int | None = None       # at most this many, on the Reproduction pages
    broken: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    wide: list[str] = field(default_factory=list)   # tables / code blocks wider than the text column
    error: str = ""

    @property
    def too_much_code(self) -> bool:
        return self.code_limit is not None and self.code_lines > self.code_limit

    @property
    def ok(self) -> bool:
        return not (self.broken or self.external or self.wide or self.error or self.too_much_code)

    def describe(self) -> str:
        counts = f"{self.images} image(s), {self.equations} equation(s), {self.code_lines} visible line(s) of code"
        if self.ok:
            return f"ok      {self.page}: {counts}"
        parts = [f"FAILED  {self.page}: {counts}"]
        parts += [f"  broken image {src}" for src in self.broken]
        parts += [f"  needs the internet: {url}" for url in self.external]
        parts += [f"  wider than the text column: {what}" for what in self.wide]
        if self.too_much_code:
            parts.append(f"  shows {self.code_lines} lines of code, more than the {self.code_limit} a Reproduction "
                         "page may (hide plumbing cells: tags remove-cell / remove-input / hide-input)")
        parts += [f"  {self.error}"] if self.error else []
        return "\n".join(parts)


# The Reproduction pages (the executed notebooks 01-05) show the reader the calls a reader would
# type, not the plumbing: at most this many visible lines of code each.
CODE_LINE_LIMIT = 60
REPRODUCTION_PAGES = tuple(f"book/generated/0{k}_" for k in range(1, 6))


def code_limit(page: str) -> int | None:
    return CODE_LINE_LIMIT if page.startswith(REPRODUCTION_PAGES) else None


def toc_entries(toc: dict) -> list[str]:
    """Every ``root``/``file`` of a jb-book ``_toc.yml``, in reading order, without extension."""
    def walk(node) -> list[str]:
        if isinstance(node, dict):
            own = [node[k] for k in ("root", "file") if isinstance(node.get(k), str)]
            return own + [f for k, v in node.items() if k not in ("root", "file") for f in walk(v)]
        if isinstance(node, list):
            return [f for item in node for f in walk(item)]
        return []
    return walk(toc)


def toc_pages(toc_file: str | Path) -> list[str]:
    """The HTML pages a ``_toc.yml`` builds, relative to ``_build/html``."""
    return [f"{entry}.html" for entry in toc_entries(yaml.safe_load(Path(toc_file).read_text()))]


def find_browser(chromium: str | None = None, chromedriver: str | None = None) -> tuple[str, str]:
    browser = chromium or next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = chromedriver or shutil.which("chromedriver")
    if not browser or not Path(browser).exists():
        raise BrowserMissing(f"no Chromium found ({', '.join(CHROMIUM_NAMES)} not on PATH): {INSTALL_HINT}")
    if not driver or not Path(driver).exists():
        raise BrowserMissing(f"no chromedriver found on PATH: {INSTALL_HINT}")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _serve(folder: Path):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class WebDriver:
    """The W3C WebDriver calls this check and the page tests need, over plain HTTP."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = ""

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 120):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("value", {})
            raise RuntimeError(f"WebDriver {method} {path}: {detail.get('message', exc)}") from None

    def start(self, browser: str, user_dir: str) -> None:
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={user_dir}", "--window-size=1280,1600",
                # only the local server resolves: anything else fails, visibly
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": browser, "args": args}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]
        self.call("POST", f"/session/{self.session}/timeouts", {"script": 60_000, "pageLoad": 120_000})

    def visit(self, url: str) -> dict:
        self.call("POST", f"/session/{self.session}/url", {"url": url})
        return self.call("POST", f"/session/{self.session}/execute/async", {"script": _PAGE_PROBE, "args": []})

    def screenshot(self, path: Path) -> None:
        png = self.call("GET", f"/session/{self.session}/screenshot")
        path.write_bytes(base64.b64decode(png))

    # what a test that uses a page needs besides visiting it (tests/book/test_tryit.py)
    def open(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def execute(self, script: str, *args):
        """Run ``script`` (a function body; ``arguments`` holds ``args``) in the page; its return value."""
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, timeout: float = 60, poll: float = 0.05):
        """The first truthy value ``script`` returns, asked every ``poll`` s; None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.execute(script)
            if value:
                return value
            time.sleep(poll)
        return None

    def find(self, css: str) -> str:
        """The WebDriver id of the first element matching ``css``."""
        found = self.call("POST", f"/session/{self.session}/element", {"using": "css selector", "value": css})
        return next(iter(found.values()))

    def type(self, element: str, text: str) -> None:
        """Type ``text`` into an element key by key, as a reader does."""
        self.call("POST", f"/session/{self.session}/element/{element}/value", {"text": text})

    def clear(self, element: str) -> None:
        self.call("POST", f"/session/{self.session}/element/{element}/clear", {})

    def click(self, element: str) -> None:
        self.call("POST", f"/session/{self.session}/element/{element}/click", {})

    def quit(self) -> None:
        if self.session:
            with contextlib.suppress(Exception):
                self.call("DELETE", f"/session/{self.session}", timeout=30)


@contextlib.contextmanager
def browser(html_dir: str | Path, *, chromium: str | None = None, chromedriver: str | None = None):
    """Headless Chromium (through ChromeDriver) and a local server of ``html_dir``: yields the
    :class:`WebDriver` and the server's origin (``http://127.0.0.1:PORT/``)."""
    browser_bin, driver = find_browser(chromium, chromedriver)
    port = _free_port()
    proc = subprocess.Popen([driver, f"--port={port}", "--allowed-ips=127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wd = WebDriver(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:   # chromedriver takes a moment to listen
            try:
                if wd.call("GET", "/status", timeout=5).get("ready"):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise BrowserMissing(f"{driver} did not start: {INSTALL_HINT}")
            time.sleep(0.2)
        with tempfile.TemporaryDirectory() as user_dir, _serve(Path(html_dir)) as origin:
            wd.start(browser_bin, user_dir)
            yield wd, origin
    finally:
        wd.quit()
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def check_pages(html_dir: str | Path, pages: list[str], *, chromium: str | None = None,
                chromedriver: str | None = None, screenshots: str | Path | None = None) -> list[PageReport]:
    """Open each page (relative to ``html_dir``) in headless Chromium and report what failed."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        raise FileNotFoundError(f"{html_dir} has no index.html: build the book first (`make html`)")
    reports: list[PageReport] = []
    with browser(html_dir, chromium=chromium, chromedriver=chromedriver) as (wd, origin):
        for page in pages:
            report = PageReport(page, code_limit=code_limit(page))
            reports.append(report)
            if not (html_dir / page).is_file():
                report.error = "page missing from the build"
                continue
            try:
                seen = wd.visit(origin + page)
            except RuntimeError as exc:
                report.error = str(exc)
                continue
            report.title = seen["title"]
            report.images = len(seen["images"])
            report.broken = [img["src"] for img in seen["images"] if not img["ok"]]
            report.equations = seen["typeset"]
            report.code_lines = seen["code"]
            report.wide = [f"{w['tag']} of {w['width']} px in a {w['column']} px column ({w['text']!r})"
                           for w in seen["wide"]]
            if seen["math"] and not seen["typeset"]:
                report.error = f"{seen['math']} equation(s) left as raw TeX: MathJax did not run"
            report.external = external_resources(seen["resources"], origin)
            if seen["demo"] is not None and seen["demo"] != "ready":
                report.error = f"the Try it page's model did not load ({seen['demo']})"
            if screenshots:
                out = Path(screenshots) / (page.replace("/", "__").removesuffix(".html") + ".png")
                out.parent.mkdir(parents=True, exist_ok=True)
                wd.screenshot(out)
    return reports


def external_resources(urls: list[str], origin: str) -> list[str]:
    """The URLs among ``urls`` that would come from another host than ``origin``."""
    return sorted({url for url in urls if not url.startswith((origin, "data:", "about:", "blob:"))})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", nargs="?", default="_build/html", help="the built book (default _build/html)")
    ap.add_argument("--toc", default="_toc.yml", help="pages to open: every entry of this _toc.yml")
    ap.add_argument("--chromium", help="Chromium binary (default: chromium on PATH)")
    ap.add_argument("--chromedriver", help="ChromeDriver binary (default: chromedriver on PATH)")
    ap.add_argument("--screenshots", help="save a PNG of each page into this folder")
    args = ap.parse_args(argv)
    try:
        reports = check_pages(args.html, toc_pages(args.toc), chromium=args.chromium,
                              chromedriver=args.chromedriver, screenshots=args.screenshots)
    except (BrowserMissing, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for report in reports:
        print(report.describe())
    bad = [r for r in reports if not r.ok]
    print(f"{len(reports)} pages, {sum(r.images for r in reports)} images, {len(bad)} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
