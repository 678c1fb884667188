"""The one in-memory representation of an image-caption dataset.

Every loader (Flickr8k, Karpathy JSON, COCO JSON, CUHK-PEDES) returns a :class:`Corpus`,
so training and evaluation never need to know which file format the data came from.
The helpers at the bottom are shared by the loaders so that every file problem is
reported the same way: which file, which line or entry, and what was expected.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Corpus:
    """Images, their captions, their classes and the named splits of one dataset.

    ``images[i]`` is a path relative to ``image_root``; the index ``i`` is the image id.
    ``caption_image[j]`` is the image id of caption ``j``. ``image_label[i]`` is the
    class of image ``i``: the image itself for Flickr/COCO (instance loss), the person
    id for CUHK-PEDES. ``splits`` maps a split name to the image ids it contains.

    The constructor validates everything and raises :class:`DataError` naming the
    offending split or image, so a bad corpus never reaches training.
    (``eq=False``: numpy fields make field-wise ``==`` ambiguous; compare fields instead.)
    """

    name: str
    image_root: Path
    images: list[str]
    captions: list[str]
    caption_image: np.ndarray
    image_label: np.ndarray
    splits: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise types once so every consumer can rely on them.
        set_ = object.__setattr__
        set_(self, "image_root", Path(self.image_root))
        set_(self, "images", list(self.images))
        set_(self, "captions", list(self.captions))
        set_(self, "caption_image", _int_array(self.caption_image, "caption_image"))
        set_(self, "image_label", _int_array(self.image_label, "image_label"))
        set_(self, "splits", {str(k): _int_array(v, f"split {k!r}") for k, v in self.splits.items()})
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        n_img, n_cap = len(self.images), len(self.captions)
        where = f"corpus {self.name!r}"
        if n_img == 0:
            raise DataError(f"{where} has no images")
        if len(set(self.images)) != n_img:
            dup = _first_duplicate(self.images)
            raise DataError(f"{where}: image {dup!r} is listed twice")
        if len(self.caption_image) != n_cap:
            raise DataError(f"{where}: {n_cap} captions but {len(self.caption_image)} caption_image entries")
        if n_cap and (self.caption_image.min() < 0 or self.caption_image.max() >= n_img):
            bad = int(np.flatnonzero((self.caption_image < 0) | (self.caption_image >= n_img))[0])
            raise DataError(f"{where}: caption {bad} points to image id {int(self.caption_image[bad])}, "
                            f"outside 0..{n_img - 1}")
        if len(self.image_label) != n_img:
            raise DataError(f"{where}: {n_img} images but {len(self.image_label)} labels")
        if self.image_label.min() < 0:
            raise DataError(f"{where}: image labels must be >= 0")
        without = np.flatnonzero(np.bincount(self.caption_image, minlength=n_img) == 0)
        if len(without):
            # Training pairs each image with one of its captions; evaluation needs a ground truth.
            raise DataError(f"{where}: {len(without)} image(s) have no caption, e.g. "
                            f"{self.images[without[0]]!r}")
        for split, ids in self.splits.items():
            self._validate_split(split, ids)

    def _validate_split(self, split: str, ids: np.ndarray) -> None:
        where = f"corpus {self.name!r}, split {split!r}"
        if len(ids) == 0:
            raise DataError(f"{where} is empty")
        if ids.min() < 0 or ids.max() >= len(self.images):
            raise DataError(f"{where} holds image ids outside 0..{len(self.images) - 1}")
        if len(np.unique(ids)) != len(ids):
            dup = _first_duplicate(ids.tolist())
            raise DataError(f"{where} lists image {self.images[dup]!r} twice")

    # ------------------------------------------------------------------ sizes
    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    @property
    def n_classes(self) -> int:
        """Number of distinct classes (instance loss: one per image; CUHK: one per person)."""
        return int(len(np.unique(self.image_label)))

    # ------------------------------------------------------------------ lookups
    def image_path(self, i: int) -> Path:
        return self.image_root / self.images[i]

    def image_paths(self) -> list[Path]:
        """The file of every image, by image id."""
        return [self.image_root / name for name in self.images]

    def captions_of(self, i: int) -> list[int]:
        """Caption indices of image ``i``, in corpus order."""
        return self._caption_index[i]

    @cached_property
    def _caption_index(self) -> list[list[int]]:
        # Built once: training samples a random own caption per image every step.
        index: list[list[int]] = [[] for _ in self.images]
        for j, i in enumerate(self.caption_image.tolist()):
            index[i].append(j)
        return index

    # ------------------------------------------------------------------ views
    def select(self, split: str) -> "Corpus":
        """The corpus restricted to one split, with labels re-indexed densely 0..K-1.

        Labels are numbered in order of first appearance among the split's images, so a
        classifier over the train split has exactly ``n_classes`` outputs.
        """
        if split not in self.splits:
            raise DataError(f"corpus {self.name!r} has no split {split!r}; "
                            f"it has {sorted(self.splits)}")
        ids = self.splits[split]
        new_id = np.full(self.n_images, -1, dtype=np.int64)
        new_id[ids] = np.arange(len(ids))
        keep = np.flatnonzero(new_id[self.caption_image] >= 0)
        return Corpus(
            name=self.name,
            image_root=self.image_root,
            images=[self.images[i] for i in ids.tolist()],
            captions=[self.captions[j] for j in keep.tolist()],
            caption_image=new_id[self.caption_image[keep]],
            image_label=dense_labels(self.image_label[ids]),
            splits={split: np.arange(len(ids), dtype=np.int64)},
        )

    def summary(self) -> dict[str, Any]:
        """JSON-safe sizes for logs, notebooks and the book."""
        per_image = np.bincount(self.caption_image, minlength=self.n_images)
        return {
            "name": self.name,
            "image_root": str(self.image_root),
            "n_images": self.n_images,
            "n_captions": self.n_captions,
            "n_classes": self.n_classes,
            "captions_per_image": {"min": int(per_image.min()), "mean": float(per_image.mean()),
                                   "max": int(per_image.max())},
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
        }

    def __repr__(self) -> str:
        splits = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return (f"Corpus({self.name!r}, images={self.n_images}, captions={self.n_captions}, "
                f"classes={self.n_classes}, splits: {splits})")


def dense_labels(labels: Iterable[Any]) -> np.ndarray:
    """Map arbitrary labels to 0..K-1 in order of first appearance."""
    seen: dict[Any, int] = {}
    return np.array([seen.setdefault(x, len(seen)) for x in labels], dtype=np.int64)


class CorpusBuilder:
    """Collects images, captions and splits while a loader reads its files."""

    def __init__(self, name: str, image_root: Path):
        self.name = name
        self.image_root = Path(image_root)
        self.images: list[str] = []
        self.labels: list[Any] = []
        self.captions: list[str] = []
        self.caption_image: list[int] = []
        self.splits: dict[str, list[int]] = {}
        self._id: dict[str, int] = {}

    def image_id(self, rel_path: str) -> int | None:
        return self._id.get(rel_path)

    def add_image(self, rel_path: str, label: Any = None) -> int:
        """Add an image (once); ``label`` defaults to the image itself."""
        if rel_path in self._id:
            return self._id[rel_path]
        self._id[rel_path] = len(self.images)
        self.images.append(rel_path)
        self.labels.append(rel_path if label is None else label)
        return self._id[rel_path]

    def add_caption(self, image_id: int, text: str) -> None:
        self.captions.append(text)
        self.caption_image.append(image_id)

    def add_to_split(self, split: str, image_id: int) -> None:
        self.splits.setdefault(split, []).append(image_id)

    def build(self) -> Corpus:
        """Drop images without captions (useless for retrieval) and make the Corpus."""
        counts = np.bincount(np.asarray(self.caption_image, dtype=np.int64), minlength=len(self.images))
        keep = counts > 0
        if not keep.all():
            log.info("%s: dropped %d image(s) without captions, e.g. %s",
                     self.name, int((~keep).sum()), self.images[int(np.flatnonzero(~keep)[0])])
        if not keep.any():
            raise DataError(f"corpus {self.name!r}: no image has a caption "
                            f"(images looked for under {self.image_root})")
        new_id = np.cumsum(keep) - 1
        splits = {}
        for name, ids in self.splits.items():
            ids_arr = np.asarray(ids, dtype=np.int64)
            ids_arr = new_id[ids_arr[keep[ids_arr]]]
            if len(ids_arr):  # a split left empty by dropping is simply absent
                splits[name] = ids_arr
        kept = np.flatnonzero(keep)
        return Corpus(
            name=self.name,
            image_root=self.image_root,
            images=[self.images[i] for i in kept],
            captions=self.captions,
            caption_image=new_id[np.asarray(self.caption_image, dtype=np.int64)],
            image_label=dense_labels(self.labels[i] for i in kept),
            splits=splits,
        )


# ---------------------------------------------------------------------- file helpers
def require_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """Return ``path`` as a Path, or raise DataError saying what is missing and what to do."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist" + (f"; {hint}" if hint else ""))
    return path


