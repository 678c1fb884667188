"""The chapter's statistics: paired differences over seeds and a bootstrap over test queries, from
the per-query test ranks every run keeps (collected into one file for the book)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from dualpath.errors import DataError
from dualpath.evaluate import RECALL_AT
from dualpath.io import atomic_path

from .chapter import Family, chapter
from .results import RANKS_NPZ

CAP = max(RECALL_AT)   # ranks are kept up to here: all that R@1/5/10 read


def paired_differences(table: pd.DataFrame, family: Family | str, metric: str = "rsum") -> pd.Series:
    """``better - worse`` of ``metric`` per seed both arms finished: the same seed gives both arms
    the same data order (and, for arms that share Stage I, the same Stage I where its checkpoint was
    reused; :func:`~.tables.shared_stage1_table` shows where it was trained again)."""
    family = chapter().family(family)
    runs = table[table["arm"].isin([family.better, family.worse])]
    wide = runs.pivot_table(index="seed", columns="arm", values=metric)
    if not {family.better, family.worse} <= set(wide.columns):
        return pd.Series(dtype=float, name=metric)
    return (wide[family.better] - wide[family.worse]).dropna().rename(metric)


def bootstrap_difference(ranks: dict[str, np.ndarray], better: str, worse: str, seeds: Sequence[int],
                         n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Test R-sum of ``better`` minus ``worse``, averaged over ``seeds``, and its 95% percentile
    interval from resampling the test images with replacement (each drawn image brings its own
    captions as text->image queries). Every arm and seed sees the same resamples, so the interval
    is of the paired difference: what the choice of test queries alone leaves uncertain."""
    cap_img = ranks["caption_image"].astype(np.int64)
    n_img = int(cap_img.max()) + 1
    draws = np.random.default_rng(seed).multinomial(n_img, np.full(n_img, 1.0 / n_img), size=n_boot)
    caps_per_img = np.bincount(cap_img, minlength=n_img)

    def rsum(arm: str, s: int) -> np.ndarray:
        i2t, t2i = ranks[f"{arm}/seed{s}/i2t"], ranks[f"{arm}/seed{s}/t2i"]
        hit_i2t = np.stack([i2t < k for k in RECALL_AT], 1).astype(float)                 # [images, 3]
        hit_t2i = np.stack([np.bincount(cap_img, weights=(t2i < k), minlength=n_img) for k in RECALL_AT], 1)
        i2t_r = draws @ hit_i2t / n_img                                                    # [n_boot, 3]
        t2i_r = (draws @ hit_t2i) / (draws @ caps_per_img)[:, None]
        return 100.0 * (i2t_r.sum(1) + t2i_r.sum(1))

    diff = np.mean([rsum(better, s) - rsum(worse, s) for s in seeds], axis=0)
    full = np.mean([_rsum_of(ranks, better, s) - _rsum_of(ranks, worse, s) for s in seeds])
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return float(full), float(lo), float(hi)


def _rsum_of(ranks: dict[str, np.ndarray], arm: str, s: int) -> float:
    return 100.0 * sum(float(np.mean(ranks[f"{arm}/seed{s}/{d}"] < k)) for d in ("i2t", "t2i") for k in RECALL_AT)


def collect_ranks(grid_dir: str | Path, out: str | Path = RANKS_NPZ) -> int:
    """Gather every finished run's per-query test ranks (``test_ranks.npz`` in its run folder, or in
    the folder of the run a ``same_as`` arm is) into one file, ranks capped at :data:`CAP`; returns
    the number of runs. Keys ``<arm>/seed<k>/i2t`` and ``.../t2i``, and ``caption_image``.
    A finished run whose ranks are not on this machine (its record restored from a committed
    table) keeps the ranks ``out`` holds for it already."""
    from ..ablation import TEST_RANKS, load_test_ranks
    from ..sweep import DONE

    grid_dir = Path(grid_dir)
    earlier = load_ranks(out) or {}
    arrays: dict[str, np.ndarray] = {}
    for marker in sorted(grid_dir.glob(f"*/seed*/{DONE}")):
        record = json.loads(marker.read_text())
        path = Path(record.get("run_dir") or marker.parent) / TEST_RANKS
        key = f"{marker.parent.parent.name}/{marker.parent.name}"
        if not path.is_file():   # restored, or a run from before the ranks were kept
            if f"{key}/i2t" in earlier:
                arrays.update({k: earlier[k] for k in (f"{key}/i2t", f"{key}/t2i", "caption_image")})
            continue
        ranks = load_test_ranks(path)
        if "caption_image" in arrays and not np.array_equal(arrays["caption_image"], ranks["caption_image"]):
            raise DataError(f"{path}: its test captions differ from the other runs'; not the same test split")
        arrays["caption_image"] = ranks["caption_image"]
        for d in ("i2t", "t2i"):
            arrays[f"{key}/{d}"] = np.minimum(ranks[d], CAP).astype(np.uint8)
    with atomic_path(Path(out)) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return sum(k.endswith("/i2t") for k in arrays)


def load_ranks(path: str | Path = RANKS_NPZ) -> dict[str, np.ndarray] | None:
    """The collected ranks (:func:`collect_ranks`), or None before any were collected."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
