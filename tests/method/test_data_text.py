"""Tokenizer, vocabulary and the position shift."""
from __future__ import annotations

import json

import pytest
import torch

from dualpath.data.text import PAD, Vocabulary, all_shifts, encode_ids, tokenize
from dualpath.errors import ConfigError, DataError


def test_tokenize_splits_on_whitespace_and_punctuation():
    caption = 'A black-and-white dog (running), "fast"; why? yes! end:done.'
    assert tokenize(caption) == ["a", "black", "and", "white", "dog", "running", "fast",
                                 "why", "yes", "end", "done"]
    assert tokenize("The Dog .", lowercase=False) == ["The", "Dog"]
    assert tokenize("  ... ") == []


def test_vocabulary_build_encode_and_padding():
    vocab = Vocabulary.build(["a dog runs .", "a dog sits", "a cat"], min_count=2)
    assert vocab.words == ["a", "dog"]  # by frequency; 'runs', 'sits', 'cat' seen once
    assert len(vocab) == 3 and vocab.word(0) == PAD and vocab.index("a") == 1
    assert (vocab.n_dropped_types, vocab.n_dropped_tokens, vocab.min_count) == (3, 3, 2)
    assert vocab.encode("A zebra and a DOG") == [1, 1, 2]  # OOV words are dropped
    assert vocab.decode([0, 1, 2, 0]) == "a dog"


def test_vocabulary_restrict_to_and_case():
    vocab = Vocabulary.build(["Paris is big", "paris"], lowercase=False, restrict_to={"Paris", "big"})
    assert vocab.words == ["Paris", "big"] and not vocab.lowercase
    assert vocab.encode("paris Paris") == [1]


def test_vocabulary_dict_round_trip_is_json_safe():
    vocab = Vocabulary.build(["a dog runs", "a dog"], min_count=1)
    again = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab and again.encode("a dog runs") == vocab.encode("a dog runs")
    with pytest.raises(DataError, match="no key 'words'"):
        Vocabulary.from_dict({"counts": []})


def test_vocabulary_stats():
    vocab = Vocabulary.build(["a dog runs"])
    stats = vocab.stats(["a dog flies", "zebra"], length=1)
    assert stats["n_tokens"] == 4 and stats["token_coverage"] == 0.5 and stats["oov_rate"] == 0.5
    assert stats["mean_length"] == 1.0 and stats["n_empty"] == 1 and stats["frac_truncated"] == 0.5


def test_encode_ids_left_center_and_truncation():
    ids = [[1, 2, 3], [4, 5, 6, 7, 8, 9], []]
    left = encode_ids(ids, 5, shift="left")
    assert left.dtype == torch.long and left.shape == (3, 5)
    assert left.tolist() == [[1, 2, 3, 0, 0], [4, 5, 6, 7, 8], [0] * 5]
    assert encode_ids(ids, 5, shift="center").tolist()[0] == [0, 1, 2, 3, 0]
    with pytest.raises(ConfigError, match="shift must be one of"):
        encode_ids(ids, 5, shift="right")


def test_random_shift_is_deterministic_with_a_seed_and_covers_all_offsets():
    ids = [[7, 8]] * 400
    a = encode_ids(ids, 6, generator=torch.Generator().manual_seed(3))
    b = encode_ids(ids, 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    starts = (a == 7).float().argmax(dim=1)
    assert set(starts.tolist()) == set(range(5))  # offsets 0..L-n
    assert torch.all(a.gather(1, (starts + 1)[:, None]) == 8)  # words stay contiguous
    assert torch.all((a != 0).sum(1) == 2)
    c = encode_ids(ids, 6, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)


def test_random_shift_of_a_full_length_sentence_is_the_sentence():
    assert encode_ids([[1, 2, 3, 4]], 3).tolist() == [[1, 2, 3]]


def test_all_shifts_lists_every_admissible_offset():
    shifts = all_shifts([5, 6], 4)
    assert shifts.tolist() == [[5, 6, 0, 0], [0, 5, 6, 0], [0, 0, 5, 6]]
    assert all_shifts([1, 2, 3, 4, 5], 3).tolist() == [[1, 2, 3]]
    assert all_shifts([], 3).tolist() == [[0, 0, 0]]
