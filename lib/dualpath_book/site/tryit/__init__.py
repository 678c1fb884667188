"""The "Try it" page: the book's trained model, run in the reader's browser.

Three parts: :mod:`.data` writes the page's files from the run the book trains (the pipeline calls
it after the notebooks); :func:`stage` puts them, the page's scripts (``tokenizer.mjs`` and
``tryit.mjs`` beside this file) and onnxruntime-web (:mod:`dualpath_book.site.onnxruntime_web`) into
the book's ``_static/tryit/``; the page's markup and style are the ``{raw} html`` block of
``book/try_it.md`` (:func:`page_markup`). Nothing under ``_static/tryit/`` is a ``.js`` or ``.css``
file: Jupyter Book would add those to every page of the book. ``make html`` stages before every build:

    python -m dualpath_book.site.tryit .
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from .. import onnxruntime_web
from ...layout import BOOK_DIR, GENERATED_DIR
from .data import PAGE_FILES, THUMBS_DIR

HERE = Path(__file__).resolve().parent
STATIC_DIR = Path("_static") / "tryit"
SCRIPTS = ("tokenizer.mjs", "tryit.mjs")
ORT_DIR = "ort"
PAGE = BOOK_DIR / "try_it.md"
PAGE_DATA = GENERATED_DIR / "try_it"


def stage(book_root: str | Path, page_data: str | Path | None = PAGE_DATA) -> Path:
    """Fill ``book_root/_static/tryit``: onnxruntime-web, the scripts, and the page data when
    ``page_data`` holds it (without it the page says that its files are missing). Returns the folder."""
    dest = Path(book_root) / STATIC_DIR
    onnxruntime_web.vendor(dest / ORT_DIR)
    expected = {ORT_DIR, THUMBS_DIR, *SCRIPTS, *PAGE_FILES}
    for stale in [p for p in dest.iterdir() if p.name not in expected]:   # an earlier layout's files
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for name in SCRIPTS:
        shutil.copyfile(HERE / name, dest / name)
    page_data = Path(page_data) if page_data is not None else None
    if page_data is not None and all((page_data / name).is_file() for name in PAGE_FILES):
        for name in PAGE_FILES:
            shutil.copyfile(page_data / name, dest / name)
        if (dest / THUMBS_DIR).exists():
            shutil.rmtree(dest / THUMBS_DIR)
        shutil.copytree(page_data / THUMBS_DIR, dest / THUMBS_DIR)
    else:   # no stale model from an earlier build: the page says its files are missing
        for name in PAGE_FILES:
            (dest / name).unlink(missing_ok=True)
        shutil.rmtree(dest / THUMBS_DIR, ignore_errors=True)
    return dest


def page_markup(page: str | Path = PAGE) -> str:
    """The page's HTML: the ``{raw} html`` block of ``book/try_it.md``."""
    found = re.search(r"^```\{raw\} html\n(.*?)^```", Path(page).read_text(), re.S | re.M)
    if not found:
        raise ValueError(f"{page} has no ```{{raw}} html block: the Try it page's markup belongs there")
    return found.group(1)


def standalone_page(site: str | Path, page_data: str | Path, title: str = "Try it") -> Path:
    """A site with the page alone, at ``site/book/try_it.html`` as in the book (for tests and
    benchmarks, which need no Jupyter Book build); returns the page's path."""
    site = Path(site)
    stage(site, page_data)
    page = site / "book" / "try_it.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
                    f"<body>\n{page_markup()}</body></html>\n")
    return page
