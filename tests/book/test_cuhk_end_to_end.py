"""CUHK-PEDES end to end: a tiny corpus in the official format, trained and tested by identity.

The test writes its own ``reid_raw.json`` and images (CUHK-PEDES may not be redistributed), trains
the smoke recipe on it through the same entry point as a user, and checks the run's test metrics
against a brute-force count by identity over the run's own test embeddings.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dualpath.config import preset
from dualpath.train import open_run, train

WORDS = ["red", "blue", "green", "black", "white", "bag", "hat", "shirt", "shoes", "jacket", "man", "woman"]


def _write_cuhk(root, seed: int = 0):
    """Identities per split (train 8, val 3, test 4), two images each, two captions per image."""
    rng = np.random.default_rng(seed)
    folder = root / "CUHK-PEDES"
    entries, pid = [], 0
    for split, n_ids in (("train", 8), ("val", 3), ("test", 4)):
        for _ in range(n_ids):
            pid += 1
            words = list(rng.choice(WORDS, size=3, replace=False))   # an identity's description
            for k in range(2):
                path = f"{split}/{pid}_{k}.jpg"            # relative to imgs/, as in the release
                (folder / "imgs" / path).parent.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, size=(48, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / "imgs" / path)
                caps = [" ".join(["a", "person", "in", *words]), " ".join([words[0], "and", *words[1:]])]
                entries.append({"split": split, "id": pid, "file_path": path, "captions": caps,
                                "processed_tokens": [c.split() for c in caps]})
    (folder / "reid_raw.json").write_text(json.dumps(entries))
    return root


def _brute_force(img: np.ndarray, txt: np.ndarray, caption_person: np.ndarray, image_person: np.ndarray):
    """top-1/5/10 and mAP (%) of text -> image by identity, one query at a time."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    hits = {1: 0, 5: 0, 10: 0}
    aps = []
    for q in range(len(txt)):
        sims = img @ txt[q]
        relevant = image_person == caption_person[q]
        # pessimistic ties: an image of another person scoring the same as a match ranks first
        ranks = [int((sims > sims[i]).sum() + ((sims == sims[i]) & ~relevant).sum())
                 for i in np.flatnonzero(relevant)]
        ranks.sort()
        for k in hits:
            hits[k] += ranks[0] < k
        aps.append(np.mean([(j + 1) / (r + 1) for j, r in enumerate(ranks)]))
    n = len(txt)
    return {f"top{k}": 100.0 * v / n for k, v in hits.items()} | {"map": 100.0 * float(np.mean(aps))}


def test_cuhk_trains_and_tests_by_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALPATH_CACHE", str(tmp_path / "cache"))
    root = _write_cuhk(tmp_path / "data")
    cfg = preset("smoke", subset="", dataset="cuhk_pedes", protocol="cuhk", max_len=8,
                 batch_size=8, progress=False)
    metrics = train(cfg, tmp_path / "run", data_root=root, log=lambda *a: None).metrics
    final = metrics["final"]
    assert {"top1", "top5", "top10", "map"} <= set(final)

    run = open_run(tmp_path / "run", data_root=root, log=lambda *a: None)
    img, txt, corpus = run.test_embeddings(run.phases[-1].name)
    assert corpus.n_images == 8 and corpus.n_classes == 4      # positives are the 2 images of a person
    want = _brute_force(img.double().numpy(), txt.double().numpy(),
                        corpus.image_label[corpus.caption_image], corpus.image_label)
    for key, value in want.items():    # metrics.json holds two decimals (evaluate.round_metrics)
        assert final[key] == round(value, 2), key
    assert final["top10"] == 100.0       # 8 test images: the top 10 holds both of every person's


def test_the_protocol_follows_the_dataset():
    from dualpath_book import page
    from dualpath.errors import ConfigError

    assert page.notebook_config(dataset="cuhk_pedes")[0].protocol == "cuhk"
    assert page.notebook_config()[0].protocol == "1k"
    assert page.notebook_config(dataset="coco", protocol="coco-1k")[0].protocol == "coco-1k"
    with pytest.raises(ConfigError, match="evaluated by identity"):
        preset("cpu", dataset="cuhk_pedes")           # by image would count one image per query
    with pytest.raises(ConfigError, match="evaluated by identity"):
        preset("cpu", protocol="cuhk")
