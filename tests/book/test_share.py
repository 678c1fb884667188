"""A run that starts from another run's first phase (dualpath.train.share) equals the run that
trains that phase itself, and refuses a source whose first phase would have trained otherwise."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualpath import checkpoint as ckpt_io
from dualpath.config import preset
from dualpath.errors import ConfigError, DataError
from dualpath.train import RunDir, train
from dualpath.train.share import SHARED, first_phase_differences, start_from_first_phase
from dualpath_book.ablation import TEST_RANKS, arm_config, load_test_ranks, run_arm

SMOKE = preset("smoke", progress=False)
# Stage II reads these; Stage I of the paper recipe does not
LATER = dict(lambda_rank=1.0, lambda_img=1.0, lambda_txt=1.0, negatives="sum")
quiet = lambda *a: None   # noqa: E731


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("share") / "source"
    train(SMOKE, run_dir, log=quiet)
    return run_dir


def test_a_run_keeps_where_its_first_phase_ended(source: Path):
    end = ckpt_io.load(source / "end_stage1.pt")
    assert (end["phase"], end["epoch"]) == (0, SMOKE.stage1_epochs) and "optimizer" not in end
    assert [r["phase"] for r in end["log"]] == ["stage1"] * SMOKE.stage1_epochs


def test_starting_from_the_first_phase_of_another_run_equals_training_it(source: Path, tmp_path: Path):
    cfg = SMOKE.replace(**LATER)
    trained = train(cfg, tmp_path / "trained", log=quiet).metrics
    shared_dir = RunDir(tmp_path / "shared", cfg)
    start_from_first_phase(source, shared_dir, log=quiet)
    shared = train(cfg, shared_dir.path, log=quiet).metrics
    assert shared == trained
    assert shared["stage1"] == json.loads((source / "metrics.json").read_text())["stage1"]
    record = json.loads((shared_dir.path / SHARED).read_text())
    assert record["first_phase_from"] == str(source.resolve()) and record["epochs"] == SMOKE.stage1_epochs
    # the log has the source's Stage I rows, then its own Stage II
    log = (shared_dir.path / "log.csv").read_text().splitlines()
    assert log[1:SMOKE.stage1_epochs + 1] == (source / "log.csv").read_text().splitlines()[1:SMOKE.stage1_epochs + 1]
    assert len(log) == 1 + SMOKE.stage1_epochs + SMOKE.stage2_epochs


@pytest.mark.parametrize("change, named", [
    ({"dropout": 0.3}, "dropout"),                 # the network Stage I trains
    ({"stage1_epochs": 1}, "stage1_epochs"),
    ({"finetune_blocks": 0}, "finetune_blocks"),   # what the feature cache holds
])
def test_a_source_whose_first_phase_differs_is_refused(source: Path, tmp_path: Path, change, named):
    cfg = SMOKE.replace(**LATER, **change)
    with pytest.raises(ConfigError, match=f"would differ in .*{named}"):
        start_from_first_phase(source, RunDir(tmp_path / "x", cfg), log=quiet)
    assert not (tmp_path / "x").exists()


def test_only_a_first_phase_without_ranking_ignores_the_ranking_keys():
    ranked_first = SMOKE.replace(margin=0.5)
    ranking = SMOKE.replace(recipe="ranking")
    assert first_phase_differences(SMOKE, ranked_first) == []
    assert "margin" in first_phase_differences(ranking, ranked_first.replace(recipe="ranking"))
    assert first_phase_differences(SMOKE, SMOKE.replace(recipe="joint"))   # other Stage I losses
    assert first_phase_differences(SMOKE, SMOKE.replace(recipe="instance")) == ["a single phase (nothing follows it)"]


def test_a_source_that_has_not_ended_its_first_phase_is_reported(tmp_path: Path):
    unfinished = tmp_path / "unfinished"
    train(SMOKE, unfinished, until="stage1", log=quiet)
    (unfinished / "end_stage1.pt").unlink()   # as if it were still in Stage I
    with pytest.raises(DataError, match="has not ended its stage1 yet"):
        start_from_first_phase(unfinished, RunDir(tmp_path / "x", SMOKE.replace(**LATER)), log=quiet)


def test_an_arm_sharing_stage1_reports_it_with_its_validation_and_test_ranks(source: Path, tmp_path: Path):
    flat = run_arm(arm_config(overrides=LATER, smoke=True), run_dir=tmp_path / "arm", stage1_from=source,
                   test_policies=("all",), log=quiet)
    src = json.loads((source / "metrics.json").read_text())
    assert flat["stage1.rsum"] == src["stage1"]["rsum"] and flat["stage1_from"] == f"{source.parent.name}/source"
    assert flat["stage1_shared"] is True
    assert flat["stage1.val_rsum"] > 0 and flat["val_rsum"] == flat["stage2.val_rsum"]
    ranks = load_test_ranks(tmp_path / "arm" / TEST_RANKS)
    images = len(ranks["i2t"])
    assert len(ranks["t2i"]) == 5 * images
    recall = sum(100.0 * (ranks[d] < k).mean() for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert recall == pytest.approx(flat["rsum"], abs=0.011)


def test_an_arm_whose_source_kept_only_its_record_trains_the_same_stage1_itself(source: Path, tmp_path: Path):
    """A source restored from a committed table (DONE.json, no checkpoints) cannot be started
    from: the arm trains Stage I itself, and it is the very Stage I the source trained."""
    restored = tmp_path / "restored"
    restored.mkdir()
    (restored / "DONE.json").write_text(json.dumps({"status": "done", "restored_from": "book/tables/g.csv"}))
    lines: list[str] = []
    flat = run_arm(arm_config(overrides=LATER, smoke=True), run_dir=tmp_path / "arm", stage1_from=restored,
                   test_policies=("all",), log=lines.append)
    src = json.loads((source / "metrics.json").read_text())
    assert flat["stage1.rsum"] == src["stage1"]["rsum"] and flat["stage1_shared"] is False
    assert any("trains the Stage I it shares" in line for line in lines)
