"""A run on disk (``RunDir``) and a run opened for analysis (``Run``).

Run directory: ``config.json``, ``environment.json`` (what else changes the floats: library
versions, torch threads, device, CPU, feature-cache files; one entry per start of the run),
``log.csv`` (one row per epoch), ``last.pt`` (resume point,
rewritten every epoch), ``best_<phase>.pt`` (best validation rsum of that phase),
``end_<phase>.pt`` (where each phase but the last ended: what the next one starts from, so another
run can start there, :mod:`.share`) and ``metrics.json`` (test metrics of each phase's best
checkpoint). Everything is written
atomically; checkpoints load with ``weights_only=True``.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

import torch

from .. import checkpoint as ckpt_io
from ..config import Config
from ..data.corpus import Corpus
from ..errors import ConfigError, DataError
from ..evaluate import evaluate_corpus, metric_keys
from ..hardware import cpu_name
from ..io import write_json_atomic, write_text_atomic
from ..models import build_model
from .inputs import TrainingData, embed_split, image_source, prepare
from .recipes import Phase, phases_of
from .step import device_of

RUN_CONFIG = "config.json"   # the run's config and recipe: what resuming and sharing check against
LOG_FIELDS = ["phase", "epoch", "lr", "loss", "loss_rank", "loss_img", "loss_txt", "acc_img",
              "acc_txt", *(f"val_{k}" for k in metric_keys()), "grad_image", "grad_text", "grad_classifier",
              "samples_s", "epoch_s"]
TIME_FIELDS = ("samples_s", "epoch_s")   # the columns that differ between equal runs


def environment(cfg: Config, cache_files: list[str]) -> dict:
    """What a run's floats depend on besides its config: equal configs trained under equal
    environments give identical metrics, whatever else runs on the machine."""
    cpu = cpu_name()
    return {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0],
            "torch_threads": torch.get_num_threads(), "device": str(device_of(cfg)), "cpu": cpu,
            "feature_cache": sorted(cache_files)}


#: environment fields that change the floats (the CPU name is informative only)
FLOAT_FIELDS = ("torch", "numpy", "torch_threads", "device", "feature_cache")


def _same_config(stored: dict, cfg: Config) -> bool:
    """Whether a stored config is ``cfg`` (keys added since it was written take their defaults)."""
    try:
        return Config.from_dict(stored).to_dict() == cfg.to_dict()
    except ConfigError:
        return False


class RunDir:
    """The files of one run of (``cfg``, ``recipe``)."""

    def __init__(self, path: str | Path, cfg: Config, recipe: str):
        self.path, self.cfg, self.recipe = Path(path), cfg, recipe

    def file(self, name: str) -> Path:
        return self.path / name

    def best(self, phase: str) -> Path:
        return self.path / f"best_{phase}.pt"

    # -- state ----------------------------------------------------------------------------
    def finished(self, phases: list[str]) -> dict | None:
        """The stored metrics when this run of this very config has tested every phase in ``phases``."""
        done, conf = self.file("metrics.json"), self.file(RUN_CONFIG)
        if not (done.exists() and conf.exists()):
            return None
        stored = json.loads(conf.read_text())
        if stored.pop("recipe", "paper") != self.recipe or not _same_config(stored, self.cfg):
            return None
        metrics = json.loads(done.read_text())
        return metrics if all(n in metrics for n in phases) else None

    def resume_state(self) -> dict | None:
        """The ``last.pt`` state to go on from, or None for a new run; refuses another config."""
        last = self.file("last.pt")
        if not last.exists():
            return None
        state = ckpt_io.load(last)
        if not _same_config(state["config"], self.cfg) or state.get("recipe") != self.recipe:
            raise ConfigError(f"{self.path} holds a run with a different config or recipe; "
                              f"use another run directory or delete it")
        return state

    # -- writes (rank 0) --------------------------------------------------------------------
    def write_config(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.file(RUN_CONFIG),
                          json.dumps({"recipe": self.recipe, **self.cfg.to_dict()}, indent=2,
                                     sort_keys=True) + "\n")

    def record_environment(self, env: dict, log=print) -> None:
        """Append this start's environment; say so when a resumed run changes one that alters floats."""
        path = self.file("environment.json")
        starts = json.loads(path.read_text()) if path.exists() else []
        if starts:
            changed = [k for k in FLOAT_FIELDS if starts[-1].get(k) != env.get(k)]
            if changed:
                log(f"warning: {self.path.name} resumes under another environment ({', '.join(changed)}); "
                    f"its metrics will not equal those of an uninterrupted run")
        write_json_atomic(path, [*starts, env])

    def write_log(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(self.file("log.csv"), buf.getvalue())

    def save(self, name: str, payload: dict) -> None:
        ckpt_io.save(self.file(name), payload)

    def phase_end(self, phase: str) -> Path:
        return self.path / f"end_{phase}.pt"

    def keep_phase_end(self, phase: str, payload: dict) -> None:
        """Keep the state ``phase`` ended in (``payload`` as last.pt holds it, less the optimiser,
        which the next phase builds anew), unless it is kept already."""
        if not self.phase_end(phase).exists():
            self.save(self.phase_end(phase).name, {k: v for k, v in payload.items() if k != "optimizer"})

    def write_metrics(self, metrics: dict) -> None:
        write_json_atomic(self.file("metrics.json"), metrics)


class Run:
    """A run directory with its data and model: what analysis code reads from a trained run."""

    def __init__(self, rundir: RunDir, data: TrainingData, model, log=print):
        self.dir, self.data, self.model, self.log = rundir, data, model, log
        self.cfg, self.recipe = rundir.cfg, rundir.recipe
        self.phases: list[Phase] = phases_of(self.cfg, self.recipe)

    @property
    def path(self) -> Path:
        return self.dir.path

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise ConfigError(f"{name!r} is not a phase of recipe {self.recipe!r} "
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
        """Test-split image and caption embeddings of ``phase``'s best model, and the test corpus."""
        self.load_best(phase)
        img, txt = self.embed("test", phase)
        return img, txt, self.test_corpus

    def test_metrics(self, phases: list[str] | None = None) -> dict:
        """Test metrics of each phase's best checkpoint; ``final`` is the last phase's."""
        names = [p.name for p in self.phases] if phases is None else phases
        out = {}
        for name in names:
            best = self.load_best(name)
            img, txt = self.embed("test", name)
            out[name] = {**evaluate_corpus(img, txt, self.test_corpus, self.cfg.protocol),
                         "best_epoch": best["epoch"]}
        out["final"] = out[names[-1]]
        return out


def new_model(data: TrainingData, cfg: Config):
    train = data.splits["train"].corpus
    model = build_model(cfg, len(data.vocab), train.n_classes, data.embedding_init,
                        backbone=data.backbone).to(device_of(cfg))
    if cfg.channels_last:
        model.backbone.to(memory_format=torch.channels_last)
    return model


def read_run_config(run_dir: str | Path) -> tuple[Config, str]:
    """(config, recipe) stored in a run directory's ``config.json``."""
    path = Path(run_dir) / RUN_CONFIG
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{run_dir} holds no config.json: not a run directory") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); was it edited by hand?") from None
    recipe = values.pop("recipe", "paper")
    return Config.from_dict(values, source=str(path)), recipe


def open_run(run_dir: str | Path, data_root=None, log=print) -> Run:
    """An existing run directory with its config, data (from the feature cache) and model, for analysis."""
    run_dir = Path(run_dir)
    cfg, recipe = read_run_config(run_dir)
    data = prepare(cfg, data_root, log=log)
    return Run(RunDir(run_dir, cfg, recipe), data, new_model(data, cfg), log=log)
