"""The record of the book's whole runs: ``book/tables/book_runs.csv``, one row per measured run.

A run of the book (``make book`` from a fresh clone, or a whole ``python -m dualpath.train`` run)
is summarised from its run directory into one row: what it trained, what validation and the test
said after each stage, and how long it took. The README and the page on differences quote our
runs from this table (never typed by hand)::

    python -m dualpath_book.book_runs RUN_DIR --commit 18508e0 --wall-s 1791 --date 2026-12-01 \\
        --note "fresh clone, make book, empty cache"
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from dualpath.config import Config
from dualpath.evaluate import RECALL_KEYS
from dualpath.io import atomic_path
from dualpath.train.rundir import read_run_config

from .layout import TABLES_DIR

TABLE = TABLES_DIR / "book_runs.csv"
COLUMNS = ["commit", "date", "recipe", "stage1_epochs", "stage2_epochs", "stage1_val_rsum", "stage1_best_epoch",
           "stage1_text_acc", "stage2_val_rsum", "stage2_best_epoch", "stage1_test_rsum",
           *(f"test_{k}" for k in RECALL_KEYS), "test_rsum", "stage1_epoch_s", "stage2_epoch_s", "wall_s",
           "machine", "note"]


def summarise_run(run_dir: str | Path) -> dict[str, Any]:
    """One row of :data:`TABLE` from a finished run directory (``config.json``, ``log.csv``,
    ``metrics.json``), numbers rounded to what they carry: recalls 0.1, accuracy 0.01, seconds 1."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    log = pd.read_csv(run_dir / "log.csv")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row: dict[str, Any] = {"recipe": describe_recipe(cfg), "stage1_epochs": cfg.stage1_epochs,
                           "stage2_epochs": cfg.stage2_epochs}
    for phase in ("stage1", "stage2"):
        part = log[log.phase == phase]
        if part.empty:
            continue
        best = part.loc[part.val_rsum.idxmax()]
        row[f"{phase}_val_rsum"] = round(float(best.val_rsum), 1)
        row[f"{phase}_best_epoch"] = int(best.epoch)
        row[f"{phase}_epoch_s"] = round(float(part.epoch_s.mean()))
    stage1 = log[log.phase == "stage1"]
    if not stage1.empty:
        row["stage1_text_acc"] = round(float(stage1.acc_txt.iloc[-1]), 2)
    if "stage1" in metrics:
        row["stage1_test_rsum"] = round(float(metrics["stage1"]["rsum"]), 1)
    final = metrics.get("final", metrics.get("stage2", {}))
    row.update({f"test_{k}": round(float(final[k]), 1) for k in (*RECALL_KEYS, "rsum") if k in final})
    return row


def describe_recipe(cfg: Config) -> str:
    """The few settings that tell the book's recipes apart, in words."""
    features = {"act": "post-ReLU", "feat": "pre-ReLU"}[cfg.rank_features]
    parts = [f"{cfg.stage1_epochs} + {cfg.stage2_epochs} epochs", text_cnn_words(cfg),
             f"ranking loss on {features} features"]
    if cfg.image_input_dropout:
        parts.append(f"image input dropout {cfg.image_input_dropout:g}")
    if cfg.amp_cpu:
        parts.append("bfloat16 autocast")
    return ", ".join(parts)


def text_cnn_words(cfg: Config) -> str:
    """The text CNN a config trains, e.g. 'text CNN 3-4-6-1 at width 0.5 from gamma 0'."""
    blocks = "-".join(str(b) for b in cfg.text_blocks)
    return f"text CNN {blocks} at width {cfg.text_width:g}" + (" from gamma 0" if cfg.text_zero_init else "")


def record(run_dir: str | Path, *, commit: str, wall_s: float, date: str, machine: str, note: str,
           table: Path = TABLE) -> pd.DataFrame:
    """Add (or replace, for the same commit) the run's row in ``table``; return the table."""
    row = {**summarise_run(run_dir), "commit": commit, "date": date, "wall_s": round(wall_s),
           "machine": machine, "note": note}
    old = load(table) if table.is_file() else pd.DataFrame(columns=COLUMNS)
    new = pd.concat([old[old.commit != commit], pd.DataFrame([row])], ignore_index=True)[COLUMNS]
    with atomic_path(table) as tmp:
        new.to_csv(tmp, index=False)
    return new


def load(table: Path = TABLE) -> pd.DataFrame:
    return pd.read_csv(table, dtype={"commit": str})


def display_table(table: Path = TABLE) -> pd.DataFrame:
    """The runs as the page on differences shows them: what changed, and what it measured."""
    runs = load(table)
    return pd.DataFrame({
        "commit": runs.commit,
        "recipe": runs.recipe,
        "Stage I val R-sum (epoch)": [f"{v:.1f} ({e})" for v, e in zip(runs.stage1_val_rsum, runs.stage1_best_epoch)],
        "text train accuracy after Stage I": runs.stage1_text_acc.map("{:.2f}".format),
        "Stage II val R-sum (epoch)": [f"{v:.1f} ({e})" for v, e in zip(runs.stage2_val_rsum, runs.stage2_best_epoch)],
        "test R-sum, Stage I / II": [f"{a:.1f} / {b:.1f}" for a, b in zip(runs.stage1_test_rsum, runs.test_rsum)],
        "wall time": runs.wall_s.map(minutes_seconds),
        "note": runs.note,
    })


def minutes_seconds(seconds: float) -> str:
    """1791 -> '29 min 51 s'."""
    if not math.isfinite(seconds):
        return "–"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath_book.book_runs", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--commit", required=True)
    ap.add_argument("--wall-s", type=float, required=True, help="wall time of the whole command")
    ap.add_argument("--date", required=True)
    ap.add_argument("--machine", default="2 vCPU AMD EPYC, 24 GiB, no GPU")
    ap.add_argument("--note", required=True, help="how it ran, e.g. 'fresh clone, make book, empty cache'")
    args = ap.parse_args(argv)
    table = record(args.run_dir, commit=args.commit, wall_s=args.wall_s, date=args.date, machine=args.machine,
                   note=args.note)
    print(table.tail(1).T.to_string(header=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
