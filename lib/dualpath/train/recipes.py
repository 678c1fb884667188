"""Recipes: which phases a run trains, with which losses, and how much of the backbone.

A run is a list of phases. The paper's recipe is Stage I (instance loss, backbone frozen)
then Stage II (ranking + instance loss, top backbone blocks fine-tuned); the ablation
recipes reuse the same two slots with other losses, so every arm gets the same budget:

==========  ============================  =====================================
recipe      phase 1 (stage1_epochs)       phase 2 (stage2_epochs)
==========  ============================  =====================================
paper       instance                      rank + instance, backbone top blocks
instance    instance                      (none)
ranking     rank                          rank, backbone top blocks
joint       rank + instance               rank + instance, backbone top blocks
both        rank + Stage I's instance     rank + instance, backbone top blocks
==========  ============================  =====================================

``joint`` weights both phases with the Stage II weights. ``both`` keeps the paper's Stage II and
changes only what phase 1 trains: the ranking loss beside Stage I's instance losses (1 : 1). With
``paper`` (instance first) and ``ranking`` (ranking first) it isolates the paper's central claim
when Stage II is the same for all three, as in the cpu preset (Stage II = ranking alone).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import Config

# The phases of each recipe (config.RECIPE_NAMES names them, so a Config is checked when made).
# Loss weights of each slot: a (rank, img, txt) tuple, "rank" (ranking only, at lambda_rank),
# "both" (lambda_rank : 1 : 1) or None (the config's Stage II weights lambda_rank : lambda_img : lambda_txt).
RECIPES = {
    "paper": [("stage1", (0, 1, 1)), ("stage2", None)],
    "instance": [("stage1", (0, 1, 1))],
    "ranking": [("stage1", "rank"), ("stage2", "rank")],
    "joint": [("stage1", None), ("stage2", None)],
    "both": [("stage1", "both"), ("stage2", None)],
}


@dataclass
class Phase:
    name: str
    epochs: int
    lambdas: tuple[float, float, float]    # weights of (ranking, image instance, text instance)
    finetune: int        # backbone top blocks trained: 0 frozen, -1 all (pixels)
    lr: float
    lr_steps: list[int]
    negatives: str = "paper"   # negatives of the ranking term (when the phase has one)


def phases_of(cfg: Config) -> list[Phase]:
    """The phases ``cfg.recipe`` trains under ``cfg`` (phases of 0 epochs left out)."""
    stage2 = (cfg.lambda_rank, cfg.lambda_img, cfg.lambda_txt)
    out = []
    for name, lam in RECIPES[cfg.recipe]:
        lam = {None: stage2, "rank": (cfg.lambda_rank, 0.0, 0.0),
               "both": (cfg.lambda_rank, 1.0, 1.0)}.get(lam, lam) if not isinstance(lam, tuple) else lam
        if name == "stage1":
            out.append(Phase(name, cfg.stage1_epochs, lam, 0, cfg.lr, list(cfg.stage1_lr_steps),
                             cfg.stage1_negatives or cfg.negatives))
        else:
            out.append(Phase(name, cfg.stage2_epochs, lam, cfg.finetune_blocks, cfg.stage2_lr,
                             list(cfg.stage2_lr_steps), cfg.negatives))
    return [p for p in out if p.epochs > 0]
