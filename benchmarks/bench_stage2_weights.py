"""What the official Stage II loss weights cost a step: the ``cpu`` preset's Stage II (the ranking loss
alone, 1 : 0 : 0) against the official scripts' 2 : 1 : 0.1, which adds both instance losses and so
both 6,000-way classifiers to every step. One process, the two settings alternating over
``--repeats`` rounds on the same synthetic inputs as ``bench_train.py`` (its ``step_rate``); the
ratio of the medians is what the book's differences page quotes (probe W4 against W2).

    python benchmarks/bench_stage2_weights.py              # about a minute on 2 cores
    python benchmarks/bench_stage2_weights.py --preset cpu-narrow
"""
from __future__ import annotations

import argparse
import statistics

import torch

from bench_train import EMBED, POOLED, VOCAB, step_rate   # benchmarks/ is on sys.path when run as a script
from dualpath.config import preset
from dualpath.hardware import cpu_name
from dualpath.testing import synthetic_split
from dualpath.train import phases_of

WEIGHTS = {"1 : 0 : 0": dict(lambda_rank=1.0, lambda_img=0.0, lambda_txt=0.0),
           "2 : 1 : 0.1": dict(lambda_rank=2.0, lambda_img=1.0, lambda_txt=0.1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--images", type=int, default=640, help="train images (5 captions each)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="rounds, each timing both settings")
    args = ap.parse_args()
    split = synthetic_split(args.images, 5, n_views=2, dim=POOLED, vocab_size=VOCAB, max_len=32)
    base = dict(finetune_blocks=0, word_vectors="random", embed_dim=EMBED, progress=False, device="cpu")
    rates: dict[str, list[float]] = {name: [] for name in WEIGHTS}
    flops: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, weights in WEIGHTS.items():
            cfg = preset(args.preset, **base, **weights)
            rate, flop = step_rate(cfg, split, phases_of(cfg)[1], args.steps)
            rates[name].append(rate)
            flops[name] = flop
    cfg = preset(args.preset, **base)
    print(f"{cpu_name()}; {torch.get_num_threads()} thread(s); preset {args.preset!r}: text CNN "
          f"{'-'.join(map(str, cfg.text_blocks))} at width {cfg.text_width:g}, bf16 autocast {cfg.amp_cpu}; "
          f"Stage II step, batch {cfg.batch_size}")
    for name in WEIGHTS:
        print(f"  {name:12s} {statistics.median(rates[name]):6.0f} samples/s (median of {args.repeats}: "
              f"{', '.join(f'{r:.0f}' for r in rates[name])}), {flops[name] / 1e6:.0f} MFLOP a sample")
    slow, fast = (statistics.median(rates[n]) for n in ("2 : 1 : 0.1", "1 : 0 : 0"))
    print(f"a 2 : 1 : 0.1 step costs {fast / slow:.2f}x a 1 : 0 : 0 step")


if __name__ == "__main__":
    main()
