"""The ablation chapter's figures: a family's arms (the mean a bar, every seed a point), the length
of Stage I at a fixed total of epochs, and the losses over budgets.

What the chapter compares (families, the budget curve, each arm's epochs) comes from
:mod:`dualpath_book.ablation_report`, which never imports this module; the results table is passed
in (``ablation_report.load``), never read here.
"""
from __future__ import annotations

import textwrap

import pandas as pd
from matplotlib.figure import Figure

from dualpath.config import preset

from ..ablation_report.chapter import Budget, Family, chapter, epochs_of, stage1_is_instance
from ..ablation_report.results import budget_runs, family_runs
from .style import theme

MEAN_COLOR = "#c6dbef"    # light, so that the seeds' points stand out on the bars
LENGTH_COLOR = "#3182bd"
REFERENCE_COLOR = "#e6550d"   # the length curve's fair start without a Stage I
_WIDTH = 6.5              # inches: the chapter's page width


def _nothing_yet(ax, title: str) -> None:
    ax.set_title(f"{title} (no finished runs yet)")


def family_plot(table: pd.DataFrame, family: Family | str, metric: str = "rsum") -> Figure:
    """The mean of ``metric`` per arm (bar) with every seed as a point."""
    family = chapter().family(family)
    runs = family_runs(table, family)
    with theme() as sns:
        fig = Figure(figsize=(_WIDTH, 0.55 * len(family.arms) + 1.2), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        if runs.empty:   # nothing finished yet: an empty axis with the arms named, the first on top
            _nothing_yet(ax, family.title)
            ax.set_ylim(len(family.labels) - 0.5, -0.5)
        else:
            sns.barplot(data=runs, y="setting", x=metric, errorbar=None, color=MEAN_COLOR, ax=ax)
            sns.stripplot(data=runs.assign(seed=runs["seed"].astype(str)), y="setting", x=metric, hue="seed",
                          palette="dark", size=7, jitter=False, dodge=True, ax=ax)   # seeds side by side:
            # a fixed place per seed, where seaborn's jitter draws from numpy's global generator
            ax.set_xlabel(f"test {metric.replace('rsum', 'R-sum')}, Flickr8k 1K (bar: mean; points: seeds)")
            # outside the axes: inside, it covers the points of whichever arm has the longest bar; the
            # figure's own outside legend, as an axes legend moved out makes the constrained layout
            # differ between the first drawing and the next (the glued and the shown image would differ)
            seeds = ax.get_legend()
            handles, labels = seeds.legend_handles, [text.get_text() for text in seeds.texts]
            seeds.remove()
            fig.legend(handles, labels, title="seed", loc="outside right upper", fontsize=8, frameon=False)
            ax.set_title(family.title)
        # the arms' labels run to 60 characters: wrapped, they leave the bars most of the width
        ax.set_yticks(range(len(family.labels)), [textwrap.fill(label, 32) for label in family.labels])
        ax.set_ylabel("")
    return fig


def budget_plot(table: pd.DataFrame, budget: Budget | None = None) -> Figure:
    """Test R-sum against the budget (percent of the epochs of the chapter's recipe's whole run),
    one line per recipe: the mean over seeds, each seed a point."""
    budget = budget or chapter().budget
    runs = budget_runs(table, budget)
    percents = sorted({p for points in budget.arms.values() for p in points})
    recipe = chapter().recipe_preset
    book = preset(recipe)
    with theme() as sns:
        fig = Figure(figsize=(_WIDTH, 3.8), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        if runs.empty:
            _nothing_yet(ax, budget.title)
        else:
            order = list(budget.labels.values())
            sns.lineplot(data=runs, x="percent", y="rsum", hue="recipe", hue_order=order, errorbar=None,
                         marker="o", ax=ax)
            sns.scatterplot(data=runs, x="percent", y="rsum", hue="recipe", hue_order=order, legend=False,
                            alpha=0.45, s=22, ax=ax)
            ax.set_title(budget.title)
            ax.legend(title="phase 1", fontsize=8, title_fontsize=8, frameon=False)
        ax.set_xticks(percents, [f"{p}%" for p in percents])
        ax.set_xlabel(f"budget: share of the {recipe} run's {book.stage1_epochs} + {book.stage2_epochs} epochs "
                      f"(points: seeds; line: their mean)", fontsize=10)
        ax.set_ylabel("test R-sum (Flickr8k 1K)")
    return fig


def length_plot(table: pd.DataFrame, family: Family | str = "stage1_length") -> Figure:
    """Test R-sum (after Stage II) against the Stage I epochs, at the family's fixed total: a line
    through the arms whose first phase is Stage I, and each other arm (no Stage I: its first phase
    trains the ranking loss) at 0 epochs in its own colour, its mean a short bar."""
    family = chapter().family(family)
    curve = [arm for arm in family.arms if stage1_is_instance(arm)]
    epochs = {arm: epochs_of(arm)[0] if arm in curve else 0 for arm in family.arms}
    (total,) = {sum(epochs_of(arm)) for arm in family.arms}   # the family's point: a fixed total
    runs = table[table["arm"].isin(family.arms)].assign(stage1=lambda t: t["arm"].map(epochs))
    label = dict(zip(family.arms, family.labels))
    with theme() as sns:
        fig = Figure(figsize=(_WIDTH, 3.9), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        if runs.empty:
            _nothing_yet(ax, family.title)
        else:
            on_curve = runs[runs["arm"].isin(curve)]
            sns.lineplot(data=on_curve, x="stage1", y="rsum", errorbar=None, marker="o", color=LENGTH_COLOR,
                         label="Stage I (instance losses), then Stage II (at 0: its hardest negative from chance)",
                         ax=ax)
            sns.scatterplot(data=on_curve, x="stage1", y="rsum", color=LENGTH_COLOR, alpha=0.45, s=22, ax=ax)
            for arm in family.arms:
                seeds = runs[runs["arm"] == arm]
                if arm in curve or seeds.empty:
                    continue
                ax.scatter(seeds["stage1"], seeds["rsum"], color=REFERENCE_COLOR, alpha=0.6, s=22, marker="s")
                ax.hlines(seeds["rsum"].mean(), -0.4, 0.4, color=REFERENCE_COLOR, linewidth=2,
                          label=textwrap.fill(label[arm], 60))
            ax.legend(fontsize=8, frameon=False, loc="lower right")
            ax.set_title(family.title)
        ax.set_xticks(sorted(set(epochs.values())))
        ax.set_xlabel(f"Stage I epochs (the rest of the {total} are Stage II; points: seeds; line: their mean)",
                      fontsize=10)
        ax.set_ylabel("test R-sum (Flickr8k 1K)")
    return fig
