"""Read-outs of a trained run behind the book's training and evaluation notebooks (the notebooks
only call and show).

* retrieval: :func:`top_k`, :func:`retrieval_examples`, :func:`spread_queries`, :func:`search_embeddings`;
* the shared space: :func:`project_groups` (2-D PCA of a few image/text groups), :func:`group_distances`;
* the paper's word-importance figure: :func:`word_importance` (remove one word at a time and
  measure how much the image-caption similarity drops), :func:`well_matched_captions`;
* the run's files: :func:`recheck_test_metrics` (the stored test metrics recomputed from the
  checkpoints), :func:`metrics_frame`, :func:`log_summary`.

The data chapter's tables are in :mod:`.data_tables`, the published numbers in :mod:`.literature`
and the sentences generated from a config in :mod:`.prose`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dualpath.data.corpus import Corpus
from dualpath.data.text import tokenize
from dualpath.evaluate import evaluate_corpus, metric_keys, round_metrics


# ----------------------------------------------------------------------------- retrieval
def top_k(queries: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and indices of the ``k`` most similar keys per query (rows L2-normalised; cosine)."""
    scores = queries @ keys.T
    k = min(k, keys.shape[0])
    # stable order for equal scores: the earlier key first (as dualpath.search does)
    order = torch.argsort(-scores, dim=1, stable=True)[:, :k]
    return torch.gather(scores, 1, order), order


@dataclass
class RetrievalExamples:
    direction: str              # 'i2t' (image query -> captions) or 't2i' (caption -> images)
    queries: list[int]          # query indices (image ids for i2t, caption ids for t2i)
    results: list[list[int]]    # ranked result indices per query
    scores: list[list[float]]
    correct: list[list[bool]]
    first_hit: list[int]        # 1-based rank of the first correct result among all candidates

    def for_grid(self, corpus: Corpus) -> tuple[list, list, list]:
        """``(queries, results, correct)`` as :func:`dualpath_book.figures.retrieval.retrieval_grid` takes them."""
        if self.direction == "i2t":
            q = [corpus.image_path(i) for i in self.queries]
            r = [[corpus.captions[c] for c in row] for row in self.results]
        else:
            q = [corpus.captions[c] for c in self.queries]
            r = [[corpus.image_path(i) for i in row] for row in self.results]
        return q, r, self.correct


def retrieval_examples(img_emb: torch.Tensor, txt_emb: torch.Tensor, caption_image, direction: str,
                       queries: Sequence[int], k: int = 5) -> RetrievalExamples:
    """Top-``k`` results of the given queries, with which of them are correct."""
    cap_img = torch.as_tensor(np.asarray(caption_image), dtype=torch.long)
    queries = [int(q) for q in queries]
    if direction == "i2t":
        q_emb, keys = img_emb[queries], txt_emb
        positive = cap_img.unsqueeze(0) == torch.tensor(queries).unsqueeze(1)      # [q, n_cap]
    elif direction == "t2i":
        q_emb, keys = txt_emb[queries], img_emb
        positive = torch.arange(img_emb.shape[0]).unsqueeze(0) == cap_img[queries].unsqueeze(1)
    else:
        raise ValueError(f"direction must be 'i2t' or 't2i', got {direction!r}")
    scores, order = top_k(q_emb, keys, k)
    all_scores = q_emb @ keys.T
    best_pos = torch.where(positive, all_scores, torch.tensor(-np.inf)).max(dim=1).values
    # ties count against the query, as in dualpath.evaluate (a negative scoring as high as the
    # best positive is ranked ahead of it)
    first_hit = ((all_scores >= best_pos.unsqueeze(1)) & ~positive).sum(dim=1) + 1
    correct = torch.gather(positive, 1, order)
    return RetrievalExamples(direction, queries, order.tolist(), scores.tolist(), correct.tolist(),
                             first_hit.tolist())


def spread_queries(n_total: int, n: int, seed: int = 0) -> list[int]:
    """``n`` distinct query indices drawn reproducibly from ``range(n_total)``."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n_total, size=min(n, n_total), replace=False).tolist())


def search_embeddings(encoder, query: str, img_emb: torch.Tensor, k: int = 5) -> list[tuple[int, float]]:
    """Text query -> ``k`` (image index, cosine) over precomputed image embeddings."""
    q = encoder.encode_text([query])
    scores, order = top_k(q, img_emb, k)
    return list(zip(order[0].tolist(), scores[0].tolist()))


# ----------------------------------------------------------------------------- shared space
def project_groups(img_emb: torch.Tensor, txt_emb: torch.Tensor, caption_image,
                   image_ids: Sequence[int]) -> tuple[np.ndarray, list[str], list[int]]:
    """2-D PCA (``torch.pca_lowrank``) of the given images and all their captions.

    Returns ``(points [n, 2], kinds, groups)`` for :func:`dualpath_book.figures.retrieval.embedding_projection_plot`:
    kind is ``image`` or ``text`` and group is the image id.
    """
    cap_img = np.asarray(caption_image)
    rows, kinds, groups = [], [], []
    for i in image_ids:
        rows.append(img_emb[i])
        kinds.append("image")
        groups.append(int(i))
        for c in np.flatnonzero(cap_img == i).tolist():
            rows.append(txt_emb[c])
            kinds.append("text")
            groups.append(int(i))
    x = torch.stack(rows).float()
    mean = x.mean(dim=0, keepdim=True)
    _, _, v = torch.pca_lowrank(x, q=2, center=True, niter=6)
    return ((x - mean) @ v[:, :2]).numpy(), kinds, groups


def group_distances(img_emb: torch.Tensor, txt_emb: torch.Tensor, caption_image) -> dict[str, float]:
    """Mean cosine of each caption to its own image and to the other images (the space's margin)."""
    cap_img = torch.as_tensor(np.asarray(caption_image), dtype=torch.long)
    sims = txt_emb @ img_emb.T
    own = sims[torch.arange(len(cap_img)), cap_img]
    mask = torch.ones_like(sims, dtype=torch.bool)
    mask[torch.arange(len(cap_img)), cap_img] = False
    return {"own_image": float(own.mean()), "other_images": float(sims[mask].mean())}


# ----------------------------------------------------------------------------- word importance
@dataclass
class WordImportance:
    caption: str
    words: list[str]            # the caption's tokens, in order
    in_vocab: list[bool]        # out-of-vocabulary words are dropped by the model: drop 0
    base: float                 # cosine of the full caption with the image
    scores: list[float]         # cosine with the word removed
    drops: list[float]          # base - score: how much the match relies on the word

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"word": self.words, "in vocabulary": self.in_vocab,
                             "similarity without it": self.scores, "drop": self.drops})

    def top(self, n: int = 3) -> list[str]:
        """The ``n`` words whose removal hurts most."""
        order = np.argsort(-np.asarray(self.drops), kind="stable")[:n]
        return [self.words[i] for i in order]


