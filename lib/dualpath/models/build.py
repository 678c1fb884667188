"""The network of a ``Config``: backbone, image head, text CNN and the shared classifier."""
from __future__ import annotations

import torch

from ..config import Config
from .backbones import build_backbone
from .dualpath import DualPathModel
from .image import ImageHead
from .text import TextCNN


def build_model(cfg: Config, vocab_size: int, n_classes: int, embedding_init=None,
                backbone: torch.nn.Module | None = None, embed_dim: int = 0) -> DualPathModel:
    """The network of ``cfg``; ``embed_dim`` 0 takes cfg.embed_dim, else the word vectors' size."""
    embed_dim = embed_dim or cfg.embed_dim or (embedding_init.shape[1] if embedding_init is not None else 300)
    if backbone is None:
        backbone = build_backbone(cfg.backbone, None)   # weights come from the checkpoint
    head = ImageHead(backbone.out_channels, cfg.feature_dim, cfg.feature_dim, cfg.dropout,
                     bn_momentum=cfg.bn_momentum, input_dropout=cfg.image_input_dropout)
    text = TextCNN(vocab_size, embed_dim, cfg.max_len, cfg.text_width, tuple(cfg.text_blocks),
                   cfg.feature_dim, cfg.dropout, embedding_init=embedding_init,
                   bn_momentum=cfg.bn_momentum, input_dropout=cfg.text_input_dropout,
                   zero_init_residual=cfg.text_zero_init, pool=cfg.text_pool)
    return DualPathModel(head, text, n_classes, shared_classifier=cfg.shared_classifier,
                         classifier_bias=cfg.classifier_bias,
                         classifier_scale=cfg.classifier_scale, backbone=backbone)
