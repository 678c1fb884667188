"""The sweeps' results as the chapter reads them: the committed tables, the finished runs of each
family's arms, and where they came from.

``make ablations`` runs ``grids/ablations.yaml`` (the ``cpu-short`` budget) and copies the runner's
``results.csv`` to ``book/tables/ablations.csv`` and every run's per-query test ranks to
``book/tables/ablations_ranks.npz`` (committed, with commit / command / machine columns); the book
reads those files and never reruns the sweep. The first sweep, at a budget too short for the model
to learn, stays in the appendix: ``grids/ablations_short.yaml``, ``book/tables/ablations_short.csv``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from dualpath.errors import DataError
from dualpath.evaluate import RECALL_AT, RECALL_KEYS

from ..layout import TABLES_DIR
from .chapter import Budget, Family, chapter

ABLATIONS_CSV = TABLES_DIR / "ablations.csv"
RANKS_NPZ = TABLES_DIR / "ablations_ranks.npz"   # per-query test ranks of every run, capped at 10
SHORT_CSV = TABLES_DIR / "ablations_short.csv"   # grids/ablations_short.yaml: the first sweep's budget
CENTRAL_CSV = TABLES_DIR / "central.csv"         # grids/central.yaml, the cpu-narrow recipe's whole budget
BOOK_SEEDS_CSV = TABLES_DIR / "book_seeds.csv"   # grids/book_seeds.yaml, the cpu recipe over three seeds
BOOK_RUNS_CSV = TABLES_DIR / "book_runs.csv"
# the chapter's tables: R-sum, then R@1 and R@10 of each direction (R@5 lies between them)
METRICS = ("rsum", *(key for key in RECALL_KEYS if key.endswith((f"_r{RECALL_AT[0]}", f"_r{RECALL_AT[-1]}"))))
MIN_SEEDS = 3   # an arm with fewer finished seeds is shown but gets no verdict


def load(path: str | Path = ABLATIONS_CSV, *, missing_ok: bool = False) -> pd.DataFrame:
    """The finished runs of the sweep (one row per arm and seed); with ``missing_ok`` an absent
    file is an empty table (a sweep not run yet)."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return pd.DataFrame(columns=["arm", "seed", "status", *METRICS])
        raise DataError(f"{path} not found: run `make ablations` to produce it (an estimated "
                        f"11 hours on two cores; it resumes where it stopped)")
    table = pd.read_csv(path)
    missing = {"arm", "seed", "status", *METRICS} - set(table.columns)
    if missing:
        raise DataError(f"{path} lacks the columns {sorted(missing)}; is it a sweep results.csv?")
    return table[table["status"] == "done"].reset_index(drop=True)


def family_runs(table: pd.DataFrame, family: Family) -> pd.DataFrame:
    """The finished runs of the family's arms (arms without runs are simply absent)."""
    runs = table[table["arm"].isin(family.arms)].copy()
    label = dict(zip(family.arms, family.labels))
    runs["setting"] = pd.Categorical(runs["arm"].map(label), categories=list(family.labels), ordered=True)
    return runs


def incomplete_arms(table: pd.DataFrame, family: Family | str) -> list[str]:
    """Arms of the family with fewer than :data:`MIN_SEEDS` finished seeds."""
    family = chapter().family(family)
    counts = table[table["arm"].isin(family.arms)].groupby("arm")["seed"].nunique()
    return [a for a in family.arms if counts.get(a, 0) < MIN_SEEDS]


def budget_runs(table: pd.DataFrame, budget: Budget | None = None) -> pd.DataFrame:
    """The runs of the budget curve (the chapter's, by default): one row per (recipe, percent, seed)."""
    budget = budget or chapter().budget
    rows = []
    for recipe, points in budget.arms.items():
        for percent, arm in points.items():
            for _, r in table[table["arm"] == arm].iterrows():
                rows.append({"recipe": budget.labels[recipe], "percent": percent, "seed": int(r["seed"]),
                             "rsum": r["rsum"]})
    return pd.DataFrame(rows, columns=["recipe", "percent", "seed", "rsum"])


def provenance(table: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Where the results came from: a sentence (rows, distinct trainings, arms, seeds) and a table
    of the finished runs by commit (short hash), machine and command."""
    copies = table["same_as"].notna() if "same_as" in table.columns else pd.Series(False, index=table.index)
    seeds = ", ".join(str(s) for s in sorted(table["seed"].unique())) or "none yet"
    sentence = (f"{len(table)} rows of {table['arm'].nunique()} arms, seeds {seeds}: "
                f"{int((~copies).sum())} trainings"
                + (f", and {int(copies.sum())} rows that show one of them again under another arm's name "
                   f"(the budget curve's points)" if copies.any() else "") + ".")
    cols = [c for c in ("commit", "machine", "command") if c in table.columns]
    if not cols or table.empty:
        return sentence, pd.DataFrame(columns=["commit", "machine", "command", "rows"])
    where = table[cols].fillna("unknown").astype(str)
    if "commit" in where:
        where["commit"] = where["commit"].str[:7]
    if "machine" in where:
        where["machine"] = where["machine"].str.replace(" | ", ", ", regex=False)
    counts = where.value_counts().rename("rows").reset_index()
    return sentence, counts.sort_values(cols).reset_index(drop=True)
