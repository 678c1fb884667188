"""Image-text retrieval metrics and the paper's evaluation protocols (SPEC 5).

Two layers:

* ``retrieval_ranks`` ranks embeddings, giving per query the rank of its first positive
  and its AP, for image->text (``i2t``) and text->image (``t2i``) retrieval.
  ``retrieval_metrics`` turns them into R@1/5/10, median and mean rank and mAP.
* ``evaluate_embeddings`` applies a protocol (``1k``, ``coco-1k``, ``coco-5k``, ``cuhk``) and
  ``evaluate`` first embeds a corpus with any encoder that has ``encode_image`` and
  ``encode_text``.

The ranking is a kernel: it counts, for every positive of every query, the negatives scoring at
least as high, in one streamed matrix product for both directions. Its definition is
``dualpath.evaluate_reference``: one sort per query under the rules below, short enough to read.
The kernel must equal it (per-query ranks and AP; ``tests/method/test_evaluate.py``,
``benchmarks/bench_evaluate.py``).

Positives. Image ``i`` and caption ``t`` match when ``t`` describes ``i``
(``caption_image[t] == i``), or, when ``image_label`` is given (CUHK-PEDES), when ``t``
describes any image with the same label as ``i``. The same rule holds in both directions.

Tie rule (pessimistic). A negative whose similarity equals a positive's is ranked *ahead*
of it. The 0-based rank of a query is the number of negatives whose similarity is ``>=``
that of its best positive. The rank of its k-th best positive (1-based ``k``) is
``k - 1 + #(negatives >= that positive)``, and AP is ``mean_k k / (rank_k + 1)``. How tied
positives are ordered among themselves does not change AP. Under the optimistic rule a
constant (collapsed) embedding would score R@1 = 100; under this one it ranks last.

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
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from .errors import ConfigError, DataError

PROTOCOLS = ("1k", "coco-1k", "coco-5k", "cuhk")
DIRECTIONS = ("i2t", "t2i")
RECALL_AT = (1, 5, 10)
#: R@K of each direction in display order, ``i2t_r1`` ... ``t2i_r10``; ``rsum`` is their sum.
RECALL_KEYS = tuple(f"{d}_r{k}" for d in DIRECTIONS for k in RECALL_AT)


def metric_keys(*stats: str) -> tuple[str, ...]:
    """Metric names in display order: per direction R@1/5/10 then each of ``stats`` (``medr``,
    ``meanr``, ``map``: what :func:`summarise_ranks` also reports), then ``rsum``."""
    return (*(k for d in DIRECTIONS for k in (*(f"{d}_r{K}" for K in RECALL_AT), *(f"{d}_{s}" for s in stats))),
            "rsum")

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
    return x


def _normalised(x: torch.Tensor, name: str) -> torch.Tensor:
    """Rows scaled to unit length. A non-finite norm flags NaN/inf input at O(n) cost."""
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    if not torch.isfinite(norms).all():
        raise DataError(f"{name} contains NaN or infinite values (or overflows)")
    return x / norms.clamp_min(1e-12)


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
    return _normalised(img.to(dtype), "img_emb"), _normalised(txt.to(dtype), "txt_emb")


# --------------------------------------------------------------------------------------
# Positive pairs
# --------------------------------------------------------------------------------------

def _positive_pairs(caption_image: torch.Tensor, image_label: torch.Tensor | None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """All matching (image, caption) index pairs, in caption order.

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
    return img_idx, cap_idx


def _pair_scores(img: torch.Tensor, txt: torch.Tensor, img_idx: torch.Tensor,
                 cap_idx: torch.Tensor, batch: int) -> torch.Tensor:
    """Similarity of each positive pair, gathered ``batch`` pairs at a time to bound memory."""
    # In caption order with one pair per caption, cap_idx is arange: slice, don't gather.
    one_per_caption = len(cap_idx) == len(txt)
    out = torch.empty(len(img_idx), dtype=img.dtype, device=img.device)
    for a in range(0, len(img_idx), batch):
        b = a + batch
        captions = txt[a:b] if one_per_caption else txt[cap_idx[a:b]]
        out[a:b] = torch.einsum("nd,nd->n", img[img_idx[a:b]], captions)
    return out


