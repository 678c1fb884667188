"""The README's results paragraph, written from the committed tables (never typed by hand).

Between :data:`START` and :data:`END` the README quotes the latest measured run of the current
``cpu`` recipe (``book/tables/book_runs.csv``), its three-seed numbers (``make seeds``,
``book/tables/book_seeds.csv``) and the VSE++ baseline on the same features (``book/tables/baselines.csv``). ``python -m dualpath_book.sync``
rewrites it; a test fails while it differs.
"""
from __future__ import annotations

import pandas as pd

from dualpath.config import preset
from dualpath.evaluate import DIRECTIONS, RECALL_AT, RECALL_KEYS
from dualpath.io import write_text_atomic

from . import ablation_report, book_runs
from .layout import REPO_ROOT, TABLES_DIR

README = REPO_ROOT / "README.md"
START = "<!-- results: written by `python -m dualpath_book.sync` from book/tables; edit those, not this -->"
END = "<!-- end of results -->"


def _recalls(values) -> str:
    i2t, t2i = [" / ".join(f"{values[f'{d}_r{k}']:.1f}" for k in RECALL_AT) for d in DIRECTIONS]
    return f"image->text R@1/5/10 {i2t}, text->image {t2i}"


def results_markdown() -> str:
    """The paragraph between the markers."""
    current = book_runs.describe_recipe(preset("cpu"))
    runs = book_runs.load()
    mine = runs[runs.recipe == current]
    lines = []
    if mine.empty:
        lines.append(f"The current cpu recipe ({current}) has no measured whole run yet "
                     "(`book/tables/book_runs.csv`).")
    else:
        r = mine.iloc[-1]
        test = {k: r[f"test_{k}"] for k in RECALL_KEYS}
        lines.append(
            f"Measured on {r.machine} ({r.note}; commit {r.commit}, {r.date}): "
            f"{book_runs.minutes_seconds(r.wall_s)} in all, a Stage I epoch about {r.stage1_epoch_s:.0f} s "
            f"and a Stage II epoch about {r.stage2_epoch_s:.0f} s. Test (Flickr8k 1K, seed 0, one run): "
            f"Stage I R-sum {r.stage1_test_rsum:.1f} (validation {r.stage1_val_rsum:.1f}, text-branch train "
            f"accuracy {r.stage1_text_acc:.2f}); Stage II R-sum {r.test_rsum:.1f} ({_recalls(test)}). "
            "A `make book` on another machine follows another float trajectory and shows other "
            "numbers; the spread over seeds below says by how much they may differ.")
    lines.append(ablation_report.seed_spread_sentence() + " The loss comparison, on the book's earlier "
                 "`cpu-narrow` recipe, is on the book's loss ablation page.")
    base = pd.read_csv(TABLES_DIR / "baselines.csv")
    vse = base.iloc[0]
    lines.append(f"For scale, {vse.method} ({vse.training}) trained on {vse.features} scores R-sum "
                 f"{vse.rsum:.1f} ({_recalls(vse)}; {vse.provenance}).")
    return "\n".join(lines)


def _split(text: str) -> tuple[str, str, str]:
    if START not in text or END not in text:
        raise ValueError(f"{README.name} lacks the results markers {START!r} ... {END!r}")
    head, rest = text.split(START, 1)
    body, tail = rest.split(END, 1)
    return head, body, tail


def readme_out_of_date() -> bool:
    _, body, _ = _split(README.read_text())
    return body.strip() != results_markdown()


def write_readme() -> bool:
    """Rewrite the results between the markers; True when they changed."""
    if not readme_out_of_date():
        return False
    head, _, tail = _split(README.read_text())
    write_text_atomic(README, f"{head}{START}\n{results_markdown()}\n{END}{tail}")
    return True
