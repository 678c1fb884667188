"""The chapter's sentences: each claim's verdict, the budget curve's, what the runs that share
Stage I show, what a Stage I epoch costs, whether the reference arm learned, and the budget."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .chapter import CLAIMED_BY, Budget, Family, chapter, epochs_of, stage1_is_instance
from .results import BOOK_RUNS_CSV, BOOK_SEEDS_CSV, MIN_SEEDS, budget_runs, family_runs, incomplete_arms, load
from .stats import bootstrap_difference, paired_differences
from .tables import shared_stage1_table

REFERENCE_SHARE = 0.85   # the reference arm must reach this share of the book run's validation R-sum


TIE = 0.1   # paired differences of test R-sum this small are ties: the table rounds to 0.1


def verdict(table: pd.DataFrame, family: Family | str, metric: str = "rsum",
            ranks: dict[str, np.ndarray] | None = None, words_only: bool = False) -> str:
    """One sentence: the measured effect of the family's claim and whether it agrees with whoever
    makes it (:data:`CLAIMED_BY`).

    With three seeds a gap of one standard deviation is weak evidence, so a verdict needs three
    things to say "agrees" (or "contradicts"): the expected arm ahead (or behind) on every seed by
    more than :data:`TIE`, paired by seed; given the test ranks of both arms, a 95% bootstrap
    interval of the difference over test queries (:func:`bootstrap_difference`) that excludes 0;
    and a mean difference larger than the larger seed standard deviation of the two arms. With the
    first two and not the third the sentence says the result is consistent with (or leans against)
    the claim, by less than the seed spread; otherwise that the runs cannot confirm or refute it.
    ``words_only``: just that outcome, e.g. "agrees with the paper" (the intro's results at a glance).
    """
    family = chapter().family(family)
    template, whose = CLAIMED_BY[family.claimed_by]
    claim = template.format(claim=family.claim)
    missing = [a for a in incomplete_arms(table, family) if a in (family.better, family.worse)]
    if missing:
        if words_only:
            return "is not measured yet"
        return (f"{claim} Not measured yet: arm(s) {', '.join(missing)} "
                f"have fewer than {MIN_SEEDS} finished seeds; `make ablations` resumes the sweep.")
    runs = family_runs(table, family)
    stats = runs.groupby("arm")[metric].agg(["mean", "std", "count"])
    label = dict(zip(family.arms, family.labels))
    b, w = stats.loc[family.better], stats.loc[family.worse]
    diff = b["mean"] - w["mean"]
    spread = max(b["std"], w["std"])
    paired = paired_differences(table, family, metric)
    ahead, behind = int((paired > TIE).sum()), int((paired < -TIE).sum())
    evidence = f"ahead on {ahead} of {len(paired)} seeds"
    if len(paired) - ahead - behind:
        evidence += f", tied on {len(paired) - ahead - behind} within {TIE:g}"
    interval = None
    if ranks is not None and metric == "rsum":
        seeds = [int(s) for s in paired.index]
        if all(f"{arm}/seed{s}/i2t" in ranks for arm in (family.better, family.worse) for s in seeds):
            _, lo, hi = bootstrap_difference(ranks, family.better, family.worse, seeds)
            interval = (lo, hi)
            evidence += f"; 95% bootstrap interval over test queries {lo:+.1f} to {hi:+.1f}"
    outcome = _outcome(diff, spread, ahead, behind, len(paired), interval, whose)
    if words_only:
        return outcome.split(":")[0]
    return (f"{claim} Measured ({int(min(b['count'], w['count']))} seeds): "
            f"{label[family.better]} reaches R-sum {b['mean']:.1f} ± {b['std']:.1f}, "
            f"{label[family.worse]} {w['mean']:.1f} ± {w['std']:.1f}, a difference of {diff:+.1f} "
            f"({evidence}); this {outcome}.")


def _outcome(diff: float, spread: float, ahead: int, behind: int, seeds: int,
             interval: tuple[float, float] | None, whose: str) -> str:
    """The verdict's words (see :func:`verdict` for the rule)."""
    sign = 1 if diff > 0 else -1
    every_seed = (ahead if sign > 0 else behind) == seeds > 0
    outside = interval is None or (interval[0] > 0 if sign > 0 else interval[1] < 0)
    if every_seed and outside:
        if abs(diff) > spread:
            return f"agrees with {whose}" if sign > 0 else f"contradicts {whose} on this budget"
        return (f"is consistent with {whose}: ahead on every seed, by less than the seed spread" if sign > 0 else
                f"leans against {whose} on this budget: behind on every seed, by less than the seed spread")
    if not every_seed:
        why = "the seeds disagree on the sign" if ahead and behind else "not every seed differs by more than a tie"
    else:
        why = "the bootstrap interval over test queries includes 0"
    return f"cannot confirm or refute {whose}: {why}"


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
               f"{int(equal.sum())} of them reached the same Stage I validation and test R-sum; "
               + _unequal(again[~equal]) + "."))


