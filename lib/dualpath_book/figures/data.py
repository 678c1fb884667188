"""The data page's figures: sample images, caption lengths, the position shift."""
from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


from .style import IMAGE_COLOR, TEXT_COLOR, image_array, theme


def sample_grid(images: Sequence, captions: Sequence[Sequence[str]], *, ncols: int = 3,
                thumb: float = 2.6, wrap: int = 40, max_captions: int = 2) -> Figure:
    """Image thumbnails with (some of) their captions underneath."""
    images, captions = list(images), [list(c) for c in captions]
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} caption lists")
    rows = math.ceil(len(images) / ncols)
    texts = ["\n".join(textwrap.fill(f"• {c}", wrap) for c in caps[:max_captions]) for caps in captions]
    lines = max((t.count("\n") + 1 for t in texts), default=1)
    with theme("white"):
        fig = Figure(figsize=(thumb * ncols, (thumb + 0.16 * lines + 0.1) * rows), dpi=100,
                     layout="constrained")
        axes = fig.subplots(rows, ncols, squeeze=False)
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, img, text in zip(axes.flat, images, texts):
            ax.set_axis_on()
            ax.imshow(image_array(img))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_xlabel(text, fontsize=7, loc="left", labelpad=3)
    return fig


def caption_length_histogram(lengths: pd.DataFrame, max_len: int | None = None, *,
                             title: str | None = None) -> Figure:
    """Histogram of words per caption (columns ``words`` and, if present, ``in_vocab``)."""
    cols = [c for c in ("words", "in_vocab") if c in lengths.columns]
    if not cols:
        raise ValueError("lengths needs a 'words' or 'in_vocab' column")
    labels = {"words": "all words", "in_vocab": "in-vocabulary words"}
    top = int(lengths[cols].max().max())
    bins = np.arange(0.5, top + 1.5)
    with theme():
        fig = Figure(figsize=(6.0, 3.2), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        for col, color in zip(cols, (IMAGE_COLOR, TEXT_COLOR)):
            ax.hist(lengths[col], bins=bins, alpha=0.55, color=color,
                    label=f"{labels[col]} (mean {lengths[col].mean():.1f})")
        if max_len is not None:
            ax.axvline(max_len + 0.5, color="black", linestyle="--", linewidth=1)
            ax.text(max_len + 0.5, 0.95, f" L = {max_len}", transform=ax.get_xaxis_transform(),
                    fontsize=8, va="top")
        ax.set_xlabel("words per caption")
        ax.set_ylabel("captions")
        ax.legend(fontsize=8)
        if title:
            ax.set_title(title, fontsize=10)
    return fig


def position_shift_figure(rows, vocab, offsets: Sequence[int] | None = None, *,
                          title: str | None = None) -> Figure:
    """The paper's text input as an image: the one-hot ``L × V`` matrix of a sentence at several
    start offsets (the position shift). ``rows`` are id rows ``[n, L]`` (0 = padding).

    Only the vocabulary rows the sentence uses are drawn (the other ``V - k`` rows are all zero),
    labelled with their words; a dark cell means "this word is at this position".
    """
    import torch

    rows = torch.as_tensor(rows)
    if rows.ndim != 2:
        raise ValueError("rows must be [n_offsets, L] word ids")
    n, length = rows.shape
    used = sorted({int(i) for i in rows.unique().tolist() if int(i) != 0},
                  key=lambda i: int((rows[0] == i).nonzero()[0]) if (rows[0] == i).any() else 10**6)
    if not used:
        raise ValueError("the sentence has no in-vocabulary word")
    offsets = list(offsets) if offsets is not None else list(range(n))
    with theme("white"):
        fig = Figure(figsize=(max(6.0, 0.22 * length + 1.8), 0.9 + n * (0.24 * len(used) + 0.55)),
                     dpi=100, layout="constrained")
        axes = fig.subplots(n, 1, squeeze=False)[:, 0]
        for ax, row, off in zip(axes, rows, offsets):
            onehot = np.zeros((len(used), length))
            for pos, wid in enumerate(row.tolist()):
                if wid:
                    onehot[used.index(wid), pos] = 1.0
            ax.imshow(onehot, cmap="Greys", vmin=0, vmax=1.25, aspect="auto", interpolation="nearest")
            ax.set_yticks(np.arange(len(used)), [vocab.word(i) for i in used], fontsize=7)
            ax.set_xticks(np.arange(0, length, 4), [str(p) for p in range(0, length, 4)], fontsize=7)
            ax.set_xticks(np.arange(-0.5, length, 1), minor=True)
            ax.set_yticks(np.arange(-0.5, len(used), 1), minor=True)
            ax.grid(which="minor", color="#dddddd", linewidth=0.5)
            ax.tick_params(which="minor", length=0)
            ax.set_title(f"start offset {off}", fontsize=8, loc="left")
        axes[-1].set_xlabel(f"position (L = {length}); rows: the {len(used)} vocabulary words the "
                            f"sentence uses, out of V = {len(vocab) - 1:,}", fontsize=8)
        if title:
            fig.suptitle(textwrap.fill(title, 90), fontsize=9)
    return fig
