"""Write what is generated into files people edit: the notebooks' ``parameters`` cells and the
README's results.

The six notebooks share one set of parameters; typing them six times would let them drift. This
module renders :data:`page.NOTEBOOK_PARAMETERS` as a papermill ``parameters`` cell (name,
annotation, default and help comment on one line each) and writes it into every
``notebooks/NN_*.ipynb``. The README quotes our runs only between two markers, from the
committed tables (``book/tables/book_runs.csv``, ``central.csv``, ``baselines.csv``)::

    python -m dualpath_book.sync            # rewrite what differs
    python -m dualpath_book.sync --check    # exit 1 naming the files that differ (the tests do this)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import nbformat

from dualpath.io import atomic_path

from .layout import NOTEBOOKS_DIR
from .page import NOTEBOOK_PARAMETERS
from .readme import README, readme_out_of_date, write_readme

_COMMENT_COLUMN = 39   # where the help comments start, so the cell reads as a table


def book_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The notebooks that take the shared parameters: ``NN_*.ipynb`` (the sweep's own are apart)."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def parameters_source() -> str:
    """The source of the ``parameters`` cell."""
    lines = []
    for name, p in NOTEBOOK_PARAMETERS.items():
        kind = p.kind if p.kind.isidentifier() else json.dumps(p.kind)
        default = json.dumps(p.default) if isinstance(p.default, str) else repr(p.default)
        code = f"{name}: {kind} = {default}"
        lines.append(f"{code.ljust(_COMMENT_COLUMN - 1)} # {p.help}")
    return "\n".join(lines)


def _parameters_cell(nb) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected one cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def out_of_sync(paths: Sequence[Path] | None = None) -> list[Path]:
    """The notebooks whose ``parameters`` cell is not :func:`parameters_source`."""
    want = parameters_source()
    return [p for p in (book_notebooks() if paths is None else paths)
            if _parameters_cell(nbformat.read(p, as_version=4)).source != want]


def sync(paths: Sequence[Path] | None = None) -> list[Path]:
    """Rewrite the ``parameters`` cell of each notebook that differs; return those written."""
    written = []
    for path in out_of_sync(paths):
        nb = nbformat.read(path, as_version=4)
        _parameters_cell(nb).source = parameters_source()
        with atomic_path(path) as tmp:
            nbformat.write(nb, str(tmp))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath_book.sync", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only list the notebooks that differ; exit 1 if any")
    args = ap.parse_args(argv)
    if args.check:
        stale = out_of_sync()
        for path in stale:
            print(f"{path.name}: parameters cell differs from page.NOTEBOOK_PARAMETERS; "
                  f"run python -m dualpath_book.sync", file=sys.stderr)
        readme_stale = readme_out_of_date()
        if readme_stale:
            print(f"{README.name}: results differ from book/tables; run python -m dualpath_book.sync",
                  file=sys.stderr)
        return 1 if stale or readme_stale else 0
    for path in sync():
        print(f"wrote the parameters cell of {path.name}")
    if write_readme():
        print(f"wrote the results of {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
