"""The loop: phases x epochs -> steps, validation, checkpoints; exact resume; DDP.

A run killed at any point resumes from ``last.pt`` (weights, optimiser, the sampling generator
and torch's RNG) and ends with the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .. import checkpoint as ckpt_io
from ..config import default_protocol
from ..evaluate import evaluate_corpus, metric_keys
from ..hardware import cpu_has_bf16
from ..progress import progress
from .inputs import ImageSource, Pixels, embed_split, image_source
from .optim import lr_at, make_optimizer, set_lr
from .recipes import Phase
from .rundir import environment
from .step import EpochPlan, Forward, device_of, has_instance, train_step

VAL_KEYS = metric_keys()   # what each epoch logs of validation


@dataclass
class ActivePhase:
    """A phase being trained: what its epochs share."""

    index: int                   # of the phase in the recipe
    phase: Phase
    source: ImageSource
    forward: torch.nn.Module     # the model's training forward (DDP-wrapped on several processes)
    opt: torch.optim.Optimizer
    gen: torch.Generator         # the sampling generator: batches, views, shifts, negatives
    best: float                  # the best validation R-sum of the phase so far


class Trainer:
    """Trains a ``Run`` (``train.run``): its model on its data, into its run directory."""

    def __init__(self, run, log=print):
        self.data, self.dir, self.model, self.log = run.data, run.dir, run.model, log
        self.cfg, self.phases = run.cfg, run.phases
        self.rank, self.world = dist_info()
        self.device = device_of(self.cfg)
        self.rows: list[dict] = []

    def fit(self, stop: int | None = None) -> None:
        """Train the first ``stop`` phases (all by default), from where ``last.pt`` left off."""
        stop = len(self.phases) if stop is None else stop
        start_phase, start_epoch, state = self._resume()   # refuses a run of another config
        if self.rank == 0:
            self.dir.write_config()
            self.dir.record_environment(environment(self.cfg, self.data.cache_files()), self.log)
            if self.cfg.amp_cpu and self.device.type == "cpu" and not cpu_has_bf16():
                # amp_cpu is part of the run's identity, so it is kept; the reader learns the cost
                self.log("note: amp_cpu is on, but this CPU has neither AVX-512 BF16 nor AMX: bfloat16 is "
                         "emulated, so this run takes longer than it would in float32. --set amp_cpu=false "
                         "trains in float32 (another run identity, slightly different numbers).")
        if state is not None and start_epoch == 0 and 0 < start_phase < len(self.phases) and self.rank == 0:
            # resumed between two phases: last.pt is where the previous one ended
            self.dir.keep_phase_end(self.phases[start_phase - 1].name, state)
        for pi in range(start_phase, stop):
            active = self._start_phase(pi, state if pi == start_phase else None)
            for epoch in range(start_epoch if pi == start_phase else 0, active.phase.epochs):
                self._epoch(active, epoch)

    # -- phases -------------------------------------------------------------------------
    def _start_phase(self, pi: int, state: dict | None) -> ActivePhase:
        """Ready phase ``pi``: from the previous phase's best model (or, resuming inside the
        phase, from ``state``, the ``last.pt`` it resumes from), with its image source and optimiser."""
        phase, cfg, model = self.phases[pi], self.cfg, self.model
        resuming = state is not None and "optimizer" in state and state["phase"] == pi
        if not resuming and pi > 0:
            # Stage II starts from the best Stage I model on validation.
            prev = ckpt_io.load(self.dir.best(self.phases[pi - 1].name))
            model.load_state_dict(prev["model"])
        source = image_source(phase.finetune, cfg, model.backbone, self.device)
        source.configure(model.backbone)
        if cfg.compile and isinstance(source, Pixels):
            model.backbone.compile()   # in place: the state_dict keeps its keys
        instance = has_instance(phase)
        for c in model.classifiers():
            c.requires_grad_(instance)   # unused in a ranking-only phase: out of the optimiser and DDP
        opt = make_optimizer(cfg, model, phase.lr)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + pi)
        best = -math.inf
        if state is not None:
            torch.set_rng_state(state["torch_rng"])
        if resuming:
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["gen"])
            best = state["best"]
        forward = Forward(model, source, instance)
        if self.world > 1:
            forward = torch.nn.parallel.DistributedDataParallel(forward)
        return ActivePhase(pi, phase, source, forward, opt, gen, best)

    def _epoch(self, active: ActivePhase, epoch: int) -> None:
        """Train one epoch of the active phase, validate, log it and save the checkpoints."""
        pi, phase, source, opt, gen = active.index, active.phase, active.source, active.opt, active.gen
        cfg, model = self.cfg, self.model
        split = self.data.splits["train"]
        t0 = time.perf_counter()
        plan = EpochPlan(split, cfg, gen, key=(cfg.seed, pi, epoch))
        steps = len(plan)
        sums: dict[str, float] = {}
        model.train()
        model.backbone.eval()   # BN statistics of the pretrained CNN stay fixed (SPEC 3.1 caveat)
        batches = progress(source.batches(plan), desc=phase.name, enable=cfg.progress, total=steps)
        for k, batch in enumerate(batches):
            lr = set_lr(opt, lr_at(phase.lr, epoch * steps + k, phase.epochs * steps, steps,
                                   schedule=cfg.schedule, lr_steps=phase.lr_steps,
                                   warmup=round(cfg.warmup_epochs * steps)))
            stats = train_step(active.forward, model, source, split, batch, phase, cfg, gen, opt,
                               rank=self.rank, world=self.world, device=self.device,
                               grad_norms=True)
            for key, v in stats.items():
                sums[key] = sums.get(key, 0.0) + v
        train_s = time.perf_counter() - t0
        val = self.validate(source)
        row = {"phase": phase.name, "epoch": epoch + 1, "lr": float(f"{lr:.6g}"),
               **{key: round(v / max(steps, 1), 5) for key, v in sums.items()},
               # CUHK-PEDES validates text -> image only: its image -> text columns stay empty
               **{f"val_{key}": round(val.get(key, math.nan), 2) for key in VAL_KEYS},
               "samples_s": round(steps * cfg.batch_size / max(train_s, 1e-9), 1),
               "epoch_s": round(time.perf_counter() - t0, 2)}
        self.rows.append(row)
        self.log(summary_line(row))
        improved = val["rsum"] > active.best
        active.best = max(active.best, val["rsum"])
        self._save(active, epoch + 1, improved)

    def _save(self, active: ActivePhase, epochs: int, improved: bool) -> None:
        """After ``epochs`` epochs of the active phase: ``last.pt``, ``best_<phase>.pt`` when
        validation improved, ``end_<phase>.pt`` when the phase ends, and the log."""
        payload = self._payload(active.opt, active.gen, active.index, epochs, active.best)
        if self.rank == 0:
            if improved:
                self.dir.save(f"best_{active.phase.name}.pt", payload)
            self.dir.save("last.pt", payload)
            if epochs == active.phase.epochs and active.index + 1 < len(self.phases):
                self.dir.keep_phase_end(active.phase.name, payload)
            self.dir.write_log(self.rows)
        barrier(self.world)

    def validate(self, source) -> dict:
        val = self.data.splits["val"]
        img, txt = embed_split(self.model, source, val, self.cfg.max_len, self.cfg.val_shift)
        # validation picks the best epoch: one image per query on Flickr / COCO, identities on CUHK
        return evaluate_corpus(img, txt, val.corpus, default_protocol(self.cfg.dataset))

    # -- persistence --------------------------------------------------------------------
    def _payload(self, opt, gen, pi, epoch, best) -> dict:
        return {"config": self.cfg.to_dict(), "vocab": self.data.vocab.to_dict(),
                "n_classes": self.data.splits["train"].corpus.n_classes,
                "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "optimizer": opt.state_dict(), "gen": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "phase": pi, "epoch": epoch, "best": best,
                "log": list(self.rows), "coverage": _json_safe(self.data.coverage)}

    def _resume(self) -> tuple[int, int, dict | None]:
        """(phase, epoch, state) to start from: (0, 0, None) for a new run."""
        state = self.dir.resume_state()
        if state is None:
            return 0, 0, None
        ckpt_io.load_weights(self.model, state["model"], self.dir.file("last.pt"))
        self.rows = list(state["log"])
        pi, epoch = state["phase"], state["epoch"]
        if epoch >= self.phases[pi].epochs:   # that phase ended: go on with the next one
            pi, epoch = pi + 1, 0
        if pi < len(self.phases):
            self.log(f"resuming {self.dir.path.name} at {self.phases[pi].name} epoch {epoch + 1}")
        return pi, epoch, state


def summary_line(row: dict) -> str:
    return (f"{row['phase']} epoch {row['epoch']:3d}  lr {row['lr']:.3g}  loss {row['loss']:.3f} "
            f"(rank {row['loss_rank']:.3f} img {row['loss_img']:.3f} txt {row['loss_txt']:.3f})  "
            f"acc {row['acc_img']:.2f}/{row['acc_txt']:.2f}  val R@1 {row['val_i2t_r1']:.1f}/"
            f"{row['val_t2i_r1']:.1f} rsum {row['val_rsum']:.1f}  {row['samples_s']:.0f} samples/s  "
            f"{row['epoch_s']:.0f}s")


def _json_safe(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else
                v if isinstance(v, (str, bool)) or v is None else str(v)) for k, v in d.items()}


# ---------------------------------------------------------------------------------- DDP
def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()

