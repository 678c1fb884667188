"""The files the "Try it" page loads, made from the run the book trains.

``write_page_data(run_dir, out)`` writes into ``out`` (``book/generated/try_it/`` in the book build,
where the pipeline calls it after the notebooks):

* the export of :mod:`dualpath.export` with ``--half-weights``: ``text_encoder.onnx`` (the large
  weights in float16, so the page stays light; the arithmetic is float32), ``tokenizer.json``,
  ``model.json`` (commit, run, test metrics), and ``image_head.onnx``, which the page does not load;
* ``images.f16``: the test images' test-time embeddings, exactly those the run's evaluation ranks
  (:meth:`dualpath.train.rundir.Run.embed`), as little-endian float16 ``[n_images, d]``;
* ``index.json``: every test image's file name, thumbnail and own captions, the test captions, and
  for each image the ``TOP_CAPTIONS`` captions ranked first for it (image -> text, from the run's
  test caption embeddings), with the commit and metrics of ``model.json``;
* ``thumbs/NNNN.jpg``: a small thumbnail of each test image (the page loads only those it shows);
* a ``.gz`` copy of each of these files that the page loads but ``model.json``: the page inflates them
  itself, so that it stays light on a static host that does not compress what it serves.

The caption embeddings cost minutes on a CPU (every caption at every offset), so the files are
kept with a key (the checkpoint, the run's metrics and this code): a second build with the same run
rewrites nothing.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from dualpath import export as exporter
from dualpath.io import write_json_atomic

THUMB_SIZE = 96              # longest side in pixels: the page shows them 96 px wide
THUMB_QUALITY = 80
TOP_CAPTIONS = 5
KEY_FILE = ".key.json"
INDEX_FILE, IMAGES_FILE, THUMBS_DIR = "index.json", "images.f16", "thumbs"
#: the files the page loads gzip-compressed (it inflates them itself): a static host need not compress
GZIPPED = (exporter.TEXT_FILE, INDEX_FILE, exporter.TOKENIZER_FILE, IMAGES_FILE)
#: what the page loads, besides the thumbnails it shows
PAGE_FILES = (*(f"{name}.gz" for name in GZIPPED), exporter.META_FILE)


def page_key(run_dir: str | Path) -> str:
    """What the page data depends on: the final checkpoint, the run's metrics and the code writing them."""
    run = exporter.load_run_files(run_dir)
    h = hashlib.sha256()
    for path in (run.checkpoint, run.metrics_file, Path(exporter.__file__), Path(__file__)):
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()


def is_current(out: str | Path, key: str) -> bool:
    out = Path(out)
    try:
        stored = json.loads((out / KEY_FILE).read_text()).get("key")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return False
    return stored == key and all((out / name).is_file() for name in PAGE_FILES)


def write_page_data(run_dir: str | Path, out: str | Path, data_root=None, log=print) -> Path:
    """Write (or keep, when current) the page's files for the finished run ``run_dir`` into ``out``."""
    from dualpath.train import open_run

    run_dir, out = Path(run_dir), Path(out)
    key = page_key(run_dir)
    if is_current(out, key):
        log(f"try_it: page data of {run_dir.name} unchanged, kept in {out}")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        t0 = time.perf_counter()
        meta = exporter.export(run_dir, tmp, half_weights=True)
        t1 = time.perf_counter()
        run = open_run(run_dir, data_root, log=lambda *a: None)
        phase = meta["phase"]
        img, txt, test = run.test_embeddings(phase)
        log(f"try_it: exported in {t1 - t0:.0f} s, test embeddings in {time.perf_counter() - t1:.0f} s")
        (tmp / IMAGES_FILE).write_bytes(img.numpy().astype("<f2").tobytes())
        top = exporter.topk(img.numpy() @ txt.numpy().T, TOP_CAPTIONS)
        thumbs = write_thumbnails(test.image_paths(), tmp / THUMBS_DIR)
        index = {
            "commit": meta["commit"], "run": meta["run"], "phase": phase, "test_metrics": meta["test_metrics"],
            "images": [{"name": Path(name).name, "thumb": thumb, "captions": test.captions_of(i)}
                       for i, (name, thumb) in enumerate(zip(test.images, thumbs))],
            "captions": list(test.captions),
            "top_captions": top.tolist(),
            "embeddings": {"file": IMAGES_FILE, "dtype": "float16", "shape": [len(test.images), int(img.shape[1])]},
        }
        write_json_atomic(tmp / INDEX_FILE, index)
        for name in GZIPPED:   # mtime 0: the same file always gives the same bytes
            (tmp / f"{name}.gz").write_bytes(gzip.compress((tmp / name).read_bytes(), 9, mtime=0))
        write_json_atomic(tmp / KEY_FILE, {"key": key, "run_dir": str(run_dir)})
        tmp.chmod(0o755)   # mkdtemp makes it 0700
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"try_it: page data of {run_dir.name} written to {out}")
    return out


def write_thumbnails(paths: list[Path], folder: Path) -> list[str]:
    """A JPEG of each image, its longest side ``THUMB_SIZE``; their paths relative to the page data."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, path in enumerate(paths):
        name = f"{i:04d}.jpg"
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
            image.save(folder / name, quality=THUMB_QUALITY, optimize=True)
        names.append(f"{THUMBS_DIR}/{name}")
    return names
