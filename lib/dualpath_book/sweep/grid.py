"""A grid file: notebooks, parameters, arms, seeds, and the links between runs; read and validated.

A grid file (YAML) names notebooks, shared parameters, arms and seeds::

    name: smoke                           # folder under --out; default: the file's stem
    notebook: ../notebooks/02_stage1.ipynb  # default notebook; an arm may override it
    seeds: [0, 1, 2]
    base: {smoke: true, epochs: 1}        # parameters shared by every arm
    arms:
      - name: ranking_only
        params: {stage: ranking}
      - name: paper
        notebook: ../notebooks/03_stage2.ipynb
        params: {lr: 0.001}
    metrics: metrics.json                 # flat JSON dict each run writes into its run_dir
    returns: [test_ranks.npz]             # other files of a run the sweep keeps (see below)

A run's record and the files it names (``metrics`` and ``returns``) come back from the worker
that ran it to the machine of the sweep, which writes them into its own run folder; everything
else a run writes (checkpoints, the executed notebook, its log) stays where it ran.

Two arm keys say that runs depend on each other (every seed pairs with the same seed):

* a parameter value ``"@<arm>"`` is replaced by that arm's run folder, and the run waits until
  that run is done (e.g. ``stage1_from: "@loss-paper"``: start from its Stage I);
* ``same_as: <arm>`` or ``same_as: <grid>/<arm>`` (a grid under the same ``--out``): the arm *is*
  that run under another name, so it is not run again; once the source is done its record is
  copied into the arm's folder, with ``same_as`` naming the source. The source must have been
  run with exactly this arm's parameters and notebook.

Relative notebook paths are looked up beside the grid file, then from the repository root
holding it. Each run gets the parameters ``base | arm.params | {seed, run_dir}``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dualpath.errors import ConfigError

from ..notebook_run import notebook_parameters

RESERVED_PARAMS = ("seed", "run_dir")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_GRID_KEYS = {"name", "description", "notebook", "seeds", "base", "arms", "metrics", "returns",
              "families", "reference", "budget"}   # the last three: read by the ablation chapter, not by the runner
_ARM_KEYS = {"name", "description", "notebook", "params", "same_as"}
REF = "@"   # a parameter value "@<arm>": that arm's run folder of the same seed

@dataclass(frozen=True)
class Arm:
    name: str
    notebook: Path  # resolved, absolute
    notebook_label: str  # as written in the grid file: what staleness is judged on
    params: dict[str, Any]
    same_as: str | None = None   # '<arm>' or '<grid>/<arm>': this arm is that run, not run again

    @property
    def needs(self) -> tuple[str, ...]:
        """Arms whose run of the same seed this arm's parameters name (``"@<arm>"``)."""
        return tuple(v[len(REF):] for v in self.params.values() if isinstance(v, str) and v.startswith(REF))


@dataclass(frozen=True)
class Grid:
    path: Path
    name: str
    seeds: tuple[int, ...]
    arms: tuple[Arm, ...]
    metrics: str
    returns: tuple[str, ...] = ()   # files besides the metrics that come back from a run's worker


