"""The headless-Chromium check of the built book, and the local MathJax it relies on.

The browser tests need Debian's chromium + chromium-driver (``make test`` installs them when it
can). Without them they skip, except where ``DUALPATH_REQUIRE_BROWSER=1`` (CI): there a missing
browser fails the run instead of hiding the check.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from dualpath_book.site import htmlcheck, mathjax

REPO_ROOT = Path(__file__).resolve().parents[2]


def browser_available() -> bool:
    try:
        htmlcheck.find_browser()
        return True
    except htmlcheck.BrowserMissing:
        return False


needs_browser = pytest.mark.skipif(
    not browser_available() and os.environ.get("DUALPATH_REQUIRE_BROWSER") != "1",
    reason="headless Chromium not installed (apt-get install chromium chromium-driver)")


def test_toc_pages_follow_the_toc():
    pages = htmlcheck.toc_pages(REPO_ROOT / "_toc.yml")
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    assert pages[0] == f"{toc['root']}.html"
    assert "book/generated/06_ablations.html" in pages and "book/ablations/weights.html" in pages
    assert len(pages) == len(set(pages)) == (REPO_ROOT / "_toc.yml").read_text().count("file:") + 1


def test_missing_browser_is_a_clear_error(tmp_path):
    with pytest.raises(htmlcheck.BrowserMissing, match="apt-get install chromium"):
        htmlcheck.find_browser(chromium=str(tmp_path / "no-chromium"), chromedriver=str(tmp_path / "x"))
    assert htmlcheck.main([str(tmp_path)]) == 2     # no index.html: says to build first


@needs_browser
def test_browser_finds_broken_external_and_raw_math(tmp_path):
    site = tmp_path / "html"
    (site / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 6), "red").save(site / "good.png")
    (site / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (site / "index.html").write_text('<html><title>ok</title><img src="good.png"></html>')
    (site / "sub" / "bad.html").write_text(
        '<html><img src="../good.png"><img src="../corrupt.png"><img src="../absent.png">'
        '<script src="https://cdn.example.org/lib.js"></script></html>')
    (site / "sub" / "tex.html").write_text('<html><span class="math">\\(x^2\\)</span></html>')
    pages = ["index.html", "sub/bad.html", "sub/tex.html", "sub/not-built.html"]
    ok, bad, tex, missing = htmlcheck.check_pages(site, pages, screenshots=tmp_path / "shots")
    assert ok.ok and ok.images == 1 and ok.title == "ok", ok.describe()
    assert not bad.ok and bad.images == 3
    assert sorted(Path(src).name for src in bad.broken) == ["absent.png", "corrupt.png"]
    assert bad.external == ["https://cdn.example.org/lib.js"]
    assert "raw TeX" in tex.error
    assert missing.error == "page missing from the build"
    with Image.open(tmp_path / "shots" / "index.png") as shot:
        assert shot.size[0] > 100


@needs_browser
def test_browser_finds_what_overflows_the_column_and_counts_the_code_a_reader_sees(tmp_path):
    site = tmp_path / "html"
    page = site / "book" / "generated" / "01_data.html"
    page.parent.mkdir(parents=True)
    (site / "index.html").write_text("<html></html>")
    cells = "".join(f'<div class="cell_input"><pre>line {k}\nline {k}b</pre></div>' for k in range(3))
    hidden = '<details><summary>show</summary><div class="cell_input"><pre>1\n2\n3</pre></div></details>'
    wide_table = "<table><tr>" + "".join(f"<td>column{k}</td>" for k in range(80)) + "</tr></table>"
    wide_code = '<pre style="overflow-x: auto">' + "x" * 500 + "</pre>"
    narrow = '<table><tr><td>a</td><td>b</td></tr></table><pre>short</pre>'
    (site / "fits.html").write_text(f'<html><article style="width: 600px">{cells}{hidden}{narrow}</article></html>')
    (site / "wide.html").write_text(f'<html><article style="width: 600px">{wide_table}{wide_code}</article></html>')
    page.write_text(f'<html><article style="width: 600px">{cells * 25}</article></html>')
    fits, wide, busy = htmlcheck.check_pages(site, ["fits.html", "wide.html", "book/generated/01_data.html"])
    assert fits.ok and fits.code_lines == 6, fits.describe()       # the collapsed cell is not counted
    assert not wide.ok and [w.split(" of ")[0] for w in wide.wide] == ["table", "pre"], wide.describe()
    assert "wider than the text column: table of" in wide.describe()
    assert busy.code_lines == 150 and busy.code_limit == htmlcheck.CODE_LINE_LIMIT and not busy.ok
    assert "more than the" in busy.describe()


@pytest.fixture(scope="module")
def mathjax_static(tmp_path_factory):
    if not shutil.which("npm") and not mathjax.tarball_cached():
        pytest.skip("npm not installed and MathJax not cached")
    return mathjax.vendor(tmp_path_factory.mktemp("book"))


def test_mathjax_vendored_with_fonts(mathjax_static):
    entry = mathjax_static / "tex-mml-chtml.mjs"
    assert entry.stat().st_size > 500_000
    assert len(list((mathjax_static / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))) >= 20
    stamp = entry.stat().st_mtime_ns
    assert mathjax.vendor(mathjax_static.parents[1]) == mathjax_static     # idempotent, no rewrite
    assert entry.stat().st_mtime_ns == stamp
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
    assert config["sphinx"]["config"]["mathjax_path"] == "mathjax/tex-mml-chtml.mjs"
    # no .js or .css under _static: Jupyter Book would add it to every page of the book
    assert not list(mathjax_static.rglob("*.js")) and not list(mathjax_static.rglob("*.css"))


@needs_browser
def test_vendored_mathjax_typesets_offline(mathjax_static, tmp_path):
    site = tmp_path / "html"
    shutil.copytree(mathjax_static, site / "_static" / "mathjax")
    (site / "index.html").write_text(
        '<html><head><script defer src="_static/mathjax/tex-mml-chtml.mjs"></script></head>'
        '<body><span class="math">\\(\\sum_i x_i^2\\)</span><div class="math">\\[e^{i\\pi}\\]</div>'
        '</body></html>')
    (report,) = htmlcheck.check_pages(site, ["index.html"])
    assert report.ok and report.equations == 2, report.describe()
