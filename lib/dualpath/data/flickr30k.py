"""Flickr30k with the official code's own split (SPEC 4), beside Karpathy's (``load_karpathy``).

The authors' ``split_Flickr30k.m`` makes the 1,000 Flickr30k images whose Flickr id is in
Flickr8k's test list the test split, those in its dev list the validation split, and every other
image (29,783) the training set. Flickr8k names an image ``<flickr id>_<secret>.jpg`` and
Flickr30k ``<flickr id>.jpg``, so the id is what both share. Karpathy's JSON holds only 31,014
of the 31,783 images, so the captions come from the original ``results_20130124.token``::

    flickr30k/results_20130124.token     ``<id>.jpg#<k><TAB><caption>``, 5 per image
    flickr30k/flickr30k-images/<id>.jpg  (or images/)

Flickr8k's lists are read from ``Flickr_8k.{test,dev}Images.txt`` in the same folder, else from
the Flickr8k folder beside it (``flickr8k_224/splits/{test,val}.txt`` or the original lists).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .corpus import Corpus, CorpusBuilder, existing_files, require_dir, require_file
from .flickr8k import ORIGINAL_SPLITS, numbered_lines, read_token_file

TOKEN_FILE = "results_20130124.token"
IMAGE_FOLDERS = ("flickr30k-images", "images")


def flickr_id(name: str) -> str:
    """The Flickr photo id in a Flickr8k (``<id>_<secret>.jpg``) or Flickr30k (``<id>.jpg``) name."""
    return Path(name).stem.split("_", 1)[0]


def load_flickr30k_official(folder: str | os.PathLike, test_list: str | os.PathLike,
                            val_list: str | os.PathLike, *, name: str = "flickr30k_official") -> Corpus:
    """Flickr30k from its token file, split as the official code did by Flickr8k's ``test_list``
    and ``val_list`` (image names, one per line). Every image is its own class."""
    folder = require_dir(folder, "Flickr30k folder")
    tokens = require_file(folder / TOKEN_FILE, "Flickr30k caption file",
                          "it comes with the Flickr30k download (flickr30k.tar.gz)")
    image_dir = next((folder / f for f in IMAGE_FOLDERS if (folder / f).is_dir()), None)
    if image_dir is None:
        raise DataError(f"no Flickr30k image folder under {folder} (looked for {', '.join(IMAGE_FOLDERS)})")
    present = existing_files(image_dir)
    builder = CorpusBuilder(name, image_dir)
    for image, caption in read_token_file(tokens):
        if image not in present:
            raise DataError(f"{tokens}: caption of image {image!r}, which is not in {image_dir}")
        image_id = builder.image_id(image)
        builder.add_caption(image_id if image_id is not None else builder.add_image(image), caption)
    by_id = {flickr_id(image): i for i, image in enumerate(builder.images)}
    held_out: dict[str, list[int]] = {}
    for split, path in (("test", Path(test_list)), ("val", Path(val_list))):
        ids = [flickr_id(line.strip()) for _, line in numbered_lines(require_file(path, f"Flickr8k {split} list"))]
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise DataError(f"{path}: {len(missing)} of its {len(ids)} Flickr ids are not in Flickr30k "
                            f"(e.g. {missing[0]}); is it Flickr8k's {split} list?")
        held_out[split] = [by_id[i] for i in ids]
    if set(held_out["test"]) & set(held_out["val"]):
        raise DataError(f"{test_list} and {val_list} share images")
    taken = set(held_out["test"]) | set(held_out["val"])
    for split, ids in held_out.items():
        for image_id in ids:
            builder.add_to_split(split, image_id)
    for image_id in range(len(builder.images)):
        if image_id not in taken:
            builder.add_to_split("train", image_id)
    return builder.build()


def flickr8k_lists(flickr30k: Path, root: Path) -> tuple[Path, Path]:
    """(test list, val list) of Flickr8k for the official split: beside Flickr30k, else in Flickr8k's folder."""
    candidates = [(flickr30k / ORIGINAL_SPLITS["test"], flickr30k / ORIGINAL_SPLITS["val"])]
    for f8k in ("flickr8k_224", "flickr8k"):
        candidates.append((root / f8k / "splits" / "test.txt", root / f8k / "splits" / "val.txt"))
        candidates.append((root / f8k / ORIGINAL_SPLITS["test"], root / f8k / ORIGINAL_SPLITS["val"]))
    for test, val in candidates:
        if test.is_file() and val.is_file():
            return test, val
    raise DataError(f"the official Flickr30k split needs Flickr8k's test and dev image lists; put "
                    f"{ORIGINAL_SPLITS['test']} and {ORIGINAL_SPLITS['val']} in {flickr30k} "
                    f"(they come with Flickr8k_text.zip)")
