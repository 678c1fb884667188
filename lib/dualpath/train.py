"""The two training stages, with checkpoints, exact resume, and DistributedDataParallel.

A run is a list of phases. The paper's recipe is Stage I (instance loss, backbone frozen)
then Stage II (ranking + instance loss, top backbone blocks fine-tuned); the ablation
recipes reuse the same two slots with other losses, so every arm gets the same budget:

==========  ============================  =====================================
recipe      phase 1 (stage1_epochs)       phase 2 (stage2_epochs)
==========  ============================  =====================================
paper       instance                      rank + instance, backbone top blocks
instance    instance                      (none)
ranking     rank                          rank, backbone top blocks
joint       rank + instance               rank + instance, backbone top blocks
==========  ============================  =====================================

Run directory: ``config.json``, ``log.csv`` (one row per epoch), ``last.pt`` (resume point,
rewritten every epoch), ``best_<phase>.pt`` (best validation rsum of that phase) and
``metrics.json`` (test metrics of each phase's best checkpoint). Everything is written
atomically; a run killed at any point resumes from ``last.pt`` and ends with the same numbers.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import checkpoint as ckpt_io
from .config import Config, preset
from .data.corpus import Corpus
from .data.registry import load_corpus
from .data.text import Vocabulary, encode_ids
from .data.wordvec import embedding_matrix, load_glove_package, load_word_vectors
from .embed import image_embeddings_from_inputs, image_embeddings_from_pixels, text_embeddings
from .errors import ConfigError, DataError
from .evaluate import evaluate_embeddings
from .features import FeatureSpec, Features, load_or_extract
from .io import write_json_atomic, write_text_atomic
from .losses import instance_loss, mine_hard_negatives, ranking_loss
from .models import param_groups
from .models.backbones import build_backbone
from .models.dualpath import DualPathModel
from .models.image import ImageHead
from .models.text import TextCNN
from .paths import cache_root, runs_root
from .progress import progress

RECIPES = {
    "paper": [("stage1", (0, 1, 1)), ("stage2", None)],
    "instance": [("stage1", (0, 1, 1))],
    "ranking": [("stage1", "rank"), ("stage2", "rank")],
    "joint": [("stage1", None), ("stage2", None)],
}
LOG_FIELDS = ["phase", "epoch", "lr", "loss", "loss_rank", "loss_img", "loss_txt", "acc_img",
              "acc_txt", "val_i2t_r1", "val_i2t_r5", "val_i2t_r10", "val_t2i_r1", "val_t2i_r5",
              "val_t2i_r10", "val_rsum", "epoch_s"]


# ----------------------------------------------------------------------------------- set-up
@dataclass
class Phase:
    name: str
    epochs: int
    lambdas: tuple[float, float, float]
    finetune: int        # backbone top blocks trained: 0 frozen, -1 all (pixels)
    lr: float
    lr_steps: list[int]


def phases_of(cfg: Config, recipe: str) -> list[Phase]:
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
    stage2 = (cfg.lambda_rank, cfg.lambda_img, cfg.lambda_txt)
    out = []
    for name, lam in RECIPES[recipe]:
        lam = stage2 if lam is None else (cfg.lambda_rank, 0.0, 0.0) if lam == "rank" else lam
        if name == "stage1":
            out.append(Phase(name, cfg.stage1_epochs, lam, 0, cfg.lr, list(cfg.stage1_lr_steps)))
        else:
            out.append(Phase(name, cfg.stage2_epochs, lam, cfg.finetune_blocks, cfg.stage2_lr,
                             list(cfg.stage2_lr_steps)))
    return [p for p in out if p.epochs > 0]


@dataclass
class Split:
    corpus: Corpus
    caption_ids: list[list[int]]           # vocabulary ids of every caption
    features: Features | None = None
    caps_of: list[list[int]] = field(default_factory=list)


@dataclass
class Prepared:
    cfg: Config
    vocab: Vocabulary
    embedding_init: object
    coverage: dict
    splits: dict[str, Split]
    backbone: torch.nn.Module


def _split_names(cfg: Config) -> dict[str, str]:
    pre = "mini_" if cfg.subset == "mini" else ""
    return {"train": pre + cfg.train_split, "val": pre + cfg.val_split, "test": pre + cfg.test_split}


def word_vectors(cfg: Config, vocab: Vocabulary):
    if cfg.word_vectors == "random":
        return None, {"source": "random"}
    words, vectors = (load_glove_package() if cfg.word_vectors == "glove50"
                      else load_word_vectors(cfg.word_vectors))
    matrix, coverage = embedding_matrix(vocab, words, vectors, seed=cfg.seed)
    return matrix, {"source": cfg.word_vectors, **coverage}


def cache_top_blocks(cfg: Config) -> int:
    """How many top blocks' input maps the cache holds (0: pooled features only).

    It depends on the config alone, not on the recipe or epoch counts, so every ablation arm of
    one configuration shares one cache.
    """
    return max(cfg.finetune_blocks, 0)


def prepare(cfg: Config, data_root=None, recipe: str = "paper", log=print,
            corpus: Corpus | None = None) -> Prepared:
    """Load the corpus and vocabulary, and extract (or read) the frozen-CNN features."""
    corpus = corpus if corpus is not None else load_corpus(cfg.dataset, data_root)
    names = _split_names(cfg)
    for role, name in names.items():
        if name not in corpus.splits:
            raise DataError(f"dataset {corpus.name!r} has no split {name!r} (for {role}); "
                            f"it has {sorted(corpus.splits)}")
    parts = {role: corpus.select(name) for role, name in names.items()}
    vocab = Vocabulary.build(parts["train"].captions, min_count=cfg.min_count, lowercase=cfg.lowercase)
    matrix, coverage = word_vectors(cfg, vocab)
    backbone = build_backbone(cfg.backbone, None if cfg.backbone_weights == "none" else cfg.backbone_weights)
    backbone.eval()
    top = cache_top_blocks(cfg)
    splits = {}
    for role, part in parts.items():
        ids = vocab.encode_all(part.captions)
        feats = None
        if top >= 0:
            views = cfg.train_views if role == "train" else 2
            spec = FeatureSpec(cfg.backbone, cfg.backbone_weights, cfg.image_size, top, views, cfg.seed)
            # the whole split keeps its own name in the cache key: select() renames it
            feats = load_or_extract(spec, backbone, corpus, names[role], cache_root(),
                                    show_progress=cfg.progress, log=log)
        caps_of = [[] for _ in range(part.n_images)]
        for c, i in enumerate(part.caption_image.tolist()):
            caps_of[i].append(c)
        splits[role] = Split(part, ids, feats, caps_of)
    return Prepared(cfg, vocab, matrix, coverage, splits, backbone)


def build_model(cfg: Config, vocab_size: int, n_classes: int, embedding_init=None,
                backbone: torch.nn.Module | None = None, embed_dim: int = 0) -> DualPathModel:
    """The network of ``cfg``; ``embed_dim`` 0 takes cfg.embed_dim, else the word vectors' size."""
    embed_dim = embed_dim or cfg.embed_dim or (embedding_init.shape[1] if embedding_init is not None else 300)
    if backbone is None:
        backbone = build_backbone(cfg.backbone, None)   # weights come from the checkpoint
    head = ImageHead(backbone.out_channels, cfg.feature_dim, cfg.feature_dim, cfg.dropout,
                     bn_momentum=cfg.bn_momentum)
    text = TextCNN(vocab_size, embed_dim, cfg.max_len, cfg.text_width, tuple(cfg.text_blocks),
                   cfg.feature_dim, cfg.dropout, embedding_init=embedding_init,
                   bn_momentum=cfg.bn_momentum)
    return DualPathModel(head, text, n_classes, shared_classifier=cfg.shared_classifier,
                         classifier_bias=cfg.classifier_bias, backbone=backbone)


