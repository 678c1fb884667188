"""Colours, the seaborn theme and the image helpers every figure of the book uses."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

CORRECT_COLOR = "#2ca02c"
WRONG_COLOR = "#d62728"
IMAGE_COLOR = "#4c72b0"
TEXT_COLOR = "#dd8452"
SHARED_COLOR = "#55a868"
LOSS_COLOR = "#8c8c8c"


@contextmanager
def theme(style: str = "whitegrid", context: str = "notebook"):
    """Seaborn's theme for the figures made inside the block, restored afterwards."""
    import seaborn as sns

    with sns.axes_style(style), sns.plotting_context(context):
        yield sns


_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def is_image_like(obj) -> bool:
    if isinstance(obj, np.ndarray) or hasattr(obj, "getbands"):   # array or PIL image
        return True
    if isinstance(obj, Path):
        return True
    return isinstance(obj, str) and obj.lower().endswith(_IMAGE_EXTS)


def image_array(img, size: int = 256) -> np.ndarray:
    from PIL import Image

    if isinstance(img, np.ndarray):
        return img
    if not hasattr(img, "getbands"):
        with Image.open(img) as opened:
            img = opened.convert("RGB")
            img.load()
    img = img.convert("RGB")
    img.thumbnail((size, size))
    return np.asarray(img)


def border(ax, color: str, width: float = 4.0) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)
