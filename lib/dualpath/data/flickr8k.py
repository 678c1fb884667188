"""Flickr8k loader: the shared ``captions.tsv`` layout or the original published text files.

Shared layout (``flickr8k_224/``)::

    captions.tsv            header ``image<TAB>caption_id<TAB>caption``
    images/<name>.jpg
    splits/<split>.txt      one image name per line (train, val, test, mini_*)

Original layout (as distributed by the University of Illinois)::

    Flickr8k.token.txt              ``<name>.jpg#<k><TAB><caption>``
    Flickr_8k.{train,dev,test}Images.txt   (dev becomes ``val``)
    Flicker8k_Dataset/<name>.jpg    (or ``images/``; pass ``images=`` for another folder)

The original layout has no ``mini_*`` lists, so they are derived as the shared data's README
defines them: ``mini_train``, ``mini_val``, ``mini_test`` are the first 200 of train, 50 of val
and 100 of test (the whole split when it is smaller), so smoke runs work on either layout.

Captions whose image file is absent are ignored (the published token file names
``2258277193_586949ec62.jpg.1``, which has no image), but a split that names an absent
image is an error: silently shrinking a test split would make results incomparable.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from .corpus import Corpus, CorpusBuilder, existing_files, require_dir, require_file

log = logging.getLogger(__name__)

TSV_HEADER = ["image", "caption_id", "caption"]
TOKEN_FILE = "Flickr8k.token.txt"
ORIGINAL_SPLITS = {"train": "Flickr_8k.trainImages.txt",
                   "val": "Flickr_8k.devImages.txt",
                   "test": "Flickr_8k.testImages.txt"}
MINI_SPLITS = {"mini_train": ("train", 200), "mini_val": ("val", 50), "mini_test": ("test", 100)}
IMAGE_FOLDERS = ("images", "Flicker8k_Dataset", "Flickr8k_Dataset")
_TOKEN_ID = re.compile(r"^(?P<image>.+)#(?P<k>\d+)$")

DOWNLOAD_HINT = ("point it at the flickr8k_224/ folder of the shared data, or at the folder holding "
                 f"{TOKEN_FILE} and the Flickr_8k.*Images.txt lists")


def load_flickr8k(root: str | os.PathLike, *, images: str | os.PathLike | None = None,
                  name: str = "flickr8k") -> Corpus:
    """Load Flickr8k from ``root`` in either layout (detected from the files present).

    ``images`` is the image folder, absolute or relative to ``root``; by default the first
    existing of ``images/``, ``Flicker8k_Dataset/``, ``Flickr8k_Dataset/`` under ``root``.
    ``image_label`` is the image index (instance loss: every image is its own class).
    """
    root = require_dir(root, "Flickr8k folder", DOWNLOAD_HINT)
    image_dir = _image_dir(root, images)
    if (root / "captions.tsv").is_file():
        captions = _read_captions_tsv(root / "captions.tsv")
        split_files = _shared_split_files(root / "splits")
        derived: dict[str, tuple[str, int]] = {}  # the shared layout ships its mini_* lists
    elif (root / TOKEN_FILE).is_file():
        captions = read_token_file(root / TOKEN_FILE)
        split_files = {split: require_file(root / fname, f"Flickr8k {split} split list")
                       for split, fname in ORIGINAL_SPLITS.items()}
        derived = MINI_SPLITS
    else:
        raise DataError(f"{root} holds neither captions.tsv nor {TOKEN_FILE}; {DOWNLOAD_HINT}")
    return _assemble(name, image_dir, captions, split_files, derived)


# ---------------------------------------------------------------------- caption files
def _read_captions_tsv(path: Path) -> Iterator[tuple[str, str]]:
    """Yield (image, caption) from the shared TSV, checking its shape."""
    lines = numbered_lines(path)
    first = next(lines, None)
    if first is None or first[1].split("\t") != TSV_HEADER:
        got = "an empty file" if first is None else repr(first[1][:80])
        raise DataError(f"{path}:1: expected the header 'image<TAB>caption_id<TAB>caption', got {got}")
    for lineno, line in lines:
        parts = line.split("\t", 2)
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
            raise DataError(f"{path}:{lineno}: expected 'image<TAB>caption_id<TAB>caption' with an "
                            f"integer caption_id, got {line[:80]!r}")
        yield parts[0], parts[2].strip()


def read_token_file(path: Path) -> Iterator[tuple[str, str]]:
    """Yield (image, caption) from ``Flickr8k.token.txt``."""
    for lineno, line in numbered_lines(path):
        parts = line.split("\t", 1)
        match = _TOKEN_ID.match(parts[0]) if len(parts) == 2 else None
        if match is None:
            raise DataError(f"{path}:{lineno}: expected '<image>.jpg#<k><TAB><caption>', got {line[:80]!r}")
        yield match["image"], parts[1].strip()


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers, newline stripped."""
    # Decode line by line (not through a text-mode file) so a bad byte is reported at its line.
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not UTF-8 text ({e.reason})") from e
            if line.strip():
                yield lineno, line


