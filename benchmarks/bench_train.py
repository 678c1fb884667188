"""Training throughput of a Stage I and a Stage II step, and how far it is from this machine's limit.

Default: one row per text-CNN width (0.25 / 0.5 / 1.0) x depth (1-1-1-1 / 3-4-6-1) x stage, in
float32 and, where the CPU has bfloat16 matmuls (AVX-512 BF16 / AMX), under bfloat16 autocast
(``Config.amp_cpu``). Each row gives samples/s of ``train_step`` (forward, losses, backward, Adam
step), the FLOP per sample of that step counted by ``torch.utils.flop_counter`` (matmuls and
convolutions), the GFLOP/s this achieves, and its ratio to a bare 2048^3 matmul of the same dtype
measured in the same run: the distance to what this machine's cores can do.

Inputs (the same for every row): synthetic cached features of the real shapes, 1,280-d pooled
EfficientNet-Lite0 features (2 views) of ``--images`` train images with 5 captions each, a
6,000-class shared classifier, the ``--preset``'s heads, batch, optimiser and losses (default
``cpu``: 1,024-d heads, batch 128, Adam; Stage II its ranking loss), a 7,400-word vocabulary with
50-d (GloVe-50 sized) embeddings.

    python benchmarks/bench_train.py                   # the table, a few minutes on 2 cores
    python benchmarks/bench_train.py --widths 0.25 --depths 1,1,1,1 --steps 10
    python benchmarks/bench_train.py --against-old     # the train package vs the train.py it replaced

``--against-old`` times, one epoch each after a warm-up epoch: ``old``, ``Trainer._train_epoch`` of
``lib/dualpath/train.py`` at commit 15ffc8d (loaded from git history, ``history.py``), against
``new (a)``, ``train_step`` over an ``EpochPlan`` with the same settings (SGD, batch 32), and
``new (b)``, every caption once per epoch, batch 128, Adam.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dualpath.config import preset
from dualpath.hardware import cpu_has_bf16, cpu_name
from dualpath.models import build_model
from dualpath.models.backbones import Backbone
from dualpath.testing import synthetic_split
from dualpath.train import phases_of
from dualpath.train.inputs import CachedPooled
from dualpath.train.optim import lr_at, make_optimizer, set_lr
from dualpath.train.step import EpochPlan, Forward, has_instance, train_step

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


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a bare n x n x n matmul in ``dtype``, best of ``repeats``: the machine's limit."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def step_rate(cfg, split, phase, steps: int) -> tuple[float, float]:
    """(samples/s, FLOP per sample) of ``train_step`` under ``cfg`` for ``phase``."""
    model = make_model(cfg)
    source = CachedPooled()
    source.configure(model.backbone)
    opt = make_optimizer(cfg, model, phase.lr)
    forward = Forward(model, source, instance=has_instance(phase))
    gen = torch.Generator().manual_seed(0)
    plan = EpochPlan(split, cfg, gen)
    model.train()
    batches = [plan.batch(k % len(plan)) for k in range(steps + 3)]
    with FlopCounterMode(display=False) as counter:
        train_step(forward, model, source, split, batches[0], phase, cfg, gen, opt)
    flop = counter.get_total_flops() / cfg.batch_size
    for batch in batches[1:3]:                                        # warm-up
        train_step(forward, model, source, split, batch, phase, cfg, gen, opt)
    t0 = time.perf_counter()
    for batch in batches[3:]:
        train_step(forward, model, source, split, batch, phase, cfg, gen, opt, grad_norms=True)
    return steps * cfg.batch_size / (time.perf_counter() - t0), flop


def scaling_table(args) -> None:
    split = synthetic_split(args.images, 5, n_views=2, dim=POOLED, vocab_size=VOCAB, max_len=32)
    base = preset(args.preset, finetune_blocks=0, word_vectors="random", embed_dim=EMBED, progress=False,
                  device="cpu")
    precisions = {"float32": torch.float32}
    if cpu_has_bf16():
        precisions["bfloat16"] = torch.bfloat16
    limit = {name: matmul_gflops(dtype) for name, dtype in precisions.items()}
    rows = []
    print(f"{cpu_name()}; {torch.get_num_threads()} thread(s); preset {args.preset!r} (batch "
          f"{base.batch_size}, heads {base.feature_dim}, {base.optimizer}); {args.images} images x 5 captions")
    print("bare 2048^3 matmul: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in limit.items()))
    print(f"{'depth':9s}{'width':>6s} {'stage':7s}{'precision':10s}{'samples/s':>10s}{'MFLOP/sample':>13s}"
          f"{'GFLOP/s':>9s}{'of matmul':>10s}{'bf16 speed-up':>14s}")
    for depth in args.depths:
        for width in args.widths:
            for stage in (0, 1):
                rates = {}
                for name in precisions:
                    cfg = base.replace(text_blocks=[int(b) for b in depth.split(",")], text_width=width,
                                       amp_cpu=name == "bfloat16")
                    phase = phases_of(cfg)[stage]
                    rate, flop = step_rate(cfg, split, phase, args.steps)
                    rates[name] = rate
                    gflops = rate * flop / 1e9
                    speedup = f"{rate / rates['float32']:13.2f}x" if name != "float32" else ""
                    print(f"{depth.replace(',', '-'):9s}{width:6.3g} {phase.name:7s}{name:10s}{rate:10.0f}"
                          f"{flop / 1e6:13.0f}{gflops:9.0f}{gflops / limit[name]:10.2f}{speedup}", flush=True)
                    rows.append({"depth": depth.replace(",", "-"), "width": width, "stage": phase.name,
                                 "precision": name, "samples/s": round(rate), "MFLOP/sample": round(flop / 1e6),
                                 "GFLOP/s": round(gflops), "of matmul": round(gflops / limit[name], 2)})
    print("GFLOP/s = samples/s x FLOP/sample (matmuls and convolutions of forward and backward); "
          "'of matmul': that over the bare matmul's GFLOP/s of the same precision, same process")
    if args.csv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.csv, index=False)


def against_old(args) -> None:
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
            phase = phases_of(cfg)[stage]
            rates[name] = time_old(old, cfg, split, phase) if name == "old" else time_new(cfg, split, phase)
            print(f"{name:9s}{phase.name:7s}{rates[name]:11.0f}{rates[name] / rates['old']:8.2f}x", flush=True)
    print("ratios: new / old samples per second, same inputs, same process")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=640, help="train images (5 captions each)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--depths", nargs="+", default=["1,1,1,1", "3,4,6,1"])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per row")
    ap.add_argument("--csv", help="also write the table to this CSV file (book/tables/train_throughput.csv)")
    ap.add_argument("--against-old", action="store_true")
    ap.add_argument("--negatives", default="sum", choices=["sum", "hardest", "paper"],
                    help="with --against-old: the ranking loss's negatives")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    against_old(args) if args.against_old else scaling_table(args)


if __name__ == "__main__":
    main()
