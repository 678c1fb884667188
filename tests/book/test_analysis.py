"""dualpath_book.analysis and dualpath_book.data_tables: the read-outs and tables behind the data, training and
evaluation notebooks, on tiny inputs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from dualpath_book import analysis, data_tables
from dualpath.config import preset
from dualpath.data.corpus import Corpus
from dualpath.data.text import Vocabulary


def _corpus(tmp_path) -> Corpus:
    captions = ["a dog runs", "the dog is running fast", "a red car", "a car on the road",
                "two cats sleep", "cats on a sofa"]
    return Corpus("toy", tmp_path, ["a.jpg", "b.jpg", "c.jpg"], captions, np.array([0, 0, 1, 1, 2, 2]),
                  np.array([0, 1, 2]), {"train": np.array([0, 1]), "test": np.array([2]),
                                        "mini_train": np.array([0])})


def test_split_and_vocabulary_tables(tmp_path):
    corpus = _corpus(tmp_path)
    table = data_tables.split_table(corpus, preset("cpu", val_split="train"))
    assert table.loc["train", "images"] == 2 and table.loc["train", "captions"] == 4
    assert table.loc["train", "used as"] in ("train", "val") and table.loc["mini_train", "used as"] == ""
    assert preset("smoke").role_splits()["test"] == "mini_test"
    parts = {"train": corpus.select("train"), "test": corpus.select("test")}
    vocab = Vocabulary.build(parts["train"].captions)
    stats = data_tables.vocabulary_table(vocab, parts, length=4)
    assert stats.loc["train", "OOV tokens (%)"] == 0
    assert stats.loc["test", "OOV tokens (%)"] == pytest.approx(100 * 5 / 7)   # only 'on', 'a' known
    assert stats.loc["train", "truncated at L=4 (%)"] == 50.0
    lengths = data_tables.caption_lengths(parts["test"].captions, vocab)
    assert lengths.words.tolist() == [3, 4] and lengths.in_vocab.tolist() == [0, 2]


def test_shift_rows_spread_over_the_offsets():
    vocab = Vocabulary.build(["a dog runs"])
    rows, offsets = data_tables.shift_rows(vocab, "a dog runs", length=8, n=3)
    assert offsets == [0, 2, 5] or offsets == [0, 3, 5]
    assert rows.shape == (3, 8) and (rows[-1, 5:] != 0).all() and (rows[0, :3] != 0).all()


def _space():
    """Three images, two captions each; caption 5 sits on image 0 (a retrieval error)."""
    img = F.normalize(torch.eye(4)[:3], dim=1)
    txt = F.normalize(torch.tensor([[1, .1, 0, 0], [1, 0, .2, 0], [0, 1, 0, .1], [.1, 1, 0, 0],
                                    [0, 0, 1, 0], [1, 0, 0, .3]], dtype=torch.float), dim=1)
    return img, txt, np.array([0, 0, 1, 1, 2, 2])


def test_retrieval_examples_mark_the_correct_results(tmp_path):
    img, txt, cap_img = _space()
    ex = analysis.retrieval_examples(img, txt, cap_img, "i2t", [0, 2], k=3)
    assert ex.correct[0][:2] == [True, True] and ex.first_hit == [1, 1]
    assert ex.results[1][0] == 4
    ex = analysis.retrieval_examples(img, txt, cap_img, "t2i", [5, 4], k=2)
    assert ex.results[0][0] == 0 and ex.correct[0] == [False, False] and ex.first_hit[0] == 3
    assert ex.correct[1][0] is True
    corpus = _corpus(tmp_path)
    queries, results, correct = ex.for_grid(corpus)
    assert queries[0] == corpus.captions[5] and results[0][0] == corpus.image_path(0)
    with pytest.raises(ValueError):
        analysis.retrieval_examples(img, txt, cap_img, "x2y", [0])


def test_projection_and_distances():
    img, txt, cap_img = _space()
    points, kinds, groups = analysis.project_groups(img, txt, cap_img, [0, 1])
    assert points.shape == (6, 2) and kinds.count("image") == 2 and groups == [0, 0, 0, 1, 1, 1]
    d = analysis.group_distances(img, txt, cap_img)
    assert d["own_image"] > d["other_images"]
    assert analysis.well_matched_captions(img, txt, cap_img, n=3) == [4, 0, 2]   # one per image, best first


class _BagEncoder:
    """Text embedding = normalised sum of word vectors: removing a word has a predictable effect."""

    def __init__(self):
        self.vocab = Vocabulary.build(["dog grass the a runs"])
        self.table = torch.zeros(len(self.vocab), 3)
        self.table[self.vocab.index("dog")] = torch.tensor([1.0, 0, 0])
        self.table[self.vocab.index("grass")] = torch.tensor([0, 1.0, 0])
        for w in ("the", "a", "runs"):
            self.table[self.vocab.index(w)] = torch.tensor([0, 0, 0.1])

    def encode_text(self, texts):
        rows = [self.table[self.vocab.encode(t)].sum(0) if self.vocab.encode(t) else torch.zeros(3)
                for t in texts]
        return F.normalize(torch.stack(rows), dim=1)


def test_word_importance_removes_one_word_at_a_time():
    enc = _BagEncoder()
    image = torch.tensor([1.0, 0.2, 0.0])
    wi = analysis.word_importance(enc, image, "A dog runs on the grass")
    assert wi.words == ["a", "dog", "runs", "on", "the", "grass"]
    assert wi.in_vocab == [True, True, True, False, True, True]
    assert wi.drops[3] == pytest.approx(0.0, abs=1e-6)                 # 'on' is unknown: no effect
    assert wi.top(1) == ["dog"] and wi.drops[1] > 0.3
    assert wi.base == pytest.approx(float(enc.encode_text(["a dog runs on the grass"])[0] @ F.normalize(image, dim=0)))
    assert isinstance(wi.frame(), pd.DataFrame) and len(wi.frame()) == 6
    hits = analysis.search_embeddings(enc, "dog", F.normalize(torch.eye(3), dim=1), k=2)
    assert hits[0][0] == 0 and hits[0][1] == pytest.approx(1.0)


def test_metrics_and_log_summaries():
    metrics = {"stage1": {"i2t_r1": 1.0, "rsum": 10.0, "best_epoch": 2},
               "stage2": {"i2t_r1": 2.0, "rsum": 12.0, "best_epoch": 1}}
    frame = analysis.metrics_frame(metrics)
    assert frame.index.tolist() == ["Stage I", "Stage II"] and frame.loc["Stage II", "rsum"] == 12.0
    log = pd.DataFrame({"phase": ["stage1"] * 3, "epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.0],
                        "loss_rank": 0.0, "loss_img": [2.0, 1.5, 1.0], "loss_txt": [1.0, 0.5, 0.2],
                        "acc_img": [0.1, 0.2, 0.3], "acc_txt": [0.0, 0.1, 0.2],
                        "val_rsum": [5.0, 9.0, 9.0], "epoch_s": 1.0})
    s = analysis.log_summary(log, "stage1")
    assert s["best_epoch"] == 2 and s["epochs"] == 3 and s["acc_img_last"] == pytest.approx(30.0)
    with pytest.raises(ValueError):
        analysis.log_summary(log, "stage2")


def test_a_readable_table_shows_integers_as_integers_and_no_float_noise():
    from dualpath_book.page import readable
    metrics = {"stage1": {"i2t_r1": 12.345, "rsum": 100.0, "best_epoch": 5},
               "stage2": {"i2t_r1": 20.0, "rsum": float("nan"), "best_epoch": 13}}
    shown = readable(analysis.metrics_frame(metrics), 1)
    assert shown.loc["Stage I", "best_epoch"] == "5" and shown.loc["Stage II", "best_epoch"] == "13"
    assert shown.loc["Stage I", "i2t_r1"] == "12.3" and shown.loc["Stage II", "rsum"] == ""
    drops = readable(pd.DataFrame({"drop": [0.009, -0.0004, 1.23456e-7]}), 3)
    assert drops["drop"].tolist() == ["0.009", "0.000", "0.000"]   # no exponent, no -0.000
    words = readable(pd.DataFrame({"word": ["a"], "in vocabulary": [True]}))
    assert words.loc[0, "word"] == "a" and bool(words.loc[0, "in vocabulary"]) is True
