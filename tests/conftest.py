"""What the tests of both packages share: no progress bars, and the real Flickr8k (when this machine
has it: a test that asks for it is skipped where it does not), loaded once for the whole session."""
import os

import pytest

os.environ.setdefault("DUALPATH_PROGRESS", "0")


@pytest.fixture(scope="session")
def data_root():
    """The data root that holds flickr8k (dualpath.paths.find_data_root's search)."""
    from dualpath.errors import DataError
    from dualpath.paths import find_data_root

    try:
        return find_data_root()
    except DataError as e:
        pytest.skip(f"real data not available: {e}")


@pytest.fixture(scope="session")
def flickr8k(data_root):
    """The whole Flickr8k corpus (8,091 images, the official splits and the mini ones)."""
    from dualpath.data import load_corpus

    return load_corpus("flickr8k", data_root)
