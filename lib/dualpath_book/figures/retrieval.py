"""Qualitative results: retrieval grids, word importance, embedding projections."""
from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D


from .style import CORRECT_COLOR, IMAGE_COLOR, WRONG_COLOR, border, image_array, is_image_like, theme


def retrieval_grid(queries, results, correct, *, mode: str | None = None, titles=None,
                   wrap: int = 48, thumb: float = 1.7) -> Figure:
    """Qualitative retrieval: one row per query, green = correct, red = wrong.

    * ``mode='t2i'``: each query is a caption, ``results`` its ranked image paths (or PIL images /
      arrays); a row shows the caption, then the thumbnails with coloured borders.
    * ``mode='i2t'``: each query is an image, ``results`` its ranked captions; a row shows the image
      and the numbered caption list in colour.

    A single query may be passed as is (``results`` and ``correct`` then flat lists); ``mode``
    defaults to ``i2t`` when the query looks like an image and ``t2i`` otherwise.
    """
    queries, results, correct = _query_rows(queries, results, correct)
    if mode is None:
        mode = "i2t" if is_image_like(queries[0]) and not isinstance(results[0][0], np.ndarray) \
            and not is_image_like(results[0][0]) else "t2i"
    if mode not in ("t2i", "i2t"):
        raise ValueError(f"mode must be 't2i' or 'i2t', got {mode!r}")
    titles = list(titles) if titles is not None else [None] * len(queries)
    with theme("white"):
        if mode == "t2i":
            return _caption_to_images(queries, results, correct, titles, thumb)
        return _image_to_captions(queries, results, correct, titles, wrap, thumb)


def _query_rows(queries, results, correct) -> tuple[list, list[list], list[list]]:
    """Queries, results and correctness as lists of rows (a single query becomes one row), checked
    to match in length."""
    if isinstance(queries, str) or is_image_like(queries):
        queries, results, correct = [queries], [list(results)], [list(correct)]
    queries, results, correct = list(queries), [list(r) for r in results], [list(c) for c in correct]
    if not (len(queries) == len(results) == len(correct)):
        raise ValueError("queries, results and correct must have the same length")
    for r, c in zip(results, correct):
        if len(r) != len(c):
            raise ValueError(f"a query has {len(r)} results but {len(c)} correctness flags")
    return queries, results, correct


def _caption_to_images(queries, results, correct, titles, thumb: float) -> Figure:
    """t2i: per row the caption, then its ranked images with a green or red border."""
    rows, k = len(queries), max(len(r) for r in results)
    fig = Figure(figsize=(thumb * (k + 1.6), thumb * rows * 1.05), dpi=100, layout="constrained")
    axes = fig.subplots(rows, k + 1, squeeze=False,
                        gridspec_kw={"width_ratios": [1.6] + [1] * k})
    for i, (q, res, ok) in enumerate(zip(queries, results, correct)):
        qa = axes[i][0]
        qa.set_axis_off()
        qa.text(0.0, 0.5, textwrap.fill(str(q), 26), ha="left", va="center", fontsize=8,
                transform=qa.transAxes)
        if titles[i]:
            qa.set_title(titles[i], fontsize=8, loc="left")
        for j in range(k):
            ax = axes[i][j + 1]
            if j >= len(res):
                ax.set_axis_off()
                continue
            ax.imshow(image_array(res[j]))
            border(ax, CORRECT_COLOR if ok[j] else WRONG_COLOR)
            if i == 0:
                ax.set_title(f"rank {j + 1}", fontsize=8)
    return fig


