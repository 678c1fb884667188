"""The book's configuration, its reference tables and the plotting helpers it shares with the notebooks.

The HTML build itself is not run here (it needs the executed notebooks); these checks catch
what would make ``jupyter-book build . -W -n`` fail or show wrong numbers.
"""
from __future__ import annotations

import io
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure
from matplotlib.text import Text

from dualpath.models import widths
from dualpath_book import assets, literature
from dualpath_book.site import htmlcheck
from dualpath_book.figures import ablations, architecture, curves, retrieval
from dualpath_book.figures import data as data_figures
from dualpath.config import preset
from dualpath_book.layout import REPO_ROOT

BOOK = REPO_ROOT / "book"


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


def _png(fig: Figure) -> bytes:
    """The figure as a notebook shows it (IPython's inline backend crops to the drawn content)."""
    out = io.BytesIO()
    fig.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()


def _bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", (BOOK / "references.bib").read_text(), re.M))


# ------------------------------------------------------------------------------- configuration
def test_config_is_valid_and_offline():
    cfg = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
    assert cfg["only_build_toc_files"] is True
    excluded = set(cfg["exclude_patterns"])
    assert {".venv", "_build", "runs", "cache", "data", "tests", "benchmarks"} <= excluded
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert {"dollarmath", "amsmath", "colon_fence"} <= set(cfg["parse"]["myst_enable_extensions"])
    for bib in cfg["bibtex_bibfiles"]:
        assert (REPO_ROOT / bib).is_file(), bib
    # no generic launch buttons: they would open book/generated/*.ipynb, which is not in the
    # repository; every notebook carries its own Colab badge for notebooks/<name>.ipynb instead
    launch = cfg["launch_buttons"]
    assert not launch.get("colab_url") and not launch.get("binderhub_url") and not launch.get("jupyterhub_url")
    assert not launch.get("thebe")
    assert cfg["html"]["use_repository_button"] is True
    sphinx = (cfg.get("sphinx") or {}).get("config") or {}
    assert not sphinx.get("intersphinx_mapping"), "intersphinx would fetch inventories at build time"


def test_every_toc_entry_exists():
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    assert toc["format"] == "jb-book"
    entries = htmlcheck.toc_entries(toc)
    assert "book/intro" in entries and "book/references" in entries
    for entry in entries:
        candidates = [REPO_ROOT / f"{entry}{ext}" for ext in ("", ".md", ".ipynb")]
        if any(p.is_file() for p in candidates):
            continue
        # executed notebooks appear only after the pipeline ran: notebooks/NAME.ipynb ->
        # book/generated/NAME.ipynb; an absent one must at least have its source notebook
        assert entry.startswith("book/generated/"), f"_toc.yml lists {entry}, which does not exist"
        source = REPO_ROOT / "notebooks" / f"{Path(entry).stem}.ipynb"
        assert source.is_file(), f"_toc.yml lists {entry}, but there is no {source.relative_to(REPO_ROOT)}"


def test_citations_resolve():
    keys = _bib_keys()
    cited = set()
    for page in BOOK.rglob("*.md"):
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page.read_text()):
            cited |= {k.strip() for k in group.split(",")}
    assert cited, "no citations found"
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_generated_assets_cover_what_pages_include(tmp_path):
    written = {p.name for p in assets.write_book_assets(tmp_path)}
    included = set()
    for page in BOOK.rglob("*.md"):
        if "generated" in page.relative_to(BOOK).parts:
            continue
        included |= set(re.findall(r"generated/([\w.-]+\.(?:png|csv))", page.read_text()))
    assert included, "the prose pages include no generated asset"
    assert included <= written, f"pages include {sorted(included - written)}, which nothing writes"
    presets = pd.read_csv(tmp_path / "presets.csv", index_col=0)
    assert presets.loc["backbone", "paper"] == "resnet50"