def require_dir(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{what} {path} does not exist or is not a folder" + (f"; {hint}" if hint else ""))
    return path


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file; a syntax error names the file, line and column."""
    path = require_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: malformed JSON ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def get_key(entry: Any, key: str, path: Path, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """``entry[key]`` or DataError naming the file, the entry and the key (and wrong type)."""
    if not isinstance(entry, dict):
        raise DataError(f"{path}: {where} should be a JSON object, got {type(entry).__name__}")
    if key not in entry:
        raise DataError(f"{path}: {where} has no key {key!r}")
    value = entry[key]
    if kind is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(f"{path}: {where}, key {key!r} should be {names}, got {type(value).__name__}")
    return value


def existing_files(folder: Path) -> set[str]:
    """Names of the files in ``folder`` (one listdir, far faster than a stat per image)."""
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


class FileIndex:
    """Answers "does image_root/rel exist?" with one listdir per folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._listing: dict[Path, set[str]] = {}

    def exists(self, rel: str) -> bool:
        p = self.root / rel
        folder = p.parent
        if folder not in self._listing:
            self._listing[folder] = existing_files(folder)
        return p.name in self._listing[folder]


def check_images_exist(builder: CorpusBuilder, source: str | Path, hint: str = "") -> None:
    """Raise DataError if images named by a JSON file are missing from the image root."""
    index = FileIndex(builder.image_root)
    missing = [p for p in builder.images if not index.exists(p)]
    if missing:
        raise DataError(f"{source}: {len(missing)} of {len(builder.images)} images are missing under "
                        f"{builder.image_root}, e.g. {missing[0]!r}"
                        + (f"; {hint}" if hint else "; pass the folder that holds them as image_root,"
                           " or check_images=False to load the captions only"))


def _int_array(values: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{what} must be a 1-D integer array, got dtype {arr.dtype} shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _first_duplicate(items: Sequence[Any]) -> Any:
    seen = set()
    for x in items:
        if x in seen:
            return x
        seen.add(x)
    return None
