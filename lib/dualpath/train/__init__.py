"""The two training stages, with checkpoints, exact resume, and DistributedDataParallel.

    metrics = train(preset("cpu"))              # or: python -m dualpath.train --preset cpu
    run = open_run("runs/<run>")                 # a trained run, for analysis
    img, txt, corpus = run.test_embeddings("stage2")

Modules: ``recipes`` (the phases of each recipe), ``inputs`` (data, image sources), ``step``
(one training step), ``optim`` (optimiser, LR schedule), ``trainer`` (the loop), ``rundir``
(the run directory and the ``Run`` handle).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from ..evaluate import round_metrics
from ..paths import runs_root
from .inputs import TrainingData, prepare, vocabulary
from .recipes import RECIPES, Phase, phases_of
from .rundir import Run, RunDir, new_model, open_run
from .trainer import Trainer, barrier, dist_info

__all__ = ["train", "open_run", "RECIPES", "Phase", "phases_of", "vocabulary", "prepare",
           "TrainingData", "Run", "RunDir", "Trainer", "run_name"]


def seed_everything(seed: int, threads: int = 0) -> None:
    import torch

    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)


def run_name(cfg: Config, recipe: str) -> str:
    return f"{cfg.dataset}-{recipe}-{cfg.digest()}-seed{cfg.seed}"


def train(cfg: Config, run_dir: str | Path | None = None, *, recipe: str = "paper",
          data_root=None, until: str | None = None, log=print) -> dict:
    """Run a recipe (feature extraction, its phases, test); returns the test metrics.

    ``until='stage1'`` stops after Stage I; calling again without it continues the same run.
    A finished run of the same config is not recomputed: its ``metrics.json`` is returned.
    """
    seed_everything(cfg.seed, cfg.num_threads)
    names = [p.name for p in phases_of(cfg, recipe)]
    if until is not None and until not in names:
        raise ConfigError(f"until={until!r} is not a phase of this recipe ({names})")
    names = names[:names.index(until) + 1] if until else names
    rundir = RunDir(Path(run_dir) if run_dir else runs_root() / run_name(cfg, recipe), cfg, recipe)
    stored = rundir.finished(names)
    if stored is not None:
        log(f"{rundir.path.name}: finished earlier; metrics read from metrics.json")
        return stored
    rank, world = dist_info()
    if rank > 0:
        barrier(world)   # let rank 0 fill the feature cache; the others then read it
    data = prepare(cfg, data_root, log=log)
    if rank == 0:
        barrier(world)
    log(f"vocabulary: {len(data.vocab)} words (train split); word vectors: {data.coverage}")
    model = new_model(data, cfg)
    t0 = time.perf_counter()
    Trainer(data, rundir, model, log=log).fit(len(names))
    metrics = round_metrics(Run(rundir, data, model, log=log).test_metrics(names))
    if rank == 0:
        rundir.write_metrics(metrics)
        log(f"test ({cfg.protocol}) {json.dumps(metrics['final'])}  [{time.perf_counter() - t0:.0f} s]")
        log(f"run directory: {rundir.path}")
    return metrics