# ------------------------------------------------------------------------------ reference tables
def test_reference_tables_parse_with_exact_numbers():
    assert {"paper_results", "paper_competitors", "published_flickr8k"} <= set(
        literature.available_reference_tables())
    f8k = literature.load_reference_table("published_flickr8k").set_index("method")
    hglmm = f8k.loc["Fisher vectors GMM+HGLMM"]
    assert (hglmm.i2t_r1, hglmm.i2t_r5, hglmm.i2t_r10, hglmm.i2t_medr) == (31.0, 59.3, 73.7, 4)
    assert (hglmm.t2i_r1, hglmm.t2i_r5, hglmm.t2i_r10, hglmm.t2i_medr) == (21.2, 50.0, 64.8, 5)
    mcnn = f8k.loc["m-CNN (ensemble)"]
    assert (mcnn.i2t_r1, mcnn.t2i_r10) == (24.8, 61.7)
    assert f8k.loc["DVSA (BRNN)", "t2i_medr"] == 12.4
    assert len(f8k) == 6

    paper = literature.load_reference_table("paper_results")
    row = paper[(paper.dataset == "Flickr30k") & (paper.backbone == "ResNet-152")].iloc[0]
    assert (row.i2t_r1, row.t2i_r10) == (55.6, 80.9)
    cuhk = paper[paper.dataset == "CUHK-PEDES"]
    assert cuhk.i2t_r1.isna().all() and cuhk.t2i_r1.tolist() == [32.15, 44.40]

    comp = literature.load_reference_table("paper_competitors")
    hm = comp[(comp.method == "HM-LSTM") & (comp.dataset == "Flickr30k")].iloc[0]
    assert math.isnan(hm.i2t_r5) and hm.i2t_r10 == 76.5
    assert set(comp.protocol) == {"1k", "coco-1k", "coco-5k", "cuhk"}


def test_reference_rows_of_a_dataset_and_the_flickr8k_ratio():
    f8k = literature.reference_table("flickr8k")
    assert "Fisher vectors GMM+HGLMM" in set(f8k.method)
    f30k = literature.reference_table("flickr30k")
    assert f30k.method.iloc[0] == "Dual-path (paper)" and set(f30k.dataset) == {"Flickr30k"}
    ratios = literature.flickr8k_vs_flickr30k()
    assert len(ratios) == 4 and "m-RNN" not in ratios.index   # AlexNet vs VGG: not a pair
    assert (ratios.ratio > 0.5).all() and (ratios.ratio < 1).all()
    with pytest.raises(ValueError):
        literature.reference_table("nowhere")


def test_reference_sources_are_bib_keys():
    keys = _bib_keys()
    for name in literature.available_reference_tables():
        df = literature.load_reference_table(name)
        for col in ("source", "via"):
            if col in df.columns:
                used = {k for cell in df[col].dropna() for k in str(cell).split(";")}
                assert used <= keys, f"{name}.{col}: {sorted(used - keys)} not in references.bib"


def test_unknown_reference_table_names_the_available_ones():
    with pytest.raises(FileNotFoundError, match="published_flickr8k"):
        literature.load_reference_table("no_such_table")


# ----------------------------------------------------------------------------------- figures
def test_architecture_figure_paper_labels():
    fig = architecture.architecture_figure(preset("paper"))
    labels = " ".join(_texts(fig))
    assert isinstance(fig, Figure)
    assert "2048" in labels and "W_share" in labels and "ResNet-50" in labels
    assert "29,783" in labels       # the official Flickr30k split: training images = classes


def test_architecture_figure_follows_config():
    fig = architecture.architecture_figure(preset("cpu", shared_classifier=False, max_len=56), n_classes=123)
    labels = " ".join(_texts(fig))
    assert "EfficientNet-Lite0" in labels and "1280" in labels
    assert "W_share" not in labels and "123" in labels and "L = 56" in labels
    assert "dropout p = 0.3" in labels            # the cpu preset's input dropout on the pooled feature
    paper_labels = " ".join(_texts(architecture.architecture_figure(preset("paper"))))
    assert "dropout p = 0.3" not in paper_labels
    # what the ranking loss compares comes from rank_features: post-ReLU in the paper, pre-ReLU in cpu
    assert "post-ReLU features" in paper_labels and "pre-ReLU features" in labels
    shapes = widths.text_stage_shapes(preset("paper"))
    assert [s["out"] for s in shapes] == [256, 512, 1024, 2048]
    assert [s["positions"] for s in shapes] == [32, 16, 8, 8]
    assert widths.word_vector_dim(preset("cpu")) == 50
    assert widths.word_vector_dim(preset("cpu", word_vectors="/d/glove.6B.100d.txt")) == 100
    assert widths.word_vector_dim(preset("cpu", word_vectors="random")) == 300


