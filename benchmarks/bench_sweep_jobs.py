"""How a sweep should share this machine's cores: one run at a time on every core, or one run per
core side by side (``python -m dualpath_book.sweep ... --jobs N`` gives each run cores // N threads)?

Each layout trains the same cpu-preset steps on the same inputs, in worker processes of this
script: ``jobs`` workers of ``threads`` torch threads each. Every worker builds its inputs and runs
one warm-up epoch, then all of them start their timed epoch together, so the timed parts overlap.
The throughput of a layout is every worker's samples over the wall time of the slowest one.

Inputs: synthetic cached features of the real shapes, the cpu preset (1,280-d pooled
EfficientNet-Lite0 features, 2 views, 6,000 classes, 1,024-d heads, the 1-1-1-1 text CNN at width
0.25 over 50-d word vectors); the book recipe's Stage I (instance losses) and Stage II (hardest
negative ranking loss) steps, with per-group gradient norms as the trainer logs them.

    python benchmarks/bench_sweep_jobs.py                 # about four minutes on two cores
    python benchmarks/bench_sweep_jobs.py --images 1280
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

POOLED, CLASSES, VOCAB, EMBED = 1280, 6000, 7400, 50


def worker(images: int, stage: int) -> None:
    """One worker: warm up, say ready, wait for the go line, time one epoch, print its numbers."""
    import torch

    from dualpath.config import preset
    from dualpath.models import build_model
    from dualpath.models.backbones import Backbone
    from dualpath.train import phases_of
    from dualpath.testing import synthetic_split
    from dualpath.train.inputs import CachedPooled
    from dualpath.train.optim import lr_at, make_optimizer, set_lr
    from dualpath.train.step import EpochPlan, Forward, has_instance, train_step

    cfg = preset("cpu", word_vectors="random", embed_dim=EMBED, progress=False, device="cpu")
    split = synthetic_split(images, 5, n_views=2, dim=POOLED, vocab_size=VOCAB, max_len=cfg.max_len)
    phase = phases_of(cfg)[stage]
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB, CLASSES, backbone=Backbone("pooled", torch.nn.Identity(), [], POOLED),
                        embed_dim=EMBED)
    for c in model.classifiers():
        c.requires_grad_(has_instance(phase))
    source = CachedPooled()
    source.configure(model.backbone)
    opt = make_optimizer(cfg, model, phase.lr)
    forward = Forward(model, source, has_instance(phase))
    gen = torch.Generator().manual_seed(0)

    def epoch() -> int:
        plan = EpochPlan(split, cfg, gen)
        model.train()
        for k in range(len(plan)):
            set_lr(opt, lr_at(phase.lr, k, len(plan), len(plan), schedule=cfg.schedule))
            train_step(forward, model, source, split, plan.batch(k), phase, cfg, gen, opt, grad_norms=True)
        return len(plan) * cfg.batch_size

    epoch()
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    samples = epoch()
    print(json.dumps({"samples": samples, "seconds": time.perf_counter() - t0,
                      "threads": torch.get_num_threads()}), flush=True)


def layout(jobs: int, threads: int, images: int, stage: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--images", str(images),
                               "--stage", str(stage)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(jobs)]
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"a worker failed before its timed epoch (said {line!r})")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a worker failed in its timed epoch")
    wall = max(r["seconds"] for r in results)
    return {"samples_s": sum(r["samples"] for r in results) / wall,
            "threads_seen": sorted({r["threads"] for r in results})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=640, help="train images (5 captions each) per worker")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--stage", type=int, choices=[0, 1], help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.images, args.stage)
    layouts = [(1, args.cores), (args.cores, 1)]
    print(f"{args.images} images x 5 captions per worker, cpu preset, {args.cores} cores")
    print(f"{'layout':24s}{'stage':8s}{'samples/s':>11s}{'vs one run':>12s}")
    for stage, name in ((0, "stage1"), (1, "stage2")):
        rates = {}
        for jobs, threads in layouts:
            r = layout(jobs, threads, args.images, stage)
            rates[jobs] = r["samples_s"]
            label = f"{jobs} run(s) x {threads} thread(s)"
            print(f"{label:24s}{name:8s}{r['samples_s']:11.0f}{r['samples_s'] / rates[1]:11.2f}x", flush=True)
    print("ratios: samples per second of every run together against one run on every core, same inputs")


if __name__ == "__main__":
    main()
