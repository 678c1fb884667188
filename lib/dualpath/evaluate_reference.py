"""The retrieval ranks written plainly: the definition ``dualpath.evaluate``'s kernel must equal.

One query at a time: its cosine similarity to every candidate, one sort under the pessimistic tie
rule (score descending; among equal scores the negatives first), then the 0-based rank of the first
positive and the AP over all of its positives. Positives as in ``dualpath.evaluate``: a caption and
its image, or with ``image_label`` every image of that image's class, in both directions. A sort per
query is slow, so this serves the tests and ``benchmarks/bench_evaluate.py``, not the book's runs.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .evaluate import DIRECTIONS, QueryRanks, summarise_ranks


def rank_by_sorting(scores: np.ndarray, is_pos: np.ndarray) -> tuple[int, float]:
    """0-based rank of the first positive and AP of one query, from one sort of its scores."""
    order = np.lexsort((is_pos, -scores))  # score descending; tied negatives before positives
    hits = np.flatnonzero(is_pos[order])   # 0-based positions of the positives
    return int(hits[0]), float(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))


def reference_ranks(img_emb, txt_emb, caption_image, image_label=None,
                    directions: Sequence[str] = DIRECTIONS, first: int | None = None,
                    ) -> dict[str, QueryRanks]:
    """What ``retrieval_ranks`` returns, by one sort per query; ``first``: rank only the first
    ``first`` queries of each direction (a benchmark's sample). Float64 where either side is,
    else float32, as the kernel computes."""
    wide = np.float64 in (np.asarray(img_emb).dtype, np.asarray(txt_emb).dtype)
    img, txt = (np.asarray(x, dtype=np.float64 if wide else np.float32) for x in (img_emb, txt_emb))
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    label = np.arange(len(img)) if image_label is None else np.asarray(image_label)
    caption_label = label[np.asarray(caption_image)]
    queries = {"i2t": lambda i: (txt @ img[i], caption_label == label[i]),
               "t2i": lambda t: (img @ txt[t], label == caption_label[t])}
    out = {}
    for d in directions:
        n = len(img) if d == "i2t" else len(txt)
        ranked = [rank_by_sorting(*queries[d](q)) for q in range(min(n, first or n))]
        out[d] = QueryRanks(np.array([r for r, _ in ranked], dtype=np.int64),
                            np.array([ap for _, ap in ranked], dtype=np.float64))
    return out


def reference_metrics(img_emb, txt_emb, caption_image, image_label=None,
                      directions: Sequence[str] = DIRECTIONS) -> dict[str, float]:
    """``summarise_ranks(reference_ranks(...))``: what ``retrieval_metrics`` must return."""
    return summarise_ranks(reference_ranks(img_emb, txt_emb, caption_image, image_label, directions))
