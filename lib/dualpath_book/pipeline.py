"""Execute the book's notebooks in order with papermill, skipping those whose inputs did not change.

    python -m dualpath_book.pipeline                      # notebooks/NN_*.ipynb -> book/generated/NN_*.ipynb
    python -m dualpath_book.pipeline --smoke              # the mini splits: every notebook in seconds
    python -m dualpath_book.pipeline -p seed 1 -p preset cpu --runs /scratch/runs
    python -m dualpath_book.pipeline --only 04_evaluation --force

Steps: write the figures and tables the prose pages include (``assets.write_book_assets``), then
execute each notebook into ``<out>/<name>.ipynb`` (written atomically, so a failed or interrupted
run never replaces a good executed copy), then export the run the notebooks trained for the "Try it"
page (``<out>/try_it``, :mod:`dualpath_book.site.tryit.data`; kept while the run is unchanged). A failed notebook stops the pipeline with a non-zero
exit and a message naming it; its partly executed copy is kept as ``<out>/<name>.failed.ipynb``.

Cache. A notebook is skipped when its key equals the one stored beside its output
(``<out>/<name>.key.json``). The key hashes the notebook file, its parameters (and the Config and
run directory they resolve to), the method package ``lib/dualpath/**/*.py`` and the kernel-side modules of this one
(:data:`KERNEL_MODULES`), the reference tables
``book/tables/*.csv`` and the run's ``metrics.json`` and ``config.json`` as they are now. After a
successful pipeline every notebook is stamped with the run state it left behind, so a second
``make book`` with nothing changed executes nothing.

The notebooks share one set of parameters (``page.NOTEBOOK_PARAMETERS``); ``page.notebook_config``
turns them into a Config and a run directory, inside the notebooks and here alike.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import dualpath
from dualpath.errors import ConfigError, DualPathError
from dualpath.io import atomic_path, write_json_atomic

from .layout import GENERATED_DIR, GRIDS_DIR, NOTEBOOKS_DIR, TABLES_DIR
from .notebook_run import notebook_parameters, run_notebook
from .page import notebook_config, parameter_defaults

PACKAGE_DIR = Path(__file__).resolve().parent
METHOD_DIR = Path(dualpath.__file__).resolve().parent
DEFAULT_OUT = GENERATED_DIR
KEY_SUFFIX = ".key.json"
FAILED_SUFFIX = ".failed.ipynb"

Log = Callable[[str], None]


def parse_value(text: str) -> Any:
    """A ``-p key value`` value: a Python literal (1, 0.5, None, True, 'x') or, failing that, text."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# --------------------------------------------------------------------------- notebooks and keys
