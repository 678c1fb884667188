"""python -m dualpath.train: train a recipe from a preset, a JSON config and --set overrides.

A user error (a bad key or value, missing data, a checkpoint of another run) prints one line
``error: ...`` and exits with status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..config import PRESET_NOTES, PRESETS, RECIPE_NAMES, describe_preset, preset
from ..errors import ConfigError, DualPathError
from .run import train
from .trainer import dist_info


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath.train",
                                 description="Train the dual-path image-text embedding (Stage I, Stage II, test).")
    ap.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)}, or auto (gpu where CUDA is present, else cpu; see --list-presets)")
    ap.add_argument("--list-presets", action="store_true", help="print each preset, what it reproduces, and exit")
    ap.add_argument("--recipe", choices=sorted(RECIPE_NAMES), help="the phases to train (default: paper; "
                    "the config key recipe)")
    ap.add_argument("--config", help="JSON file of config keys (applied after the preset)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--run-dir", help="run directory (default runs/<dataset>-<recipe>-<hash>-seed<k>)")
    ap.add_argument("--data-root", help="folder holding flickr8k_224/ (default: see README)")
    ap.add_argument("--until", help="stop after this phase (e.g. stage1); run again without it to go on")
    args = ap.parse_args(argv)
    if args.list_presets:
        print("\n".join(describe_preset(name) for name in PRESET_NOTES))
        return 0
    try:
        return _run(args)
    except DualPathError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import torch.distributed as dist

    overrides = {}
    if args.config:
        overrides.update(_config_file(args.config))
    overrides.update(parse_set(args.set))
    settings = {"recipe": args.recipe} if args.recipe else {}   # so --set may not name it again
    cfg = preset(args.preset, overrides, **settings)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        import torch

        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        dist.init_process_group(backend)
    try:
        train(cfg, args.run_dir, data_root=args.data_root, until=args.until,
              log=print if dist_info()[0] == 0 else (lambda *a, **k: None))
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _config_file(path: str) -> dict:
    """The keys a JSON file sets (only those: the preset keeps the rest)."""
    try:
        values = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {path}: not valid JSON ({e})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of config keys")
    return values


if __name__ == "__main__":
    sys.exit(main())