# ---------------------------------------------------------------------- splits and images
def _shared_split_files(split_dir: Path) -> dict[str, Path]:
    require_dir(split_dir, "Flickr8k split folder", "it should hold train.txt, val.txt and test.txt")
    files = {p.stem: p for p in sorted(split_dir.glob("*.txt"))}
    if not files:
        raise DataError(f"{split_dir} holds no <split>.txt files; it should hold train.txt, val.txt, test.txt")
    return files


def _image_dir(root: Path, images: str | os.PathLike | None) -> Path:
    if images is not None:
        return require_dir(root / images, "Flickr8k image folder")
    for candidate in IMAGE_FOLDERS:
        if (root / candidate).is_dir():
            return root / candidate
    raise DataError(f"no Flickr8k image folder under {root} (looked for {', '.join(IMAGE_FOLDERS)}); "
                    f"pass images=<folder holding the .jpg files>")


def _assemble(name: str, image_dir: Path, captions: Iterator[tuple[str, str]],
              split_files: dict[str, Path], derived: dict[str, tuple[str, int]]) -> Corpus:
    """Build the corpus; ``derived`` maps a split to (the split it is a prefix of, its length)."""
    present = existing_files(image_dir)
    builder = CorpusBuilder(name, image_dir)
    absent: set[str] = set()
    for image, caption in captions:
        if image not in present:
            absent.add(image)
            continue
        builder.add_caption(builder.add_image(image), caption)
    if absent:
        log.info("%s: ignored captions of %d image(s) absent from %s, e.g. %s",
                 name, len(absent), image_dir, sorted(absent)[0])
    split_ids = {split: _read_split(path, split, builder, present) for split, path in split_files.items()}
    split_ids.update({split: split_ids[source][:n] for split, (source, n) in derived.items()})
    for split, ids in split_ids.items():
        for image_id in ids:
            builder.add_to_split(split, image_id)
    return builder.build()


def _read_split(path: Path, split: str, builder: CorpusBuilder, present: set[str]) -> list[int]:
    """Image ids listed in one split file; any unknown, absent or repeated image is an error."""
    ids: list[int] = []
    seen: dict[str, int] = {}
    for lineno, line in numbered_lines(path):
        image = line.strip()
        image_id = builder.image_id(image)
        if image_id is None:
            why = "has no captions" if image in present else f"is not in {builder.image_root}"
            raise DataError(f"{path}:{lineno}: split names image {image!r}, which {why}")
        if image in seen:
            raise DataError(f"{path}:{lineno}: image {image!r} is listed again (first on line {seen[image]})")
        seen[image] = lineno
        ids.append(image_id)
    if not ids:
        raise DataError(f"split file {path} is empty (split {split!r})")
    return ids
