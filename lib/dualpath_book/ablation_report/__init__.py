"""The ablation chapter: what it compares (:mod:`.chapter`, from the grid files), the sweeps'
committed results (:mod:`.results`), their statistics (:mod:`.stats`), tables (:mod:`.tables`)
and sentences (:mod:`.prose`); its figures are :mod:`dualpath_book.figures.ablations`.
``python -m dualpath_book.ablation_report`` collects a sweep's per-query test ranks for it.

The chapter's comparisons are read from the grids when first asked for: ``FAMILIES``,
``SHORT_FAMILIES``, ``CENTRAL``, ``FAMILY`` (by key), ``BUDGET``, ``REFERENCE``, ``BUDGET_PRESET``
and ``ARM_PARAMETERS`` are names of :func:`chapter`'s answer.
"""
from __future__ import annotations

from typing import Any

from .chapter import (CLAIMED_BY, Budget, Chapter, Family, chapter, epochs_of, load_budget, load_families,
                      stage1_is_instance)
from .prose import (REFERENCE_SHARE, budget_sentence, budget_verdict, epoch_share, phase_cost_sentence, phases_of,
                    reference_check, seed_spread_sentence, shared_stage1_sentence, short_reference_rsum, short_share,
                    verdict)
from .results import (ABLATIONS_CSV, BOOK_RUNS_CSV, BOOK_SEEDS_CSV, CENTRAL_CSV, METRICS, MIN_SEEDS, RANKS_NPZ, SHORT_CSV, budget_runs,
                      incomplete_arms, load, provenance)
from .stats import CAP, bootstrap_difference, collect_ranks, load_ranks, paired_differences
from .tables import (budget_table, family_table, phase_table, reader_columns, shared_stage1_table, significance_table,
                     test_shift_table)

_FROM_THE_GRIDS = {"FAMILIES": "families", "SHORT_FAMILIES": "short_families", "CENTRAL": "central",
                   "FAMILY": "by_key", "BUDGET": "budget", "REFERENCE": "reference",
                   "BUDGET_PRESET": "budget_preset", "ARM_PARAMETERS": "arm_parameters"}


def __getattr__(name: str) -> Any:
    if name in _FROM_THE_GRIDS:
        return getattr(chapter(), _FROM_THE_GRIDS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
