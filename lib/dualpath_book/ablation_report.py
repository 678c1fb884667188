"""Tables, plots and verdict sentences of the ablation chapter, from the sweeps' results CSVs.

``make ablations`` runs ``grids/ablations.yaml`` (the ``cpu-short`` budget) and copies the runner's
``results.csv`` to ``book/tables/ablations.csv`` and every run's per-query test ranks to
``book/tables/ablations_ranks.npz`` (committed, with commit / command / machine columns); the book
reads those files and never reruns the sweep. Each :class:`Family` is one page of the chapter: a
set of arms, a claim about them (the paper's, the official code's or our reading's) and the
comparison that tests it; the families live in the grid files beside the arms they compare
(``families:``). The first sweep, at a budget too short for the model to learn, stays in the
appendix: ``grids/ablations_short.yaml``, ``book/tables/ablations_short.csv``.
"""
from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from dualpath.errors import ConfigError, DataError
from dualpath.evaluate import RECALL_AT
from dualpath.io import atomic_path

from .layout import GRIDS_DIR, TABLES_DIR

ABLATIONS_CSV = TABLES_DIR / "ablations.csv"
RANKS_NPZ = TABLES_DIR / "ablations_ranks.npz"   # per-query test ranks of every run, capped at 10
SHORT_CSV = TABLES_DIR / "ablations_short.csv"   # grids/ablations_short.yaml: the first sweep's budget
CENTRAL_CSV = TABLES_DIR / "central.csv"         # grids/central.yaml, the book's budget
BOOK_RUNS_CSV = TABLES_DIR / "book_runs.csv"
METRICS = ("rsum", "i2t_r1", "i2t_r10", "t2i_r1", "t2i_r10")
REFERENCE_SHARE = 0.85   # the reference arm must reach this share of the book run's validation R-sum

# who makes each claim, as the verdict says it (SPEC confirms only what the abstract states)
CLAIMED_BY = {
    "paper": ("The paper claims that {claim}.", "the paper"),
    "code": ("The official code's design assumes that {claim} (whether the paper tests it could not be "
             "checked here).", "the official code's design"),
    "reading": ("Our reading of the method is that {claim} (neither the paper nor the official code says "
                "so).", "our reading"),
}


@dataclass(frozen=True)
class Family:
    key: str
    title: str
    arms: tuple[str, ...]          # shown in this order; labels below
    labels: tuple[str, ...]
    claim: str                     # what the paper says, or the code assumes, in one clause
    better: str                    # the arm the claim expects to win ...
    worse: str                     # ... against this one
    claimed_by: str = "paper"      # a key of CLAIMED_BY: who makes the claim, as far as SPEC can tell


def _grid_file(grid_path: str | Path) -> dict:
    """A grid file's YAML; each text is parsed once, whichever of the readers below asks."""
    return _parse_grid(Path(grid_path).read_text())


@functools.lru_cache(maxsize=8)
def _parse_grid(text: str) -> dict:
    import yaml   # the grid's arms are the sweep's to validate (sweep.load_grid); here only their names

    return yaml.safe_load(text)


