"""One training step: batches, hard-negative mining (SPEC 3.3), DDP sharding, forward, losses.

``train_step`` is a plain function of (model, source, split, batch, ...) so a test can call it on
a tiny batch; the trainer calls it once per batch of an ``EpochPlan``.

Batches. ``epoch_unit='images'`` (the paper's getBatch): an epoch is a permutation of the train
images, each with one random caption and one random cached view. ``'captions'``: every train
caption once, shuffled, with its image and a random view of it. The last partial batch is dropped
(a split smaller than one batch trains on one batch of all of it).

Negatives. With ``negatives='paper'`` the second half of each batch is replaced: row ``half + i``
holds a random image (the batch's own, of another class than anchor ``i``) and the hardest of
``n_candidates`` captions of images outside the batch for anchor ``i``; it carries the labels of
its own images. ``'random'`` pairs the anchor with a random caption of another class instead,
unmined (CUHK-PEDES). With ``paired_rows='extra'`` the batch keeps all its rows as positive pairs
and the negative rows are appended (row ``B + i`` starts as row ``(i + B/2) mod B``), so a paired
mode sees as many positive pairs per epoch as an in-batch one. The in-batch modes
('hardest', 'sum') mask pairs of the same image label, so another caption of the anchor's image
is never its negative.

DDP. Each rank takes every ``world``-th row; with mined pairs it takes every ``world``-th pair
and both its halves, so an anchor and its negatives stay on one rank. The per-pair losses then
average to the one-rank loss (BatchNorm statistics stay per rank, as in any DDP run without
SyncBatchNorm; in-batch modes draw their negatives from the rank's own rows).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import PAIRED_NEGATIVES, Config
from ..errors import DataError
from ..losses import instance_loss, mine_hard_negatives, ranking_loss
from ..models.mode import eval_mode
from .inputs import ImageSource, Split
from .recipes import Phase

REDRAW_SALT = 0x5BD1E995   # sets a redrawn negative image's crop seed apart from its row's


# ------------------------------------------------------------------------------------ batches
@dataclass
class Batch:
    index: torch.Tensor                 # [B] image of each row
    view: torch.Tensor                  # [B] cached view of each row
    caption: torch.Tensor | None        # [B] caption of each row; None: draw one per image
    label: torch.Tensor                 # [B] class of each row's image
    seeds: torch.Tensor | None = None   # [B] seed of each row's crop (decoded images); None: cached
    images: torch.Tensor | None = None  # [B, ...] the rows' images, when a loader read them ahead

    def __len__(self) -> int:
        return len(self.index)


class EpochPlan:
    """The batches of one epoch, drawn from ``gen`` once at the start of the epoch.

    ``key`` (run seed, phase, epoch) gives every row a crop seed of its own, derived from the key
    and the row alone (not from ``gen``, so the cached path draws what it always drew).
    """

    def __init__(self, split: Split, cfg: Config, gen: torch.Generator, key: tuple[int, ...] | None = None):
        self.split, self.batch_size = split, cfg.batch_size
        if cfg.epoch_unit == "captions":
            self.caption = torch.randperm(len(split.caption_image), generator=gen)
            self.index = split.caption_image[self.caption]
            self.view = torch.randint(split.n_views, (len(self.caption),), generator=gen)
        else:
            # the paper's order of draws: the permutation, every image's view, then per batch the
            # caption (inside ``batch``), so a seed gives the same run as before the refactoring
            self.caption = None
            order = torch.randperm(split.n_images, generator=gen)
            views = torch.randint(split.n_views, (split.n_images,), generator=gen)
            self.index, self.view = order, views[order]
        self.label = split.image_label[self.index]
        n = len(self.index)
        self.seeds = None if key is None else row_seeds(key, n)
        self.starts = list(range(0, n - self.batch_size + 1, self.batch_size)) if n >= self.batch_size else [0]

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, k: int) -> Batch:
        rows = slice(self.starts[k], self.starts[k] + self.batch_size)
        return Batch(self.index[rows], self.view[rows],
                     None if self.caption is None else self.caption[rows], self.label[rows],
                     None if self.seeds is None else self.seeds[rows])


def row_seeds(key: tuple[int, ...], n: int) -> torch.Tensor:
    """``n`` crop seeds (int64 >= 0) determined by ``key`` alone."""
    words = np.random.SeedSequence([int(k) for k in key]).generate_state(2 * n, dtype=np.uint32)
    return torch.from_numpy((words[0::2].astype(np.int64) << 31) ^ words[1::2].astype(np.int64))


# ------------------------------------------------------------------------------ the forward
class Forward(torch.nn.Module):
    """Both branches from (source rows, word ids): one module, so DDP can wrap it."""

    def __init__(self, model, source: ImageSource, instance: bool = True):
        super().__init__()
        self.model, self.source, self.instance = model, source, instance

    def forward(self, x: torch.Tensor, ids: torch.Tensor):
        m = self.model
        img = m.image_branch(self.source.pool(m.backbone, x))
        txt = m.text_branch(ids)
        if not self.instance:   # a ranking-only phase: the N-way classifier would double the step's cost
            return img, txt, None, None
        return (img, txt, *m.logits_both(img["drop"], txt["drop"]))


def has_instance(phase: Phase) -> bool:
    """Whether the phase trains either instance loss (and so needs the classifier)."""
    return phase.lambdas[1] > 0 or phase.lambdas[2] > 0


def is_paired(phase: Phase, cfg: Config) -> bool:
    """Whether the phase pairs each anchor with its own negative pair (SPEC 3.3), mined or random."""
    return phase.lambdas[0] > 0 and phase.negatives in PAIRED_NEGATIVES


def with_negative_rows(batch: Batch, x: torch.Tensor, captions: torch.Tensor) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """``paired_rows='extra'``: the batch twice, the copy rolled by half, so row ``B + i`` starts as
    another anchor's image (``pair_negatives`` then makes rows ``B..2B`` the negatives)."""
    n = len(batch)
    roll = (torch.arange(n) + n // 2) % n

    def twice(t):
        return None if t is None else torch.cat([t, t[roll]])

    doubled = Batch(twice(batch.index), twice(batch.view), twice(batch.caption), twice(batch.label),
                    twice(batch.seeds), twice(batch.images))
    return doubled, twice(x), twice(captions)


def shard_rows(n: int, rank: int, world: int, paired: bool) -> torch.Tensor:
    """Rows of an ``n``-row batch this rank trains on; with ``paired`` whole (anchor, negatives) pairs."""
    if not paired:
        return torch.arange(n)[rank::world]
    half = n // 2
    pos = torch.arange(half)[rank::world]
    return torch.cat([pos, pos + half])


def other_class_images(split: Split, classes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random train image of a class other than ``classes[i]`` for each i (redrawn until it is)."""
    pick = torch.randint(split.n_images, (len(classes),), generator=gen)
    for _ in range(100):
        clash = split.image_label[pick] == classes
        if not clash.any():
            return pick
        pick[clash] = torch.randint(split.n_images, (int(clash.sum()),), generator=gen)
    raise DataError("cannot draw an image of another class: one class holds almost every train image")


@torch.no_grad()
def pair_negatives(model, source: ImageSource, split: Split, batch: Batch, x: torch.Tensor,
                   captions: torch.Tensor, labels: torch.Tensor, cfg: Config, gen: torch.Generator,
                   device, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SPEC 3.3: rows ``half + i`` become anchor ``i``'s negative pair (I_n, T_n).

    I_n is the batch's own image in that row, redrawn when it shares the anchor's class (two
    images of one CUHK identity, or one image twice in a caption epoch). T_n with ``mode='paper'``
    is the hardest of ``n_candidates`` captions of random images outside the batch (and outside
    the anchor's class), scored in test mode; with ``mode='random'`` a random caption of an image
    of another class, unscored (the CUHK-PEDES recipe). Mined rows carry their own images' labels.
    Returns (x, captions, image labels, caption labels).
    """
    half = len(batch) // 2
    anchors = labels[:half]
    labels_img = labels.clone()
    clash = labels[half:2 * half] == anchors
    if clash.any():
        rows = half + clash.nonzero().squeeze(1)
        index = other_class_images(split, anchors[clash], gen)
        x = x.clone()
        # a seed apart from the replaced row's own, so the redrawn image gets a crop of its own
        seeds = None if batch.seeds is None else batch.seeds[rows] ^ REDRAW_SALT
        x[rows] = source.batch(split, index, batch.view[rows], seeds)
        labels_img[rows] = split.image_label[index]
    if mode == "random":
        negative = other_class_images(split, anchors, gen)
        return x, torch.cat([captions[:half], split.draw_captions(negative, gen)]), labels_img, \
            torch.cat([anchors, split.image_label[negative]])
    cand = torch.randint(split.n_images, (cfg.n_candidates * 2,), generator=gen)
    cand = cand[~torch.isin(cand, batch.index)][:cfg.n_candidates]
    cand_caps = split.draw_captions(cand, gen)
    cand_ids = split.encode(cand_caps, cfg.train_shift, gen)
    with eval_mode(model):   # SPEC 3.3: candidates are scored in test mode
        img = F.normalize(model.image_branch(source.pool(model.backbone, x[:half].to(device)))["act"], dim=1)
        txt = F.normalize(model.text_branch(cand_ids.to(device))["act"], dim=1)
    pick = mine_hard_negatives(img, txt, anchors.to(device), split.image_label[cand].to(device)).cpu()
    return x, torch.cat([captions[:half], cand_caps[pick]]), labels_img, \
        torch.cat([anchors, split.image_label[cand[pick]]])


# ---------------------------------------------------------------------------------- the step
def train_step(forward, model, source: ImageSource, split: Split, batch: Batch, phase: Phase,
               cfg: Config, gen: torch.Generator, opt: torch.optim.Optimizer | None = None, *,
               rank: int = 0, world: int = 1, device=None, grad_norms: bool = False) -> dict:
    """One step on ``batch``: returns its stats (losses, accuracies, grad norms when asked).

    ``forward`` is ``Forward(model, source)`` or its DDP wrapper. Gradients are zeroed, computed,
    clipped (``cfg.grad_clip``) and applied with ``opt``; with ``opt=None`` they are left in
    ``.grad`` (tests). ``gen`` draws the captions, mining candidates and position shifts.
    """
    device = device if device is not None else torch.device("cpu")
    paired = is_paired(phase, cfg)
    x, ids, labels_img, labels_txt = step_rows(model, source, split, batch, phase, cfg, gen, device,
                                               paired, rank, world)
    loss, (l_rank, l_img, l_txt), log_img, log_txt = step_losses(forward, x, ids, labels_img, labels_txt,
                                                                 phase, cfg, device, paired)
    stats = apply_gradients(model, loss, opt, cfg, grad_norms)
    with torch.no_grad():
        acc_img = acc_txt = float("nan")   # not measured in a ranking-only phase
        if log_img is not None:
            acc_img = (log_img.argmax(1).cpu() == labels_img).float().mean().item()
            acc_txt = (log_txt.argmax(1).cpu() == labels_txt).float().mean().item()
    value = loss.item()
    if not math.isfinite(value):
        raise FloatingPointError(f"loss became {value} in {phase.name}; lower the learning rate "
                                 f"(lr / stage2_lr) or set grad_clip")
    stats = {"loss": value, "loss_rank": l_rank.item(), "loss_img": l_img.item(),
             "loss_txt": l_txt.item(), "acc_img": acc_img, "acc_txt": acc_txt, **stats}
    return stats


def step_rows(model, source: ImageSource, split: Split, batch: Batch, phase: Phase, cfg: Config,
              gen: torch.Generator, device, paired: bool, rank: int, world: int,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What this rank trains on: (images, word ids, image labels, caption labels) of its rows.

    The batch's captions (drawn when it has none) and images, the negative rows of a paired phase
    (appended with ``paired_rows='extra'``, then mined or drawn), the position shifts, the shard.
    """
    captions = batch.caption if batch.caption is not None else split.draw_captions(batch.index, gen)
    labels_img = batch.label
    labels_txt = labels_img
    x_all = batch.images if batch.images is not None else \
        source.batch(split, batch.index, batch.view, batch.seeds)
    if paired and cfg.paired_rows == "extra":
        batch, x_all, captions = with_negative_rows(batch, x_all, captions)
        labels_img = labels_txt = batch.label
    if paired:
        x_all, captions, labels_img, labels_txt = pair_negatives(
            model, source, split, batch, x_all, captions, labels_img, cfg, gen, device, phase.negatives)
    ids = split.encode(captions, cfg.train_shift, gen)
    shard = shard_rows(len(batch), rank, world, paired)
    return x_all[shard], ids[shard], labels_img[shard], labels_txt[shard]


def step_losses(forward, x: torch.Tensor, ids: torch.Tensor, labels_img: torch.Tensor,
                labels_txt: torch.Tensor, phase: Phase, cfg: Config, device, paired: bool):
    """The forward pass and the phase's weighted loss, under the step's autocast.

    Returns (loss, (ranking, image instance, text instance) terms, image logits, text logits); the
    logits are None in a ranking-only phase, whose instance terms are then zero.
    """
    lam_rank, lam_img, lam_txt = phase.lambdas
    with _autocast(device, cfg):
        img, txt, log_img, log_txt = forward(x.to(device, non_blocking=True), ids.to(device))
        if log_img is None:
            l_img = l_txt = torch.zeros((), device=device)
        else:
            l_img, l_txt = instance_loss(log_img.float(), log_txt.float(), labels_img.to(device),
                                         labels_txt.to(device))
        l_rank = (rank_loss(img[cfg.rank_features].float(), txt[cfg.rank_features].float(),
                            labels_img.to(device), paired, cfg,
                            phase.negatives)
                  if lam_rank else torch.zeros((), device=device))
        loss = lam_rank * l_rank + lam_img * l_img + lam_txt * l_txt
    return loss, (l_rank, l_img, l_txt), log_img, log_txt


def apply_gradients(model, loss: torch.Tensor, opt: torch.optim.Optimizer | None, cfg: Config,
                    grad_norms: bool) -> dict[str, float]:
    """Zero the gradients, backpropagate ``loss``, clip (``cfg.grad_clip``) and step ``opt`` (none:
    the gradients stay in ``.grad``). Returns the groups' gradient norms when ``grad_norms``, before
    clipping, else nothing."""
    params = [p for g in (opt.param_groups if opt is not None else []) for p in g["params"]]
    if opt is not None:
        opt.zero_grad(set_to_none=False)
    else:
        model.zero_grad(set_to_none=False)
    loss.backward()
    stats = {}
    if grad_norms:
        stats.update(group_grad_norms(model))
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params or [p for p in model.parameters() if p.requires_grad],
                                       cfg.grad_clip)
    if opt is not None:
        opt.step()
    return stats


def rank_loss(img: torch.Tensor, txt: torch.Tensor, labels: torch.Tensor, paired: bool,
              cfg: Config, negatives: str) -> torch.Tensor:
    """The ranking term: mined pairs (rows ``half + i`` are anchor ``i``'s negatives) or in-batch."""
    if paired:
        half = img.shape[0] // 2
        return ranking_loss(img[:half], txt[:half], margin=cfg.margin, mode="paper",
                            neg_img=img[half:], neg_txt=txt[half:],
                            labels=labels[:half], neg_labels=labels[half:])
    return ranking_loss(img, txt, margin=cfg.margin, mode=negatives, labels=labels)


def group_grad_norms(model) -> dict[str, float]:
    """L2 norm of the gradient of the image head, the text CNN and the classifier(s)."""
    groups = {"image": model.image_head.parameters(), "text": model.text_cnn.parameters(),
              "classifier": (p for c in model.classifiers() for p in c.parameters())}
    out = {}
    for name, params in groups.items():
        grads = [p.grad for p in params if p.grad is not None]
        out[f"grad_{name}"] = (torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).item()
                               if grads else 0.0)
    return out


def device_of(cfg: Config) -> torch.device:
    """``cfg.device``; 'auto' is this process's GPU (LOCAL_RANK under torchrun) when there is one."""
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        return torch.device("cpu")
    return torch.device(cfg.device)


def _autocast(device: torch.device, cfg: Config):
    """bf16 autocast of the step: on CUDA with ``amp`` where the GPU multiplies bf16 in hardware,
    on the CPU with ``amp_cpu``."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and gpu_has_bf16(device))
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.amp_cpu)


def gpu_has_bf16(device: torch.device) -> bool:
    """bf16 tensor cores came with compute capability 8.0 (Ampere). An older GPU, such as the T4 of
    a free Colab runtime, only emulates bf16, slower than float32, so ``amp`` trains float32 there
    (``torch.cuda.is_bf16_supported()`` says True on a T4: it counts the emulation)."""
    return torch.cuda.get_device_capability(device)[0] >= 8