# ------------------------------------------------------------------------------- optimiser
def make_optimizer(cfg: Config, model: DualPathModel, lr: float) -> torch.optim.Optimizer:
    # SPEC 3.1 multipliers: BN shift and classifier bias follow their weights' ratios.
    mult = {"embedding": cfg.lr_mult_embedding, "new_conv": cfg.lr_mult_new,
            "bn_weight": cfg.lr_mult_bn, "bn_bias": cfg.lr_mult_bn / 2,
            "classifier_weight": cfg.lr_mult_classifier, "classifier_bias": 2 * cfg.lr_mult_classifier,
            "backbone": cfg.lr_mult_backbone}
    decay = {"embedding", "bn_weight", "bn_bias", "classifier_bias"}
    groups = []
    for name, params in param_groups(model).items():
        params = [p for p in params if p.requires_grad]
        if params:
            groups.append({"params": params, "name": name, "mult": mult[name],
                           "lr": lr * mult[name],
                           "weight_decay": cfg.weight_decay * (0.0 if name in decay else 1.0)})
    # fused: one in-place kernel per tensor; the unfused update allocates fresh tensors the size of
    # W_share every step, and fresh memory (page faults) dominates a CPU step (bench_train_step.py)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True, fused=True)


def set_lr(opt: torch.optim.Optimizer, base: float, steps: list[int], epoch: int) -> float:
    lr = base * 0.1 ** sum(epoch >= s for s in steps)
    for g in opt.param_groups:
        g["lr"] = lr * g["mult"]
    return lr


