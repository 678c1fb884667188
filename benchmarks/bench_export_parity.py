"""The exported text encoder against PyTorch on every test caption of a run, as exported for use and
as the Try it page loads it.

For each export (float32 weights; float16 weights, float32 arithmetic) it runs the ONNX text encoder
under onnxruntime on every test caption and compares with the run's own test-time caption embeddings
(``Run.embed``, what the evaluation ranks): the largest absolute difference, and for how many captions
the top-10 test images are the same list. The page also holds the image embeddings in float16, so the
float16 export is compared against them too (top-10 and top-5).

    python benchmarks/bench_export_parity.py runs/book/cpu-efficientnet_lite0-seed0 [--weights half]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dualpath import export as exporter
from dualpath.train import open_run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--data-root")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: its default)")
    ap.add_argument("--weights", choices=("both", "float32", "half"), default="both", help="which exports to check")
    args = ap.parse_args(argv)
    run = open_run(args.run_dir, args.data_root, log=lambda *a: None)
    phase = run.phases[-1].name
    run.load_best(phase)
    t0 = time.perf_counter()
    img, txt = run.embed("test", phase)
    print(f"PyTorch test embeddings: {len(img)} images, {len(txt)} captions in {time.perf_counter() - t0:.0f} s")
    images, reference = img.numpy(), txt.numpy()
    rows = exporter.caption_rows(run.data.vocab, run.test_corpus.captions, run.cfg.max_len)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for half in {"both": (False, True), "float32": (False,), "half": (True,)}[args.weights]:
            out = Path(tmp) / ("half" if half else "float32")
            exporter.export(args.run_dir, out, half_weights=half)
            size = (out / exporter.TEXT_FILE).stat().st_size
            t0 = time.perf_counter()
            got = exporter.onnx_text_embeddings(exporter.onnx_session(out / exporter.TEXT_FILE, args.threads), rows)
            seconds = time.perf_counter() - t0
            label = "float16 weights" if half else "float32 weights"
            checks = [("images float32", images, 10)]
            if half:
                page_images = images.astype(np.float16).astype(np.float32)
                checks += [("images float16 as on the page", page_images, 10),
                           ("images float16 as on the page", page_images, 5)]
            for what, keys, k in checks:
                p = exporter.compare(reference, got, images, k, got_image_emb=keys)
                print(f"{label} ({size / 1e6:.1f} MB, onnxruntime {seconds:.0f} s), {what}: max |diff| "
                      f"{p.max_abs_diff:.2e}; top-{k} identical for {p.topk_identical} of {p.n_captions} captions"
                      + (f" (differ: {p.first_differing})" if not p.ok else ""))
                failed |= not half and not p.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
