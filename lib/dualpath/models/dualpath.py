"""The dual-path model: image head + text CNN + the shared classifier W_share (SPEC §1.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .backbones import Backbone
from .image import ImageHead
from .text import TextCNN, WordEmbedding

CLASSIFIER_INIT_SCALE = 0.1  # SPEC §3.1: the layer before a loss starts 10x smaller than He-normal


def _classifier(in_dim: int, n_classes: int, bias: bool) -> nn.Linear:
    layer = nn.Linear(in_dim, n_classes, bias=bias)
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    with torch.no_grad():
        layer.weight.mul_(CLASSIFIER_INIT_SCALE)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class DualPathModel(nn.Module):
    """Both branches and the instance-loss classifier.

    With `shared_classifier` (the paper) one `nn.Linear` named `classifier` serves both branches, so
    W_share is literally one tensor; without it (ablation) there are `classifier_image` and
    `classifier_text`.  `backbone` is optional: Stage I trains on cached pooled features, Stage II may
    fine-tune the backbone from pixels.

    `classifier_scale` 0 is the paper's linear classifier. A positive scale s makes it a cosine
    classifier, logits = s * cos(f, w_c) (+ bias): a branch can then raise its logits only by pointing
    its feature at its class's row, not by growing the feature, so the image branch, which fits its
    classes first, cannot win the softmax on norm alone and the rows stay where the text can reach
    them (measured in book/differences.md).
    """

    def __init__(self, image_head: ImageHead, text_cnn: TextCNN, n_classes: int, shared_classifier: bool = True,
                 classifier_bias: bool = True, backbone: Backbone | None = None,
                 classifier_scale: float = 0.0) -> None:
        super().__init__()
        if image_head.out_dim != text_cnn.out_dim:
            raise ConfigError(f"image and text embeddings differ in size: {image_head.out_dim} vs {text_cnn.out_dim}")
        if n_classes < 1:
            raise ConfigError(f"n_classes must be positive, got {n_classes}")
        self.backbone = backbone
        self.image_head = image_head
        self.text_cnn = text_cnn
        self.n_classes = n_classes
        self.shared_classifier = shared_classifier
        self.classifier_scale = float(classifier_scale)
        dim = image_head.out_dim
        if shared_classifier:
            self.classifier = _classifier(dim, n_classes, classifier_bias)
        else:
            self.classifier_image = _classifier(dim, n_classes, classifier_bias)
            self.classifier_text = _classifier(dim, n_classes, classifier_bias)

    def classifier_for(self, modality: str) -> nn.Linear:
        """The classifier applied to 'image' or 'text' features (the same module when shared)."""
        if modality not in ("image", "text"):
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
        if self.shared_classifier:
            return self.classifier
        return self.classifier_image if modality == "image" else self.classifier_text

    def classifiers(self) -> list[nn.Linear]:
        """The distinct classifier modules: one when shared, else the image's and the text's."""
        return [self.classifier] if self.shared_classifier else [self.classifier_image, self.classifier_text]

    def image_branch(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pooled backbone features [B, C] -> dict(feat, act, drop)."""
        return self.image_head(pooled)

    def text_branch(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Word ids [B, L] -> dict(feat, act, drop)."""
        return self.text_cnn(ids)

    def image_from_pixels(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised images [B, 3, H, W] -> backbone -> image head."""
        if self.backbone is None:
            raise ConfigError("this DualPathModel has no backbone; pass pooled features to image_branch")
        return self.image_head(self.backbone(pixels))

    def logits_image(self, drop: torch.Tensor) -> torch.Tensor:
        return self._logits(self.classifier_for("image"), drop)

    def logits_text(self, drop: torch.Tensor) -> torch.Tensor:
        return self._logits(self.classifier_for("text"), drop)

    def logits_both(self, img_drop: torch.Tensor, txt_drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(image logits, text logits); a shared classifier scores both batches in one product."""
        if not self.shared_classifier:
            return self.logits_image(img_drop), self.logits_text(txt_drop)
        both = self._logits(self.classifier, torch.cat([img_drop, txt_drop]))
        return both[:len(img_drop)], both[len(img_drop):]

    def _logits(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if not self.classifier_scale:
            return layer(x)
        cos = F.linear(F.normalize(x, dim=1), F.normalize(layer.weight, dim=1))
        logits = self.classifier_scale * cos
        return logits if layer.bias is None else logits + layer.bias

    def forward(self, image: torch.Tensor, ids: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Both branches and their logits.

        `image` is either pooled features [B, C] or, when a backbone is attached, pixels [B, 3, H, W].
        Returns {'image': {feat, act, drop, logits}, 'text': {feat, act, drop, logits}}.
        """
        img = self.image_from_pixels(image) if image.dim() == 4 else self.image_branch(image)
        txt = self.text_branch(ids)
        img["logits"], txt["logits"] = self.logits_both(img["drop"], txt["drop"])
        return {"image": img, "text": txt}

    def count_parameters(self) -> dict[str, int]:
        """Parameter counts per part and in total (a shared classifier counted once)."""
        parts = {"backbone": self.backbone, "image_head": self.image_head, "text_cnn": self.text_cnn}
        counts = {k: _count(m) if m is not None else 0 for k, m in parts.items()}
        counts["classifier"] = sum(_count(m) for m in self.classifiers())
        counts["total"] = _count(self)
        return counts

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning-rate group; see `param_groups`."""
        return param_groups(self)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


PARAM_GROUPS = ("embedding", "new_conv", "bn_weight", "bn_bias", "classifier_weight", "classifier_bias", "backbone")


def param_groups(model: DualPathModel) -> dict[str, list[nn.Parameter]]:
    """Split every parameter of `model` into the SPEC §3.1 learning-rate groups.

    Groups (each parameter appears in exactly one, shared tensors once):
        embedding          word embedding weight and bias (fc2; multiplier 1e-3)
        new_conv           conv / linear weights of the text CNN and both heads (0.1)
        bn_weight, bn_bias BN scale / shift of the new layers (0.2 / 0.1)
        classifier_weight, classifier_bias   W_share and its bias (0.01 / 0.02)
        backbone           everything in the image backbone (frozen in Stage I)
    BN scale and shift are separate groups because SPEC gives them different multipliers.
    """
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in PARAM_GROUPS}
    seen: set[int] = set()

    def add(group: str, params: list[nn.Parameter]) -> None:
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                groups[group].append(p)

    if model.backbone is not None:
        add("backbone", list(model.backbone.parameters()))
    for modality in ("image", "text"):
        layer = model.classifier_for(modality)
        add("classifier_weight", [layer.weight])
        if layer.bias is not None:
            add("classifier_bias", [layer.bias])
    for module in (model.image_head, model.text_cnn):
        for m in module.modules():
            if isinstance(m, WordEmbedding):
                add("embedding", [m.weight, m.bias])
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                add("bn_weight", [m.weight])
                add("bn_bias", [m.bias])
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                add("new_conv", [m.weight] + ([m.bias] if m.bias is not None else []))

    missing = [name for name, p in model.named_parameters() if id(p) not in seen]
    if missing:  # a new layer type nobody assigned an LR to: fail loudly rather than silently not train it
        raise ConfigError(f"parameters without a learning-rate group: {missing[:5]}")
    return groups