def _image_to_captions(queries, results, correct, titles, wrap: int, thumb: float) -> Figure:
    """i2t: per row the image, then its ranked captions, numbered, in green or red."""
    rows = len(queries)
    fig = Figure(figsize=(thumb * 5.5, thumb * 1.15 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False, gridspec_kw={"width_ratios": [1, 3.2]})
    for i, (q, res, ok) in enumerate(zip(queries, results, correct)):
        ia, ta = axes[i]
        ia.imshow(image_array(q))
        border(ia, "#555555", 1.0)
        if titles[i]:
            ia.set_title(titles[i], fontsize=8)
        ta.set_axis_off()
        n = len(res)
        for j, (cap, good) in enumerate(zip(res, ok)):
            text = textwrap.shorten(str(cap), wrap * 2, placeholder=" …")
            ta.text(0.0, 1 - (j + 0.5) / max(n, 1), f"{j + 1}. {text}", fontsize=8, va="center",
                    ha="left", color=CORRECT_COLOR if good else WRONG_COLOR,
                    transform=ta.transAxes)
    return fig


# ----------------------------------------------------------------------------------------------
# Word importance and embedding projections


def word_importance_plot(words: Sequence[str], drops: Sequence[float], *, title: str | None = None,
                         ylabel: str = "similarity drop when removed") -> Figure:
    """One bar per word, in sentence order: how much the image-text similarity falls without it."""
    words, drops = list(words), np.asarray(drops, dtype=float)
    if len(words) != len(drops):
        raise ValueError(f"{len(words)} words but {len(drops)} drops")
    with theme():
        fig = Figure(figsize=(max(4.0, 0.45 * len(words) + 1.2), 3.0), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        colors = [IMAGE_COLOR if v >= 0 else WRONG_COLOR for v in drops]
        ax.bar(np.arange(len(words)), drops, color=colors, alpha=0.8)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(words)), words, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        if title:
            ax.set_title(textwrap.fill(title, 70), fontsize=9)
    return fig


def embedding_projection_plot(points_2d, kinds: Sequence[str], groups: Sequence, *,
                              title: str | None = None, connect: bool = True) -> Figure:
    """2-D projection of image and text embeddings: colour = group (instance), marker = modality.

    With ``connect`` each text point is joined to the image point of its group, so the spread
    of an instance's captions around its image is visible.
    """
    pts = np.asarray(points_2d, dtype=float)
    kinds, groups = [str(k) for k in kinds], list(groups)
    if pts.ndim != 2 or pts.shape[1] != 2 or not (len(pts) == len(kinds) == len(groups)):
        raise ValueError("points_2d must be [n, 2] with one kind and one group per point")
    uniq = list(dict.fromkeys(groups))
    with theme("white") as sns:
        palette = sns.color_palette("husl" if len(uniq) > 10 else "tab10", len(uniq))
        color = {g: palette[i] for i, g in enumerate(uniq)}
        fig = Figure(figsize=(5.2, 4.6), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        is_img = np.array([k.lower().startswith("im") for k in kinds])
        if connect:
            anchor = {g: pts[i] for i, g in enumerate(groups) if is_img[i]}
            for i, g in enumerate(groups):
                if not is_img[i] and g in anchor:
                    ax.plot(*np.stack([anchor[g], pts[i]]).T, color=color[g], alpha=0.35, linewidth=0.7)
        handles = []
        for mask, marker, label, size in ((is_img, "s", "image", 46), (~is_img, "o", "text", 22)):
            if mask.any():
                ax.scatter(pts[mask, 0], pts[mask, 1], c=[color[g] for g, m in zip(groups, mask) if m],
                           marker=marker, s=size, edgecolors="black", linewidths=0.4)
                handles.append(Line2D([], [], marker=marker, linestyle="", color="#bbbbbb",
                                      markeredgecolor="black", markeredgewidth=0.4, label=label))
        ax.legend(handles=handles, fontsize=8, loc="best", title="colour = group", title_fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title, fontsize=10)
    return fig


def word_importance_panels(images: Sequence, words: Sequence[Sequence[str]], drops: Sequence[Sequence[float]],
                           *, titles: Sequence[str] | None = None, known: Sequence[Sequence[bool]] | None = None,
                           thumb: float = 2.0) -> Figure:
    """The paper's word-importance figure: per row, the image and one bar per caption word giving
    the drop in image-caption similarity when that word is removed (grey: out of vocabulary)."""
    images, words, drops = list(images), [list(w) for w in words], [np.asarray(d, float) for d in drops]
    if not (len(images) == len(words) == len(drops)):
        raise ValueError("images, words and drops must have the same length")
    for w, d in zip(words, drops):
        if len(w) != len(d):
            raise ValueError(f"{len(w)} words but {len(d)} drops")
    known = [list(k) for k in known] if known is not None else [[True] * len(w) for w in words]
    titles = list(titles) if titles is not None else [None] * len(images)
    n = len(images)
    longest = max(len(w) for w in words)
    with theme():
        fig = Figure(figsize=(thumb + max(4.5, 0.42 * longest + 1.0), thumb * 1.25 * n), dpi=100,
                     layout="constrained")
        axes = fig.subplots(n, 2, squeeze=False,
                            gridspec_kw={"width_ratios": [thumb, max(4.5, 0.42 * longest + 1.0)]})
        for (ia, ba), img, w, d, k, t in zip(axes, images, words, drops, known, titles):
            ia.imshow(image_array(img))
            border(ia, "#555555", 1.0)
            colors = [(IMAGE_COLOR if v >= 0 else WRONG_COLOR) if kk else "#bbbbbb" for v, kk in zip(d, k)]
            ba.bar(np.arange(len(w)), d, color=colors, alpha=0.85)
            ba.axhline(0, color="black", linewidth=0.8)
            ba.set_xticks(np.arange(len(w)), w, rotation=40, ha="right", fontsize=8)
            ba.set_ylabel("similarity drop", fontsize=8)
            ba.tick_params(axis="y", labelsize=7)
            if t:
                ba.set_title(textwrap.fill(t, 90), fontsize=8, loc="left")
    return fig
