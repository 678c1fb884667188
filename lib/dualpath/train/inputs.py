"""What training eats: the splits with their captions packed as tensors, and one image source.

``prepare`` loads the corpus, builds the vocabulary from the train captions, reads the word
vectors and extracts (or reads) the frozen-CNN feature cache. ``image_source`` turns a phase's
fine-tuning and the config's ``train_images`` into one of three strategies, and only these
classes know the difference:

===================  ==========================================  =============================
source               a training batch (index, view) ->            evaluation views
===================  ==========================================  =============================
``CachedPooled``     cached pooled features                       whole image + mirror, cached
``CachedMaps(k)``    cached maps -> the backbone's top k blocks   the same, through the k blocks
``Pixels(k)``        decoded, freshly augmented images ->         images decoded again
                     the whole backbone, top k blocks trained
===================  ==========================================  =============================
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Config
from ..data.corpus import Corpus
from ..data.images import AugmentedImages, normalize
from ..data.registry import load_corpus
from ..data.text import Vocabulary, shift_offsets
from ..data.wordvec import embedding_matrix, find_word2vec, load_glove_package, load_word_vectors
from ..embed import image_embeddings_from_inputs, image_embeddings_from_pixels, text_embeddings
from ..errors import ConfigError, DataError
from ..features import FeatureSpec, Features, load_or_extract
from ..models.backbones import build_backbone
from ..paths import cache_root


# ------------------------------------------------------------------------------- the splits
@dataclass
class Split:
    """One split and its captions, as lists (for evaluation) and as tensors (for training)."""

    corpus: Corpus
    caption_ids: list[list[int]]           # vocabulary ids of every caption
    features: Features | None
    packed: torch.Tensor                   # [n_captions, max_len] the first max_len ids, 0-padded
    lengths: torch.Tensor                  # [n_captions] ids kept (<= max_len)
    caption_image: torch.Tensor            # [n_captions] image of each caption
    image_label: torch.Tensor              # [n_images] class of each image
    caps_start: torch.Tensor               # captions of class c: caps_by_class[caps_start[c]:][:caps_count[c]]
    caps_count: torch.Tensor
    caps_by_class: torch.Tensor            # caption ids grouped by class, each group in caption order

    @classmethod
    def build(cls, corpus: Corpus, caption_ids: list[list[int]], features: Features | None,
              max_len: int) -> "Split":
        lengths = torch.tensor([min(len(ids), max_len) for ids in caption_ids], dtype=torch.long)
        packed = torch.zeros(len(caption_ids), max_len, dtype=torch.long)
        for row, ids in enumerate(caption_ids):
            if ids:
                packed[row, :len(ids[:max_len])] = torch.as_tensor(ids[:max_len], dtype=torch.long)
        caption_image = torch.as_tensor(corpus.caption_image, dtype=torch.long)
        image_label = torch.as_tensor(corpus.image_label, dtype=torch.long)
        # a class is an image (Flickr, COCO: the same groups as by image) or a person (CUHK-PEDES)
        caption_class = image_label[caption_image]
        counts = torch.bincount(caption_class, minlength=int(image_label.max()) + 1 if len(image_label) else 0)
        start = torch.cumsum(counts, 0) - counts
        by_class = torch.argsort(caption_class, stable=True)
        return cls(corpus, caption_ids, features, packed, lengths, caption_image,
                   image_label, start, counts, by_class)

    @property
    def n_images(self) -> int:
        return self.corpus.n_images

    @property
    def n_views(self) -> int:
        return self.features.n_views if self.features is not None else 1

    def draw_captions(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One caption for each image, uniformly among its class's: its own on Flickr and COCO, any
        image's of the same person on CUHK-PEDES (SPEC 3.3). One draw of ``gen`` per image."""
        classes = self.image_label[images]
        u = torch.rand(len(images), generator=gen).double()   # double: the same picks as Python floats
        count = self.caps_count[classes]
        k = torch.minimum((u * count.double()).long(), count - 1)
        return self.caps_by_class[self.caps_start[classes] + k]

    def encode(self, captions: torch.Tensor, shift: str, gen: torch.Generator | None = None) -> torch.Tensor:
        """Word ids [B, max_len] of ``captions`` placed by ``shift`` (``data.text.encode_ids``, batched)."""
        n = self.lengths[captions]
        length = self.packed.shape[1]
        offsets = shift_offsets(length - n, shift, gen)
        pos = torch.arange(length)[None, :] - offsets[:, None]       # source position of each slot
        keep = (pos >= 0) & (pos < n[:, None])
        rows = self.packed[captions].gather(1, pos.clamp(0, length - 1))
        return torch.where(keep, rows, torch.zeros_like(rows))


