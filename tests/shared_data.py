"""Where the shared data's Flickr8k is, for tests that need its real files."""
from __future__ import annotations

from pathlib import Path

import pytest

import dualpath.paths


def shared_flickr8k() -> Path:
    """The shared data's flickr8k_224/ (with its original_text/), found where a data root would be;
    the calling test is skipped when it is not on this machine."""
    folder = next((root / "flickr8k_224" for root in dualpath.paths.candidate_data_roots()
                   if (root / "flickr8k_224" / "original_text").is_dir()), None)
    if folder is None:
        pytest.skip("the shared data's flickr8k_224/original_text/ is not here")
    return folder
