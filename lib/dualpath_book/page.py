"""What a notebook page calls: its parameters, the Config and run directory they resolve to,
the settings table and run note it shows, and the glue helpers its prose reads numbers from.

Every notebook's ``parameters`` cell defines :data:`NOTEBOOK_PARAMETERS`; :func:`notebook_config`
turns them into a :class:`~dualpath.config.Config` and a run directory, in the kernels and in
``pipeline`` alike.
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Mapping
from typing import Any, NamedTuple, Sequence

from dualpath.config import Config, default_protocol, preset as make_preset, resolve_preset
from dualpath.errors import ConfigError
from dualpath.paths import runs_root

from .layout import REPO_ROOT


class Parameter(NamedTuple):
    default: Any
    kind: str          # the annotation papermill reads (a string where typing would need an import)
    help: str


#: The parameters every notebook's ``parameters`` cell defines. ``python -m dualpath_book.sync``
#: writes those cells from this table; a test fails while a notebook differs from it.
NOTEBOOK_PARAMETERS: dict[str, Parameter] = {
    "dataset": Parameter("flickr8k", "str", "corpus name (dualpath.data.load_corpus): flickr8k, flickr30k, "
                         "flickr30k_official, coco, cuhk_pedes"),
    "protocol": Parameter(None, "Optional[str]", "evaluation protocol: 1k, coco-1k, coco-5k or cuhk; None: "
                          "the dataset's (cuhk for cuhk_pedes, else 1k)"),
    "data_root": Parameter(None, "Optional[str]", "folder holding the datasets; None: $DUALPATH_DATA, ./data, "
                           "../shared/data or ~/.cache/dualpath/data"),
    "download": Parameter(False, "bool", "True: fetch Flickr8k first when no data root holds it (Colab)"),
    "backbone": Parameter("efficientnet_lite0", "str", "image CNN: efficientnet_lite0, resnet50, resnet152 or vgg19"),
    "preset": Parameter("auto", "str", "config preset: auto (gpu where CUDA is present, else cpu); cpu "
                        "(2-core CPU budget); gpu (the book's recipe at the paper's network size, one GPU); "
                        "paper-flickr8k, paper, paper-coco or paper-cuhk (official recipes, GPU)"),
    "stage1_epochs": Parameter(None, "Optional[int]", "Stage I epochs (instance loss only); None: the preset's"),
    "stage2_epochs": Parameter(None, "Optional[int]", "Stage II epochs (ranking + instance loss); None: the preset's"),
    "seed": Parameter(0, "int", "random seed of the run"),
    "device": Parameter("auto", "str", "auto, cpu or cuda[:n]"),
    "run_dir": Parameter(None, "Optional[str]", "run directory (an existing run keeps its own config); None: "
                         "runs/book/<preset>-<backbone>-seed<seed>"),
    "overrides": Parameter(None, "Optional[dict]", "config keys to change after the preset, e.g. "
                           "{'negatives': 'sum'}; None: none"),
    "smoke": Parameter(False, "bool", "True: preset smoke on the mini splits, so the notebook runs in seconds"),
}


def parameter_defaults() -> dict[str, Any]:
    return {name: p.default for name, p in NOTEBOOK_PARAMETERS.items()}


# --------------------------------------------------------------------------- parameters
def setup(namespace: Mapping[str, Any], *, show: bool = True) -> tuple[Config, Path]:
    """What every page does first, in one call: read its parameters by name from the notebook's
    namespace (``setup(globals())``: the variables its ``parameters`` cell defined, papermill's
    injected values included), resolve them to a Config and run directory (:func:`notebook_config`),
    set pandas' display precision, and show the run note and the settings table."""
    missing = [name for name in NOTEBOOK_PARAMETERS if name not in namespace]
    if missing:
        raise ConfigError(f"the notebook defines no {missing}: is its parameters cell the one "
                          f"python -m dualpath_book.sync writes?")
    params = {name: namespace[name] for name in NOTEBOOK_PARAMETERS}
    cfg, run_dir = notebook_config(**params)
    if params["download"]:
        ensure_dataset(cfg.dataset, params["data_root"])
    import pandas as pd
    from IPython.display import Markdown, display

    pd.set_option("display.precision", 2)
    if show:
        display(Markdown(run_note(cfg)))
        display(settings_table(cfg, run_dir))
    return cfg, run_dir



