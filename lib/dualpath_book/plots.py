"""Figures and tables shared by the notebooks and the book.

Every plotting function returns a :class:`matplotlib.figure.Figure` built with the object-oriented
API (no ``pyplot`` state, no ``plt.show``), so it works under any backend, including ``Agg`` in a
headless book build.  Styling comes from seaborn themes applied inside each call, never globally.

Reference numbers from the literature live in ``book/tables/*.csv``; :func:`load_reference_table`
reads them and :func:`results_table` puts a reproduction's numbers next to them.
"""
from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from dualpath.config import Config, preset
from dualpath.evaluate import RECALL_KEYS, metric_keys
from dualpath.io import atomic_path
from .layout import TABLES_DIR


#: The metric columns of every results table, in display order.
METRIC_COLUMNS = list(RECALL_KEYS)
RESULT_COLUMNS = ["method", "backbone", *metric_keys("medr"), "source"]

CORRECT_COLOR = "#2ca02c"
WRONG_COLOR = "#d62728"
IMAGE_COLOR = "#4c72b0"
TEXT_COLOR = "#dd8452"
SHARED_COLOR = "#55a868"
LOSS_COLOR = "#8c8c8c"


@contextmanager
def _style(style: str = "whitegrid", context: str = "notebook"):
    """Seaborn's theme for the figures made inside the block, restored afterwards."""
    import seaborn as sns

    with sns.axes_style(style), sns.plotting_context(context):
        yield sns


# ----------------------------------------------------------------------------------------------
# Literature tables


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


# ----------------------------------------------------------------------------------------------
# Architecture diagram

#: Pooled output channels of each backbone (VGG: fc7).
BACKBONE_CHANNELS = {"efficientnet_lite0": 1280, "resnet50": 2048, "resnet152": 2048, "vgg19": 4096}
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


def word_vector_dim(cfg: Config) -> int:
    """Size of the word-embedding layer's output for a config (what ``embed_dim=0`` resolves to)."""
    if cfg.embed_dim > 0:
        return cfg.embed_dim
    name = Path(cfg.word_vectors).stem.lower()          # 'glove50', 'glove.6b.100d', ...
    match = re.search(r"(\d+)d?$", name)
    if name.startswith("glove") and match:
        return int(match.group(1))
    return 300   # 'random' and word2vec files (GoogleNews: 300-d)


def image_head_widths(cfg: Config) -> tuple[int, int, int]:
    """(in, hidden, out) of the image head fc1 -> fc1_1 as ``dualpath.train`` builds it:
    C -> feature_dim -> feature_dim (the paper's ResNet head is 2048 -> 2048 -> 2048)."""
    channels = BACKBONE_CHANNELS.get(cfg.backbone)
    if channels is None:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; known: {', '.join(BACKBONE_CHANNELS)}")
    return channels, cfg.feature_dim, cfg.feature_dim


def text_stage_shapes(cfg: Config) -> list[dict]:
    """Per stage of the text CNN: blocks, (first-block mid, later mid, out) channels, positions."""
    from dualpath.models.text import STAGE_FIRST_MID, STAGE_MID, STAGE_OUT, STAGE_STRIDE, scaled

    shapes, length = [], cfg.max_len
    for n, out, first_mid, mid, stride in zip(cfg.text_blocks, STAGE_OUT, STAGE_FIRST_MID, STAGE_MID,
                                              STAGE_STRIDE):
        length = math.ceil(length / stride)
        shapes.append(dict(blocks=n, first_mid=scaled(first_mid, cfg.text_width),
                           mid=scaled(mid, cfg.text_width), out=scaled(out, cfg.text_width),
                           positions=length, stride=stride))
    return shapes


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


