"""Ablation results: the mean of a metric per arm, with every seed as a point."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure


from .style import IMAGE_COLOR, theme


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
    with theme() as sns:
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