def ensure_dataset(name: str, data_root: str | None) -> Path:
    """The dataset's folder; fetched first (``python -m dualpath.data fetch``) when no root holds it."""
    from dualpath.data.fetch import fetch
    from dualpath.data.registry import dataset_folder

    folder = dataset_folder(name, data_root) if data_root is None or Path(data_root).is_dir() else None
    if folder is None:
        folder = fetch(name, data_root, log=page_log)
    return folder


def notebook_config(**params: Any) -> tuple[Config, Path]:
    """The Config and run directory of a notebook's parameters (see :data:`NOTEBOOK_PARAMETERS`).

    ``smoke=True`` replaces the preset by ``smoke`` (mini splits, tiny model). Epoch counts of
    ``None`` keep the preset's; ``overrides`` are config keys, validated like the preset's, that
    the other parameters do not set. Without ``run_dir`` the run lives in
    ``runs_root()/book/<preset>-<backbone>-seed<seed>``, with the dataset prefixed when it is
    not Flickr8k, the epochs appended when they are not the preset's and a hash of any other
    key that differs from the preset (``dualpath.train.run_dir_for``), so that runs of different
    settings never share a directory. A relative ``run_dir`` is taken from the repository root.
    A ``run_dir`` that already holds a run is shown with that run's own config (see
    :func:`_existing_run_config`).
    """
    from dualpath.train import read_run_config, run_dir_for   # the training package: when a page asks

    unknown = sorted(set(params) - set(NOTEBOOK_PARAMETERS))
    if unknown:
        raise ConfigError(f"unknown notebook parameter(s) {unknown}; the notebooks take "
                          f"{sorted(NOTEBOOK_PARAMETERS)}")
    p = parameter_defaults() | params
    settings: dict[str, Any] = dict(dataset=p["dataset"], backbone=p["backbone"], seed=p["seed"],
                                    device=p["device"],
                                    protocol=p["protocol"] or default_protocol(p["dataset"]))
    for key in ("stage1_epochs", "stage2_epochs"):
        if p[key] is not None:
            settings[key] = p[key]
    if not isinstance(p["overrides"] or {}, dict):
        raise ConfigError(f"notebook parameter 'overrides' must be a dict of config keys, got {p['overrides']!r}")
    cfg = make_preset(p["preset"], p["overrides"], smoke=p["smoke"], **settings)
    explicit = p["run_dir"] is not None
    if explicit:
        run_dir = Path(p["run_dir"]).expanduser()
        run_dir = run_dir if run_dir.is_absolute() else REPO_ROOT / run_dir
    else:
        run_dir = run_dir_for(cfg, runs_root() / "book", resolve_preset(p["preset"], smoke=p["smoke"]))
    if (run_dir / "config.json").is_file():
        cfg = _existing_run_config(cfg, read_run_config(run_dir), run_dir, explicit)
    if cfg.recipe != "paper":
        raise ConfigError(f"{run_dir}: a run of recipe {cfg.recipe!r}; the notebooks show the paper "
                          f"recipe (Stage I then Stage II)")
    return cfg, run_dir


#: Config keys that change how a run executes, not what it computes.
RUNTIME_KEYS = ("device", "progress", "num_threads", "loader_workers")


