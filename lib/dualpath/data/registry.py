"""Named datasets under the data root: ``load_corpus('flickr8k')`` without spelling out paths.

Each name lists the folders it may live in (first existing wins) and how to load it.
The data root comes from :func:`dualpath.paths.find_data_root` (argument, ``$DUALPATH_DATA``,
``./data``, ``../shared/data``).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..paths import candidate_data_roots, find_data_root
from .coco import load_coco
from .corpus import Corpus, require_dir, require_file
from .cuhk_pedes import load_cuhk_pedes
from .flickr8k import load_flickr8k
from .flickr30k import flickr8k_lists, load_flickr30k_official
from .karpathy import load_karpathy


@dataclass(frozen=True)
class DatasetEntry:
    folders: tuple[str, ...]          # candidate folder names under the data root
    load: Callable[[Path], Corpus]    # folder -> Corpus
    hint: str                         # how to obtain the data when it is missing


def _coco_mini(folder: Path) -> Corpus:
    ann = folder / "annotations"
    files = [require_file(ann / f"captions_{s}2017.json", "COCO captions file") for s in ("train", "val")]
    return load_coco(files, folder, name="coco_mini")


def _karpathy(dataset: str, image_folders: tuple[str, ...]) -> Callable[[Path], Corpus]:
    def load(folder: Path) -> Corpus:
        json_path = require_file(folder / f"dataset_{dataset}.json", "Karpathy split file",
                                 "download Karpathy's caption_datasets.zip and put it there")
        images = next((folder / f for f in image_folders if (folder / f).is_dir()), None)
        if images is None:
            raise DataError(f"no image folder under {folder} (looked for {', '.join(image_folders)})")
        return load_karpathy(json_path, images, name=dataset)
    return load


def _flickr30k_official(folder: Path) -> Corpus:
    return load_flickr30k_official(folder, *flickr8k_lists(folder, folder.parent))


def _cuhk(folder: Path) -> Corpus:
    json_path = require_file(folder / "reid_raw.json", "CUHK-PEDES annotation file",
                             "request CUHK-PEDES from its authors (it may not be redistributed)")
    return load_cuhk_pedes(json_path, require_dir(folder / "imgs", "CUHK-PEDES image folder"))


DATASETS: dict[str, DatasetEntry] = {
    "flickr8k": DatasetEntry(("flickr8k_224", "flickr8k"), lambda f: load_flickr8k(f),
                             "run `python -m dualpath.data fetch flickr8k` (or see the README's Data section)"),
    "coco_mini": DatasetEntry(("coco_mini",), _coco_mini,
                              "the shared data ships coco_mini/; see data/README.md"),
    "flickr30k": DatasetEntry(("flickr30k",), _karpathy("flickr30k", ("flickr30k-images", "images")),
                              "put dataset_flickr30k.json and flickr30k-images/ in <data root>/flickr30k/"),
    "flickr30k_official": DatasetEntry(
        ("flickr30k",), _flickr30k_official,
        "put results_20130124.token, flickr30k-images/ and Flickr8k's Flickr_8k.{test,dev}Images.txt "
        "in <data root>/flickr30k/"),
    "coco": DatasetEntry(("coco",), _karpathy("coco", (".",)),
                         "put dataset_coco.json, train2014/ and val2014/ in <data root>/coco/"),
    "cuhk_pedes": DatasetEntry(("cuhk_pedes", "CUHK-PEDES"), _cuhk,
                               "put reid_raw.json and imgs/ in <data root>/CUHK-PEDES/"),
}


def _roots(data_root: str | os.PathLike | None) -> list[Path]:
    """The explicit root, or every existing candidate root (so ./data without Flickr8k does not
    hide a fetched copy further down the list)."""
    if data_root is not None:
        return [find_data_root(data_root)]
    return [r.resolve() for r in candidate_data_roots() if r.is_dir()]


def dataset_folder(name: str, data_root: str | os.PathLike | None = None) -> Path | None:
    """The folder of a named dataset under the data root(s), or None when it is not there."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return next((root / f for root in _roots(data_root) for f in DATASETS[name].folders
                 if (root / f).is_dir()), None)


def load_corpus(name: str, data_root: str | os.PathLike | None = None, split: str | None = None) -> Corpus:
    """Load a named dataset from the data root; with ``split``, only that split (see Corpus.select)."""
    folder = dataset_folder(name, data_root)
    if folder is None:
        roots = _roots(data_root) or [find_data_root()]   # no root at all: find_data_root says so
        tried = ", ".join(str(root / f) for root in roots for f in DATASETS[name].folders)
        raise DataError(f"dataset {name!r} not found (tried {tried}); {DATASETS[name].hint}")
    corpus = DATASETS[name].load(folder)
    return corpus.select(split) if split is not None else corpus
