"""A run on disk: its files (``RunDir``), its stored config, and the environment it ran in.

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
from ..errors import CheckpointError, ConfigError, DataError
from ..evaluate import metric_keys
from ..hardware import cpu_name
from ..io import write_json_atomic, write_text_atomic
from .step import device_of

RUN_CONFIG = "config.json"   # the run's config (its recipe included): what resuming and sharing check against
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
    """The files of one run of ``cfg``."""

    def __init__(self, path: str | Path, cfg: Config):
        self.path, self.cfg = Path(path), cfg

    def file(self, name: str) -> Path:
        return self.path / name

    def best(self, phase: str) -> Path:
        return self.path / f"best_{phase}.pt"

    # -- state ----------------------------------------------------------------------------
    def finished(self, phases: list[str]) -> dict | None:
        """The stored metrics when this run of this very config has tested every phase in ``phases``."""
        conf, metrics = self.file(RUN_CONFIG), self.metrics()
        if metrics is None or not conf.exists() or not _same_config(json.loads(conf.read_text()), self.cfg):
            return None
        return metrics if all(n in metrics for n in phases) else None

    def metrics(self) -> dict | None:
        """The test metrics stored in ``metrics.json``, or None before any phase was tested."""
        done = self.file("metrics.json")
        return json.loads(done.read_text()) if done.exists() else None

    def resume_state(self) -> dict | None:
        """The ``last.pt`` state to go on from, or None for a new run; refuses another config."""
        last = self.file("last.pt")
        if not last.exists():
            return None
        state = ckpt_io.load(last)
        try:
            same = ckpt_io.config_of(state, last) == self.cfg
        except CheckpointError:   # a config this version cannot read
            same = False
        if not same:
            raise ConfigError(f"{self.path} holds a run with a different config or recipe; "
                              f"use another run directory or delete it")
        return state

    # -- writes (rank 0) --------------------------------------------------------------------
    def write_config(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.file(RUN_CONFIG), self.cfg.to_json() + "\n")

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


def read_run_config(run_dir: str | Path) -> Config:
    """The config stored in a run directory's ``config.json`` (the recipe with it; a run written
    before the recipe was a config key has it there too)."""
    path = Path(run_dir) / RUN_CONFIG
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{run_dir} holds no config.json: not a run directory") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); was it edited by hand?") from None
    return Config.from_dict(values, source=str(path))
