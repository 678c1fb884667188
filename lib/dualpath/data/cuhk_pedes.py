"""CUHK-PEDES ``reid_raw.json``: a list of ``{split, captions, file_path, processed_tokens, id}``.

Unlike Flickr and COCO, the class is the person, not the image: several images share one
``id``, and Stage I pairs an image with a caption of *any* image of the same person
(SPEC section 3.3). Labels are the person ids re-indexed densely in order of first appearance.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .corpus import Corpus, CorpusBuilder, check_images_exist, get_key, read_json, require_dir

SPLITS = ("train", "val", "test")


def load_cuhk_pedes(json_path: str | os.PathLike, image_root: str | os.PathLike, *,
                    name: str = "cuhk_pedes", check_images: bool = True) -> Corpus:
    """Load CUHK-PEDES; ``image_root`` is the ``imgs/`` folder that ``file_path`` is relative to."""
    json_path = Path(json_path)
    entries = read_json(json_path, "CUHK-PEDES reid_raw.json")
    if not isinstance(entries, list):
        raise DataError(f"{json_path}: expected a JSON list of image entries, got {type(entries).__name__}")
    image_root = require_dir(image_root, "CUHK-PEDES image folder") if check_images else Path(image_root)
    builder = CorpusBuilder(name, image_root)
    for i, entry in enumerate(entries):
        _add_entry(builder, entry, i, json_path)
    if check_images:
        check_images_exist(builder, json_path)
    return builder.build()


def _add_entry(builder: CorpusBuilder, entry: dict, i: int, path: Path) -> None:
    where = f"entry [{i}]"
    split = get_key(entry, "split", path, where, str)
    captions = get_key(entry, "captions", path, where, list)
    file_path = get_key(entry, "file_path", path, where, str)
    person = get_key(entry, "id", path, where, int)
    if split not in SPLITS:
        raise DataError(f"{path}: {where} has split {split!r}; expected one of {list(SPLITS)}")
    if builder.image_id(file_path) is not None:
        raise DataError(f"{path}: {where} repeats image {file_path!r}")
    # Label by person id, so the same person across images is one class.
    image_id = builder.add_image(file_path, label=person)
    builder.add_to_split(split, image_id)
    for j, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise DataError(f"{path}: {where}, captions[{j}] should be a string, got {type(caption).__name__}")
        builder.add_caption(image_id, caption.strip())
