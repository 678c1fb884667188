"""Loaders: the real Flickr8k and COCO-mini data, plus small files written by the tests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualpath.data import load_coco, load_corpus, load_cuhk_pedes, load_flickr8k, load_karpathy
from dualpath.data.text import Vocabulary, tokenize
from dualpath.errors import DataError


# ---------------------------------------------------------------------- real Flickr8k
def test_flickr8k_sizes_and_splits(flickr8k):
    assert (flickr8k.n_images, flickr8k.n_captions, flickr8k.n_classes) == (8091, 40455, 8091)
    sizes = {k: len(v) for k, v in flickr8k.splits.items()}
    assert sizes == {"train": 6000, "val": 1000, "test": 1000,
                     "mini_train": 200, "mini_val": 50, "mini_test": 100}
    assert flickr8k.image_label.tolist() == list(range(8091))
    assert all(len(flickr8k.captions_of(i)) == 5 for i in range(0, 8091, 97))
    assert flickr8k.image_path(0).is_file()


def test_flickr8k_splits_are_disjoint_and_mini_is_a_prefix(flickr8k):
    train, val, test = (set(flickr8k.splits[s].tolist()) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert flickr8k.splits["mini_train"].tolist() == flickr8k.splits["train"][:200].tolist()


def test_flickr8k_select_test_split(data_root):
    test = load_corpus("flickr8k", data_root, split="test")
    assert (test.n_images, test.n_captions, test.n_classes) == (1000, 5000, 1000)


def test_vocabulary_comes_from_train_captions_only(flickr8k):
    train, test = flickr8k.select("train"), flickr8k.select("test")
    vocab = Vocabulary.build(train.captions)
    # 'milkshake' occurs in 5 test captions and in no train caption
    assert any("milkshake" in tokenize(c) for c in test.captions)
    assert "milkshake" not in vocab
    test_words = {w for c in test.captions for w in tokenize(c)}
    train_words = {w for c in train.captions for w in tokenize(c)}
    assert not (test_words - train_words) & set(vocab.words)
    stats = vocab.stats(test.captions, length=32)
    print(f"\nFlickr8k train vocab {len(vocab) - 1} words; test token coverage "
          f"{stats['token_coverage']:.4f}, mean length {stats['mean_length']:.2f}")
    assert 0.95 < stats["token_coverage"] < 1.0


def test_original_layout_gives_the_same_captions_and_splits(flickr8k, data_root):
    folder = data_root / "flickr8k_224"
    original = load_flickr8k(folder / "original_text", images=folder / "images")
    assert original.n_images == 8091 and original.n_captions == 40455
    assert sorted(zip(original.images, original.captions)) == sorted(zip(flickr8k.images, flickr8k.captions))
    for split in ("train", "val", "test"):
        assert [original.images[i] for i in original.splits[split]] == \
               [flickr8k.images[i] for i in flickr8k.splits[split]]
    assert "2258277193_586949ec62.jpg.1" not in original.images


# ---------------------------------------------------------------------- real COCO-mini
def test_coco_mini_loads_with_load_coco(data_root):
    folder = data_root / "coco_mini"
    corpus = load_coco([folder / "annotations/captions_train2017.json",
                        folder / "annotations/captions_val2017.json"], folder)
    assert (corpus.n_images, corpus.n_captions) == (159, 795)
    assert {k: len(v) for k, v in corpus.splits.items()} == {"train": 80, "test": 79}
    assert all(corpus.image_path(i).is_file() for i in range(corpus.n_images))
    # same image/caption pairs as the folder's own captions.tsv (which collapsed repeated spaces)
    rows = (folder / "captions.tsv").read_text(encoding="utf-8").splitlines()[1:]
    tsv = sorted((r.split("\t")[0], " ".join(r.split("\t")[2].split())) for r in rows)
    pairs = zip((corpus.images[i] for i in corpus.caption_image), (" ".join(c.split()) for c in corpus.captions))
    assert sorted(pairs) == tsv


def test_registry_coco_mini_and_unknown_name(data_root):
    assert load_corpus("coco_mini", data_root).n_images == 159
    with pytest.raises(DataError, match="unknown dataset 'flickr9k'; known: .*flickr8k"):
        load_corpus("flickr9k", data_root)


def test_registry_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match="flickr8k_224"):
        load_corpus("flickr8k", tmp_path)


# ---------------------------------------------------------------------- small Flickr8k layouts
def write_flickr_shared(root: Path, n: int = 4, splits: dict | None = None) -> Path:
    """A tiny shared-layout Flickr8k: images i<k>.jpg (empty files suffice), 2 captions each."""
    (root / "images").mkdir(parents=True)
    (root / "splits").mkdir()
    lines = ["image\tcaption_id\tcaption"]
    for i in range(n):
        (root / "images" / f"i{i}.jpg").touch()
        lines += [f"i{i}.jpg\t0\tA dog number {i} .", f"i{i}.jpg\t1\tThe dog runs ."]
    lines.append("ghost.jpg\t0\ta caption whose image is absent")
    (root / "captions.tsv").write_text("\n".join(lines) + "\n")
    splits = splits or {"train": ["i0.jpg", "i1.jpg"], "test": ["i2.jpg", "i3.jpg"]}
    for name, images in splits.items():
        (root / "splits" / f"{name}.txt").write_text("".join(f"{x}\n" for x in images))
    return root


def test_small_shared_layout_ignores_captions_of_absent_images(tmp_path):
    corpus = load_flickr8k(write_flickr_shared(tmp_path / "f8k"))
    assert corpus.n_images == 4 and corpus.n_captions == 8
    assert "ghost.jpg" not in corpus.images
    assert corpus.select("test").captions == ["A dog number 2 .", "The dog runs .",
                                              "A dog number 3 .", "The dog runs ."]


def test_split_naming_an_absent_image_is_an_error(tmp_path):
    root = write_flickr_shared(tmp_path / "f8k", splits={"train": ["i0.jpg", "ghost.jpg"]})
    with pytest.raises(DataError, match=r"train\.txt:2: split names image 'ghost\.jpg'"):
        load_flickr8k(root)


def test_empty_split_file_is_an_error(tmp_path):
    root = write_flickr_shared(tmp_path / "f8k", splits={"train": ["i0.jpg"], "val": []})
    with pytest.raises(DataError, match=r"val\.txt is empty \(split 'val'\)"):
        load_flickr8k(root)


def test_malformed_tsv_line_names_file_and_line(tmp_path):
    root = write_flickr_shared(tmp_path / "f8k")
    with open(root / "captions.tsv", "a") as f:
        f.write("i0.jpg only two fields\n")
    with pytest.raises(DataError, match=r"captions\.tsv:11: expected 'image<TAB>caption_id<TAB>caption'"):
        load_flickr8k(root)


def test_original_layout_malformed_token_line(tmp_path):
    root = tmp_path / "orig"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.jpg").touch()
    (root / "Flickr8k.token.txt").write_text("a.jpg#0\tA cat .\na.jpg\tno caption number\n")
    for fname in ("Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"):
        (root / fname).write_text("a.jpg\n")
    with pytest.raises(DataError, match=r"Flickr8k\.token\.txt:2: expected '<image>\.jpg#<k><TAB><caption>'"):
        load_flickr8k(root)


def test_missing_root_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"no_such_folder does not exist.*flickr8k_224"):
        load_flickr8k(tmp_path / "no_such_folder")


# ---------------------------------------------------------------------- Karpathy JSON
def karpathy_entry(name, split, sentences, filepath=None):
    entry = {"filename": name, "split": split,
             "sentences": [{"raw": s, "tokens": s.lower().split()} for s in sentences]}
    if filepath:
        entry["filepath"] = filepath
    return entry


def test_karpathy_restval_counts_as_train_and_raw_keeps_case(tmp_path):
    for folder in ("train2014", "val2014"):
        (tmp_path / folder).mkdir()
    entries = [karpathy_entry("a.jpg", "train", ["A Dog ."], "train2014"),
               karpathy_entry("b.jpg", "restval", ["A cat", "Two cats"], "val2014"),
               karpathy_entry("c.jpg", "val", ["A bird"], "val2014"),
               karpathy_entry("d.jpg", "test", ["A fish"], "val2014")]
    for e in entries:
        (tmp_path / e["filepath"] / e["filename"]).touch()
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": entries}))
    corpus = load_karpathy(path, tmp_path)
    assert corpus.name == "coco"
    assert corpus.images[:2] == ["train2014/a.jpg", "val2014/b.jpg"]
    assert [corpus.images[i] for i in corpus.splits["train"]] == ["train2014/a.jpg", "val2014/b.jpg"]
    assert {k: len(v) for k, v in corpus.splits.items()} == {"train": 2, "val": 1, "test": 1}
    assert corpus.captions[0] == "A Dog ."
    assert corpus.captions_of(1) == [1, 2]


def test_karpathy_missing_key_names_key_and_entry(tmp_path):
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"dataset": "flickr30k", "images": [
        karpathy_entry("a.jpg", "train", ["x"]), {"filename": "b.jpg", "sentences": []}]}))
    with pytest.raises(DataError, match=r"dataset_flickr30k\.json: images\[1\] has no key 'split'"):
        load_karpathy(path, tmp_path, check_images=False)


def test_karpathy_missing_images_are_reported(tmp_path):
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"dataset": "flickr30k", "images": [karpathy_entry("a.jpg", "train", ["x"])]}))
    with pytest.raises(DataError, match=r"1 of 1 images are missing .*'a\.jpg'"):
        load_karpathy(path, tmp_path)


@pytest.mark.parametrize("loader", ["karpathy", "coco", "cuhk"])
def test_malformed_json_names_file_line_and_column(tmp_path, loader):
    path = tmp_path / f"broken_{loader}.json"
    path.write_text('{"images": [\n  {"filename": "a.jpg",}\n]}')
    load = {"karpathy": lambda: load_karpathy(path, tmp_path),
            "coco": lambda: load_coco([path], tmp_path, split_names=["train"]),
            "cuhk": lambda: load_cuhk_pedes(path, tmp_path)}[loader]
    with pytest.raises(DataError, match=rf"broken_{loader}\.json:2:\d+: malformed JSON"):
        load()


def test_missing_json_file(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.json does not exist"):
        load_karpathy(tmp_path / "nothere.json", tmp_path)


# ---------------------------------------------------------------------- COCO JSON
def test_coco_split_names_flat_root_and_bad_annotation(tmp_path):
    (tmp_path / "x.jpg").touch()
    path = tmp_path / "captions_custom.json"
    doc = {"images": [{"id": 5, "file_name": "x.jpg"}],
           "annotations": [{"image_id": 5, "caption": "A thing. "}]}
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="cannot tell the split"):
        load_coco([path], tmp_path)
    corpus = load_coco(path, tmp_path, split_names=["val"])
    assert corpus.images == ["x.jpg"] and corpus.captions == ["A thing."] and list(corpus.splits) == ["val"]
    doc["annotations"].append({"image_id": 6, "caption": "orphan"})
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"captions_custom\.json: annotations\[1\] refers to image_id 6"):
        load_coco(path, tmp_path, split_names=["val"])


# ---------------------------------------------------------------------- CUHK-PEDES
def test_cuhk_labels_are_person_ids_with_several_images_each(tmp_path):
    entries = [
        {"split": "train", "id": 12, "file_path": "CUHK01/a.png", "captions": ["man in red", "red shirt"],
         "processed_tokens": [["man", "in", "red"], ["red", "shirt"]]},
        {"split": "train", "id": 12, "file_path": "CUHK01/b.png", "captions": ["man in red again"],
         "processed_tokens": [["man", "in", "red", "again"]]},
        {"split": "train", "id": 3, "file_path": "CUHK03/c.png", "captions": ["woman with bag"],
         "processed_tokens": [["woman", "with", "bag"]]},
        {"split": "test", "id": 40, "file_path": "test/d.png", "captions": ["child"],
         "processed_tokens": [["child"]]},
        {"split": "test", "id": 40, "file_path": "test/e.png", "captions": ["a child"],
         "processed_tokens": [["a", "child"]]},
    ]
    for e in entries:
        (tmp_path / e["file_path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / e["file_path"]).touch()
    path = tmp_path / "reid_raw.json"
    path.write_text(json.dumps(entries))
    corpus = load_cuhk_pedes(path, tmp_path)
    assert (corpus.n_images, corpus.n_captions, corpus.n_classes) == (5, 6, 3)
    assert corpus.image_label.tolist() == [0, 0, 1, 2, 2]
    assert corpus.captions_of(0) == [0, 1]
    train = corpus.select("train")
    assert train.n_classes == 2 and train.image_label.tolist() == [0, 0, 1]
    test = corpus.select("test")
    assert test.image_label.tolist() == [0, 0] and test.captions == ["child", "a child"]


def test_cuhk_missing_key_names_key_and_entry(tmp_path):
    path = tmp_path / "reid_raw.json"
    path.write_text(json.dumps([{"split": "train", "captions": ["x"], "file_path": "a.png"}]))
    with pytest.raises(DataError, match=r"reid_raw\.json: entry \[0\] has no key 'id'"):
        load_cuhk_pedes(path, tmp_path, check_images=False)


def write_flickr30k(root: Path, ids: list[str]) -> Path:
    folder = root / "flickr30k"
    (folder / "flickr30k-images").mkdir(parents=True)
    lines = []
    for i in ids:
        (folder / "flickr30k-images" / f"{i}.jpg").write_bytes(b"")
        lines += [f"{i}.jpg#{k}\tA Dog number {i} runs ( fast ) , caption {k} ." for k in range(5)]
    (folder / "results_20130124.token").write_text("\n".join(lines) + "\n")
    return folder


def test_flickr30k_official_split_follows_flickr8ks_test_and_dev_ids(tmp_path):
    """SPEC 4: test / val are the Flickr30k images whose Flickr id is in Flickr8k's test / dev list;
    every other image trains (Karpathy's JSON lacks some of them, so captions come from the token file)."""
    ids = [str(1000 + i) for i in range(10)]
    write_flickr30k(tmp_path, ids)
    splits = tmp_path / "flickr8k_224" / "splits"
    splits.mkdir(parents=True)
    (splits / "test.txt").write_text("1002_a1b2c3.jpg\n1005_d4e5f6.jpg\n")
    (splits / "val.txt").write_text("1007_0f0f0f.jpg\n")
    corpus = load_corpus("flickr30k_official", tmp_path)
    assert corpus.name == "flickr30k_official" and len(corpus.captions) == 50
    named = {split: sorted(Path(corpus.images[i]).stem for i in ids_) for split, ids_ in corpus.splits.items()}
    assert named == {"test": ["1002", "1005"], "val": ["1007"],
                     "train": [i for i in ids if i not in {"1002", "1005", "1007"}]}
    assert corpus.captions[0] == "A Dog number 1000 runs ( fast ) , caption 0 ."   # case kept
    assert corpus.select("train").n_classes == 7
    # Flickr8k's own lists beside Flickr30k win; a list naming an image Flickr30k lacks is an error
    (tmp_path / "flickr30k" / "Flickr_8k.testImages.txt").write_text("1001_x.jpg\n4242_y.jpg\n")
    (tmp_path / "flickr30k" / "Flickr_8k.devImages.txt").write_text("1003_z.jpg\n")
    with pytest.raises(DataError, match=r"1 of its 2 Flickr ids are not in Flickr30k \(e\.g\. 4242\)"):
        load_corpus("flickr30k_official", tmp_path)


def test_flickr30k_official_split_without_flickr8k_lists_says_what_to_put_where(tmp_path):
    write_flickr30k(tmp_path, ["1", "2"])
    with pytest.raises(DataError, match=r"Flickr_8k\.testImages\.txt and Flickr_8k\.devImages\.txt in .*flickr30k"):
        load_corpus("flickr30k_official", tmp_path)