def _existing_run_config(cfg: Config, stored: Config, run_dir: Path, explicit: bool) -> Config:
    """The config to show of a run directory that already holds a run of ``stored``.

    An explicitly given ``run_dir`` is opened with its own stored config, so the notebooks can
    show any finished run (e.g. one trained with ``python -m dualpath.train``) as it is. The
    default run directory must hold a run of the parameters' config (runtime keys aside):
    otherwise its stored results would be shown under settings they were not computed with.
    """
    if not explicit:
        mine, theirs = cfg.to_dict(), stored.to_dict()
        differ = sorted(k for k in mine if k not in RUNTIME_KEYS and mine[k] != theirs[k])
        if differ:
            raise ConfigError(f"{run_dir} holds a run with other settings (keys {differ} differ, "
                              f"e.g. {differ[0]} = {theirs[differ[0]]!r} there, {mine[differ[0]]!r} "
                              f"here): delete the folder to train anew, or pass run_dir to show "
                              f"that run as it is")
    return stored


def settings_table(cfg: Config, run_dir: Path, keys: Sequence[str] = (
        "dataset", "subset", "backbone", "text_width", "feature_dim", "word_vectors", "max_len",
        "batch_size", "stage1_epochs", "stage2_epochs", "finetune_blocks", "seed")):
    """A small table of the settings a notebook ran with (for display at its top)."""
    import pandas as pd

    d = cfg.to_dict()
    rows = {k: str(d[k]) if d[k] != "" else "(full splits)" for k in keys}
    try:
        shown = run_dir.resolve().relative_to(REPO_ROOT)
    except ValueError:
        shown = Path("…") / run_dir.parent.name / run_dir.name
    rows["run_dir"] = str(shown)
    return pd.DataFrame({"value": rows}).rename_axis("setting")


def run_note(cfg: Config) -> str:
    """One Markdown paragraph on what kind of run a page shows (a smoke run measures nothing)."""
    if cfg.subset == "mini":
        return ("**Smoke run.** These outputs come from the `smoke` preset: the mini splits "
                "(200 / 50 / 100 images), a tiny model and a few epochs. They show that the code "
                "runs end to end; the numbers measure nothing. `make book` executes this page "
                "with the full splits.")
    return (f"**Run.** Preset settings on the full `{cfg.dataset}` splits, "
            f"{cfg.stage1_epochs} + {cfg.stage2_epochs} epochs, seed {cfg.seed}.")


def page_log(line: str) -> None:
    """Print a training log line as a page may show it: the runs, cache and repository folders
    by their short names, never this machine's absolute paths."""
    from dualpath.paths import cache_root

    for root, shown in ((runs_root(), "runs"), (cache_root(), "cache"), (REPO_ROOT, ".")):
        line = line.replace(str(Path(root).resolve()), shown).replace(str(root), shown)
    print(line)


def plain(value: Any) -> Any:
    """numpy / torch scalars -> Python numbers (myst-nb's ``{glue:text}`` parses ``repr``, and
    ``np.float64(1.5)`` is not a literal); floats are rounded to 4 decimals."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float):
        return round(value, 4)
    return value


def readable(table: "pd.DataFrame | pd.Series", decimals: int = 2) -> "pd.DataFrame":
    """A table as a reader sees it: integers without a decimal point, other numbers rounded to
    ``decimals`` places (never ``-0.00``, never in exponent notation), empty cells where a value is
    missing. Build the table with ``dtype=object`` where a column mixes integers and floats, so
    that the integers stay integers."""
    import math

    import numpy as np
    import pandas as pd

    frame = table.to_frame() if isinstance(table, pd.Series) else table

    def cell(v: Any) -> Any:
        v = plain(v)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float)):
            return v
        if isinstance(v, int):
            return str(v)
        return f"{round(v, decimals) + 0.0:.{decimals}f}"   # + 0.0 turns -0.0 into 0.0

    return frame.apply(lambda col: col.map(cell))


def glue_values(**values: Any) -> None:
    """``myst_nb.glue`` each value under its name, hidden, as plain Python numbers or text.

    Markdown cells then show them with ``{glue:text}`name:.1f``` (same page) or
    ``{glue:text}`path/to/notebook::name:.1f``` (another page).
    """
    from myst_nb import glue

    for key, value in values.items():
        glue(key, plain(value), display=False)
