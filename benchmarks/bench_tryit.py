"""The "Try it" page's weight and how soon a result follows typing, in headless Chromium.

Serves the page (the built book's ``_build/html/book/try_it.html`` with ``--html``, else the page
alone, staged from ``PAGE_DATA`` as the book stages it), opens it in a fresh browser profile (nothing
cached) and, once the model is loaded, types each query key by key as a reader does. It reports:

* weight: every file the page loaded (the browser's resource timing: encoded body bytes), after the
  queries and a click on an image, by file and in total, beside the thumbnails the page could show
  at most (all of them);
* load: from navigation to the model being ready;
* first result: from the first keystroke of a query to the first results drawn, and from its last
  keystroke to its final results (the page's ``data-ms``), the median over the repeats.

    python benchmarks/bench_tryit.py book/generated/try_it
    python benchmarks/bench_tryit.py book/generated/try_it --html _build/html --repeats 5 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dualpath_book.site import htmlcheck, tryit

QUERIES = ("a dog runs through the snow", "two children play on the beach", "a man rides a bike down a hill")

_PROBE = """
const box = document.querySelector('.tryit-query'), list = document.querySelector('.tryit-results');
window.__bench = {first: null, shown: null};
box.addEventListener('input', e => { if (window.__bench.first === null) window.__bench.first = e.timeStamp; },
                     {capture: true});
new MutationObserver(() => {
  if (window.__bench.shown === null && list.querySelector('.tryit-hit')) window.__bench.shown = performance.now();
}).observe(list, {childList: true});
"""


def wait(wd, script: str, timeout: float = 120):
    value = wd.wait_for(script, timeout, poll=0.02)   # a fine poll: the latency is what is measured
    if not value:
        raise RuntimeError(f"timed out waiting for: {script}")
    return value


def measure(site: Path, page: str, queries, repeats: int, screenshot: Path | None = None) -> dict:
    with htmlcheck.browser(site) as (wd, origin):
        wd.open(origin + page)
        wait(wd, "const r = document.querySelector('.dualpath-try-it');"
                 "if (r && r.dataset.state === 'error') throw new Error(r.dataset.error);"
                 "return r && r.dataset.state === 'ready'")
        ready_ms = wd.execute("return performance.now()")
        box = wd.find(".tryit-query")
        first, last = [], []
        for _ in range(repeats):
            for query in queries:
                wd.clear(box)   # WebDriver's clear sends no input event: the page is told here
                wd.execute("document.querySelector('.tryit-query').dispatchEvent(new Event('input'))")
                wait(wd, "return document.querySelector('.tryit-results').dataset.query === ''")
                wd.execute(_PROBE)
                wd.type(box, query)
                ms = wait(wd, "const l = document.querySelector('.tryit-results');"
                              f"return l.dataset.query === {json.dumps(query)} && l.dataset.ms")
                probe = wd.execute("return window.__bench")
                first.append(probe["shown"] - probe["first"])
                last.append(float(ms))
        wd.click(wd.find(".tryit-hit .tryit-image"))
        wait(wd, "return !document.querySelector('.tryit-panel').hidden")
        time.sleep(0.5)   # the panel's thumbnail
        if screenshot:
            wd.screenshot(screenshot)
        entries = wd.execute("""
            const nav = performance.getEntriesByType('navigation')[0];
            return [nav].concat(performance.getEntriesByType('resource')).map(
                e => ({name: e.name, bytes: e.encodedBodySize, decoded: e.decodedBodySize}));""")
    files = {e["name"].removeprefix(origin): e["bytes"] for e in entries}
    return {"ready_ms": ready_ms, "first_result_ms": first, "final_result_ms": last, "files": files,
            "external": htmlcheck.external_resources([e["name"] for e in entries], origin)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page_data", help="the page's files (book/generated/try_it, from the book's pipeline)")
    ap.add_argument("--html", help="a built book (_build/html) whose book/try_it.html to measure instead of "
                                   "the page alone")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the measurements here")
    ap.add_argument("--screenshot", help="a PNG of the page after the last query and a click on its first image")
    args = ap.parse_args(argv)
    page_data = Path(args.page_data)
    with tempfile.TemporaryDirectory() as tmp:
        if args.html:
            site = Path(args.html)
        else:
            site = Path(tmp)
            tryit.standalone_page(site, page_data)
        result = measure(site, "book/try_it.html", QUERIES, args.repeats,
                         Path(args.screenshot) if args.screenshot else None)
        thumbs = sorted((site / tryit.STATIC_DIR / "thumbs").glob("*.jpg"))
        result["all_thumbnails_bytes"] = sum(p.stat().st_size for p in thumbs)
        result["n_thumbnails"] = len(thumbs)
    files = result["files"]
    print(f"{'bytes':>12}  file")
    for name, size in sorted(files.items(), key=lambda kv: -kv[1]):
        if "/thumbs/" not in name:
            print(f"{size:>12,}  {name}")
    shown = {n: s for n, s in files.items() if "/thumbs/" in n}
    print(f"{sum(shown.values()):>12,}  {len(shown)} thumbnails shown")
    total = sum(files.values())
    worst = total - sum(shown.values()) + result["all_thumbnails_bytes"]
    print(f"page weight: {total / 1e6:.2f} MB loaded ({len(files)} files); {worst / 1e6:.2f} MB if all "
          f"{result['n_thumbnails']} thumbnails were shown")
    print(f"model ready {result['ready_ms'] / 1000:.2f} s after navigation")
    print(f"first result after the first keystroke: median {statistics.median(result['first_result_ms']):.0f} ms, "
          f"max {max(result['first_result_ms']):.0f} ms over {len(result['first_result_ms'])} typed queries")
    print(f"final result after the last keystroke: median {statistics.median(result['final_result_ms']):.0f} ms, "
          f"max {max(result['final_result_ms']):.0f} ms")
    if result["external"]:
        print(f"FETCHED FROM ANOTHER HOST: {result['external']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if result["external"] else 0


if __name__ == "__main__":
    sys.exit(main())
