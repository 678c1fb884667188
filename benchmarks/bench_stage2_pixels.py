"""Stage II end to end on decoded images (the gpu preset's phase): images/s of the pixel path before
and after the loader, in one process, on real Flickr8k images.

Rows (each timed after an untimed warm-up pass of the same kind):
  input pipeline   decode + augment + collate of every batch, no model:
    old            ``Pixels.batch`` of commit 0040f0f: one image after another in this process,
                   ToTensor + Normalize to floats (loaded from git history, see ``history.py``)
    new, 0 workers the loader in this process (uint8 batches, normalised by the model's device)
    new, W workers the loader with W worker processes (``--workers``, default: the CPU count, at most 8)
  stage II step    the same plus forward, backward and the SGD step of the gpu preset's Stage II
                   (whole backbone trained, mined negatives, 2 : 1 : 0.1), old path against the
                   loader with 0 and with W workers

The model work is identical in the step rows (same weights, same batches, same seeds), so their
ratio is the input pipeline's share of a step: on a CPU the model dominates, on a GPU the input.
On a CPU, worker processes take cores from the step's own threads: there the loader belongs in
the training process (``loader_workers=0``, still the faster uint8 path), on a GPU machine in workers.
On CUDA the step runs in bf16 autocast with channels-last convolutions, as the preset does.

    python benchmarks/bench_stage2_pixels.py                     # CPU: 256 images, a few minutes
    python benchmarks/bench_stage2_pixels.py --images 2048       # on a GPU machine

The last line reads ``input pipeline: Nx`` (new with W workers over old, images/s).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from dualpath.config import preset
from dualpath.data.corpus import Corpus
from dualpath.data.registry import load_corpus
from dualpath.data.text import Vocabulary
from dualpath.models import build_model
from dualpath.models.backbones import build_backbone
from dualpath.train import phases_of
from dualpath.train.inputs import Pixels, Split
from dualpath.train.optim import make_optimizer
from dualpath.train.step import EpochPlan, Forward, device_of, train_step

from history import module_at   # benchmarks/history.py: python puts the script's folder on sys.path

OLD_COMMIT = "0040f0f"


class OldPixels(Pixels):
    """Today's source with the old in-process decode: what the step ran before the loader."""

    def __init__(self, old_source, cfg, backbone, device):
        super().__init__(cfg, backbone, -1, device)
        self.old = old_source

    def batch(self, split, index, view, seeds=None):
        return self.old.batch(split, index, view)

    def batches(self, plan):
        return (plan.batch(k) for k in range(len(plan)))


def first_train_images(n: int, data_root=None) -> tuple[Split, int]:
    """A train split of the first ``n`` Flickr8k train images, their captions as word ids."""
    full = load_corpus("flickr8k", data_root).select("train")
    keep = np.arange(min(n, full.n_images))
    caps = [c for i in keep for c in full.captions_of(int(i))]
    corpus = Corpus("bench", full.image_root, [full.images[i] for i in keep],
                    [full.captions[c] for c in caps], full.caption_image[caps], keep, {"train": keep})
    vocab = Vocabulary.build(corpus.captions)
    return Split.build(corpus, vocab.encode_all(corpus.captions), None, 32), len(vocab)


def input_rate(source, split, cfg, passes: int = 2) -> float:
    """Images/s of reading every batch of an epoch (the last of ``passes`` timed)."""
    for p in range(passes):
        plan = EpochPlan(split, cfg, torch.Generator().manual_seed(p), key=(cfg.seed, 1, p))
        t0 = time.perf_counter()
        n = 0
        for batch in source.batches(plan):
            images = batch.images if batch.images is not None else source.batch(split, batch.index, batch.view)
            n += len(images)
    return n / (time.perf_counter() - t0)


