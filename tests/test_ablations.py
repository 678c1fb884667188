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
from dualpath_book.ablation import arm_config
from dualpath.errors import ConfigError, DataError
from dualpath_book.sweep import DONE, load_grid
from dualpath.train import RECIPES

ROOT = Path(__file__).resolve().parents[1]
GRIDS = ROOT / "grids"


@pytest.mark.parametrize("name", ["ablations", "smoke"])
def test_every_arm_of_the_grids_is_a_valid_config_and_recipe(name):
    grid = load_grid(GRIDS / f"{name}.yaml")
    assert grid.arms and all(a.notebook == ROOT / "notebooks" / "sweeps" / "train_arm.ipynb" for a in grid.arms)
    for arm in grid.arms:
        p = arm.params
        assert p.get("recipe", "paper") in RECIPES, arm.name
        cfg = arm_config(p.get("preset", "ablation"), p.get("overrides"), smoke=p.get("smoke", False))
        assert cfg.seed == 0
    if name == "ablations":
        assert len(grid.seeds) >= 3


def test_the_chapter_covers_exactly_the_arms_of_the_grid():
    """The families are read from the grid file itself; every arm it runs is on some page."""
    grid_arms = {a.name for a in load_grid(GRIDS / "ablations.yaml").arms}
    chapter_arms = {arm for fam in ar.FAMILIES for arm in fam.arms}
    assert chapter_arms == grid_arms
    assert set(ar.CENTRAL.arms) == {a.name for a in load_grid(GRIDS / "central.yaml").arms}
    for fam in ar.FAMILIES:
        assert len(fam.arms) == len(fam.labels) and {fam.better, fam.worse} <= set(fam.arms)
        assert (ROOT / "book" / "ablations" / f"{fam.key}.md").is_file()


def test_a_family_naming_an_arm_the_grid_lacks_is_refused(tmp_path):
    text = (GRIDS / "central.yaml").read_text().replace("{arm: loss-both,", "{arm: loss-bothh,")
    (tmp_path / "g.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"families\[0\] \(central\) names arms \['loss-bothh'\]"):
        ar.load_families(tmp_path / "g.yaml")


def test_arm_overrides_cannot_smuggle_the_seed():
    with pytest.raises(ConfigError, match="seed"):
        arm_config("ablation", {"seed": 3})
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
    assert table.iloc[0]["rsum"] == "12.0 ± 2.0" and table.iloc[2]["rsum"] == "5.0 ± 1.0"
    assert table.iloc[0]["rsum seed 1"] == 12.0 and table["seeds"].tolist() == [3, 3, 3]
    sentence = ar.verdict(t, "negatives")   # 12 - 5 = 7 > max std 2: agrees
    assert "+7.0" in sentence and "agrees with the paper" in sentence
    t.loc[t["arm"] == "negatives-sum", "rsum"] += 8.0      # 12 vs 13: inside the spread
    assert "within the seed spread" in ar.verdict(t, "negatives")
    t.loc[t["arm"] == "negatives-sum", "rsum"] += 10.0     # 12 vs 23: the other way
    assert "contradicts the paper" in ar.verdict(t, "negatives")


def test_report_names_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="make ablations"):
        ar.load(tmp_path / "absent.csv")
    # an interrupted sweep: loss-joint never ran, loss-ranking has two seeds
    t = _table([("loss-paper", s, 5.0 + s) for s in range(3)] + [("loss-ranking", s, 9.0) for s in range(2)]
               + [("loss-instance", s, 1.0) for s in range(3)])
    table = ar.family_table(t, "loss")
    assert table.loc["both from the start", "rsum"] == "–" and table.loc["both from the start", "seeds"] == 0
    assert table.loc["ranking only", "seeds"] == 2
    assert ar.incomplete_arms(t, "loss") == ["loss-ranking", "loss-joint"]
    sentence = ar.verdict(t, "loss")
    assert "Not measured yet" in sentence and "loss-ranking" in sentence and "R-sum" not in sentence
    ar.family_plot(t, "loss")
    ar.family_plot(t.iloc[:0], "loss")   # nothing finished: still a figure


def test_the_committed_results_come_from_the_runner():
    path = ar.ABLATIONS_CSV
    if not path.is_file():
        pytest.skip("book/tables/ablations.csv not produced yet (make ablations)")
    raw = pd.read_csv(path)
    assert (raw["status"] == "done").all(), raw.loc[raw["status"] != "done", ["arm", "seed", "error"]]
    grid = load_grid(GRIDS / "ablations.yaml")
    assert set(raw["arm"]) <= {a.name for a in grid.arms}
    assert set(raw["seed"]) <= set(grid.seeds)
    assert raw["command"].str.contains("grids/ablations.yaml").all()
    assert raw["commit"].notna().all() and not raw["commit"].str.endswith("-dirty").any()
    # an arm with fewer than three seeds is shown, but no claim is decided on it
    table = ar.load(path)
    for fam in ar.FAMILIES:
        decided = "Not measured yet" not in ar.verdict(table, fam.key)
        assert decided == (not set(ar.incomplete_arms(table, fam.key)) & {fam.better, fam.worse}), fam.key


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
        deadline = time.monotonic() + 300
        while not list(grid_dir.glob(f"*/seed*/{DONE}")):
            assert first.poll() is None, "the sweep ended before its first run finished"
            assert time.monotonic() < deadline, "no run finished in 5 minutes"
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    finished = {p.parent: p.stat().st_mtime_ns for p in grid_dir.glob(f"*/seed*/{DONE}")}
    second = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
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
    rows = [(a, s, 10.0 + s) for a in ar.FAMILY["loss"].arms for s in range(3)]
    t = _table(rows)
    t["stage1.rsum"] = t["rsum"] - 4.0
    t["stage2.rsum"] = t["rsum"]
    t.loc[t["arm"] == "loss-instance", "stage2.rsum"] = float("nan")   # Stage I alone
    phases = ar.phase_table(t, "loss")
    assert phases.loc["ranking only", "after phase 1"] == "7.0 ± 1.0"
    assert phases.loc["ranking only", "after phase 2"] == "11.0 ± 1.0"
    assert phases.loc["instance only (Stage I)", "after phase 2"] == "–"


def test_budget_sentence_follows_the_presets():
    from dualpath.config import preset
    text = ar.budget_sentence()
    short, book = preset("ablation"), preset("cpu")
    assert f"{short.stage1_epochs} + {short.stage2_epochs} epochs" in text
    assert f"trains {book.stage1_epochs} + {book.stage2_epochs} epochs over the training captions" in text
