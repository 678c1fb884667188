"""The page prose generated from a run's config (and, for the word vectors, its coverage report):
each sentence says what this run did, never a template that assumes one recipe.

* data: :func:`vocabulary_sentence`, :func:`word_vector_sentence`;
* training: :func:`stage1_sentence`, :func:`stage2_sentence`;
* against the paper: :func:`scale_sentence` (how the network and budget differ from the paper preset's).
"""
from __future__ import annotations

from typing import Any, Sequence

from dualpath.config import Config
from dualpath.models.widths import word_vector_dim

from .literature import BACKBONE_NAMES, word_vector_name


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
    if coverage.get("source") == "random":
        return "The paper initialises it with word2vec; this run starts it from random vectors."
    name = word_vector_name(cfg)
    source = {"GloVe": "GloVe 6B vectors, installed from PyPI",
              "word2vec": "word2vec vectors, as the paper does"}.get(name, f"{name} vectors")
    return f"The paper initialises it with word2vec; this run uses {coverage['dim']}-d {source}."


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
