"""Write what is generated into files people edit: the notebooks' install and ``parameters`` cells
and the README's results.

The six notebooks share one set of parameters; typing them six times would let them drift. This
module renders :data:`page.NOTEBOOK_PARAMETERS` as a papermill ``parameters`` cell (name,
annotation, default and help comment on one line each) and writes it into every
``notebooks/NN_*.ipynb``, and the sweep arm's parameters (:data:`ablation.ARM_PARAMETERS`, which
the sweep's grids set) into ``notebooks/sweeps/train_arm.ipynb``; into each of them too the install
cell (:data:`INSTALL_SOURCE`, tagged ``install``) that makes it run on Colab. The README quotes our runs only between two markers, from the
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

from .ablation import ARM_PARAMETERS
from .layout import NOTEBOOKS_DIR
from .page import NOTEBOOK_PARAMETERS, Parameter
from .readme import README, readme_out_of_date, write_readme

_COMMENT_COLUMN = 39   # where the help comments start, so the cell reads as a table

#: Every notebook's first code cell. On Colab (or any Python without the package) it installs the
#: package and its book extra from PACKAGE, a git URL or a wheel (a path or a URL), while keeping
#: the machine's torch and torchvision (Colab's are built for its CUDA: a constraint file pins
#: them, so pip fails rather than replace them). In this repository it does nothing.
INSTALL_SOURCE = """\
PACKAGE = "git+https://github.com/dualpath-book/dualpath-book"   # or a wheel: "dualpath-0.1.0-py3-none-any.whl"
# Colab, or any Python without this package: install it with its book extra; here it does nothing.
import importlib, importlib.metadata, pathlib, subprocess, sys, tempfile
try:
    import dualpath_book
    print("dualpath is installed: nothing to do")
except ImportError:
    source = PACKAGE if "://" in PACKAGE else pathlib.Path(PACKAGE).resolve().as_uri()
    kept = []
    for name in ("torch", "torchvision"):
        try:
            kept.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    pins = pathlib.Path(tempfile.mkdtemp()) / "keep.txt"
    pins.write_text("\\n".join(kept) + "\\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", str(pins), f"dualpath[book] @ {source}"],
                   check=True)
    importlib.invalidate_caches()
    import dualpath_book
    print(f"installed dualpath[book] from {PACKAGE}; kept {', '.join(kept) or 'no torch: pip chose one'}")"""


ARM_NOTEBOOK = NOTEBOOKS_DIR / "sweeps" / "train_arm.ipynb"   # the sweep's notebook: one arm


def book_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The notebooks that take the shared parameters: ``NN_*.ipynb`` (the sweep's own are apart)."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def parameters_of(notebook: Path) -> dict[str, Parameter]:
    """The parameters a notebook's ``parameters`` cell defines: an arm's in the sweep's notebook,
    the pages' in the others."""
    return ARM_PARAMETERS if notebook.name == ARM_NOTEBOOK.name else NOTEBOOK_PARAMETERS


def parameters_source(parameters: dict[str, Parameter] = NOTEBOOK_PARAMETERS) -> str:
    """The source of a ``parameters`` cell defining ``parameters``."""
    lines = []
    for name, p in parameters.items():
        kind = p.kind if p.kind.isidentifier() else json.dumps(p.kind)
        default = json.dumps(p.default) if isinstance(p.default, str) else repr(p.default)
        code = f"{name}: {kind} = {default}"
        lines.append(f"{code.ljust(_COMMENT_COLUMN - 1)} # {p.help}")
    return "\n".join(lines)


def _tagged_cell(nb, tag: str) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected one cell tagged {tag!r}, found {len(cells)}")
    return cells[0]


def _generated(notebook: Path) -> dict[str, str]:
    """Tag -> the source of the cell so tagged in ``notebook``."""
    return {"install": INSTALL_SOURCE, "parameters": parameters_source(parameters_of(notebook))}


def out_of_sync(paths: Sequence[Path] | None = None) -> list[Path]:
    """The notebooks whose install or ``parameters`` cell is not the generated one."""
    return [p for p in ([*book_notebooks(), ARM_NOTEBOOK] if paths is None else paths)
            if any(_tagged_cell(nbformat.read(p, as_version=4), tag).source != source
                   for tag, source in _generated(p).items())]


def sync(paths: Sequence[Path] | None = None) -> list[Path]:
    """Rewrite the generated cells of each notebook that differs; return those written."""
    written = []
    for path in out_of_sync(paths):
        nb = nbformat.read(path, as_version=4)
        for tag, source in _generated(path).items():
            _tagged_cell(nb, tag).source = source
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
            print(f"{path.name}: install or parameters cell differs from the generated one; "
                  f"run python -m dualpath_book.sync", file=sys.stderr)
        readme_stale = readme_out_of_date()
        if readme_stale:
            print(f"{README.name}: results differ from book/tables; run python -m dualpath_book.sync",
                  file=sys.stderr)
        return 1 if stale or readme_stale else 0
    for path in sync():
        print(f"wrote the install and parameters cells of {path.name}")
    if write_readme():
        print(f"wrote the results of {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