def _unequal(runs: pd.DataFrame) -> str:
    """What the runs that trained a shared Stage I again and missed its numbers had in common with
    their source: the machine and commit, or not. (Which of the two made the difference is not
    measured here.)"""
    other = int((runs["where it ran"] == "another machine or commit").sum())
    n = len(runs)
    its = "its" if n == 1 else "their"
    who = "the other" if n == 1 else f"the other {n}"
    if other == n:
        return f"{who} ran on another machine or commit than {its} source, so {its} Stage II starts from another model"
    same = "" if n == 1 else f" {n - other} of them"
    return (f"{who} did not,{same} on the very machine and commit of {its} source, so {its} Stage II "
            f"starts from another model")


def budget_verdict(table: pd.DataFrame, budget: Budget | None = None, better: str = "paper",
                   worse: str = "ranking") -> str:
    """One sentence per budget with every seed finished: the central claim's difference there."""
    budget = budget or chapter().budget
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


def phase_cost_sentence(table: pd.DataFrame, family: Family | str = "stage1_length") -> str:
    """What the family's arms with a Stage I cost: the mean training seconds of each arm (runs not
    resumed midway), whether they rise with the Stage I epochs, and what one epoch of each phase costs in
    the whole run of the chapter's recipe, measured alone (``book_runs.csv``)."""
    from dualpath.config import preset

    from ..book_runs import describe_recipe

    family = chapter().family(family)
    arms = [arm for arm in family.arms if stage1_is_instance(arm)]
    runs = table[table["arm"].isin(arms) & (table["status"] == "done") & ~table["resumed"].astype(bool)]
    if runs["arm"].nunique() < 2:
        return "What a Stage I epoch costs is not measured yet (it needs two arms of this family)."
    means = runs.groupby("arm")["train_s"].mean()
    order = sorted(means.index, key=lambda arm: epochs_of(arm)[0])
    listed = _and(f"{' + '.join(str(e) for e in epochs_of(arm))}: {means[arm] / 60:.0f} min" for arm in order)
    rising = all(means[a] < means[b] for a, b in zip(order, order[1:]))
    text = (f"Mean training time of each arm's runs (Stage I + Stage II epochs: minutes) on the sweep's machine, "
            f"with another run beside each: {listed}. "
            + ("They rise with the Stage I epochs." if rising else
               "They do not rise steadily with the Stage I epochs: two runs sharing two cores time too noisily "
               "to rank the arms by cost."))
    book = pd.read_csv(BOOK_RUNS_CSV)
    book = book[book.recipe == describe_recipe(preset(chapter().recipe_preset))]
    if not book.empty:
        r = book.iloc[-1]
        # plain text, no Markdown: the page glues it with {glue:text}, which prints backticks as typed
        text += (f" Measured alone, in the whole {chapter().recipe_preset} run, a Stage I epoch took about "
                 f"{r.stage1_epoch_s:.0f} s and a Stage II epoch {r.stage2_epoch_s:.0f} s: Stage I's 6,000-way "
                 f"classifier on both branches costs more than the ranking loss alone.")
    return text


