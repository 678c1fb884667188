"""Karpathy split JSON (``dataset_flickr8k.json``, ``dataset_flickr30k.json``, ``dataset_coco.json``).

Shape: ``{"dataset": str, "images": [{"filename", "filepath"?, "split", "sentences": [{"raw", "tokens"}]}]}``.
``restval`` (COCO) counts as train, giving the standard 113,287 training images. Captions are
taken from ``raw``, not the lower-cased ``tokens``: the paper matched words against
case-sensitive word2vec, so the original case must survive (SPEC section 4).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .corpus import Corpus, CorpusBuilder, check_images_exist, get_key, read_json, require_dir

SPLIT_NAMES = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def load_karpathy(json_path: str | os.PathLike, image_root: str | os.PathLike, *,
                  name: str | None = None, check_images: bool = True) -> Corpus:
    """Load a Karpathy split file; image paths are ``[filepath/]filename`` under ``image_root``.

    ``name`` defaults to the file's ``dataset`` field. With ``check_images`` (default) every
    listed image must exist, so a wrong ``image_root`` fails here rather than mid-training.
    """
    json_path = Path(json_path)
    data = read_json(json_path, "Karpathy split file")
    entries = get_key(data, "images", json_path, "the top-level object", list)
    dataset = data.get("dataset") if isinstance(data.get("dataset"), str) else json_path.stem
    image_root = require_dir(image_root, "image folder", "pass the folder the JSON's filenames are relative to") if check_images else Path(image_root)
    builder = CorpusBuilder(name or dataset, image_root)
    for i, entry in enumerate(entries):
        _add_entry(builder, entry, i, json_path)
    if check_images:
        check_images_exist(builder, json_path)
    return builder.build()


def _add_entry(builder: CorpusBuilder, entry: dict, i: int, path: Path) -> None:
    where = f"images[{i}]"
    filename = get_key(entry, "filename", path, where, str)
    split = get_key(entry, "split", path, where, str)
    sentences = get_key(entry, "sentences", path, where, list)
    if split not in SPLIT_NAMES:
        raise DataError(f"{path}: {where} has split {split!r}; expected one of {sorted(SPLIT_NAMES)}")
    folder = entry.get("filepath") or ""
    rel = f"{folder}/{filename}" if folder else filename
    if builder.image_id(rel) is not None:
        raise DataError(f"{path}: {where} repeats image {rel!r}")
    image_id = builder.add_image(rel)
    builder.add_to_split(SPLIT_NAMES[split], image_id)
    for j, sentence in enumerate(sentences):
        raw = get_key(sentence, "raw", path, f"{where}.sentences[{j}]", str)
        builder.add_caption(image_id, raw.strip())
