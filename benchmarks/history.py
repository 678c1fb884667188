"""An old version of one of the package's modules, loaded from git history beside today's, so a
benchmark can time the implementation a change replaced in the same process as the new one."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import dualpath


def module_at(commit: str, path: str, package: str, edits: dict[str, str] | None = None):
    """Module ``path`` (e.g. ``lib/dualpath/train.py``) as of ``commit``, importable as a sibling in
    ``package`` (so its relative imports resolve inside today's package), with its ``__file__``
    where it lay in the checkout. ``edits``: text replaced in its source before it is compiled
    (e.g. a command that names the module by the import path it had then)."""
    root = Path(dualpath.__file__).resolve().parents[2]
    src = subprocess.run(["git", "-C", str(root), "show", f"{commit}:{path}"],
                         capture_output=True, text=True, check=True).stdout
    for old, new in (edits or {}).items():
        if old not in src:
            raise ValueError(f"{path} at {commit} has no {old!r} to edit")
        src = src.replace(old, new)
    name = f"{package}._{Path(path).stem}_{commit}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = package
    module.__file__ = str(root / path)
    sys.modules[name] = module
    exec(compile(src, f"{Path(path).stem}_{commit}.py", "exec"), module.__dict__)
    return module
