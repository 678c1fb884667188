"""Optimiser and learning-rate schedule.

Every optimiser gets the SPEC 3.1 parameter groups: effective LR = base LR x the group's
multiplier, no weight decay on the embedding, BN scale / shift and the classifier bias.
``sgd`` is the paper's (Nesterov momentum); ``adam`` / ``adamw`` use torch's defaults
(betas 0.9 / 0.999, eps 1e-8) with the same groups (Adam's decay is L2, AdamW's decoupled).

The LR is set before every step: ``lr_at`` is the base LR of a phase at step ``t`` of its
``total`` steps, the ``schedule`` times a linear warm-up over the first ``warmup`` steps.
"""
from __future__ import annotations

import math

import torch

from ..config import Config
from ..models import param_groups

NO_DECAY = frozenset({"embedding", "bn_weight", "bn_bias", "classifier_bias"})


def group_multipliers(cfg: Config) -> dict[str, float]:
    """SPEC 3.1 multipliers: BN shift and classifier bias follow their weights' ratios."""
    return {"embedding": cfg.lr_mult_embedding, "new_conv": cfg.lr_mult_new,
            "bn_weight": cfg.lr_mult_bn, "bn_bias": cfg.lr_mult_bn / 2,
            "classifier_weight": cfg.lr_mult_classifier, "classifier_bias": 2 * cfg.lr_mult_classifier,
            "backbone": cfg.lr_mult_backbone}


def make_optimizer(cfg: Config, model, lr: float) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over the trainable parameters of ``model``, by LR group."""
    mult = group_multipliers(cfg)
    groups = []
    for name, params in param_groups(model).items():
        params = [p for p in params if p.requires_grad]
        if params:
            groups.append({"params": params, "name": name, "mult": mult[name],
                           "lr": lr * mult[name],
                           "weight_decay": cfg.weight_decay * (0.0 if name in NO_DECAY else 1.0)})
    # fused: one in-place kernel per tensor; the unfused update allocates fresh tensors the size of
    # W_share every step, and fresh memory (page faults) dominates a CPU step
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True, fused=True)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=lr, fused=True)


def lr_at(base: float, t: int, total: int, steps_per_epoch: int, *, schedule: str = "step",
          lr_steps: list[int] = (), warmup: int = 0) -> float:
    """Base LR at step ``t`` (0-based) of a phase of ``total`` steps.

    ``step``: x0.1 for each epoch of ``lr_steps`` reached; ``cosine``: from ``base`` at the end of
    the warm-up to 0 at the end of the phase. Warm-up: linear, ``base * (t + 1) / warmup``.
    """
    if t < warmup:
        return base * (t + 1) / warmup
    if schedule == "cosine":
        span = max(total - warmup, 1)
        return base * 0.5 * (1 + math.cos(math.pi * (t - warmup) / span))
    epoch = t // max(steps_per_epoch, 1)
    return base * 0.1 ** sum(epoch >= s for s in lr_steps)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    for g in opt.param_groups:
        g["lr"] = lr * g["mult"]
    return lr
