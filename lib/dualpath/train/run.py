"""A run put together: a config trained into its run directory (``train``), or a run trained
before opened for analysis (``open_run``); both give the ``Run`` handle.

A ``Run`` holds the run's files (``RunDir``), its config and phases, and its data and model. The
data and model are prepared on first use, so a finished run read back for its metrics loads
nothing else; the test split is embedded once per phase, for its metrics, its ranks and the
callers after them.
"""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import torch

from .. import checkpoint as ckpt_io
from ..config import LATER_KEYS, Config, preset as named_preset
from ..data.corpus import Corpus
from ..errors import ConfigError
from ..evaluate import evaluate_corpus, retrieval_ranks, round_metrics
from ..models import build_model
from ..paths import runs_root
from .inputs import TrainingData, embed_split, image_source, prepare
from .recipes import Phase, phases_of
from .rundir import RunDir, read_run_config
from .step import device_of
from .trainer import Trainer, barrier, dist_info


class Run:
    """A run directory with its config, phases, data and model: what training fills and what
    analysis code reads from a trained run."""

    def __init__(self, rundir: RunDir, data_root=None, log=print, metrics: dict | None = None):
        self.dir, self.cfg, self.data_root, self.log = rundir, rundir.cfg, data_root, log
        self.phases: list[Phase] = phases_of(self.cfg)
        self.metrics = metrics   # test metrics of each phase tested (metrics.json); None before any
        self._test: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}   # phase -> its test embeddings

    @functools.cached_property
    def data(self) -> TrainingData:
        """The corpus, vocabulary and frozen-CNN features (read from the cache, or extracted into it)."""
        return prepare(self.cfg, self.data_root, log=self.log)

    @functools.cached_property
    def model(self):
        return new_model(self.data, self.cfg)

    @property
    def path(self) -> Path:
        return self.dir.path

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise ConfigError(f"{name!r} is not a phase of recipe {self.cfg.recipe!r} "
                          f"({[p.name for p in self.phases]})")

    def corpus(self, role: str = "test") -> Corpus:
        """The corpus of split ``role`` ('train', 'val' or 'test')."""
        return self.data.splits[role].corpus

    @property
    def test_corpus(self) -> Corpus:
        return self.corpus("test")

    def load_best(self, phase: str) -> dict:
        """Load the best checkpoint of ``phase`` into the model; returns the checkpoint."""
        path = self.dir.best(phase)
        best = ckpt_io.load(path)
        ckpt_io.load_weights(self.model, best["model"], path)
        return best

    def embed(self, role: str, phase: str, shift: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and caption embeddings of split ``role`` with the weights now loaded, embedded
        as ``phase`` trained them (its image source); ``shift`` defaults to the config's test policy."""
        source = image_source(self.phase(phase).finetune, self.cfg, self.model.backbone)
        return embed_split(self.model, source, self.data.splits[role], self.cfg.max_len,
                           shift or self.cfg.test_shift)

    def test_embeddings(self, phase: str) -> tuple[torch.Tensor, torch.Tensor, Corpus]:
        """Test-split image and caption embeddings of ``phase``'s best model (the config's test
        policy), and the test corpus. The first call for a phase loads that checkpoint into the
        model; later calls return the same embeddings."""
        if phase not in self._test:
            self._embed_test(phase)
        return (*self._test[phase], self.test_corpus)

    def test_metrics(self, phases: list[str] | None = None) -> dict:
        """Test metrics of each phase's best checkpoint; ``final`` is the last phase's."""
        names = [p.name for p in self.phases] if phases is None else phases
        out = {}
        for name in names:
            best = self._embed_test(name)
            img, txt = self._test[name]
            out[name] = {**evaluate_corpus(img, txt, self.test_corpus, self.cfg.protocol),
                         "best_epoch": best["epoch"]}
        out["final"] = out[names[-1]]
        return out

    def test_ranks(self, phase: str) -> dict:
        """The rank of each test query's first match (``evaluate.retrieval_ranks``, the 1k
        protocol's) under ``phase``'s best model, from its test embeddings."""
        img, txt, test = self.test_embeddings(phase)
        return retrieval_ranks(img, txt, test.caption_image)

    def _embed_test(self, phase: str) -> dict:
        """Load ``phase``'s best checkpoint and keep its test embeddings; returns the checkpoint."""
        best = self.load_best(phase)
        self._test[phase] = self.embed("test", phase)
        return best


def new_model(data: TrainingData, cfg: Config):
    train_corpus = data.splits["train"].corpus
    model = build_model(cfg, len(data.vocab), train_corpus.n_classes, data.embedding_init,
                        backbone=data.backbone).to(device_of(cfg))
    if cfg.channels_last:
        model.backbone.to(memory_format=torch.channels_last)
    return model


#: Keys a readable run name does not hash: it names them (dataset, backbone, seed, epochs), the
#: dataset chooses it (protocol), or it changes how a run executes, not what it computes (device).
NAMED_KEYS = ("dataset", "backbone", "seed", "stage1_epochs", "stage2_epochs", "protocol", "device")


def run_dir_for(cfg: Config, root: str | Path | None = None, preset: str | None = None) -> Path:
    """The run directory of ``cfg`` under ``root`` (default ``runs_root()``) when none is given.

    With ``preset``, the name of the preset ``cfg`` was made from (as ``resolve_preset`` gives
    it): the readable ``[<dataset>-]<preset>-<backbone>-seed<k>[-epochs<a>+<b>][-<hash>]``, with
    the dataset when it is not Flickr8k, the epochs when they are not the preset's, and a hash of
    the other keys that differ from the preset's (the book's pages, a sweep arm's notebook).
    Without it, ``<dataset>-<recipe>-<hash of the config>-seed<k>`` (``python -m dualpath.train``,
    whose config may come from any JSON file). Runs on disk carry both names (the README and the
    Makefile name them), so both stay: a run started again finds its folder and resumes there.
    """
    root = runs_root() if root is None else Path(root)
    if preset is None:
        # the name says the recipe; the hash leaves it out, as it did before it was a config key
        return root / f"{cfg.dataset}-{cfg.recipe}-{cfg.replace(recipe=LATER_KEYS['recipe']).digest()}-seed{cfg.seed}"
    base = named_preset(preset)
    stem = f"{preset}-{cfg.backbone}-seed{cfg.seed}"
    if cfg.dataset != "flickr8k":
        stem = f"{cfg.dataset}-{stem}"
    if (cfg.stage1_epochs, cfg.stage2_epochs) != (base.stage1_epochs, base.stage2_epochs):
        stem += f"-epochs{cfg.stage1_epochs}+{cfg.stage2_epochs}"
    mine, theirs = cfg.to_dict(), base.to_dict()
    changed = sorted(k for k in mine if k not in NAMED_KEYS and mine[k] != theirs[k])
    if changed:
        stem += f"-{cfg.digest(changed)}"   # the changed keys' values, hashed
    return root / stem


def seed_everything(seed: int, threads: int = 0) -> None:
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)


