"""Text CNN (SPEC §1.2): one-hot words -> 1x1-conv embedding -> 3-4-6-1 residual bottlenecks -> max pool -> fc.

The paper treats a sentence as a 1 x L x V image and convolves along the word axis.  Here the word axis
axis of [B, L, channels] tensors; the weights are Conv1d parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .init import BN_MOMENTUM, bn, he_normal_fan_out

# Per stage (SPEC §1.2 table, width 1.0): output channels, mid channels of the first block (the "wide"
# projection block), mid channels of the following blocks, stride of the first block.
STAGE_OUT = (256, 512, 1024, 2048)
STAGE_FIRST_MID = (128, 512, 1024, 2048)
STAGE_MID = (64, 128, 256, 512)
STAGE_STRIDE = (1, 2, 2, 1)
POOLS = ("all", "words")


def scaled(channels: int, width: float) -> int:
    """Channel count scaled by `width`, rounded, never below 8."""
    return max(8, int(round(channels * width)))


class WordEmbedding(nn.Module):
    """The paper's `fc2`: a 1x1 conv V -> embed_dim with bias, applied to one-hot word columns.

    On a one-hot column it picks one weight row; on an all-zero (padding) column it yields the bias
    alone.  So it equals an embedding lookup with a zero, frozen padding row (id 0) plus a bias added
    at every position.
    """

    def __init__(self, vocab_size: int, embed_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, embed_dim))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        # He fan-out of a 1x1 conv with embed_dim outputs; replaced by word vectors when given
        nn.init.normal_(self.weight, std=(2.0 / embed_dim) ** 0.5)
        self.zero_padding_row()

    @torch.no_grad()
    def zero_padding_row(self) -> None:
        self.weight[0].zero_()

    @torch.no_grad()
    def load_vectors(self, vectors: np.ndarray | torch.Tensor) -> None:
        """Copy word vectors [V, embed_dim] in; row 0 (padding) is forced to zero."""
        vectors = vectors if torch.is_tensor(vectors) else torch.as_tensor(np.asarray(vectors))
        if tuple(vectors.shape) != tuple(self.weight.shape):
            raise ConfigError(f"embedding_init has shape {tuple(vectors.shape)}, "
                              f"expected {tuple(self.weight.shape)} (vocab_size, embed_dim)")
        self.weight.copy_(vectors.to(self.weight.dtype))
        self.zero_padding_row()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # padding_idx=0 keeps the padding row's gradient at zero, as a zero input column would
        return F.embedding(ids, self.weight, padding_idx=0) + self.bias


def _bn_rows(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over [B, L, C]: statistics over batch and positions, as BN on a 1 x L map."""
    return norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _conv1x1(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 Conv1d applied to [B, L, C] as one matrix product."""
    return F.linear(x, conv.weight[:, :, 0])


class Bottleneck(nn.Module):
    """1x1 -> BN -> ReLU -> 1x2 (left pad 1, stride s) -> BN -> ReLU -> 1x1 -> BN, plus shortcut, then ReLU.

    The weights are Conv1d parameters (the layers of the paper), but the forward pass works on
    [B, L, C] and writes each conv as matrix products: a sentence is only L <= 56 positions wide,
    and at that size oneDNN's conv1d spends its time on set-up, not arithmetic (about 10x slower
    on a CPU, measured in benchmarks/bench_text_cnn.py).
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int, eps: float, momentum: float,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv1d(in_ch, mid_ch, 1, bias=False)
        self.bn1 = bn(mid_ch, eps, momentum)
        self.conv2 = nn.Conv1d(mid_ch, mid_ch, 2, stride=stride, bias=False)
        self.bn2 = bn(mid_ch, eps, momentum)
        self.conv3 = nn.Conv1d(mid_ch, out_ch, 1, bias=False)
        self.bn3 = bn(out_ch, eps, momentum)
        if zero_init_residual:
            # the block starts as its shortcut, so a deep stack starts as a shallow one (Goyal et al. 2017)
            nn.init.zeros_(self.bn3.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv1d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          bn(out_ch, eps, momentum))

    def _pair_conv(self, y: torch.Tensor) -> torch.Tensor:
        """The 1x2 conv with one zero on the left: out[t] = W0 y[t-1] + W1 y[t], every stride-th t."""
        prev = F.pad(y, (0, 0, 1, 0))[:, :-1]
        if self.stride > 1:
            # positions 0, s, 2s, ...: ceil(L/s) of them, like the strided 1x1 shortcut
            y, prev = y[:, ::self.stride], prev[:, ::self.stride]
        w = self.conv2.weight
        return F.linear(torch.cat([prev, y], dim=2), torch.cat([w[:, :, 0], w[:, :, 1]], dim=1))

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.shortcut, nn.Identity):
            return x
        conv, norm = self.shortcut
        return _bn_rows(norm, _conv1x1(conv, x[:, ::self.stride]))

    def reach(self, words: torch.Tensor) -> torch.Tensor:
        """Word mask [B, L] -> mask [B, ceil(L / stride)] of the outputs that see a word (the 1x2 conv
        reads t - 1 and t)."""
        prev = F.pad(words, (1, 0))[:, :-1]
        return (words | prev)[:, ::self.stride]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, C_in] -> [B, ceil(L / stride), C_out]."""
        y = torch.relu(_bn_rows(self.bn1, _conv1x1(self.conv1, x)))
        y = torch.relu(_bn_rows(self.bn2, self._pair_conv(y)))
        y = _bn_rows(self.bn3, _conv1x1(self.conv3, y))
        return torch.relu(y + self._shortcut(x))


class TextCNN(nn.Module):
    """The text branch.  forward(ids [B, L]) -> dict(feat, act, drop), like `ImageHead`.

    Args:
        vocab_size: rows of the embedding, padding id 0 included.
        embed_dim: word-vector size (300 for word2vec).
        length: sentence length L the model is meant for (32 Flickr/COCO, 56 CUHK-PEDES); any L works.
        width: multiplier on every block channel count (1.0 is the paper).
        blocks: residual blocks per stage (paper 3-4-6-1).
        out_dim: embedding size after fc5_2.
        dropout: drop probability after fc5_2.
        embedding_init: optional word vectors [vocab_size, embed_dim].
        bn_eps, bn_momentum: BatchNorm settings of every BN here.
        zero_init_residual: start the last BN of every residual branch at gamma 0 (not in the paper).
        pool: 'all' max-pools over every position, as MatConvNet's pooling over the whole map (the
            paper); 'words' only over the positions whose receptive field holds a word.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 300, length: int = 32, width: float = 1.0,
                 blocks: Sequence[int] = (3, 4, 6, 1), out_dim: int = 2048, dropout: float = 0.75,
                 embedding_init: np.ndarray | torch.Tensor | None = None,
                 bn_eps: float = 1e-5, bn_momentum: float = BN_MOMENTUM, input_dropout: float = 0.0,
                 zero_init_residual: bool = False, pool: str = "all") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ConfigError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        if len(blocks) != len(STAGE_OUT) or min(blocks) < 1:
            raise ConfigError(f"blocks must be {len(STAGE_OUT)} positive counts (paper: 3,4,6,1), got {blocks}")
        if width <= 0:
            raise ConfigError(f"width must be positive, got {width}")
        self.vocab_size, self.embed_dim, self.length = vocab_size, embed_dim, length
        self.width, self.blocks, self.out_dim = width, tuple(blocks), out_dim

        self.embedding = WordEmbedding(vocab_size, embed_dim)
        self.embedding_bn = bn(embed_dim, bn_eps, bn_momentum)
        self.stages = nn.Sequential(*self._build_stages(bn_eps, bn_momentum, zero_init_residual))
        self.channels = scaled(STAGE_OUT[-1], width)
        self.fc5_2 = nn.Linear(self.channels, out_dim, bias=False)
        self.fc5_2_bn = bn(out_dim, bn_eps, bn_momentum)
        self.dropout = nn.Dropout(dropout)
        self.input_dropout = nn.Dropout(input_dropout)

        for module in (self.stages, self.fc5_2):
            he_normal_fan_out(module)
        if embedding_init is not None:
            self.embedding.load_vectors(embedding_init)

    def _build_stages(self, eps: float, momentum: float, zero: bool) -> list[nn.Sequential]:
        stages, in_ch = [], self.embed_dim
        for n, out, first_mid, mid, stride in zip(self.blocks, STAGE_OUT, STAGE_FIRST_MID, STAGE_MID, STAGE_STRIDE):
            out_ch = scaled(out, self.width)
            layers = [Bottleneck(in_ch, scaled(first_mid, self.width), out_ch, stride, eps, momentum, zero)]
            layers += [Bottleneck(out_ch, scaled(mid, self.width), out_ch, 1, eps, momentum, zero)
                       for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            in_ch = out_ch
        return stages

    def blocks_in_order(self) -> list[Bottleneck]:
        return [block for stage in self.stages for block in stage]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Word ids [B, L] -> BN'd embeddings [B, L, embed_dim] (no ReLU, SPEC §1.2), then the input dropout."""
        return self.input_dropout(_bn_rows(self.embedding_bn, self.embedding(ids)))

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stages(self.embed(ids))
        if self.pool == "words":
            words = ids != 0
            for block in self.blocks_in_order():
                words = block.reach(words)
            words = words | ~words.any(dim=1, keepdim=True)   # an empty caption: every position
            x = x.masked_fill(~words[:, :, None], float("-inf"))
        # 'all': max over all positions, padding ones included, as MatConvNet's pooling over the whole map
        pooled = x.amax(dim=1)
        feat = self.fc5_2_bn(self.fc5_2(pooled))
        act = torch.relu(feat)
        return {"feat": feat, "act": act, "drop": self.dropout(act)}
