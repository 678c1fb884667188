"""The pixel path's loader (Stage II end to end, the gpu preset): seeded crops that do not depend on
the worker count, uint8 batches that normalise to what the old transforms gave, and a resumed
gpu-preset run on the CPU that ends with the uninterrupted run's numbers."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dualpath.config import preset
from dualpath.data.corpus import Corpus
from dualpath.data.images import (AugmentedImages, MirroredImages, augment, normalize, test_transform,
                                  train_transform)
from dualpath.embed import image_embeddings_from_pixels
from dualpath.models import build_model
from dualpath.models.backbones import Backbone
from dualpath.train.inputs import Pixels, Split, image_source
from dualpath.train.step import EpochPlan, Forward, row_seeds, train_step

SIZE, VOCAB = 32, 40


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        paths.append(folder / f"{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (40 + i, 56, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_a_seeded_crop_is_the_old_transform_with_the_same_draws(image_files):
    # the old path drew crop and flip from torch's global generator; the new one from a generator
    # of its own, in the same order: the same seed gives the same normalised pixels
    img = Image.open(image_files[3]).convert("RGB")
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    for seed in range(6):
        torch.manual_seed(seed)
        old = train_transform(SIZE, mean, std)(img)
        new = augment(img, SIZE, torch.Generator().manual_seed(seed))
        assert new.dtype == torch.uint8 and new.shape == (3, SIZE, SIZE)
        torch.testing.assert_close(normalize(new[None], mean, std)[0], old, atol=1e-5, rtol=0)
    crops = AugmentedImages(image_files, SIZE)
    assert torch.equal(crops[(3, 7)], crops[(3, 7)]) and not torch.equal(crops[(3, 7)], crops[(3, 8)])


def test_test_views_are_the_old_test_transforms(image_files):
    img = Image.open(image_files[5]).convert("RGB")
    views = MirroredImages([image_files[5]], SIZE)[0]
    for v, flip in enumerate((False, True)):
        torch.testing.assert_close(normalize(views[v][None], (0.5,) * 3, (0.25,) * 3)[0],
                                   test_transform(SIZE, (0.5,) * 3, (0.25,) * 3, flip=flip)(img),
                                   atol=1e-5, rtol=0)


def _split(paths: list[Path]) -> Split:
    n = len(paths)
    corpus = Corpus("pix", str(paths[0].parent), [p.name for p in paths], ["a caption"] * (2 * n),
                    np.repeat(np.arange(n), 2), np.arange(n), {"train": np.arange(n)})
    g = torch.Generator().manual_seed(0)
    return Split.build(corpus, [torch.randint(1, VOCAB, (6,), generator=g).tolist() for _ in range(2 * n)],
                       None, 12)


def _cfg(**kw):
    return preset("smoke", feature_dim=16, text_width=0.125, text_blocks=[1, 1, 1, 1], embed_dim=8,
                  max_len=12, word_vectors="random", n_candidates=4, batch_size=4, progress=False,
                  device="cpu", image_size=SIZE, train_images="pixels", **kw)


def _conv_model(cfg, n_classes):
    torch.manual_seed(0)
    backbone = Backbone("conv", nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), [], 8)
    return build_model(cfg, VOCAB + 1, n_classes, backbone=backbone)


def _epoch_images(split, cfg, workers: int, epoch: int) -> list[torch.Tensor]:
    source = image_source(0, cfg.replace(loader_workers=workers), Backbone("id", nn.Identity(), [], 3))
    plan = EpochPlan(split, cfg, torch.Generator().manual_seed(1), key=(cfg.seed, 0, epoch))
    return [b.images for b in source.batches(plan)]


def test_crops_depend_on_the_row_not_on_the_workers(image_files):
    split, cfg = _split(image_files), _cfg()
    in_process = _epoch_images(split, cfg, 0, epoch=0)
    assert len(in_process) == 3 and in_process[0].dtype == torch.uint8
    workers = _epoch_images(split, cfg, 2, epoch=0)
    assert all(torch.equal(a, b) for a, b in zip(in_process, workers))
    # another epoch draws other crops; the seeds are a function of (seed, phase, epoch) and the row
    assert not torch.equal(_epoch_images(split, cfg, 0, epoch=1)[0], in_process[0])
    assert torch.equal(row_seeds((0, 0, 0), 12), row_seeds((0, 0, 0), 12))
    assert len(set(row_seeds((0, 1, 2), 5000).tolist())) == 5000


def test_a_loader_batch_trains_like_one_decoded_in_the_step(image_files):
    """train_step on a batch the loader read ahead equals train_step decoding it itself."""
    split = _split(image_files)
    cfg = _cfg(negatives="sum")
    grads = []
    for preload in (False, True):
        model = _conv_model(cfg, split.corpus.n_classes)
        source = image_source(-1, cfg, model.backbone)
        source.configure(model.backbone)
        plan = EpochPlan(split, cfg, torch.Generator().manual_seed(2), key=(0, 1, 0))
        batch = next(iter(source.batches(plan))) if preload else plan.batch(0)
        assert (batch.images is not None) == preload
        from dualpath.train import phases_of
        phase = phases_of(cfg)[1]
        model.train()
        model.backbone.eval()
        stats = train_step(Forward(model, source), model, source, split, batch, phase, cfg,
                           torch.Generator().manual_seed(3))
        grads.append((stats["loss"], [p.grad.clone() for p in model.backbone.parameters()]))
    assert grads[0][0] == grads[1][0]
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))
    assert any(g.abs().sum() > 0 for g in grads[0][1])   # the whole backbone trains (finetune -1)


def test_pixel_embeddings_do_not_depend_on_workers(image_files):
    cfg = _cfg()
    model = _conv_model(cfg, 4)
    one = image_embeddings_from_pixels(model.backbone, model.image_head, image_files, SIZE, batch_size=5)
    two = image_embeddings_from_pixels(model.backbone, model.image_head, image_files, SIZE, batch_size=5,
                                       workers=2, channels_last=True)
    assert one.shape == (12, 16)
    torch.testing.assert_close(one, two, atol=1e-5, rtol=0)
    assert isinstance(image_source(-1, cfg, model.backbone), Pixels)


def test_the_gpu_preset():
    """What a Colab GPU runtime trains: the book's recipe (seen to learn on the CPU) at the paper's
    network size, Stage I on cached views, Stage II end to end on decoded images."""
    from dualpath.config import CPU_RECIPE

    cfg = preset("gpu")
    assert (cfg.dataset, cfg.backbone, cfg.word_vectors) == ("flickr8k", "efficientnet_lite0", "glove50")
    recipe_keys = ("optimizer", "lr", "stage2_lr", "schedule", "classifier_scale", "negatives",
                   "stage1_negatives", "margin", "rank_features", "epoch_unit", "batch_size",
                   "lambda_rank", "lambda_img", "lambda_txt", "dropout")
    assert {k: getattr(cfg, k) for k in recipe_keys} == {k: CPU_RECIPE[k] for k in recipe_keys}
    # the paper's text CNN, with the start that makes it train
    assert (cfg.text_blocks, cfg.text_width, cfg.text_zero_init, cfg.feature_dim) == ([3, 4, 6, 1], 1.0, True, 2048)
    assert (cfg.train_images, cfg.finetune_blocks) == ("cached", -1)
    assert cfg.loader_workers > 0 and cfg.amp and cfg.channels_last and cfg.device == "auto"
    backbone = Backbone("id", nn.Identity(), [], 3)
    from dualpath.train import phases_of
    sources = [image_source(p.finetune, cfg, backbone) for p in phases_of(cfg)]
    assert [type(s).__name__ for s in sources] == ["CachedPooled", "Pixels"]
    assert preset("auto").to_dict() == preset("gpu" if torch.cuda.is_available() else "cpu").to_dict()


def test_the_paper_recipe_on_flickr8k_keeps_its_own_preset():
    cfg = preset("paper-flickr8k")
    assert (cfg.stage1_epochs, cfg.stage2_epochs, cfg.stage2_lr_steps) == (240, 60, [40])
    assert (cfg.lambda_rank, cfg.lambda_img, cfg.lambda_txt, cfg.dropout) == (2.0, 1.0, 0.1, 0.75)
    assert (cfg.negatives, cfg.n_candidates, cfg.margin, cfg.optimizer) == ("paper", 256, 1.0, "sgd")
    assert (cfg.text_blocks, cfg.text_width, cfg.text_zero_init) == ([3, 4, 6, 1], 1.0, False)
    assert (cfg.train_images, cfg.finetune_blocks) == ("cached", -1)


# ------------------------------------------------------------- a resumed gpu-preset run on the CPU
GPU_SMOKE = ["--preset", "gpu", "--set", "subset=mini", "device=cpu", "progress=false", "image_size=96",
             "text_width=0.125", "text_blocks=[1,1,1,1]", "feature_dim=128", "stage1_epochs=1",
             "stage2_epochs=2", "batch_size=16", "n_candidates=32", "train_views=2", "test_shift=center",
             "loader_workers=2"]
ENV = {**os.environ, "DUALPATH_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}


def _run(run_dir: Path, **kw):
    return subprocess.Popen([sys.executable, "-m", "dualpath.train", "--run-dir", str(run_dir), *GPU_SMOKE],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def _log_rows(run_dir: Path) -> int:
    try:
        with open(run_dir / "log.csv") as f:
            return len(list(csv.DictReader(f)))
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_a_resumed_gpu_preset_run_on_the_cpu_equals_an_uninterrupted_one(tmp_path: Path):
    whole = _run(tmp_path / "whole")
    assert whole.wait(timeout=900) == 0, whole.stderr.read()
    killed = _run(tmp_path / "killed")
    deadline = time.time() + 900
    while _log_rows(tmp_path / "killed") < 2:   # Stage I and the first Stage II epoch are saved
        assert killed.poll() is None, killed.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    state = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert (state["phase"], state["epoch"]) == (1, 1)   # mid-way through the pixel phase
    resumed = _run(tmp_path / "killed")
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read()
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "killed")]
    assert metrics[0] == metrics[1]
