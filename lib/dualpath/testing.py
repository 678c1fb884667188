"""Made-up inputs for the tests and the benchmarks: a training split whose features and captions are
random numbers, so a training step can be measured or pinned without data, features or a backbone.
Nothing in the method imports this module."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data.corpus import Corpus
from .features import Features
from .train.inputs import Split


def synthetic_split(n_images: int, captions_per_image: int = 5, *, n_views: int = 2, dim: int = 64,
                    vocab_size: int = 100, max_len: int = 32, labels=None, seed: int = 0) -> Split:
    """A train split of random pooled features (``n_views`` per image, as the feature cache holds
    the crops) and random captions of 4 to ``max_len + 7`` word ids, so some are truncated."""
    g = torch.Generator().manual_seed(seed)
    n_caps = n_images * captions_per_image
    caption_image = np.repeat(np.arange(n_images), captions_per_image)
    lengths = torch.randint(4, max_len + 8, (n_caps,), generator=g).tolist()
    ids = [torch.randint(1, vocab_size, (k,), generator=g).tolist() for k in lengths]
    corpus = Corpus("synthetic", ".", [f"{i}.jpg" for i in range(n_images)], ["a caption"] * n_caps,
                    caption_image, np.arange(n_images) if labels is None else np.asarray(labels),
                    {"train": np.arange(n_images)})
    feats = Features(torch.randn(n_views, n_images, dim, generator=g), None, Path("synthetic"))
    return Split.build(corpus, ids, feats, max_len)
