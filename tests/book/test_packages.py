"""The two packages: ``dualpath`` (the method) never depends on ``dualpath_book`` (the book machinery)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import dualpath
import dualpath_book

METHOD = Path(dualpath.__file__).resolve().parent
BOOK = Path(dualpath_book.__file__).resolve().parent
BOOK_ONLY = {"dualpath_book", "papermill", "yaml", "matplotlib", "seaborn", "nbformat", "myst_nb",
             "jupyter_book", "IPython", "dask", "distributed"}
REPO_FOLDERS = ("book/", "notebooks/", "grids/")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_method_imports_nothing_of_the_book():
    for path in sorted(METHOD.rglob("*.py")):
        bad = _imports(path) & BOOK_ONLY
        assert not bad, f"{path.relative_to(METHOD.parent)} imports {sorted(bad)}"
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                   and isinstance(n.value, str) and id(n) not in docstrings]   # prose may cite the book
        named = [s for s in strings for f in REPO_FOLDERS if f in s]
        assert not named, f"{path.relative_to(METHOD.parent)} names the repository layout: {named}"


def test_the_methods_tests_import_nothing_of_the_book():
    """``make test-method`` runs tests/method without the book's set-up: its tests must not need it."""
    tests = Path(__file__).resolve().parents[1]
    for path in sorted((tests / "method").rglob("*.py")) + sorted(tests.glob("*.py")):
        bad = _imports(path) & BOOK_ONLY
        assert not bad, f"{path.relative_to(tests.parent)} imports {sorted(bad)}"


def _import_every_module(package: str, prelude: str) -> None:
    """In a fresh interpreter: run ``prelude``, then import every module of ``package``."""
    code = (prelude + "import importlib, pkgutil\n"
            f"import {package}\n"
            f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_method_imports_and_trains_without_the_book_packages():
    # every book-only package made unimportable: importing the whole method still works
    _import_every_module("dualpath", f"import sys\nfor name in {sorted(BOOK_ONLY)!r}: sys.modules[name] = None\n")


def test_the_book_machinery_lives_in_dualpath_book():
    # the modules that know about notebooks, sweeps, figures and the site are not in the method package
    for name in ("pipeline", "page", "sweep/__init__", "literature", "analysis", "data_tables", "prose", "ablation",
                 "ablation_report/__init__", "site/htmlcheck", "site/mathjax", "layout", "figures/architecture", "figures/curves"):
        assert (BOOK / f"{name}.py").is_file()
        assert not (METHOD / f"{name}.py").exists()


def test_the_page_cache_key_follows_what_pages_depend_on(tmp_path, monkeypatch):
    import shutil

    from dualpath_book import pipeline

    method, book = tmp_path / "dualpath", tmp_path / "dualpath_book"
    shutil.copytree(METHOD, method, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(BOOK, book, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pipeline, "METHOD_DIR", method)
    monkeypatch.setattr(pipeline, "PACKAGE_DIR", book)
    before = pipeline.sources_digest()
    for name in ("site/htmlcheck.py", "site/mathjax.py", "sweep/execution.py", "pipeline.py", "notebook_run.py", "sync.py",
                 "readme.py", "assets.py"):   # never run in a kernel
        (book / name).write_text((book / name).read_text() + "\n# edited\n")
    assert pipeline.sources_digest() == before
    for name in ("figures/curves.py", "literature.py", "prose.py", "data_tables.py", "book_runs.py"):   # each changes what a page shows
        (book / name).write_text((book / name).read_text() + "\n# edited\n")
        assert pipeline.sources_digest() != before
        before = pipeline.sources_digest()
    (method / "losses.py").write_text((method / "losses.py").read_text() + "\n# edited\n")
    assert pipeline.sources_digest() != before
    before = pipeline.sources_digest()
    tables = tmp_path / "tables"
    shutil.copytree(pipeline.TABLES_DIR, tables)
    monkeypatch.setattr(pipeline, "TABLES_DIR", tables)
    before = pipeline.sources_digest()
    for name in pipeline.PROSE_TABLES:    # read by prose pages and the README only
        (tables / name).write_text((tables / name).read_text() + "\n")
    assert pipeline.sources_digest() == before
    (tables / "published_flickr8k.csv").write_text((tables / "published_flickr8k.csv").read_text() + "\n")
    assert pipeline.sources_digest() != before


def test_no_kernel_side_module_reads_a_table_left_out_of_the_page_key():
    """A prose-only table is out of the page cache key, so a page whose code read it would go stale."""
    from dualpath_book import pipeline

    kernel = {p: p.read_text() for name in pipeline.KERNEL_MODULES
              for p in ((BOOK / name).rglob("*.py") if (BOOK / name).is_dir() else [BOOK / name])}
    for notebook in pipeline.NOTEBOOKS_DIR.glob("*.ipynb"):
        cells = json.loads(notebook.read_text())["cells"]
        kernel[notebook] = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    for path, text in kernel.items():
        for table in pipeline.PROSE_TABLES:   # by file name or by stem (load_reference_table("baselines"))
            assert Path(table).stem not in text, f"{path.name} reads {table}, which the page key leaves out"


def test_importing_the_book_machinery_reads_no_repository_file():
    # the grids, tables and notebooks are read when first asked for (e.g. ablation_report.chapter()),
    # never at import: a module that parsed them there would fail here
    _import_every_module("dualpath_book", (
        "import builtins, io\n"
        "from dualpath_book.layout import REPO_ROOT\n"
        "watched = tuple(str(REPO_ROOT / name) for name in ('grids', 'book', 'notebooks'))\n"
        "real_open = io.open\n"
        "def guarded(file, *args, **kwargs):\n"
        "    if str(file).startswith(watched):\n"
        "        raise AssertionError(f'read at import: {file}')\n"
        "    return real_open(file, *args, **kwargs)\n"
        "builtins.open = io.open = guarded\n"))
