"""Corpus: validation on construction, select() re-indexing, lookups."""
from __future__ import annotations

import numpy as np
import pytest

from dualpath.data.corpus import Corpus, dense_labels
from dualpath.errors import DataError


def make_corpus(**overrides) -> Corpus:
    """Four images, two of them one person (label 7), two captions each except image 3."""
    fields = dict(
        name="toy",
        image_root="/nowhere",
        images=["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
        captions=["a one", "a two", "b one", "b two", "c one", "c two", "d one"],
        caption_image=[0, 0, 1, 1, 2, 2, 3],
        image_label=[7, 7, 3, 5],
        splits={"train": [0, 1, 3], "test": [2]},
    )
    fields.update(overrides)
    return Corpus(**fields)


def test_sizes_and_lookups():
    c = make_corpus()
    assert (c.n_images, c.n_captions, c.n_classes) == (4, 7, 3)
    assert c.captions_of(1) == [2, 3]
    assert c.image_path(2).name == "c.jpg"
    assert c.caption_image.dtype == np.int64 and c.splits["train"].dtype == np.int64
    s = c.summary()
    assert s["splits"] == {"train": 3, "test": 1} and s["captions_per_image"]["max"] == 2


def test_select_reindexes_images_captions_and_labels():
    train = make_corpus().select("train")
    assert train.images == ["a.jpg", "b.jpg", "d.jpg"]
    assert train.captions == ["a one", "a two", "b one", "b two", "d one"]
    assert train.caption_image.tolist() == [0, 0, 1, 1, 2]
    # labels 7, 7, 5 -> dense in order of first appearance
    assert train.image_label.tolist() == [0, 0, 1]
    assert train.n_classes == 2
    assert list(train.splits) == ["train"] and train.splits["train"].tolist() == [0, 1, 2]


def test_select_unknown_split_names_the_available_ones():
    with pytest.raises(DataError, match="no split 'val'.*test"):
        make_corpus().select("val")


@pytest.mark.parametrize("overrides, message", [
    (dict(splits={"train": [0, 1, 2, 3], "val": []}), "split 'val' is empty"),
    (dict(caption_image=[0, 0, 1, 1, 2, 2, 4]), "caption 6 points to image id 4"),
    (dict(caption_image=[0, 0, 1, 1, 2, 2]), "7 captions but 6"),
    (dict(image_label=[0, 1, 2]), "4 images but 3 labels"),
    (dict(images=["a.jpg", "a.jpg", "c.jpg", "d.jpg"]), "'a.jpg' is listed twice"),
    (dict(splits={"train": [0, 0]}), "split 'train' lists image 'a.jpg' twice"),
    (dict(splits={"train": [9]}), "split 'train' holds image ids outside"),
    (dict(caption_image=[0, 0, 1, 1, 2, 2, 2]), "have no caption, e.g. 'd.jpg'"),
])
def test_invalid_corpus_is_rejected_with_a_clear_message(overrides, message):
    with pytest.raises(DataError, match=message):
        make_corpus(**overrides)


def test_dense_labels_in_order_of_first_appearance():
    assert dense_labels([9, 4, 9, 1]).tolist() == [0, 1, 0, 2]