# ---------------------------------------------------------------------------------- batches
class ImageInput:
    """Turns (image index, view) rows of a split into what the trainable image path eats."""

    def __init__(self, split: Split, finetune: int, backbone, cfg: Config):
        self.split, self.finetune, self.backbone, self.cfg = split, finetune, backbone, cfg
        if finetune == -1:
            from .data.images import train_transform
            self.transform = train_transform(cfg.image_size, backbone.mean, backbone.std)

    def rows(self, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        if self.finetune == -1:
            from .data.images import load_image
            paths = [self.split.corpus.image_path(int(i)) for i in index]
            return torch.stack([self.transform(load_image(p)) for p in paths])
        return self.split.features.image_input(view, index, use_maps=self.finetune > 0)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        if self.finetune == -1:
            return self.backbone(x)
        if self.finetune > 0:
            return self.backbone.forward_top(self.finetune, x)
        return x


class Step(torch.nn.Module):
    """One forward pass of both branches; a module so DDP can wrap it."""

    def __init__(self, model: DualPathModel, image_input: ImageInput):
        super().__init__()
        self.model, self.image_input = model, image_input

    def forward(self, x: torch.Tensor, ids: torch.Tensor):
        img = self.model.image_branch(self.image_input.pooled(x))
        txt = self.model.text_branch(ids)
        return img, txt, self.model.logits_image(img["drop"]), self.model.logits_text(txt["drop"])


def _draw_captions(split: Split, images: torch.Tensor, gen: torch.Generator) -> list[int]:
    u = torch.rand(len(images), generator=gen).tolist()
    return [split.caps_of[i][min(int(x * len(split.caps_of[i])), len(split.caps_of[i]) - 1)]
            for i, x in zip(images.tolist(), u)]


# ------------------------------------------------------------------------------ the trainer
class Trainer:
    def __init__(self, prep: Prepared, run_dir: Path, recipe: str = "paper", log=print):
        self.prep, self.cfg, self.recipe, self.log = prep, prep.cfg, recipe, log
        self.run_dir = Path(run_dir)
        self.rank, self.world = _dist_info()
        self.device = _device(self.cfg)
        train = prep.splits["train"].corpus
        self.model = build_model(self.cfg, len(prep.vocab), train.n_classes, prep.embedding_init,
                                 backbone=prep.backbone).to(self.device)
        self.phases = phases_of(self.cfg, recipe)
        self.rows: list[dict] = []

    # -- public -------------------------------------------------------------------------
    def run(self, until: str | None = None) -> dict:
        """Train every phase (or up to and including phase ``until``), then test.

        A finished run is not recomputed: its ``metrics.json`` is returned as stored.
        """
        names = [p.name for p in self.phases]
        if until is not None and until not in names:
            raise ConfigError(f"until={until!r} is not a phase of this recipe ({names})")
        stop = names.index(until) + 1 if until else len(self.phases)
        start_phase, start_epoch, state = self._resume()   # refuses a run of another config
        done = self.run_dir / "metrics.json"
        if done.exists():
            metrics = json.loads(done.read_text())
            if all(n in metrics for n in names[:stop]):
                return metrics
        self._write_config()
        for pi in range(start_phase, stop):
            self._run_phase(pi, start_epoch if pi == start_phase else 0,
                            state if pi == start_phase else None)
        metrics = self.test_all(self.phases[:stop])
        if self.rank == 0:
            write_json_atomic(done, metrics)
        return metrics

    # -- phases -------------------------------------------------------------------------
    def _run_phase(self, pi: int, start_epoch: int, state: dict | None) -> None:
        phase, cfg = self.phases[pi], self.cfg
        resuming = state is not None and "optimizer" in state and state["phase"] == pi
        if not resuming and pi > 0:
            # Stage II starts from the best Stage I model on validation.
            prev = ckpt_io.load(self.run_dir / f"best_{self.phases[pi - 1].name}.pt")
            self.model.load_state_dict(prev["model"])
        self.model.backbone.set_trainable(max(phase.finetune, 0) if phase.finetune != -1
                                          else self.model.backbone.n_top)
        if phase.finetune == -1:
            for p in self.model.backbone.parameters():
                p.requires_grad_(True)
        opt = make_optimizer(cfg, self.model, phase.lr)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + pi)
        best = -math.inf
        if state is not None:
            torch.set_rng_state(state["torch_rng"])
        if resuming:
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["gen"])
            best = state["best"]
        image_input = ImageInput(self.prep.splits["train"], phase.finetune, self.model.backbone, cfg)
        step = Step(self.model, image_input)
        if self.world > 1:
            step = torch.nn.parallel.DistributedDataParallel(step)
        for epoch in range(start_epoch, phase.epochs):
            t0 = time.perf_counter()
            lr = set_lr(opt, phase.lr, phase.lr_steps, epoch)
            stats = self._train_epoch(step, opt, gen, phase, image_input)
            val = self.validate(phase.finetune)
            row = {"phase": phase.name, "epoch": epoch + 1, "lr": lr, **stats,
                   **{f"val_{k}": v for k, v in val.items() if k in _VAL_KEYS},
                   "epoch_s": round(time.perf_counter() - t0, 2)}
            self.rows.append(row)
            self.log(_summary_line(row))
            improved = val["rsum"] > best
            best = max(best, val["rsum"])
            payload = self._payload(opt, gen, pi, epoch + 1, best)
            if self.rank == 0:
                if improved:
                    ckpt_io.save(self.run_dir / f"best_{phase.name}.pt", payload)
                ckpt_io.save(self.run_dir / "last.pt", payload)
                self._write_log()
            _barrier(self.world)

    def _train_epoch(self, step, opt, gen, phase: Phase, image_input: ImageInput) -> dict:
        cfg, split = self.cfg, self.prep.splits["train"]
        n = split.corpus.n_images
        order = torch.randperm(n, generator=gen)
        n_views = split.features.n_views if split.features is not None else 1
        views = torch.randint(n_views, (n,), generator=gen)
        lam_rank, lam_img, lam_txt = phase.lambdas
        paired = lam_rank > 0 and cfg.negatives == "paper"
        sums, count = {}, 0
        self.model.train()
        self.model.backbone.eval()   # BN statistics of the pretrained CNN stay fixed (SPEC 3.1 caveat)
        batches = range(0, n - cfg.batch_size + 1, cfg.batch_size) if n >= cfg.batch_size else [0]
        for start in progress(batches, desc=f"{phase.name}", enable=cfg.progress):
            batch = order[start:start + cfg.batch_size]
            caps = _draw_captions(split, batch, gen)
            labels_img = torch.as_tensor(split.corpus.image_label[batch.numpy()])
            labels_txt = labels_img.clone()
            x_all = image_input.rows(batch, views[batch])
            if paired:
                caps, labels_txt = self._mine(batch, x_all, image_input, caps, labels_txt, gen)
            ids = encode_ids([split.caption_ids[c] for c in caps], cfg.max_len, cfg.train_shift, gen)
            shard = slice(self.rank, None, self.world)
            if paired:   # keep (anchor, its negatives) pairs on one process
                half = len(batch) // 2
                pos = torch.arange(half)[self.rank::self.world]
                shard = torch.cat([pos, pos + half])
            x = x_all[shard].to(self.device)
            with _autocast(self.device, cfg.amp):
                img, txt, log_img, log_txt = step(x, ids[shard].to(self.device))
                l_img, l_txt = instance_loss(log_img.float(), log_txt.float(),
                                             labels_img[shard].to(self.device),
                                             labels_txt[shard].to(self.device))
                l_rank = (self._rank_loss(img["act"].float(), txt["act"].float(), paired,
                                          labels_img[shard]) if lam_rank
                          else torch.zeros((), device=self.device))
                loss = lam_rank * l_rank + lam_img * l_img + lam_txt * l_txt
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            with torch.no_grad():
                acc_img = (log_img.argmax(1).cpu() == labels_img[shard]).float().mean().item()
                acc_txt = (log_txt.argmax(1).cpu() == labels_txt[shard]).float().mean().item()
            for k, v in (("loss", loss.item()), ("loss_rank", l_rank.item()), ("loss_img", l_img.item()),
                         ("loss_txt", l_txt.item()), ("acc_img", acc_img), ("acc_txt", acc_txt)):
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} in {phase.name}; lower the "
                                         f"learning rate (lr / stage2_lr)")
        return {k: round(v / max(count, 1), 5) for k, v in sums.items()}

    def _rank_loss(self, img, txt, paired: bool, labels) -> torch.Tensor:
        cfg = self.cfg
        if paired:
            half = img.shape[0] // 2
            # pair i: anchors at i, negatives (random image, mined caption) at i + half
            return ranking_loss(img[:half], txt[:half], margin=cfg.margin, mode="paper",
                                neg_img=img[half:], neg_txt=txt[half:])
        return ranking_loss(img, txt, margin=cfg.margin, mode=cfg.negatives,
                            labels=labels.to(img.device))

    @torch.no_grad()
    def _mine(self, batch, x_all, image_input, caps, labels_txt, gen):
        """SPEC 3.3: replace the second half's captions by each anchor's hardest negative."""
        cfg, split = self.cfg, self.prep.splits["train"]
        half = len(batch) // 2
        n = split.corpus.n_images
        in_batch = set(batch.tolist())
        cand_img = torch.randint(n, (cfg.n_candidates * 2,), generator=gen).tolist()
        cand_img = [i for i in cand_img if i not in in_batch][:cfg.n_candidates]
        cand_caps = _draw_captions(split, torch.tensor(cand_img), gen)
        cand_ids = encode_ids([split.caption_ids[c] for c in cand_caps], cfg.max_len, cfg.train_shift, gen)
        was = self.model.training
        self.model.eval()
        pooled = image_input.pooled(x_all[:half].to(self.device))
        img = F.normalize(self.model.image_branch(pooled)["act"], dim=1)
        txt = F.normalize(self.model.text_branch(cand_ids.to(self.device))["act"], dim=1)
        self.model.train(was)
        self.model.backbone.eval()
        pick = mine_hard_negatives(img, txt).cpu()
        caps = list(caps[:half]) + [cand_caps[j] for j in pick.tolist()]
        labels = labels_txt.clone()
        labels[half:] = torch.as_tensor(split.corpus.image_label[[cand_img[j] for j in pick.tolist()]])
        return caps, labels

    # -- evaluation ---------------------------------------------------------------------
    def embed_split(self, role: str, finetune: int, shift: str) -> tuple[torch.Tensor, torch.Tensor]:
        split = self.prep.splits[role]
        model = self.model
        model.eval()
        txt = text_embeddings(model.text_cnn, split.caption_ids, self.cfg.max_len, shift)
        if finetune == -1:   # the whole backbone was trained: cached features are stale
            paths = [split.corpus.image_path(i) for i in range(split.corpus.n_images)]
            return image_embeddings_from_pixels(model.backbone, model.image_head, paths,
                                                self.cfg.image_size), txt
        use_maps = finetune > 0 and split.features.maps is not None
        views = [split.features.image_input(v, torch.arange(split.corpus.n_images), use_maps)
                 for v in range(min(2, split.features.n_views))]
        to_pooled = (lambda x: model.backbone.forward_top(finetune, x)) if use_maps else None
        img = image_embeddings_from_inputs(model.image_head, views, to_pooled)
        return img, txt

    def load_best(self, phase: str) -> dict:
        """Load the best checkpoint of ``phase`` into the model; returns the checkpoint."""
        best = ckpt_io.load(self.run_dir / f"best_{phase}.pt")
        ckpt_io.load_weights(self.model, best["model"], self.run_dir / f"best_{phase}.pt")
        return best

    def test_embeddings(self, phase: str) -> tuple[torch.Tensor, torch.Tensor, Corpus]:
        """Test-split image and caption embeddings of ``phase``'s best model, and the test corpus."""
        self.load_best(phase)
        finetune = next(p.finetune for p in self.phases if p.name == phase)
        img, txt = self.embed_split("test", finetune, self.cfg.test_shift)
        return img, txt, self.prep.splits["test"].corpus

    def validate(self, finetune: int) -> dict:
        img, txt = self.embed_split("val", finetune, self.cfg.val_shift)
        return evaluate_embeddings(img, txt, self.prep.splits["val"].corpus.caption_image, "1k")

    def test_all(self, phases: list[Phase] | None = None) -> dict:
        """Test metrics of each phase's best checkpoint; ``final`` is the last phase's."""
        phases = self.phases if phases is None else phases
        out = {}
        for phase in phases:
            best = ckpt_io.load(self.run_dir / f"best_{phase.name}.pt")
            self.model.load_state_dict(best["model"])
            img, txt = self.embed_split("test", phase.finetune, self.cfg.test_shift)
            split = self.prep.splits["test"].corpus
            out[phase.name] = {**evaluate_embeddings(img, txt, split.caption_image, self.cfg.protocol),
                               "best_epoch": best["epoch"]}
        out["final"] = out[phases[-1].name]
        return out

    # -- persistence --------------------------------------------------------------------
    def _payload(self, opt, gen, pi, epoch, best) -> dict:
        return {"config": self.cfg.to_dict(), "recipe": self.recipe, "vocab": self.prep.vocab.to_dict(),
                "n_classes": self.prep.splits["train"].corpus.n_classes,
                "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "optimizer": opt.state_dict(), "gen": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "phase": pi, "epoch": epoch, "best": best,
                "log": list(self.rows), "coverage": _plain(self.prep.coverage)}

    def _resume(self) -> tuple[int, int, dict | None]:
        """(phase, epoch, state) to start from: (0, 0, None) for a new run."""
        last = self.run_dir / "last.pt"
        if not last.exists():
            return 0, 0, None
        state = ckpt_io.load(last)
        if state["config"] != self.cfg.to_dict() or state.get("recipe") != self.recipe:
            raise ConfigError(f"{self.run_dir} holds a run with a different config or recipe; "
                              f"use another run directory or delete it")
        ckpt_io.load_weights(self.model, state["model"], last)
        self.rows = list(state["log"])
        pi, epoch = state["phase"], state["epoch"]
        if epoch >= self.phases[pi].epochs:   # that phase ended: go on with the next one
            pi, epoch = pi + 1, 0
        if pi < len(self.phases):
            self.log(f"resuming {self.run_dir.name} at {self.phases[pi].name} epoch {epoch + 1}")
        return pi, epoch, state

    def _write_config(self) -> None:
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "config.json",
                              json.dumps({"recipe": self.recipe, **self.cfg.to_dict()}, indent=2,
                                         sort_keys=True) + "\n")

    def _write_log(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        write_text_atomic(self.run_dir / "log.csv", buf.getvalue())


_VAL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")


def _summary_line(row: dict) -> str:
    return (f"{row['phase']} epoch {row['epoch']:3d}  lr {row['lr']:.3g}  loss {row['loss']:.3f} "
            f"(rank {row['loss_rank']:.3f} img {row['loss_img']:.3f} txt {row['loss_txt']:.3f})  "
            f"acc {row['acc_img']:.2f}/{row['acc_txt']:.2f}  val R@1 {row['val_i2t_r1']:.1f}/"
            f"{row['val_t2i_r1']:.1f} rsum {row['val_rsum']:.1f}  {row['epoch_s']:.0f}s")


def _plain(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else
                v if isinstance(v, (str, bool)) or v is None else str(v)) for k, v in d.items()}


