"""Tests for dualpath.evaluate: the vectorised ranking against dualpath.evaluate_reference (one sort
per query), hand cases."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dualpath.errors import ConfigError, DataError
from dualpath.evaluate import (PROTOCOLS, evaluate, evaluate_embeddings, retrieval_metrics,
                               retrieval_ranks)
from dualpath.evaluate_reference import reference_metrics, reference_ranks


def assert_same(actual: dict, expected: dict, tol: float = 1e-9):
    assert set(actual) == set(expected)
    for key in expected:
        assert actual[key] == pytest.approx(expected[key], abs=tol, rel=0), key


def random_problem(seed: int, n_images: int = 23, dim: int = 8, max_captions: int = 6,
                   dtype=torch.float64):
    """Unnormalised embeddings, 1..max_captions captions per image, captions shuffled.

    Captions are noisy copies of their image, so R@1..10 land strictly between 0 and 100
    and every metric is exercised.
    """
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n_images, dim, generator=g, dtype=torch.float64)
    per_image = torch.randint(1, max_captions + 1, (n_images,), generator=g)
    caption_image = torch.repeat_interleave(torch.arange(n_images), per_image)
    caption_image = caption_image[torch.randperm(len(caption_image), generator=g)]
    txt = img[caption_image] + 1.5 * torch.randn(len(caption_image), dim, generator=g,
                                                 dtype=torch.float64)
    scale = torch.rand(len(txt), 1, generator=g, dtype=torch.float64) * 3 + 0.1
    return img.to(dtype), (txt * scale).to(dtype), caption_image.numpy()


# --------------------------------------------------------------------------------------
# Vectorised == reference
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 1024])
def test_matches_reference_on_random_data(seed, chunk_size):
    img, txt, caption_image = random_problem(seed)
    expected = reference_metrics(img, txt, caption_image)
    assert_same(retrieval_metrics(img, txt, caption_image, chunk_size=chunk_size), expected)


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_with_class_labels(seed):
    img, txt, caption_image = random_problem(seed, n_images=20)
    labels = np.random.default_rng(seed).integers(0, 7, len(img)) * 3 + 100  # sparse ids
    expected = reference_metrics(img, txt, caption_image, image_label=labels)
    actual = retrieval_metrics(img, txt, caption_image, image_label=labels, chunk_size=3)
    assert_same(actual, expected)


@pytest.mark.parametrize("seed", range(3))
def test_per_query_ranks_match_reference(seed):
    img, txt, caption_image = random_problem(seed)
    labels = np.arange(len(img)) // 2 if seed == 2 else None
    actual = retrieval_ranks(img, txt, caption_image, image_label=labels, chunk_size=5)
    for d, expected in reference_ranks(img, txt, caption_image, labels).items():
        np.testing.assert_array_equal(actual[d].rank0, expected.rank0)
        np.testing.assert_allclose(actual[d].ap, expected.ap, rtol=0, atol=1e-12)


@pytest.mark.parametrize("block_elements", [1, 60, 500])
def test_cache_blocks_do_not_change_results(monkeypatch, block_elements):
    # Tiny comparison blocks force many row blocks per chunk (production: one per 2M scores).
    monkeypatch.setattr("dualpath.evaluate._BLOCK_ELEMENTS", block_elements)
    img, txt, caption_image = random_problem(9, n_images=15)
    labels = np.arange(len(img)) % 4
    for image_label in (None, labels):
        expected = reference_metrics(img, txt, caption_image, image_label=image_label)
        assert_same(retrieval_metrics(img, txt, caption_image, image_label=image_label,
                                      chunk_size=6), expected)


def test_matches_reference_in_float32():
    img, txt, caption_image = random_problem(11, n_images=30, dtype=torch.float32)
    expected = reference_metrics(img, txt, caption_image)
    assert_same(retrieval_metrics(img, txt, caption_image, chunk_size=8), expected)


def test_caption_order_does_not_matter():
    img, txt, caption_image = random_problem(3)
    perm = np.random.default_rng(0).permutation(len(txt))
    assert_same(retrieval_metrics(img, txt[perm], caption_image[perm]),
                retrieval_metrics(img, txt, caption_image), tol=1e-12)  # only summation order


def test_one_direction_only():
    img, txt, caption_image = random_problem(5)
    t2i = retrieval_metrics(img, txt, caption_image, directions=("t2i",))
    assert_same(t2i, reference_metrics(img, txt, caption_image, directions=("t2i",)))
    assert not any(key.startswith("i2t") for key in t2i)


def test_thread_count_is_restored():
    threads = torch.get_num_threads()
    img, txt, caption_image = random_problem(4)
    retrieval_metrics(img, txt, caption_image)
    assert torch.get_num_threads() == threads


def test_accepts_numpy_and_lists():
    img, txt, caption_image = random_problem(2)
    assert_same(retrieval_metrics(img.numpy(), txt.numpy(), caption_image.tolist()),
                retrieval_metrics(img, txt, torch.as_tensor(caption_image)), tol=0)


# --------------------------------------------------------------------------------------
# Hand-built cases
# --------------------------------------------------------------------------------------

def test_perfect_embeddings():
    img = torch.eye(4)
    caption_image = np.array([0, 0, 1, 2, 2, 2, 3, 1])
    out = retrieval_metrics(img, img[caption_image], caption_image)
    for d in ("i2t", "t2i"):
        assert out[f"{d}_r1"] == out[f"{d}_r5"] == out[f"{d}_map"] == 100.0
        assert out[f"{d}_medr"] == out[f"{d}_meanr"] == 1.0
    assert out["rsum"] == 600.0


def hand_case():
    """Captions are the unit axes, so sim[i, t] = img[i, t] (all rows are unit vectors).

    caption_image = [0, 0, 1, 2]; similarity table (rows images, columns captions):
        img0  .48* .60* .64  0       i2t: c2 ahead of both positives -> rank0 1, AP (1/2+2/3)/2
        img1  0    0    1*   0       i2t: rank0 0, AP 1
        img2  .60  .64  0    .48*    i2t: c0, c1 ahead -> rank0 2, AP 1/3
    t2i ranks: c0 -> img2 ahead (1), c1 -> img2 ahead (1), c2 -> 0, c3 -> 0.
    """
    img = torch.tensor([[0.48, 0.60, 0.64, 0.0],
                        [0.0, 0.0, 1.0, 0.0],
                        [0.60, 0.64, 0.0, 0.48]], dtype=torch.float64)
    return img, torch.eye(4, dtype=torch.float64), np.array([0, 0, 1, 2])


def test_hand_computed_ranks():
    img, txt, caption_image = hand_case()
    out = retrieval_metrics(img, txt, caption_image)
    expected = {
        "i2t_r1": 100 / 3, "i2t_r5": 100.0, "i2t_r10": 100.0,
        "i2t_medr": 2.0, "i2t_meanr": 2.0, "i2t_map": 100 * (7 / 12 + 1 + 1 / 3) / 3,
        "t2i_r1": 50.0, "t2i_r5": 100.0, "t2i_r10": 100.0,
        "t2i_medr": 1.0, "t2i_meanr": 1.5, "t2i_map": 75.0,
    }
    expected["rsum"] = sum(v for k, v in expected.items() if "_r" in k and "meanr" not in k)
    assert_same(out, expected)
    assert_same(reference_metrics(img, txt, caption_image), expected)


def test_hit_at_k_uses_the_best_of_several_captions():
    # img0's captions score .48 and .60 with one negative (.64) between: its rank is that
    # of the better caption, 1, not the worse one, 2.
    img, txt, caption_image = hand_case()
    out = retrieval_metrics(img[:1], txt[:3], np.array([0, 0, 0]), directions=("i2t",))
    assert out["i2t_medr"] == 1.0  # all three are positives now: first hit at the top
    out = retrieval_metrics(img, txt, caption_image, directions=("i2t",))
    assert out["i2t_r1"] == pytest.approx(100 / 3)  # only img1 has a caption first


def test_ties_count_against_the_query():
    # Entries of +-1/2 in 4 dimensions: unit norm and exact dot products, so ties are exact.
    h = 0.5
    img = torch.tensor([[h, h, h, h], [-h, -h, -h, -h]])
    txt = torch.tensor([[h, h, h, -h],    # c0 (img0)  img0: .5   img1: -.5
                        [h, h, -h, h],    # c1 (img1)  img0: .5   img1: -.5
                        [h, h, h, h],     # c2 (img1)  img0: 1    img1: -1
                        [h, -h, -h, h],   # c3 (img1)  img0: 0    img1: 0
                        [h, h, -h, -h]])  # c4 (img1)  img0: 0    img1: 0
    caption_image = np.array([0, 1, 1, 1, 1])
    out = retrieval_metrics(img, txt, caption_image, chunk_size=1)
    # img0: c1 ties its caption c0, c2 beats it -> rank0 2. img1: best positives c3, c4
    # at 0, nothing negative >= 0 -> rank0 0; AP over c3, c4, c1 (tied with c0), c2.
    assert out["i2t_r1"] == 50.0
    assert out["i2t_medr"] == 2.0 and out["i2t_meanr"] == 2.0
    assert out["i2t_map"] == pytest.approx(100 * (1 / 3 + (1 + 1 + 3 / 4 + 4 / 5) / 4) / 2)
    # t2i: only c0 beats the other image strictly; c3, c4 tie with img0 and lose.
    assert out["t2i_r1"] == 20.0
    assert out["t2i_meanr"] == 1.8 and out["t2i_medr"] == 2.0
    assert_same(out, reference_metrics(img, txt, caption_image))


def test_collapsed_embedding_ranks_last():
    # A constant embedding ties everything; the pessimistic rule gives it no credit.
    img = torch.ones(3, 2)
    out = retrieval_metrics(img, torch.ones(6, 2), np.array([0, 0, 1, 1, 2, 2]))
    assert out["i2t_r1"] == 0.0 and out["i2t_medr"] == 5.0  # 4 negatives ahead
    assert out["t2i_r1"] == 0.0 and out["t2i_medr"] == 3.0  # 2 negatives ahead


def test_map_one_positive_is_reciprocal_rank():
    img, txt, caption_image = hand_case()
    out = retrieval_metrics(img, txt, caption_image, directions=("t2i",))
    assert out["t2i_map"] == pytest.approx(100 * (1 / 2 + 1 / 2 + 1 + 1) / 4)


def test_cuhk_positives_by_identity():
    """Images 0 and 1 share a person id; caption c0 describes image 0, c1 image 2.

    Similarities (images x captions): img0 (.1, .6), img1 (.9, .1), img2 (.8, .5).
    c0: positives img0, img1; img1 first -> rank0 0, AP (1 + 2/3)/2.
    c1: positive img2 behind img0 -> rank0 1, AP 1/2.
    """
    def unit(a, b):
        return [a, b, math.sqrt(1 - a * a - b * b)]

    img = torch.tensor([unit(.1, .6), unit(.9, .1), unit(.8, .5)], dtype=torch.float64)
    txt = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64)
    caption_image, labels = np.array([0, 2]), np.array([7, 7, 9])
    out = evaluate_embeddings(img, txt, caption_image, "cuhk", image_label=labels)
    assert out["top1"] == out["t2i_r1"] == 50.0
    assert out["top5"] == out["top10"] == 100.0
    assert out["map"] == pytest.approx(100 * (5 / 6 + 1 / 2) / 2)
    assert out["t2i_medr"] == 1.0 and out["t2i_meanr"] == 1.5
    assert not any(key.startswith("i2t") for key in out)
    # Without identities c0 would have img1 and img2 ahead of its own image.
    plain = retrieval_metrics(img, txt, caption_image, directions=("t2i",))
    assert plain["t2i_r1"] == 0.0


# --------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------

def test_coco_1k_is_the_mean_over_folds():
    img, txt, caption_image = random_problem(7, n_images=30)
    folded = evaluate_embeddings(img, txt, caption_image, "coco-1k", fold_size=10, chunk_size=4)
    separate = []
    for f in range(3):
        mine = np.flatnonzero(caption_image // 10 == f)
        separate.append(reference_metrics(img[10 * f:10 * f + 10], txt[mine],
                                          caption_image[mine] - 10 * f))
    assert_same(folded, {k: float(np.mean([s[k] for s in separate])) for k in separate[0]})


def test_coco_1k_needs_whole_folds():
    img, txt, caption_image = random_problem(0, n_images=25)
    with pytest.raises(ConfigError, match="folds of 10"):
        evaluate_embeddings(img, txt, caption_image, "coco-1k", fold_size=10)


@pytest.mark.parametrize("protocol", ["1k", "coco-5k"])
def test_all_against_all_protocols(protocol):
    img, txt, caption_image = random_problem(1)
    assert_same(evaluate_embeddings(img, txt, caption_image, protocol),
                retrieval_metrics(img, txt, caption_image), tol=0)


def test_unknown_protocol_lists_the_valid_ones():
    img, txt, caption_image = hand_case()
    with pytest.raises(ConfigError) as err:
        evaluate_embeddings(img, txt, caption_image, "flickr")
    assert all(p in str(err.value) for p in PROTOCOLS)


def test_cuhk_needs_labels():
    img, txt, caption_image = hand_case()
    with pytest.raises(ConfigError, match="image_label"):
        evaluate_embeddings(img, txt, caption_image, "cuhk")


@pytest.mark.parametrize("bad, error", [
    (dict(caption_image=np.array([0, 0, 1])), DataError),        # wrong length
    (dict(caption_image=np.array([0, 0, 1, 3])), DataError),     # no image 3
    (dict(caption_image=np.array([0, 0, 1, 1])), DataError),     # image 2 has no caption
    (dict(caption_image=np.array([0.0, 0, 1, 2])), DataError),   # not integers
    (dict(img_emb=torch.zeros(0, 4)), DataError),                # no images
    (dict(txt_emb=torch.eye(4)[:, :3]), DataError),              # width mismatch
    (dict(txt_emb=torch.full((4, 4), math.nan)), DataError),
    (dict(directions=("i2t", "x")), ConfigError),
    (dict(chunk_size=0), ConfigError),
])
def test_bad_input_is_reported(bad, error):
    img, txt, caption_image = hand_case()
    kwargs = dict(img_emb=img, txt_emb=txt, caption_image=caption_image) | bad
    with pytest.raises(error):
        retrieval_metrics(**kwargs)


def test_images_without_captions_are_fine_for_text_queries():
    img, txt, _ = hand_case()
    out = retrieval_metrics(img, txt, np.array([0, 0, 1, 1]), directions=("t2i",))
    assert set(out) >= {"t2i_r1", "t2i_map"}


# --------------------------------------------------------------------------------------
# evaluate(): an encoder and a corpus
# --------------------------------------------------------------------------------------

class FakeEncoder:
    """Looks embeddings up by image path and caption text, recording batch sizes."""

    def __init__(self, by_path, by_text):
        self.by_path, self.by_text, self.batches = by_path, by_text, []

    def encode_image(self, paths):
        self.batches.append(len(paths))
        return torch.stack([self.by_path[p] for p in paths])

    def encode_text(self, texts):
        self.batches.append(len(texts))
        return torch.stack([self.by_text[t] for t in texts])


def fake_corpus(labels=None):
    img, txt, caption_image = hand_case()
    images = [f"im{i}.jpg" for i in range(len(img))]
    captions = [f"caption number {t}" for t in range(len(txt))]
    corpus = SimpleNamespace(
        images=images, captions=captions, caption_image=caption_image,
        image_label=np.arange(len(images)) if labels is None else labels,
        image_path=lambda i: f"/data/{images[i]}")
    encoder = FakeEncoder({f"/data/{p}": img[i] for i, p in enumerate(images)},
                          dict(zip(captions, txt)))
    return encoder, corpus, (img, txt, caption_image)


def test_evaluate_encodes_in_batches():
    encoder, corpus, (img, txt, caption_image) = fake_corpus()
    out = evaluate(encoder, corpus, "1k", batch_size=2)
    assert encoder.batches == [2, 1, 2, 2]
    assert_same(out, retrieval_metrics(img, txt, caption_image), tol=0)


def test_evaluate_cuhk_uses_corpus_labels():
    encoder, corpus, (img, txt, caption_image) = fake_corpus(labels=np.array([4, 5, 4]))
    out = evaluate(encoder, corpus, "cuhk")
    assert_same(out, evaluate_embeddings(img, txt, caption_image, "cuhk",
                                         image_label=np.array([4, 5, 4])), tol=0)


def test_evaluate_checks_protocol_before_encoding():
    encoder, corpus, _ = fake_corpus()
    with pytest.raises(ConfigError):
        evaluate(encoder, corpus, "5k")
    assert encoder.batches == []


def test_evaluate_rejects_a_bad_batch_size():
    encoder, corpus, _ = fake_corpus()
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate(encoder, corpus, batch_size=0)


def test_evaluate_reports_a_wrong_encoder_output():
    encoder, corpus, _ = fake_corpus()
    encoder.encode_text = lambda texts: torch.zeros(len(texts) + 1, 4)
    with pytest.raises(DataError, match="encode_text"):
        evaluate(encoder, corpus)


def test_round_metrics_keeps_what_a_recall_carries():
    from dualpath.evaluate import round_metrics

    m = {"rsum": 27.200000000000003, "t2i_r1": 0.42, "best_epoch": 2, "stage1": {"i2t_map": 2.0479957171198953}}
    assert round_metrics(m) == {"rsum": 27.2, "t2i_r1": 0.42, "best_epoch": 2, "stage1": {"i2t_map": 2.05}}