@dataclass
class TrainingData:
    cfg: Config
    vocab: Vocabulary
    embedding_init: object
    coverage: dict
    splits: dict[str, Split]               # 'train', 'val', 'test'
    backbone: torch.nn.Module

    def cache_files(self) -> list[str]:
        """The feature-cache file of each split (its name holds the cache key)."""
        return [s.features.path.name for s in self.splits.values() if s.features is not None]


def word_vectors(cfg: Config, vocab: Vocabulary, data_root=None) -> tuple[list[str], object] | None:
    """(words, vectors) of ``cfg.word_vectors`` that ``vocab`` can use, or None for 'random'."""
    if cfg.word_vectors == "random":
        return None
    if cfg.word_vectors == "glove50":
        return load_glove_package()
    path = find_word2vec(data_root) if cfg.word_vectors == "word2vec" else cfg.word_vectors
    # Only the vocabulary's words, as embedding_matrix looks them up (as written, then
    # lower-cased): all of GoogleNews is 3M x 300 floats, about 3.6 GB.
    keep = {w for word in vocab.words for w in (word, word.lower())}
    words, vectors = load_word_vectors(path, keep=keep)
    if not words:
        raise DataError(f"word vector file {path} has none of the {len(vocab.words):,} "
                        f"training words; is it the right file (word2vec / GloVe format)?")
    return words, vectors


def vocabulary(cfg: Config, captions: list[str], data_root=None):
    """(vocabulary, embedding matrix or None, coverage report) from the train captions.

    With ``vocab_needs_vector`` the vocabulary keeps only the words that have a vector as
    written, the official dictionary (SPEC 1.2: a word without one is dropped from every caption).
    """
    vocab = Vocabulary.build(captions, min_count=cfg.min_count, lowercase=cfg.lowercase)
    found = word_vectors(cfg, vocab, data_root)
    if found is None:
        if cfg.vocab_needs_vector:
            raise ConfigError("vocab_needs_vector=True needs word vectors; word_vectors='random' has none")
        return vocab, None, {"source": "random"}
    words, vectors = found
    if cfg.vocab_needs_vector:
        vocab = Vocabulary.build(captions, min_count=cfg.min_count, lowercase=cfg.lowercase,
                                 restrict_to=words)
        if not vocab.words:
            raise DataError(f"no training word has a vector in {cfg.word_vectors}; "
                            f"check the file and the 'lowercase' setting")
    matrix, coverage = embedding_matrix(vocab, words, vectors, seed=cfg.seed)
    return vocab, matrix, {"source": cfg.word_vectors, **coverage}


