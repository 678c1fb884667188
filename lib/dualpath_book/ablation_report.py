"""Tables, plots and verdict sentences of the ablation chapter, from the sweep's results CSV.

``make ablations`` runs ``grids/ablations.yaml`` and copies the runner's ``results.csv`` to
``book/tables/ablations.csv`` (committed, with commit / command / machine columns); the book
reads that file and never reruns the sweep. Each :class:`Family` is one page of the chapter:
a set of arms, the paper's claim about them, and the comparison that tests the claim; the
families live in the grid files beside the arms they compare (``families:``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dualpath.errors import ConfigError, DataError

from .layout import GRIDS_DIR, TABLES_DIR

ABLATIONS_CSV = TABLES_DIR / "ablations.csv"
CENTRAL_CSV = TABLES_DIR / "central.csv"     # grids/central.yaml, the book's budget
METRICS = ("rsum", "i2t_r1", "i2t_r10", "t2i_r1", "t2i_r10")


@dataclass(frozen=True)
class Family:
    key: str
    title: str
    arms: tuple[str, ...]          # shown in this order; labels below
    labels: tuple[str, ...]
    claim: str                     # what the paper says, or its design assumes, in one clause
    better: str                    # the arm the paper expects to win ...
    worse: str                     # ... against this one
    stated: bool = True            # False: SPEC cannot confirm that the paper states or tests it


def load_families(grid_path: str | Path) -> tuple[Family, ...]:
    """The chapter's pages from a grid file's ``families`` section, each arm checked against the
    grid's arms (a typo would otherwise show as an arm never measured)."""
    import yaml   # the grid's arms are the sweep's to validate (sweep.load_grid); here only their names

    grid_path = Path(grid_path)
    grid = yaml.safe_load(grid_path.read_text())
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
        families.append(Family(f["key"], f["title"], names, tuple(a["label"] for a in f["arms"]),
                               f["claim"], f["better"], f["worse"], bool(f.get("stated", True))))
    return tuple(families)


FAMILIES: tuple[Family, ...] = load_families(GRIDS_DIR / "ablations.yaml")
# The loss comparison again at the book's budget (grids/central.yaml, book/tables/central.csv):
# the same Stage II for every arm, only phase 1 differs.
(CENTRAL,) = load_families(GRIDS_DIR / "central.yaml")
FAMILY = {f.key: f for f in (*FAMILIES, CENTRAL)}


def load(path: str | Path = ABLATIONS_CSV, *, missing_ok: bool = False) -> pd.DataFrame:
    """The finished runs of the sweep (one row per arm and seed); with ``missing_ok`` an absent
    file is an empty table (a sweep not run yet)."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return pd.DataFrame(columns=["arm", "seed", "status", *METRICS])
        raise DataError(f"{path} not found: run `make ablations` to produce it (about two hours on "
                        f"two cores)")
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


def incomplete_arms(table: pd.DataFrame, key: str) -> list[str]:
    """Arms of the family with fewer than :data:`MIN_SEEDS` finished seeds."""
    counts = table[table["arm"].isin(FAMILY[key].arms)].groupby("arm")["seed"].nunique()
    return [a for a in FAMILY[key].arms if counts.get(a, 0) < MIN_SEEDS]


def family_table(table: pd.DataFrame, key: str, metrics=METRICS) -> pd.DataFrame:
    """Per arm: 'mean ± std' of each metric over seeds, the seed count, and R-sum of each seed.

    Arms without a finished run keep their row, marked '–' with 0 seeds.
    """
    family = FAMILY[key]
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


def phase_table(table: pd.DataFrame, key: str = "loss", metric: str = "rsum") -> pd.DataFrame:
    """Test ``metric`` after each phase of each arm (mean ± std over seeds).

    The sweep tests the best checkpoint of every phase, so the arms of the loss family can be
    compared after the same number of epochs: the paper's Stage I against the ranking loss's
    first phase, and Stage II against the ranking loss's second.
    """
    family = FAMILY[key]
    runs = _runs(table, family)
    out = {}
    for name, col in (("after phase 1", f"stage1.{metric}"), ("after phase 2", f"stage2.{metric}")):
        if col not in runs.columns:
            raise DataError(f"the ablation results have no column {col}")
        stats = runs.groupby("setting", observed=False)[col].agg(["mean", "std", "count"])
        out[name] = [f"{m:.1f} ± {sd:.1f}" if n else "–"
                     for m, sd, n in zip(stats["mean"], stats["std"].fillna(0.0), stats["count"])]
        index = stats.index
    return pd.DataFrame(out, index=index)


def test_shift_table(table: pd.DataFrame, arm: str = "loss-paper") -> pd.DataFrame:
    """Test-time offset policies on the same checkpoints: R-sum mean ± std over seeds."""
    runs = table[table["arm"] == arm]
    cols = {"all": "rsum_shift_all", "left": "rsum_shift_left", "center": "rsum_shift_center"}
    rows = {}
    for policy, col in cols.items():
        if col not in runs.columns:
            raise DataError(f"the ablation results have no column {col}")
        rows[policy] = {"rsum": f"{runs[col].mean():.1f} ± {runs[col].std(ddof=1):.1f}",
                        "seeds": int(runs[col].notna().sum())}
    return pd.DataFrame(rows).T.rename_axis("test-time offsets")


def family_plot(table: pd.DataFrame, key: str, metric: str = "rsum"):
    """Seaborn: the mean of ``metric`` per arm (bar) with every seed as a point."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    family = FAMILY[key]
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


