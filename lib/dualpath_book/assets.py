"""What the prose pages include from ``book/generated/``, written before the notebooks run."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dualpath.config import preset
from dualpath.io import atomic_path

from .figures.architecture import write_architecture_figures

PAPER_PRESETS = ("paper", "paper-coco", "paper-cuhk")


def preset_table(names: Sequence[str] = ("cpu", "paper")) -> pd.DataFrame:
    """The config keys on which the named presets differ, one column per preset."""
    dicts = {n: preset(n).to_dict() for n in names}
    keys = [k for k in dicts[names[0]] if len({repr(d[k]) for d in dicts.values()}) > 1]
    rows = {k: [_show(dicts[n][k]) for n in names] for k in keys}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(names)).rename_axis("key")


def _show(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def write_book_assets(out_dir: str | os.PathLike) -> list[Path]:
    """Everything the prose pages include from ``book/generated/``: the two architecture figures,
    ``presets.csv`` (cpu against paper) and ``paper_presets.csv`` (the three official recipes), both
    from :func:`preset_table`, and ``book_runs.csv`` (the measured whole runs).  The book build
    fails while any is missing."""
    out = Path(out_dir)
    written = write_architecture_figures(out)
    from .book_runs import display_table

    tables = {"presets.csv": preset_table(("cpu", "paper")), "paper_presets.csv": preset_table(PAPER_PRESETS),
              "book_runs.csv": display_table()}
    for name, frame in tables.items():
        path = out / name
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=name != "book_runs.csv")
        written.append(path)
    return written


