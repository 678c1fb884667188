"""One ablation arm: a training recipe with config overrides, trained, tested, and flattened.

The sweep runner (:mod:`dualpath_book.sweep`) executes ``notebooks/sweeps/train_arm.ipynb`` once per
(arm, seed); the notebook calls :func:`run_arm`, which writes :data:`ARM_METRICS` into the run
directory: one flat JSON object the sweep aggregates into its CSV.

Besides the recipe's own test metrics (the config's ``test_shift``), every arm is also tested
with each test-time offset policy of :data:`TEST_POLICIES` on the same checkpoint, so the
"test-time position shift" ablation needs no training runs of its own.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dualpath.config import TEST_SHIFT_POLICIES, Config, preset as make_preset
from dualpath.errors import ConfigError
from dualpath.evaluate import evaluate_corpus, metric_keys
from dualpath.io import write_json_atomic
from .layout import REPO_ROOT

ARM_METRICS = "arm_metrics.json"
TEST_POLICIES = TEST_SHIFT_POLICIES
REPORTED = metric_keys("medr")


def arm_config(preset: str = "ablation", overrides: dict | None = None, *, seed: int = 0,
               smoke: bool = False, device: str = "auto") -> Config:
    """The Config of an arm: a preset (``smoke`` swaps in the smoke preset) plus overrides."""
    overrides = dict(overrides or {})
    for key in ("seed", "device"):
        if key in overrides:
            raise ConfigError(f"override {key!r} is set by the arm itself; pass it as a parameter")
    return make_preset("smoke" if smoke else preset, seed=seed, device=device, **overrides)


def run_arm(recipe: str = "paper", overrides: dict | None = None, *, preset: str = "ablation",
            seed: int = 0, run_dir: str | Path, data_root=None, smoke: bool = False,
            device: str = "auto", test_policies: tuple[str, ...] | list[str] = TEST_POLICIES,
            log=print) -> dict[str, Any]:
    """Train ``recipe`` with ``overrides`` into ``run_dir``; write and return the flat metrics.

    Keys: the final phase's test metrics (``rsum``, ``i2t_r1`` ...), each phase's as
    ``<phase>.<metric>``, ``rsum_shift_<policy>`` for each test-time offset policy, ``recipe``
    and ``train_s`` (seconds of this call).
    """
    from dualpath.train import open_run, train   # the package's heavy import, kept out of `import dualpath`

    unknown = [p for p in test_policies if p not in TEST_SHIFT_POLICIES]
    if unknown:
        raise ConfigError(f"unknown test policies {unknown}; choose from {TEST_SHIFT_POLICIES}")
    run_dir = Path(run_dir)
    run_dir = run_dir if run_dir.is_absolute() else REPO_ROOT / run_dir
    cfg = arm_config(preset, overrides, seed=seed, smoke=smoke, device=device)
    t0 = time.perf_counter()
    metrics = train(cfg, run_dir, recipe=recipe, data_root=data_root, log=log)
    flat: dict[str, Any] = {"recipe": recipe}
    phases = [k for k in metrics if k != "final"]
    flat.update({k: metrics["final"][k] for k in REPORTED})
    for phase in phases:
        flat.update({f"{phase}.{k}": metrics[phase][k] for k in REPORTED if k in metrics[phase]})
    if test_policies:
        run = open_run(run_dir, data_root, log=log)   # features come from the cache
        last = run.phases[-1].name
        run.load_best(last)
        for policy in test_policies:
            if policy == cfg.test_shift:   # the recipe's own test already measured it
                flat[f"rsum_shift_{policy}"] = flat["rsum"]
                continue
            img, txt = run.embed("test", last, policy)
            flat[f"rsum_shift_{policy}"] = round(evaluate_corpus(img, txt, run.test_corpus, cfg.protocol)["rsum"], 2)
    flat["train_s"] = round(time.perf_counter() - t0, 1)
    write_json_atomic(run_dir / ARM_METRICS, flat)
    log(f"arm {recipe} {json.dumps({k: flat[k] for k in ('rsum', 'i2t_r1', 't2i_r1')})}")
    return flat
