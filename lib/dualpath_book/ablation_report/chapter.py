"""What the ablation chapter compares, read from the grid files: its families (one page each), the
budget curve, the reference arm and each arm's parameters.

Each :class:`Family` is a set of arms, a claim about them (the paper's, the official code's or our
reading's) and the comparison that tests it; the families live in the grid files beside the arms
they compare (``families:``). The grids are read when first asked for (:func:`chapter`), not at
import.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from dualpath.errors import ConfigError

from ..layout import GRIDS_DIR

# who makes each claim, as the verdict says it (SPEC confirms only what the abstract states)
CLAIMED_BY = {
    "paper": ("The paper claims that {claim}.", "the paper"),
    "code": ("The official code's design assumes that {claim} (whether the paper tests it could not be "
             "checked here).", "the official code's design"),
    "reading": ("Our reading of the method is that {claim} (neither the paper nor the official code says "
                "so).", "our reading"),
}


@dataclass(frozen=True)
class Family:
    key: str
    title: str
    arms: tuple[str, ...]          # shown in this order; labels below
    labels: tuple[str, ...]
    claim: str                     # what the paper says, or the code assumes, in one clause
    better: str                    # the arm the claim expects to win ...
    worse: str                     # ... against this one
    claimed_by: str = "paper"      # a key of CLAIMED_BY: who makes the claim, as far as SPEC can tell
    page: str = ""                 # book/ablations/<page>.md shows it; '': its own page, named by its key

    @property
    def page_name(self) -> str:
        return self.page or self.key


def _grid_file(grid_path: str | Path) -> dict:
    """A grid file's YAML; each text is parsed once, whichever of the readers below asks."""
    return _parse_grid(Path(grid_path).read_text())


@functools.lru_cache(maxsize=8)
def _parse_grid(text: str) -> dict:
    import yaml   # the grid's arms are the sweep's to validate (sweep.load_grid); here only their names

    return yaml.safe_load(text)


