"""Embed and search any images and sentences with a trained model.

    enc = dualpath.load_checkpoint("runs/<run>/best_stage2.pt")
    index = enc.index(images=paths, captions=sentences)
    index.search_images("a dog runs on the beach", k=5)     # text -> images
    index.search_captions("photo.jpg", k=5)                  # image -> captions

``Encoder`` follows the ``encode_image`` / ``encode_text`` contract of
``dualpath.evaluate``, so a trained model is evaluated by the same code as any baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import checkpoint as ckpt_io
from .config import Config
from .data.text import Vocabulary
from .embed import image_embeddings_from_pixels, text_embeddings
from .models import build_model


class Encoder:
    """A trained dual-path model behind ``encode_image`` and ``encode_text``."""

    def __init__(self, model, vocab: Vocabulary, cfg: Config, text_policy: str | None = None):
        self.model, self.vocab, self.cfg = model.eval(), vocab, cfg
        self.text_policy = text_policy or cfg.test_shift

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu",
                        text_policy: str | None = None) -> "Encoder":
        ckpt = ckpt_io.load(path, map_location=device)
        cfg = ckpt_io.config_of(ckpt, path)
        vocab = Vocabulary.from_dict(ckpt["vocab"])
        emb = ckpt["model"].get("text_cnn.embedding.weight")
        model = build_model(cfg, len(vocab), int(ckpt["n_classes"]),
                            embed_dim=int(emb.shape[1]) if emb is not None else 0)
        ckpt_io.load_weights(model, ckpt["model"], path)
        return cls(model.to(device), vocab, cfg, text_policy)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        ids = self.vocab.encode_all(list(texts))
        return text_embeddings(self.model.text_cnn, ids, self.cfg.max_len, self.text_policy)

    def encode_image(self, images: Sequence) -> torch.Tensor:
        """Image files or PIL images -> L2-normalised embeddings [n, d]."""
        return image_embeddings_from_pixels(self.model.backbone, self.model.image_head, list(images),
                                            self.cfg.image_size)

    def index(self, images: Sequence = (), captions: Sequence[str] = ()) -> "Index":
        return Index(self, list(images), list(captions))


@dataclass
class Hit:
    rank: int
    score: float
    index: int
    item: object


class Index:
    """A collection of images and captions embedded once and searched many times."""

    def __init__(self, encoder: Encoder, images: list, captions: list[str]):
        self.encoder, self.images, self.captions = encoder, images, captions
        self.image_emb = encoder.encode_image(images) if images else None
        self.caption_emb = encoder.encode_text(captions) if captions else None

    def search_images(self, query: str, k: int = 5) -> list[Hit]:
        """Text -> the k most similar indexed images."""
        if self.image_emb is None:
            raise ValueError("this index holds no images; build it with index(images=[...])")
        return self._top(self.encoder.encode_text([query])[0], self.image_emb, self.images, k)

    def search_captions(self, image, k: int = 5) -> list[Hit]:
        """Image (path or PIL) -> the k most similar indexed captions."""
        if self.caption_emb is None:
            raise ValueError("this index holds no captions; build it with index(captions=[...])")
        return self._top(self.encoder.encode_image([image])[0], self.caption_emb, self.captions, k)

    @staticmethod
    def _top(query: torch.Tensor, keys: torch.Tensor, items: list, k: int) -> list[Hit]:
        scores = keys @ query
        k = min(k, len(items))
        # stable order for equal scores: the earlier item first
        order = torch.argsort(-scores, stable=True)[:k]
        return [Hit(r + 1, float(scores[i]), int(i), items[int(i)]) for r, i in enumerate(order.tolist())]
