"""Progress bars that can be turned off (book builds, CI): ``DUALPATH_PROGRESS=0`` or ``enable=False``."""
from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress_enabled(enable: bool = True) -> bool:
    return enable and os.environ.get("DUALPATH_PROGRESS", "1") not in ("0", "false", "no")


def progress(iterable, *, desc: str = "", enable: bool = True, total: int | None = None):
    return tqdm(iterable, desc=desc, total=total, disable=not progress_enabled(enable),
                leave=False, dynamic_ncols=True)
