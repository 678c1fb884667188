"""Runs that share their first phase.

An ablation arm that changes only what a later phase reads (Stage II's loss weights, its
negatives) trains a Stage I identical to its reference arm's: same config where Stage I looks,
same seed, same data order. :func:`start_from_first_phase` starts such a run where the reference
run ended its first phase (``end_<phase>.pt``: weights, sampling state and torch's RNG), so the
phase is trained once and both arms report the very same Stage I; the run then goes on exactly
as an uninterrupted run of its own config would.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .. import checkpoint as ckpt_io
from ..config import Config
from ..errors import ConfigError, DataError
from ..io import atomic_path, write_json_atomic
from .recipes import Phase, phases_of
from .rundir import RunDir, read_run_config

SHARED = "shared.json"   # what a run that started from another run's first phase records

# Config keys only the phases after the first read: their own epochs, LR and loss weights, the
# negatives of a ranking term there. With no ranking term in the first phase, the keys of that
# term are not read in it either.
LATER_PHASE_KEYS = ("stage2_epochs", "stage2_lr", "stage2_lr_steps", "lambda_rank", "lambda_img",
                    "lambda_txt", "negatives", "stage1_negatives")
RANKING_KEYS = ("margin", "n_candidates", "rank_features", "paired_rows")
REPORTING_KEYS = ("progress",)   # how a run reports, not what it trains


def _as_read(phase: Phase) -> Phase:
    """The phase as training reads it: without a ranking term its negatives are not read."""
    if phase.lambdas[0] > 0:
        return phase
    return Phase(phase.name, phase.epochs, phase.lambdas, phase.finetune, phase.lr, phase.lr_steps, "")


def first_phase_differences(source: Config, target: Config) -> list[str]:
    """What makes the first phase of a run of ``target`` train otherwise than that of a run of
    ``source``: the config keys it reads that differ, or ``'first phase'``; empty when equal."""
    phases = phases_of(target)
    first_src, first = phases_of(source)[0], phases[0]
    if len(phases) < 2:
        return ["a single phase (nothing follows it)"]
    # the recipe: what it makes the first phase train is compared phase to phase below
    ignored = {*LATER_PHASE_KEYS, *REPORTING_KEYS, "recipe", *(RANKING_KEYS if first.lambdas[0] == 0 else ())}
    a, b = source.to_dict(), target.to_dict()
    out = sorted(k for k in a if k not in ignored and a[k] != b[k])
    if _as_read(first_src) != _as_read(first):
        out.append(f"first phase ({first_src} vs {first})")
    return out


def start_from_first_phase(source: str | Path, rundir: RunDir, log=print) -> None:
    """Make ``rundir`` start its second phase where ``source`` ended its first.

    A run directory that holds a resume point already is left as it is (the run resumes). Raises
    ConfigError when the two runs' first phases differ, DataError when ``source`` has not ended
    its first phase yet.
    """
    source = Path(source)
    if rundir.file("last.pt").exists():
        return
    src_cfg = read_run_config(source)
    diff = first_phase_differences(src_cfg, rundir.cfg)
    if diff:
        raise ConfigError(f"{rundir.path} cannot start from the first phase of {source}: "
                          f"its own first phase would differ in {', '.join(diff)}")
    name = phases_of(src_cfg)[0].name
    src = RunDir(source, src_cfg)
    end, best = src.phase_end(name), src.best(name)
    if not (end.exists() and best.exists()):
        raise DataError(f"{source} has not ended its {name} yet (no {end.name}); finish that run "
                        f"first, then start this one")
    state = ckpt_io.load(end)
    rundir.path.mkdir(parents=True, exist_ok=True)
    with atomic_path(rundir.best(name)) as tmp:
        shutil.copyfile(best, tmp)
    # this run's config; a source saved before the recipe was a config key keeps its own beside it
    own = {**{k: v for k, v in state.items() if k != "recipe"}, "config": rundir.cfg.to_dict()}
    rundir.save(rundir.phase_end(name).name, own)
    rundir.save("last.pt", own)   # resumes at the next phase, with the RNG the first one left
    write_json_atomic(rundir.file(SHARED), {"first_phase_from": str(source.resolve()), "phase": name,
                                            "epochs": state["epoch"]})
    log(f"{rundir.path.name}: {name} shared with {source} (its {state['epoch']} epochs are not trained again)")