@dataclass(frozen=True)
class _Slots:
    """One direction's positive scores, laid out as thresholds to count against.

    ``table[q, k]`` is query q's (k+1)-th best positive score, NaN where it has fewer
    positives. NaN compares false, so padded slots count nothing. The first ``dense``
    slots are filled for at least half of the queries and are compared for all of them
    at once. Later slots (COCO images with 6-7 captions, large CUHK identities) are
    compared only for the queries that fill them.
    """

    table: torch.Tensor   # [n_queries, m_max]
    counts: torch.Tensor  # [n_queries] positives per query
    dense: int


def _slots(query: torch.Tensor, scores: torch.Tensor, n_queries: int) -> _Slots:
    by_score = torch.argsort(scores, descending=True, stable=True)
    order = by_score[torch.argsort(query[by_score], stable=True)]
    query, scores = query[order], scores[order]
    counts = torch.bincount(query, minlength=n_queries)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(query), device=query.device) - start[query]
    table = torch.full((n_queries, max(int(counts.max()), 1)), math.nan, dtype=scores.dtype,
                       device=scores.device)
    table[query, slot] = scores
    half = (n_queries + 1) // 2
    return _Slots(table, counts, dense=int(counts.sort(descending=True).values[half - 1]))


# --------------------------------------------------------------------------------------
# Counting negatives ahead of each positive
# --------------------------------------------------------------------------------------
# Torch has no fused "count >=", and the comparisons cost as much as the matrix product
# when each one streams the whole chunk through memory. So the chunk is swept in row blocks
# small enough for the cache, and each block is compared against all of its dense slots
# in one broadcast ``ge``. The comparisons write into a float scratch and are summed as
# floats, because torch sums bool through an int64 cast, several times slower. A float32
# sum of ones is exact below 2**24 terms; longer sums use float64.
# On CPU the sweep runs on a quarter of torch's threads (at least one). These ops are
# memory-bound, so a few threads already fill the bandwidth. Each op ends in a fork/join,
# and when the cores are shared (a sweep of parallel jobs, CI) every join waits for the
# slowest thread. Measured at 5k x 25k on 2 cores shared with other jobs (load ~6): with
# two threads the counting took ~2.5x as long as the matrix product, with one ~0.4x.

_BLOCK_ELEMENTS = 1 << 22  # comparison scratch per row block: 16 MB in float32


@contextmanager
def _counting_threads(device: torch.device) -> Iterator[None]:
    """Run the enclosed CPU ops on a quarter of torch's threads, then restore the count."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(max(1, before // 4))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _view(scratch: torch.Tensor, *shape: int) -> torch.Tensor:
    return scratch[:math.prod(shape)].view(shape)


def _row_counts(block: torch.Tensor, slots: _Slots, rows: slice,
                scratch: torch.Tensor) -> torch.Tensor:
    """``out[r, k] = #{j : block[r, j] >= table[r, k]}`` for the queries ``rows`` of ``block``."""
    table, counts = slots.table[rows], slots.counts[rows]
    out = torch.zeros(table.shape, dtype=torch.int64, device=block.device)
    if slots.dense:
        hits = torch.ge(block[:, None, :], table[:, :slots.dense, None],
                        out=_view(scratch, len(block), slots.dense, block.shape[1]))
        out[:, :slots.dense] = hits.sum(2).long()
    for k in range(slots.dense, table.shape[1]):
        few = torch.nonzero(counts > k).squeeze(1)
        if len(few):
            hits = torch.ge(block[few], table[few, k, None],
                            out=_view(scratch, len(few), block.shape[1]))
            out[few, k] = hits.sum(1).long()
    return out


def _col_counts(block: torch.Tensor, dense: torch.Tensor, sparse: list, scratch: torch.Tensor,
                out: torch.Tensor) -> None:
    """``out[c, k] += #{r : block[r, c] >= threshold of column query c in slot k}``.

    ``dense`` holds the dense slots' thresholds as ``[slots, n_columns]``; ``sparse``
    holds ``(k, columns, thresholds)`` for each later slot.
    """
    if len(dense):
        hits = torch.ge(block[:, None, :], dense[None],
                        out=_view(scratch, len(block), len(dense), block.shape[1]))
        out[:, :len(dense)] += hits.sum(0).T.long()
    for k, cols, thresholds in sparse:
        hits = torch.ge(block[:, cols], thresholds, out=_view(scratch, len(block), len(cols)))
        out[cols, k] += hits.sum(0).long()