def verdict(table: pd.DataFrame, key: str, metric: str = "rsum") -> str:
    """One sentence: the measured effect of the family's claim and whether it agrees with the paper.

    A difference counts only when it exceeds the larger seed standard deviation of the two arms;
    otherwise the sentence says the seeds cannot tell them apart.
    """
    family = FAMILY[key]
    whose = "the paper" if family.stated else "the paper's design"
    claim = (f"The paper claims that {family.claim}." if family.stated else
             f"The paper's design assumes that {family.claim} (whether the paper tests it could "
             f"not be checked here).")
    missing = [a for a in incomplete_arms(table, key) if a in (family.better, family.worse)]
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
    return (f"{claim} Measured ({int(min(b['count'], w['count']))} seeds): "
            f"{label[family.better]} reaches R-sum {b['mean']:.1f} ± {b['std']:.1f}, "
            f"{label[family.worse]} {w['mean']:.1f} ± {w['std']:.1f}, a difference of {diff:+.1f}; "
            f"this {outcome}.")


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

    short, book, full = preset("ablation"), preset("cpu"), preset("paper")
    share = 100 * (short.stage1_epochs + short.stage2_epochs) / (full.stage1_epochs + full.stage2_epochs)
    return (f"**Budget.** Every arm trains {short.stage1_epochs} + {short.stage2_epochs} epochs over the "
            f"training {short.epoch_unit} with {short.optimizer.upper()} (the loss arms share that total), "
            f"{share:.1f}% of the official code's {full.stage1_epochs} + {full.stage2_epochs}; the book's own "
            f"run (chapter Stage II) trains {book.stage1_epochs} + {book.stage2_epochs} epochs over the "
            f"training {book.epoch_unit}, and the losses are compared at that budget on the loss page. "
            "A verdict holds on this budget: with longer training the balance "
            "between the losses can change, which is why each sentence says *on this budget*.")


def provenance(table: pd.DataFrame) -> dict[str, str]:
    """Commit(s), command and machine the results came from, and the count of runs."""
    def one(col: str) -> str:
        values = sorted({str(v) for v in table[col].dropna()}) if col in table.columns else []
        return ", ".join(values) if values else "unknown"
    return {"commit": one("commit"), "command": one("command"), "machine": one("machine"),
            "runs": str(len(table)), "arms": str(table["arm"].nunique()),
            "seeds": ", ".join(str(s) for s in sorted(table["seed"].unique()))}