def notebooks(folder: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """The book's notebooks in reading order: ``NN_*.ipynb`` sorted by name."""
    found = sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb") if p.is_file())
    if not found:
        raise DualPathError(f"no notebooks NN_*.ipynb in {folder}")
    return found


def _digest_files(paths: Sequence[Path], root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


#: The modules of this package that run inside a notebook's kernel, so a page's output can depend
#: on them; the pipeline's own runner, the sweep and the site checks cannot change a page.
KERNEL_MODULES = ("__init__.py", "layout.py", "page.py", "analysis.py", "data_tables.py", "prose.py", "literature.py",
                  "figures", "ablation_report", "ablation.py", "book_runs.py")


#: Committed tables that only prose pages and the README include (csv-table, sync), never a kernel:
#: a new row of them re-executes no notebook. (``book_runs.csv`` and ``baselines.csv`` are not: the
#: ablation chapter's reference check reads the chapter recipe's whole run, the results page VSE++.)
PROSE_TABLES = ("probes.csv",)


def sources_digest() -> str:
    """Hash of what a page's output can depend on: the method package (``lib/dualpath/**/*.py``),
    the kernel-side modules of this package (:data:`KERNEL_MODULES`), the committed tables and the
    grid files (the ablation chapter's families live there)."""
    method = METHOD_DIR
    code = _digest_files([p for p in method.rglob("*.py") if "__pycache__" not in p.parts], method.parent)
    kernel = [p for name in KERNEL_MODULES for p in
              (sorted((PACKAGE_DIR / name).rglob("*.py")) if (PACKAGE_DIR / name).is_dir() else [PACKAGE_DIR / name])
              if "__pycache__" not in p.parts]
    book = _digest_files(kernel, PACKAGE_DIR.parent)
    tables = _digest_files([p for pattern in ("*.csv", "*.npz") for p in TABLES_DIR.glob(pattern)
                            if p.name not in PROSE_TABLES], TABLES_DIR) if TABLES_DIR.is_dir() else ""
    grids = _digest_files(list(GRIDS_DIR.glob("*.yaml")), GRIDS_DIR) if GRIDS_DIR.is_dir() else ""   # the chapter's families
    return hashlib.sha256(f"{code}:{book}:{tables}:{grids}".encode()).hexdigest()


def run_state(run_dir: Path) -> dict[str, str | None]:
    """The contents of the run's metrics.json and config.json (None where absent)."""
    out: dict[str, str | None] = {}
    for name in ("metrics.json", "config.json"):
        path = Path(run_dir) / name
        out[name] = path.read_text() if path.is_file() else None
    return out


#: What a notebook's output depends on, declared in its metadata as ``dualpath.depends_on``:
#:   ``run``    (default) every parameter, the config, the run directory and the run's current state;
#:   ``data``   only the parameters that choose the data and its presentation (:data:`DATA_PARAMETERS`),
#:              so a changed training parameter (epochs, device, run_dir) does not rerun it;
#:   ``tables`` no parameter at all: the committed tables (``book/tables/*.csv``, ``*.npz``) and the package.
#: The package sources and the notebook itself are part of every key.
DEPENDS_ON = ("run", "data", "tables")
DATA_PARAMETERS = ("dataset", "data_root", "backbone", "preset", "smoke", "seed", "overrides")


def depends_on(notebook: Path) -> str:
    """The notebook's declared dependency kind (see :data:`DEPENDS_ON`)."""
    meta = json.loads(Path(notebook).read_text()).get("metadata", {}).get("dualpath", {})
    kind = meta.get("depends_on", "run")
    if kind not in DEPENDS_ON:
        raise ConfigError(f"{Path(notebook).name}: metadata dualpath.depends_on = {kind!r}; "
                          f"expected one of {DEPENDS_ON}")
    return kind


def cache_key(notebook: Path, params: dict, sources: str | None = None) -> dict[str, str]:
    """The parts of a notebook's cache key and their combined hash (``key``)."""
    kind = depends_on(notebook)
    parts = {
        "notebook": hashlib.sha256(Path(notebook).read_bytes()).hexdigest(),
        "depends_on": kind,
        "sources": sources or sources_digest(),
    }
    if kind == "run":
        cfg, run_dir = notebook_config(**params)
        parts.update({
            "parameters": json.dumps(params, sort_keys=True, default=str),
            "config": cfg.digest(),
            "run_dir": str(run_dir),
            "run_state": hashlib.sha256(json.dumps(run_state(run_dir), sort_keys=True).encode()).hexdigest(),
        })
    elif kind == "data":
        notebook_config(**params)   # the same validation as the others
        chosen = {k: v for k, v in (parameter_defaults() | params).items()
                  if k in DATA_PARAMETERS}
        parts["parameters"] = json.dumps(chosen, sort_keys=True, default=str)
    parts["key"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return parts


def _stored_key(out: Path, name: str) -> str | None:
    path = out / f"{name}{KEY_SUFFIX}"
    try:
        return json.loads(path.read_text()).get("key")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None


def _stamp(out: Path, name: str, key: dict, wall_s: float | None) -> None:
    record = {**key, "stamped_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if wall_s is not None:
        record["wall_s"] = round(wall_s, 1)
    write_json_atomic(out / f"{name}{KEY_SUFFIX}", record)


# --------------------------------------------------------------------------- execution
class NotebookFailed(DualPathError):
    """A notebook raised while papermill executed it."""


@dataclass
class Outcome:
    name: str
    status: str          # 'executed' | 'skipped'
    wall_s: float
    output: Path


def check_parameters(notebook: Path, params: dict) -> None:
    """Fail before any kernel starts if a parameter is not in the notebook's parameters cell."""
    known = set(notebook_parameters(notebook))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"{notebook.name} has no parameter(s) {unknown}; its parameters are "
                          f"{sorted(known)}")


def _prepare_environment(runs: Path | None) -> None:
    """What the kernels inherit: this package on the path, no progress bars, the runs root."""
    lib = str(PACKAGE_DIR.parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if lib not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([lib, *paths])
    os.environ["DUALPATH_PROGRESS"] = "0"
    # tqdm.auto warns in a kernel without ipywidgets, even with every bar disabled
    quiet = "ignore:IProgress not found"
    if quiet not in os.environ.get("PYTHONWARNINGS", ""):
        os.environ["PYTHONWARNINGS"] = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), quiet) if w)
    if runs is not None:
        os.environ["DUALPATH_RUNS"] = str(Path(runs).expanduser().resolve())


class _DropExtensionWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:   # the atomic temp file ends in .tmp
        return "does not end in" not in record.getMessage()


_EXTENSION_FILTER = _DropExtensionWarning()


def execute(notebook: Path, output: Path, params: dict, *, log_output: bool = True) -> None:
    """Run one notebook with papermill on this interpreter; the output is replaced atomically.

    On failure the partly executed copy is kept as ``<output stem>.failed.ipynb`` and
    :class:`NotebookFailed` names the notebook and the error.
    """
    from papermill.exceptions import PapermillExecutionError

    failed = output.with_name(output.stem + FAILED_SUFFIX)
    logging.getLogger("papermill").addFilter(_EXTENSION_FILTER)   # a no-op when already there
    warnings.filterwarnings("ignore", message=r"The specified file .* does not end in")
    try:
        with atomic_path(output) as tmp:
            try:
                run_notebook(notebook, tmp, params, log_output=log_output)
                _record_output_path(tmp, output)
            except BaseException:
                if tmp.is_file() and tmp.stat().st_size:
                    shutil.copyfile(tmp, failed)
                raise
    except PapermillExecutionError as e:
        raise NotebookFailed(f"notebook {notebook.name} failed in cell {e.exec_count}: {e.ename}: "
                             f"{e.evalue} (executed copy with the traceback: {failed})") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # kernel death, unreadable notebook, ...
        raise NotebookFailed(f"notebook {notebook.name} could not be executed: "
                             f"{type(e).__name__}: {e}") from e
    failed.unlink(missing_ok=True)


def _record_output_path(executed: Path, output: Path) -> None:
    """papermill recorded the temporary file as the output; name the real one. The cell papermill
    injected after ``parameters`` is plumbing too: like that cell, the book page leaves it out."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    nb.metadata.setdefault("papermill", {})["output_path"] = str(output)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-input" not in tags:
            cell.metadata["tags"] = [*tags, "remove-input"]
    nbformat.write(nb, executed)


def run_pipeline(out: str | os.PathLike = DEFAULT_OUT, params: dict | None = None, *,
                 runs: str | os.PathLike | None = None, only: Sequence[str] | None = None,
                 force: bool = False, notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
                 log_output: bool = True, log: Log = print) -> list[Outcome]:
    """Write the book assets, then execute (or skip) every notebook in order.

    ``params`` go to every notebook; ``only`` restricts the run to the named notebooks
    (stems such as ``04_evaluation`` or their ``NN`` prefix); ``force`` ignores the cache.
    """
    from . import assets

    out = Path(out).expanduser().resolve()
    params = dict(params or {})
    _prepare_environment(Path(runs) if runs is not None else None)
    notebook_config(**params)   # validate names and values before anything runs
    selected = _select(notebooks(notebooks_dir), only)
    for nb in selected:
        check_parameters(nb, params)

    out.mkdir(parents=True, exist_ok=True)
    assets.write_book_assets(out)
    log(f"book assets written to {out}")

    sources = sources_digest()
    outcomes: list[Outcome] = []
    done: list[str] = []
    try:
        for nb in selected:
            name, output = nb.stem, out / f"{nb.stem}.ipynb"
            key = cache_key(nb, params, sources)
            if not force and output.is_file() and _stored_key(out, name) == key["key"]:
                log(f"{name}: unchanged, skipped")
                outcomes.append(Outcome(name, "skipped", 0.0, output))
                done.append(name)
                continue
            log(f"{name}: executing ...")
            t0 = time.perf_counter()
            (out / f"{name}{KEY_SUFFIX}").unlink(missing_ok=True)
            execute(nb, output, params, log_output=log_output)
            wall = time.perf_counter() - t0
            log(f"{name}: executed in {wall:.0f} s -> {output}")
            outcomes.append(Outcome(name, "executed", wall, output))
            done.append(name)
    finally:
        # every notebook that ran (or was skipped) is stamped with the run state it left behind
        walls = {o.name: o.wall_s for o in outcomes if o.status == "executed"}
        for nb in selected:
            if nb.stem in done:
                _stamp(out, nb.stem, cache_key(nb, params, sources), walls.get(nb.stem))
    write_try_it(out, params, log)
    return outcomes


def write_try_it(out: Path, params: dict, log: Log = print) -> None:
    """The "Try it" page's files (``<out>/try_it``), from the run the notebooks trained and read."""
    from .site.tryit.data import write_page_data

    _, run_dir = notebook_config(**params)
    if not (run_dir / "metrics.json").is_file():
        log(f"try_it: {run_dir} has not finished, so the Try it page will say that its files are missing")
        return
    t0 = time.perf_counter()
    write_page_data(run_dir, out / "try_it", data_root=params.get("data_root"), log=log)
    log(f"try_it: {time.perf_counter() - t0:.0f} s")


def _select(found: list[Path], only: Sequence[str] | None) -> list[Path]:
    if not only:
        return found
    wanted = [w.removesuffix(".ipynb") for w in only]
    chosen = [nb for nb in found if nb.stem in wanted or nb.stem[:2] in wanted]
    missing = [w for w in wanted if not any(nb.stem == w or nb.stem[:2] == w for nb in found)]
    if missing:
        raise ConfigError(f"--only names no notebook {missing}; notebooks: "
                          f"{', '.join(nb.stem for nb in found)}")
    return chosen


# --------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath_book.pipeline",
                                 description="Execute notebooks/NN_*.ipynb in order with papermill "
                                             "into the book's generated/ folder, skipping unchanged ones.")
    ap.add_argument("--smoke", action="store_true", help="pass smoke=True: mini splits, seconds per notebook")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="folder for executed notebooks and book assets "
                                                            "(default: book/generated)")
    ap.add_argument("--runs", help="runs root for the default run_dir (default: $DUALPATH_RUNS or runs/)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="a notebook parameter, e.g. -p seed 1 (values are Python literals or text)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="execute only this notebook (stem or NN prefix); repeatable")
    ap.add_argument("--force", action="store_true", help="execute even unchanged notebooks")
    ap.add_argument("--notebooks", default=str(NOTEBOOKS_DIR), help="folder of the NN_*.ipynb sources "
                                                                    "(default: notebooks/)")
    ap.add_argument("--quiet", action="store_true", help="do not echo the notebooks' output")
    args = ap.parse_args(argv)

    params: dict[str, Any] = {}
    for key, value in args.parameter:
        params[key] = parse_value(value)
    if args.smoke:
        params["smoke"] = True
    for key in ("run_dir", "data_root"):   # relative paths: from where the command was typed
        if isinstance(params.get(key), str):
            params[key] = str(Path(params[key]).expanduser().resolve())
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="  | %(message)s", stream=sys.stdout)
        logging.getLogger("papermill").setLevel(logging.INFO)
    t0 = time.perf_counter()
    try:
        outcomes = run_pipeline(args.out, params, runs=args.runs, only=args.only, force=args.force,
                                notebooks_dir=args.notebooks, log_output=not args.quiet)
    except NotebookFailed as e:
        print(f"pipeline stopped: {e}", file=sys.stderr)
        return 1
    except DualPathError as e:
        print(f"pipeline error: {e}", file=sys.stderr)
        return 2
    n_exec = sum(o.status == "executed" for o in outcomes)
    print(f"pipeline done in {time.perf_counter() - t0:.0f} s: {n_exec} executed, "
          f"{len(outcomes) - n_exec} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
