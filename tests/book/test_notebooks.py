"""The book's notebooks and the pipeline that executes them (``dualpath_book.pipeline``).

Fast checks read the stored notebooks. The end-to-end test (``slow``, a few minutes on two
cores) runs the whole pipeline on the mini splits into a temporary copy of the book, builds it
with ``jupyter-book build -W -n`` and inspects the HTML; it then reruns the pipeline, which must
skip every notebook, and changes a parameter, which must re-execute.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

from dualpath.config import preset
from dualpath_book import page, pipeline, prose
from dualpath_book.site import htmlcheck, mathjax, tryit
from dualpath.errors import ConfigError
from dualpath_book.layout import REPO_ROOT

from test_htmlcheck import needs_browser

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
COLAB = "https://colab.research.google.com/github/dualpath-book/dualpath-book/blob/main/notebooks/{}.ipynb"


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def test_notebooks_exist_in_reading_order():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_data", "02_stage1", "03_stage2", "04_evaluation", "05_results", "06_ablations"]
    assert [p.stem for p in pipeline.notebooks()] == names


# ------------------------------------------------------------------------------ (a) stored clean
ALL_NOTEBOOKS = sorted((REPO_ROOT / "notebooks").rglob("*.ipynb"))   # the sweep's arm notebook too


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
        assert "papermill" not in cell.metadata, f"{path.name} cell {i} was saved after papermill ran"
    assert "papermill" not in nb.metadata


# ------------------------------------------------------------------------- (b) parameters, header
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_with_documented_parameters(path):
    nb = _read(path)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    inspected = papermill.inspect_notebook(str(path))
    assert set(inspected) == set(page.NOTEBOOK_PARAMETERS)
    for name, (default, _, _) in page.NOTEBOOK_PARAMETERS.items():
        param = inspected[name]
        assert param["help"].strip(), f"{path.name}: parameter {name} has no help comment"
        assert param["inferred_type_name"] != "None", f"{path.name}: parameter {name} has no type annotation"
        assert eval(param["default"]) == default, f"{path.name}: {name} defaults to {param['default']}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_badge_and_conditional_install(path):
    nb = _read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert COLAB.format(path.stem) in first.source
    install = next(c for c in nb.cells if c.cell_type == "code")
    assert "import dualpath" in install.source and "except ImportError" in install.source
    assert "git+https://github.com/dualpath-book/dualpath-book" in install.source
    # the shared parameters -> (Config, run_dir) logic lives in the package, not in the notebook
    setup = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "setup(globals()" in setup and "preset(" not in setup.replace("named_preset(", "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_prose_numbers_are_glued(path):
    """No digits typed into the prose of the result notebooks, outside math, code and links."""
    if path.stem in ("01_data", "02_stage1", "03_stage2"):   # method facts (λ, L) appear in prose there
        return
    for cell in _read(path).cells:
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"\{glue[^}]*\}`[^`]*`", "", cell.source)
        text = re.sub(r"```.*?```|`[^`]*`|R@\d+|\$[^$]*\$|\([^)]*://[^)]*\)|\{doc\}`[^`]*`|^#.*$", "", text,
                      flags=re.S | re.M)
        assert not re.search(r"\d", text), f"{path.name}: a number typed in prose: {text!r}"


def test_cross_page_glue_roles_carry_a_format():
    """myst-nb splits a role's format at its last colon, so `nb.ipynb::key` with none looks up the key
    'nb.ipynb:' and the build fails; only the smoke book build would notice, minutes later."""
    from dualpath_book.site.gluedeps import CROSS_PAGE_ROLE

    roles = [(md, notebook, key) for md in sorted((REPO_ROOT / "book").rglob("*.md"))
             for notebook, key in CROSS_PAGE_ROLE.findall(md.read_text())]
    assert roles, "no cross-page glue role found: the pattern no longer matches the pages"
    bare = [f"{md.relative_to(REPO_ROOT)}: {notebook}::{key}" for md, notebook, key in roles if ":" not in key]
    assert not bare, "cross-page glue roles without a format (add :s, :d or :.1f): " + "; ".join(bare)


# ----------------------------------------------------------------------------- pipeline units
def test_notebook_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALPATH_RUNS", str(tmp_path))
    cfg, run_dir = page.notebook_config()
    assert cfg.backbone == "efficientnet_lite0" and cfg.subset == ""
    assert run_dir == tmp_path / "book" / "cpu-efficientnet_lite0-seed0"
    cfg, run_dir = page.notebook_config(smoke=True, seed=3)
    assert cfg.subset == "mini" and cfg.seed == 3
    assert run_dir.name == "smoke-efficientnet_lite0-seed3"
    cfg, run_dir = page.notebook_config(smoke=True, stage1_epochs=1, dataset="coco_mini")
    assert cfg.stage1_epochs == 1 and run_dir.name == "coco_mini-smoke-efficientnet_lite0-seed0-epochs1+1"
    assert page.notebook_config(preset="cpu", stage2_epochs=10)[1].name == "cpu-efficientnet_lite0-seed0-epochs5+10"
    _, run_dir = page.notebook_config(run_dir="runs/x")
    assert run_dir == REPO_ROOT / "runs" / "x"
    with pytest.raises(ConfigError, match="unknown notebook parameter"):
        page.notebook_config(epochs=3)
    # overrides: any config key, validated, and a run directory of their own
    cfg, run_dir = page.notebook_config(smoke=True, overrides={"negatives": "sum"})
    other_cfg, other = page.notebook_config(smoke=True, overrides={"negatives": "hardest"})
    assert cfg.negatives == "sum" and run_dir.name == "smoke-efficientnet_lite0-seed0-2792c2cc04"
    assert other != run_dir and other_cfg.negatives == "hardest"
    with pytest.raises(ConfigError, match="negatives"):
        page.notebook_config(overrides={"negatives": "nearest"})
    with pytest.raises(ConfigError, match="must be a dict"):
        page.notebook_config(overrides="negatives=sum")
    with pytest.raises(ConfigError, match=r"\['seed'\] set what the caller sets itself"):
        page.notebook_config(overrides={"seed": 1})   # a parameter of its own


def test_an_existing_run_keeps_its_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALPATH_RUNS", str(tmp_path))
    cfg, run_dir = page.notebook_config(smoke=True)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(cfg.replace(device="cpu").to_json())
    again, _ = page.notebook_config(smoke=True, device="cuda")
    assert again.device == "cpu"          # runtime keys are taken from the run as it was
    # the default run directory must hold a run of these very settings ...
    stored = cfg.replace(lambda_txt=0.5)
    (run_dir / "config.json").write_text(stored.to_json())
    with pytest.raises(ConfigError, match=r"other settings \(keys \['lambda_txt'\]"):
        page.notebook_config(smoke=True)
    # ... while an explicit run_dir is shown as it is
    opened, same = page.notebook_config(run_dir=str(run_dir))
    assert same == run_dir and opened == stored
    (run_dir / "config.json").write_text(stored.replace(recipe="ranking").to_json())
    with pytest.raises(ConfigError, match="recipe 'ranking'"):
        page.notebook_config(run_dir=str(run_dir))


def test_parse_value():
    assert pipeline.parse_value("1") == 1 and pipeline.parse_value("0.5") == 0.5
    assert pipeline.parse_value("None") is None and pipeline.parse_value("null") is None
    assert pipeline.parse_value("true") is True and pipeline.parse_value("False") is False
    assert pipeline.parse_value("resnet50") == "resnet50" and pipeline.parse_value("'x'") == "x"


def test_cache_key_follows_its_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALPATH_RUNS", str(tmp_path))
    by_name = {nb.stem: nb for nb in NOTEBOOKS}
    data, stage1, ablations = by_name["01_data"], by_name["02_stage1"], by_name["06_ablations"]
    assert [pipeline.depends_on(nb) for nb in (data, stage1, ablations)] == ["data", "run", "tables"]
    keys = {nb: pipeline.cache_key(nb, {"smoke": True})["key"] for nb in (data, stage1, ablations)}
    assert pipeline.cache_key(stage1, {"smoke": True})["key"] == keys[stage1]
    assert len(set(keys.values())) == 3
    # the seed changes what every run notebook and the data page show, not the ablation tables
    seed1 = {nb: pipeline.cache_key(nb, {"smoke": True, "seed": 1})["key"] for nb in keys}
    assert seed1[data] != keys[data] and seed1[stage1] != keys[stage1] and seed1[ablations] == keys[ablations]
    # a training parameter reruns the training pages only
    longer = {nb: pipeline.cache_key(nb, {"smoke": True, "stage2_epochs": 3})["key"] for nb in keys}
    assert longer[stage1] != keys[stage1] and longer[data] == keys[data] and longer[ablations] == keys[ablations]
    # so does a change of the run on disk (a finished or deleted run)
    _, run_dir = page.notebook_config(smoke=True)
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    assert pipeline.cache_key(stage1, {"smoke": True})["key"] != keys[stage1]
    assert pipeline.cache_key(data, {"smoke": True})["key"] == keys[data]


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    lib = str(REPO_ROOT / "lib")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (lib, env.get("PYTHONPATH")) if p)
    # two cores shared with whatever else runs: one torch thread per process avoids thrashing
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DUALPATH_PROGRESS="0")
    return env


def _pipeline(tmp_path: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dualpath_book.pipeline", "--quiet", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=timeout)


def test_failed_notebook_stops_the_pipeline(tmp_path):
    src = tmp_path / "nbs"
    src.mkdir()
    cells = [nbformat.v4.new_code_cell("smoke = False  # mini splits"),
             nbformat.v4.new_code_cell("raise RuntimeError('deliberate failure')")]
    cells[0].metadata["tags"] = ["parameters"]
    record = "import pathlib, sys\npathlib.Path('kernel_python.txt').write_text(sys.executable)"
    ok = nbformat.v4.new_notebook(cells=[cells[0], nbformat.v4.new_code_cell(record)])
    bad = nbformat.v4.new_notebook(cells=cells)
    for nb in (ok, bad):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(ok, src / "01_ok.ipynb")
    nbformat.write(bad, src / "02_bad.ipynb")
    nbformat.write(ok, src / "03_after.ipynb")
    out = tmp_path / "out"
    (out).mkdir()
    (out / "02_bad.ipynb").write_text("previous good copy")
    proc = _pipeline(tmp_path, "--smoke", "--out", str(out), "--runs", str(tmp_path / "runs"),
                     "--notebooks", str(src), timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "02_bad.ipynb failed" in proc.stderr and "deliberate failure" in proc.stderr
    assert (out / "01_ok.ipynb").is_file() and (out / "01_ok.key.json").is_file()
    assert (out / "02_bad.ipynb").read_text() == "previous good copy"   # atomic: not replaced
    assert (out / "02_bad.failed.ipynb").is_file() and not (out / "02_bad.key.json").exists()
    assert not (out / "03_after.ipynb").exists()                          # the pipeline stopped
    assert not list(out.glob(".*.tmp"))
    # the kernel is this interpreter, whatever kernelspecs are installed; cwd = the notebook's folder
    assert (src / "kernel_python.txt").read_text() == sys.executable
    assert nbformat.read(out / "01_ok.ipynb", 4).metadata["papermill"]["output_path"] == str(out / "01_ok.ipynb")


# ---------------------------------------------------------------------------- (c), (d) end to end
def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "jupyter_book.cli.main"]


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """The smoke pipeline into a copy of the book, then the HTML build: (root, pipeline seconds)."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO_ROOT / name, root / name)
    shutil.copytree(REPO_ROOT / "book", root / "book", ignore=shutil.ignore_patterns("generated"))
    # the book's own stylesheet (what keeps tables and code inside the column); MathJax comes below
    shutil.copytree(REPO_ROOT / "_static", root / "_static", ignore=shutil.ignore_patterns("mathjax", "tryit"))
    t0 = time.perf_counter()
    proc = _pipeline(root, "--smoke", "--out", str(root / "book" / "generated"), "--runs", str(root / "runs"))
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "6 executed, 0 skipped" in proc.stdout, proc.stdout
    mathjax.vendor(root)      # what `make html` does before it builds
    tryit.stage(root, root / "book" / "generated" / "try_it")
    build = subprocess.run([*_jupyter_book(), "build", str(root), "-W", "-n", "--keep-going"],
                           cwd=root, env=_env(root), capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-2000:]
    return root, wall


