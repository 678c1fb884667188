"""Training throughput (samples/s) of a Stage I and a Stage II step: the refactored ``dualpath.train``
against the implementation it replaced (``lib/dualpath/train.py`` at commit 15ffc8d), in one process.

Inputs (the same for every row): synthetic cached features of the real shapes, 1,280-d pooled
EfficientNet-Lite0 features (2 views) of ``--images`` train images with 5 captions each, a
6,000-class shared classifier, 1,024-d heads, the 1-1-1-1 text CNN at width 0.25 over a
7,400-word vocabulary with 50-d (GloVe-50 sized) embeddings: the cpu preset on pooled features.
Stage I: instance loss only. Stage II: ranking (``--negatives``, default the cpu preset's 'sum')
+ instance loss.

Rows, one timed epoch each (after one untimed warm-up epoch of the same kind):
  old          15ffc8d ``Trainer._train_epoch``: SGD, batch 32, one caption per image per epoch
  new (a)      ``train_step`` over an ``EpochPlan`` with the same settings (per-group grad norms on,
               as the trainer logs them)
  new (b)      every caption once per epoch, batch 128, Adam

    python benchmarks/bench_train.py                  # about a minute on one thread
    python benchmarks/bench_train.py --negatives paper

The old module is loaded from git history (``git show 15ffc8d:lib/dualpath/train.py``, see
``history.py``), so its relative imports resolve inside today's package.
"""
from __future__ import annotations

import argparse
import time

import torch

from dualpath.config import preset
from dualpath.models import build_model
from dualpath.models.backbones import Backbone
from dualpath.train import phases_of
from dualpath.train.inputs import CachedPooled, synthetic_split
from dualpath.train.optim import lr_at, make_optimizer, set_lr
from dualpath.train.step import EpochPlan, Forward, train_step

from history import module_at   # benchmarks/history.py: python puts the script's folder on sys.path

OLD_COMMIT = "15ffc8d"
POOLED, CLASSES, VOCAB, EMBED = 1280, 6000, 7400, 50


def load_old():
    return module_at(OLD_COMMIT, "lib/dualpath/train.py", "dualpath")


def make_model(cfg):
    torch.manual_seed(0)
    backbone = Backbone("pooled", torch.nn.Identity(), [], POOLED)
    return build_model(cfg, VOCAB, CLASSES, backbone=backbone, embed_dim=EMBED)


def time_old(old, cfg, split, phase) -> float:
    caps_of = [split.caps_by_class[s:s + c].tolist() for s, c in zip(split.caps_start.tolist(),
                                                                  split.caps_count.tolist())]
    old_split = old.Split(split.corpus, split.caption_ids, split.features, caps_of)
    model = make_model(cfg)
    model.backbone.set_trainable(0)
    trainer = old.Trainer.__new__(old.Trainer)
    trainer.prep = old.Prepared(cfg, None, None, {}, {"train": old_split}, model.backbone)
    trainer.cfg, trainer.model, trainer.rank, trainer.world = cfg, model, 0, 1
    trainer.device = torch.device("cpu")
    image_input = old.ImageInput(old_split, 0, model.backbone, cfg)
    step = old.Step(model, image_input)
    opt = old.make_optimizer(cfg, model, phase.lr)
    gen = torch.Generator().manual_seed(0)
    trainer._train_epoch(step, opt, gen, phase, image_input)           # warm-up
    t0 = time.perf_counter()
    trainer._train_epoch(step, opt, gen, phase, image_input)
    dt = time.perf_counter() - t0
    n = split.n_images // cfg.batch_size * cfg.batch_size
    return n / dt


def time_new(cfg, split, phase) -> float:
    model = make_model(cfg)
    source = CachedPooled()
    source.configure(model.backbone)
    opt = make_optimizer(cfg, model, phase.lr)
    forward = Forward(model, source)
    gen = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(2):                                                # warm-up, then the timed epoch
        plan = EpochPlan(split, cfg, gen)
        model.train()
        t0 = time.perf_counter()
        for k in range(len(plan)):
            set_lr(opt, lr_at(phase.lr, k, len(plan), len(plan), lr_steps=phase.lr_steps))
            train_step(forward, model, source, split, plan.batch(k), phase, cfg, gen, opt, grad_norms=True)
        rates.append(len(plan) * cfg.batch_size / (time.perf_counter() - t0))
    return rates[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=640, help="train images (5 captions each)")
    ap.add_argument("--negatives", default="sum", choices=["sum", "hardest", "paper"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    old = load_old()
    split = synthetic_split(args.images, 5, n_views=2, dim=POOLED, vocab_size=VOCAB, max_len=32)
    base = preset("cpu", finetune_blocks=0, negatives=args.negatives, word_vectors="random",
                  embed_dim=EMBED, progress=False, device="cpu")
    variants = {"old": base, "new (a)": base,
                "new (b)": base.replace(epoch_unit="captions", batch_size=128, optimizer="adam",
                                        lr=1e-3, stage2_lr=1e-3)}
    print(f"{args.images} images x 5 captions, {POOLED}-d pooled features, {CLASSES} classes, "
          f"heads {base.feature_dim}, text CNN {base.text_blocks} width {base.text_width}, "
          f"vocabulary {VOCAB}; negatives {args.negatives!r}; {torch.get_num_threads()} thread(s)")
    print(f"{'':9s}{'stage':7s}{'samples/s':>11s}{'vs old':>9s}")
    for stage in (0, 1):
        rates = {}
        for name, cfg in variants.items():
            phase = phases_of(cfg, "paper")[stage]
            rates[name] = time_old(old, cfg, split, phase) if name == "old" else time_new(cfg, split, phase)
            print(f"{name:9s}{phase.name:7s}{rates[name]:11.0f}{rates[name] / rates['old']:8.2f}x", flush=True)
    print("ratios: new / old samples per second, same inputs, same process")


if __name__ == "__main__":
    main()
