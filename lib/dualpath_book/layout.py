"""The repository's layout: the folders the book is built from, named here and nowhere in ``dualpath``."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOK_DIR = REPO_ROOT / "book"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
GRIDS_DIR = REPO_ROOT / "grids"
TABLES_DIR = BOOK_DIR / "tables"
GENERATED_DIR = BOOK_DIR / "generated"