def _log(stage2: bool = True) -> pd.DataFrame:
    rows = []
    for phase, n in (("stage1", 4), ("stage2", 3 if stage2 else 0)):
        for e in range(1, n + 1):
            r = dict(phase=phase, epoch=e, loss=3.0 / e, loss_img=2.0 / e, loss_txt=1.5 / e,
                     loss_rank=(0.5 / e if phase == "stage2" else np.nan), acc_img=10.0 * e,
                     acc_txt=8.0 * e)
            r.update({f"val_{d}_r{k}": 5.0 * e + k for d in ("i2t", "t2i") for k in (1, 5, 10)})
            r["val_rsum"] = sum(r[f"val_{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
            rows.append(r)
    return pd.DataFrame(rows)


def test_training_curves():
    fig = curves.training_curves(_log())
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert "stage II" in _texts(fig)
    fig = curves.training_curves(_log(stage2=False).drop(columns=["phase"]), metrics=["loss_img", "val_rsum"])
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="none of the metrics"):
        curves.training_curves(_log(), metrics=["missing"])


def test_results_table_puts_ours_under_the_references():
    ref = literature.load_reference_table("published_flickr8k")
    ours = {"i2t_R@1": 20.0, "i2t_R@5": 50.0, "i2t_R@10": 60.0, "t2i_r1": 15.0, "t2i_r5": 40.0,
            "t2i_r10": 55.0, "i2t_medr": 5, "i2t_map": 12.0}
    table = literature.results_table(ours, ref, ours_backbone="EfficientNet-Lite0")
    assert isinstance(table, pd.DataFrame)
    assert list(table.origin) == ["published"] * len(ref) + ["ours"]
    last = table.iloc[-1]
    assert last.i2t_r1 == pytest.approx(20.0) and last.rsum == pytest.approx(240.0)
    assert last.backbone == "EfficientNet-Lite0" and last.i2t_medr == 5
    assert "i2t_map" not in table.columns
    chance = literature.results_table({"i2t_r1": 0.1}, ref).iloc[-1]
    assert chance.i2t_r1 == pytest.approx(0.1)     # percentages are never rescaled
    hglmm = table[table.method == "Fisher vectors GMM+HGLMM"].iloc[0]
    assert hglmm.rsum == pytest.approx(31.0 + 59.3 + 73.7 + 21.2 + 50.0 + 64.8)
    many = literature.results_table({"a": {"i2t_r1": 30.0}, "b": {"i2t_r1": 40.0}}, ref)
    assert many.method.tolist()[-2:] == ["a", "b"]


def test_ablation_figures_name_every_arm_and_draw_every_seed():
    from dualpath_book import ablation_report as ar

    loss = ar.FAMILY["loss"]
    table = pd.DataFrame([{"arm": arm, "seed": seed, "status": "done", "rsum": 100.0 + 10 * i + seed}
                          for i, arm in enumerate(loss.arms) for seed in range(3)])
    fig = ablations.family_plot(table, "loss")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()] == list(loss.labels)   # wrapped, same words
    assert ax.get_title() == loss.title and [t.get_text() for t in fig.legends[0].get_texts()] == ["0", "1", "2"]
    # glued and shown, a figure is drawn twice: the page and the chapter's pages must get the same image
    assert _png(fig) == _png(fig)
    empty = ablations.family_plot(table.iloc[:0], loss).axes[0]
    assert empty.get_title().endswith("(no finished runs yet)") and len(empty.get_yticklabels()) == len(loss.arms)
    assert isinstance(ablations.budget_plot(table), Figure)
    assert isinstance(ablations.length_plot(table.iloc[:0]), Figure)


