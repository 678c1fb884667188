"""Where the data lives, found without editing code.

Order: an explicit argument, then the ``DUALPATH_DATA`` environment variable, then
``data/`` inside the repository, then ``shared/data`` beside the checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

ENV_VAR = "DUALPATH_DATA"
# The checkout this package runs from: the last fallbacks for data, runs and caches. The book's
# own folders (book/, notebooks/, grids/) are named only in dualpath_book.
_CHECKOUT = Path(__file__).resolve().parents[2]


def candidate_data_roots() -> list[Path]:
    roots = []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    roots.append(_CHECKOUT / "data")
    roots.append(_CHECKOUT.parent / "shared" / "data")
    return roots


def find_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Return the folder that holds the datasets (e.g. ``flickr8k_224/``)."""
    if explicit is not None:
        root = Path(explicit).expanduser()
        if not root.is_dir():
            raise DataError(f"data root {root} does not exist or is not a folder; "
                            f"pass an existing folder or unset the argument to search "
                            f"${ENV_VAR}, ./data and ../shared/data")
        return root.resolve()
    for root in candidate_data_roots():
        if root.is_dir():
            return root.resolve()
    tried = ", ".join(str(r) for r in candidate_data_roots())
    raise DataError(f"no data root found (tried: {tried}). Download Flickr8k as the README "
                    f"explains and set ${ENV_VAR} to the folder that contains flickr8k_224/")


def runs_root() -> Path:
    """Default folder for training runs and caches (overridable with DUALPATH_RUNS)."""
    return Path(os.environ.get("DUALPATH_RUNS", _CHECKOUT / "runs")).expanduser()


def cache_root() -> Path:
    """Default folder for feature caches (overridable with DUALPATH_CACHE)."""
    return Path(os.environ.get("DUALPATH_CACHE", _CHECKOUT / "cache")).expanduser()