def _image_vector(encoder, image) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        v = image.float().reshape(-1)
        return F.normalize(v, dim=0)
    return encoder.encode_image([image])[0]


@torch.no_grad()
def word_importance(encoder, image, caption: str) -> WordImportance:
    """The paper's word-importance analysis (figure g; official ``find_attention_feature*.m``).

    Remove one word of ``caption`` at a time, re-embed the shortened sentence and record how far
    its cosine similarity to ``image`` falls. ``encoder`` has ``encode_text`` (and
    ``encode_image`` unless ``image`` is already an embedding vector) and ``vocab`` (for the
    tokenizer's case rule), e.g. :class:`dualpath.search.Encoder`.
    """
    vocab = encoder.vocab
    words = tokenize(caption, vocab.lowercase)
    if not words:
        raise ValueError(f"caption {caption!r} has no words")
    img = _image_vector(encoder, image)
    variants = [caption] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    emb = encoder.encode_text(variants)
    sims = (emb @ img).tolist()
    base, scores = sims[0], sims[1:]
    return WordImportance(caption, words, [w in vocab for w in words], base, scores,
                          [base - s for s in scores])


def well_matched_captions(img_emb: torch.Tensor, txt_emb: torch.Tensor, caption_image, n: int = 3,
                          min_words: int = 6, captions: Sequence[str] | None = None) -> list[int]:
    """``n`` caption ids, from distinct images, that retrieve their own image best.

    Ordered by the rank of the own image among all test images (then by similarity), so the
    word-importance figure explains matches the model actually gets right when it has any.
    """
    cap_img = torch.as_tensor(np.asarray(caption_image), dtype=torch.long)
    sims = txt_emb @ img_emb.T
    own = sims[torch.arange(len(cap_img)), cap_img]
    rank = (sims > own.unsqueeze(1)).sum(dim=1)
    order = sorted(range(len(cap_img)), key=lambda c: (int(rank[c]), -float(own[c])))
    picked, seen = [], set()
    for c in order:
        if captions is not None and len(tokenize(captions[c])) < min_words:
            continue
        if int(cap_img[c]) in seen:
            continue
        picked.append(c)
        seen.add(int(cap_img[c]))
        if len(picked) == n:
            break
    return picked


# ----------------------------------------------------------------------------- the run's files
def recheck_test_metrics(run, metrics: dict[str, dict[str, Any]], phases: Sequence[str]):
    """Each phase's test embeddings from its best checkpoint, the test corpus, and the largest
    absolute difference between the metrics recomputed from them (by the run's own protocol,
    rounded as ``metrics.json`` is) and the stored ``metrics``: 0 when the files tell the truth."""
    embeddings, worst = {}, 0.0
    for phase in phases:
        img, txt, test = run.test_embeddings(phase)
        embeddings[phase] = img, txt
        again = round_metrics(evaluate_corpus(img, txt, test, run.cfg.protocol))
        worst = max(worst, *(abs(again[k] - metrics[phase][k]) for k in again))
    return embeddings, test, worst


def metrics_frame(metrics: dict[str, dict[str, Any]], phases: Sequence[str] = ("stage1", "stage2"),
                  labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Test metrics of the given phases (rows) from a run's ``metrics.json``."""
    labels = labels or {"stage1": "Stage I", "stage2": "Stage II"}
    cols = [*metric_keys("medr", "map"), "best_epoch"]
    rows = {labels.get(p, p): {c: metrics[p].get(c, np.nan) for c in cols} for p in phases if p in metrics}
    # object dtype: the best epoch stays an integer beside the float recalls (page.readable shows it)
    return pd.DataFrame.from_dict(rows, orient="index", dtype=object)


def log_summary(log: pd.DataFrame, phase: str) -> dict[str, float]:
    """First / last values of a phase's losses and accuracies, and its best validation epoch."""
    rows = log[log.phase == phase].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"the log has no rows of phase {phase!r} (phases: {sorted(set(log.phase))})")
    best = int(rows.val_rsum.idxmax())
    out: dict[str, float] = {"epochs": len(rows), "best_epoch": int(rows.epoch[best]),
                             "best_val_rsum": float(rows.val_rsum[best])}
    for col in ("loss", "loss_rank", "loss_img", "loss_txt"):
        out[f"{col}_first"], out[f"{col}_last"] = float(rows[col].iloc[0]), float(rows[col].iloc[-1])
    for col in ("acc_img", "acc_txt"):
        out[f"{col}_last"] = 100.0 * float(rows[col].iloc[-1])
    out["seconds"] = float(rows.epoch_s.sum())
    return out