def load_families(grid_path: str | Path) -> tuple[Family, ...]:
    """The chapter's pages from a grid file's ``families`` section, each arm checked against the
    grid's arms (a typo would otherwise show as an arm never measured)."""
    grid_path = Path(grid_path)
    grid = _grid_file(grid_path)
    arms = {a.get("name") for a in grid.get("arms") or [] if isinstance(a, dict)}
    raw = grid.get("families")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{grid_path}: needs a 'families' list (the chapter's pages)")
    families = []
    for i, f in enumerate(raw):
        where = f"{grid_path}: families[{i}]"
        missing = {"key", "title", "claim", "better", "worse", "arms"} - set(f)
        if missing:
            raise ConfigError(f"{where} lacks {sorted(missing)}")
        names = tuple(a["arm"] for a in f["arms"])
        unknown = sorted(set(names) - arms)
        if unknown or not {f["better"], f["worse"]} <= set(names):
            raise ConfigError(f"{where} ({f['key']}) names arms {unknown or [f['better'], f['worse']]} "
                              f"that are not among its arms or the grid's")
        claimed_by = f.get("claimed_by", "paper")
        if claimed_by not in CLAIMED_BY:
            raise ConfigError(f"{where} ({f['key']}): claimed_by {claimed_by!r} is not one of {sorted(CLAIMED_BY)}")
        families.append(Family(f["key"], f["title"], names, tuple(a["label"] for a in f["arms"]),
                               f["claim"], f["better"], f["worse"], claimed_by, f.get("page", "")))
    return tuple(families)


@dataclass(frozen=True)
class Budget:
    """The central claim over budgets: per recipe a label and its arm at each percent of the cpu
    run's epochs (the grid's ``budget:`` section)."""
    title: str
    labels: dict[str, str]               # recipe -> label
    arms: dict[str, dict[int, str]]      # recipe -> percent -> arm


def load_budget(grid_path: str | Path) -> Budget:
    grid_path = Path(grid_path)
    grid = _grid_file(grid_path)
    raw = grid.get("budget")
    arms = {a.get("name") for a in grid.get("arms") or [] if isinstance(a, dict)}
    if not isinstance(raw, dict) or not isinstance(raw.get("recipes"), dict):
        raise ConfigError(f"{grid_path}: needs a 'budget' section with 'recipes' (the budget curve)")
    labels, by_recipe = {}, {}
    for recipe, spec in raw["recipes"].items():
        points = {int(k): v for k, v in spec["arms"].items()}
        unknown = sorted(set(points.values()) - arms)
        if unknown:
            raise ConfigError(f"{grid_path}: budget.recipes.{recipe} names arms {unknown} the grid lacks")
        labels[recipe], by_recipe[recipe] = spec["label"], points
    return Budget(raw.get("title", "budget"), labels, by_recipe)


def reference_arm(grid_path: str | Path) -> str:
    return _grid_file(grid_path)["reference"]


def arm_parameters(grid_path: str | Path) -> dict[str, dict]:
    """Each arm's parameters as the sweep passes them: the grid's base, then the arm's own."""
    grid = _grid_file(grid_path)
    return {a["name"]: {**grid.get("base", {}), **a.get("params", {})} for a in grid["arms"]}


@dataclass(frozen=True)
class Chapter:
    """The chapter's comparisons: the current sweep's (``grids/ablations.yaml``), the first sweep's
    (the appendix, ``grids/ablations_short.yaml``) and the loss comparison at the book's budget
    (``grids/central.yaml``: the same Stage II for every arm, only phase 1 differs)."""
    families: tuple[Family, ...]
    budget: Budget
    reference: str                      # the arm every other is compared with: the book recipe
    arm_parameters: dict[str, dict]
    short_families: tuple[Family, ...]
    central: Family

    @property
    def budget_preset(self) -> str:
        """The chapter's budget: the reference arm's preset."""
        return self.arm_parameters[self.reference]["preset"]

    @property
    def recipe_preset(self) -> str:
        """The recipe the chapter shortens: the preset of the budget curve's whole-budget point
        (``cpu-narrow``, the book's run before the deep text CNN; the ``cpu`` preset moved on)."""
        whole = {arm for points in self.budget.arms.values() for p, arm in points.items() if p == 100}
        presets = {self.arm_parameters[arm]["preset"] for arm in whole}
        if len(presets) != 1:
            raise ConfigError(f"grids/ablations.yaml: the budget curve's 100% arms use presets {sorted(presets)}; "
                              "they must share one, the recipe the chapter shortens")
        return presets.pop()

    @property
    def by_key(self) -> dict[str, Family]:
        """The current sweep's families and ``central``, by key."""
        return {f.key: f for f in (*self.families, self.central)}

    def family(self, family: Family | str) -> Family:
        """A family, or the key of one of :attr:`by_key`."""
        return family if isinstance(family, Family) else self.by_key[family]


@functools.cache
def chapter() -> Chapter:
    grid = GRIDS_DIR / "ablations.yaml"
    (central,) = load_families(GRIDS_DIR / "central.yaml")
    return Chapter(load_families(grid), load_budget(grid), reference_arm(grid), arm_parameters(grid),
                   load_families(GRIDS_DIR / "ablations_short.yaml"), central)


def stage1_is_instance(arm: str) -> bool:
    """Whether the arm's first phase is the paper's Stage I (the instance losses): the arms of
    another ``recipe`` train the ranking loss, or both losses, in it."""
    return chapter().arm_parameters[arm].get("recipe", "paper") == "paper"


def epochs_of(arm: str) -> tuple[int, int]:
    """The epochs of the two phases an arm of the chapter's grid trains (preset + overrides); the
    first is Stage I where :func:`stage1_is_instance`."""
    from ..ablation import arm_config

    params = chapter().arm_parameters[arm]
    cfg = arm_config(params["preset"], params.get("overrides"))
    return cfg.stage1_epochs, cfg.stage2_epochs
