"""Networks of the dual-path model: image backbones, image head, text CNN and the combined model."""

from .backbones import KNOWN_BACKBONES, Backbone, build_backbone, hub_checkpoint_path
from .build import build_model
from .dualpath import PARAM_GROUPS, DualPathModel, param_groups
from .image import ImageHead
from .text import TextCNN, WordEmbedding

__all__ = [
    "KNOWN_BACKBONES", "Backbone", "build_backbone", "build_model", "hub_checkpoint_path",
    "PARAM_GROUPS", "DualPathModel", "param_groups",
    "ImageHead", "TextCNN", "WordEmbedding",
]
