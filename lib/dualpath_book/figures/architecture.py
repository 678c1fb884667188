"""The dual-path network drawn from a ``Config``: layer widths come from ``dualpath.models.widths``."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from dualpath.config import Config, preset
from dualpath.io import atomic_path
from dualpath.models.widths import image_head_widths, text_stage_shapes, word_vector_dim

from ..literature import BACKBONE_NAMES, DATASET_NAMES, TRAIN_CLASSES, word_vector_name
from .style import IMAGE_COLOR, LOSS_COLOR, SHARED_COLOR, TEXT_COLOR


def _box(ax, x, y, w, h, text, color, *, fontsize=7.5, alpha=0.18, linestyle="-", bold_first=True):
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.8",
                           facecolor=color, edgecolor=color, linewidth=1.2, linestyle=linestyle)
    patch.set_facecolor((*_rgb(color), alpha))
    ax.add_patch(patch)
    lines = text.split("\n")
    if bold_first and len(lines) > 1:
        ax.text(x, y + h / 2 - 1.0, lines[0], ha="center", va="top", fontsize=fontsize, fontweight="bold")
        ax.text(x, y - 0.6, "\n".join(lines[1:]), ha="center", va="center", fontsize=fontsize - 0.5,
                linespacing=1.25)
    else:
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, fontweight="bold")
    return (x, y, w, h)


def _rgb(color: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def _arrow(ax, start, end, *, style="-|>", color="#444444", ls="-", rad=0.0, lw=1.1):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, color=color,
                                 linestyle=ls, linewidth=lw, connectionstyle=f"arc3,rad={rad}",
                                 shrinkA=0, shrinkB=0))


def _right(b):
    return (b[0] + b[2] / 2, b[1])


def _left(b):
    return (b[0] - b[2] / 2, b[1])


# The drawing's layout, in axis units: the image row above the text row, the objective to the right.
_Y_IMAGE, _Y_TEXT, _H = 35.0, 9.5, 11.0
_Y_MID = (_Y_IMAGE + _Y_TEXT) / 2
_X_TEXT = np.linspace(4, 92, 8)     # the text row's 8 boxes
_X_IMAGE = np.linspace(4, 92, 5)    # the image row's 5, the last aligned with the text fc box
_W_TEXT, _W_IMAGE = 11.2, 14.5


def architecture_figure(cfg: Config, *, n_classes: int | None = None, dataset_label: str | None = None,
                        title: str | None = None) -> Figure:
    """Block diagram of the dual-path network for a config, with the channel widths it implies.

    ``n_classes`` defaults to the number of training images (CUHK-PEDES: identities) of
    ``cfg.dataset``'s standard split; ``dataset_label`` names the dataset in the classifier box.
    """
    fig = Figure(figsize=(15.5, 5.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(-4, 137)
    ax.set_ylim(0.5, 44)
    ax.set_axis_off()
    t_boxes = _text_branch(ax, cfg)
    i_boxes = _image_branch(ax, cfg)
    for row in (t_boxes, i_boxes):
        for a, b in zip(row, row[1:]):
            _arrow(ax, _right(a), _left(b))
    _backbone_note(ax, cfg)
    _objective(ax, cfg, i_boxes[-1], t_boxes[-1], n_classes, dataset_label)
    _row_labels(ax, cfg)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _text_branch(ax, cfg: Config) -> list:
    """The text row: caption, word embedding, the four stages, max pool and fc5_2 (8 boxes)."""
    dim = image_head_widths(cfg)[2]
    stages = text_stage_shapes(cfg)
    y, h, w = _Y_TEXT, _H, _W_TEXT
    boxes = [
        _box(ax, _X_TEXT[0], y, w, h, f"caption\n≤ {cfg.max_len} words, one-hot\nposition shift", TEXT_COLOR),
        _box(ax, _X_TEXT[1], y, w, h, f"word embedding\n1×1 conv V→{word_vector_dim(cfg)}\n"
             f"{word_vector_name(cfg)} init, BN" +
             (f"\ndropout p = {cfg.text_input_dropout:g}" if cfg.text_input_dropout else ""), TEXT_COLOR),
    ]
    for i, s in enumerate(stages):
        stride = f"stride {s['stride']}, " if s["stride"] > 1 else ""
        boxes.append(_box(ax, _X_TEXT[2 + i], y, w, h,
                          f"stage {i + 1}\n{s['blocks']} × bottleneck\n{stride}1×2 conv\n"
                          f"{s['positions']} pos. × {s['out']} ch", TEXT_COLOR))
    boxes.append(_box(ax, _X_TEXT[6], y, w, h, f"max pool\nover positions\n{stages[-1]['out']}", TEXT_COLOR))
    boxes.append(_box(ax, _X_TEXT[7], y, w, h, f"fc5_2\n{stages[-1]['out']}→{dim}\nBN-ReLU-dropout\n"
                      f"$f_{{txt}} \\in \\mathbb{{R}}^{{{dim}}}$", TEXT_COLOR))
    return boxes


def _image_branch(ax, cfg: Config) -> list:
    """The image row: image, backbone, fc1, fc1_1 and dropout (5 boxes)."""
    head_in, head_hidden, dim = image_head_widths(cfg)
    grid = math.ceil(cfg.image_size / 32)
    pool = f"{grid}×{grid}×{head_in} → avg pool" if cfg.backbone != "vgg19" else f"fc6, fc7 → {head_in}"
    # cached views: 0 the image, 1 its mirror, 2.. random crops (train_views); pixels: crops each epoch
    augment = ("flip, crop" if cfg.finetune_blocks == -1 or cfg.train_views > 2 else
               "and its mirror" if cfg.train_views == 2 else "whole image")
    y, h, w = _Y_IMAGE, _H, _W_IMAGE
    return [
        _box(ax, _X_IMAGE[0], y, w, h, f"image\n{cfg.image_size}×{cfg.image_size}×3\n{augment}", IMAGE_COLOR),
        _box(ax, _X_IMAGE[1], y, w, h, f"{BACKBONE_NAMES.get(cfg.backbone, cfg.backbone)}\nImageNet-pretrained\n"
             f"{pool}", IMAGE_COLOR, linestyle="--"),
        _box(ax, _X_IMAGE[2], y, w, h, (f"dropout p = {cfg.image_input_dropout:g}\n" if cfg.image_input_dropout
                                        else "") + f"fc1\n{head_in}→{head_hidden}\nBN-ReLU", IMAGE_COLOR),
        _box(ax, _X_IMAGE[3], y, w, h, f"fc1_1\n{head_hidden}→{dim}\nBN-ReLU", IMAGE_COLOR),
        _box(ax, _X_IMAGE[4], y, _W_TEXT, h, f"dropout\np = {cfg.dropout:g}\n"
             f"$f_{{img}} \\in \\mathbb{{R}}^{{{dim}}}$", IMAGE_COLOR),
    ]


def _backbone_note(ax, cfg: Config) -> None:
    """Above the backbone: which of its blocks train in which stage."""
    tuned = ("frozen in both stages" if cfg.finetune_blocks == 0 else
             "frozen in stage I; all blocks fine-tuned in stage II" if cfg.finetune_blocks == -1 else
             f"frozen in stage I; top {cfg.finetune_blocks} blocks fine-tuned in stage II")
    ax.text(_X_IMAGE[1], _Y_IMAGE + _H / 2 + 1.2, tuned,
            ha="center", va="bottom", fontsize=7, style="italic")


def _objective(ax, cfg: Config, f_img, f_txt, n_classes: int | None, dataset_label: str | None) -> None:
    """The shared classifier and the instance losses right of the two features, the ranking loss
    between the rows, and what each stage trains."""
    dim = image_head_widths(cfg)[2]
    n = n_classes if n_classes is not None else TRAIN_CLASSES.get(cfg.dataset)
    n_text = f"{n:,}" if n is not None else "N"
    data_name = dataset_label or DATASET_NAMES.get(cfg.dataset, cfg.dataset)
    name = "W_share" if cfg.shared_classifier else "W_img, W_txt"
    bias = " + b" if cfg.classifier_bias else ""
    kind = f"{cfg.classifier_scale:g}·cos(f, w_c){bias}" if cfg.classifier_scale else f"{dim}→{n_text}{bias}"
    y_mid = _Y_MID
    cls = _box(ax, 108, y_mid, 14, 12,
               f"{name}\n{kind}\n{n_text} classes, one per\n{data_name} train "
               f"{'identity' if cfg.dataset == 'cuhk_pedes' else 'image'}",
               SHARED_COLOR, alpha=0.25)
    _arrow(ax, _right(f_img), (cls[0] - cls[2] / 2, y_mid + 3), rad=-0.15)
    _arrow(ax, _right(f_txt), (cls[0] - cls[2] / 2, y_mid - 3), rad=0.15)
    l_img = _box(ax, 127, _Y_IMAGE, 13, 7, f"L_img (λ2: 1 | {cfg.lambda_img:g})\nsoftmax CE, class c", LOSS_COLOR)
    l_txt = _box(ax, 127, _Y_TEXT, 13, 7, f"L_txt (λ3: 1 | {cfg.lambda_txt:g})\nsoftmax CE, class c", LOSS_COLOR)
    _arrow(ax, (cls[0] + cls[2] / 2, y_mid + 3), _left(l_img), rad=0.15)
    _arrow(ax, (cls[0] + cls[2] / 2, y_mid - 3), _left(l_txt), rad=-0.15)
    rank = _box(ax, 92, y_mid, 13, 8.5,
                f"L_rank (λ1: 0 | {cfg.lambda_rank:g})\ncosine, margin α = {cfg.margin:g}\n"
                f"negatives: {cfg.negatives}", LOSS_COLOR)
    _arrow(ax, (_X_IMAGE[3], _Y_IMAGE - _H / 2), (rank[0] - 2, y_mid + rank[3] / 2), ls="--", rad=0.1)
    _arrow(ax, (_X_TEXT[7] - 3, _Y_TEXT + _H / 2), (rank[0] - 2, y_mid - rank[3] / 2), ls="--", rad=0.0)
    features = {"act": "post-ReLU", "feat": "pre-ReLU"}[cfg.rank_features]
    ax.text(60, y_mid + 1.5, f"stage II only: L2-normalised {features} features (before dropout)",
            ha="center", va="center", fontsize=7, style="italic", color="#444444")
    ax.text(60, y_mid - 2.5,
            f"stage I: λ2·L_img + λ3·L_txt ({cfg.stage1_epochs} epochs)   ·   stage II: "
            f"λ1·L_rank + λ2·L_img + λ3·L_txt ({cfg.stage2_epochs} epochs)   ·   λ: stage I | stage II",
            ha="center", va="center", fontsize=7, color="#444444")


def _row_labels(ax, cfg: Config) -> None:
    ax.text(-3.5, _Y_IMAGE + _H / 2 + 1.2, "image branch", fontsize=9, fontweight="bold", color=IMAGE_COLOR,
            va="bottom")
    ax.text(-3.5, _Y_TEXT - _H / 2 - 1.0, f"text branch (width ×{cfg.text_width:g}, L = {cfg.max_len})", fontsize=9,
            fontweight="bold", color=TEXT_COLOR, va="top")


def write_architecture_figures(out_dir: str | os.PathLike) -> list[Path]:
    """Write ``architecture_cpu.png`` (the ``cpu`` preset on Flickr8k) and ``architecture_paper.png``
    (the ``paper`` preset: 300-d word2vec, Flickr30k's official 29,783-class split) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "architecture_cpu.png": (preset("cpu"), dict(title="CPU preset: this book's Flickr8k runs")),
        "architecture_paper.png": (
            preset("paper"), dict(title="Paper preset: ResNet-50, full-width text CNN, word2vec-300, Flickr30k")),
    }
    written = []
    for name, (cfg, kwargs) in figures.items():
        fig = architecture_figure(cfg, **kwargs)
        path = out / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
        written.append(path)
    return written


