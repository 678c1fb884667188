"""The ablation grids, the arm notebook (smoke grid end to end, killed and resumed), and the
chapter's tables and verdicts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dualpath_book import ablation_report as ar
from dualpath_book.ablation import ARM_METRICS, TEST_RANKS, arm_config
from dualpath_book.figures import ablations as ablation_figures
from dualpath.errors import ConfigError, DataError
from dualpath_book.sweep import DONE, load_grid
from dualpath.train import RECIPES

ROOT = Path(__file__).resolve().parents[2]
GRIDS = ROOT / "grids"


@pytest.mark.parametrize("name", ["ablations", "ablations_short", "central", "smoke"])
def test_every_arm_of_the_grids_is_a_valid_config_and_recipe(name):
    grid = load_grid(GRIDS / f"{name}.yaml")
    assert grid.arms and all(a.notebook == ROOT / "notebooks" / "sweeps" / "train_arm.ipynb" for a in grid.arms)
    assert grid.metrics == ARM_METRICS and grid.returns == (TEST_RANKS,)   # what run_arm writes comes back
    for arm in grid.arms:
        p = arm.params
        cfg = arm_config(p.get("preset", ar.BUDGET_PRESET), p.get("overrides"), recipe=p.get("recipe", "paper"),
                         smoke=p.get("smoke", False))   # a recipe not in RECIPES is refused here
        assert cfg.seed == 0 and cfg.recipe in RECIPES
    if name != "smoke":
        assert len(grid.seeds) >= 3


def test_each_arm_changes_one_thing_from_the_reference_and_sharing_arms_can_share():
    """Factcheck rows 13-16: the reference arm is the book recipe at this budget, the random word
    vectors keep GloVe's width, and every arm that starts from the reference's Stage I could."""
    from dualpath.train.share import first_phase_differences

    grid = {a.name: a for a in load_grid(GRIDS / "ablations.yaml").arms}
    ref = arm_config(ar.BUDGET_PRESET)
    assert grid[ar.REFERENCE].params == {"preset": "cpu-short", "recipe": "paper"}
    for name, arm in grid.items():
        p = arm.params
        if arm.same_as or p["preset"] != ar.BUDGET_PRESET:
            continue
        cfg = arm_config(p["preset"], p.get("overrides"), recipe=p.get("recipe", "paper"))
        changed = {k for k, v in cfg.to_dict().items() if v != ref.to_dict()[k]}
        assert changed <= {*(p.get("overrides") or {}), "recipe"}, name   # nothing but what the arm names
        assert changed or name == ar.REFERENCE, name
        if p.get("stage1_from"):
            assert p["stage1_from"] == f"@{ar.REFERENCE}"
            assert first_phase_differences(ref, cfg) == [], name
    random = arm_config(ar.BUDGET_PRESET, grid["wordvec-random"].params["overrides"])
    assert random.embed_dim == 50 and random.word_vectors == "random"
    # the budget curve's middle is the loss arms, its whole the central sweep's runs
    assert {grid[a].same_as for r in ar.BUDGET.arms.values() for p, a in r.items() if p != 25} == {
        "loss-paper", "loss-ranking", "loss-both", "central/loss-paper", "central/loss-ranking", "central/loss-both"}


def test_the_chapter_covers_exactly_the_arms_of_the_grid():
    """The families are read from the grid file itself; every arm it runs is on some page."""
    grid_arms = {a.name for a in load_grid(GRIDS / "ablations.yaml").arms}
    chapter_arms = {arm for fam in ar.FAMILIES for arm in fam.arms}
    budget_arms = {arm for points in ar.BUDGET.arms.values() for arm in points.values()}
    assert chapter_arms | budget_arms == grid_arms
    assert {arm for fam in ar.SHORT_FAMILIES for arm in fam.arms} == {
        a.name for a in load_grid(GRIDS / "ablations_short.yaml").arms}
    assert set(ar.CENTRAL.arms) == {a.name for a in load_grid(GRIDS / "central.yaml").arms}
    for fam in ar.FAMILIES:
        assert len(fam.arms) == len(fam.labels) and {fam.better, fam.worse} <= set(fam.arms)
        page = ROOT / "book" / "ablations" / f"{fam.page_name}.md"
        assert f"abl_{fam.key}_verdict" in page.read_text()   # a family shares a page only by being on it


def test_a_family_naming_an_arm_the_grid_lacks_is_refused(tmp_path):
    text = (GRIDS / "central.yaml").read_text().replace("{arm: loss-both,", "{arm: loss-bothh,")
    (tmp_path / "g.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"families\[0\] \(central\) names arms \['loss-bothh'\]"):
        ar.load_families(tmp_path / "g.yaml")


def test_arm_overrides_cannot_smuggle_the_seed():
    with pytest.raises(ConfigError, match="seed"):
        arm_config("ablation", {"seed": 3})
    with pytest.raises(ConfigError, match="recipe"):   # the arm's recipe is a parameter of its own too
        arm_config("ablation", {"recipe": "ranking"})
    with pytest.raises(ConfigError, match="unknown key"):
        arm_config("ablation", {"negatives_mode": "sum"})


def _table(rows):
    base = {"status": "done", "i2t_r1": 1.0, "i2t_r10": 2.0, "t2i_r1": 3.0, "t2i_r10": 4.0}
    return pd.DataFrame([{**base, "arm": a, "seed": s, "rsum": r} for a, s, r in rows])


def test_family_table_and_verdict_are_computed_from_the_seeds():
    t = _table([("negatives-paper", 0, 10.0), ("negatives-paper", 1, 12.0), ("negatives-paper", 2, 14.0),
                ("loss-paper", 0, 1.0), ("loss-paper", 1, 1.0), ("loss-paper", 2, 1.0),
                ("negatives-sum", 0, 4.0), ("negatives-sum", 1, 5.0), ("negatives-sum", 2, 6.0)])
    table = ar.family_table(t, "negatives")
    assert list(table.index) == list(ar.FAMILY["negatives"].labels)
    labels = dict(zip(ar.FAMILY["negatives"].arms, ar.FAMILY["negatives"].labels))
    assert table.loc[labels["negatives-paper"], "rsum"] == "12.0 ± 2.0"
    assert table.loc[labels["negatives-sum"], "rsum"] == "5.0 ± 1.0"
    assert table.loc[labels["negatives-paper"], "rsum seed 1"] == 12.0
    assert table["seeds"].tolist() == [3, 3, 0, 3]   # negatives-random has not run
    shown = ar.reader_columns(table)   # the page's headers: the names a reader knows, values untouched
    assert list(shown.columns) == ["R-sum", "R@1 i→t", "R@10 i→t", "R@1 t→i", "R@10 t→i", "seeds",
                                   "R-sum seed 0", "R-sum seed 1", "R-sum seed 2"]
    assert shown.set_axis(table.columns, axis=1).equals(table)
    one = ar.family_table(t[(t["arm"] != "negatives-sum") | (t["seed"] == 0)], "negatives")
    assert one.loc[labels["negatives-sum"], "rsum"] == "4.0"   # one seed: no '± 0.0'
    fam = ar.Family("n", "negatives", ("negatives-paper", "negatives-sum"), ("mined", "sum"), "mining helps",
                    "negatives-paper", "negatives-sum", claimed_by="code")
    sentence = ar.verdict(t, fam)   # 12 - 5 = 7 > max std 2: agrees
    assert "+7.0" in sentence and "agrees with the official code's design" in sentence
    assert "ahead on 3 of 3 seeds" in sentence and sentence.startswith("The official code's design assumes")
    t.loc[t["arm"] == "negatives-sum", "rsum"] += 8.0      # 12 vs 13: the paired view 10-12, 12-13, 14-14
    sentence = ar.verdict(t, fam)
    assert "ahead on 0 of 3 seeds, tied on 1 within 0.1" in sentence
    assert "cannot confirm or refute" in sentence and "not every seed differs by more than a tie" in sentence
    t.loc[t["arm"] == "negatives-sum", "rsum"] += 10.0     # 12 vs 23: the other way
    assert "contradicts the official code's design" in ar.verdict(t, fam)


def test_a_verdict_needs_every_seed_and_says_when_the_gap_is_below_the_spread():
    fam = ar.Family("n", "negatives", ("negatives-paper", "negatives-sum"), ("mined", "sum"), "mining helps",
                    "negatives-paper", "negatives-sum", claimed_by="code")
    # ahead on every seed by 1-3, but the seeds spread by 5: consistent with, not agrees
    t = _table([("negatives-paper", 0, 10.0), ("negatives-paper", 1, 15.0), ("negatives-paper", 2, 20.0),
                ("negatives-sum", 0, 9.0), ("negatives-sum", 1, 13.0), ("negatives-sum", 2, 17.0)])
    assert "is consistent with the official code's design: ahead on every seed, by less than the seed spread" \
        in ar.verdict(t, fam)
    # a mean gap above the spread that one seed reverses: the seeds disagree
    t = _table([("negatives-paper", 0, 20.0), ("negatives-paper", 1, 21.0), ("negatives-paper", 2, 10.0),
                ("negatives-sum", 0, 10.0), ("negatives-sum", 1, 10.0), ("negatives-sum", 2, 11.0)])
    sentence = ar.verdict(t, fam)
    assert "ahead on 2 of 3 seeds" in sentence and "the seeds disagree on the sign" in sentence
    # every seed and the spread agree, but the test queries do not exclude 0: no verdict
    assert ar.prose._outcome(7.0, 2.0, 3, 0, 3, (-0.5, 12.0), "the paper") == \
        "cannot confirm or refute the paper: the bootstrap interval over test queries includes 0"
    assert ar.prose._outcome(7.0, 2.0, 3, 0, 3, (1.0, 12.0), "the paper") == "agrees with the paper"
    # the intro's results at a glance: the outcome alone
    assert ar.verdict(t, fam, words_only=True) == "cannot confirm or refute the official code's design"
    assert ar.verdict(t[t.arm != "negatives-sum"], fam, words_only=True) == "is not measured yet"


def test_report_names_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="make ablations"):
        ar.load(tmp_path / "absent.csv")
    # an interrupted sweep: loss-both never ran, loss-ranking has two seeds
    t = _table([("loss-paper", s, 5.0 + s) for s in range(3)] + [("loss-ranking", s, 9.0) for s in range(2)])
    table = ar.family_table(t, "loss")
    labels = dict(zip(ar.FAMILY["loss"].arms, ar.FAMILY["loss"].labels))
    assert table.loc[labels["loss-both"], "rsum"] == "–" and table.loc[labels["loss-both"], "seeds"] == 0
    assert table.loc[labels["loss-ranking"], "seeds"] == 2
    assert ar.incomplete_arms(t, "loss") == ["loss-ranking", "loss-both"]
    sentence = ar.verdict(t, "loss")
    assert "Not measured yet" in sentence and "loss-ranking" in sentence and "R-sum" not in sentence
    ablation_figures.family_plot(t, "loss")
    ablation_figures.family_plot(t.iloc[:0], "loss")   # nothing finished: still a figure


def test_the_book_recipe_seeds_come_from_the_runner_on_one_machine():
    """The README's spread over seeds: unedited rows of grids/book_seeds.yaml, of a named commit,
    one machine and one thread count (another machine follows another float trajectory)."""
    if not ar.BOOK_SEEDS_CSV.is_file():
        pytest.skip("book_seeds.csv not produced yet (make seeds)")
    raw = pd.read_csv(ar.BOOK_SEEDS_CSV)
    grid = load_grid(GRIDS / "book_seeds.yaml")
    assert (raw["status"] == "done").all() and set(raw["arm"]) == {"book"} and set(raw["seed"]) <= set(grid.seeds)
    assert raw["command"].str.contains("grids/book_seeds.yaml").all()
    assert raw["commit"].notna().all() and not raw["commit"].str.endswith("-dirty").any()
    # one host and CPU model (the machine column's last field is the cores the sweep could use:
    # seed 2 ran pinned to one core beside another job, one torch thread like seeds 0 and 1)
    assert raw["machine"].str.rsplit(" | ", n=1).str[0].nunique() == 1
    assert f"Over {len(raw)} seeds of the book's `cpu` recipe" in ar.seed_spread_sentence()


@pytest.mark.parametrize("csv, grid_file, families", [
    (ar.ABLATIONS_CSV, "ablations.yaml", ar.FAMILIES),
    # run when its grid was grids/ablations.yaml, named `ablations`
    (ar.SHORT_CSV, "ablations_short.yaml", ar.SHORT_FAMILIES),
])
def test_the_committed_results_come_from_the_runner(csv, grid_file, families):
    if not csv.is_file():
        pytest.skip(f"{csv.name} not produced yet (make ablations)")
    raw = pd.read_csv(csv)
    assert (raw["status"] == "done").all(), raw.loc[raw["status"] != "done", ["arm", "seed", "error"]]
    grid = load_grid(GRIDS / grid_file)
    assert set(raw["arm"]) <= {a.name for a in grid.arms}
    assert set(raw["seed"]) <= set(grid.seeds)
    assert raw["command"].str.contains("grids/ablations.yaml|grids/central.yaml").all()
    assert raw["commit"].notna().all() and not raw["commit"].str.endswith("-dirty").any()
    # an arm with fewer than three seeds is shown, but no claim is decided on it
    table = ar.load(csv)
    for fam in families:
        decided = "Not measured yet" not in ar.verdict(table, fam)
        assert decided == (not set(ar.incomplete_arms(table, fam)) & {fam.better, fam.worse}), fam.key


def test_smoke_grid_killed_mid_sweep_resumes_without_redoing_finished_runs(tmp_path):
    """The real arm notebook on the mini splits, from an empty feature cache (extraction and
    Stage II fine-tuning in one process), killed after its first finished run."""
    out = tmp_path / "out"
    env = dict(os.environ, DUALPATH_CACHE=str(tmp_path / "cache"), DUALPATH_RUNS=str(tmp_path / "runs"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")])))
    cli = [sys.executable, "-m", "dualpath_book.sweep", str(GRIDS / "smoke.yaml"), "--out", str(out), "--jobs", "1"]
    grid_dir = out / "smoke"
    first = subprocess.Popen(cli, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900   # a guard against a hang, roomy enough for a busy machine
        while not list(grid_dir.glob(f"*/seed*/{DONE}")):
            assert first.poll() is None, "the sweep ended before its first run finished"
            assert time.monotonic() < deadline, "no run finished in 15 minutes"
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    finished = {p.parent: p.stat().st_mtime_ns for p in grid_dir.glob(f"*/seed*/{DONE}")}
    second = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for run in finished:
        assert f"{run.parent.name} {run.name}: skipped (done earlier)" in second.stdout
        assert (run / DONE).stat().st_mtime_ns == finished[run]
    results = pd.read_csv(grid_dir / "results.csv")
    assert len(results) == 4 and (results["status"] == "done").all()
    assert results["rsum"].between(0, 600).all() and results["rsum_shift_left"].notna().all()
    for run in grid_dir.glob("*/seed*"):
        metrics = json.loads((run / "arm_metrics.json").read_text())
        assert metrics["rsum"] == pytest.approx(results.set_index(["arm", "seed"]).loc[
            (run.parent.name, int(run.name[4:])), "rsum"])
    assert not list(out.rglob("*.tmp"))


def test_phase_table_compares_the_losses_after_equal_epochs():
    fam = ar.SHORT_FAMILIES[0]   # the first sweep's losses, with Stage I alone among them
    rows = [(a, s, 10.0 + s) for a in fam.arms for s in range(3)]
    t = _table(rows)
    t["stage1.rsum"] = t["rsum"] - 4.0
    t["stage2.rsum"] = t["rsum"]
    t.loc[t["arm"] == "loss-instance", "stage2.rsum"] = float("nan")   # Stage I alone
    phases = ar.phase_table(t, fam)
    assert phases.loc["ranking only", "after phase 1"] == "7.0 ± 1.0"
    assert phases.loc["ranking only", "after phase 2"] == "11.0 ± 1.0"
    assert phases.loc["instance only (Stage I)", "after phase 2"] == "–"


def test_budget_sentence_follows_the_presets():
    from dualpath.config import preset
    text = ar.budget_sentence()
    assert ar.chapter().recipe_preset == "cpu-narrow"   # the recipe the chapter shortens, not the cpu preset
    ours, book = preset(ar.BUDGET_PRESET), preset("cpu-narrow")
    assert f"trains {ours.stage1_epochs} + {ours.stage2_epochs} epochs over the training captions" in text
    assert f"({book.stage1_epochs} + {book.stage2_epochs})" in text
    assert "65% of its epochs" in text and "the `cpu-short` preset" in text
    assert "the whole Stage I and 8 of the 15 Stage II epochs of the `cpu-narrow` run" in text
    assert "the budget curve adds 25% and 100% of the `cpu-narrow` run" in text
    assert "text CNN 1-1-1-1 at width 0.25, float32" in text and "text CNN 3-4-6-1 at width 0.5 from gamma 0" in text


def test_a_budget_that_cuts_stage_i_says_so():
    import dataclasses
    from dualpath.config import preset
    book = preset("cpu")
    assert ar.phases_of(dataclasses.replace(book, stage1_epochs=2), book) == \
        f"2 of the {book.stage1_epochs} Stage I epochs and the whole Stage II"


def _ranks(hits: dict[str, list[int]], images: int = 40) -> dict:
    """Ranks of two captions per image; ``hits[key]`` = the rank of every query of that run."""
    import numpy as np

    out = {"caption_image": np.repeat(np.arange(images), 2).astype(np.int32)}
    for key, rank in hits.items():
        out[f"{key}/i2t"] = np.full(images, rank[0], dtype=np.uint8)
        out[f"{key}/t2i"] = np.full(2 * images, rank[1], dtype=np.uint8)
    return out


def test_the_bootstrap_interval_is_of_the_paired_difference_over_test_queries():
    import numpy as np

    # b finds every query at rank 0 (R-sum 600), w at rank 7 (only R@10: 200): +400 whatever is drawn
    ranks = _ranks({"b/seed0": [0, 0], "w/seed0": [7, 7]})
    mean, lo, hi = ar.bootstrap_difference(ranks, "b", "w", [0], n_boot=200)
    assert mean == lo == hi == 400.0
    # half the images found at once, half never: the interval widens around the full-set value
    rng = np.random.default_rng(1)
    ranks["m/seed0/i2t"] = rng.choice([0, 10], 40).astype(np.uint8)
    ranks["m/seed0/t2i"] = np.repeat(ranks["m/seed0/i2t"], 2)
    mean, lo, hi = ar.bootstrap_difference(ranks, "b", "m", [0], n_boot=500)
    full = 600.0 - 600.0 * float((ranks["m/seed0/i2t"] == 0).mean())
    assert mean == pytest.approx(full) and lo < full < hi and hi - lo > 50


def test_collected_ranks_follow_same_as_records_and_cap_at_ten(tmp_path):
    import numpy as np

    run = tmp_path / "g" / "a" / "seed0"
    run.mkdir(parents=True)
    np.savez(run / "test_ranks.npz", i2t=np.array([0, 30], dtype=np.int32), t2i=np.array([1, 2, 300, 4], dtype=np.int32),
             caption_image=np.array([0, 0, 1, 1], dtype=np.int32))
    (run / DONE).write_text(json.dumps({"status": "done"}))
    alias = tmp_path / "g" / "b" / "seed0"
    alias.mkdir(parents=True)
    (alias / DONE).write_text(json.dumps({"status": "done", "same_as": "g/a/seed0", "run_dir": str(run)}))
    assert ar.collect_ranks(tmp_path / "g", tmp_path / "r.npz") == 2
    ranks = ar.load_ranks(tmp_path / "r.npz")
    assert ranks["a/seed0/t2i"].tolist() == [1, 2, 10, 4] and ranks["b/seed0/i2t"].tolist() == [0, 10]


def test_budget_and_length_views_read_the_arms_of_the_grid():
    rows = []
    for recipe, points in ar.BUDGET.arms.items():
        for percent, arm in points.items():
            rows += [(arm, s, percent + (recipe == "paper") * 10.0 + s) for s in range(3)]
    t = _table(rows)
    table = ar.budget_table(t)
    assert table.loc[ar.BUDGET.labels["paper"], "65% of the cpu-narrow run"] == "76.0 ± 1.0 (3)"
    assert table.loc[ar.BUDGET.labels["ranking"], "100% of the cpu-narrow run"] == "101.0 ± 1.0 (3)"
    ablation_figures.budget_plot(t)
    ablation_figures.budget_plot(t.iloc[:0])
    length = ar.FAMILY["stage1_length"]
    curve = [a for a in length.arms if ar.stage1_is_instance(a)]
    assert [ar.epochs_of(a) for a in curve] == [(0, 13), (2, 11), (5, 8), (9, 4)]
    # the verdict's start without a Stage I is the ranking-first arm at the same total, not the
    # hardest negative from chance (the review's confound)
    assert not ar.stage1_is_instance(length.worse) and sum(ar.epochs_of(length.worse)) == 13
    assert length.worse == ar.FAMILY["loss"].worse
    book = sum(ar.epochs_of("budget-paper-100"))
    for points in ar.BUDGET.arms.values():   # each point's percent is its arm's share of the cpu-narrow run's epochs
        assert {p: round(100 * sum(ar.epochs_of(a)) / book) for p, a in points.items()} == {p: p for p in points}
    ablation_figures.length_plot(_table([(a, s, 1.0) for a in ar.FAMILY["stage1_length"].arms for s in range(3)]))
    ablation_figures.length_plot(t.iloc[:0])


def test_the_reference_check_compares_validation_with_the_book_run(tmp_path):
    book = pd.read_csv(ar.BOOK_RUNS_CSV).iloc[-1]["stage2_val_rsum"]
    t = _table([(ar.REFERENCE, s, 1.0) for s in range(3)])
    assert "not measured yet" in ar.reference_check(t)
    t["val_rsum"] = [book, book, 0.5 * book]
    assert "not every seed is past it" in ar.reference_check(t)
    t["val_rsum"] = book * 0.9
    assert "every seed is past it" in ar.reference_check(t)


def test_runs_sharing_stage1_are_shown_beside_their_source():
    t = _table([("loss-paper", 0, 1.0), ("loss-paper", 1, 1.0), ("negatives-sum", 0, 2.0),
                ("negatives-sum", 1, 2.0), ("weights-1-1-1", 1, 3.0)])
    t["stage1.val_rsum"] = [50.0, 51.0, 50.0, 51.0, 51.5]
    t["stage1.rsum"] = [40.0, 41.0, 40.0, 41.0, 41.0]
    assert ar.shared_stage1_sentence(t).startswith("No arm")   # no run names a source yet
    t["stage1_from"] = [None, None, "loss-paper/seed0", "loss-paper/seed1", "loss-paper/seed1"]
    t["stage1_shared"] = [None, None, True, False, False]
    shown = ar.shared_stage1_table(t).set_index(["arm", "seed"])
    assert shown.loc[("negatives-sum", 0), "Stage I"] == "shared with loss-paper"
    assert shown.loc[("negatives-sum", 1), "Stage I"] == "trained again"
    assert shown.loc[("weights-1-1-1", 1), "source's val R-sum"] == 51.0
    t["machine"], t["commit"] = "vm | AMD EPYC | 2 cpus", ["a"] * 4 + ["b"]
    sentence = ar.shared_stage1_sentence(t)
    assert "Of the 3 finished runs" in sentence and "1 started from its checkpoint" in sentence
    assert "1 of them reached the same" in sentence    # weights-1-1-1 seed 1 did not: 51.5 vs 51.0
    assert "the other ran on another machine or commit than its source" in sentence
    shown = ar.shared_stage1_table(t).set_index(["arm", "seed"])["where it ran"]
    assert shown[("weights-1-1-1", 1)] == "another machine or commit" and shown[("negatives-sum", 1)] == "as its source"
    t["commit"] = "a"   # the very machine and commit: the sentence must not blame either
    assert "the other did not, on the very machine and commit of its source" in ar.shared_stage1_sentence(t)
    t.loc[4, "stage1.val_rsum"] = 51.0
    assert "all 2 reached the very same" in ar.shared_stage1_sentence(t)


def test_the_cost_of_the_length_arms_is_their_mean_time_and_says_when_it_does_not_rank_them():
    # 900 s at 0 + 13, 120 s more per epoch moved to Stage I; a resumed run's seconds are partial
    rows = [{"arm": arm, "seed": seed, "status": "done", "resumed": False,
             "train_s": 900.0 + 120.0 * ar.epochs_of(arm)[0] + (seed - 1)}
            for arm in ar.FAMILY["stage1_length"].arms for seed in (0, 1, 2)]
    rows.append({"arm": "stage1-2", "seed": 3, "status": "done", "resumed": True, "train_s": 10.0})
    text = ar.phase_cost_sentence(pd.DataFrame(rows))
    assert "0 + 13: 15 min, 2 + 11: 19 min, 5 + 8: 25 min and 9 + 4: 33 min" in text and "They rise with" in text
    assert "Measured alone, in the whole cpu-narrow run, a Stage I epoch took about" in text
    noisy = pd.DataFrame(rows).assign(train_s=lambda t: t.train_s.where(t.arm != "stage1-9", 500.0))
    assert "too noisily to rank the arms" in ar.phase_cost_sentence(noisy)
    one_arm = pd.DataFrame([r for r in rows if r["arm"] == "stage1-0"])
    assert "not measured yet" in ar.phase_cost_sentence(one_arm)


def test_the_budget_verdict_says_whether_the_ordering_turns_with_the_budget():
    def table(paper_minus_ranking: dict[int, float]):
        rows = []
        for recipe, points in ar.BUDGET.arms.items():
            for percent, arm in points.items():
                if percent in paper_minus_ranking:
                    shift = paper_minus_ranking[percent] if recipe == "paper" else 0.0
                    rows += [(arm, s, 100.0 + shift + s) for s in range(3)]
        return _table(rows)

    low, mid, top = sorted(ar.BUDGET.arms["paper"])
    turns = ar.budget_verdict(table({low: -10.0, mid: 20.0, top: 12.0}))
    assert f"at {low}% -10.0 (behind; ahead on 0 of 3 seeds)" in turns
    assert turns.endswith(f"The ordering depends on the budget: ahead at {mid}% and {top}%, behind at {low}%.")
    assert ar.budget_verdict(table({mid: 20.0, top: 12.0})).endswith("holds at every budget measured so far.")
    assert ar.budget_verdict(table({low: 0.5, mid: 20.0, top: 12.0})).endswith("not settled over budgets.")
    assert ar.budget_verdict(table({top: 12.0})).endswith("needs two measured points.")


def test_the_significance_table_defaults_to_the_chapters_families():
    """Notebook 06 calls it with the chapter's families implied: one row per family, by title."""
    table = _table([("loss-paper", s, 5.0 + s) for s in range(3)] + [("loss-ranking", s, 9.0) for s in range(3)])
    out = ar.significance_table(table, None)
    assert list(out.index) == [f.title for f in ar.FAMILIES]