def reference_check(table: pd.DataFrame, arm: str | None = None) -> str:
    """Whether the reference arm learned at this budget: its best validation R-sum per seed against
    :data:`REFERENCE_SHARE` of the whole run of the recipe the chapter shortens (its latest row in
    ``book_runs.csv``)."""
    from dualpath.config import preset

    from ..book_runs import describe_recipe

    arm = arm or chapter().reference
    runs_of = pd.read_csv(BOOK_RUNS_CSV)
    runs_of = runs_of[runs_of.recipe == describe_recipe(preset(chapter().recipe_preset))]
    if runs_of.empty:
        return (f"The `{chapter().recipe_preset}` recipe has no whole run in `book/tables/book_runs.csv`, "
                "so whether the reference arm learned is not checked.")
    book = runs_of.iloc[-1]
    target = REFERENCE_SHARE * float(book["stage2_val_rsum"])
    runs = table[table["arm"] == arm]
    if "val_rsum" not in runs or runs["val_rsum"].isna().all():
        return (f"The reference arm's validation R-sum is not measured yet; it must reach "
                f"{100 * REFERENCE_SHARE:.0f}% of the `{chapter().recipe_preset}` run's {book['stage2_val_rsum']:.1f}, "
                f"i.e. {target:.1f}.")
    vals = runs.sort_values("seed")["val_rsum"]
    ok = bool((vals >= target).all())
    return (f"The reference arm ({arm}) reaches validation R-sum "
            f"{', '.join(f'{v:.1f}' for v in vals)} (seeds {', '.join(str(s) for s in sorted(runs['seed']))}) "
            f"against {target:.1f}, {100 * REFERENCE_SHARE:.0f}% of the `{chapter().recipe_preset}` run's "
            f"{book['stage2_val_rsum']:.1f}: "
            + ("every seed is past it, so the arms are compared where the model has learned."
               if ok else "not every seed is past it, so read the verdicts with that in mind."))


def seed_spread_sentence(seeds: pd.DataFrame | None = None) -> str:
    """The book recipe's test numbers over three seeds (``make seeds``: ``grids/book_seeds.yaml``,
    the ``cpu`` preset), mean ± std, with the machine they came from."""
    book = load(BOOK_SEEDS_CSV, missing_ok=True) if seeds is None else seeds
    if "status" in book:
        book = book[book.status == "done"]
    if len(book) < 2:
        return ("The three-seed numbers of the book's `cpu` recipe (`make seeds`, "
                "`book/tables/book_seeds.csv`) are not measured yet.")
    def stat(key: str) -> str:
        return f"{book[key].mean():.1f} ± {book[key].std(ddof=1):.1f}"
    machine = str(book["machine"].iloc[0]).replace(" | ", ", ") if "machine" in book else "the machine in the table"
    return (f"Over {len(book)} seeds of the book's `cpu` recipe (`make seeds`, one torch thread each, "
            f"on {machine}): test R-sum {stat('rsum')}, image->text R@1 {stat('i2t_r1')}, text->image "
            f"R@1 {stat('t2i_r1')} (mean ± std).")


def budget_sentence() -> str:
    """How long each arm trains, against the paper and the whole run of the recipe the chapter
    shortens (from the presets)."""
    from dualpath.config import preset

    from ..book_runs import text_cnn_words

    budget_preset, budget, recipe = chapter().budget_preset, chapter().budget, chapter().recipe_preset
    ours, book, full = preset(budget_preset), preset(recipe), preset("paper")
    own = round(_percent(ours, book))   # the chapter's own point of the budget curve
    others = sorted({p for points in budget.arms.values() for p in points} - {own})
    precision = "bfloat16 autocast" if book.amp_cpu else "float32"
    moved = "" if recipe == "cpu" else (
        f" The chapter's recipe is the `{recipe}` preset ({text_cnn_words(book)}, {precision}), the book's run "
        f"before the `cpu` preset moved to the paper's deeper, wider text CNN ({text_cnn_words(preset('cpu'))}); "
        "the text-CNN page measures both networks.")
    return (f"**Budget.** Every arm trains {ours.stage1_epochs} + {ours.stage2_epochs} epochs over the "
            f"training {ours.epoch_unit} with the book recipe's {ours.optimizer.capitalize()} and cosine "
            f"decay in each phase (the `{budget_preset}` preset): {phases_of(ours, book)} of the `{recipe}` "
            f"run ({book.stage1_epochs} + {book.stage2_epochs}), {epoch_share(ours, book)} of its epochs, and "
            f"{epoch_share(ours, full)} of the official code's {full.stage1_epochs} + {full.stage2_epochs}, "
            f"each of ours over every caption where the official code drew one caption per image. The Stage I "
            f"length arms keep the total of {_epochs(ours)} epochs; the budget curve adds "
            f"{_and(f'{p}%' for p in others)} of the `{recipe}` run. A verdict holds on this budget, which is why "
            f"each sentence says so when it contradicts a claim.{moved}")


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