def _negatives_ahead(img: torch.Tensor, txt: torch.Tensor, img_idx: torch.Tensor,
                     cap_idx: torch.Tensor, slots: dict[str, _Slots],
                     chunk_size: int) -> dict[str, torch.Tensor]:
    """Stream ``img @ txt.T`` in row chunks, counting for every positive of every query the
    negatives scoring at least as high. One matrix product serves both directions.

    Positive entries are set to -inf in each chunk, so the counts hold negatives only.
    Their scores enter solely as thresholds from ``_pair_scores``, and the matrix product
    never has to reproduce them bit for bit. Memory: one ``chunk_size x n_captions``
    block of similarities, plus O(n_captions x slots) vectors and scratch.
    """
    n_img, n_cap = len(img), len(txt)
    by_image = torch.argsort(img_idx, stable=True)  # each chunk's pairs become one range
    img_idx, cap_idx = img_idx[by_image], cap_idx[by_image]
    ahead = {d: torch.zeros(s.table.shape, dtype=torch.int64, device=img.device)
             for d, s in slots.items()}
    widest = max(max(s.dense, 1) for s in slots.values())
    block_rows = max(1, _BLOCK_ELEMENTS // (widest * n_cap))
    exact = torch.float32 if max(n_cap, block_rows) < 2 ** 24 else torch.float64
    scratch = torch.empty(block_rows * widest * n_cap, dtype=exact, device=img.device)
    sim_buffer = torch.empty(min(chunk_size, n_img) * n_cap, dtype=img.dtype, device=img.device)
    if "t2i" in slots:  # column thresholds, laid out for the column sweep
        t2i = slots["t2i"]
        dense_t2i = t2i.table[:, :t2i.dense].T.contiguous()
        sparse_t2i = []
        for k in range(t2i.dense, t2i.table.shape[1]):
            cols = torch.nonzero(t2i.counts > k).squeeze(1)
            sparse_t2i.append((k, cols, t2i.table[cols, k]))
    starts = torch.arange(0, n_img + chunk_size, chunk_size, device=img.device)
    bounds = torch.searchsorted(img_idx, starts.clamp_(max=n_img)).tolist()
    for c, start in enumerate(range(0, n_img, chunk_size)):
        stop = min(start + chunk_size, n_img)
        sim = torch.mm(img[start:stop], txt.T, out=_view(sim_buffer, stop - start, n_cap))
        lo, hi = bounds[c], bounds[c + 1]
        sim[img_idx[lo:hi] - start, cap_idx[lo:hi]] = -math.inf
        with _counting_threads(img.device):
            for a in range(start, stop, block_rows):
                b = min(a + block_rows, stop)
                block = sim[a - start:b - start]
                if "i2t" in slots:
                    ahead["i2t"][a:b] = _row_counts(block, slots["i2t"], slice(a, b), scratch)
                if "t2i" in slots:
                    _col_counts(block, dense_t2i, sparse_t2i, scratch, ahead["t2i"])
    return ahead


# --------------------------------------------------------------------------------------
# From counts to metrics
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QueryRanks:
    """Per-query results of one direction, in query order (images for i2t, captions t2i)."""

    rank0: np.ndarray  # int64: negatives ranked at or above the best positive (0 = hit@1)
    ap: np.ndarray     # float64: average precision over all of the query's positives, in [0, 1]


def _query_ranks(ahead: torch.Tensor, counts: torch.Tensor) -> QueryRanks:
    """Rank of the first positive and AP per query, from the negatives ahead of each slot."""
    ahead, counts = ahead.cpu(), counts.cpu()
    k = torch.arange(1, ahead.shape[1] + 1, dtype=torch.float64)
    precision = k / (k + ahead)  # the k-th positive sits at 1-based position k + ahead
    valid = k[None, :] <= counts[:, None]
    ap = (precision * valid).sum(1) / counts
    return QueryRanks(rank0=ahead[:, 0].numpy(), ap=ap.numpy())


@torch.no_grad()
def retrieval_ranks(img_emb: ArrayLike, txt_emb: ArrayLike, caption_image: ArrayLike, *,
                    image_label: ArrayLike | None = None, chunk_size: int = 1024,
                    directions: Sequence[str] = DIRECTIONS) -> dict[str, QueryRanks]:
    """Rank every caption for every image (i2t) and every image for every caption (t2i).

    Args:
        img_emb: ``[n_images, d]`` image embeddings (tensor or array; normalised here).
        txt_emb: ``[n_captions, d]`` caption embeddings, in any order.
        caption_image: ``[n_captions]`` image index of each caption.
        image_label: optional ``[n_images]`` class per image; when given, a caption matches
            every image of its image's class (CUHK-PEDES identities).
        chunk_size: image rows per chunk of the similarity matrix; memory peaks at
            ``chunk_size * n_captions`` scores plus O(n_captions) vectors.
        directions: any of ``("i2t", "t2i")``.

    Returns:
        ``{direction: QueryRanks}``, under the tie rule of the module docstring.

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
    # gather no more pairs at a time than fill one similarity chunk
    batch = max(256, min(chunk_size, n_img) * n_cap // (2 * img.shape[1]))
    scores = _pair_scores(img, txt, img_idx, cap_idx, batch)
    slots = {}
    if "i2t" in directions:
        slots["i2t"] = _slots(img_idx, scores, n_img)
        lonely = int((slots["i2t"].counts == 0).sum())
        if lonely:
            raise DataError(f"{lonely} of {n_img} images have no matching caption, so image->text "
                            f"ranks are undefined; drop them or evaluate with directions=('t2i',)")
    if "t2i" in directions:
        slots["t2i"] = _slots(cap_idx, scores, n_cap)

    ahead = _negatives_ahead(img, txt, img_idx, cap_idx, slots, chunk_size)
    return {d: _query_ranks(ahead[d], slots[d].counts) for d in directions}


def round_metrics(metrics: dict, ndigits: int = 2) -> dict:
    """``metrics`` (nested dicts allowed) with every float rounded to ``ndigits`` decimals: what a
    recall carries (a recall over 5,000 queries moves in steps of 0.02), without the float noise of
    a sum (``27.200000000000003``). For files and logs; selection uses the unrounded values."""
    return {k: round_metrics(v, ndigits) if isinstance(v, dict) else
            round(v, ndigits) if isinstance(v, float) else v for k, v in metrics.items()}


def summarise_ranks(ranks: dict[str, QueryRanks]) -> dict[str, float]:
    """R@1/5/10 and mAP (%), medr, meanr per direction, and ``rsum`` over all of them."""
    out: dict[str, float] = {}
    for d, r in ranks.items():
        out.update({f"{d}_r{K}": 100.0 * float(np.mean(r.rank0 < K)) for K in RECALL_AT})
        out[f"{d}_medr"] = float(np.floor(np.median(r.rank0)) + 1)
        out[f"{d}_meanr"] = float(r.rank0.mean() + 1)
        out[f"{d}_map"] = 100.0 * float(r.ap.mean())
    out["rsum"] = sum(out[f"{d}_r{K}"] for d in ranks for K in RECALL_AT)
    return out


def retrieval_metrics(img_emb: ArrayLike, txt_emb: ArrayLike, caption_image: ArrayLike, *,
                      image_label: ArrayLike | None = None, chunk_size: int = 1024,
                      directions: Sequence[str] = DIRECTIONS) -> dict[str, float]:
    """``summarise_ranks(retrieval_ranks(...))``: the retrieval metrics of the embeddings.

    Returns ``{dir}_r1, {dir}_r5, {dir}_r10`` (%), ``{dir}_medr``, ``{dir}_meanr`` and
    ``{dir}_map`` (%) for each direction, and ``rsum``. Arguments as ``retrieval_ranks``.
    """
    return summarise_ranks(retrieval_ranks(img_emb, txt_emb, caption_image,
                                           image_label=image_label, chunk_size=chunk_size,
                                           directions=directions))


# --------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------

def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; choose one of {PROTOCOLS}")


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
    _check_protocol(protocol)
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
        label = None if image_label is None else _as_index(image_label, "image_label",
                                                            len(img), None, "cpu").numpy()
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
    ``chunk_size``) go to ``evaluate_embeddings``.
    """
    _check_protocol(protocol)  # fail before the expensive encoding
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    paths = [corpus.image_path(i) for i in range(len(corpus.images))]
    img = _encode_batches(encoder.encode_image, paths, batch_size, "encode_image")
    txt = _encode_batches(encoder.encode_text, list(corpus.captions), batch_size, "encode_text")
    return evaluate_corpus(img, txt.to(img.device), corpus, protocol, **kwargs)


def evaluate_corpus(img_emb: ArrayLike, txt_emb: ArrayLike, corpus: CorpusLike, protocol: str,
                    **kwargs) -> dict[str, float]:
    """``evaluate_embeddings`` for the images and captions of ``corpus``, in its order.

    Identity labels are passed only for ``cuhk``; on Flickr and COCO every image is its own
    class anyway.
    """
    label = corpus.image_label if protocol == "cuhk" else None
    return evaluate_embeddings(img_emb, txt_emb, corpus.caption_image, protocol,
                               image_label=label, **kwargs)