def train(cfg: Config, run_dir: str | Path | None = None, *, data_root=None, until: str | None = None,
          log=print) -> Run:
    """Run the config's recipe (feature extraction, its phases, test) in ``run_dir`` (default:
    :func:`run_dir_for`); returns the ``Run``, with its test metrics in ``run.metrics``.

    ``until='stage1'`` stops after Stage I; calling again without it continues the same run.
    A finished run of the same config is not recomputed: its ``metrics.json`` is read.
    """
    seed_everything(cfg.seed, cfg.num_threads)
    run = Run(RunDir(Path(run_dir) if run_dir else run_dir_for(cfg), cfg), data_root, log=log)
    names = [p.name for p in run.phases]
    if until is not None and until not in names:
        raise ConfigError(f"until={until!r} is not a phase of this recipe ({names})")
    names = names[:names.index(until) + 1] if until else names
    run.metrics = run.dir.finished(names)
    if run.metrics is not None:
        log(f"{run.path.name}: finished earlier; metrics read from metrics.json")
        return run
    rank, world = dist_info()
    if rank > 0:
        barrier(world)   # let rank 0 fill the feature cache; the others then read it
    data = run.data
    if rank == 0:
        barrier(world)
    log(f"vocabulary: {len(data.vocab)} words (train split); word vectors: {data.coverage}")
    trainer = Trainer(run, log=log)   # builds the model
    t0 = time.perf_counter()
    trainer.fit(len(names))
    run.metrics = round_metrics(run.test_metrics(names))
    if rank == 0:
        run.dir.write_metrics(run.metrics)
        log(f"test ({cfg.protocol}) {json.dumps(run.metrics['final'])}  [{time.perf_counter() - t0:.0f} s]")
        log(f"run directory: {run.path}")
    return run


def open_run(run_dir: str | Path, data_root=None, log=print) -> Run:
    """A run directory trained before, with its config, test metrics (when it has any), and its
    data (from the feature cache) and model when first used, for analysis."""
    rundir = RunDir(run_dir, read_run_config(run_dir))
    return Run(rundir, data_root, log=log, metrics=rundir.metrics())
