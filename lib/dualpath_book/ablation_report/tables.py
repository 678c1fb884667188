"""The chapter's tables: per family, per phase, per budget, the runs that share Stage I, the
test-time offsets and the claims' significance (cells 'mean ± std' over seeds; '–' unmeasured)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from dualpath.config import TEST_SHIFT_POLICIES
from dualpath.errors import DataError

from ..ablation import shift_key
from .chapter import Budget, Family, chapter
from .results import METRICS, budget_runs, family_runs
from .stats import bootstrap_difference, paired_differences


def mean_sd(values: pd.Series) -> str:
    """A cell of the chapter's tables: 'mean ± std' over seeds, the value alone for one seed (no
    spread to show), '–' for none."""
    values = values.dropna()
    if not len(values):
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def family_table(table: pd.DataFrame, family: Family | str, metrics=METRICS) -> pd.DataFrame:
    """Per arm: 'mean ± std' of each metric over seeds, the seed count, and R-sum of each seed.

    Arms without a finished run keep their row, marked '–' with 0 seeds.
    """
    family = chapter().family(family)
    runs = family_runs(table, family)
    grouped = runs.groupby("setting", observed=False)
    out = pd.DataFrame(index=pd.CategoricalIndex(list(family.labels), categories=list(family.labels),
                                                 ordered=True, name="setting"))
    for m in metrics:
        out[m] = grouped[m].agg(mean_sd).reindex(out.index).fillna("–")
    out["seeds"] = grouped.size().reindex(out.index).fillna(0).astype(int)
    if len(runs):
        per_seed = runs.pivot_table(index="setting", columns="seed", values="rsum", observed=False)
        for seed in per_seed.columns:
            out[f"rsum seed {seed}"] = per_seed[seed].reindex(out.index).round(1)
    return out


def reader_columns(table: pd.DataFrame) -> pd.DataFrame:
    """A table of :func:`family_table`'s columns under the names a reader knows ("R@1 i→t",
    "R-sum seed 0") rather than the results' keys, so that the page's narrow column wraps them at
    spaces. (A header as short as "seed 0" would let the column shrink below its numbers, which
    reader.css lets break anywhere.)"""
    def title(column: str) -> str:
        if column == "rsum":
            return "R-sum"
        if column.startswith("rsum seed "):
            return "R-sum " + column.removeprefix("rsum ")
        direction, _, k = column.partition("_r")
        if k.isdigit() and direction in ("i2t", "t2i"):
            return f"R@{k} {'i→t' if direction == 'i2t' else 't→i'}"
        return column
    return table.rename(columns=title)


def phase_table(table: pd.DataFrame, family: Family | str = "loss", metric: str = "rsum") -> pd.DataFrame:
    """Test ``metric`` after each phase of each arm (mean ± std over seeds).

    The sweep tests the best checkpoint of every phase, so the arms of the loss family can be
    compared after the same number of epochs: the paper's Stage I against the ranking loss's
    first phase, and Stage II against the ranking loss's second. A phase an arm does not have
    (Stage I of an arm without one) is '–'.
    """
    family = chapter().family(family)
    runs = family_runs(table, family)
    out = {}
    for name, col in (("after phase 1", f"stage1.{metric}"), ("after phase 2", f"stage2.{metric}")):
        if col not in runs.columns:
            if len(runs):
                raise DataError(f"the ablation results have no column {col}")
            runs[col] = np.nan
        cells = runs.groupby("setting", observed=False)[col].agg(mean_sd)
        out[name] = cells.tolist()
        index = cells.index
    return pd.DataFrame(out, index=index)


def shared_stage1_table(table: pd.DataFrame) -> pd.DataFrame:
    """The runs that start from another arm's Stage I (``stage1_from``), beside that run: their
    Stage I validation and test R-sum, and whether the phase was reused or trained again (its
    source's checkpoints were on another machine). Equal numbers show the phase is one phase."""
    cols = ["arm", "seed", "Stage I", "val R-sum", "source's val R-sum", "test R-sum", "source's test R-sum",
            "where it ran"]
    if "stage1_from" not in table.columns:
        return pd.DataFrame(columns=cols)
    rows = []
    for _, r in table[table["stage1_from"].notna()].sort_values(["arm", "seed"]).iterrows():
        source_arm, source_seed = str(r["stage1_from"]).split("/")   # '<arm>/seed<k>'
        src = table[(table["arm"] == source_arm) & (table["seed"] == int(source_seed[len("seed"):]))]
        mine = (r["stage1.val_rsum"], r["stage1.rsum"])
        theirs = (src["stage1.val_rsum"].iloc[0], src["stage1.rsum"].iloc[0]) if len(src) else (np.nan, np.nan)
        same = (_where(r) == _where(src.iloc[0])) if len(src) and {"machine", "commit"} <= set(table) else None
        rows.append({"arm": r["arm"], "seed": int(r["seed"]),
                     "Stage I": f"shared with {source_arm}" if bool(r.get("stage1_shared", True)) else "trained again",
                     "val R-sum": mine[0], "source's val R-sum": theirs[0],
                     "test R-sum": mine[1], "source's test R-sum": theirs[1],
                     "where it ran": {True: "as its source", False: "another machine or commit", None: "–"}[same]})
    return pd.DataFrame(rows, columns=cols)


def _where(row) -> tuple[str, str]:
    """A run's machine (as it recorded it) and commit: the same seed on the same pair gives the same
    numbers; across them floating point may differ."""
    return str(row.get("machine")), str(row.get("commit"))


def test_shift_table(table: pd.DataFrame, arm: str = "loss-paper") -> pd.DataFrame:
    """Test-time offset policies on the same checkpoints: R-sum mean ± std over seeds."""
    runs = table[table["arm"] == arm]
    cols = {policy: shift_key(policy) for policy in TEST_SHIFT_POLICIES}
    rows = {}
    for policy, col in cols.items():
        if col not in runs.columns:
            if len(runs):
                raise DataError(f"the ablation results have no column {col}")
            rows[policy] = {"rsum": "–", "seeds": 0}
            continue
        n = int(runs[col].notna().sum())
        rows[policy] = {"rsum": mean_sd(runs[col]), "seeds": n}
    return pd.DataFrame(rows).T.rename_axis("test-time offsets")


def budget_table(table: pd.DataFrame, budget: Budget | None = None) -> pd.DataFrame:
    """Test R-sum (mean ± std over seeds, and the seed count) per recipe and budget."""
    budget = budget or chapter().budget
    runs = budget_runs(table, budget)
    percents = sorted({p for points in budget.arms.values() for p in points})
    out = pd.DataFrame(index=pd.Index(list(budget.labels.values()), name="phase 1"))
    for p in percents:
        cells = []
        for label in out.index:
            r = runs[(runs.recipe == label) & (runs.percent == p)]["rsum"]
            cells.append(f"{mean_sd(r)} ({len(r)})" if len(r) else "–")
        out[f"{p}% of the {chapter().recipe_preset} run"] = cells
    return out


def significance_table(table: pd.DataFrame, ranks: dict[str, np.ndarray] | None,
                       families: Sequence[Family] | None = None) -> pd.DataFrame:
    """Per family, the claim's comparison: mean difference over seeds, each seed's difference and
    the 95% bootstrap interval over test queries (when the ranks of every seed are there); the
    chapter's families by default."""
    families = families or chapter().families
    rows = []
    for fam in families:
        paired = paired_differences(table, fam)
        row = {"comparison": f"{dict(zip(fam.arms, fam.labels))[fam.better]} vs "
                             f"{dict(zip(fam.arms, fam.labels))[fam.worse]}",
               "seeds": len(paired), "mean difference": round(float(paired.mean()), 1) if len(paired) else np.nan,
               "per seed": ", ".join(f"{d:+.1f}" for d in paired) or "–", "95% interval (test queries)": "–"}
        seeds = [int(s) for s in paired.index]
        if ranks is not None and seeds and all(f"{a}/seed{s}/i2t" in ranks for a in (fam.better, fam.worse) for s in seeds):
            _, lo, hi = bootstrap_difference(ranks, fam.better, fam.worse, seeds)
            row["95% interval (test queries)"] = f"{lo:+.1f} to {hi:+.1f}"
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index([f.title for f in families], name="family"))