def load_families(grid_path: str | Path) -> tuple[Family, ...]:
    """The chapter's pages from a grid file's ``families`` section, each arm checked against the
    grid's arms (a typo would otherwise show as an arm never measured)."""
    grid_path = Path(grid_path)
    grid = _grid_file(grid_path)
    arms = {a.get("name") for a in grid.get("arms") or [] if isinstance(a, dict)}
    raw = grid.get("families")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{grid_path}: needs a 'families' list (the chapter's pages)")
    families = []
    for i, f in enumerate(raw):
        where = f"{grid_path}: families[{i}]"
        missing = {"key", "title", "claim", "better", "worse", "arms"} - set(f)
        if missing:
            raise ConfigError(f"{where} lacks {sorted(missing)}")
        names = tuple(a["arm"] for a in f["arms"])
        unknown = sorted(set(names) - arms)
        if unknown or not {f["better"], f["worse"]} <= set(names):
            raise ConfigError(f"{where} ({f['key']}) names arms {unknown or [f['better'], f['worse']]} "
                              f"that are not among its arms or the grid's")
        claimed_by = f.get("claimed_by", "paper")
        if claimed_by not in CLAIMED_BY:
            raise ConfigError(f"{where} ({f['key']}): claimed_by {claimed_by!r} is not one of {sorted(CLAIMED_BY)}")
        families.append(Family(f["key"], f["title"], names, tuple(a["label"] for a in f["arms"]),
                               f["claim"], f["better"], f["worse"], claimed_by))
    return tuple(families)


@dataclass(frozen=True)
class Budget:
    """The central claim over budgets: per recipe a label and its arm at each percent of the cpu
    run's epochs (the grid's ``budget:`` section)."""
    title: str
    labels: dict[str, str]               # recipe -> label
    arms: dict[str, dict[int, str]]      # recipe -> percent -> arm


def load_budget(grid_path: str | Path) -> Budget:
    grid_path = Path(grid_path)
    grid = _grid_file(grid_path)
    raw = grid.get("budget")
    arms = {a.get("name") for a in grid.get("arms") or [] if isinstance(a, dict)}
    if not isinstance(raw, dict) or not isinstance(raw.get("recipes"), dict):
        raise ConfigError(f"{grid_path}: needs a 'budget' section with 'recipes' (the budget curve)")
    labels, by_recipe = {}, {}
    for recipe, spec in raw["recipes"].items():
        points = {int(k): v for k, v in spec["arms"].items()}
        unknown = sorted(set(points.values()) - arms)
        if unknown:
            raise ConfigError(f"{grid_path}: budget.recipes.{recipe} names arms {unknown} the grid lacks")
        labels[recipe], by_recipe[recipe] = spec["label"], points
    return Budget(raw.get("title", "budget"), labels, by_recipe)


def reference_arm(grid_path: str | Path) -> str:
    return _grid_file(grid_path)["reference"]


def arm_parameters(grid_path: str | Path) -> dict[str, dict]:
    """Each arm's parameters as the sweep passes them: the grid's base, then the arm's own."""
    grid = _grid_file(grid_path)
    return {a["name"]: {**grid.get("base", {}), **a.get("params", {})} for a in grid["arms"]}


GRID = GRIDS_DIR / "ablations.yaml"
FAMILIES: tuple[Family, ...] = load_families(GRID)
BUDGET = load_budget(GRID)
REFERENCE = reference_arm(GRID)
ARM_PARAMETERS = arm_parameters(GRID)
BUDGET_PRESET = ARM_PARAMETERS[REFERENCE]["preset"]   # the chapter's budget: the reference arm's preset
# The first sweep (the appendix) and the loss comparison at the book's budget (grids/central.yaml,
# book/tables/central.csv: the same Stage II for every arm, only phase 1 differs).
SHORT_FAMILIES: tuple[Family, ...] = load_families(GRIDS_DIR / "ablations_short.yaml")
(CENTRAL,) = load_families(GRIDS_DIR / "central.yaml")
FAMILY = {f.key: f for f in (*FAMILIES, CENTRAL)}


def _family(family: Family | str) -> Family:
    """A family, or the key of one of this chapter's (the current sweep's, or ``central``)."""
    return family if isinstance(family, Family) else FAMILY[family]


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


MIN_SEEDS = 3   # an arm with fewer finished seeds is shown but gets no verdict


def _runs(table: pd.DataFrame, family: Family) -> pd.DataFrame:
    """The finished runs of the family's arms (arms without runs are simply absent)."""
    runs = table[table["arm"].isin(family.arms)].copy()
    label = dict(zip(family.arms, family.labels))
    runs["setting"] = pd.Categorical(runs["arm"].map(label), categories=list(family.labels), ordered=True)
    return runs


def incomplete_arms(table: pd.DataFrame, family: Family | str) -> list[str]:
    """Arms of the family with fewer than :data:`MIN_SEEDS` finished seeds."""
    family = _family(family)
    counts = table[table["arm"].isin(family.arms)].groupby("arm")["seed"].nunique()
    return [a for a in family.arms if counts.get(a, 0) < MIN_SEEDS]


def family_table(table: pd.DataFrame, family: Family | str, metrics=METRICS) -> pd.DataFrame:
    """Per arm: 'mean ± std' of each metric over seeds, the seed count, and R-sum of each seed.

    Arms without a finished run keep their row, marked '–' with 0 seeds.
    """
    family = _family(family)
    runs = _runs(table, family)
    grouped = runs.groupby("setting", observed=False)
    out = pd.DataFrame(index=pd.CategoricalIndex(list(family.labels), categories=list(family.labels),
                                                 ordered=True, name="setting"))
    for m in metrics:
        mean, std = grouped[m].mean(), grouped[m].std(ddof=1)
        out[m] = [f"{a:.1f} ± {b:.1f}" if pd.notna(a) else "–"
                  for a, b in zip(mean.reindex(out.index), std.reindex(out.index).fillna(0.0))]
    out["seeds"] = grouped.size().reindex(out.index).fillna(0).astype(int)
    if len(runs):
        per_seed = runs.pivot_table(index="setting", columns="seed", values="rsum", observed=False)
        for seed in per_seed.columns:
            out[f"rsum seed {seed}"] = per_seed[seed].reindex(out.index).round(1)
    return out


def phase_table(table: pd.DataFrame, family: Family | str = "loss", metric: str = "rsum") -> pd.DataFrame:
    """Test ``metric`` after each phase of each arm (mean ± std over seeds).

    The sweep tests the best checkpoint of every phase, so the arms of the loss family can be
    compared after the same number of epochs: the paper's Stage I against the ranking loss's
    first phase, and Stage II against the ranking loss's second. A phase an arm does not have
    (Stage I of an arm without one) is '–'.
    """
    family = _family(family)
    runs = _runs(table, family)
    out = {}
    for name, col in (("after phase 1", f"stage1.{metric}"), ("after phase 2", f"stage2.{metric}")):
        if col not in runs.columns:
            if len(runs):
                raise DataError(f"the ablation results have no column {col}")
            runs[col] = np.nan
        stats = runs.groupby("setting", observed=False)[col].agg(["mean", "std", "count"])
        out[name] = [f"{m:.1f} ± {sd:.1f}" if n else "–"
                     for m, sd, n in zip(stats["mean"], stats["std"].fillna(0.0), stats["count"])]
        index = stats.index
    return pd.DataFrame(out, index=index)


def shared_stage1_table(table: pd.DataFrame) -> pd.DataFrame:
    """The runs that start from another arm's Stage I (``stage1_from``), beside that run: their
    Stage I validation and test R-sum, and whether the phase was reused or trained again (its
    source's checkpoints were on another machine). Equal numbers show the phase is one phase."""
    cols = ["arm", "seed", "Stage I", "val R-sum", "source's val R-sum", "test R-sum", "source's test R-sum"]
    if "stage1_from" not in table.columns:
        return pd.DataFrame(columns=cols)
    rows = []
    for _, r in table[table["stage1_from"].notna()].sort_values(["arm", "seed"]).iterrows():
        source_arm, source_seed = str(r["stage1_from"]).split("/")   # '<arm>/seed<k>'
        src = table[(table["arm"] == source_arm) & (table["seed"] == int(source_seed[len("seed"):]))]
        mine = (r["stage1.val_rsum"], r["stage1.rsum"])
        theirs = (src["stage1.val_rsum"].iloc[0], src["stage1.rsum"].iloc[0]) if len(src) else (np.nan, np.nan)
        rows.append({"arm": r["arm"], "seed": int(r["seed"]),
                     "Stage I": f"shared with {source_arm}" if bool(r.get("stage1_shared", True)) else "trained again",
                     "val R-sum": mine[0], "source's val R-sum": theirs[0],
                     "test R-sum": mine[1], "source's test R-sum": theirs[1]})
    return pd.DataFrame(rows, columns=cols)


def shared_stage1_sentence(table: pd.DataFrame) -> str:
    """One sentence on :func:`shared_stage1_table`: how many runs reused the phase, and whether the
    ones trained again reached the very numbers of the run they share it with."""
    t = shared_stage1_table(table).dropna(subset=["source's val R-sum"])
    if t.empty:
        return "No arm that shares the reference arm's Stage I has finished yet."
    again = t[t["Stage I"] == "trained again"]
    equal = (again["val R-sum"] == again["source's val R-sum"]) & (again["test R-sum"] == again["source's test R-sum"])
    text = (f"Of the {len(t)} finished runs that share the reference arm's Stage I, "
            f"{len(t) - len(again)} started from its checkpoint")
    if again.empty:
        return text + "."
    return (text + f" and {len(again)} trained the phase again, on a machine without that checkpoint: "
            + (f"all {len(again)} reached the very same Stage I validation and test R-sum."
               if equal.all() else
               f"{int(equal.sum())} of them reached the same Stage I validation and test R-sum, the others "
               f"did not (another machine's floating point), so their Stage II starts from another model."))


def test_shift_table(table: pd.DataFrame, arm: str = "loss-paper") -> pd.DataFrame:
    """Test-time offset policies on the same checkpoints: R-sum mean ± std over seeds."""
    runs = table[table["arm"] == arm]
    cols = {"all": "rsum_shift_all", "left": "rsum_shift_left", "center": "rsum_shift_center"}
    rows = {}
    for policy, col in cols.items():
        if col not in runs.columns:
            if len(runs):
                raise DataError(f"the ablation results have no column {col}")
            rows[policy] = {"rsum": "–", "seeds": 0}
            continue
        n = int(runs[col].notna().sum())
        rows[policy] = {"rsum": f"{runs[col].mean():.1f} ± {runs[col].std(ddof=1):.1f}" if n > 1 else
                        f"{runs[col].mean():.1f}" if n else "–", "seeds": n}
    return pd.DataFrame(rows).T.rename_axis("test-time offsets")


def family_plot(table: pd.DataFrame, family: Family | str, metric: str = "rsum"):
    """Seaborn: the mean of ``metric`` per arm (bar) with every seed as a point."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    family = _family(family)
    runs = _runs(table, family)
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


def paired_differences(table: pd.DataFrame, family: Family | str, metric: str = "rsum") -> pd.Series:
    """``better - worse`` of ``metric`` per seed both arms finished: the same seed gives both arms
    the same data order (and, for arms that share Stage I, the very same Stage I)."""
    family = _family(family)
    runs = table[table["arm"].isin([family.better, family.worse])]
    wide = runs.pivot_table(index="seed", columns="arm", values=metric)
    if not {family.better, family.worse} <= set(wide.columns):
        return pd.Series(dtype=float, name=metric)
    return (wide[family.better] - wide[family.worse]).dropna().rename(metric)


def verdict(table: pd.DataFrame, family: Family | str, metric: str = "rsum",
            ranks: dict[str, np.ndarray] | None = None) -> str:
    """One sentence: the measured effect of the family's claim and whether it agrees with whoever
    makes it (:data:`CLAIMED_BY`).

    A difference counts only when it exceeds the larger seed standard deviation of the two arms;
    otherwise the sentence says the seeds cannot tell them apart. Beside it: on how many seeds
    the expected arm won (paired by seed) and, given the test ranks of both arms, a 95% bootstrap
    interval of the difference over test queries (:func:`bootstrap_difference`).
    """
    family = _family(family)
    template, whose = CLAIMED_BY[family.claimed_by]
    claim = template.format(claim=family.claim)
    missing = [a for a in incomplete_arms(table, family) if a in (family.better, family.worse)]
    if missing:
        return (f"{claim} Not measured yet: arm(s) {', '.join(missing)} "
                f"have fewer than {MIN_SEEDS} finished seeds; `make ablations` resumes the sweep.")
    runs = _runs(table, family)
    stats = runs.groupby("arm")[metric].agg(["mean", "std", "count"])
    label = dict(zip(family.arms, family.labels))
    b, w = stats.loc[family.better], stats.loc[family.worse]
    diff = b["mean"] - w["mean"]
    spread = max(b["std"], w["std"])
    if diff > spread:
        outcome = f"agrees with {whose}"
    elif diff < -spread:
        outcome = f"contradicts {whose} on this budget"
    else:
        outcome = f"cannot confirm or refute {whose}: the difference is within the seed spread"
    paired = paired_differences(table, family, metric)
    evidence = f"ahead on {int((paired > 0).sum())} of {len(paired)} seeds"
    if ranks is not None and metric == "rsum":
        seeds = [int(s) for s in paired.index]
        if all(f"{arm}/seed{s}/i2t" in ranks for arm in (family.better, family.worse) for s in seeds):
            mean, lo, hi = bootstrap_difference(ranks, family.better, family.worse, seeds)
            evidence += f"; 95% bootstrap interval over test queries {lo:+.1f} to {hi:+.1f}"
    return (f"{claim} Measured ({int(min(b['count'], w['count']))} seeds): "
            f"{label[family.better]} reaches R-sum {b['mean']:.1f} ± {b['std']:.1f}, "
            f"{label[family.worse]} {w['mean']:.1f} ± {w['std']:.1f}, a difference of {diff:+.1f} "
            f"({evidence}); this {outcome}.")


# ------------------------------------------------------------------ per-query ranks, bootstrap
CAP = max(RECALL_AT)   # ranks are kept up to here: all that R@1/5/10 read


def collect_ranks(grid_dir: str | Path, out: str | Path = RANKS_NPZ) -> int:
    """Gather every finished run's per-query test ranks (``test_ranks.npz`` in its run folder, or in
    the folder of the run a ``same_as`` arm is) into one file, ranks capped at :data:`CAP`; returns
    the number of runs. Keys ``<arm>/seed<k>/i2t`` and ``.../t2i``, and ``caption_image``.
    A finished run whose ranks are not on this machine (its record restored from a committed
    table) keeps the ranks ``out`` holds for it already."""
    from .ablation import TEST_RANKS, load_test_ranks
    from .sweep import DONE

    grid_dir = Path(grid_dir)
    earlier = load_ranks(out) or {}
    arrays: dict[str, np.ndarray] = {}
    for marker in sorted(grid_dir.glob(f"*/seed*/{DONE}")):
        record = json.loads(marker.read_text())
        path = Path(record.get("run_dir") or marker.parent) / TEST_RANKS
        key = f"{marker.parent.parent.name}/{marker.parent.name}"
        if not path.is_file():   # restored, or a run from before the ranks were kept
            if f"{key}/i2t" in earlier:
                arrays.update({k: earlier[k] for k in (f"{key}/i2t", f"{key}/t2i", "caption_image")})
            continue
        ranks = load_test_ranks(path)
        if "caption_image" in arrays and not np.array_equal(arrays["caption_image"], ranks["caption_image"]):
            raise DataError(f"{path}: its test captions differ from the other runs'; not the same test split")
        arrays["caption_image"] = ranks["caption_image"]
        for d in ("i2t", "t2i"):
            arrays[f"{key}/{d}"] = np.minimum(ranks[d], CAP).astype(np.uint8)
    with atomic_path(Path(out)) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return sum(k.endswith("/i2t") for k in arrays)


def load_ranks(path: str | Path = RANKS_NPZ) -> dict[str, np.ndarray] | None:
    """The collected ranks (:func:`collect_ranks`), or None before any were collected."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def bootstrap_difference(ranks: dict[str, np.ndarray], better: str, worse: str, seeds: Sequence[int],
                         n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Test R-sum of ``better`` minus ``worse``, averaged over ``seeds``, and its 95% percentile
    interval from resampling the test images with replacement (each drawn image brings its own
    captions as text->image queries). Every arm and seed sees the same resamples, so the interval
    is of the paired difference: what the choice of test queries alone leaves uncertain."""
    cap_img = ranks["caption_image"].astype(np.int64)
    n_img = int(cap_img.max()) + 1
    draws = np.random.default_rng(seed).multinomial(n_img, np.full(n_img, 1.0 / n_img), size=n_boot)
    caps_per_img = np.bincount(cap_img, minlength=n_img)

    def rsum(arm: str, s: int) -> np.ndarray:
        i2t, t2i = ranks[f"{arm}/seed{s}/i2t"], ranks[f"{arm}/seed{s}/t2i"]
        hit_i2t = np.stack([i2t < k for k in RECALL_AT], 1).astype(float)                 # [images, 3]
        hit_t2i = np.stack([np.bincount(cap_img, weights=(t2i < k), minlength=n_img) for k in RECALL_AT], 1)
        i2t_r = draws @ hit_i2t / n_img                                                    # [n_boot, 3]
        t2i_r = (draws @ hit_t2i) / (draws @ caps_per_img)[:, None]
        return 100.0 * (i2t_r.sum(1) + t2i_r.sum(1))

    diff = np.mean([rsum(better, s) - rsum(worse, s) for s in seeds], axis=0)
    full = np.mean([_rsum_of(ranks, better, s) - _rsum_of(ranks, worse, s) for s in seeds])
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return float(full), float(lo), float(hi)


def _rsum_of(ranks: dict[str, np.ndarray], arm: str, s: int) -> float:
    return 100.0 * sum(float(np.mean(ranks[f"{arm}/seed{s}/{d}"] < k)) for d in ("i2t", "t2i") for k in RECALL_AT)


def significance_table(table: pd.DataFrame, ranks: dict[str, np.ndarray] | None,
                       families: Sequence[Family] = FAMILIES) -> pd.DataFrame:
    """Per family, the claim's comparison: mean difference over seeds, each seed's difference and
    the 95% bootstrap interval over test queries (when the ranks of every seed are there)."""
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


# ------------------------------------------------------------------ budgets, Stage I length
def budget_runs(table: pd.DataFrame, budget: Budget = BUDGET) -> pd.DataFrame:
    """The runs of the budget curve: one row per (recipe, percent, seed)."""
    rows = []
    for recipe, points in budget.arms.items():
        for percent, arm in points.items():
            for _, r in table[table["arm"] == arm].iterrows():
                rows.append({"recipe": budget.labels[recipe], "percent": percent, "seed": int(r["seed"]),
                             "rsum": r["rsum"]})
    return pd.DataFrame(rows, columns=["recipe", "percent", "seed", "rsum"])


def budget_table(table: pd.DataFrame, budget: Budget = BUDGET) -> pd.DataFrame:
    """Test R-sum (mean ± std over seeds, and the seed count) per recipe and budget."""
    runs = budget_runs(table, budget)
    percents = sorted({p for points in budget.arms.values() for p in points})
    out = pd.DataFrame(index=pd.Index(list(budget.labels.values()), name="phase 1"))
    for p in percents:
        cells = []
        for label in out.index:
            r = runs[(runs.recipe == label) & (runs.percent == p)]["rsum"]
            cells.append(f"{r.mean():.1f} ± {r.std(ddof=1):.1f} ({len(r)})" if len(r) > 1 else
                         f"{r.mean():.1f} (1)" if len(r) else "–")
        out[f"{p}% of the cpu run"] = cells
    return out


def budget_plot(table: pd.DataFrame, budget: Budget = BUDGET):
    """Test R-sum against the budget (percent of the cpu run's epochs), one line per recipe: the
    mean over seeds, each seed a point."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from dualpath.config import preset

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
    book = preset("cpu")
    ax.set_xlabel(f"budget: share of the cpu run's {book.stage1_epochs} + {book.stage2_epochs} epochs "
                  f"(points: seeds; line: their mean)")
    ax.set_ylabel("test R-sum (Flickr8k 1K)")
    fig.tight_layout()
    return fig


def budget_verdict(table: pd.DataFrame, budget: Budget = BUDGET, better: str = "paper",
                   worse: str = "ranking") -> str:
    """One sentence per budget with every seed finished: the central claim's difference there."""
    runs = budget_runs(table, budget)
    parts, words = [], {}
    for percent in sorted(budget.arms[better]):
        b = runs[(runs.recipe == budget.labels[better]) & (runs.percent == percent)].set_index("seed")["rsum"]
        w = runs[(runs.recipe == budget.labels[worse]) & (runs.percent == percent)].set_index("seed")["rsum"]
        if len(b) < MIN_SEEDS or len(w) < MIN_SEEDS:
            parts.append(f"at {percent}% not measured yet")
            continue
        paired = (b - w).dropna()
        spread = max(b.std(ddof=1), w.std(ddof=1))
        diff = b.mean() - w.mean()
        word = "ahead" if diff > spread else "behind" if diff < -spread else "within the seed spread"
        words[percent] = word
        parts.append(f"at {percent}% {diff:+.1f} ({word}; ahead on {int((paired > 0).sum())} of {len(paired)} seeds)")
    return (f"Test R-sum of {budget.labels[better]} minus {budget.labels[worse]}: " + "; ".join(parts) + ". "
            + _ordering(words, len(budget.arms[better])))


def _ordering(words: dict[int, str], points: int) -> str:
    """Whether the claim's ordering holds at every measured budget or turns with it."""
    if len(words) < 2:
        return "The ordering over budgets needs two measured points."
    kinds = set(words.values())
    rest = "" if len(words) == points else " measured so far"
    if kinds == {"ahead"}:
        return f"The ordering holds at every budget{rest}."
    if kinds == {"behind"}:
        return f"The ordering is reversed at every budget{rest}."
    if {"ahead", "behind"} <= kinds:
        ahead = _and(f"{p}%" for p, w in words.items() if w == "ahead")
        behind = _and(f"{p}%" for p, w in words.items() if w == "behind")
        return f"The ordering depends on the budget: ahead at {ahead}, behind at {behind}."
    return "Within the seed spread at some budget, so the ordering is not settled over budgets."


def epochs_of(arm: str) -> tuple[int, int]:
    """The Stage I and Stage II epochs an arm of the chapter's grid trains (preset + overrides)."""
    from .ablation import arm_config

    params = ARM_PARAMETERS[arm]
    cfg = arm_config(params["preset"], params.get("overrides"))
    return cfg.stage1_epochs, cfg.stage2_epochs


def length_plot(table: pd.DataFrame, family: Family | str = "stage1_length"):
    """Test R-sum (after Stage II) against the Stage I epochs, at the family's fixed total."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    family = _family(family)
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


def phase_cost_sentence(table: pd.DataFrame, family: Family | str = "stage1_length") -> str:
    """What moving one epoch from Stage II to Stage I costs: the slope of a least-squares line
    through the training seconds of the family's runs against their Stage I epochs (the family
    keeps the total fixed, so the slope is all a fit can tell apart from the fixed costs)."""
    family = _family(family)
    runs = table[table["arm"].isin(family.arms) & (table["status"] == "done") & ~table["resumed"].astype(bool)]
    stage1 = np.array([epochs_of(arm)[0] for arm in runs["arm"]], dtype=float)
    (total,) = {sum(epochs_of(arm)) for arm in family.arms}
    if len(set(stage1)) < 2:
        return "What a Stage I epoch costs is not measured yet (it needs two arms of this family)."
    slope, zero = np.polyfit(stage1, runs["train_s"].to_numpy(float), 1)
    return (f"On the sweep's machine, with another run beside each, every epoch moved from Stage II to "
            f"Stage I added about {slope:.0f} s of training to the {zero:.0f} s the line gives the 0 + {total} "
            f"arm (a least-squares line through the training seconds of this family's {len(runs)} runs not "
            f"resumed midway): Stage I's 6,000-way classifier on both branches costs more than the ranking "
            f"loss, so the arms with a longer Stage I also train longer.")


def reference_check(table: pd.DataFrame, arm: str = REFERENCE) -> str:
    """Whether the reference arm learned at this budget: its best validation R-sum per seed against
    :data:`REFERENCE_SHARE` of the book run's (the last row of ``book_runs.csv``)."""
    book = pd.read_csv(BOOK_RUNS_CSV).iloc[-1]
    target = REFERENCE_SHARE * float(book["stage2_val_rsum"])
    runs = table[table["arm"] == arm]
    if "val_rsum" not in runs or runs["val_rsum"].isna().all():
        return (f"The reference arm's validation R-sum is not measured yet; it must reach "
                f"{100 * REFERENCE_SHARE:.0f}% of the book run's {book['stage2_val_rsum']:.1f}, i.e. {target:.1f}.")
    vals = runs.sort_values("seed")["val_rsum"]
    ok = bool((vals >= target).all())
    return (f"The reference arm ({arm}) reaches validation R-sum "
            f"{', '.join(f'{v:.1f}' for v in vals)} (seeds {', '.join(str(s) for s in sorted(runs['seed']))}) "
            f"against {target:.1f}, {100 * REFERENCE_SHARE:.0f}% of the book run's {book['stage2_val_rsum']:.1f}: "
            + ("every seed is past it, so the arms are compared where the model has learned."
               if ok else "not every seed is past it, so read the verdicts with that in mind."))