@pytest.fixture
def tiny_images(tmp_path):
    from PIL import Image

    paths = []
    for i, color in enumerate(["red", "green", "blue", "gray"]):
        path = tmp_path / f"img{i}.jpg"
        Image.new("RGB", (40, 30), color).save(path)
        paths.append(str(path))
    return paths


def test_retrieval_grid_both_directions(tiny_images):
    fig = retrieval.retrieval_grid("a dog runs on the grass", tiny_images[:3], [True, False, False])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    fig = retrieval.retrieval_grid(tiny_images[0], ["a red square", "a dog", "a cat"], [True, False, True])
    assert isinstance(fig, Figure)
    assert any("1. a red square" in t for t in _texts(fig))
    fig = retrieval.retrieval_grid(["q1", "q2"], [tiny_images[:2], tiny_images[2:]],
                               [[True, False], [False, True]], mode="t2i")
    assert len(fig.axes) == 6
    with pytest.raises(ValueError, match="correctness"):
        retrieval.retrieval_grid("q", tiny_images[:2], [True])


def test_word_importance_and_projection_plots():
    fig = retrieval.word_importance_plot(["a", "dog", "runs"], [0.01, 0.2, -0.03], title="caption")
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError):
        retrieval.word_importance_plot(["a"], [0.1, 0.2])
    rng = np.random.default_rng(0)
    kinds = (["image"] + ["text"] * 5) * 3
    groups = [g for g in range(3) for _ in range(6)]
    fig = retrieval.embedding_projection_plot(rng.normal(size=(18, 2)), kinds, groups)
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError):
        retrieval.embedding_projection_plot(rng.normal(size=(18, 3)), kinds, groups)


def test_paper_figure_pages_glue_from_the_notebooks():
    """Every paper-figure page shows something computed by a notebook, or says why not."""
    pages = {p.stem: p.read_text() for p in (BOOK / "paper").glob("*.md")}
    assert {"architecture", "position_shift", "retrieval", "word_importance", "tables",
            "not_reproduced"} <= set(pages)
    for stem, key, notebook in (("position_shift", "fig_position_shift", "01_data"),
                                ("retrieval", "fig_i2t", "04_evaluation"),
                                ("retrieval", "fig_t2i", "04_evaluation"),
                                ("word_importance", "fig_word_importance", "04_evaluation"),
                                ("tables", "table_results", "05_results")):
        assert re.search(rf"```{{glue}} {key}\n:doc: \.\./generated/{notebook}\.ipynb", pages[stem]), stem
        source = (REPO_ROOT / "notebooks" / f"{notebook}.ipynb").read_text()
        assert f'glue(\\"{key}\\"' in source, f"{notebook} does not glue {key}"
    assert "generated/architecture_paper.png" in pages["architecture"]
    assert "CUHK-PEDES" in pages["not_reproduced"]


def test_data_figures(tiny_images):
    fig = data_figures.sample_grid(tiny_images[:3], [["a red thing", "more"], ["green"], ["blue"]], ncols=2)
    assert isinstance(fig, Figure) and any("a red thing" in t for t in _texts(fig))
    with pytest.raises(ValueError):
        data_figures.sample_grid(tiny_images[:2], [["x"]])
    lengths = pd.DataFrame({"words": [3, 5, 12, 40], "in_vocab": [3, 5, 11, 38]})
    fig = data_figures.caption_length_histogram(lengths, max_len=32)
    assert "L = 32" in " ".join(_texts(fig))


