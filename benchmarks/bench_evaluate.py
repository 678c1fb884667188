"""Speed of the vectorised retrieval ranking against a per-query loop and the bare product.

Three timings on the MSCOCO-5K shape (5,000 images x 25,000 captions, d = 1,024):

  (a) ``dualpath.evaluate.retrieval_metrics``: chunked matrix product, counting by comparison.
  (b) ``dualpath.evaluate_reference``, the definition (a) must equal: a per-query loop in the
      style of VSE++'s ``i2t``/``t2i``. For each query it takes one numpy dot product against
      all candidates, sorts it, and finds its positives in the order.
  (c) The chunked similarity product ``img @ txt.T`` alone: no method can beat it.

The embeddings are random sign vectors with entries +-1/32, and each caption is its image's
vector with 45% of the signs flipped. They are exactly unit-norm, and every dot product is
exact in float32 whatever the summation order. So (a) and (b) see bit-identical
similarities, with thousands of exact ties that both must break by the same pessimistic
rule. The check below (identical ranks, AP to 1e-12) is therefore exact.

    python benchmarks/bench_evaluate.py                    # full size, loop over every query
    python benchmarks/bench_evaluate.py --loop-queries 500 # loop over a subset, extrapolated

The last line reads ``speedup vs per-query loop: Nx; time / matmul-only: Mx``.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from dualpath.evaluate import retrieval_metrics, retrieval_ranks, summarise_ranks
from dualpath.evaluate_reference import reference_ranks


def make_embeddings(n_images: int, per_image: int, dim: int, flip: float, seed: int,
                    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Sign-vector image embeddings and noisy copies as captions (see module docstring)."""
    g = torch.Generator().manual_seed(seed)
    scale = 1.0 / math.sqrt(dim)  # exact because dim is a power of 4
    img_signs = torch.randint(0, 2, (n_images, dim), generator=g, dtype=torch.int8) * 2 - 1
    caption_image = np.repeat(np.arange(n_images), per_image)
    flips = torch.where(torch.rand(len(caption_image), dim, generator=g) < flip, -1, 1)
    txt_signs = img_signs[torch.as_tensor(caption_image)] * flips.to(torch.int8)
    return img_signs.float() * scale, txt_signs.float() * scale, caption_image


# --------------------------------------------------------------------------------------
# (c) the product alone
# --------------------------------------------------------------------------------------

def matmul_only(img: torch.Tensor, txt: torch.Tensor, chunk_size: int) -> None:
    """The similarity product in the same row chunks and into one reused buffer, as in (a)."""
    buffer = torch.empty(min(chunk_size, len(img)) * len(txt))
    for start in range(0, len(img), chunk_size):
        rows = min(chunk_size, len(img) - start)
        torch.mm(img[start:start + rows], txt.T, out=buffer[:rows * len(txt)].view(rows, -1))


def best_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function, run in turns so that a load spike from another
    process hits all of them alike rather than whichever ran during it."""
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-images", type=int, default=5000)
    p.add_argument("--captions-per-image", type=int, default=5)
    p.add_argument("--dim", type=int, default=1024, help="a power of 4, so +-1/sqrt(dim) is exact")
    p.add_argument("--flip", type=float, default=0.45, help="fraction of caption signs flipped")
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3, help="(a) and (c): best of this many runs")
    p.add_argument("--loop-queries", type=int, default=None,
                   help="run (b) for the first N images and their captions only, and "
                        "extrapolate its time linearly (printed as such); default: all")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.dim < 1 or 4 ** round(math.log(args.dim, 4)) != args.dim:
        p.error("--dim must be a power of 4 (256, 1024, 4096)")
    return args


@torch.no_grad()
def main(argv=None) -> None:
    args = parse_args(argv)
    img, txt, caption_image = make_embeddings(args.n_images, args.captions_per_image, args.dim,
                                              args.flip, args.seed)
    n_img, n_cap = len(img), len(txt)
    print(f"data: {n_img} images x {n_cap} captions, d={args.dim}, float32 "
          f"(+-1/{math.isqrt(args.dim)} sign vectors: exact dot products, many exact ties)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"chunk_size {args.chunk_size}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (timings are noisy on shared cores)")

    t_mm, t_vec = best_times([
        lambda: matmul_only(img, txt, args.chunk_size),
        lambda: retrieval_metrics(img, txt, caption_image, chunk_size=args.chunk_size),
    ], args.repeats)
    print(f"(c) matmul only, chunked:            {t_mm:8.2f} s  (best of {args.repeats})")
    print(f"(a) retrieval_metrics (vectorised):  {t_vec:8.2f} s  (best of {args.repeats})")

    n_q = n_img if args.loop_queries is None else min(args.loop_queries, n_img)
    first = {"i2t": n_q, "t2i": int(np.searchsorted(caption_image, n_q))}  # those images' captions
    start = time.perf_counter()
    looped = {d: reference_ranks(img, txt, caption_image, directions=(d,), first=n)[d]
              for d, n in first.items()}
    t_loop = time.perf_counter() - start
    if n_q == n_img:
        print(f"(b) per-query loop (reference):      {t_loop:8.2f} s  "
              f"(all {n_img} + {n_cap} queries)")
    else:
        t_loop *= (n_img + n_cap) / (first["i2t"] + first["t2i"])
        print(f"(b) per-query loop (reference):      {t_loop:8.2f} s  EXTRAPOLATED linearly "
              f"from {first['i2t']} image + {first['t2i']} caption queries")

    vectorised = retrieval_ranks(img, txt, caption_image, chunk_size=args.chunk_size)
    for d, n in first.items():
        np.testing.assert_array_equal(vectorised[d].rank0[:n], looped[d].rank0)
        np.testing.assert_allclose(vectorised[d].ap[:n], looped[d].ap, rtol=0, atol=1e-12)
    print(f"check: identical per-query ranks and AP (to 1e-12) for "
          f"{first['i2t']} + {first['t2i']} queries")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    m = summarise_ranks(vectorised)
    print("metrics: " + ", ".join(f"{k} {v:.2f}" for k, v in m.items()))
    print(f"speedup vs per-query loop: {t_loop / t_vec:.1f}x; "
          f"time / matmul-only: {t_vec / t_mm:.2f}x")


if __name__ == "__main__":
    main()
