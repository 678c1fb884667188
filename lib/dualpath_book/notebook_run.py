"""Executing a notebook: the one papermill runner and the one reader of a ``parameters`` cell.

The pipeline runs the book's notebooks in its own process; the sweep runs each arm's notebook in a
thread of a Dask worker. Both call :func:`run_notebook`, so a kernel is started the same way
everywhere: the ``python3`` kernel of this very interpreter (a stale kernelspec of the user's cannot
redirect it), in the notebook's own folder, as Jupyter and Jupyter Book do.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import threading
from pathlib import Path
from typing import Callable, TextIO

from dualpath.errors import ConfigError

_STOP_POLL_S = 2.0   # how often a running notebook asks whether to stop


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


def kernel_manager_class(output_file: TextIO | None = None, managers: list | None = None) -> type:
    """A kernel manager whose 'python3' is ipykernel on ``sys.executable``, whatever
    kernelspecs a user has installed (a stale one could point at another Python). Its kernel
    process writes its own stdout and stderr to ``output_file``; each manager made is appended
    to ``managers``."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisInterpreterKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            if managers is not None:
                managers.append(self)

        @default("kernel_spec_manager")
        def _native_only(self) -> KernelSpecManager:
            return KernelSpecManager(parent=self, kernel_dirs=[])

        async def start_kernel(self, **kw) -> None:
            if output_file is not None:
                kw = {"stdout": output_file, "stderr": output_file, **kw}
            await super().start_kernel(**kw)

    return ThisInterpreterKernelManager


def run_notebook(notebook: str | Path, output: str | Path, parameters: dict, *, log_output: bool,
                 output_file: TextIO | None = None, stopped: Callable[[], bool] | None = None) -> None:
    """Execute ``notebook`` into ``output`` with ``parameters``; papermill's errors propagate
    (``PapermillExecutionError`` for a failing cell).

    ``output_file``: where the notebook's output and the kernel's own go as they come.
    ``stopped``: asked every few seconds while the notebook runs; once it says yes the kernel is
    killed, which ends the call with papermill's error for a dead kernel."""
    import papermill

    managers: list = []
    finished = threading.Event()
    if stopped is not None:
        threading.Thread(target=_kill_when, args=(stopped, finished, managers), daemon=True).start()
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, kernel_name="python3",
            cwd=str(Path(notebook).parent), progress_bar=False, log_output=log_output,
            stdout_file=output_file, stderr_file=output_file,
            kernel_manager_class=kernel_manager_class(output_file, managers))
    finally:
        finished.set()


def _kill_when(stopped: Callable[[], bool], finished: threading.Event, managers: list) -> None:
    while not finished.wait(_STOP_POLL_S):
        try:
            stop = stopped()
        except OSError:   # whoever answers it is unreachable; the notebook goes on
            continue
        except AttributeError:
            # a Dask event whose client has closed (the sweep is shutting down): no one is left
            # to ask, and the worker that ends the sweep ends this kernel too
            return
        if stop:
            for manager in managers:
                process = getattr(manager.provisioner, "process", None)
                if process is not None and process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)   # the kernel leads its own session: its children go too
            return