def test_position_shift_figure():
    from dualpath.data.text import Vocabulary, all_shifts

    vocab = Vocabulary.build(["a dog runs", "a cat sits on a mat"])
    rows = all_shifts(vocab.encode("a dog runs"), 8)
    fig = data_figures.position_shift_figure(rows[[0, 5]], vocab, [0, 5], title="a dog runs")
    labels = _texts(fig)
    assert "start offset 5" in labels and "dog" in labels and len(fig.axes) == 2
    image = fig.axes[1].images[0].get_array()
    assert image.shape == (3, 8) and image.sum() == 3 and image[0, 5] == 1   # 'a' at position 5
    with pytest.raises(ValueError):
        data_figures.position_shift_figure(np.zeros((1, 8), dtype=int), vocab)


def test_word_importance_panels(tiny_images):
    fig = retrieval.word_importance_panels(tiny_images[:2], [["a", "dog"], ["red", "ball", "x"]],
                                       [[0.1, 0.3], [0.2, -0.1, 0.0]], known=[[True, True], [True, True, False]],
                                       titles=["one", "two"])
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    with pytest.raises(ValueError):
        retrieval.word_importance_panels(tiny_images[:1], [["a"]], [[0.1, 0.2]])


def test_a_runs_row_is_read_from_its_run_directory_and_rounded(tmp_path):
    import json
    from dualpath.config import preset
    from dualpath_book import book_runs

    run = tmp_path / "run"
    run.mkdir()
    cfg = preset("cpu")
    (run / "config.json").write_text(json.dumps({"recipe": "paper", **cfg.to_dict()}))
    rows = [dict(phase=p, epoch=e, val_rsum=v, acc_txt=a, epoch_s=s) for p, e, v, a, s in
            [("stage1", 1, 50.04, 0.101, 70.2), ("stage1", 2, 61.26, 0.1349, 74.0),
             ("stage2", 1, 180.0, float("nan"), 40.0), ("stage2", 2, 228.66000000000003, float("nan"), 44.0)]]
    pd.DataFrame(rows).to_csv(run / "log.csv", index=False)
    test = {"i2t_r1": 20.200000000000003, "i2t_r5": 48.0, "i2t_r10": 61.3, "t2i_r1": 15.1, "t2i_r5": 40.0,
            "t2i_r10": 54.6, "rsum": 239.20000000000002}
    (run / "metrics.json").write_text(json.dumps({"stage1": {"rsum": 116.44}, "stage2": test, "final": test}))
    row = book_runs.summarise_run(run)
    assert (row["stage1_val_rsum"], row["stage1_best_epoch"], row["stage1_text_acc"]) == (61.3, 2, 0.13)
    assert (row["stage2_val_rsum"], row["test_rsum"], row["test_i2t_r1"]) == (228.7, 239.2, 20.2)
    assert (row["stage1_epoch_s"], row["stage2_epoch_s"]) == (72, 42)
    assert row["recipe"] == book_runs.describe_recipe(cfg)
    table = tmp_path / "runs.csv"
    for wall in (1800.4, 1791.0):    # the same commit again replaces its row
        book_runs.record(run, commit="abc1234", wall_s=wall, date="2026-12-01", machine="m", note="n", table=table)
    saved = book_runs.load(table)
    assert len(saved) == 1 and saved.wall_s.tolist() == [1791] and saved.commit.tolist() == ["abc1234"]
    assert book_runs.minutes_seconds(1791) == "29 min 51 s"
    shown = book_runs.display_table(table)
    assert shown["test R-sum, Stage I / II"].tolist() == ["116.4 / 239.2"]


def test_results_figure_puts_ours_among_the_published_rows():
    from dualpath_book.figures import results

    reference = literature.load_reference_table("published_flickr8k")
    table = literature.results_table({"ours": {"i2t_r1": 20.2, "i2t_r5": 48.0, "i2t_r10": 61.3, "t2i_r1": 15.1,
                                               "t2i_r5": 40.0, "t2i_r10": 54.6}}, reference)
    fig = results.rsum_figure(table, title="t")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == table.rsum.notna().sum() and any(label.startswith("ours") for label in labels)
    values = [p.get_width() for p in fig.axes[0].patches]
    assert values == sorted(values) and 239.2 in [round(v, 1) for v in values]
