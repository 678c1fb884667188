"""onnxruntime-web for the "Try it" page, served from the book's ``_static`` like MathJax.

The page runs the exported text encoder in the reader's browser. Of the npm package it needs three
files: ``ort.wasm.min.mjs`` (the API, CPU/WebAssembly only, as an ES module: Jupyter Book would add a
``.js`` file under ``_static`` to every page), ``ort-wasm-simd-threaded.mjs`` (the WebAssembly module's loader) and ``ort-wasm-simd-threaded.wasm`` (the runtime, 14 MB). The runtime is
stored gzip-compressed (a quarter of its size) and inflated in the page with the browser's own
DecompressionStream, so a static host that does not compress still serves a light page. The
tarball comes once from the npm registry, checked against its published hash
(:mod:`dualpath_book.site.npm`).
"""
from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from . import npm

VERSION = "1.30.0"
LAYOUT = "2"    # bump when the files taken from the package change: a vendored copy is redone
# npm's dist.integrity for onnxruntime-web@1.30.0
INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
FILES = ("dist/ort.wasm.min.mjs", "dist/ort-wasm-simd-threaded.mjs")
RUNTIME = "dist/ort-wasm-simd-threaded.wasm"         # written as <name>.gz


def tarball_cached() -> bool:
    return npm.tarball_cached("onnxruntime-web", VERSION, INTEGRITY)


def vendor(dest: str | Path) -> Path:
    """Put the page's onnxruntime-web files into ``dest`` (idempotent); return ``dest``."""
    dest = Path(dest)
    stamp = f"{VERSION} {LAYOUT}"
    if (dest / ".version").is_file() and (dest / ".version").read_text() == stamp:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".ort-"))
    try:
        with tarfile.open(npm.tarball("onnxruntime-web", VERSION, INTEGRITY)) as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("package/")
                if not member.isfile() or name not in (*FILES, RUNTIME):
                    continue
                with tar.extractfile(member) as src:
                    data = src.read()
                target = tmp / Path(name).name
                if name == RUNTIME:
                    # mtime 0: the same tarball always gives the same bytes
                    target, data = target.with_name(target.name + ".gz"), gzip.compress(data, 9, mtime=0)
                target.write_bytes(data)
        missing = [n for n in (*FILES, RUNTIME) if not any(tmp.glob(Path(n).name + "*"))]
        if missing:
            raise RuntimeError(f"onnxruntime-web {VERSION} lacks {missing}: its layout changed; pick the "
                               f"files anew in {__name__}")
        (tmp / ".version").write_text(stamp)
        tmp.chmod(0o755)   # mkdtemp's 0700 would hide the files from a web server running as another user
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