def prepare(cfg: Config, data_root=None, log=print, corpus: Corpus | None = None) -> TrainingData:
    """Load the corpus and vocabulary, and extract (or read) the frozen-CNN features.

    The cache holds the inputs of the top ``max(finetune_blocks, 0)`` blocks: it depends on the
    config alone, not on the recipe or epoch counts, so every ablation arm of one config shares it.
    """
    corpus = corpus if corpus is not None else load_corpus(cfg.dataset, data_root)
    names = cfg.role_splits()
    for role, name in names.items():
        if name not in corpus.splits:
            raise DataError(f"dataset {corpus.name!r} has no split {name!r} (for {role}); "
                            f"it has {sorted(corpus.splits)}")
    parts = {role: corpus.select(name) for role, name in names.items()}
    vocab, matrix, coverage = vocabulary(cfg, parts["train"].captions, data_root)
    backbone = build_backbone(cfg.backbone, None if cfg.backbone_weights == "none" else cfg.backbone_weights)
    backbone.eval()
    top = max(cfg.finetune_blocks, 0)
    splits = {}
    for role, part in parts.items():
        if role == "train" and cfg.train_images == "pixels":   # every batch is decoded afresh
            splits[role] = Split.build(part, vocab.encode_all(part.captions), None, cfg.max_len)
            continue
        views = cfg.train_views if role == "train" else 2
        spec = FeatureSpec(cfg.backbone, cfg.backbone_weights, cfg.image_size, top, views, cfg.seed)
        # the whole split keeps its own name in the cache key: select() renames it
        feats = load_or_extract(spec, backbone, corpus, names[role], cache_root(),
                                show_progress=cfg.progress, log=log)
        splits[role] = Split.build(part, vocab.encode_all(part.captions), feats, cfg.max_len)
    return TrainingData(cfg, vocab, matrix, coverage, splits, backbone)


