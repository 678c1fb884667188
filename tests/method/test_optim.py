"""Optimisers (per-group LR multipliers and weight decay, SPEC 3.1) and the LR schedule."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dualpath.config import preset
from dualpath.errors import ConfigError
from dualpath.models import build_model
from dualpath.models.backbones import Backbone
from dualpath.train.optim import lr_at, make_optimizer, set_lr

# SPEC 3.1 as the paper's scripts set it: (LR multiplier, weight decay applies)
EXPECTED = {"embedding": (1e-3, False), "new_conv": (0.1, True), "bn_weight": (0.2, False),
            "bn_bias": (0.1, False), "classifier_weight": (0.01, True), "classifier_bias": (0.02, False),
            "backbone": (0.02, True)}


def model_with_trainable_backbone(cfg):
    torch.manual_seed(0)
    backbone = Backbone("tiny", nn.Identity(), [nn.Linear(16, 16)], 16)
    model = build_model(cfg, 30, 10, backbone=backbone)
    backbone.set_trainable(1)
    return model


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW),
                                       ("adam", torch.optim.Adam)])
def test_every_group_gets_its_multiplier_and_decay(name, cls):
    cfg = preset("smoke", optimizer=name, text_blocks=[1, 1, 1, 1], embed_dim=8, word_vectors="random",
                 weight_decay=5e-4)
    model = model_with_trainable_backbone(cfg)
    opt = make_optimizer(cfg, model, lr=0.5)
    assert type(opt) is cls
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == set(EXPECTED)
    for group, (mult, decays) in EXPECTED.items():
        g = groups[group]
        assert g["mult"] == pytest.approx(mult) and g["lr"] == pytest.approx(0.5 * mult), group
        assert g["weight_decay"] == (5e-4 if decays else 0.0), group
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in opt.param_groups) == n_trainable
    if name == "sgd":
        assert opt.defaults["nesterov"] and opt.defaults["momentum"] == cfg.momentum
    set_lr(opt, 0.01)
    assert groups["classifier_bias"]["lr"] == pytest.approx(0.01 * 0.02)


def test_frozen_backbone_has_no_group():
    cfg = preset("smoke", text_blocks=[1, 1, 1, 1], embed_dim=8, word_vectors="random")
    model = model_with_trainable_backbone(cfg)
    model.backbone.set_trainable(0)
    assert "backbone" not in {g["name"] for g in make_optimizer(cfg, model, 0.1).param_groups}


def test_warmup_then_cosine():
    kw = dict(schedule="cosine", warmup=10)
    assert lr_at(1.0, 0, 100, 10, **kw) == pytest.approx(0.1)
    assert lr_at(1.0, 4, 100, 10, **kw) == pytest.approx(0.5)
    assert lr_at(1.0, 9, 100, 10, **kw) == pytest.approx(1.0)
    assert lr_at(1.0, 10, 100, 10, **kw) == pytest.approx(1.0)
    assert lr_at(1.0, 55, 100, 10, **kw) == pytest.approx(0.5)
    assert lr_at(1.0, 99, 100, 10, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_at(2.0, 100, 100, 10, **kw) == pytest.approx(0.0, abs=1e-12)
    values = [lr_at(1.0, t, 100, 10, **kw) for t in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_step_drops_and_warmup_on_steps():
    kw = dict(schedule="step", lr_steps=[2, 4])
    assert [lr_at(0.1, t, 60, 10, **kw) for t in (0, 19, 20, 39, 40, 59)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    # the values of the old per-epoch rule exactly (same seed, same numbers)
    assert lr_at(0.1, 25, 60, 10, **kw) == 0.1 * 0.1 ** 1
    assert lr_at(0.1, 2, 60, 10, schedule="step", lr_steps=[], warmup=5) == pytest.approx(0.06)


def test_new_keys_are_validated_by_name():
    for key, bad in (("optimizer", "lion"), ("schedule", "linear"), ("warmup_epochs", -1.0),
                     ("grad_clip", -0.1), ("epoch_unit", "words"), ("stage2_epochs", -2),
                     ("classifier_scale", -1.0), ("stage1_negatives", "all")):
        with pytest.raises(ConfigError, match=f"'{key}' = {bad!r}"):
            preset("cpu", **{key: bad})
    # defaults reproduce the earlier runs, and leave the run names (digests) as they were
    cfg = preset("ablation")
    assert (cfg.optimizer, cfg.schedule, cfg.warmup_epochs, cfg.grad_clip, cfg.epoch_unit) == (
        "sgd", "step", 0.0, 0.0, "images")
    assert cfg.digest() != cfg.replace(optimizer="adamw").digest()
    import hashlib, json
    from dualpath.config import LATER_KEYS
    before = {k: v for k, v in cfg.to_dict().items() if k not in LATER_KEYS}
    assert cfg.digest() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10]
