"""``python -m dualpath_book.ablation_report GRID_DIR``: collect a sweep's per-query test ranks for
the chapter (``make ablations-tables``)."""
from __future__ import annotations

import argparse
from typing import Sequence

from .results import RANKS_NPZ
from .stats import collect_ranks


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath_book.ablation_report",
                                 description="collect the per-query test ranks of a sweep's runs for the chapter")
    ap.add_argument("grid_dir", help="the sweep's folder, e.g. runs/sweeps/ablations")
    ap.add_argument("--out", default=str(RANKS_NPZ), help=f"where to write them (default {RANKS_NPZ})")
    args = ap.parse_args(argv)
    print(f"{collect_ranks(args.grid_dir, args.out)} runs' ranks -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
