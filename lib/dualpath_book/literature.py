"""The literature: reference tables of published numbers (``book/tables/*.csv``) and the rows of a
dataset and protocol among them (:func:`reference_table`, :func:`flickr8k_vs_flickr30k`), the names
the book gives datasets, backbones and word vectors, and a reproduction's row beside the published ones."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dualpath.config import Config
from dualpath.evaluate import RECALL_KEYS, metric_keys
from dualpath.io import atomic_path

from .layout import TABLES_DIR

#: The metric columns of every results table, in display order.
METRIC_COLUMNS = list(RECALL_KEYS)
RESULT_COLUMNS = ["method", "backbone", *metric_keys("medr"), "source"]

BACKBONE_NAMES = {"efficientnet_lite0": "EfficientNet-Lite0", "resnet50": "ResNet-50",
                  "resnet152": "ResNet-152", "vgg19": "VGG-19"}
#: Training classes N (one per training image; CUHK-PEDES: per identity) of the standard splits.
TRAIN_CLASSES = {"flickr8k": 6000, "flickr30k": 29000, "flickr30k_official": 29783, "coco": 113287,
                 "cuhk_pedes": 11003}
DATASET_NAMES = {"flickr8k": "Flickr8k", "flickr30k": "Flickr30k", "flickr30k_official": "Flickr30k", "coco": "MSCOCO",
                 "cuhk_pedes": "CUHK-PEDES", "coco_mini": "COCO mini"}


def word_vector_name(cfg: Config) -> str:
    """What initialises the word embedding: 'GloVe', 'random' or 'word2vec' (any other file)."""
    return ("GloVe" if cfg.word_vectors.startswith("glove") else
            "random" if cfg.word_vectors == "random" else "word2vec")


def available_reference_tables() -> list[str]:
    """Names accepted by :func:`load_reference_table` (the CSV stems under book/tables/)."""
    return sorted(p.stem for p in TABLES_DIR.glob("*.csv"))


def load_reference_table(name: str) -> pd.DataFrame:
    """A table of published numbers, e.g. ``load_reference_table('published_flickr8k')``.

    Empty cells (a metric the source does not report) become NaN; text columns stay strings.
    """
    stem = Path(name).stem if name.endswith(".csv") else name
    path = TABLES_DIR / f"{stem}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no reference table {stem!r} in {TABLES_DIR}; "
                                f"available: {', '.join(available_reference_tables()) or 'none'}")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


#: Dataset keys of dualpath.data -> the ``dataset`` column of book/tables/paper_*.csv.
TABLE_DATASETS = {"flickr30k": "Flickr30k", "coco": "MSCOCO", "cuhk_pedes": "CUHK-PEDES"}

#: Methods of published_flickr8k.csv -> their row in paper_competitors.csv (Flickr30k, 1k), where
#: both rows use the same CNN. m-RNN is left out: its Flickr8k row is AlexNet, its Flickr30k row VGG.
FLICKR8K_ON_FLICKR30K = {
    "DeViSE (re-run by Karpathy et al. 2014)": "DeViSE",
    "DVSA (BRNN)": "DVSA (RCNN)",
    "m-CNN (ensemble)": "m-CNN (ens.)",
    "Fisher vectors GMM+HGLMM": "GMM+HGLMM FV",
}


def reference_table(dataset: str, protocol: str = "1k") -> pd.DataFrame:
    """Published rows for a dataset and protocol: Flickr8k's own table, else the paper's rows
    (as ``Dual-path (paper)``) followed by its competitors."""
    if dataset == "flickr8k":
        return load_reference_table("published_flickr8k")
    name = TABLE_DATASETS.get(dataset)
    if name is None:
        raise ValueError(f"no published numbers for dataset {dataset!r}")
    paper = load_reference_table("paper_results")
    paper = paper[(paper.dataset == name) & (paper.protocol == protocol)].copy()
    paper.insert(0, "method", "Dual-path (paper)")
    comp = load_reference_table("paper_competitors")
    comp = comp[(comp.dataset == name) & (comp.protocol == protocol)].copy()
    return pd.concat([paper, comp], ignore_index=True)


def flickr8k_vs_flickr30k() -> pd.DataFrame:
    """R-sum of the methods published on both Flickr8k and Flickr30k (1k test images each)."""
    f8k = load_reference_table("published_flickr8k").set_index("method")
    f30k = load_reference_table("paper_competitors")
    f30k = f30k[(f30k.dataset == "Flickr30k") & (f30k.protocol == "1k")].set_index("method")
    rows = []
    for m8, m30 in FLICKR8K_ON_FLICKR30K.items():
        if m8 in f8k.index and m30 in f30k.index:
            a, b = f8k.loc[m8, METRIC_COLUMNS].astype(float), f30k.loc[m30, METRIC_COLUMNS].astype(float)
            if a.notna().all() and b.notna().all():
                rows.append({"method": m8, "Flickr30k row": m30, "R-sum Flickr8k": round(a.sum(), 1),
                             "R-sum Flickr30k": round(b.sum(), 1), "ratio": round(a.sum() / b.sum(), 3)})
    return pd.DataFrame(rows).set_index("method")


_ALIASES = {"image_to_text": "i2t", "text_to_image": "t2i", "sentence_retrieval": "i2t",
            "image_retrieval": "t2i", "med_r": "medr", "median_rank": "medr", "r_sum": "rsum"}


def _metric_key(key: str) -> str:
    """Normalise metric names: 'val_i2t_R@1' / 'i2t/r@1' / 'image_to_text_r1' -> 'i2t_r1'."""
    k = str(key).strip().lower().replace("@", "").replace("/", "_").replace("-", "_").replace(" ", "_")
    k = k.removeprefix("val_").removeprefix("test_")
    for a, b in _ALIASES.items():
        k = k.replace(a, b)
    return k


def _ours_frame(ours) -> pd.DataFrame:
    if isinstance(ours, pd.DataFrame):
        df = ours.copy()
        if "method" not in df.columns:
            df.insert(0, "method", [str(i) for i in df.index] if not isinstance(df.index, pd.RangeIndex)
                      else ["this reproduction"] * len(df))
        return df.reset_index(drop=True)
    if isinstance(ours, Mapping):
        if ours and all(isinstance(v, Mapping) for v in ours.values()):
            return pd.DataFrame([{"method": name, **row} for name, row in ours.items()])
        row = dict(ours)
        row.setdefault("method", "this reproduction")
        return pd.DataFrame([row])
    raise TypeError(f"ours must be a dict or a DataFrame, got {type(ours).__name__}")


def run_results_table(cfg: Config, metrics: Mapping[str, Mapping], run_dir: Path) -> pd.DataFrame:
    """Our run's Stage I and Stage I + II rows beside the published ones of its dataset and protocol,
    also written to ``run_dir/results_<dataset>.csv`` (atomically) for anyone comparing runs."""
    names = {"stage1": "Dual-path, Stage I (ours)", "stage2": "Dual-path, Stage I + II (ours)"}
    table = results_table({names[p]: metrics[p] for p in names if p in metrics},
                          reference_table(cfg.dataset, cfg.protocol),
                          ours_backbone=BACKBONE_NAMES.get(cfg.backbone, cfg.backbone))
    with atomic_path(Path(run_dir) / f"results_{cfg.dataset}.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table


def results_table(ours, reference: pd.DataFrame, *, ours_source: str = "this book",
                  ours_backbone: str | None = None) -> pd.DataFrame:
    """Our rows under the reference rows, on the columns ``RESULT_COLUMNS``.

    ``ours`` is a metrics dict such as ``dualpath.evaluate`` returns (one row; keys like
    ``i2t_r1`` or ``val_i2t_R@1``, recalls in percent; an optional ``method``), a dict of such
    dicts keyed by method, or a DataFrame.  Keys outside ``RESULT_COLUMNS`` (mAP, mean rank) are
    dropped.  R-sum is recomputed for every row that has all six recalls.  The ``origin`` column
    says ``published`` or ``ours``; columns empty in every row are dropped.
    """
    def conform(df: pd.DataFrame, origin: str) -> pd.DataFrame:
        df = df.rename(columns={c: _metric_key(c) for c in df.columns
                                if c not in ("method", "backbone", "source")})
        out = pd.DataFrame({c: df[c] if c in df.columns else np.nan for c in RESULT_COLUMNS},
                           index=df.index)
        for c in RESULT_COLUMNS:
            if c not in ("method", "backbone", "source"):
                out[c] = pd.to_numeric(out[c], errors="coerce")
        full = out[METRIC_COLUMNS].notna().all(axis=1)
        out.loc[full, "rsum"] = out.loc[full, METRIC_COLUMNS].sum(axis=1).round(1)
        out["origin"] = origin
        return out

    ref = conform(reference.reset_index(drop=True), "published")
    mine = _ours_frame(ours)
    if "source" not in mine.columns:
        mine["source"] = ours_source
    if ours_backbone is not None and "backbone" not in mine.columns:
        mine["backbone"] = ours_backbone
    table = pd.concat([ref, conform(mine, "ours")], ignore_index=True)
    return table.dropna(axis=1, how="all")


