"""The results page's lead figure: R-sum of every published row of the dataset, ours among them."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .style import IMAGE_COLOR, LOSS_COLOR, theme


def rsum_figure(table: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Horizontal bars of R-sum (sum of R@1/5/10 both ways) for each row of
    ``literature.results_table`` that has all six recalls, best at the top, our rows coloured."""
    rows = table.dropna(subset=["rsum"]).sort_values("rsum")
    with theme("whitegrid"):
        fig = Figure(figsize=(7.5, 0.32 * len(rows) + 1.2))
        ax = fig.subplots()
        colors = [IMAGE_COLOR if origin == "ours" else LOSS_COLOR for origin in rows["origin"]]
        ax.barh(range(len(rows)), rows["rsum"], color=colors)
        labels = [f"{m} ({b})" if isinstance(b, str) and b else m for m, b in zip(rows["method"], rows["backbone"])]
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        for y, (value, origin) in enumerate(zip(rows["rsum"], rows["origin"])):
            ax.text(value + 2, y, f"{value:.1f}", va="center", fontsize=7,
                    fontweight="bold" if origin == "ours" else "normal")
        ax.set_xlabel("R-sum (R@1 + R@5 + R@10, image→text and text→image)")
        ax.set_xlim(0, rows["rsum"].max() * 1.12)
        if title:
            ax.set_title(title, fontsize=10)
        fig.tight_layout()
    return fig
