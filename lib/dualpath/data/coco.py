"""MS-COCO captions JSON (``captions_train2017.json``, ``captions_val2014.json``, ...).

Each JSON file becomes one split. Its images live in the folder named after the file's
suffix (``captions_val2017.json`` -> ``<image_root>/val2017/``), as in the official
COCO download; a flat ``image_root`` holding the files directly is accepted too.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from .corpus import Corpus, CorpusBuilder, check_images_exist, get_key, read_json, require_dir


def load_coco(json_paths: Sequence[str | os.PathLike] | str | os.PathLike, image_root: str | os.PathLike,
              split_names: Sequence[str] | None = None, *, name: str = "coco",
              check_images: bool = True) -> Corpus:
    """Load one or more COCO caption files into one corpus, one split per file.

    ``split_names`` defaults to the file names: ``captions_train*`` -> ``train``,
    ``captions_val*`` -> ``test`` (COCO's public val set is the usual held-out set).
    Files given the same split name are merged into that split.
    """
    if isinstance(json_paths, (str, os.PathLike)):
        json_paths = [json_paths]
    paths = [Path(p) for p in json_paths]
    if not paths:
        raise DataError("load_coco needs at least one captions_*.json file")
    if split_names is None:
        split_names = [default_split_name(p) for p in paths]
    elif isinstance(split_names, str) or len(split_names) != len(paths):
        raise DataError(f"split_names must be a list with one name per JSON file ({len(paths)}), "
                        f"got {split_names!r}")
    image_root = require_dir(image_root, "COCO image folder") if check_images else Path(image_root)
    builder = CorpusBuilder(name, image_root)
    for path, split in zip(paths, split_names):
        _add_file(builder, path, split, image_folder(path, image_root))
    if check_images:
        check_images_exist(builder, ", ".join(str(p) for p in paths))
    return builder.build()


def default_split_name(path: Path) -> str:
    suffix = _suffix(path)
    if suffix.startswith("train"):
        return "train"
    if suffix.startswith("val"):
        return "test"
    raise DataError(f"cannot tell the split of {path} from its name; pass split_names=[...]")


def image_folder(path: Path, image_root: Path) -> str:
    """Folder of this file's images relative to ``image_root`` ('' when the root is flat)."""
    suffix = _suffix(path)
    return suffix if suffix and (Path(image_root) / suffix).is_dir() else ""


def _suffix(path: Path) -> str:
    # captions_train2017.json -> train2017
    stem = path.stem
    return stem.split("_", 1)[1] if "_" in stem else stem


def _add_file(builder: CorpusBuilder, path: Path, split: str, folder: str) -> None:
    data = read_json(path, "COCO captions file")
    images = get_key(data, "images", path, "the top-level object", list)
    annotations = get_key(data, "annotations", path, "the top-level object", list)
    ids: dict[int, int] = {}
    for i, entry in enumerate(images):
        file_name = get_key(entry, "file_name", path, f"images[{i}]", str)
        coco_id = get_key(entry, "id", path, f"images[{i}]", int)
        rel = f"{folder}/{file_name}" if folder else file_name
        if builder.image_id(rel) is not None:
            raise DataError(f"{path}: images[{i}] repeats image {rel!r}")
        ids[coco_id] = builder.add_image(rel)
        builder.add_to_split(split, ids[coco_id])
    for k, ann in enumerate(annotations):
        image_id = get_key(ann, "image_id", path, f"annotations[{k}]", int)
        caption = get_key(ann, "caption", path, f"annotations[{k}]", str)
        if image_id not in ids:
            raise DataError(f"{path}: annotations[{k}] refers to image_id {image_id}, "
                            f"which is not in the file's images list")
        builder.add_caption(ids[image_id], caption.strip())