@pytest.mark.slow
def test_smoke_book_builds_every_page(smoke_book):
    root, _ = smoke_book
    html = root / "_build" / "html"
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    for entry in htmlcheck.toc_entries(toc):
        assert (html / f"{entry}.html").is_file(), f"no page for toc entry {entry}"
    for name in ("01_data", "02_stage1", "03_stage2", "04_evaluation", "05_results", "06_ablations"):
        nb = _read(root / "book" / "generated" / f"{name}.ipynb")
        assert nb.metadata["papermill"]["parameters"] == {"smoke": True}
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                  if o.output_type == "error"]
        assert not errors
        assert list((root / "runs" / "book" / "smoke-efficientnet_lite0-seed0").glob("best_stage2.pt"))


@pytest.mark.slow
def test_smoke_book_images_and_glue_render(smoke_book):
    root, _ = smoke_book
    html = root / "_build" / "html"
    n_images = 0
    for html_page in html.rglob("*.html"):
        text = html_page.read_text()
        for src in re.findall(r"<img[^>]*\bsrc=\"([^\"]+)\"", text):
            assert not src.startswith(("http://", "https://", "//")), f"{html_page}: image needs the internet: {src}"
            if src.startswith("data:"):
                continue
            n_images += 1
            assert (html_page.parent / src.split("#")[0].split("?")[0]).is_file(), f"{html_page}: missing image {src}"
        assert "{glue" not in text, f"{html_page}: a glue role was not rendered"
    assert n_images >= 15
    # figures glued from the notebooks into the paper pages
    for name, count in (("position_shift", 1), ("retrieval", 2), ("word_importance", 1)):
        text = (html / "book" / "paper" / f"{name}.html").read_text()
        assert len(re.findall(r"<img[^>]*\bsrc=\"[^\"]*_images/", text)) >= count, name
    # numbers glued into prose: the results page shows the R-sum stored in metrics.json
    metrics = json.loads((root / "runs" / "book" / "smoke-efficientnet_lite0-seed0" / "metrics.json").read_text())
    results = (html / "book" / "generated" / "05_results.html").read_text()
    assert f'pasted-text">{metrics["stage2"]["rsum"]:.1f}<' in results
    tables = (html / "book" / "paper" / "tables.html").read_text()
    assert "Dual-path, Stage I + II (ours)" in tables
    assert (root / "runs" / "book" / "smoke-efficientnet_lite0-seed0" / "results_flickr8k.csv").is_file()
    # no generic launch button pointing at book/generated/*.ipynb; the badge points at notebooks/
    data = (html / "book" / "generated" / "01_data.html").read_text()
    assert "blob/main/book/generated" not in data
    assert COLAB.format("01_data") in data


