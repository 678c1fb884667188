"""The exported model and the book's "Try it" page.

* ``python -m dualpath.export`` on a trained smoke run: the ONNX text encoder under onnxruntime gives
  PyTorch's test-time embedding of every test caption (the largest difference asserted, the top-10
  images identical), for each offset policy; the image head likewise on the test images' pooled views.
* The JavaScript tokenizer gives ``dualpath.data.text``'s ids for every Flickr8k test caption (Node).
* The page in headless Chromium: three typed queries show Python's ``search_images`` top five; an
  unknown word is shown struck through; an all-unknown or empty query ranks nothing; a click on an
  image lists its top captions; nothing comes from another host.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dualpath
from dualpath import export as exporter
from dualpath.data.registry import load_corpus
from dualpath.data.text import Vocabulary
from dualpath.embed import text_embeddings
from dualpath.models import build_model
from dualpath.train import open_run
from dualpath_book.site import htmlcheck, onnxruntime_web, tryit
from dualpath_book.site.tryit import data as page_data

from shared_data import shared_flickr8k
from test_htmlcheck import needs_browser

ENV = {**os.environ, "DUALPATH_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
TOKENIZER_JS = Path(tryit.__file__).resolve().parent / "tokenizer.mjs"
QUERIES = ("a dog runs on the grass", "two people sit on a bench", "a man in a red shirt climbs a rock")
# the exported encoder against PyTorch: float32 both, summed in another order
MAX_DIFF = 1e-5


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """A finished smoke run (mini splits) evaluated at every offset, as the book's run is."""
    shared_flickr8k()
    run_dir = tmp_path_factory.mktemp("tryit") / "run"
    subprocess.run([sys.executable, "-m", "dualpath.train", "--preset", "smoke", "--run-dir", str(run_dir),
                    "--set", "progress=false", "test_shift=all"], check=True, env=ENV, timeout=900)
    return run_dir


@pytest.fixture(scope="module")
def opened(smoke_run):
    """The smoke run with its final checkpoint loaded, and its test embeddings as the evaluator makes them."""
    run = open_run(smoke_run, log=lambda *a: None)
    phase = run.phases[-1].name
    run.load_best(phase)
    img, txt = run.embed("test", phase)
    return run, phase, img, txt


