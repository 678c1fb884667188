"""The widths ``build_model`` gives a ``Config``, computed without building the network (for the
architecture drawing and the tables that name layer sizes)."""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..config import Config

#: The pooled feature size of each backbone as ``build_backbone`` makes it (a test builds each to check).
BACKBONE_CHANNELS = {"efficientnet_lite0": 1280, "resnet50": 2048, "resnet152": 2048, "vgg19": 4096}


def word_vector_dim(cfg: Config) -> int:
    """Size of the word-embedding layer's output for a config (what ``embed_dim=0`` resolves to)."""
    if cfg.embed_dim > 0:
        return cfg.embed_dim
    name = Path(cfg.word_vectors).stem.lower()          # 'glove50', 'glove.6b.100d', ...
    match = re.search(r"(\d+)d?$", name)
    if name.startswith("glove") and match:
        return int(match.group(1))
    return 300   # 'random' and word2vec files (GoogleNews: 300-d)


def image_head_widths(cfg: Config) -> tuple[int, int, int]:
    """(in, hidden, out) of the image head fc1 -> fc1_1 as ``dualpath.train`` builds it:
    C -> feature_dim -> feature_dim (the paper's ResNet head is 2048 -> 2048 -> 2048)."""
    channels = BACKBONE_CHANNELS.get(cfg.backbone)
    if channels is None:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; known: {', '.join(BACKBONE_CHANNELS)}")
    return channels, cfg.feature_dim, cfg.feature_dim


def text_stage_shapes(cfg: Config) -> list[dict]:
    """Per stage of the text CNN: blocks, (first-block mid, later mid, out) channels, positions."""
    from .text import STAGE_FIRST_MID, STAGE_MID, STAGE_OUT, STAGE_STRIDE, scaled

    shapes, length = [], cfg.max_len
    for n, out, first_mid, mid, stride in zip(cfg.text_blocks, STAGE_OUT, STAGE_FIRST_MID, STAGE_MID,
                                              STAGE_STRIDE):
        length = math.ceil(length / stride)
        shapes.append(dict(blocks=n, first_mid=scaled(first_mid, cfg.text_width),
                           mid=scaled(mid, cfg.text_width), out=scaled(out, cfg.text_width),
                           positions=length, stride=stride))
    return shapes


