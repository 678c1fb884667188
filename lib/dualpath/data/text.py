"""Captions to word ids: tokenizer, vocabulary and the paper's "position shift".

Paper policy (SPEC section 1.2): the dictionary comes from training captions only; words
outside it are dropped rather than mapped to an UNK token; a sentence is truncated at
``length`` in-vocabulary words and placed contiguously at a start offset, the rest being
padding (id 0). Training draws the offset at random; testing averages over all offsets.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import SHIFT_POLICIES
from ..errors import ConfigError, DataError

PAD = "<pad>"

# Whitespace plus the punctuation the official code split on (- . , ( ) ?), and ! ; : " too,
# so that "dog." and "dog" are one word.
_SPLIT = re.compile(r'[\s\-.,()?!;:"]+')


def tokenize(caption: str, lowercase: bool = True) -> list[str]:
    """Split a caption into words on whitespace and ``- . , ( ) ? ! ; : "``; drop empties."""
    if lowercase:
        caption = caption.lower()
    return [w for w in _SPLIT.split(caption) if w]


@dataclass
class Vocabulary:
    """Word <-> id map with id 0 reserved for padding.

    Build it with :meth:`build` from the *train* captions only: evaluating with words
    learnt from test captions would leak test data into the model.
    """

    words: list[str]                       # words[i] has id i + 1
    counts: list[int]                      # training-token count of each word
    min_count: int = 1
    lowercase: bool = True
    n_dropped_types: int = 0               # distinct train words left out (rare or unmatched)
    n_dropped_tokens: int = 0              # their train-token count
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.words) != len(self.counts):
            raise DataError(f"vocabulary has {len(self.words)} words but {len(self.counts)} counts")
        self._index = {w: i + 1 for i, w in enumerate(self.words)}
        if len(self._index) != len(self.words):
            raise DataError("vocabulary lists a word twice")
        if PAD in self._index:
            raise DataError(f"vocabulary may not contain the padding token {PAD!r}")

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, lowercase: bool = True,
              restrict_to: Iterable[str] | None = None) -> "Vocabulary":
        """Vocabulary of the words occurring at least ``min_count`` times in ``captions``.

        Pass TRAIN captions only. ``restrict_to`` optionally keeps only words in that set
        (the paper kept only words that have a word2vec vector). Ids are assigned by
        decreasing frequency, ties alphabetically, so the result is deterministic.
        """
        if min_count < 1:
            raise ConfigError(f"min_count must be >= 1, got {min_count}")
        counter = Counter(w for c in captions for w in tokenize(c, lowercase))
        allowed = set(restrict_to) if restrict_to is not None else None
        kept = [(w, n) for w, n in counter.items()
                if n >= min_count and (allowed is None or w in allowed)]
        kept.sort(key=lambda wn: (-wn[1], wn[0]))
        kept_words = {w for w, _ in kept}
        dropped = [n for w, n in counter.items() if w not in kept_words]
        return cls(words=[w for w, _ in kept], counts=[n for _, n in kept], min_count=min_count,
                   lowercase=lowercase, n_dropped_types=len(dropped), n_dropped_tokens=sum(dropped))

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        """Number of ids, padding included (the embedding table's row count)."""
        return len(self.words) + 1

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def index(self, word: str) -> int | None:
        """Id of ``word``, or None when it is out of vocabulary."""
        return self._index.get(word)

    def word(self, i: int) -> str:
        return PAD if i == 0 else self.words[i - 1]

    def encode(self, caption: str) -> list[int]:
        """Ids of the caption's in-vocabulary words, in order; unknown words are dropped."""
        index = self._index
        return [index[w] for w in tokenize(caption, self.lowercase) if w in index]

    def encode_all(self, captions: Iterable[str]) -> list[list[int]]:
        return [self.encode(c) for c in captions]

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids`` joined by spaces, padding skipped (for inspection)."""
        return " ".join(self.word(int(i)) for i in ids if int(i) != 0)

    # ------------------------------------------------------------------ reporting
    def stats(self, captions: Sequence[str], length: int | None = None) -> dict[str, Any]:
        """How well this vocabulary covers ``captions`` (e.g. the test split).

        ``mean_length`` counts in-vocabulary words (what the text CNN sees; the paper
        reports 10.5 on Flickr30k). With ``length``, also the fraction truncated.
        """
        n_tokens = n_known = n_empty = n_long = longest = 0
        for caption in captions:
            tokens = tokenize(caption, self.lowercase)
            known = sum(1 for w in tokens if w in self._index)
            n_tokens += len(tokens)
            n_known += known
            n_empty += known == 0
            n_long += length is not None and known > length
            longest = max(longest, known)
        n = max(len(captions), 1)
        coverage = n_known / n_tokens if n_tokens else 0.0
        out = {"n_captions": len(captions), "n_tokens": n_tokens, "token_coverage": coverage,
               "oov_rate": 1.0 - coverage if n_tokens else 0.0, "mean_length": n_known / n,
               "mean_raw_length": n_tokens / n, "max_length": longest, "n_empty": n_empty}
        if length is not None:
            out["frac_truncated"] = n_long / n
        return out

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored in checkpoints so a model always travels with its ids."""
        return {"pad": PAD, "words": list(self.words), "counts": [int(c) for c in self.counts],
                "min_count": self.min_count, "lowercase": self.lowercase,
                "n_dropped_types": self.n_dropped_types, "n_dropped_tokens": self.n_dropped_tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Vocabulary":
        for key in ("words", "counts", "min_count", "lowercase"):
            if key not in d:
                raise DataError(f"vocabulary dict has no key {key!r} (not made by Vocabulary.to_dict?)")
        return cls(words=list(d["words"]), counts=[int(c) for c in d["counts"]],
                   min_count=int(d["min_count"]), lowercase=bool(d["lowercase"]),
                   n_dropped_types=int(d.get("n_dropped_types", 0)),
                   n_dropped_tokens=int(d.get("n_dropped_tokens", 0)))


# ---------------------------------------------------------------------- position shift
def encode_ids(ids_list: Sequence[Sequence[int]], length: int, shift: str = "random",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Pack id sequences into a ``LongTensor [B, length]`` padded with 0.

    Each sequence is truncated to ``length`` words and placed contiguously at a start
    offset: ``random`` draws it uniformly from ``0..length-n`` (the paper's position
    shift, redrawn on every call; pass a seeded ``generator`` for reproducibility),
    ``left`` uses 0, ``center`` uses ``(length-n)//2``.
    """
    if shift not in SHIFT_POLICIES:
        raise ConfigError(f"shift must be one of {SHIFT_POLICIES}, got {shift!r}")
    _check_length(length)
    out = torch.zeros(len(ids_list), length, dtype=torch.long)
    sizes = torch.tensor([min(len(ids), length) for ids in ids_list], dtype=torch.long)
    offsets = shift_offsets(length - sizes, shift, generator)
    for row, (ids, n, start) in enumerate(zip(ids_list, sizes.tolist(), offsets.tolist())):
        if n:
            out[row, start:start + n] = torch.as_tensor(ids[:n], dtype=torch.long)
    return out


def shift_offsets(slack: torch.Tensor, shift: str,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Start offset of each sentence with ``slack`` = length - words free positions, by ``shift``."""
    if shift == "random":
        # One draw per row, even for empty rows, so a row's offset doesn't depend on its neighbours' lengths.
        u = torch.rand(len(slack), generator=generator)
        return torch.minimum((u * (slack + 1)).long(), slack)
    if shift == "center":
        return slack // 2
    return torch.zeros_like(slack)


def all_shifts(ids: Sequence[int], length: int) -> torch.Tensor:
    """Every admissible placement of one sentence: ``LongTensor [length - n + 1, length]``.

    Row ``k`` holds the (truncated) sentence starting at offset ``k``; the paper sums the
    text embeddings over these rows at test time. An empty sentence gives one zero row.
    """
    _check_length(length)
    ids = list(ids)[:length]
    n = len(ids)
    n_shifts = length - n + 1 if n else 1
    out = torch.zeros(n_shifts, length, dtype=torch.long)
    if n:
        row_ids = torch.as_tensor(ids, dtype=torch.long)
        for k in range(n_shifts):
            out[k, k:k + n] = row_ids
    return out


def _check_length(length: int) -> None:
    if not isinstance(length, int) or length < 1:
        raise ConfigError(f"sentence length must be a positive int, got {length!r}")
