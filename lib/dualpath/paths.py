"""Where the data lives, found without editing code.

Order: an explicit argument, then the ``DUALPATH_DATA`` environment variable, then
``data/`` inside the repository, then ``shared/data`` beside the checkout, then
``~/.cache/dualpath/data`` (where ``python -m dualpath.data fetch flickr8k`` puts Flickr8k
when ``DUALPATH_DATA`` is unset). ``find_data_root`` returns the first of these that exists;
``load_corpus`` looks for a dataset's folder in each existing one in turn.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

ENV_VAR = "DUALPATH_DATA"
FETCH_CACHE = "~/.cache/dualpath/data"
# The checkout this package runs from: the fallbacks for data, runs and caches. The book's own
# folders (book/, notebooks/, grids/) are named only in dualpath_book. Installed from a wheel (as
# on Colab) there is no checkout: runs go to ./runs and feature caches to ~/.cache/dualpath.
_CHECKOUT = Path(__file__).resolve().parents[2]
IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file()
USER_CACHE = "~/.cache/dualpath"


def candidate_data_roots() -> list[Path]:
    """The folders searched for the data root, in order (see the module docstring)."""
    roots = []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    if IN_CHECKOUT:
        roots.append(_CHECKOUT / "data")
        roots.append(_CHECKOUT.parent / "shared" / "data")
    roots.append(Path(FETCH_CACHE).expanduser())
    return roots


def default_fetch_root() -> Path:
    """Where ``dualpath.data.fetch`` puts datasets: ``$DUALPATH_DATA``, else ``~/.cache/dualpath/data``."""
    return Path(os.environ.get(ENV_VAR) or FETCH_CACHE).expanduser()


def find_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Return the folder that holds the datasets (e.g. ``flickr8k_224/``)."""
    if explicit is not None:
        root = Path(explicit).expanduser()
        if not root.is_dir():
            raise DataError(f"data root {root} does not exist or is not a folder; "
                            f"pass an existing folder or unset the argument to search "
                            f"${ENV_VAR}, ./data, ../shared/data and {FETCH_CACHE}")
        return root.resolve()
    for root in candidate_data_roots():
        if root.is_dir():
            return root.resolve()
    tried = ", ".join(str(r) for r in candidate_data_roots())
    raise DataError(f"no data root found (tried: {tried}). Run `python -m dualpath.data fetch flickr8k` "
                    f"to download Flickr8k, or set ${ENV_VAR} to the folder that contains flickr8k_224/")


def runs_root() -> Path:
    """Default folder for training runs (overridable with DUALPATH_RUNS)."""
    default = _CHECKOUT / "runs" if IN_CHECKOUT else Path.cwd() / "runs"
    return Path(os.environ.get("DUALPATH_RUNS", default)).expanduser()


def cache_root() -> Path:
    """Default folder for feature caches (overridable with DUALPATH_CACHE)."""
    default = _CHECKOUT / "cache" if IN_CHECKOUT else Path(USER_CACHE) / "features"
    return Path(os.environ.get("DUALPATH_CACHE", default)).expanduser()
