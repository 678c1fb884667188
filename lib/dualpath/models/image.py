"""Image head (SPEC §1.1): fc1 -> BN -> ReLU -> fc1_1 -> BN -> ReLU -> Dropout on pooled backbone features.

MatConvNet's fc1 / fc1_1 are 1x1 convolutions on a 1x1 map, i.e. bias-free linear layers here.
"""

from __future__ import annotations

import torch
from torch import nn

from .init import BN_MOMENTUM, bn, he_normal_fan_out


class ImageHead(nn.Module):
    """Maps pooled backbone features [B, in_dim] to the 2048-d image embedding.

    forward returns a dict:
        feat: fc1_1 BN output before ReLU, the test-time embedding (SPEC §1.4)
        act:  after ReLU, what the ranking loss normalises (SPEC §2)
        drop: after dropout, what the shared classifier sees (instance loss)
    """

    def __init__(self, in_dim: int = 2048, hidden: int = 2048, out_dim: int = 2048, dropout: float = 0.75,
                 bn_eps: float = 1e-5, bn_momentum: float = BN_MOMENTUM, input_dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.fc1 = nn.Linear(in_dim, hidden, bias=False)
        self.bn1 = bn(hidden, bn_eps, bn_momentum)
        self.fc1_1 = nn.Linear(hidden, out_dim, bias=False)
        self.bn1_1 = bn(out_dim, bn_eps, bn_momentum)
        self.dropout = nn.Dropout(dropout)
        # With the backbone frozen the head sees the same few cached vectors every epoch; dropping
        # some of their channels is the augmentation that keeps the ranking loss from memorising them.
        self.input_dropout = nn.Dropout(input_dropout)
        he_normal_fan_out(self)

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.relu(self.bn1(self.fc1(self.input_dropout(pooled))))
        feat = self.bn1_1(self.fc1_1(x))
        act = torch.relu(feat)
        return {"feat": feat, "act": act, "drop": self.dropout(act)}