def seed_spread_sentence(central: pd.DataFrame | None = None) -> str:
    """The book recipe's test numbers over the seeds of the central sweep (its ``loss-paper`` arm,
    the ``cpu`` preset), mean ± std, with the machine they came from."""
    central = load(CENTRAL_CSV, missing_ok=True) if central is None else central
    book = central[central.arm == CENTRAL.better] if "arm" in central else central
    if len(book) < 2:
        return ("The three-seed numbers of the book's `cpu` recipe (`make central`, "
                "`book/tables/central.csv`) are not measured yet.")
    def stat(key: str) -> str:
        return f"{book[key].mean():.1f} ± {book[key].std(ddof=1):.1f}"
    machine = str(book["machine"].iloc[0]).replace(" | ", ", ") if "machine" in book else "the machine in the table"
    return (f"Over {len(book)} seeds of the book's `cpu` recipe (`make central`, one torch thread each, "
            f"on {machine}): test R-sum {stat('rsum')}, image->text R@1 {stat('i2t_r1')}, text->image "
            f"R@1 {stat('t2i_r1')} (mean ± std).")


def budget_sentence() -> str:
    """How long each arm trains, against the paper and the book's own run (from the presets)."""
    from dualpath.config import preset

    ours, book, full = preset(BUDGET_PRESET), preset("cpu"), preset("paper")
    own = round(_percent(ours, book))   # the chapter's own point of the budget curve
    others = sorted({p for points in BUDGET.arms.values() for p in points} - {own})
    return (f"**Budget.** Every arm trains {ours.stage1_epochs} + {ours.stage2_epochs} epochs over the "
            f"training {ours.epoch_unit} with the book recipe's {ours.optimizer.capitalize()} and cosine "
            f"decay in each phase (the `{BUDGET_PRESET}` preset): {phases_of(ours, book)} of the book's own "
            f"run ({book.stage1_epochs} + {book.stage2_epochs}), {epoch_share(ours, book)} of its epochs, and "
            f"{epoch_share(ours, full)} of the official code's {full.stage1_epochs} + {full.stage2_epochs}, "
            f"each of ours over every caption where the official code drew one caption per image. The Stage I "
            f"length arms keep the total of {_epochs(ours)} epochs; the budget curve adds "
            f"{_and(f'{p}%' for p in others)} of the book's run. A verdict holds on this budget, which is why "
            f"each sentence says so when it contradicts a claim.")


