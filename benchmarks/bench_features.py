"""Throughput of frozen-CNN feature extraction: the feature-cache pipeline against a plain eager loop.

Both sides compute the pooled EfficientNet-Lite0 features of the same ``--n`` Flickr8k images (the
first N of the test split) in the two test-time views the cache stores (the image and its mirror
image), 32 images = 64 forward passes per batch, with the same ImageNet weights:

  (a) plain eager loop: the PyPI package's own model (``efficientnet_lite_pytorch.EfficientNet``,
      ``image_size=None`` as backbones.py built it before its CPU rewrite), contiguous tensors,
      autograd on, no DataLoader: per batch, read the images with PIL, apply
      ``dualpath.data.images.test_transform`` (plain and flipped), run the model.
  (b) ``dualpath.features.extract``: ``build_backbone("efficientnet_lite0")`` (TF-"same" padding
      given to the convolutions, in-place BatchNorm / ReLU6 at inference), channels-last,
      ``torch.inference_mode``, one DataLoader worker decoding JPEGs.

Timings alternate (a), (b) for ``--repeats`` rounds after a warm-up and keep each side's best, so
load from other processes on a shared machine biases both sides alike.  The features of (a) and (b)
are compared as a correctness check.

    python benchmarks/bench_features.py                # 256 images, 3 rounds
    python benchmarks/bench_features.py --n 64 --repeats 1 --threads 1

The last line reads ``speed-up vs plain eager loop: X.Xx``.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from dualpath.data import load_corpus, load_image, test_transform
from dualpath.features import FeatureSpec, extract
from dualpath.models import build_backbone
from dualpath.models.efficientnet_lite import efficientnet_lite0_file

BATCH_IMAGES = 32   # images per batch on both sides (x 2 views = the cache's default batch of 64)
VIEWS = 2           # the image and its mirror image, as the cache stores for val / test splits


def package_model() -> torch.nn.Module:
    """The package's EfficientNet-Lite0 exactly as backbones.py constructed it before its rewrite."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    net.load_state_dict(torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True))
    return net.eval()


def plain_loop(net: torch.nn.Module, paths: list, size: int) -> torch.Tensor:
    """(a): pooled features [views, n, C] from a straightforward eager loop."""
    plain, flip = test_transform(size), test_transform(size, flip=True)
    out = []
    for i in range(0, len(paths), BATCH_IMAGES):
        images = [load_image(p) for p in paths[i:i + BATCH_IMAGES]]
        x = torch.stack([plain(im) for im in images] + [flip(im) for im in images])
        pooled = net.extract_features(x).mean(dim=(2, 3))        # the old Backbone.forward
        out.append(pooled.detach().unflatten(0, (VIEWS, len(images))))
    return torch.cat(out, dim=1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=256, help="number of Flickr8k images")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per side (best kept)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--top-blocks", type=int, default=0,
                   help="(b) also returns the maps entering the last k top blocks, as Stage II caches do")
    p.add_argument("--num-workers", type=int, default=None, help="(b) DataLoader workers (default: extract's)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_corpus("flickr8k")
    ids = corpus.splits["test"][:args.n]
    if len(ids) < args.n:
        raise SystemExit(f"flickr8k test split has only {len(ids)} images")
    bench = dataclasses.replace(corpus, splits={"bench": ids})
    paths = [corpus.image_path(int(i)) for i in ids]

    net = package_model()
    backbone = build_backbone("efficientnet_lite0")
    spec = FeatureSpec("efficientnet_lite0", "imagenet", backbone.input_size, args.top_blocks, VIEWS, seed=0)
    warm = dataclasses.replace(corpus, splits={"bench": ids[:4]})

    def run_a() -> torch.Tensor:
        return plain_loop(net, paths, backbone.input_size)

    def run_b() -> torch.Tensor:
        return extract(spec, backbone, bench, "bench", batch_size=BATCH_IMAGES * VIEWS,
                       num_workers=args.num_workers, show_progress=False)[0]

    plain_loop(net, paths[:4], backbone.input_size)                  # warm-up: oneDNN kernel creation
    extract(spec, backbone, warm, "bench", batch_size=8, num_workers=0, show_progress=False)
    best = {"a": float("inf"), "b": float("inf")}
    feats = {}
    for _ in range(args.repeats):
        for side, run in (("a", run_a), ("b", run_b)):
            t0 = time.perf_counter()
            feats[side] = run()
            best[side] = min(best[side], time.perf_counter() - t0)

    n = len(ids)
    diff = (feats["a"] - feats["b"]).abs().max().item()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n} Flickr8k images x {VIEWS} views "
          f"(plain + flip), {BATCH_IMAGES} images per batch, best of {args.repeats}")
    print(f"(a) plain eager loop, package model:     {n / best['a']:6.1f} images/s "
          f"({n * VIEWS / best['a']:6.1f} forward passes/s, {best['a']:.1f} s)")
    print(f"(b) dualpath.features.extract pipeline:  {n / best['b']:6.1f} images/s "
          f"({n * VIEWS / best['b']:6.1f} forward passes/s, {best['b']:.1f} s)")
    print(f"max |features (a) - (b)| = {diff:.2e} (feature scale {feats['a'].abs().max().item():.2f})")
    if not np.isfinite(diff) or diff > 1e-3:
        raise SystemExit("the two sides disagree: the benchmark compares different computations")
    print(f"speed-up vs plain eager loop: {best['a'] / best['b']:.1f}x")


if __name__ == "__main__":
    main()
