"""Training curves from a run's ``log.csv``."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dualpath.evaluate import RECALL_KEYS

from .style import IMAGE_COLOR, SHARED_COLOR, TEXT_COLOR, theme


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

    with theme():
        fig = Figure(figsize=(4.2 * len(panels), 3.4), dpi=100, layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (panel, cols) in zip(axes, panels.items()):
            for col in cols:
                # accuracies are logged as fractions; every other page quotes them in percent
                scale = 100.0 if col.startswith("acc") else 1.0
                ax.plot(x, scale * df[col].to_numpy(dtype=float), marker="o", markersize=2.5, linewidth=1.4,
                        label=col.removeprefix("val_"), **_linetheme(col))
            if stage_col:
                _shade_stage_two(ax, x, df[stage_col])
            ax.set_xlabel("epoch (both stages)" if stage_col and df[stage_col].nunique() > 1 else "epoch")
            ax.set_title(panel)
            ax.legend(fontsize=7, ncols=2 if len(cols) > 3 else 1)
        if title:
            fig.suptitle(title)
    return fig


def _linetheme(col: str) -> dict:
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