def _glued_markdown(path: Path) -> str:
    """Every markdown output glued by an executed notebook, joined."""
    nb = _read(path)
    return "\n".join(o.get("data", {}).get("application/papermill.record/text/markdown", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_the_training_pages_describe_the_config_they_ran(smoke_book, tmp_path):
    """The Stage I and II pages under two configs that differ in negatives and cached views: each
    page says what its own run did (the sentences come from the config, not a template)."""
    root, _ = smoke_book
    out = tmp_path / "generated"
    overrides = {"negatives": "sum", "train_views": 3}
    proc = _pipeline(tmp_path, "--smoke", "--only", "02", "--only", "03", "-p", "overrides", repr(overrides),
                     "--out", str(out), "--runs", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    smoke, other = preset("smoke"), preset("smoke", **overrides)
    pages = {"02_stage1": prose.stage1_sentence, "03_stage2": prose.stage2_sentence}
    for name, sentence in pages.items():
        default_page = _glued_markdown(root / "book" / "generated" / f"{name}.ipynb")
        other_page = _glued_markdown(out / f"{name}.ipynb")
        assert sentence(smoke) in default_page and sentence(other) in other_page, name
        assert sentence(smoke) != sentence(other) and sentence(other) not in default_page, name
    stage1 = _glued_markdown(out / "02_stage1.ipynb")
    assert "for 3 views of each image" in stage1 and "no crops" in _glued_markdown(
        root / "book" / "generated" / "02_stage1.ipynb")
    stage2 = _glued_markdown(out / "03_stage2.ipynb")
    assert "every negative in the batch, summed" in stage2 and "mined" not in stage2
    assert f"hardest of {smoke.n_candidates}" in _glued_markdown(root / "book" / "generated" / "03_stage2.ipynb")
    # the run under the overrides kept its own directory and config
    runs = list((tmp_path / "runs" / "book").glob("smoke-efficientnet_lite0-seed0-*"))
    assert len(runs) == 1 and json.loads((runs[0] / "config.json").read_text())["negatives"] == "sum"


@pytest.mark.slow
def test_the_executed_pages_show_no_warnings(smoke_book):
    """A warning printed into a page (matplotlib's, pandas', ours) is noise and a machine path to the
    reader: every executed notebook of the book is free of them."""
    root, _ = smoke_book
    found = []
    for path in sorted((root / "book" / "generated").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", ""))
                if out.get("name") == "stderr" and "Warning" in text:
                    found.append(f"{path.name}: {text.strip()[:200]}")
    assert not found, "\n".join(found)


@pytest.mark.slow
@needs_browser
def test_smoke_book_in_headless_chromium(smoke_book, tmp_path):
    """Every page of the toc in Chromium, offline: each figure decodes, each equation typesets."""
    root, _ = smoke_book
    reports = htmlcheck.check_pages(root / "_build" / "html", htmlcheck.toc_pages(root / "_toc.yml"))
    problems = [r.describe() for r in reports if not r.ok]
    assert not problems, "\n".join(problems)
    seen = {r.page: r for r in reports}
    assert sum(r.images for r in reports) >= 15
    assert seen["book/method.html"].equations >= 3
    assert seen["book/paper/retrieval.html"].images >= 2


@pytest.mark.slow
def test_smoke_pipeline_cache(smoke_book, monkeypatch):
    root, first_wall = smoke_book
    out = root / "book" / "generated"
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("0*.ipynb")}
    t0 = time.perf_counter()
    proc = _pipeline(root, "--smoke", "--out", str(out), "--runs", str(root / "runs"))
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert "0 executed, 6 skipped" in proc.stdout, proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("0*.ipynb")} == stamps
    assert wall < 120 and wall < first_wall, (wall, first_wall)

    # a changed seed changes the key of every notebook that depends on it; executing one of them
    # proves it re-runs
    params = {"smoke": True, "seed": 1}
    env_runs = str(root / "runs")
    monkeypatch.setenv("DUALPATH_RUNS", env_runs)
    for nb in pipeline.notebooks():
        stored = json.loads((out / f"{nb.stem}{pipeline.KEY_SUFFIX}").read_text())["key"]
        changed = pipeline.cache_key(nb, params)["key"] != stored
        assert changed == (pipeline.depends_on(nb) != "tables"), nb.stem
    proc = _pipeline(root, "--smoke", "-p", "seed", "1", "--only", "01_data", "--out", str(out),
                     "--runs", env_runs)
    assert proc.returncode == 0, proc.stderr
    assert "01_data: executing" in proc.stdout and "1 executed, 0 skipped" in proc.stdout, proc.stdout
    assert _read(out / "01_data.ipynb").metadata["papermill"]["parameters"] == params


def test_parameters_cells_are_written_from_the_one_table(tmp_path):
    """`python -m dualpath_book.sync` writes every book notebook's parameters cell from
    page.NOTEBOOK_PARAMETERS; --check (and this test) fails while one differs."""
    from dualpath_book import sync

    assert sync.out_of_sync() == [], "run python -m dualpath_book.sync"
    copy = tmp_path / NOTEBOOKS[0].name
    copy.write_text(NOTEBOOKS[0].read_text().replace('seed: int = 0 ', 'seed: int = 7 '))
    assert sync.out_of_sync([copy]) == [copy]
    assert sync.sync([copy]) == [copy] and sync.out_of_sync([copy]) == []
    assert copy.read_text() == NOTEBOOKS[0].read_text()    # nothing else of the notebook changes


def test_the_page_log_shows_no_path_of_this_machine(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DUALPATH_RUNS", str(tmp_path / "runs"))
    page.page_log(f"run directory: {tmp_path / 'runs' / 'book' / 'cpu-seed0'}")
    page.page_log(f"notebook {REPO_ROOT / 'notebooks' / '02_stage1.ipynb'}")
    assert capsys.readouterr().out.splitlines() == ["run directory: runs/book/cpu-seed0",
                                                    "notebook ./notebooks/02_stage1.ipynb"]


def test_setup_reads_the_parameters_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALPATH_RUNS", str(tmp_path))
    namespace = {**page.parameter_defaults(), "smoke": True, "seed": 4, "unrelated": 1}
    cfg, run_dir = page.setup(namespace, show=False)
    assert cfg.seed == 4 and cfg.subset == "mini" and run_dir.name == "smoke-efficientnet_lite0-seed4"
    del namespace["overrides"]
    with pytest.raises(ConfigError, match=r"defines no \['overrides'\]"):
        page.setup(namespace, show=False)


def test_a_page_gluing_from_a_notebook_depends_on_it():
    # a page's cross-page glue roles make its notebook a Sphinx dependency, so new results rebuild it
    from dualpath_book.site.gluedeps import notebooks_glued

    page = REPO_ROOT / "book" / "ablations" / "weights.md"
    assert notebooks_glued(page.read_text(), page) == [REPO_ROOT / "book" / "generated" / "06_ablations.ipynb"]
    assert notebooks_glued("no glue here, only `code`", page) == []


def test_the_book_pages_leave_out_the_parameter_cells(tmp_path):
    """The reader sees prose, figures and tables: the ``parameters`` cell (papermill still finds it
    by its tag) and the cell papermill injects after it carry ``remove-input``."""
    import nbformat

    from dualpath_book import pipeline, sync

    for path in sync.book_notebooks():
        nb = nbformat.read(path, as_version=4)
        (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert "remove-input" in cell.metadata["tags"], path.name
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["injected-parameters"]})])
    executed = tmp_path / "run.ipynb"
    nbformat.write(nb, executed)
    pipeline._record_output_path(executed, tmp_path / "out.ipynb")
    assert nbformat.read(executed, as_version=4).cells[0].metadata["tags"] == ["injected-parameters", "remove-input"]
