"""The two training stages, with checkpoints, exact resume, and DistributedDataParallel.

    run = train(preset("cpu"))                   # or: python -m dualpath.train --preset cpu
    run.metrics["final"]                         # the test metrics of the last phase's best model
    run = open_run("runs/<run>")                 # a run trained before, for analysis
    img, txt, corpus = run.test_embeddings("stage2")

Modules: ``recipes`` (the phases of each recipe), ``inputs`` (data, image sources), ``step``
(one training step), ``optim`` (optimiser, LR schedule), ``trainer`` (the loop), ``rundir``
(the run's files), ``run`` (a run put together: ``train``, ``open_run``, the ``Run`` handle,
``run_dir_for``), ``share`` (runs that share their first phase).
"""
from __future__ import annotations

from .inputs import TrainingData, prepare, vocabulary
from .recipes import RECIPES, Phase, phases_of
from .run import Run, new_model, open_run, run_dir_for, train
from .rundir import RunDir, read_run_config
from .trainer import Trainer, dist_info

__all__ = ["train", "open_run", "run_dir_for", "new_model", "RECIPES", "Phase", "phases_of", "vocabulary",
           "prepare", "TrainingData", "Run", "RunDir", "read_run_config", "Trainer", "dist_info"]
