"""The training step on tiny synthetic batches: recipes, batches, mining, DDP sharding, and the
ranking loss pinned to VSE++'s ContrastiveLoss (pytorch-metric-learning style: one reference each)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dualpath.config import RECIPE_NAMES, preset
from dualpath.errors import ConfigError
from dualpath.losses import ranking_loss
from dualpath.models import build_model
from dualpath.models.backbones import Backbone
from dualpath.testing import synthetic_split
from dualpath.train import RECIPES, phases_of
from dualpath.train.inputs import CachedMaps, CachedPooled, Pixels, Split, image_source
from dualpath.train.step import EpochPlan, Forward, has_instance, is_paired, pair_negatives, shard_rows, train_step

DIM, VOCAB = 32, 60


def tiny_cfg(**kw):
    base = dict(feature_dim=16, text_width=0.125, text_blocks=[1, 1, 1, 1], embed_dim=8, max_len=12,
                word_vectors="random", n_candidates=8, batch_size=8, progress=False, device="cpu")
    return preset("smoke", **{**base, **kw})


def tiny_model(cfg, n_classes: int):
    torch.manual_seed(0)
    backbone = Backbone("tiny", nn.Identity(), [], DIM)
    return build_model(cfg, VOCAB + 1, n_classes, backbone=backbone)


# ------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("recipe, expected", [
    ("paper", [("stage1", (0, 1, 1), 0), ("stage2", (2.0, 1.0, 0.1), 1)]),
    ("instance", [("stage1", (0, 1, 1), 0)]),
    ("ranking", [("stage1", (2.0, 0.0, 0.0), 0), ("stage2", (2.0, 0.0, 0.0), 1)]),
    ("joint", [("stage1", (2.0, 1.0, 0.1), 0), ("stage2", (2.0, 1.0, 0.1), 1)]),
    ("both", [("stage1", (2.0, 1.0, 1.0), 0), ("stage2", (2.0, 1.0, 0.1), 1)]),
])
def test_each_recipe_has_its_losses_and_fine_tuning(recipe, expected):
    cfg = preset("cpu", finetune_blocks=1, lambda_rank=2.0, lambda_img=1.0, lambda_txt=0.1,
                 negatives="sum", stage1_negatives="", recipe=recipe)
    phases = phases_of(cfg)
    assert [(p.name, tuple(p.lambdas), p.finetune) for p in phases] == expected
    assert [p.epochs for p in phases] == [cfg.stage1_epochs, cfg.stage2_epochs][:len(phases)]
    assert tuple(RECIPES) == RECIPE_NAMES == ("paper", "instance", "ranking", "joint", "both")
    # only phases with a ranking term pair negatives, and only with the paper's or CUHK's policy
    for mode in ("paper", "random"):
        paired = phases_of(cfg.replace(negatives=mode))
        assert [is_paired(p, cfg) for p in paired] == [p.lambdas[0] > 0 for p in paired]
    assert not any(is_paired(p, cfg) for p in phases)   # negatives 'sum'


def test_the_cpu_recipe_phases():
    """The book's recipe: Stage I instance losses only; Stage II the hardest-negative ranking loss
    alone; a ranking term in phase 1 (ranking / joint recipes) sums over the negatives."""
    cfg = preset("cpu")
    stage1, stage2 = phases_of(cfg)
    assert (stage1.lambdas, stage1.finetune, stage1.lr) == ((0, 1, 1), 0, cfg.lr)
    assert (tuple(stage2.lambdas), stage2.negatives, stage2.lr) == ((1.0, 0.0, 0.0), "hardest", cfg.stage2_lr)
    assert [p.negatives for p in phases_of(cfg.replace(recipe="ranking"))] == ["sum", "hardest"]
    assert (cfg.optimizer, cfg.schedule, cfg.epoch_unit, cfg.batch_size) == ("adam", "cosine", "captions", 128)
    assert cfg.classifier_scale > 0 and not cfg.classifier_bias
    assert not has_instance(stage2) and has_instance(stage1)


def test_image_source_follows_the_fine_tuned_blocks():
    cfg, backbone = tiny_cfg(), Backbone("tiny", nn.Identity(), [], DIM)
    assert isinstance(image_source(0, cfg, backbone), CachedPooled)
    maps = image_source(2, cfg, backbone)
    assert isinstance(maps, CachedMaps) and maps.trainable_blocks == 2
    assert isinstance(image_source(-1, cfg, backbone), Pixels)
    # train_images='pixels': every phase decodes images, its fine-tuned blocks trained
    pixels = cfg.replace(train_images="pixels")
    assert [image_source(k, pixels, backbone).trainable_blocks for k in (0, 2, -1)] == [0, 2, -1]
    assert all(isinstance(image_source(k, pixels, backbone), Pixels) for k in (0, 2, -1))


def test_a_frozen_pixel_path_trains_the_head_on_fresh_crops(tmp_path):
    """Stage I of the paper presets (train_images='pixels'): each time a batch of images is read it
    gets a new random crop and flip (SPEC 3.4); the backbone stays frozen and keeps no graph."""
    import numpy as np
    from PIL import Image
    from dualpath.data.corpus import Corpus

    rng = np.random.default_rng(0)
    names = []
    for i in range(8):
        names.append(f"{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(tmp_path / names[-1])
    corpus = Corpus("pix", str(tmp_path), names, ["a caption"] * 16, np.repeat(np.arange(8), 2),
                    np.arange(8), {"train": np.arange(8)})
    ids = [torch.randint(1, VOCAB, (6,)).tolist() for _ in range(16)]
    split = Split.build(corpus, ids, None, 12)
    cfg = tiny_cfg(train_images="pixels", image_size=32)
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, DIM, 3), nn.ReLU())
    model = build_model(cfg, VOCAB + 1, 8, backbone=Backbone("conv", conv, [], DIM))
    source = image_source(0, cfg, model.backbone)
    source.configure(model.backbone)
    index = torch.arange(8)
    first, second = source.batch(split, index, index * 0), source.batch(split, index, index * 0)
    assert first.shape == (8, 3, 32, 32) and not torch.equal(first, second)   # fresh crops
    assert not source.pool(model.backbone, first).requires_grad
    phase = phases_of(cfg)[0]
    gen = torch.Generator().manual_seed(0)
    model.train()
    model.backbone.eval()
    stats = train_step(Forward(model, source), model, source, split, EpochPlan(split, cfg, gen).batch(0),
                       phase, cfg, gen)
    assert stats["loss"] > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    assert sum(p.grad.abs().sum() for p in model.image_head.parameters() if p.grad is not None) > 0


# ------------------------------------------------------------------------------- batches
def test_caption_epochs_use_every_caption_exactly_once():
    split = synthetic_split(12, 5, dim=DIM, vocab_size=VOCAB)      # 60 captions
    cfg = tiny_cfg(epoch_unit="captions", batch_size=8)
    gen = torch.Generator().manual_seed(1)
    plan = EpochPlan(split, cfg, gen)
    assert len(plan) == 60 // 8                                     # the last partial batch is dropped
    batches = [plan.batch(k) for k in range(len(plan))]
    seen = torch.cat([b.caption for b in batches])
    assert len(seen) == 56 and len(set(seen.tolist())) == 56
    for b in batches:
        assert torch.equal(b.index, split.caption_image[b.caption])
        assert torch.equal(b.label, split.image_label[b.index])
    whole = synthetic_split(12, 4, dim=DIM, vocab_size=VOCAB)       # 48 captions: 6 full batches
    plan = EpochPlan(whole, cfg, gen)
    assert sorted(torch.cat([plan.batch(k).caption for k in range(len(plan))]).tolist()) == list(range(48))
    # a second epoch is another order of the same captions
    again = EpochPlan(whole, cfg, gen)
    assert not torch.equal(again.caption, plan.caption) and sorted(again.caption.tolist()) == list(range(48))


def test_image_epochs_draw_each_image_once_with_one_of_its_captions():
    split = synthetic_split(20, 3, dim=DIM, vocab_size=VOCAB)
    gen = torch.Generator().manual_seed(0)
    plan = EpochPlan(split, tiny_cfg(batch_size=8), gen)
    assert len(plan) == 2
    images = torch.cat([plan.batch(k).index for k in range(2)])
    assert len(set(images.tolist())) == 16
    caps = split.draw_captions(images, gen)
    assert torch.equal(split.caption_image[caps], images)


def test_a_person_draws_any_caption_of_any_of_its_images():
    """CUHK-PEDES (SPEC 3.3): a training image is paired with a caption of any image of its identity;
    where every image is its own class the draw is among the image's own captions, in the same order."""
    person = synthetic_split(20, 2, dim=DIM, vocab_size=VOCAB, labels=[i // 4 for i in range(20)])
    gen = torch.Generator().manual_seed(0)
    images = torch.zeros(400, dtype=torch.long)                    # image 0, of person 0 (images 0-3)
    drawn = person.caption_image[person.draw_captions(images, gen)]
    assert set(drawn.tolist()) == {0, 1, 2, 3}
    own = synthetic_split(20, 3, dim=DIM, vocab_size=VOCAB)
    assert torch.equal(own.caps_by_class, torch.argsort(own.caption_image, stable=True))


def test_encode_matches_the_reference_encoder():
    from dualpath.data.text import encode_ids
    split = synthetic_split(10, 3, dim=DIM, vocab_size=VOCAB, max_len=12)
    caps = torch.tensor([0, 5, 7, 29, 3])
    for shift in ("random", "left", "center"):
        a = split.encode(caps, shift, torch.Generator().manual_seed(3))
        b = encode_ids([split.caption_ids[c] for c in caps.tolist()], 12, shift, torch.Generator().manual_seed(3))
        assert torch.equal(a, b), shift


# -------------------------------------------------------------------------------- mining
def _paired_batch(mode: str, seed: int = 0):
    labels = [i // 2 for i in range(40)]                            # two images per class (CUHK-like)
    split = synthetic_split(40, 3, dim=DIM, vocab_size=VOCAB, labels=labels)
    cfg = tiny_cfg(n_candidates=16)
    model = tiny_model(cfg, 20)
    gen = torch.Generator().manual_seed(seed)
    batch = EpochPlan(split, cfg, gen).batch(0)
    caps = split.draw_captions(batch.index, gen)
    x = CachedPooled().batch(split, batch.index, batch.view)
    out = pair_negatives(model, CachedPooled(), split, batch, x, caps, batch.label, cfg, gen, "cpu", mode)
    return split, batch, caps, x, out


@pytest.mark.parametrize("mode", ["paper", "random"])
def test_negative_pairs_are_of_another_class_and_carry_their_own_labels(mode):
    for seed in range(5):
        split, batch, caps, x, (x2, captions, labels_img, labels_txt) = _paired_batch(mode, seed)
        half = len(batch) // 2
        anchors = batch.label[:half]
        assert torch.equal(captions[:half], caps[:half]) and torch.equal(labels_txt[:half], anchors)
        assert torch.equal(x2[:half], x[:half]) and torch.equal(labels_img[:half], anchors)
        neg_images = split.caption_image[captions[half:]]
        assert torch.equal(labels_txt[half:], split.image_label[neg_images])
        assert not (labels_txt[half:] == anchors).any()                 # T_n: another identity
        assert not (labels_img[half:] == anchors).any()                 # I_n: redrawn if it shared one
        assert not torch.isin(neg_images, batch.index[:half]).any()    # never an anchor's own image
        # a redrawn I_n row holds its new image's features and label
        kept = labels_img[half:] == batch.label[half:]
        assert torch.equal(x2[half:][kept], x[half:][kept])
        for row in (~kept).nonzero().squeeze(1).tolist():
            assert any(torch.equal(x2[half + row], split.features.pooled[v, i])
                       for v in range(split.n_views) for i in (split.image_label == labels_img[half + row]).nonzero().squeeze(1))


@pytest.mark.parametrize("mode", ["paper", "random"])
def test_extra_paired_rows_keep_every_row_a_positive_pair(mode):
    """``paired_rows='extra'``: a step trains all batch_size positive pairs (as an in-batch mode
    does) and appends one negative row per anchor; 'half' (SPEC 3.3) trains batch_size / 2."""
    split = synthetic_split(24, 5, dim=DIM, vocab_size=VOCAB)
    seen = {}
    for rows in ("half", "extra"):
        cfg = tiny_cfg(negatives=mode, epoch_unit="captions", paired_rows=rows, train_shift="left")
        model = tiny_model(cfg, 24)
        phase = phases_of(cfg)[1]
        source = CachedPooled()
        source.configure(model.backbone)
        gen = torch.Generator().manual_seed(0)
        batch = EpochPlan(split, cfg, gen).batch(0)
        calls = []

        class Recording(Forward):
            def forward(self, x, ids):
                calls.append((x.detach().clone(), ids.detach().clone()))
                return super().forward(x, ids)

        stats = train_step(Recording(model, source), model, source, split, batch, phase, cfg,
                           torch.Generator().manual_seed(1))
        (x, ids), = calls
        assert stats["loss_rank"] > 0
        seen[rows] = (batch, x, ids)
    batch, x, ids = seen["extra"]
    b = len(batch)
    assert len(x) == 2 * b and len(seen["half"][1]) == b
    # the first B rows are the batch's own positive pairs: every image and every caption of the batch
    own = CachedPooled().batch(split, batch.index, batch.view)
    assert torch.equal(x[:b], own)
    assert torch.equal(ids[:b], split.encode(batch.caption, "left", torch.Generator()))
    assert not torch.equal(x[b:], x[:b])                            # the appended rows are negatives
    with pytest.raises(ConfigError, match="paired_rows"):
        tiny_cfg(paired_rows="all")
    # a key of the run's identity only when set: the runs named before it keep their names
    from dualpath.config import LATER_KEYS
    assert LATER_KEYS["paired_rows"] == "half" and cfg.digest() != cfg.replace(paired_rows="half").digest()


def test_random_negatives_score_nothing():
    """The CUHK recipe draws T_n without a forward pass: the model is never called."""
    class Exploding(torch.nn.Module):
        def __getattr__(self, name):
            raise AssertionError(f"the model was used ({name})")
    labels = [i // 2 for i in range(40)]
    split = synthetic_split(40, 3, dim=DIM, vocab_size=VOCAB, labels=labels)
    cfg = tiny_cfg()
    gen = torch.Generator().manual_seed(0)
    batch = EpochPlan(split, cfg, gen).batch(0)
    caps = split.draw_captions(batch.index, gen)
    x = CachedPooled().batch(split, batch.index, batch.view)
    pair_negatives(Exploding(), CachedPooled(), split, batch, x, caps, batch.label, cfg, gen, "cpu", "random")


def test_a_step_trains_and_reports_its_stats():
    split = synthetic_split(24, 5, dim=DIM, vocab_size=VOCAB)
    for unit in ("images", "captions"):
        for neg in ("paper", "random", "sum", "hardest"):
            cfg = tiny_cfg(negatives=neg, epoch_unit=unit, grad_clip=1.0, optimizer="adamw", lr=1e-3)
            model = tiny_model(cfg, 24)
            phase = phases_of(cfg)[1]
            source = CachedPooled()
            source.configure(model.backbone)
            from dualpath.train.optim import make_optimizer
            opt = make_optimizer(cfg, model, 1e-3)
            gen = torch.Generator().manual_seed(0)
            model.train()
            before = model.classifier.weight.detach().clone()
            stats = train_step(Forward(model, source), model, source, split, EpochPlan(split, cfg, gen).batch(0),
                               phase, cfg, gen, opt, grad_norms=True)
            assert {"loss", "loss_rank", "loss_img", "loss_txt", "acc_img", "acc_txt",
                    "grad_image", "grad_text", "grad_classifier"} <= set(stats)
            assert stats["loss_rank"] > 0 and all(stats[f"grad_{g}"] > 0 for g in ("image", "text", "classifier"))
            assert not torch.equal(before, model.classifier.weight)


def test_amp_cpu_runs_the_step_in_bfloat16_and_names_the_run():
    """``amp_cpu``: the step's matmuls in bfloat16 autocast on the CPU (the weights and the losses
    stay float32); a key of the run's identity, so a bf16 run never resumes a float32 one."""
    from dualpath.train.optim import make_optimizer

    split = synthetic_split(24, 5, dim=DIM, vocab_size=VOCAB)
    seen = []
    for amp in (False, True):
        cfg = tiny_cfg(negatives="hardest", epoch_unit="captions", optimizer="adam", lr=1e-3, amp_cpu=amp)
        model = tiny_model(cfg, 24)
        hook = model.text_cnn.fc5_2.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        phase = phases_of(cfg)[1]
        source = CachedPooled()
        source.configure(model.backbone)
        gen = torch.Generator().manual_seed(0)
        model.train()
        stats = train_step(Forward(model, source), model, source, split, EpochPlan(split, cfg, gen).batch(0),
                           phase, cfg, gen, make_optimizer(cfg, model, 1e-3))
        hook.remove()
        assert torch.isfinite(torch.tensor(stats["loss"]))
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert seen == [torch.float32, torch.bfloat16]
    assert tiny_cfg(amp_cpu=True).digest() != tiny_cfg().digest()


def test_amp_on_a_gpu_without_bf16_units_trains_float32(monkeypatch):
    """A T4 (compute capability 7.5) only emulates bf16: ``amp`` leaves its step in float32;
    an Ampere GPU (8.0) gets bf16 autocast."""
    from dualpath.train import step

    cfg = tiny_cfg(amp=True)
    for capability, enabled in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        made = {}
        monkeypatch.setattr(torch, "autocast", lambda device_type, **kw: made.update(device=device_type, **kw))
        step._autocast(torch.device("cuda"), cfg)
        assert made["device"] == "cuda" and made["enabled"] is enabled and made["dtype"] == torch.bfloat16
        step._autocast(torch.device("cuda"), cfg.replace(amp=False))
        assert made["enabled"] is False


def test_in_batch_negatives_skip_other_captions_of_the_same_image():
    # one-hot embeddings: every other pair scores 0, far under the margin; rows 0 and 2 are two
    # captions of one image, so without labels each is the other's (violating) negative
    img = torch.eye(6)[[0, 1, 0, 3, 4, 5]]
    txt = img.clone()
    labels = torch.tensor([7, 1, 7, 3, 4, 5])
    for mode in ("sum", "hardest"):
        assert ranking_loss(img, txt, 0.2, mode).item() > 0
        assert ranking_loss(img, txt, 0.2, mode, labels=labels).item() == 0
    # mined pairs: a negative image of the anchor's own label is no negative either
    neg_img, neg_txt = torch.eye(6)[[0, 2]], torch.eye(6)[[4, 5]]
    pair = dict(margin=0.2, mode="paper", neg_img=neg_img, neg_txt=neg_txt)
    assert ranking_loss(img[:2], txt[:2], **pair).item() > 0
    assert ranking_loss(img[:2], txt[:2], **pair, labels=labels[:2], neg_labels=torch.tensor([7, 2])).item() == 0


# ------------------------------------------------------------------------ DDP sharding
def test_sharding_keeps_each_anchor_with_its_negatives():
    n, world = 16, 2
    parts = [shard_rows(n, r, world, paired=True) for r in range(world)]
    assert sorted(torch.cat(parts).tolist()) == list(range(n))
    for rows in parts:
        anchors = {i for i in rows.tolist() if i < n // 2}
        negatives = {i - n // 2 for i in rows.tolist() if i >= n // 2}
        assert anchors == negatives
    assert torch.equal(shard_rows(10, 1, 2, paired=False), torch.tensor([1, 3, 5, 7, 9]))


def _ddp_cfg():
    return tiny_cfg(dropout=0.0, negatives="paper", batch_size=8)


def _one_step(rank: int, world: int):
    """Gradients and loss of one paired Stage II step (dropout 0, BN on running statistics)."""
    cfg = _ddp_cfg()
    split = synthetic_split(30, 3, dim=DIM, vocab_size=VOCAB)
    model = tiny_model(cfg, 30)
    phase = phases_of(cfg)[1]
    source = CachedPooled()
    source.configure(model.backbone)
    model.eval()   # per-rank BN batch statistics would differ from one rank's (no SyncBatchNorm)
    forward = Forward(model, source)
    if world > 1:
        forward = torch.nn.parallel.DistributedDataParallel(forward)
    gen = torch.Generator().manual_seed(5)
    batch = EpochPlan(split, cfg, gen).batch(0)
    stats = train_step(forward, model, source, split, batch, phase, cfg, gen, None, rank=rank, world=world)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return stats["loss"], grads


def _ddp_worker(rank: int, world: int, init_file: str, out: str):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        loss, grads = _one_step(rank, world)
        torch.save({"loss": loss, "grads": grads}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_match_one_rank(tmp_path: Path):
    import torch.multiprocessing as mp
    loss, grads = _one_step(0, 1)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"out.{r}", weights_only=True) for r in range(2)]
    assert sum(r["loss"] for r in ranks) / 2 == pytest.approx(loss, rel=1e-5)
    for r in ranks:   # DDP averages the ranks' gradients: the one-rank gradient of the whole batch
        assert set(r["grads"]) == set(grads)
        for name, g in grads.items():
            torch.testing.assert_close(r["grads"][name], g, rtol=1e-4, atol=1e-6, msg=name)


# ------------------------------------------------------------- the VSE++ reference loss
class VSEContrastiveLoss(nn.Module):
    """VSE++ (fartashf/vsepp, model.py) ContrastiveLoss, written out for comparison."""

    def __init__(self, margin: float = 0.0, max_violation: bool = False):
        super().__init__()
        self.margin, self.max_violation = margin, max_violation

    def forward(self, im, s):
        scores = im @ s.t()                                  # cosine_sim of l2-normalised embeddings
        diagonal = scores.diag().view(im.size(0), 1)
        d1 = diagonal.expand_as(scores)
        d2 = diagonal.t().expand_as(scores)
        cost_s = (self.margin + scores - d1).clamp(min=0)    # image anchor, caption negatives (rows)
        cost_im = (self.margin + scores - d2).clamp(min=0)   # caption anchor, image negatives (columns)
        mask = torch.eye(scores.size(0)) > 0.5
        cost_s = cost_s.masked_fill(mask, 0)
        cost_im = cost_im.masked_fill(mask, 0)
        if self.max_violation:
            cost_s = cost_s.max(1)[0]
            cost_im = cost_im.max(0)[0]
        return cost_s.sum() + cost_im.sum()


@pytest.mark.parametrize("mode, max_violation", [("hardest", True), ("sum", False)])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_ranking_loss_matches_vsepp(mode, max_violation, margin):
    torch.manual_seed(1)
    img = torch.randn(10, 16, requires_grad=True)
    txt = torch.randn(10, 16, requires_grad=True)
    ours = ranking_loss(img, txt, margin=margin, mode=mode)
    ref = VSEContrastiveLoss(margin, max_violation)(F.normalize(img, dim=1), F.normalize(txt, dim=1))
    torch.testing.assert_close(ours, ref / len(img))          # ours divides the sum by the batch size
    g_ours = torch.autograd.grad(ours, (img, txt))
    g_ref = torch.autograd.grad(ref / len(img), (img, txt))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("key, value", [("stage1_epochs", "-3"), ("stage2_epochs", "-1"),
                                        ("optimizer", "lion"), ("warmup_epochs", "-0.5")])
def test_cli_bad_value_is_one_error_line_with_status_2(key, value):
    out = subprocess.run([sys.executable, "-m", "dualpath.train", "--preset", "smoke", "--set",
                          f"{key}={value}"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DUALPATH_PROGRESS": "0"})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert key in lines[0] and value in lines[0] and "Traceback" not in out.stderr
