"""The repository's layout: the folders the book is built from, named here and nowhere in ``dualpath``.

Installed from a wheel (the Colab install cell) there is no repository: the tables and grids the
pages read come with the package, copied in by ``setup.py`` when the wheel is built.
"""
from __future__ import annotations

from pathlib import Path

from dualpath.paths import IN_CHECKOUT

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOK_DIR = REPO_ROOT / "book"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PACKAGED = Path(__file__).resolve().parent / "resources"   # the wheel's copy of book/tables and grids
GRIDS_DIR = REPO_ROOT / "grids" if IN_CHECKOUT else PACKAGED / "grids"
TABLES_DIR = BOOK_DIR / "tables" if IN_CHECKOUT else PACKAGED / "tables"
GENERATED_DIR = BOOK_DIR / "generated"
