"""Initialisation and BN settings shared by the new layers (SPEC §3.1)."""

from __future__ import annotations

from torch import nn

# MatConvNet updates BN moments as a running average with rate 0.05; PyTorch's `momentum` is that rate.
BN_MOMENTUM = 0.05


def bn(channels: int, eps: float, momentum: float, dims: int = 1) -> nn.Module:
    """A BatchNorm with gamma 1 and beta 0 (PyTorch's defaults, which match SPEC §3.1)."""
    cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    return cls(channels, eps=eps, momentum=momentum)


def he_normal_fan_out(module: nn.Module) -> None:
    """He-normal with fan-out, N(0, 2 / (k * C_out)), for every conv / linear weight in `module`.

    Biases of those layers start at 0; BN layers keep their gamma 1 / beta 0.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