def load_grid(path: str | os.PathLike) -> Grid:
    """Read and validate a grid file; every problem is a ConfigError naming the file and key."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"grid file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    where = _Where(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {sorted(_GRID_KEYS)}")
    where.check_keys(raw, _GRID_KEYS, "")
    if "arms" not in raw:
        raise where.error("arms", "is required")

    name = _safe_name(where, "name", raw.get("name", path.stem))
    _typed(where, "description", raw.get("description", ""), str)
    seeds = _seeds(where, raw.get("seeds", [0]))
    base = _params(where, "base", raw.get("base") or {})
    metrics = _file_name(where, "metrics", raw.get("metrics", "metrics.json"))
    returns = tuple(_file_name(where, f"returns[{i}]", file)
                    for i, file in enumerate(_typed(where, "returns", raw.get("returns", []), list)))
    default_nb = raw.get("notebook")
    if default_nb is not None:
        _typed(where, "notebook", default_nb, str)

    arms_raw = _typed(where, "arms", raw["arms"], list)
    if not arms_raw:
        raise where.error("arms", "needs at least one arm")
    arms = [_arm(where, i, a, base, default_nb) for i, a in enumerate(arms_raw)]
    seen: dict[str, int] = {}
    for i, arm in enumerate(arms):
        if arm.name in seen:
            raise where.error(f"arms[{i}].name", f"duplicate arm name {arm.name!r} (also arms[{seen[arm.name]}])")
        seen[arm.name] = i
    _check_links(where, arms, name)
    return Grid(path=path, name=name, seeds=seeds, arms=tuple(arms), metrics=metrics, returns=returns)


def _check_links(where: "_Where", arms: list[Arm], grid_name: str) -> None:
    """``"@<arm>"`` and ``same_as`` name arms that run themselves: one level, no cycles."""
    by_name = {a.name: a for a in arms}
    for i, arm in enumerate(arms):
        for ref in arm.needs:
            target = by_name.get(ref)
            if target is None or target is arm or target.needs or target.same_as:
                why = ("is not an arm of this grid" if target is None else "is this arm itself"
                       if target is arm else "depends on another run itself")
                raise where.error(f"arms[{i}].params", f"'{REF}{ref}' {why}; name an arm that runs on its own")
        if arm.same_as is None:
            continue
        if arm.needs:
            raise where.error(f"arms[{i}].same_as", "an arm that is another run has no parameters of its own to resolve")
        grid, _, other = arm.same_as.rpartition("/")
        if grid in ("", grid_name):
            target = by_name.get(other)
            if target is None or target is arm or target.same_as or target.needs:
                raise where.error(f"arms[{i}].same_as", f"{arm.same_as!r} must name another arm of this grid "
                                                        f"that runs on its own")
            if target.params != arm.params or target.notebook_label != arm.notebook_label:
                raise where.error(f"arms[{i}].same_as", f"arm {other!r} runs other parameters or another "
                                                        f"notebook than {arm.name!r}; they are not the same run")


@dataclass(frozen=True)
class _Where:
    """Formats errors as '<grid file>: key <dotted.key>: <problem>'."""

    path: Path

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: key '{key}': {problem}")

    def check_keys(self, mapping: dict, allowed: set[str], prefix: str) -> None:
        for key in mapping:
            if key not in allowed:
                raise self.error(f"{prefix}{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _typed(where: _Where, key: str, value: Any, kind: type) -> Any:
    # bool is an int subclass; a seed or count of `true` is always a typo
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise where.error(key, f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _safe_name(where: _Where, key: str, value: Any) -> str:
    """Arm and grid names become folder names, so only a portable alphabet is allowed."""
    _typed(where, key, value, str)
    if not _SAFE_NAME.fullmatch(value):
        raise where.error(key, f"{value!r} is not a safe folder name (letters, digits, '_', '-', '.'; "
                               "starting with a letter or digit; at most 100 characters)")
    return value


def _seeds(where: _Where, value: Any) -> tuple[int, ...]:
    _typed(where, "seeds", value, list)
    if not value:
        raise where.error("seeds", "needs at least one seed")
    for i, seed in enumerate(value):
        _typed(where, f"seeds[{i}]", seed, int)
    if len(set(value)) != len(value):
        raise where.error("seeds", f"has duplicates: {value}")
    return tuple(value)


def _params(where: _Where, key: str, value: Any) -> dict[str, Any]:
    _typed(where, key, value, dict)
    for name, v in value.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise where.error(f"{key}.{name}", "parameter names must be Python identifiers")
        if name in RESERVED_PARAMS:
            raise where.error(f"{key}.{name}", f"is set by the sweep itself (reserved: {', '.join(RESERVED_PARAMS)})")
        try:
            # parameters are stored in JSON markers and compared on rerun
            if json.loads(json.dumps(v)) != v:
                raise TypeError("does not survive a JSON round trip")
        except (TypeError, ValueError) as e:
            raise where.error(f"{key}.{name}", f"value {v!r} is not plain JSON data ({e})") from None
    return dict(value)


def _file_name(where: _Where, key: str, value: Any) -> str:
    _typed(where, key, value, str)
    rel = Path(value)
    if rel.is_absolute() or ".." in rel.parts or not value.strip():
        raise where.error(key, f"{value!r} must be a file name relative to the run folder")
    return value


def _arm(where: _Where, i: int, raw: Any, base: dict, default_nb: str | None) -> Arm:
    key = f"arms[{i}]"
    _typed(where, key, raw, dict)
    where.check_keys(raw, _ARM_KEYS, f"{key}.")
    if "name" not in raw:
        raise where.error(f"{key}.name", "is required")
    name = _safe_name(where, f"{key}.name", raw["name"])
    _typed(where, f"{key}.description", raw.get("description", ""), str)
    params = _params(where, f"{key}.params", raw.get("params") or {})
    label = raw.get("notebook", default_nb)
    if label is None:
        raise where.error(f"{key}.notebook", f"arm {name!r} has no notebook and the grid sets no default 'notebook'")
    nb_key = f"{key}.notebook" if "notebook" in raw else "notebook"
    notebook = _resolve_notebook(where, nb_key, _typed(where, nb_key, label, str))
    origin = {**{k: "base" for k in base}, **{k: f"{key}.params" for k in params}}
    _check_parameters(where, nb_key, notebook, origin)
    same_as = raw.get("same_as")
    if same_as is not None:
        _typed(where, f"{key}.same_as", same_as, str)
        parts = same_as.split("/")
        if len(parts) > 2 or not all(_SAFE_NAME.fullmatch(p) for p in parts):
            raise where.error(f"{key}.same_as", f"{same_as!r} must be '<arm>' or '<grid>/<arm>'")
    return Arm(name=name, notebook=notebook, notebook_label=label, params={**base, **params}, same_as=same_as)


def _resolve_notebook(where: _Where, key: str, label: str) -> Path:
    """Look beside the grid file, then from the repository root, so both styles work."""
    candidates = [where.path.parent / label]
    root = _repo_root(where.path.parent)
    if root is not None:
        candidates.append(root / label)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise where.error(key, f"notebook {label!r} not found (looked for {tried})")


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _check_parameters(where: _Where, nb_key: str, notebook: Path, origin: dict[str, str]) -> None:
    """Fail before any kernel starts if a parameter would be silently ignored (a typo)."""
    try:
        declared = notebook_parameters(notebook)
    except ConfigError as e:
        raise where.error(nb_key, str(e)) from None
    for name in (*RESERVED_PARAMS, *origin):
        if name not in declared:
            key = f"{origin[name]}.{name}" if name in origin else nb_key
            raise where.error(key, f"notebook {notebook} declares no parameter {name!r} in its "
                                   f"'parameters' cell (it declares: {', '.join(declared) or 'nothing'})")

