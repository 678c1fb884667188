"""Image-text retrieval metrics and the paper's evaluation protocols (SPEC 5).

Two layers:

* ``retrieval_metrics`` ranks embeddings: R@1/5/10, median and mean rank and mAP for
  image->text (``i2t``) and text->image (``t2i``) retrieval.
* ``evaluate_embeddings`` applies a protocol (``1k``, ``coco-1k``, ``coco-5k``, ``cuhk``) and
  ``evaluate`` first embeds a corpus with any encoder that has ``encode_image`` and
  ``encode_text``.

Positives. Image ``i`` and caption ``t`` match when ``t`` describes ``i``
(``caption_image[t] == i``), or, when ``image_label`` is given (CUHK-PEDES), when ``t``
describes any image with the same label as ``i``. The same rule holds in both directions.

Tie rule (pessimistic). A negative whose similarity equals a positive's is ranked *ahead*
of it. The 0-based rank of a query is the number of negatives whose similarity is ``>=``
that of its best positive. The rank of its k-th best positive (1-based ``k``) is
``k - 1 + #(negatives >= that positive)``, and AP is ``mean_k k / (rank_k + 1)``. How tied
positives are ordered among themselves does not change AP. Without the rule, a constant
(collapsed) embedding would score R@1 = 100; with it, such an embedding ranks last.

Similarities are dot products of L2-normalised rows (cosine). Positive-pair scores come
from a row-wise dot product; negatives come from the chunked matrix product. The two give
bit-identical results when the products are exact, as in the tests' tie cases. Otherwise
a negative within float rounding (~1e-7 in float32) of a positive falls on either side,
as in any implementation.

Metric conventions: R@K and mAP are percentages; ``medr = floor(median(rank0)) + 1`` and
``meanr = mean(rank0) + 1`` (VSE++ style, 1-based); ``rsum`` sums the R@K of every direction
computed.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, DataError

PROTOCOLS = ("1k", "coco-1k", "coco-5k", "cuhk")
DIRECTIONS = ("i2t", "t2i")
RECALL_AT = (1, 5, 10)

ArrayLike = Any  # torch.Tensor | np.ndarray | Sequence[int]; kept loose for callers


class ImageTextEncoder(Protocol):
    """What ``evaluate`` needs from a model (the CLIP_benchmark-style contract)."""

    def encode_image(self, images: list) -> torch.Tensor:
        """Embed a batch of image paths or PIL images: ``Tensor[n, d]``."""

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Embed a batch of raw captions: ``Tensor[n, d]``."""


class CorpusLike(Protocol):
    """The parts of ``dualpath.data.corpus.Corpus`` that ``evaluate`` reads."""

    images: list[str]
    captions: list[str]
    caption_image: np.ndarray
    image_label: np.ndarray

    def image_path(self, i: int) -> Any:
        """Path of image ``i``, passed as-is to ``encode_image``."""


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------

