"""Sphinx extension: a page that glues from another page's notebook (``{glue:text}`../generated/06_ablations.ipynb::key:.1f```)
is rebuilt when that notebook changes.

Sphinx rebuilds a page only when its own source changes. The ablation pages glue every number from
``book/generated/06_ablations.ipynb``, so without this a ``make book`` after new results re-executed
the notebook but kept serving the old numbers on those pages. The notebook is noted as a dependency
of each page that names it, and Sphinx then compares its modification time on the next build.
"""
from __future__ import annotations

import re
from pathlib import Path

# {glue:text}`<notebook>::<key>[:<format>]`: group 1 the notebook, group 2 the key and its format
CROSS_PAGE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`]*?)::([^`]*)`")


def notebooks_glued(source: str, page: Path) -> list[Path]:
    """The notebooks a page's cross-page glue roles read, resolved against the page's folder."""
    return sorted({(page.parent / ref).resolve() for ref, _ in CROSS_PAGE_ROLE.findall(source)})


def _note(app, docname: str, source: list[str]) -> None:
    page = Path(app.env.doc2path(docname))
    for notebook in notebooks_glued(source[0], page):
        app.env.note_dependency(str(notebook))   # of the page being read


def setup(app):
    app.connect("source-read", _note)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
