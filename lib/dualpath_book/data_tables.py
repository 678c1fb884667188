"""What the data chapter tabulates: the corpus's splits (:func:`split_table`, :func:`split_sizes`),
how the vocabulary covers them (:func:`vocabulary_table`), caption lengths (:func:`caption_lengths`)
and a caption's placements in the text CNN's slots (:func:`shift_rows`, the position shift)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from dualpath.config import Config
from dualpath.data.corpus import Corpus
from dualpath.data.registry import load_corpus
from dualpath.data.text import Vocabulary, all_shifts, tokenize


def split_table(corpus: Corpus, cfg: Config | None = None) -> pd.DataFrame:
    """Images and captions per split; with ``cfg``, which role (train / val / test) each plays."""
    roles = {v: k for k, v in cfg.role_splits().items()} if cfg is not None else {}
    rows = []
    for name, ids in corpus.splits.items():
        n_caps = int(np.isin(corpus.caption_image, ids).sum())
        rows.append({"split": name, "images": len(ids), "captions": n_caps,
                     "captions per image": round(n_caps / max(len(ids), 1), 2),
                     "used as": roles.get(name, "")})
    return pd.DataFrame(rows).set_index("split")


def split_sizes(cfg: Config, data_root=None) -> dict[str, dict[str, int]]:
    """Images, captions and classes of the train / val / test splits a config uses."""
    corpus = load_corpus(cfg.dataset, data_root)
    out = {}
    for role, name in cfg.role_splits().items():
        part = corpus.select(name)
        out[role] = {"images": part.n_images, "captions": part.n_captions, "classes": part.n_classes}
    return out



def caption_lengths(captions: Sequence[str], vocab: Vocabulary | None = None,
                    lowercase: bool = True) -> pd.DataFrame:
    """Per caption: its number of words and, with ``vocab``, of in-vocabulary words."""
    rows = []
    for c in captions:
        words = tokenize(c, lowercase)
        row = {"words": len(words)}
        if vocab is not None:
            row["in_vocab"] = sum(1 for w in words if w in vocab)
        rows.append(row)
    return pd.DataFrame(rows)


def vocabulary_table(vocab: Vocabulary, parts: dict[str, Corpus], length: int) -> pd.DataFrame:
    """How the (train-only) vocabulary covers each split: OOV rate, mean length, truncation."""
    rows = {}
    for role, part in parts.items():
        s = vocab.stats(part.captions, length)
        rows[role] = {"captions": s["n_captions"], "tokens": s["n_tokens"],
                      "OOV tokens (%)": 100 * s["oov_rate"],
                      "mean words": s["mean_raw_length"], "mean in-vocab words": s["mean_length"],
                      "longest (in-vocab)": s["max_length"],
                      f"truncated at L={length} (%)": 100 * s["frac_truncated"],
                      "captions with no known word": s["n_empty"]}
    return pd.DataFrame(rows).T


def shift_rows(vocab: Vocabulary, caption: str, length: int, n: int = 4) -> tuple[torch.Tensor, list[int]]:
    """``n`` placements of a caption in the ``length`` slots (first, last and evenly in between).

    Returns the id rows ``[n, length]`` (what the text CNN sees) and their start offsets.
    """
    ids = vocab.encode(caption)
    rows = all_shifts(ids, length)
    picks = sorted(set(np.linspace(0, rows.shape[0] - 1, num=min(n, rows.shape[0])).round().astype(int).tolist()))
    return rows[picks], picks
