"""A local MathJax for the book, so its equations render with no internet.

Sphinx loads MathJax from a CDN by default; offline, every equation of the method page stays
raw TeX (the headless-Chromium check in :mod:`dualpath_book.site.htmlcheck` caught it). ``vendor`` puts
MathJax 3's single-file TeX build (as ``tex-mml-chtml.mjs``, see ``ENTRY_AS``) and its fonts into the
book's ``_static/mathjax/``, which ``_config.yml`` names as ``mathjax_path``. The package comes once from the npm registry (``npm
pack``, checked against the registry's published hash) into a cache outside the clone, then is
copied into each clone (:mod:`dualpath_book.site.npm`). ``make html`` calls it before every build.

    python -m dualpath_book.site.mathjax .
"""
from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from . import npm

VERSION = "3.2.2"
# npm's dist.integrity for mathjax@3.2.2
INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
ENTRY = "es5/tex-mml-chtml.js"          # TeX + MathML input, CommonHTML output, one file
# ... written as .mjs: Jupyter Book adds every .js file under _static to every page, which loaded
# MathJax (1.2 MB) on pages without math and twice on pages with it. Sphinx adds it, by mathjax_path,
# to the pages with math; the browser runs it as the classic script it is, whatever its extension.
ENTRY_AS = "tex-mml-chtml.mjs"
STAMP = f"{VERSION} {ENTRY_AS}"           # a copy vendored under another name is redone
FONTS = "es5/output/chtml/fonts/woff-v2/"
STATIC_DIR = Path("_static") / "mathjax"


def tarball_cached() -> bool:
    return npm.tarball_cached("mathjax", VERSION, INTEGRITY)


def tarball() -> Path:
    """The cached ``mathjax-VERSION.tgz``, fetched with ``npm pack`` the first time."""
    return npm.tarball("mathjax", VERSION, INTEGRITY)


def vendor(book_root: str | Path) -> Path:
    """Install MathJax into ``book_root/_static/mathjax`` (idempotent); return that folder."""
    dest = Path(book_root) / STATIC_DIR
    if (dest / ".version").is_file() and (dest / ".version").read_text() == STAMP:
        return dest
    tmp = Path(tempfile.mkdtemp(dir=Path(book_root), prefix=".mathjax-"))
    try:
        with tarfile.open(tarball()) as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("package/")
                if not member.isfile() or not (name == ENTRY or name.startswith(FONTS)):
                    continue
                target = tmp / (ENTRY_AS if name == ENTRY else name.removeprefix("es5/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        (tmp / ".version").write_text(STAMP)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


if __name__ == "__main__":
    print(vendor(sys.argv[1] if len(sys.argv) > 1 else "."))