# ----------------------------------------------------------------------------- image sources
class ImageSource:
    """Where the trainable image path starts: ``batch`` rows, ``pool`` them, ``embed`` a split."""

    trainable_blocks = 0   # backbone top blocks this source trains

    def configure(self, backbone) -> None:
        """Freeze the backbone except what this source trains (BN mode is the trainer's)."""
        backbone.set_trainable(self.trainable_blocks)

    def batch(self, split: Split, index: torch.Tensor, view: torch.Tensor,
              seeds: torch.Tensor | None = None) -> torch.Tensor:
        """What ``pool`` eats for images ``index`` (cached ``view`` of each; ``seeds``: the crop of
        each, when images are decoded)."""
        raise NotImplementedError

    def batches(self, plan):
        """The batches of an ``EpochPlan``, in order; a source may fill in their ``images``."""
        return (plan.batch(k) for k in range(len(plan)))

    def pool(self, backbone, x: torch.Tensor) -> torch.Tensor:
        """``batch`` rows -> pooled backbone features [B, C] (through the trainable blocks)."""
        return x

    def pooled(self, backbone, split: Split, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """A training batch (index, view) -> pooled features."""
        return self.pool(backbone, self.batch(split, index, view))

    @torch.no_grad()
    def embed(self, model, split: Split) -> torch.Tensor:
        """L2-normalised test-time image embeddings of every image of ``split`` (SPEC 1.4)."""
        return image_embeddings_from_inputs(model.image_head, self.eval_views(split),
                                            self.eval_pool(model.backbone))

    def eval_views(self, split: Split) -> list[torch.Tensor]:
        """The whole image and its mirror (the cached views 0 and 1) of every image."""
        index = torch.arange(split.n_images)
        return [self._rows(split, v, index) for v in range(min(2, split.features.n_views))]

    def eval_pool(self, backbone):
        return None

    def _rows(self, split: Split, view, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CachedPooled(ImageSource):
    """Backbone frozen: cached pooled features go straight to the image head."""

    def batch(self, split, index, view, seeds=None):
        return self._rows(split, view, index)

    def _rows(self, split, view, index):
        return split.features.image_input(view, index, use_maps=False)


class CachedMaps(ImageSource):
    """The top ``k`` backbone blocks trained on cached maps of their input."""

    def __init__(self, k: int):
        self.trainable_blocks = k

    def batch(self, split, index, view, seeds=None):
        return self._rows(split, view, index)

    def pool(self, backbone, x):
        return backbone.forward_top(self.trainable_blocks, x)

    def eval_pool(self, backbone):
        return lambda x: backbone.forward_top(self.trainable_blocks, x)

    def _rows(self, split, view, index):
        return split.features.image_input(view, index, use_maps=True)


class Pixels(ImageSource):
    """Decoded images, a fresh random crop and flip each time (SPEC 3.4), through the whole backbone,
    of which the top ``k`` blocks train (-1: all, 0: none); cached features are not used. A GPU's job.

    An epoch's images come from a ``DataLoader``: ``cfg.loader_workers`` processes decode and
    augment (0: this process) while the model trains, into pinned memory on CUDA, prefetching a
    few batches, the workers kept for the whole phase. Each row's crop is drawn from its own seed
    (``EpochPlan.seeds``: the run's seed, phase, epoch and row), so the crops do not depend on the
    number of workers, and a resumed run draws the same ones. Batches travel as uint8 and are
    normalised on the model's device.
    """

    def __init__(self, cfg: Config, backbone, k: int = -1, device=None):
        self.image_size, self.mean, self.std = cfg.image_size, backbone.mean, backbone.std
        self.trainable_blocks = k
        self.workers, self.channels_last = cfg.loader_workers, cfg.channels_last
        self.pin = device is not None and torch.device(device).type == "cuda"
        self._loader = None
        self._dataset = None      # (split, its AugmentedImages)
        self._plan = _PlanBatches()

    def configure(self, backbone) -> None:
        if self.trainable_blocks == -1:
            for p in backbone.parameters():
                p.requires_grad_(True)
        else:
            backbone.set_trainable(self.trainable_blocks)

    def batch(self, split, index, view, seeds=None):
        if seeds is None:   # a batch outside an epoch plan (tests, tools): seeds from torch's RNG
            seeds = torch.randint(2 ** 62, (len(index),))
        crops = self._crops(split)
        return torch.stack([crops[(int(i), int(s))] for i, s in zip(index, seeds)])

    def _crops(self, split) -> AugmentedImages:
        """The split's training crops (one dataset per split: its path list is built once)."""
        if self._dataset is None or self._dataset[0] is not split:
            self._dataset = (split, AugmentedImages(split.corpus.image_paths(), self.image_size))
        return self._dataset[1]

    def batches(self, plan):
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                self._crops(plan.split),
                batch_sampler=self._plan, num_workers=self.workers, pin_memory=self.pin,
                persistent_workers=self.workers > 0, prefetch_factor=4 if self.workers else None,
                # the loader draws its workers' base seed from this, not from torch's global RNG
                # (which dropout draws from); crops come from the rows' own seeds
                generator=torch.Generator().manual_seed(0))
        self._plan.plan = plan    # the sampler runs in this process: the workers see each new epoch
        for k, images in enumerate(self._loader):
            yield dataclasses.replace(plan.batch(k), images=images)

    def pool(self, backbone, x):
        x = normalize(x, self.mean, self.std) if x.dtype == torch.uint8 else x
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.trainable_blocks == 0:
            with torch.no_grad():       # a frozen backbone: no graph to keep
                return backbone(x)
        return backbone(x)

    @torch.no_grad()
    def embed(self, model, split):
        return image_embeddings_from_pixels(model.backbone, model.image_head, split.corpus.image_paths(),
                                            self.image_size, workers=self.workers,
                                            channels_last=self.channels_last)


class _PlanBatches:
    """The batch sampler of :class:`Pixels`: the (image, seed) keys of each batch of ``plan``."""

    plan = None

    def __iter__(self):
        plan = self.plan
        for k in range(len(plan)):
            batch = plan.batch(k)
            yield list(zip(batch.index.tolist(), batch.seeds.tolist()))

    def __len__(self) -> int:
        return len(self.plan)


def image_source(finetune: int, cfg: Config, backbone, device=None) -> ImageSource:
    """The source of a phase that trains ``finetune`` backbone top blocks (0: none, -1: all)."""
    if finetune == -1 or cfg.train_images == "pixels":
        return Pixels(cfg, backbone, finetune, device)
    return CachedMaps(finetune) if finetune > 0 else CachedPooled()


@torch.no_grad()
def embed_split(model, source: ImageSource, split: Split, max_len: int,
                shift: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Test-time image and caption embeddings of a split under the current weights."""
    model.eval()
    txt = text_embeddings(model.text_cnn, split.caption_ids, max_len, shift)
    return source.embed(model, split), txt