def _as_embeddings(x: ArrayLike, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"{name} must be a non-empty 2-D [n, d] array, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    if not torch.isfinite(x).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return x


def _as_index(x: ArrayLike, name: str, length: int, upper: int | None, device) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    if x.ndim != 1 or len(x) != length:
        raise DataError(f"{name} must be 1-D with {length} entries, got shape {tuple(x.shape)}")
    if x.is_floating_point() or x.dtype == torch.bool:
        raise DataError(f"{name} must hold integers, got {x.dtype}")
    x = x.to(device=device, dtype=torch.int64)
    if upper is not None and length and (x.min() < 0 or x.max() >= upper):
        raise DataError(f"{name} must lie in [0, {upper}), got values in "
                        f"[{int(x.min())}, {int(x.max())}]")
    return x


def _check_directions(directions: Sequence[str]) -> tuple[str, ...]:
    directions = tuple(directions)
    bad = [d for d in directions if d not in DIRECTIONS]
    if not directions or bad or len(set(directions)) != len(directions):
        raise ConfigError(f"directions must be distinct values from {DIRECTIONS}, got {directions}")
    return directions


def _prepare(img_emb, txt_emb) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalise both sides in a common float dtype (float64 kept, anything else float32)."""
    img = _as_embeddings(img_emb, "img_emb")
    txt = _as_embeddings(txt_emb, "txt_emb")
    if img.shape[1] != txt.shape[1]:
        raise DataError(f"img_emb and txt_emb differ in width: {img.shape[1]} vs {txt.shape[1]}")
    if img.device != txt.device:
        raise DataError(f"img_emb is on {img.device} but txt_emb on {txt.device}")
    wide = torch.float64 in (img.dtype, txt.dtype)
    dtype = torch.float64 if wide else torch.float32
    return F.normalize(img.to(dtype), dim=1), F.normalize(txt.to(dtype), dim=1)


# --------------------------------------------------------------------------------------
# Positive pairs
# --------------------------------------------------------------------------------------

def _positive_pairs(caption_image: torch.Tensor, image_label: torch.Tensor | None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """All matching (image, caption) index pairs, sorted by image.

    Without labels each caption has exactly its own image. With labels a caption matches
    every image of its image's class, which is built by expanding class groups, not by
    comparing all n_images x n_captions label pairs.
    """
    n_cap = len(caption_image)
    captions = torch.arange(n_cap, device=caption_image.device)
    if image_label is None:
        img_idx, cap_idx = caption_image, captions
    else:
        _, img_class = torch.unique(image_label, return_inverse=True)
        class_size = torch.bincount(img_class)
        class_start = torch.cumsum(class_size, 0) - class_size
        images_by_class = torch.argsort(img_class, stable=True)
        cap_class = img_class[caption_image]
        per_caption = class_size[cap_class]
        cap_idx = torch.repeat_interleave(captions, per_caption)
        pair_start = torch.cumsum(per_caption, 0) - per_caption
        within = torch.arange(len(cap_idx), device=cap_idx.device) - pair_start[cap_idx]
        img_idx = images_by_class[class_start[cap_class][cap_idx] + within]
    order = torch.argsort(img_idx, stable=True)
    return img_idx[order], cap_idx[order]


def _pair_scores(img: torch.Tensor, txt: torch.Tensor, img_idx: torch.Tensor,
                 cap_idx: torch.Tensor, batch: int) -> torch.Tensor:
    """Similarity of each positive pair, gathered ``batch`` pairs at a time to bound memory."""
    out = torch.empty(len(img_idx), dtype=img.dtype, device=img.device)
    for a in range(0, len(img_idx), batch):
        i, t = img_idx[a:a + batch], cap_idx[a:a + batch]
        out[a:a + batch] = (img[i] * txt[t]).sum(1)
    return out


def _descending_table(query: torch.Tensor, scores: torch.Tensor, n_queries: int,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, its positives' scores in descending order, NaN-padded to the widest query.

    NaN padding makes ``sim >= pad`` false everywhere, so padded slots count nothing.
    Returns ``(table [n_queries, m_max], counts [n_queries])``.
    """
    by_score = torch.argsort(scores, descending=True, stable=True)
    order = by_score[torch.argsort(query[by_score], stable=True)]
    query, scores = query[order], scores[order]
    counts = torch.bincount(query, minlength=n_queries)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(query), device=query.device) - start[query]
    width = int(counts.max()) if len(counts) else 0
    table = torch.full((n_queries, max(width, 1)), math.nan, dtype=scores.dtype,
                       device=scores.device)
    table[query, slot] = scores
    return table, counts


# --------------------------------------------------------------------------------------
# Counting negatives ahead of each positive
# --------------------------------------------------------------------------------------
# Counts are taken as ``ge`` into a float scratch block and a float sum: torch sums bool
# tensors through an int64 cast, about 4x slower than the comparison itself. A float32
# sum of zeros and ones is exact below 2**24 terms; longer reductions use float64.