def architecture_figure(cfg: Config, *, n_classes: int | None = None, dataset_label: str | None = None,
                        title: str | None = None) -> Figure:
    """Block diagram of the dual-path network for a config, with the channel widths it implies.

    ``n_classes`` defaults to the number of training images (CUHK-PEDES: identities) of
    ``cfg.dataset``'s standard split; ``dataset_label`` names the dataset in the classifier box.
    """
    head_in, head_hidden, dim = image_head_widths(cfg)
    stages = text_stage_shapes(cfg)
    d = word_vector_dim(cfg)
    L = cfg.max_len
    n = n_classes if n_classes is not None else TRAIN_CLASSES.get(cfg.dataset)
    n_text = f"{n:,}" if n is not None else "N"
    data_name = dataset_label or DATASET_NAMES.get(cfg.dataset, cfg.dataset)
    backbone = BACKBONE_NAMES.get(cfg.backbone, cfg.backbone)
    spatial = cfg.backbone != "vgg19"
    grid = math.ceil(cfg.image_size / 32)
    tuned = ("frozen in both stages" if cfg.finetune_blocks == 0 else
             "frozen in stage I; all blocks fine-tuned in stage II" if cfg.finetune_blocks == -1 else
             f"frozen in stage I; top {cfg.finetune_blocks} blocks fine-tuned in stage II")
    # cached views: 0 the image, 1 its mirror, 2.. random crops (train_views); pixels: crops each epoch
    augment = ("flip, crop" if cfg.finetune_blocks == -1 or cfg.train_views > 2 else
               "and its mirror" if cfg.train_views == 2 else "whole image")
    words = word_vector_name(cfg)

    fig = Figure(figsize=(15.5, 5.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(-4, 137)
    ax.set_ylim(0.5, 44)
    ax.set_axis_off()

    y_img, y_txt, h = 35.0, 9.5, 11.0
    y_mid = (y_img + y_txt) / 2
    # --- text row: 8 boxes over x = 4..92
    xs_t = np.linspace(4, 92, 8)
    wt = 11.2
    t_boxes = [
        _box(ax, xs_t[0], y_txt, wt, h, f"caption\n≤ {L} words, one-hot\nposition shift", TEXT_COLOR),
        _box(ax, xs_t[1], y_txt, wt, h, f"word embedding\n1×1 conv V→{d}\n{words} init, BN" +
             (f"\ndropout p = {cfg.text_input_dropout:g}" if cfg.text_input_dropout else ""), TEXT_COLOR),
    ]
    for i, s in enumerate(stages):
        stride = f"stride {s['stride']}, " if s["stride"] > 1 else ""
        t_boxes.append(_box(ax, xs_t[2 + i], y_txt, wt, h,
                            f"stage {i + 1}\n{s['blocks']} × bottleneck\n{stride}1×2 conv\n"
                            f"{s['positions']} pos. × {s['out']} ch", TEXT_COLOR))
    t_boxes.append(_box(ax, xs_t[6], y_txt, wt, h, f"max pool\nover positions\n{stages[-1]['out']}",
                        TEXT_COLOR))
    t_boxes.append(_box(ax, xs_t[7], y_txt, wt, h, f"fc5_2\n{stages[-1]['out']}→{dim}\nBN-ReLU-dropout\n"
                        f"$f_{{txt}} \\in \\mathbb{{R}}^{{{dim}}}$", TEXT_COLOR))
    # --- image row: 5 boxes, the last one aligned with the text fc box
    xs_i = np.linspace(4, 92, 5)
    wi = 14.5
    pool = (f"{grid}×{grid}×{head_in} → avg pool" if spatial else f"fc6, fc7 → {head_in}")
    i_boxes = [
        _box(ax, xs_i[0], y_img, wi, h, f"image\n{cfg.image_size}×{cfg.image_size}×3\n{augment}",
             IMAGE_COLOR),
        _box(ax, xs_i[1], y_img, wi, h, f"{backbone}\nImageNet-pretrained\n{pool}", IMAGE_COLOR,
             linestyle="--"),
        _box(ax, xs_i[2], y_img, wi, h, (f"dropout p = {cfg.image_input_dropout:g}\n" if cfg.image_input_dropout
                                         else "") + f"fc1\n{head_in}→{head_hidden}\nBN-ReLU", IMAGE_COLOR),
        _box(ax, xs_i[3], y_img, wi, h, f"fc1_1\n{head_hidden}→{dim}\nBN-ReLU", IMAGE_COLOR),
        _box(ax, xs_i[4], y_img, wt, h, f"dropout\np = {cfg.dropout:g}\n"
             f"$f_{{img}} \\in \\mathbb{{R}}^{{{dim}}}$", IMAGE_COLOR),
    ]
    for row in (t_boxes, i_boxes):
        for a, b in zip(row, row[1:]):
            _arrow(ax, _right(a), _left(b))
    ax.text(xs_i[1], y_img + h / 2 + 1.2, tuned,
            ha="center", va="bottom", fontsize=7, style="italic")

    # --- shared classifier and losses
    name = "W_share" if cfg.shared_classifier else "W_img, W_txt"
    bias = " + b" if cfg.classifier_bias else ""
    kind = f"{cfg.classifier_scale:g}·cos(f, w_c){bias}" if cfg.classifier_scale else f"{dim}→{n_text}{bias}"
    cls = _box(ax, 108, y_mid, 14, 12,
               f"{name}\n{kind}\n{n_text} classes, one per\n{data_name} train "
               f"{'identity' if cfg.dataset == 'cuhk_pedes' else 'image'}",
               SHARED_COLOR, alpha=0.25)
    _arrow(ax, _right(i_boxes[-1]), (cls[0] - cls[2] / 2, y_mid + 3), rad=-0.15)
    _arrow(ax, _right(t_boxes[-1]), (cls[0] - cls[2] / 2, y_mid - 3), rad=0.15)
    l_img = _box(ax, 127, y_img, 13, 7, f"L_img (λ2: 1 | {cfg.lambda_img:g})\nsoftmax CE, class c", LOSS_COLOR)
    l_txt = _box(ax, 127, y_txt, 13, 7, f"L_txt (λ3: 1 | {cfg.lambda_txt:g})\nsoftmax CE, class c", LOSS_COLOR)
    _arrow(ax, (cls[0] + cls[2] / 2, y_mid + 3), _left(l_img), rad=0.15)
    _arrow(ax, (cls[0] + cls[2] / 2, y_mid - 3), _left(l_txt), rad=-0.15)
    rank = _box(ax, 92, y_mid, 13, 8.5,
                f"L_rank (λ1: 0 | {cfg.lambda_rank:g})\ncosine, margin α = {cfg.margin:g}\n"
                f"negatives: {cfg.negatives}", LOSS_COLOR)
    _arrow(ax, (xs_i[3], y_img - h / 2), (rank[0] - 2, y_mid + rank[3] / 2), ls="--", rad=0.1)
    _arrow(ax, (xs_t[7] - 3, y_txt + h / 2), (rank[0] - 2, y_mid - rank[3] / 2), ls="--", rad=0.0)
    ax.text(60, y_mid + 1.5, "stage II only: L2-normalised post-ReLU features (before dropout)",
            ha="center", va="center", fontsize=7, style="italic", color="#444444")
    ax.text(60, y_mid - 2.5,
            f"stage I: λ2·L_img + λ3·L_txt ({cfg.stage1_epochs} epochs)   ·   stage II: "
            f"λ1·L_rank + λ2·L_img + λ3·L_txt ({cfg.stage2_epochs} epochs)   ·   λ: stage I | stage II",
            ha="center", va="center", fontsize=7, color="#444444")
    ax.text(-3.5, y_img + h / 2 + 1.2, "image branch", fontsize=9, fontweight="bold", color=IMAGE_COLOR,
            va="bottom")
    ax.text(-3.5, y_txt - h / 2 - 1.0, f"text branch (width ×{cfg.text_width:g}, L = {L})", fontsize=9,
            fontweight="bold", color=TEXT_COLOR, va="top")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


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


PAPER_PRESETS = ("paper", "paper-coco", "paper-cuhk")


def preset_table(names: Sequence[str] = ("cpu", "paper")) -> pd.DataFrame:
    """The config keys on which the named presets differ, one column per preset."""
    dicts = {n: preset(n).to_dict() for n in names}
    keys = [k for k in dicts[names[0]] if len({repr(d[k]) for d in dicts.values()}) > 1]
    rows = {k: [_show(dicts[n][k]) for n in names] for k in keys}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(names)).rename_axis("key")


def _show(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def write_book_assets(out_dir: str | os.PathLike) -> list[Path]:
    """Everything the prose pages include from ``book/generated/``: the two architecture figures,
    ``presets.csv`` (cpu against paper) and ``paper_presets.csv`` (the three official recipes), both
    from :func:`preset_table`, and ``book_runs.csv`` (the measured whole runs).  The book build
    fails while any is missing."""
    out = Path(out_dir)
    written = write_architecture_figures(out)
    from .book_runs import display_table

    tables = {"presets.csv": preset_table(("cpu", "paper")), "paper_presets.csv": preset_table(PAPER_PRESETS),
              "book_runs.csv": display_table()}
    for name, frame in tables.items():
        path = out / name
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=name != "book_runs.csv")
        written.append(path)
    return written


# ----------------------------------------------------------------------------------------------
# Training curves

_LOSS_COLS = ["loss", "loss_img", "loss_txt", "loss_rank"]
_ACC_COLS = ["acc_img", "acc_txt"]
_VAL_COLS = [f"val_{k}" for k in RECALL_KEYS]


def _panel_of(col: str) -> str:
    if col.startswith("loss"):
        return "loss"
    if col.startswith("acc"):
        return "train accuracy (%)"
    if col == "val_rsum":
        return "val R-sum"
    if col.startswith("val"):
        return "val recall (%)"
    return col


def training_curves(log_df: pd.DataFrame, metrics: Sequence[str] | None = None, *,
                    title: str | None = None) -> Figure:
    """Per-epoch curves from a training log, one panel per kind (losses, accuracies, recalls, R-sum).

    ``log_df`` has an ``epoch`` column and any of ``loss, loss_img, loss_txt, loss_rank, acc_img,
    acc_txt, val_{i2t,t2i}_r{1,5,10}, val_rsum``; columns that are absent or all-NaN are skipped.
    With a ``phase`` (or ``stage``) column, as in ``dualpath.train``'s ``log.csv``, epochs are
    numbered continuously across phases and the stage-II epochs are shaded.
    """
    if "epoch" not in log_df.columns:
        raise ValueError("training log needs an 'epoch' column")
    wanted = list(metrics) if metrics is not None else _LOSS_COLS + _ACC_COLS + _VAL_COLS + ["val_rsum"]
    present = [c for c in wanted if c in log_df.columns and log_df[c].notna().any()]
    if not present:
        raise ValueError(f"none of the metrics {wanted} has values in the log "
                         f"(columns: {list(log_df.columns)})")
    df = log_df.reset_index(drop=True)
    stage_col = next((c for c in ("phase", "stage") if c in df.columns), None)
    epochs = df["epoch"].to_numpy(dtype=float)
    x = epochs if np.all(np.diff(epochs) > 0) else np.arange(1, len(df) + 1, dtype=float)

    panels: dict[str, list[str]] = {}
    for col in present:
        panels.setdefault(_panel_of(col), []).append(col)

    with _style():
        fig = Figure(figsize=(4.2 * len(panels), 3.4), dpi=100, layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (panel, cols) in zip(axes, panels.items()):
            for col in cols:
                # accuracies are logged as fractions; every other page quotes them in percent
                scale = 100.0 if col.startswith("acc") else 1.0
                ax.plot(x, scale * df[col].to_numpy(dtype=float), marker="o", markersize=2.5, linewidth=1.4,
                        label=col.removeprefix("val_"), **_line_style(col))
            if stage_col:
                _shade_stage_two(ax, x, df[stage_col])
            ax.set_xlabel("epoch (both stages)" if stage_col and df[stage_col].nunique() > 1 else "epoch")
            ax.set_title(panel)
            ax.legend(fontsize=7, ncols=2 if len(cols) > 3 else 1)
        if title:
            fig.suptitle(title)
    return fig


def _line_style(col: str) -> dict:
    style = {}
    if "i2t" in col or col.endswith("_img"):
        style["color"] = IMAGE_COLOR
    elif "t2i" in col or col.endswith("_txt"):
        style["color"] = TEXT_COLOR
    elif col.endswith("_rank"):
        style["color"] = SHARED_COLOR
    elif col == "loss":
        style["color"] = "black"
    if col.endswith("_r5"):
        style["linestyle"] = "--"
    elif col.endswith("_r10"):
        style["linestyle"] = ":"
    return style


def _shade_stage_two(ax, x: np.ndarray, stage: pd.Series) -> None:
    labels = stage.astype(str).str.lower().str.replace(" ", "", regex=False)
    second = labels.isin(["2", "stage2", "ii", "stageii", "phase2"]).to_numpy()
    if second.any():
        lo, hi = x[second].min(), x[second].max()
        ax.axvspan(lo - 0.5, hi + 0.5, color=SHARED_COLOR, alpha=0.08, linewidth=0)
        ax.text(lo - 0.3, 0.98, "stage II", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top", color="#2f6b3b")


# ----------------------------------------------------------------------------------------------
# Results next to the literature

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


# ----------------------------------------------------------------------------------------------
# Ablations


def ablation_plot(df: pd.DataFrame, arm_col: str, metric: str, *, seed_col: str = "seed",
                  order: Sequence[str] | None = None, title: str | None = None,
                  ylabel: str | None = None) -> Figure:
    """Mean ± standard deviation over seeds per arm (bars), with each seed's value as a point."""
    for col in (arm_col, metric):
        if col not in df.columns:
            raise ValueError(f"column {col!r} not in the ablation frame (columns: {list(df.columns)})")
    data = df[[arm_col, metric] + ([seed_col] if seed_col in df.columns else [])].dropna(subset=[metric])
    data = data.assign(**{arm_col: data[arm_col].astype(str)})
    order = [str(o) for o in order] if order is not None else list(dict.fromkeys(data[arm_col]))
    with _style() as sns:
        fig = Figure(figsize=(max(3.6, 1.1 * len(order) + 1.6), 3.6), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        sns.barplot(data=data, x=arm_col, y=metric, order=order, errorbar="sd", ax=ax,
                    color=IMAGE_COLOR, alpha=0.55, capsize=0.15, err_kws={"linewidth": 1.2})
        sns.stripplot(data=data, x=arm_col, y=metric, order=order, ax=ax, jitter=False,
                      color="black", size=4, alpha=0.8)
        means = data.groupby(arm_col)[metric].mean()
        for i, arm in enumerate(order):
            if arm in means:
                ax.annotate(f"{means[arm]:.1f}", (i, means[arm]), xytext=(8, 2),
                            textcoords="offset points", fontsize=8)
        ax.set_xlabel(arm_col)
        ax.set_ylabel(ylabel or metric)
        if max(len(o) for o in order) > 10:
            ax.tick_params(axis="x", labelrotation=20)
        n = data.groupby(arm_col).size()
        seeds = f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"
        ax.set_title(title or f"{metric}: mean ± sd over {seeds} seeds", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------
# Qualitative retrieval

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def _is_image_like(obj) -> bool:
    if isinstance(obj, np.ndarray) or hasattr(obj, "getbands"):   # array or PIL image
        return True
    if isinstance(obj, Path):
        return True
    return isinstance(obj, str) and obj.lower().endswith(_IMAGE_EXTS)


def _as_array(img, size: int = 256) -> np.ndarray:
    from PIL import Image

    if isinstance(img, np.ndarray):
        return img
    if not hasattr(img, "getbands"):
        with Image.open(img) as opened:
            img = opened.convert("RGB")
            img.load()
    img = img.convert("RGB")
    img.thumbnail((size, size))
    return np.asarray(img)


def _border(ax, color: str, width: float = 4.0) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def retrieval_grid(queries, results, correct, *, mode: str | None = None, titles=None,
                   wrap: int = 48, thumb: float = 1.7) -> Figure:
    """Qualitative retrieval: one row per query, green = correct, red = wrong.

    * ``mode='t2i'``: each query is a caption, ``results`` its ranked image paths (or PIL images /
      arrays); a row shows the caption, then the thumbnails with coloured borders.
    * ``mode='i2t'``: each query is an image, ``results`` its ranked captions; a row shows the image
      and the numbered caption list in colour.

    A single query may be passed as is (``results`` and ``correct`` then flat lists); ``mode``
    defaults to ``i2t`` when the query looks like an image and ``t2i`` otherwise.
    """
    single = isinstance(queries, str) or _is_image_like(queries)
    if single:
        queries, results, correct = [queries], [list(results)], [list(correct)]
    queries, results, correct = list(queries), [list(r) for r in results], [list(c) for c in correct]
    if not (len(queries) == len(results) == len(correct)):
        raise ValueError("queries, results and correct must have the same length")
    for r, c in zip(results, correct):
        if len(r) != len(c):
            raise ValueError(f"a query has {len(r)} results but {len(c)} correctness flags")
    if mode is None:
        mode = "i2t" if _is_image_like(queries[0]) and not isinstance(results[0][0], np.ndarray) \
            and not _is_image_like(results[0][0]) else "t2i"
    if mode not in ("t2i", "i2t"):
        raise ValueError(f"mode must be 't2i' or 'i2t', got {mode!r}")
    titles = list(titles) if titles is not None else [None] * len(queries)
    rows = len(queries)

    with _style("white"):
        if mode == "t2i":
            k = max(len(r) for r in results)
            fig = Figure(figsize=(thumb * (k + 1.6), thumb * rows * 1.05), dpi=100, layout="constrained")
            axes = fig.subplots(rows, k + 1, squeeze=False,
                                gridspec_kw={"width_ratios": [1.6] + [1] * k})
            for i, (q, res, ok) in enumerate(zip(queries, results, correct)):
                qa = axes[i][0]
                qa.set_axis_off()
                qa.text(0.0, 0.5, textwrap.fill(str(q), 26), ha="left", va="center", fontsize=8,
                        transform=qa.transAxes)
                if titles[i]:
                    qa.set_title(titles[i], fontsize=8, loc="left")
                for j in range(k):
                    ax = axes[i][j + 1]
                    if j >= len(res):
                        ax.set_axis_off()
                        continue
                    ax.imshow(_as_array(res[j]))
                    _border(ax, CORRECT_COLOR if ok[j] else WRONG_COLOR)
                    if i == 0:
                        ax.set_title(f"rank {j + 1}", fontsize=8)
        else:
            fig = Figure(figsize=(thumb * 5.5, thumb * 1.15 * rows), dpi=100, layout="constrained")
            axes = fig.subplots(rows, 2, squeeze=False, gridspec_kw={"width_ratios": [1, 3.2]})
            for i, (q, res, ok) in enumerate(zip(queries, results, correct)):
                ia, ta = axes[i]
                ia.imshow(_as_array(q))
                _border(ia, "#555555", 1.0)
                if titles[i]:
                    ia.set_title(titles[i], fontsize=8)
                ta.set_axis_off()
                n = len(res)
                for j, (cap, good) in enumerate(zip(res, ok)):
                    text = textwrap.shorten(str(cap), wrap * 2, placeholder=" …")
                    ta.text(0.0, 1 - (j + 0.5) / max(n, 1), f"{j + 1}. {text}", fontsize=8, va="center",
                            ha="left", color=CORRECT_COLOR if good else WRONG_COLOR,
                            transform=ta.transAxes)
    return fig


# ----------------------------------------------------------------------------------------------
# Word importance and embedding projections


def word_importance_plot(words: Sequence[str], drops: Sequence[float], *, title: str | None = None,
                         ylabel: str = "similarity drop when removed") -> Figure:
    """One bar per word, in sentence order: how much the image-text similarity falls without it."""
    words, drops = list(words), np.asarray(drops, dtype=float)
    if len(words) != len(drops):
        raise ValueError(f"{len(words)} words but {len(drops)} drops")
    with _style():
        fig = Figure(figsize=(max(4.0, 0.45 * len(words) + 1.2), 3.0), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        colors = [IMAGE_COLOR if v >= 0 else WRONG_COLOR for v in drops]
        ax.bar(np.arange(len(words)), drops, color=colors, alpha=0.8)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(words)), words, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        if title:
            ax.set_title(textwrap.fill(title, 70), fontsize=9)
    return fig


def embedding_projection_plot(points_2d, kinds: Sequence[str], groups: Sequence, *,
                              title: str | None = None, connect: bool = True) -> Figure:
    """2-D projection of image and text embeddings: colour = group (instance), marker = modality.

    With ``connect`` each text point is joined to the image point of its group, so the spread
    of an instance's captions around its image is visible.
    """
    pts = np.asarray(points_2d, dtype=float)
    kinds, groups = [str(k) for k in kinds], list(groups)
    if pts.ndim != 2 or pts.shape[1] != 2 or not (len(pts) == len(kinds) == len(groups)):
        raise ValueError("points_2d must be [n, 2] with one kind and one group per point")
    uniq = list(dict.fromkeys(groups))
    with _style("white") as sns:
        palette = sns.color_palette("husl" if len(uniq) > 10 else "tab10", len(uniq))
        color = {g: palette[i] for i, g in enumerate(uniq)}
        fig = Figure(figsize=(5.2, 4.6), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        is_img = np.array([k.lower().startswith("im") for k in kinds])
        if connect:
            anchor = {g: pts[i] for i, g in enumerate(groups) if is_img[i]}
            for i, g in enumerate(groups):
                if not is_img[i] and g in anchor:
                    ax.plot(*np.stack([anchor[g], pts[i]]).T, color=color[g], alpha=0.35, linewidth=0.7)
        handles = []
        for mask, marker, label, size in ((is_img, "s", "image", 46), (~is_img, "o", "text", 22)):
            if mask.any():
                ax.scatter(pts[mask, 0], pts[mask, 1], c=[color[g] for g, m in zip(groups, mask) if m],
                           marker=marker, s=size, edgecolors="black", linewidths=0.4)
                handles.append(Line2D([], [], marker=marker, linestyle="", color="#bbbbbb",
                                      markeredgecolor="black", markeredgewidth=0.4, label=label))
        ax.legend(handles=handles, fontsize=8, loc="best", title="colour = group", title_fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title, fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------
# Data figures (notebook 01)


def sample_grid(images: Sequence, captions: Sequence[Sequence[str]], *, ncols: int = 3,
                thumb: float = 2.6, wrap: int = 40, max_captions: int = 2) -> Figure:
    """Image thumbnails with (some of) their captions underneath."""
    images, captions = list(images), [list(c) for c in captions]
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} caption lists")
    rows = math.ceil(len(images) / ncols)
    texts = ["\n".join(textwrap.fill(f"• {c}", wrap) for c in caps[:max_captions]) for caps in captions]
    lines = max((t.count("\n") + 1 for t in texts), default=1)
    with _style("white"):
        fig = Figure(figsize=(thumb * ncols, (thumb + 0.16 * lines + 0.1) * rows), dpi=100,
                     layout="constrained")
        axes = fig.subplots(rows, ncols, squeeze=False)
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, img, text in zip(axes.flat, images, texts):
            ax.set_axis_on()
            ax.imshow(_as_array(img))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_xlabel(text, fontsize=7, loc="left", labelpad=3)
    return fig


def caption_length_histogram(lengths: pd.DataFrame, max_len: int | None = None, *,
                             title: str | None = None) -> Figure:
    """Histogram of words per caption (columns ``words`` and, if present, ``in_vocab``)."""
    cols = [c for c in ("words", "in_vocab") if c in lengths.columns]
    if not cols:
        raise ValueError("lengths needs a 'words' or 'in_vocab' column")
    labels = {"words": "all words", "in_vocab": "in-vocabulary words"}
    top = int(lengths[cols].max().max())
    bins = np.arange(0.5, top + 1.5)
    with _style():
        fig = Figure(figsize=(6.0, 3.2), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        for col, color in zip(cols, (IMAGE_COLOR, TEXT_COLOR)):
            ax.hist(lengths[col], bins=bins, alpha=0.55, color=color,
                    label=f"{labels[col]} (mean {lengths[col].mean():.1f})")
        if max_len is not None:
            ax.axvline(max_len + 0.5, color="black", linestyle="--", linewidth=1)
            ax.text(max_len + 0.5, 0.95, f" L = {max_len}", transform=ax.get_xaxis_transform(),
                    fontsize=8, va="top")
        ax.set_xlabel("words per caption")
        ax.set_ylabel("captions")
        ax.legend(fontsize=8)
        if title:
            ax.set_title(title, fontsize=10)
    return fig


def position_shift_figure(rows, vocab, offsets: Sequence[int] | None = None, *,
                          title: str | None = None) -> Figure:
    """The paper's text input as an image: the one-hot ``L × V`` matrix of a sentence at several
    start offsets (the position shift). ``rows`` are id rows ``[n, L]`` (0 = padding).

    Only the vocabulary rows the sentence uses are drawn (the other ``V - k`` rows are all zero),
    labelled with their words; a dark cell means "this word is at this position".
    """
    import torch

    rows = torch.as_tensor(rows)
    if rows.ndim != 2:
        raise ValueError("rows must be [n_offsets, L] word ids")
    n, length = rows.shape
    used = sorted({int(i) for i in rows.unique().tolist() if int(i) != 0},
                  key=lambda i: int((rows[0] == i).nonzero()[0]) if (rows[0] == i).any() else 10**6)
    if not used:
        raise ValueError("the sentence has no in-vocabulary word")
    offsets = list(offsets) if offsets is not None else list(range(n))
    with _style("white"):
        fig = Figure(figsize=(max(6.0, 0.22 * length + 1.8), 0.9 + n * (0.24 * len(used) + 0.55)),
                     dpi=100, layout="constrained")
        axes = fig.subplots(n, 1, squeeze=False)[:, 0]
        for ax, row, off in zip(axes, rows, offsets):
            onehot = np.zeros((len(used), length))
            for pos, wid in enumerate(row.tolist()):
                if wid:
                    onehot[used.index(wid), pos] = 1.0
            ax.imshow(onehot, cmap="Greys", vmin=0, vmax=1.25, aspect="auto", interpolation="nearest")
            ax.set_yticks(np.arange(len(used)), [vocab.word(i) for i in used], fontsize=7)
            ax.set_xticks(np.arange(0, length, 4), [str(p) for p in range(0, length, 4)], fontsize=7)
            ax.set_xticks(np.arange(-0.5, length, 1), minor=True)
            ax.set_yticks(np.arange(-0.5, len(used), 1), minor=True)
            ax.grid(which="minor", color="#dddddd", linewidth=0.5)
            ax.tick_params(which="minor", length=0)
            ax.set_title(f"start offset {off}", fontsize=8, loc="left")
        axes[-1].set_xlabel(f"position (L = {length}); rows: the {len(used)} vocabulary words the "
                            f"sentence uses, out of V = {len(vocab) - 1:,}", fontsize=8)
        if title:
            fig.suptitle(textwrap.fill(title, 90), fontsize=9)
    return fig


def word_importance_panels(images: Sequence, words: Sequence[Sequence[str]], drops: Sequence[Sequence[float]],
                           *, titles: Sequence[str] | None = None, known: Sequence[Sequence[bool]] | None = None,
                           thumb: float = 2.0) -> Figure:
    """The paper's word-importance figure: per row, the image and one bar per caption word giving
    the drop in image-caption similarity when that word is removed (grey: out of vocabulary)."""
    images, words, drops = list(images), [list(w) for w in words], [np.asarray(d, float) for d in drops]
    if not (len(images) == len(words) == len(drops)):
        raise ValueError("images, words and drops must have the same length")
    for w, d in zip(words, drops):
        if len(w) != len(d):
            raise ValueError(f"{len(w)} words but {len(d)} drops")
    known = [list(k) for k in known] if known is not None else [[True] * len(w) for w in words]
    titles = list(titles) if titles is not None else [None] * len(images)
    n = len(images)
    longest = max(len(w) for w in words)
    with _style():
        fig = Figure(figsize=(thumb + max(4.5, 0.42 * longest + 1.0), thumb * 1.25 * n), dpi=100,
                     layout="constrained")
        axes = fig.subplots(n, 2, squeeze=False,
                            gridspec_kw={"width_ratios": [thumb, max(4.5, 0.42 * longest + 1.0)]})
        for (ia, ba), img, w, d, k, t in zip(axes, images, words, drops, known, titles):
            ia.imshow(_as_array(img))
            _border(ia, "#555555", 1.0)
            colors = [(IMAGE_COLOR if v >= 0 else WRONG_COLOR) if kk else "#bbbbbb" for v, kk in zip(d, k)]
            ba.bar(np.arange(len(w)), d, color=colors, alpha=0.85)
            ba.axhline(0, color="black", linewidth=0.8)
            ba.set_xticks(np.arange(len(w)), w, rotation=40, ha="right", fontsize=8)
            ba.set_ylabel("similarity drop", fontsize=8)
            ba.tick_params(axis="y", labelsize=7)
            if t:
                ba.set_title(textwrap.fill(t, 90), fontsize=8, loc="left")
    return fig