def phases_of(part, whole) -> str:
    """Config ``part``'s two phases as a part of ``whole``'s, e.g. 'the Stage I and 8 of the 15
    Stage II epochs'."""
    def phase(name: str, n: int, of: int) -> str:
        return f"the whole {name}" if n == of else f"{n} of the {of} {name} epochs"
    return (f"{phase('Stage I', part.stage1_epochs, whole.stage1_epochs)} and "
            f"{phase('Stage II', part.stage2_epochs, whole.stage2_epochs)}")


def _epochs(config) -> int:
    return config.stage1_epochs + config.stage2_epochs


def _percent(part, whole) -> float:
    return 100 * _epochs(part) / _epochs(whole)


def _and(words) -> str:
    words = list(words)
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)


def epoch_share(part, whole) -> str:
    """Epochs of config ``part`` as a share of config ``whole``'s, e.g. '1.7%' or '65%'."""
    share = _percent(part, whole)
    return f"{share:.1f}%" if share < 10 else f"{share:.0f}%"


def short_share() -> str:
    """The first sweep's epochs (the ``ablation`` preset) as a share of the official code's, e.g. '1.7%'."""
    from dualpath.config import preset

    return epoch_share(preset("ablation"), preset("paper"))


def short_reference_rsum(short: pd.DataFrame) -> str:
    """The first sweep's reference arm: test R-sum mean ± std over its seeds."""
    r = short.loc[short["arm"] == "loss-paper", "rsum"]
    return f"{r.mean():.1f} ± {r.std(ddof=1):.1f}" if len(r) > 1 else "–"


def provenance(table: pd.DataFrame) -> dict[str, str]:
    """Commit(s), command and machine the results came from, and the count of runs."""
    def one(col: str) -> str:
        values = sorted({str(v) for v in table[col].dropna()}) if col in table.columns else []
        return ", ".join(values) if values else "unknown"
    return {"commit": one("commit"), "command": one("command"), "machine": one("machine"),
            "runs": str(len(table)), "arms": str(table["arm"].nunique()),
            "seeds": ", ".join(str(s) for s in sorted(table["seed"].unique()))}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath_book.ablation_report",
                                 description="collect the per-query test ranks of a sweep's runs for the chapter")
    ap.add_argument("grid_dir", help="the sweep's folder, e.g. runs/sweeps/ablations")
    ap.add_argument("--out", default=str(RANKS_NPZ), help=f"where to write them (default {RANKS_NPZ})")
    args = ap.parse_args(argv)
    print(f"{collect_ranks(args.grid_dir, args.out)} runs' ranks -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
