"""The chapter's figures (seaborn on matplotlib's pyplot, so a notebook shows and closes them): a
family's arms, the budget curve and the length of Stage I."""
from __future__ import annotations

import pandas as pd

from .chapter import Budget, Family, chapter, epochs_of
from .results import budget_runs, family_runs


def family_plot(table: pd.DataFrame, family: Family | str, metric: str = "rsum"):
    """Seaborn: the mean of ``metric`` per arm (bar) with every seed as a point."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    family = chapter().family(family)
    runs = family_runs(table, family)
    fig, ax = plt.subplots(figsize=(6.5, 0.55 * len(family.arms) + 1.2))
    if runs.empty:   # nothing finished yet: an empty axis with the arms named
        ax.set_yticks(range(len(family.labels)), family.labels)
        ax.set_title(f"{family.title} (no finished runs yet)")
        fig.tight_layout()
        return fig
    sns.barplot(data=runs, y="setting", x=metric, errorbar=None, color="#c6dbef", ax=ax)
    sns.stripplot(data=runs.assign(seed=runs["seed"].astype(str)), y="setting", x=metric, hue="seed",
                  palette="dark", size=7, jitter=0.15, ax=ax)
    ax.set_ylabel("")
    ax.set_xlabel(f"test {metric.replace('rsum', 'R-sum')} (Flickr8k 1K test; bar = mean, points = seeds)")
    # outside the axes: inside, it covers the points of whichever arm has the longest bar
    ax.legend(title="seed", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(family.title)
    fig.tight_layout()
    return fig


def budget_plot(table: pd.DataFrame, budget: Budget | None = None):
    """Test R-sum against the budget (percent of the cpu run's epochs), one line per recipe: the
    mean over seeds, each seed a point."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from dualpath.config import preset

    budget = budget or chapter().budget
    runs = budget_runs(table, budget)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    percents = sorted({p for points in budget.arms.values() for p in points})
    if runs.empty:
        ax.set_title(f"{budget.title} (no finished runs yet)")
    else:
        order = list(budget.labels.values())
        sns.lineplot(data=runs, x="percent", y="rsum", hue="recipe", hue_order=order, errorbar=None,
                     marker="o", ax=ax)
        sns.scatterplot(data=runs, x="percent", y="rsum", hue="recipe", hue_order=order, legend=False,
                        alpha=0.45, s=22, ax=ax)
        ax.set_title(budget.title)
        ax.legend(title="phase 1", fontsize=8, title_fontsize=8, frameon=False)
    ax.set_xticks(percents, [f"{p}%" for p in percents])
    recipe = chapter().recipe_preset
    book = preset(recipe)
    ax.set_xlabel(f"budget: share of the {recipe} run's {book.stage1_epochs} + {book.stage2_epochs} epochs "
                  f"(points: seeds; line: their mean)")
    ax.set_ylabel("test R-sum (Flickr8k 1K)")
    fig.tight_layout()
    return fig


def length_plot(table: pd.DataFrame, family: Family | str = "stage1_length"):
    """Test R-sum (after Stage II) against the Stage I epochs, at the family's fixed total."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    family = chapter().family(family)
    epochs = {arm: epochs_of(arm)[0] for arm in family.arms}
    (total,) = {sum(epochs_of(arm)) for arm in family.arms}   # the family's point: a fixed total
    runs = table[table["arm"].isin(family.arms)].assign(stage1=lambda t: t["arm"].map(epochs))
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    if runs.empty:
        ax.set_title(f"{family.title} (no finished runs yet)")
    else:
        sns.lineplot(data=runs, x="stage1", y="rsum", errorbar=None, marker="o", color="#3182bd", ax=ax)
        sns.scatterplot(data=runs, x="stage1", y="rsum", color="#3182bd", alpha=0.45, s=22, ax=ax)
        ax.set_title(family.title)
    ticks = sorted(set(epochs.values()))
    ax.set_xticks(ticks)
    ax.set_xlabel(f"Stage I epochs (the rest of the {total} are Stage II; points: seeds; line: their mean)")
    ax.set_ylabel("test R-sum (Flickr8k 1K)")
    fig.tight_layout()
    return fig
