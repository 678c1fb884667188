"""One ablation arm: a training recipe with config overrides, trained, tested, and flattened.

The sweep runner (:mod:`dualpath_book.sweep`) executes ``notebooks/sweeps/train_arm.ipynb`` once per
(arm, seed), with the parameters of :data:`ARM_PARAMETERS`; the notebook makes the arm's config
(:func:`arm_config`) and calls :func:`run_arm`, which writes :data:`ARM_METRICS` into the run
directory: one flat JSON object the sweep aggregates into its CSV.

Besides the recipe's own test metrics (the config's ``test_shift``), every arm is also tested
with each test-time offset policy of :data:`TEST_POLICIES` on the same checkpoint, so the
"test-time position shift" ablation needs no training runs of its own. The rank of every test
query's first match (both directions, the final phase, the config's policy) goes to
:data:`TEST_RANKS`, from which the chapter's paired bootstrap is computed; the best validation
R-sum of each phase goes into the metrics (``<phase>.val_rsum``, and ``val_rsum`` of the last).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from dualpath.config import TEST_SHIFT_POLICIES, Config, preset as make_preset
from dualpath.errors import ConfigError, DataError
from dualpath.evaluate import evaluate_corpus, metric_keys, summarise_ranks
from dualpath.io import atomic_path, write_json_atomic
from .layout import REPO_ROOT
from .page import Parameter

ARM_METRICS = "arm_metrics.json"
TEST_RANKS = "test_ranks.npz"   # per test query: 0-based rank of its first match, i2t and t2i
TEST_POLICIES = TEST_SHIFT_POLICIES
REPORTED = metric_keys("medr")


def shift_key(policy: str) -> str:
    """The metric of the R-sum under a test-time offset policy."""
    return f"rsum_shift_{policy}"


#: The parameters of ``notebooks/sweeps/train_arm.ipynb``, what a grid's arms set (the sweep adds
#: ``seed`` and ``run_dir``). ``python -m dualpath_book.sync`` writes its ``parameters`` cell from this
#: table; a test fails while the notebook differs from it.
ARM_PARAMETERS: dict[str, Parameter] = {
    "recipe": Parameter("paper", "str", "paper (Stage I then II), instance, ranking, joint or both"),
    "overrides": Parameter(None, "Optional[dict]", 'config keys to change, e.g. {"negatives": "sum"}; None: none'),
    "preset": Parameter("ablation", "str", "config preset the overrides apply to (ablation, cpu, paper)"),
    "seed": Parameter(0, "int", "random seed of the run"),
    "run_dir": Parameter(None, "Optional[str]", "run directory; the sweep sets it; None: "
                         "runs/arms/<preset>-<backbone>-seed<seed>[-<hash>] (dualpath.train.run_dir_for)"),
    "data_root": Parameter(None, "Optional[str]", "folder holding the datasets; None: $DUALPATH_DATA, ./data or "
                           "../shared/data"),
    "device": Parameter("auto", "str", "auto, cpu or cuda[:n]"),
    "smoke": Parameter(False, "bool", "True: preset smoke on the mini splits, so the arm runs in seconds"),
    "stage1_from": Parameter(None, "Optional[str]", 'run folder of an arm whose Stage I this one shares (a grid '
                             'sets "@<arm>"); None: train it'),
}


def arm_config(preset: str = "ablation", overrides: dict | None = None, *, recipe: str = "paper", seed: int = 0,
               smoke: bool = False, device: str = "auto") -> Config:
    """The Config of an arm: a preset (``smoke`` swaps in the smoke preset) with its recipe, seed and
    device, plus overrides (which may not set those three again)."""
    return make_preset(preset, overrides, smoke=smoke, recipe=recipe, seed=seed, device=device)


def run_arm(cfg: Config, *, run_dir: str | Path, data_root=None,
            test_policies: tuple[str, ...] | list[str] = TEST_POLICIES,
            stage1_from: str | Path | None = None, log=print) -> dict[str, Any]:
    """Train the arm's config ``cfg`` (:func:`arm_config`) into ``run_dir``; write and return the
    flat metrics.

    ``stage1_from``: the run folder of an arm whose Stage I this one shares by construction (it
    changes only what Stage II reads); this run starts where that one ended Stage I
    (:mod:`dualpath.train.share`) instead of training it again. A folder that keeps only the
    source's record (restored by the sweep from a committed table, its checkpoints left on
    another machine) has no Stage I to start from: this run trains the phase itself, the same
    phase by construction (same config where Stage I looks, same seed), and says so.

    Keys: the final phase's test metrics (``rsum``, ``i2t_r1`` ...), each phase's as
    ``<phase>.<metric>``, the best validation R-sum of each phase as ``<phase>.val_rsum`` (the
    last phase's also as ``val_rsum``), :func:`shift_key` of each test-time offset policy,
    ``recipe``, ``stage1_from`` and ``stage1_shared`` (when given: the source, and whether its
    Stage I was reused or trained again here) and ``train_s`` (seconds of this call).
    """
    from dualpath.train import RunDir, train   # the package's heavy import, kept out of `import dualpath`
    from dualpath.train.rundir import RUN_CONFIG
    from dualpath.train.share import start_from_first_phase

    unknown = [p for p in test_policies if p not in TEST_SHIFT_POLICIES]
    if unknown:
        raise ConfigError(f"unknown test policies {unknown}; choose from {TEST_SHIFT_POLICIES}")
    run_dir = Path(run_dir)
    run_dir = run_dir if run_dir.is_absolute() else REPO_ROOT / run_dir
    t0 = time.perf_counter()
    shared = stage1_from is not None and (Path(stage1_from) / RUN_CONFIG).is_file()
    if shared:
        start_from_first_phase(stage1_from, RunDir(run_dir, cfg), log=log)
    elif stage1_from is not None:
        log(f"{stage1_from} keeps its record but no training state on this machine: this run trains "
            f"the Stage I it shares with that run itself")
    run = train(cfg, run_dir, data_root=data_root, log=log)
    metrics = run.metrics
    flat: dict[str, Any] = {"recipe": cfg.recipe}
    if stage1_from is not None:
        source = Path(stage1_from)
        flat["stage1_from"] = f"{source.parent.name}/{source.name}"   # <arm>/seed<k>, not a machine path
        flat["stage1_shared"] = shared
    phases = [k for k in metrics if k != "final"]
    flat.update({k: metrics["final"][k] for k in REPORTED})
    for phase in phases:
        flat.update({f"{phase}.{k}": metrics[phase][k] for k in REPORTED if k in metrics[phase]})
    flat.update(best_validation(run_dir / "log.csv", phases))
    last = run.phases[-1].name
    save_test_ranks(run, last, run_dir / TEST_RANKS, flat["rsum"])   # from the test embeddings training measured
    run.load_best(last)
    for policy in test_policies:
        if policy == cfg.test_shift:   # the recipe's own test already measured it
            flat[shift_key(policy)] = flat["rsum"]
            continue
        img, txt = run.embed("test", last, policy)
        flat[shift_key(policy)] = round(evaluate_corpus(img, txt, run.test_corpus, cfg.protocol)["rsum"], 2)
    flat["train_s"] = round(time.perf_counter() - t0, 1)
    write_json_atomic(run_dir / ARM_METRICS, flat)
    log(f"arm {cfg.recipe} {json.dumps({k: flat[k] for k in ('rsum', 'i2t_r1', 't2i_r1')})}")
    return flat


def best_validation(log_csv: Path, phases: list[str]) -> dict[str, float]:
    """``<phase>.val_rsum``: the best validation R-sum of each phase (what picked its checkpoint),
    and ``val_rsum``, the last phase's."""
    log = pd.read_csv(log_csv)
    out = {f"{p}.val_rsum": round(float(log.loc[log["phase"] == p, "val_rsum"].max()), 2) for p in phases}
    out["val_rsum"] = out[f"{phases[-1]}.val_rsum"]
    return out


def save_test_ranks(run, phase: str, path: Path, rsum: float) -> None:
    """The 0-based rank of each test query's first match (images, then captions), for paired
    bootstraps over queries; checked against the R-sum the run reported for the same checkpoint."""
    import numpy as np

    if run.cfg.protocol != "1k":
        raise ConfigError(f"per-query ranks are kept for the 1k protocol only, not {run.cfg.protocol!r}")
    ranks = run.test_ranks(phase)
    again = summarise_ranks(ranks)["rsum"]
    if abs(again - rsum) > 0.011:
        raise DataError(f"{path.parent}: the test ranks give R-sum {again:.2f}, the run reported {rsum:.2f}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, i2t=ranks["i2t"].rank0.astype(np.int32), t2i=ranks["t2i"].rank0.astype(np.int32),
                                caption_image=np.asarray(run.test_corpus.caption_image, dtype=np.int32))


def load_test_ranks(path: str | Path) -> dict[str, Any]:
    """``{'i2t': ranks, 't2i': ranks, 'caption_image': image of each caption}`` as
    :func:`save_test_ranks` wrote them."""
    import numpy as np

    with np.load(path) as f:
        return {d: f[d] for d in ("i2t", "t2i", "caption_image")}
