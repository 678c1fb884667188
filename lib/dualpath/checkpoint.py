"""Self-contained checkpoints: config, vocabulary, weights, optimiser and RNG state.

Everything stored is a tensor or a plain Python value, so ``torch.load(weights_only=True)``
reads it; writes are atomic, so a crash (or a full disk) while saving leaves the previous
checkpoint untouched.
"""
from __future__ import annotations

import errno
from pathlib import Path

import torch

from .config import Config
from .errors import CheckpointError, ConfigError
from .io import atomic_path

FORMAT = 1


def save(path: str | Path, payload: dict) -> None:
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, **payload}, tmp)
    except OSError as e:
        hint = ("the disk is full; free space and resume the run (the earlier checkpoint "
                "is intact)" if e.errno == errno.ENOSPC else "the earlier checkpoint is intact")
        raise CheckpointError(f"could not write checkpoint {path}: {e.strerror or e}; {hint}") from e


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a .pt file "
                              f"written by dualpath.train (e.g. runs/<run>/best_stage2.pt)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
                              f"it may be truncated or not a dualpath checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dualpath checkpoint of format {FORMAT}")
    for key in ("config", "vocab", "n_classes", "model"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}; it is incomplete")
    return ckpt


def config_of(ckpt: dict, path: str | Path = "checkpoint") -> Config:
    """The config a checkpoint was saved under. One saved before the recipe was a config key
    keeps it beside the config (``ckpt['recipe']``)."""
    try:
        return Config.from_dict({"recipe": ckpt.get("recipe", "paper"), **ckpt["config"]}, source=str(path))
    except ConfigError as e:
        raise CheckpointError(f"{path}: stored config is not valid for this version ({e})") from None


def load_weights(model: torch.nn.Module, state: dict, path: str | Path = "checkpoint") -> None:
    """Load a state dict, explaining a mismatch in terms of vocabulary and classes."""
    own = model.state_dict()
    problems = []
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            what = ("vocabulary size" if "embedding" in key else
                    "number of classes" if "classifier" in key else "layer shape")
            problems.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)} "
                            f"({what} differs)")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if problems or missing or unexpected:
        detail = "; ".join(problems[:5] + ([f"missing {missing[:5]}"] if missing else [])
                           + ([f"unexpected {unexpected[:5]}"] if unexpected else []))
        raise CheckpointError(f"{path} does not match the model: {detail}. Build the model "
                              f"from the checkpoint's own config and vocabulary "
                              f"(dualpath.load_checkpoint) rather than a different one")
    model.load_state_dict(state)