# ------------------------------------------------------------------------- devices, DDP
def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _device(cfg: Config) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            rank = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device(f"cuda:{rank}")
        return torch.device("cpu")
    return torch.device(cfg.device)


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def seed_everything(seed: int, threads: int = 0) -> None:
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)


def run_name(cfg: Config, recipe: str) -> str:
    return f"{cfg.dataset}-{recipe}-{cfg.digest()}-seed{cfg.seed}"


def train(cfg: Config, run_dir: str | Path | None = None, *, recipe: str = "paper",
          data_root=None, until: str | None = None, log=print) -> dict:
    """Run a recipe (feature extraction, its phases, test); returns the test metrics.

    ``until='stage1'`` stops after Stage I; calling again without it continues the same run.
    """
    seed_everything(cfg.seed, cfg.num_threads)
    run_dir = Path(run_dir) if run_dir else runs_root() / run_name(cfg, recipe)
    stored = _finished_metrics(run_dir, cfg, recipe, until)
    if stored is not None:
        log(f"{run_dir.name}: finished earlier; metrics read from metrics.json")
        return stored
    rank, world = _dist_info()
    if rank > 0:
        _barrier(world)   # let rank 0 fill the feature cache; the others then read it
    prep = prepare(cfg, data_root, recipe, log=log)
    if rank == 0:
        _barrier(world)
    log(f"vocabulary: {len(prep.vocab)} words (train split); word vectors: {prep.coverage}")
    trainer = Trainer(prep, run_dir, recipe, log=log)
    t0 = time.perf_counter()
    metrics = trainer.run(until)
    if trainer.rank == 0:
        log(f"test ({cfg.protocol}) {json.dumps(metrics['final'])}  [{time.perf_counter() - t0:.0f} s]")
        log(f"run directory: {run_dir}")
    return metrics