@pytest.fixture(scope="module")
def exported(smoke_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported")
    proc = subprocess.run([sys.executable, "-m", "dualpath.export", str(smoke_run), str(out)],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


# ----------------------------------------------------------------------------- the export
@pytest.mark.slow
def test_export_writes_the_model_the_tokenizer_and_where_they_come_from(exported, smoke_run):
    meta = json.loads((exported / "model.json").read_text())
    metrics = json.loads((smoke_run / "metrics.json").read_text())["final"]
    assert meta["test_metrics"]["rsum"] == round(metrics["rsum"], 2)
    assert meta["test_shift"] == "all" and meta["weights"] == "float32" and meta["max_len"] == 32
    assert len(meta["commit"]) >= 40 or meta["commit"] == "unknown"
    for name, digest in meta["files"].items():
        assert exporter._sha256(exported / name) == digest
    import onnx
    model = onnx.load(str(exported / "text_encoder.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["commit"] == meta["commit"] and json.loads(props["test_metrics"]) == meta["test_metrics"]
    rules = json.loads((exported / "tokenizer.json").read_text())
    assert rules["max_words"] == 32 and rules["lowercase"] is True and " " in rules["split_characters"]


@pytest.mark.slow
def test_onnx_text_encoder_gives_pytorchs_embedding_of_every_test_caption(exported, opened):
    run, _, img, _ = opened
    captions = list(run.test_corpus.captions)
    parity = exporter.check_parity(exported / "text_encoder.onnx", run.model.text_cnn, run.data.vocab, run.cfg,
                                   captions + ["", "zzzz qqqq", " ".join(["dog"] * 40)], img, k=10)
    print(f"ONNX vs PyTorch on {parity.n_captions} captions: max |diff| {parity.max_abs_diff:.2e}, "
          f"top-10 identical for {parity.topk_identical}")
    assert parity.n_captions == len(captions) + 3
    assert parity.max_abs_diff < MAX_DIFF
    assert parity.ok, f"top-10 differs for captions {parity.first_differing}"


@pytest.mark.slow
def test_half_weights_halve_the_file_and_keep_the_arithmetic_in_float32(exported, opened, tmp_path):
    run, _, img, _ = opened
    exporter.export(run.path, tmp_path, half_weights=True)
    import onnx
    model = onnx.load(str(tmp_path / "text_encoder.onnx"))
    assert json.loads((tmp_path / "model.json").read_text())["weights"] == "float16"
    halved = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    assert "text_cnn.fc5_2.weight_f16" in halved and "text_cnn.stages.3.0.conv2.weight_f16" in halved
    assert not any(name.startswith(exporter.FLOAT32_KEPT) for name in halved)
    head = onnx.load(str(tmp_path / "image_head.onnx"))
    assert {i.name for i in head.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16} \
        == {"image_head.fc1.weight_f16", "image_head.fc1_1.weight_f16"}
    ratio = (tmp_path / "text_encoder.onnx").stat().st_size / (exported / "text_encoder.onnx").stat().st_size
    assert ratio < 0.8
    captions = list(run.test_corpus.captions)
    parity = exporter.check_parity(tmp_path / "text_encoder.onnx", run.model.text_cnn, run.data.vocab, run.cfg,
                                   captions, img, k=10)
    assert parity.max_abs_diff < 2e-3     # float16 rounding of the weights, nothing worse


@pytest.mark.slow
def test_onnx_image_head_gives_the_evaluators_image_embeddings(exported, opened):
    run, phase, img, _ = opened
    from dualpath.train.inputs import image_source

    source = image_source(run.phase(phase).finetune, run.cfg, run.model.backbone)
    pool = source.eval_pool(run.model.backbone) or (lambda x: x)
    with torch.no_grad():
        views = [pool(v.float()) for v in source.eval_views(run.data.splits["test"])]
    pooled = torch.stack(views, dim=1).numpy().astype(np.float32)
    got = exporter.onnx_session(exported / "image_head.onnx").run(["embedding"], {"pooled": pooled})[0]
    assert np.abs(got - img.numpy()).max() < MAX_DIFF


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["left", "center"])
def test_single_offset_policies_export_exactly(policy, tmp_path):
    cfg = dualpath.preset("smoke", test_shift=policy)
    torch.manual_seed(0)
    model = build_model(cfg, 60, 10, embed_dim=50).eval()
    for module in model.text_cnn.modules():   # BN statistics away from the identity
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    rng = np.random.default_rng(0)
    ids = [rng.integers(1, 60, size=n).tolist() for n in (0, 1, 2, 7, 31, 32, 45)]
    text = exporter.TestTimeText(model.text_cnn, cfg.max_len, policy)
    exporter._onnx_export(text, torch.tensor([[1, 2, 3] + [0] * 29] * 2), tmp_path / "t.onnx", "ids", {0: "batch"},
                          {}, half_weights=False)
    rows = np.array([(i[:32] + [0] * 32)[:32] for i in ids], dtype=np.int64)
    got = exporter.onnx_text_embeddings(exporter.onnx_session(tmp_path / "t.onnx"), rows)
    assert np.abs(got - text_embeddings(model.text_cnn, ids, cfg.max_len, policy).numpy()).max() < MAX_DIFF


def test_export_of_an_unfinished_run_says_so(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "paper", **dualpath.preset("smoke").to_dict()}))
    proc = subprocess.run([sys.executable, "-m", "dualpath.export", str(tmp_path), str(tmp_path / "out")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 2 and "has not finished" in proc.stderr


# ----------------------------------------------------------------------------- the tokenizer
NASTY = ["", "   ", "A DOG--runs,(fast)?!  ", "naïve café", "\u00a0dog\u2003cat\u3000", "\ufeffdog",
         "dog\x1cdog\x85cat", "İstanbul ΣΑΣ", "dog's  DOG'S", "one\ttwo\nthree\r\nfour",
         " ".join(["dog"] * 40), "\"quoted\";semi:colon"]


def test_javascript_tokenizer_gives_pythons_ids_for_every_test_caption(tmp_path):
    node = shutil.which("node")
    if not node:
        pytest.skip("Node.js is not installed")
    corpus = load_corpus("flickr8k", shared_flickr8k().parent)
    vocab = Vocabulary.build(corpus.select("train").captions)
    captions = list(corpus.select("test").captions) + NASTY
    assert len(captions) == 5000 + len(NASTY)
    (tmp_path / "rules.json").write_text(json.dumps(exporter.tokenizer_rules(vocab, 32)))
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    script = ("import fs from 'fs'; import {pathToFileURL} from 'url';"
              "const [tokenizer, rules, texts, out] = process.argv.slice(1);"
              "const {makeTokenizer} = await import(pathToFileURL(tokenizer).href);"
              "const t = makeTokenizer(JSON.parse(fs.readFileSync(rules)));"
              "const rows = JSON.parse(fs.readFileSync(texts)).map(c => t.encode(c).row);"
              "fs.writeFileSync(out, JSON.stringify(rows));")
    subprocess.run([node, "--input-type=module", "-e", script, str(TOKENIZER_JS), str(tmp_path / "rules.json"),
                    str(tmp_path / "captions.json"), str(tmp_path / "rows.json")], check=True, timeout=120)
    js = json.loads((tmp_path / "rows.json").read_text())
    python = [exporter.encode_row(vocab, c, 32) for c in captions]
    differ = [c for c, a, b in zip(captions, js, python) if a != b]
    assert not differ, f"{len(differ)} captions tokenized differently, e.g. {differ[:3]}"
    assert python[5000 + 2][:4] == [vocab.index(w) for w in ("a", "dog", "runs", "fast")]


# ----------------------------------------------------------------------------- the page
def test_onnxruntime_web_is_vendored_once_and_checked(tmp_path):
    if not shutil.which("npm") and not onnxruntime_web.tarball_cached():
        pytest.skip("npm not installed and onnxruntime-web not cached")
    dest = onnxruntime_web.vendor(tmp_path / "ort")
    assert (dest / "ort.wasm.min.mjs").stat().st_size > 10_000
    assert gzip.decompress((dest / "ort-wasm-simd-threaded.wasm.gz").read_bytes())[:4] == b"\0asm"
    stamp = (dest / "ort.wasm.min.mjs").stat().st_mtime_ns
    assert onnxruntime_web.vendor(dest) == dest and (dest / "ort.wasm.min.mjs").stat().st_mtime_ns == stamp
    assert not list(dest.rglob("*.js")) and not list(dest.rglob("*.css"))   # Jupyter Book would add them to every page


def test_staging_without_page_data_removes_a_stale_model(tmp_path):
    if not shutil.which("npm") and not onnxruntime_web.tarball_cached():
        pytest.skip("npm not installed and onnxruntime-web not cached")
    dest = tryit.stage(tmp_path, None)
    (dest / "text_encoder.onnx").write_bytes(b"stale")
    tryit.stage(tmp_path, tmp_path / "absent")
    assert not (dest / "text_encoder.onnx").exists() and (dest / "tryit.mjs").is_file()
    assert not list(dest.rglob("*.js")) and not list(dest.rglob("*.css"))   # Jupyter Book would add them to every page


@pytest.fixture(scope="module")
def page_site(smoke_run, tmp_path_factory) -> Path:
    if not shutil.which("npm") and not onnxruntime_web.tarball_cached():
        pytest.skip("npm not installed and onnxruntime-web not cached")
    data = page_data.write_page_data(smoke_run, tmp_path_factory.mktemp("data") / "try_it", log=lambda *a: None)
    site = tmp_path_factory.mktemp("site")
    tryit.standalone_page(site, data)
    return site


def _wait(wd, script: str, what: str, timeout: float = 60):
    value = wd.wait_for(script, timeout)
    if value:
        return value
    state = wd.execute("const r = document.querySelector('.dualpath-try-it');"
                       "return r && [r.dataset.state, r.dataset.error, r.textContent.slice(0, 300)];")
    raise AssertionError(f"the page did not {what} in {timeout} s: {state}")


def search(wd, box: str, query: str) -> list[str]:
    """Type ``query`` into the cleared box; the image names the page lists, best first."""
    wd.clear(box)
    wd.type(box, query)
    shown = _wait(wd, "const list = document.querySelector('.tryit-results');"
                      f"if (list.dataset.query !== {json.dumps(query)}) return null;"
                      "return {hits: Array.from(list.querySelectorAll('.tryit-hit'), li => li.dataset.image)};",
                  f"show the results of {query!r}")
    return shown["hits"]


@pytest.mark.slow
@needs_browser
def test_page_ranks_as_python_in_headless_chromium(page_site, smoke_run, opened):
    run, phase, _, _ = opened
    test = run.test_corpus
    index = dualpath.load_checkpoint(smoke_run / f"best_{phase}.pt").index(images=test.image_paths())
    expected = {q: [Path(test.images[h.index]).name for h in index.search_images(q, k=5)] for q in QUERIES}
    top = json.loads(gzip.decompress((page_site / "_static/tryit/index.json.gz").read_bytes()))["top_captions"]
    with htmlcheck.browser(page_site) as (wd, origin):
        wd.open(origin + "book/try_it.html")
        _wait(wd, "return document.querySelector('.dualpath-try-it').dataset.state === 'ready'", "load the model")
        status = wd.execute("return document.querySelector('.tryit-status').textContent")
        assert "commit" in status and "R@1" in status and smoke_run.name in status
        box = wd.find(".tryit-query")
        for query in QUERIES:
            assert search(wd, box, query)[:5] == expected[query], query
        # an unknown word is shown as such and left out; the ranking is the known words'
        shown = search(wd, box, QUERIES[0] + " xyzzy")
        assert shown[:5] == expected[QUERIES[0]]
        assert wd.execute("return Array.from(document.querySelectorAll('.tryit-unknown'), s => s.textContent)") \
            == ["xyzzy"]
        for query in ("xyzzy plugh", "   "):
            assert search(wd, box, query) == []
            message = wd.execute("return document.querySelector('.tryit-message').textContent")
            assert ("vocabulary" if query.strip() else "Type a sentence") in message
        # image -> text: a click lists the captions ranked first for that image
        search(wd, box, QUERIES[1])
        wd.click(wd.find(".tryit-hit .tryit-image"))
        listed = _wait(wd, "const p = document.querySelector('.tryit-panel');"
                           "return !p.hidden && Array.from(p.querySelectorAll('li'), li => li.textContent);",
                       "list the image's captions")
        first = test.images.index(next(n for n in test.images if Path(n).name == expected[QUERIES[1]][0]))
        assert [text.split("  (one of")[0] for text in listed] == [test.captions[c] for c in top[first]]
        loaded = wd.execute("return performance.getEntriesByType('resource').map(e => e.name)")
        assert not htmlcheck.external_resources(loaded, origin)
        assert any(url.endswith("text_encoder.onnx.gz") for url in loaded)


@pytest.mark.slow
@needs_browser
def test_the_html_check_waits_for_the_model_and_fails_without_it(page_site, tmp_path):
    (page_site / "index.html").write_text("<html></html>")
    (report,) = htmlcheck.check_pages(page_site, ["book/try_it.html"])
    assert report.ok, report.describe()
    bare = tmp_path / "bare"
    tryit.standalone_page(bare, tmp_path / "no-data")
    (bare / "index.html").write_text("<html></html>")
    (report,) = htmlcheck.check_pages(bare, ["book/try_it.html"])
    assert not report.ok and "model did not load (error: " in report.error, report.describe()