def step_rate(source_of, split, cfg, n_vocab: int, device, steps: int) -> float:
    """Images/s of ``steps`` Stage II steps (after one untimed warm-up step) from ``source_of(model)``."""
    torch.manual_seed(0)
    backbone = build_backbone(cfg.backbone, cfg.backbone_weights)
    model = build_model(cfg, n_vocab, split.corpus.n_classes, backbone=backbone, embed_dim=50).to(device)
    if cfg.channels_last:
        model.backbone.to(memory_format=torch.channels_last)
    if cfg.compile:
        model.backbone.compile()
    phase = phases_of(cfg)[1]
    source = source_of(model)
    source.configure(model.backbone)
    opt = make_optimizer(cfg, model, phase.lr)
    forward = Forward(model, source)
    gen = torch.Generator().manual_seed(0)
    plan = EpochPlan(split, cfg, gen, key=(cfg.seed, 1, 0))
    model.train()
    model.backbone.eval()
    t0, n = None, 0
    for k, batch in enumerate(source.batches(plan)):
        if k == steps + 1:
            break
        train_step(forward, model, source, split, batch, phase, cfg, gen, opt, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k == 0:
            t0 = time.perf_counter()   # the warm-up step (first batch, cuDNN autotuning) is not timed
        else:
            n += len(batch)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=256, help="Flickr8k train images read per pass")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8), help="loader workers")
    ap.add_argument("--steps", type=int, default=6, help="timed Stage II steps per path")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--data-root", help="folder holding flickr8k_224/ (default: see README)")
    ap.add_argument("--compile", action="store_true", help="also time the new path with the backbone "
                    "torch.compile'd (cfg.compile; the warm-up step then includes compiling)")
    args = ap.parse_args()
    cfg = preset("gpu", device=args.device, word_vectors="random", embed_dim=50, progress=False,
                 loader_workers=args.workers)
    device = device_of(cfg)
    if device.type != "cuda":
        cfg = cfg.replace(channels_last=False)   # NHWC pays off with autocast on a GPU, not here
    split, n_vocab = first_train_images(args.images, args.data_root)
    old = module_at(OLD_COMMIT, "lib/dualpath/train/inputs.py", "dualpath.train")
    backbone = build_backbone(cfg.backbone, None)       # only its mean / std matter to the inputs
    print(f"{split.n_images} Flickr8k train images, batch {cfg.batch_size}, {cfg.image_size} px, "
          f"device {device}, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPU(s)")
    print(f"{'':16s}{'path':16s}{'images/s':>10s}{'vs old':>9s}")
    rates = {"old": input_rate(OldPixels(old.Pixels(cfg, backbone, -1), cfg, backbone, device), split, cfg)}
    for workers in (0, args.workers):
        rates[workers] = input_rate(Pixels(cfg.replace(loader_workers=workers), backbone, -1, device),
                                    split, cfg)
    for name, rate in rates.items():
        label = "old" if name == "old" else f"new, {name} workers"
        print(f"{'input pipeline':16s}{label:16s}{rate:10.0f}{rate / rates['old']:8.2f}x", flush=True)
    steps = {"old": step_rate(lambda m: OldPixels(old.Pixels(cfg, m.backbone, -1), cfg, m.backbone, device),
                              split, cfg, n_vocab, device, args.steps)}
    for workers in (0, args.workers):
        new = cfg.replace(loader_workers=workers)
        steps[workers] = step_rate(lambda m: Pixels(new, m.backbone, -1, device), split, new, n_vocab,
                                   device, args.steps)
    if args.compile:
        compiled = cfg.replace(compile=True)
        steps["compiled"] = step_rate(lambda m: Pixels(compiled, m.backbone, -1, device), split,
                                      compiled, n_vocab, device, args.steps)
    for name, rate in steps.items():
        label = {"old": "old", "compiled": f"new, {args.workers} w, compiled"}.get(name, f"new, {name} workers")
        print(f"{'stage II step':16s}{label:16s}{rate:10.1f}{rate / steps['old']:8.2f}x", flush=True)
    print(f"stage II step: {steps[0] / steps['old']:.2f}x with the loader in this process, "
          f"{steps[args.workers] / steps['old']:.2f}x with {args.workers} workers")
    print(f"input pipeline: {rates[args.workers] / rates['old']:.2f}x")


if __name__ == "__main__":
    main()