def _scratch_view(scratch: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    return scratch[:rows * cols].view(rows, cols)


def _count_rows_at_least(sim: torch.Tensor, thresholds: torch.Tensor, counts: torch.Tensor,
                         scratch: torch.Tensor) -> torch.Tensor:
    """For each row r and slot k: #columns of ``sim[r]`` that are ``>= thresholds[r, k]``.

    Rows with fewer than ``k + 1`` positives are skipped in slot k. That matters for
    COCO, where only a few images have 6 or 7 captions.
    """
    out = torch.zeros(thresholds.shape, dtype=torch.int64, device=sim.device)
    for k in range(thresholds.shape[1]):
        rows = torch.nonzero(counts > k).squeeze(1)
        block = sim if len(rows) == len(sim) else sim[rows]
        hits = torch.ge(block, thresholds[rows, k, None],
                        out=_scratch_view(scratch, *block.shape))
        out[rows, k] = hits.sum(1).long()
    return out


def _count_cols_at_least(sim: torch.Tensor, thresholds: torch.Tensor, counts: torch.Tensor,
                         scratch: torch.Tensor) -> torch.Tensor:
    """For each column c and slot k: #rows of ``sim[:, c]`` that are ``>= thresholds[c, k]``."""
    out = torch.zeros(thresholds.shape, dtype=torch.int64, device=sim.device)
    for k in range(thresholds.shape[1]):
        cols = torch.nonzero(counts > k).squeeze(1)
        block = sim if len(cols) == sim.shape[1] else sim[:, cols]
        hits = torch.ge(block, thresholds[None, cols, k],
                        out=_scratch_view(scratch, *block.shape))
        out[cols, k] = hits.sum(0).long()
    return out


def _negatives_ahead(img: torch.Tensor, txt: torch.Tensor, img_idx: torch.Tensor,
                     cap_idx: torch.Tensor, tables: dict, chunk_size: int) -> dict:
    """Stream ``img @ txt.T`` in row chunks, counting for every positive of every query the
    negatives scoring at least as high. One matrix product serves both directions.

    Positive entries are set to -inf in each chunk, so the counts hold negatives only.
    Their scores enter solely as thresholds from ``_pair_scores``, and the matrix product
    never has to reproduce them bit for bit. Memory: two blocks of
    ``chunk_size x n_captions``, one for the similarities and one as counting scratch.
    """
    ahead = {d: torch.zeros(t.shape, dtype=torch.int64, device=img.device)
             for d, (t, _) in tables.items()}
    rows = min(chunk_size, len(img))
    sim_buffer = torch.empty(rows * len(txt), dtype=img.dtype, device=img.device)
    exact_dtype = torch.float32 if max(len(txt), rows) < 2 ** 24 else torch.float64
    scratch = torch.empty(rows * len(txt), dtype=exact_dtype, device=img.device)
    starts = torch.arange(0, len(img) + chunk_size, chunk_size, device=img.device)
    bounds = torch.searchsorted(img_idx, starts.clamp_(max=len(img))).tolist()
    for c, start in enumerate(range(0, len(img), chunk_size)):
        stop = min(start + chunk_size, len(img))
        sim = torch.mm(img[start:stop], txt.T, out=_scratch_view(sim_buffer, stop - start,
                                                                   len(txt)))
        lo, hi = bounds[c], bounds[c + 1]
        sim[img_idx[lo:hi] - start, cap_idx[lo:hi]] = -math.inf
        if "i2t" in tables:
            table, counts = tables["i2t"]
            ahead["i2t"][start:stop] = _count_rows_at_least(sim, table[start:stop],
                                                             counts[start:stop], scratch)
        if "t2i" in tables:
            table, counts = tables["t2i"]
            ahead["t2i"] += _count_cols_at_least(sim, table, counts, scratch)
    return ahead


# --------------------------------------------------------------------------------------
# From counts to metrics
# --------------------------------------------------------------------------------------

def _direction_metrics(prefix: str, ahead: torch.Tensor, counts: torch.Tensor) -> dict:
    """R@K, medr, meanr and mAP of one direction from its negatives-ahead table."""
    ahead = ahead.double().cpu()
    counts = counts.cpu()
    rank0 = ahead[:, 0].numpy()
    k = torch.arange(1, ahead.shape[1] + 1, dtype=torch.float64)
    precision = k / (k + ahead)  # the k-th positive sits at 1-based position k + ahead
    valid = k[None, :] <= counts[:, None]
    ap = (precision * valid).sum(1) / counts
    out = {f"{prefix}_r{K}": 100.0 * float(np.mean(rank0 < K)) for K in RECALL_AT}
    out[f"{prefix}_medr"] = float(np.floor(np.median(rank0)) + 1)
    out[f"{prefix}_meanr"] = float(rank0.mean() + 1)
    out[f"{prefix}_map"] = 100.0 * float(ap.mean())
    return out


@torch.no_grad()
def retrieval_metrics(img_emb: ArrayLike, txt_emb: ArrayLike, caption_image: ArrayLike, *,
                      image_label: ArrayLike | None = None, chunk_size: int = 1024,
                      directions: Sequence[str] = DIRECTIONS) -> dict[str, float]:
    """Rank every caption for every image (i2t) and every image for every caption (t2i).

    Args:
        img_emb: ``[n_images, d]`` image embeddings (tensor or array; normalised here).
        txt_emb: ``[n_captions, d]`` caption embeddings, in any order.
        caption_image: ``[n_captions]`` image index of each caption.
        image_label: optional ``[n_images]`` class per image; when given, a caption matches
            every image of its image's class (CUHK-PEDES identities).
        chunk_size: image rows per chunk of the similarity matrix; memory peaks at
            about ``2 * chunk_size * n_captions`` floats (scores and counting scratch).
        directions: any of ``("i2t", "t2i")``.

    Returns:
        ``{dir}_r1, {dir}_r5, {dir}_r10`` (%), ``{dir}_medr``, ``{dir}_meanr``, ``{dir}_map``
        (%) for each direction, and ``rsum``. The tie rule is in the module docstring.

    Raises:
        DataError: malformed embeddings or indices, or an image query with no caption.
        ConfigError: a bad ``chunk_size`` or ``directions``.
    """
    directions = _check_directions(directions)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    img, txt = _prepare(img_emb, txt_emb)
    n_img, n_cap = len(img), len(txt)
    cap_img = _as_index(caption_image, "caption_image", n_cap, n_img, img.device)
    label = None if image_label is None else _as_index(image_label, "image_label", n_img,
                                                        None, img.device)

    img_idx, cap_idx = _positive_pairs(cap_img, label)
    scores = _pair_scores(img, txt, img_idx, cap_idx, batch=max(chunk_size, 1024))
    tables = {}
    if "i2t" in directions:
        tables["i2t"] = _descending_table(img_idx, scores, n_img)
        lonely = int((tables["i2t"][1] == 0).sum())
        if lonely:
            raise DataError(f"{lonely} of {n_img} images have no matching caption, so image->text "
                            f"ranks are undefined; drop them or evaluate with directions=('t2i',)")
    if "t2i" in directions:
        tables["t2i"] = _descending_table(cap_idx, scores, n_cap)

    ahead = _negatives_ahead(img, txt, img_idx, cap_idx, tables, chunk_size)
    out: dict[str, float] = {}
    for d in directions:
        out.update(_direction_metrics(d, ahead[d], tables[d][1]))
    out["rsum"] = sum(out[f"{d}_r{K}"] for d in directions for K in RECALL_AT)
    return out


# --------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------

def _folds(img: torch.Tensor, txt: torch.Tensor, cap_img: np.ndarray,
           label: np.ndarray | None, fold_size: int) -> Iterator[tuple]:
    """Consecutive blocks of ``fold_size`` images, each with only its own captions."""
    for start in range(0, len(img), fold_size):
        stop = start + fold_size
        mine = np.flatnonzero((cap_img >= start) & (cap_img < stop))
        yield (img[start:stop], txt[torch.as_tensor(mine, device=txt.device)],
               cap_img[mine] - start, None if label is None else label[start:stop])


def _mean_of(results: Iterable[dict[str, float]]) -> dict[str, float]:
    results = list(results)
    return {key: float(np.mean([r[key] for r in results])) for key in results[0]}


def evaluate_embeddings(img_emb: ArrayLike, txt_emb: ArrayLike, caption_image: ArrayLike,
                        protocol: str, image_label: ArrayLike | None = None, *,
                        fold_size: int = 1000, chunk_size: int = 1024) -> dict[str, float]:
    """Apply one of the paper's protocols (SPEC 5) to precomputed embeddings.

    * ``1k`` (Flickr30k, 1,000 x 5,000) and ``coco-5k``: every image against every caption.
    * ``coco-1k``: consecutive folds of ``fold_size`` images (5 on COCO), each against only
      its own images' captions; every metric is the mean over folds.
    * ``cuhk``: text->image only, positives by identity (``image_label`` required); also
      returned under the CMC names ``top1``, ``top5``, ``top10`` and ``map``.

    ``image_label``, when given, defines positives by class for any protocol. Captions
    need not be sorted by image.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; choose one of {PROTOCOLS}")
    kwargs = {"chunk_size": chunk_size}
    if protocol == "cuhk":
        if image_label is None:
            raise ConfigError("protocol 'cuhk' needs image_label (the person id of each image)")
        out = retrieval_metrics(img_emb, txt_emb, caption_image, image_label=image_label,
                                directions=("t2i",), **kwargs)
        out.update(top1=out["t2i_r1"], top5=out["t2i_r5"], top10=out["t2i_r10"],
                   map=out["t2i_map"])
        return out
    if protocol == "coco-1k":
        img = _as_embeddings(img_emb, "img_emb")
        txt = _as_embeddings(txt_emb, "txt_emb")
        if not isinstance(fold_size, int) or fold_size < 1 or len(img) % fold_size:
            raise ConfigError(f"protocol 'coco-1k' splits the images into folds of {fold_size}, "
                              f"but there are {len(img)} images; pass a fold_size that divides it "
                              f"or use 'coco-5k'")
        cap_img = _as_index(caption_image, "caption_image", len(txt), len(img), "cpu").numpy()
        label = None if image_label is None else np.asarray(image_label)
        return _mean_of(retrieval_metrics(i, t, c, image_label=lab, **kwargs)
                        for i, t, c, lab in _folds(img, txt, cap_img, label, fold_size))
    return retrieval_metrics(img_emb, txt_emb, caption_image, image_label=image_label, **kwargs)


# --------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------

def _encode_batches(encode: Callable[[list], Any], items: list, batch_size: int,
                    what: str) -> torch.Tensor:
    """Call ``encode`` on consecutive batches and stack the rows, checking each batch's size."""
    parts = []
    for a in range(0, len(items), batch_size):
        batch = items[a:a + batch_size]
        emb = torch.as_tensor(encode(batch)).detach()
        if emb.ndim != 2 or emb.shape[0] != len(batch):
            raise DataError(f"{what} returned shape {tuple(emb.shape)} for {len(batch)} inputs; "
                            f"expected [{len(batch)}, d]")
        parts.append(emb)
    return torch.cat(parts)


@torch.no_grad()
def evaluate(encoder: ImageTextEncoder, corpus: CorpusLike, protocol: str = "1k",
             batch_size: int = 128, **kwargs) -> dict[str, float]:
    """Embed every image and caption of ``corpus`` with ``encoder`` and apply ``protocol``.

    ``corpus`` is usually a ``Corpus.select('test')``. Images are passed to
    ``encode_image`` as ``corpus.image_path(i)``. ``kwargs`` (``fold_size``,
    ``chunk_size``) go to ``evaluate_embeddings``. Identity labels are used only by
    ``cuhk``; on Flickr and COCO every image is its own class anyway.
    """
    if protocol not in PROTOCOLS:  # fail before the expensive encoding
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; choose one of {PROTOCOLS}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    paths = [corpus.image_path(i) for i in range(len(corpus.images))]
    img = _encode_batches(encoder.encode_image, paths, batch_size, "encode_image")
    txt = _encode_batches(encoder.encode_text, list(corpus.captions), batch_size, "encode_text")
    label = corpus.image_label if protocol == "cuhk" else None
    return evaluate_embeddings(img, txt.to(img.device), corpus.caption_image, protocol,
                               image_label=label, **kwargs)
