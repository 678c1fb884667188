"""The presets: the official recipes pinned to SPEC §1-4, and the README and --list-presets in step."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dualpath.config import PRESET_NOTES, PRESETS, describe_preset, preset
from dualpath.train import phases_of

ROOT = Path(__file__).resolve().parents[2]

# SPEC 1.1 dropout, 1.3 classifier bias, 1.2 L, 2 loss weights, 3.2 schedules, 3.3 negatives, 4 splits
OFFICIAL = {
    "paper": dict(dataset="flickr30k_official", protocol="1k", dropout=0.75, classifier_bias=True, max_len=32,
                  lambdas=(2.0, 1.0, 0.1), epochs=(240, 60), stage2_lr_steps=[40], negatives="paper"),
    "paper-coco": dict(dataset="coco", protocol="coco-5k", dropout=0.5, classifier_bias=False, max_len=32,
                       lambdas=(2.0, 1.0, 0.1), epochs=(75, 21), stage2_lr_steps=[15, 20], negatives="paper"),
    "paper-cuhk": dict(dataset="cuhk_pedes", protocol="cuhk", dropout=0.8, classifier_bias=True, max_len=56,
                       lambdas=(2.0, 1.0, 0.5), epochs=(150, 61), stage2_lr_steps=[40], negatives="random"),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_each_official_preset_follows_spec(name):
    cfg, want = preset(name), OFFICIAL[name]
    for key in ("dataset", "protocol", "dropout", "classifier_bias", "max_len", "stage2_lr_steps", "negatives"):
        assert getattr(cfg, key) == want[key], key
    assert cfg.recipe == "paper"
    stage1, stage2 = phases_of(cfg)
    assert (stage1.epochs, stage2.epochs) == want["epochs"]
    assert tuple(stage1.lambdas) == (0, 1, 1) and tuple(stage2.lambdas) == want["lambdas"]
    assert (stage1.lr, stage1.lr_steps, stage2.lr) == (0.1, [], 0.1)          # 0.1 constant, then drops
    assert (stage1.finetune, stage2.finetune) == (0, -1)                      # frozen, then all of it
    # the network, the words and the optimiser of the official code
    assert (cfg.backbone, cfg.text_width, cfg.text_blocks, cfg.feature_dim) == ("resnet50", 1.0, [3, 4, 6, 1], 2048)
    assert (cfg.word_vectors, cfg.lowercase, cfg.vocab_needs_vector) == ("word2vec", False, True)
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.batch_size) == ("sgd", 0.9, 1e-4, 32)
    assert (cfg.lr_mult_new, cfg.lr_mult_bn, cfg.lr_mult_classifier, cfg.lr_mult_embedding) == (0.1, 0.2, 0.01, 1e-3)
    assert (cfg.margin, cfg.n_candidates, cfg.rank_features, cfg.epoch_unit) == (1.0, 256, "act", "images")
    # Stage I sees a fresh crop and flip every epoch (decoded images), as the official code does,
    # read by loader workers beside the step
    assert cfg.train_images == "pixels" and cfg.loader_workers > 0
    assert (cfg.image_input_dropout, cfg.text_input_dropout, cfg.classifier_scale) == (0.0, 0.0, 0.0)


# Config.digest of each preset as the code gave it before the recipe became a config key (commit
# 6c1769e): run folders and caches are named by it, so a key added since (LATER_KEYS) leaves it as it was.
DIGESTS = {"cpu": "d44e01b780", "cpu-narrow": "a782f20824", "cpu-short": "9098daea7c", "cpu-quarter": "7fa3adddbd",
           "ablation": "edc5599b4a", "paper": "f0b8f07040", "paper-coco": "26eb528b00", "paper-cuhk": "9054be3dfb",
           "gpu": "99f455c772", "paper-flickr8k": "f0ceac883e", "smoke": "f90afacfdc"}


def test_the_digests_of_the_presets_stay_those_of_the_runs_on_disk():
    assert {name: preset(name).digest() for name in PRESETS} == DIGESTS
    assert {name: preset(name, recipe="paper").digest() for name in PRESETS} == DIGESTS
    assert preset("smoke", seed=1).digest() == "485c8c66db"
    assert preset("cpu", recipe="ranking").digest() != DIGESTS["cpu"]   # another recipe, another run


def test_a_front_door_sets_each_key_once():
    """preset(): the caller's own parameters (settings) and a user's overrides may not name the same key."""
    from dualpath.errors import ConfigError

    assert preset("cpu", {"margin": 0.5}, seed=2, recipe="joint") == preset("cpu", margin=0.5, seed=2, recipe="joint")
    assert preset("cpu", smoke=True) == preset("smoke")
    with pytest.raises(ConfigError, match=r"\['seed'\] set what the caller sets itself"):
        preset("cpu", {"seed": 3}, seed=1)
    with pytest.raises(ConfigError, match="'recipe'"):
        preset("cpu", recipe="rankng")
    assert preset("cpu-short").optimizer == "adam"   # a cpu-* preset: the cpu-narrow recipe at another budget


def test_every_preset_is_described_and_the_readme_lists_each_as_the_command_prints_it():
    assert list(PRESET_NOTES) == list(PRESETS)
    readme = (ROOT / "README.md").read_text()
    printed = subprocess.run([sys.executable, "-m", "dualpath.train", "--list-presets"], capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout.splitlines()
    assert printed == [describe_preset(name) for name in PRESETS]
    for line in printed:
        assert f"- `{line.split(':', 1)[0]}`:{line.split(':', 1)[1]}" in readme, line


def test_a_protocol_typo_fails_when_the_config_is_made_not_after_training():
    from dualpath.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'protocol' = '5k' is invalid: expected one of"):
        preset("cpu", protocol="5k")
