"""Executing a notebook: the one papermill runner and the one reader of a ``parameters`` cell.

The pipeline runs the book's notebooks in its own process; the sweep runs each arm's notebook in a
child process. Both call :func:`run_notebook`, so a kernel is started the same way everywhere: the
``python3`` kernel of this very interpreter (a stale kernelspec of the user's cannot redirect it),
in the notebook's own folder, as Jupyter and Jupyter Book do.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from dualpath.errors import ConfigError


def notebook_parameters(notebook: Path) -> list[str]:
    """Names assigned at top level of the notebook's cell tagged ``parameters`` (no kernel needed)."""
    try:
        nb = json.loads(Path(notebook).read_text())
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"notebook {notebook} is not a readable .ipynb file: {e}") from None
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell.get("source", ""))
            # IPython magics and shell escapes are not Python syntax
            code = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!")))
            try:
                tree = ast.parse(code)
            except SyntaxError as e:
                raise ConfigError(f"notebook {notebook}: parameters cell is not valid Python: {e}") from None
            return [n.id for stmt in tree.body for n in _assigned(stmt)]
    raise ConfigError(f"notebook {notebook} has no cell tagged 'parameters'; papermill needs one "
                      f"to inject parameters")


def _assigned(stmt: ast.stmt) -> list[ast.Name]:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    names: list[ast.Name] = []
    for t in targets:
        names += [n for n in ast.walk(t) if isinstance(n, ast.Name)]
    return names


def kernel_manager_class() -> type:
    """A kernel manager whose 'python3' is ipykernel on ``sys.executable``, whatever
    kernelspecs a user has installed (a stale one could point at another Python)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisInterpreterKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _native_only(self) -> KernelSpecManager:
            return KernelSpecManager(parent=self, kernel_dirs=[])

    return ThisInterpreterKernelManager


def run_notebook(notebook: str | Path, output: str | Path, parameters: dict, *, log_output: bool) -> None:
    """Execute ``notebook`` into ``output`` with ``parameters``; papermill's errors propagate
    (``PapermillExecutionError`` for a failing cell)."""
    import papermill

    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters, kernel_name="python3",
        cwd=str(Path(notebook).parent), progress_bar=False, log_output=log_output,
        kernel_manager_class=kernel_manager_class())
