"""Runs that depend on other runs in a sweep: ``"@<arm>"`` parameters and ``same_as`` arms
(tests/book/fixtures/sweep_notebook.ipynb: its ``source`` parameter adds another run's score to its own)."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from dualpath.errors import ConfigError
from dualpath_book.sweep import DONE, load_grid, run_sweep
from test_sweep import write_grid


def test_a_run_that_names_another_arm_gets_its_folder_and_runs_after_it(tmp_path):
    # listed first, the dependent arm still runs after the arm it names
    grid = write_grid(tmp_path, [{"name": "next", "params": {"value": 2.0, "source": "@base"}},
                                 {"name": "base", "params": {"value": 1.0}}])
    lines: list[str] = []
    table = run_sweep(grid, tmp_path / "out", jobs=2, log=lines.append).set_index(["arm", "seed"])
    assert table.loc[("base", 1), "score"] == 11.0
    assert table.loc[("next", 0), "score"] == 20.0 + 10.0 and table.loc[("next", 1), "score"] == 21.0 + 11.0
    assert table.loc[("next", 0), "param_source"] == "@base"   # the record keeps the grid's words
    started = [line for line in lines if line.endswith("started")]
    assert all("base" in line for line in started[:2]) and all("next" in line for line in started[2:])


def test_a_run_whose_source_failed_waits_and_runs_once_the_source_is_done(tmp_path):
    grid = write_grid(tmp_path, [{"name": "base", "params": {"fail": True}},
                                 {"name": "next", "params": {"source": "@base"}}])
    lines: list[str] = []
    table = run_sweep(grid, tmp_path / "out", log=lines.append)
    assert set(table["arm"]) == {"base"} and sum("waiting (needs base" in line for line in lines) == 2
    grid.write_text(grid.read_text().replace("fail: true", "fail: false"))
    table = run_sweep(grid, tmp_path / "out", log=lines.append).set_index(["arm", "seed"])
    assert table.loc[("next", 1), "score"] == 11.0 + 11.0


def test_a_same_as_arm_is_the_other_run_under_its_own_name_and_is_not_run_again(tmp_path):
    grid = write_grid(tmp_path, [{"name": "base", "params": {"value": 1.0}},
                                 {"name": "alias", "same_as": "base", "params": {"value": 1.0}}])
    lines: list[str] = []
    table = run_sweep(grid, tmp_path / "out", log=lines.append).set_index(["arm", "seed"])
    assert sum(line.endswith("started") for line in lines) == 2
    assert table.loc[("alias", 1), "score"] == table.loc[("base", 1), "score"] == 11.0
    assert table.loc[("alias", 0), "same_as"] == "g/base/seed0" and pd.isna(table.loc[("base", 0), "same_as"])
    record = json.loads((tmp_path / "out" / "g" / "alias" / "seed0" / DONE).read_text())
    assert record["arm"] == "alias" and record["run_dir"] == str(tmp_path / "out" / "g" / "base" / "seed0")
    assert not (tmp_path / "out" / "g" / "alias" / "seed0" / "metrics.json").exists()


def test_a_same_as_arm_is_in_the_table_as_soon_as_its_run_is_done(tmp_path):
    # a sweep that stops later (a session's end) has committed the alias with its source
    grid = write_grid(tmp_path, [{"name": "base", "params": {"value": 1.0}},
                                 {"name": "alias", "same_as": "base", "params": {"value": 1.0}}])
    results = tmp_path / "out" / "g" / "results.csv"
    seen: dict[str, set] = {}

    def log(line: str) -> None:
        if "base seed0: done" in line:   # said once the run's record, its aliases and the table are written
            table = pd.read_csv(results)
            seen["rows"] = set(zip(table["arm"], table["seed"]))

    run_sweep(grid, tmp_path / "out", jobs=1, log=log)
    assert seen["rows"] == {("base", 0), ("alias", 0)}


def test_a_same_as_arm_may_name_a_run_of_another_grid_and_checks_its_settings(tmp_path):
    first = write_grid(tmp_path, [{"name": "base", "params": {"value": 1.0}}])
    run_sweep(first, tmp_path / "out", log=lambda line: None)
    other = tmp_path / "other"
    other.mkdir()
    grid = write_grid(other, [{"name": "same", "same_as": "g/base", "params": {"value": 1.0}},
                              {"name": "differs", "same_as": "g/base", "params": {"value": 2.0}}], name="h")
    lines: list[str] = []
    table = run_sweep(grid, tmp_path / "out", log=lines.append).set_index(["arm", "seed"])
    assert table.loc[("same", 1), "score"] == 11.0 and "differs" not in table.index.get_level_values("arm")
    assert any("not copied" in line and "differs" in line for line in lines)


@pytest.mark.parametrize("arms, key, message", [
    ([{"name": "a", "params": {"source": "@nope"}}], "arms[0].params", "'@nope' is not an arm of this grid"),
    ([{"name": "a", "params": {"source": "@a"}}], "arms[0].params", "is this arm itself"),
    ([{"name": "a", "params": {"value": 2.0}}, {"name": "b", "params": {"source": "@a"}},
      {"name": "c", "params": {"source": "@b"}}], "arms[2].params", "depends on another run itself"),
    ([{"name": "a"}, {"name": "b", "same_as": "a", "params": {"value": 2.0}}], "arms[1].same_as",
     "not the same run"),
    ([{"name": "a", "same_as": "x/y/z"}], "arms[0].same_as", "'<arm>' or '<grid>/<arm>'"),
    ([{"name": "a", "same_as": "a"}], "arms[0].same_as", "another arm of this grid"),
])
def test_bad_links_name_the_file_and_the_key(tmp_path, arms, key, message):
    path = write_grid(tmp_path, arms)
    with pytest.raises(ConfigError) as caught:
        load_grid(path)
    assert str(path) in str(caught.value) and f"'{key}'" in str(caught.value) and message in str(caught.value)


def test_runs_committed_as_a_table_are_restored_and_not_run_again(tmp_path):
    """--restore: a machine that lost the run folders resumes from the committed results.csv;
    the restored records give back the very rows, and a same_as source may be restored too."""
    arms = [{"name": "base", "params": {"value": 1.0}}, {"name": "next", "params": {"value": 2.0}}]
    first = write_grid(tmp_path, arms)
    run_sweep(first, tmp_path / "a", log=lambda line: None)
    committed = (tmp_path / "a" / "g" / "results.csv").read_text().splitlines()
    kept = [line for line in committed if not line.startswith("g,next,1,")]   # as if it never finished
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "g.csv").write_text("\n".join(kept) + "\n")
    lines: list[str] = []
    table = run_sweep(first, tmp_path / "b", log=lines.append, restore=tables)   # a fresh machine
    assert [ln.split(": ")[0] for ln in lines if ln.endswith("started")] == ["[4/4] next seed1"]
    assert table.set_index(["arm", "seed"]).loc[("next", 1), "score"] == 21.0
    again = (tmp_path / "b" / "g" / "results.csv").read_text().splitlines()
    assert [ln for ln in again if not ln.startswith("g,next,1,")] == kept   # restored rows, unedited
    record = json.loads((tmp_path / "b" / "g" / "base" / "seed0" / DONE).read_text())
    assert record["restored_from"] == (tables / "g.csv").as_posix() and record["params"] == {"value": 1.0}
    # a same_as arm of another grid: its source is restored from that grid's table
    other = tmp_path / "other"
    other.mkdir()
    grid = write_grid(other, [{"name": "alias", "same_as": "g/base", "params": {"value": 1.0}}], name="h")
    shutil.rmtree(tmp_path / "b" / "g")
    h = run_sweep(grid, tmp_path / "b", log=lines.append, restore=tables).set_index(["arm", "seed"])
    assert h.loc[("alias", 0), "score"] == 10.0 and h.loc[("alias", 0), "same_as"] == "g/base/seed0"
    with pytest.raises(ConfigError, match="no such folder"):
        run_sweep(first, tmp_path / "b", restore=tmp_path / "nope", log=lambda line: None)


def test_a_record_comes_back_from_its_row_with_its_list_and_dict_parameters(tmp_path):
    from dualpath_book.sweep.results import _row, record_from_row

    record = {"grid": "g", "arm": "a", "seed": 2, "status": "done", "wall_s": 3.5, "resumed": False,
              "params": {"preset": "cpu", "overrides": {"text_blocks": [3, 4, 6, 1]}, "steps": [1, 2]},
              "metrics": {"rsum": 230.68, "seed": 7, "stage1_from": "loss-paper/seed2", "i2t_medr": 7}}
    row = _row(record, tmp_path / "g" / "a" / "seed2", tmp_path / "g")
    (tmp_path / "t.csv").write_text(pd.DataFrame([row]).to_csv(index=False))
    back = record_from_row(pd.read_csv(tmp_path / "t.csv").iloc[0])
    assert back["params"] == record["params"] and back["metrics"] == record["metrics"]
    assert {k: back[k] for k in ("grid", "arm", "seed", "status", "wall_s", "resumed")} == {
        k: record[k] for k in ("grid", "arm", "seed", "status", "wall_s", "resumed")}
