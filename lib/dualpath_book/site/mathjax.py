"""A local MathJax for the book, so its equations render with no internet.

Sphinx loads MathJax from a CDN by default; offline, every equation of the method page stays
raw TeX (the headless-Chromium check in :mod:`dualpath_book.site.htmlcheck` caught it). ``vendor`` puts
MathJax 3's single-file TeX build and its fonts into the book's ``_static/mathjax/``, which
``_config.yml`` names as ``mathjax_path``. The package comes once from the npm registry (``npm
pack``, checked against the registry's published hash) into a cache outside the clone, then is
copied into each clone. ``make html`` calls it before every build.

    python -m dualpath_book.site.mathjax .
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "3.2.2"
# npm's dist.integrity for mathjax@3.2.2
INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
ENTRY = "es5/tex-mml-chtml.js"          # TeX + MathML input, CommonHTML output, one file
FONTS = "es5/output/chtml/fonts/woff-v2/"
STATIC_DIR = Path("_static") / "mathjax"


def _cache_dir() -> Path:
    root = Path(os.environ.get("DUALPATH_VENV_ROOT", Path.home() / ".cache" / "dualpath"))
    return root / f"mathjax-{VERSION}"


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def tarball_cached() -> bool:
    tgz = _cache_dir() / f"mathjax-{VERSION}.tgz"
    return tgz.is_file() and _integrity(tgz) == INTEGRITY


def tarball() -> Path:
    """The cached ``mathjax-VERSION.tgz``, fetched with ``npm pack`` the first time."""
    cache = _cache_dir()
    tgz = cache / f"mathjax-{VERSION}.tgz"
    if tarball_cached():
        return tgz
    npm = shutil.which("npm")
    if not npm:
        raise RuntimeError(
            f"MathJax {VERSION} is not cached ({tgz}) and npm is not installed to fetch it. Install "
            f"Node.js/npm, or put mathjax-{VERSION}.tgz (from https://registry.npmjs.org/mathjax/-/"
            f"mathjax-{VERSION}.tgz) at that path")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        proc = subprocess.run([npm, "pack", f"mathjax@{VERSION}", "--silent", "--pack-destination", tmp],
                              capture_output=True, text=True, timeout=300)
        got = Path(tmp) / f"mathjax-{VERSION}.tgz"
        if proc.returncode != 0 or not got.is_file():
            raise RuntimeError(f"`npm pack mathjax@{VERSION}` failed: {proc.stderr.strip()[-500:]}")
        if _integrity(got) != INTEGRITY:
            raise RuntimeError(f"mathjax-{VERSION}.tgz from npm does not match its published hash")
        os.replace(got, tgz)   # atomic: a half-written tarball is never cached
    return tgz


def vendor(book_root: str | Path) -> Path:
    """Install MathJax into ``book_root/_static/mathjax`` (idempotent); return that folder."""
    dest = Path(book_root) / STATIC_DIR
    if (dest / ".version").is_file() and (dest / ".version").read_text() == VERSION:
        return dest
    tmp = Path(tempfile.mkdtemp(dir=Path(book_root), prefix=".mathjax-"))
    try:
        with tarfile.open(tarball()) as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("package/")
                if not member.isfile() or not (name == ENTRY or name.startswith(FONTS)):
                    continue
                target = tmp / name.removeprefix("es5/")
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        (tmp / ".version").write_text(VERSION)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


if __name__ == "__main__":
    print(vendor(sys.argv[1] if len(sys.argv) > 1 else "."))