def _finished_metrics(run_dir: Path, cfg: Config, recipe: str, until: str | None) -> dict | None:
    """The stored metrics of a finished run with this very config, else None."""
    done, conf = run_dir / "metrics.json", run_dir / "config.json"
    if not (done.exists() and conf.exists()):
        return None
    if json.loads(conf.read_text()) != {"recipe": recipe, **cfg.to_dict()}:
        return None
    names = [p.name for p in phases_of(cfg, recipe)]
    names = names[:names.index(until) + 1] if until in names else names
    metrics = json.loads(done.read_text())
    return metrics if all(n in metrics for n in names) else None


def open_run(run_dir: str | Path, data_root=None, log=print) -> Trainer:
    """A trainer over an existing run directory (its config, data and feature cache), for analysis."""
    run_dir = Path(run_dir)
    try:
        values = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError:
        raise DataError(f"{run_dir} holds no config.json: not a run directory") from None
    recipe = values.pop("recipe", "paper")
    cfg = Config.from_dict(values, source=str(run_dir / "config.json"))
    return Trainer(prepare(cfg, data_root, recipe, log=log), run_dir, recipe, log=log)


# ------------------------------------------------------------------------------------ CLI
def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath.train", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cpu", help="cpu | paper | smoke")
    ap.add_argument("--recipe", default="paper", choices=sorted(RECIPES))
    ap.add_argument("--config", help="JSON file of config keys (applied after the preset)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--run-dir", help="run directory (default runs/<dataset>-<recipe>-<hash>-seed<k>)")
    ap.add_argument("--data-root", help="folder holding flickr8k_224/ (default: see README)")
    args = ap.parse_args(argv)
    overrides = {}
    if args.config:
        overrides.update(Config.from_json(Path(args.config).read_text(), source=args.config).to_dict())
    overrides.update(_parse_set(args.set))
    cfg = preset(args.preset, **overrides)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        dist.init_process_group(backend)
    try:
        train(cfg, args.run_dir, recipe=args.recipe, data_root=args.data_root,
              log=print if _dist_info()[0] == 0 else (lambda *a, **k: None))
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
