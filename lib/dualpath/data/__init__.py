"""Datasets as one :class:`Corpus`, captions as word ids, images as tensors.

    corpus = load_corpus("flickr8k")                 # every split
    train = corpus.select("train")                   # labels 0..K-1 for the instance loss
    vocab = Vocabulary.build(train.captions)         # train captions only
    ids = encode_ids([vocab.encode(c) for c in train.captions[:32]], length=32)
"""
from .coco import load_coco
from .corpus import Corpus
from .cuhk_pedes import load_cuhk_pedes
from .flickr8k import load_flickr8k
from .images import (IMAGENET_MEAN, IMAGENET_STD, ImageDataset, PaperRandomCrop, load_image, test_transform,
                     train_transform)
from .karpathy import load_karpathy
from .registry import DATASETS, load_corpus
from .text import Vocabulary, all_shifts, encode_ids, tokenize
from .wordvec import embedding_matrix, load_glove_package, load_word_vectors

__all__ = [
    "Corpus", "load_corpus", "DATASETS", "load_flickr8k", "load_karpathy", "load_coco", "load_cuhk_pedes",
    "tokenize", "Vocabulary", "encode_ids", "all_shifts",
    "load_glove_package", "load_word_vectors", "embedding_matrix",
    "load_image", "PaperRandomCrop", "train_transform", "test_transform", "ImageDataset",
    "IMAGENET_MEAN", "IMAGENET_STD",
]
