"""dualpath_book.prose: the page sentences follow the config they describe (never a template of one recipe)."""
from __future__ import annotations

from dualpath.config import preset
from dualpath_book.prose import (scale_sentence, stage1_sentence, stage2_sentence, vocabulary_sentence,
                                 word_vector_sentence)


def test_stage2_sentence_follows_the_config():
    book = stage2_sentence(preset("cpu"))
    assert "ranking loss alone" in book and "hardest negative in the batch" in book
    assert "mined" not in book and "frozen" in book and "cosine" in book
    mined = stage2_sentence(preset("cpu", negatives="paper", n_candidates=64, finetune_blocks=1,
                                   lambda_img=1.0, lambda_txt=0.1))
    assert "hardest of 64 captions" in mined and "the top block of the image CNN" in mined and "1 : 0.1" in mined
    assert "every negative in the batch" in stage2_sentence(preset("cpu", negatives="sum"))


def test_scale_sentence_follows_the_config():
    paper = preset("paper")
    book = scale_sentence(preset("cpu"), paper)
    assert "5 + 15 epochs against the official 240 + 60" in book
    assert "no crops" in book and "frozen in both stages" in book and "dropout 0.3" in book
    assert "EfficientNet-Lite0 instead of the paper's ResNet-50" in book
    assert "the ranking loss alone in Stage II" in book and "cosine classifier (scale 32)" in book
    assert "Stage II loss weights 2 : 1 : 0.1" in scale_sentence(preset("cpu", lambda_img=1.0, lambda_txt=0.1,
                                                                     lambda_rank=2.0, backbone="resnet50"),
                                                                paper.replace(lambda_rank=1.0))
    other = scale_sentence(preset("cpu", train_views=4, finetune_blocks=1, negatives="sum",
                                  image_input_dropout=0.0), paper)
    assert "4 cached views" in other and "the top backbone block fine-tuned" in other
    assert "sum over in-batch negatives" in other and "dropout" not in other
    assert "fresh crops" in scale_sentence(preset("cpu", finetune_blocks=-1), paper)
    assert "fresh crops and flips in both stages" in scale_sentence(paper, paper)
    assert "no mining" in stage2_sentence_of("paper-cuhk")


def stage2_sentence_of(name: str) -> str:
    return stage2_sentence(preset(name))


def test_stage1_sentence_says_what_the_images_are_and_how_long():
    book = stage1_sentence(preset("cpu"))
    assert "cached for the whole image and its mirror, so the run sees no crops" in book
    assert "5 epochs, each over every training caption once, in batches of 128, with Adam" in book
    assert "cosine" in book
    views = stage1_sentence(preset("cpu", train_views=4, epoch_unit="images", schedule="step", stage1_lr_steps=[3]))
    assert "4 views of each image" in views and "every training image once" in views
    assert "divided by 10 at epoch 3" in views
    paper = stage1_sentence(preset("paper"))
    assert "fresh random crop and flip" in paper and "240 epochs" in paper and "SGD" in paper


def test_vocabulary_and_word_vector_sentences_follow_the_config():
    book = vocabulary_sentence(preset("cpu"), 7000)
    assert "lower-cased" in book and "every word of the training captions (7,000)" in book
    official = vocabulary_sentence(preset("paper"), 20074)
    assert "keep their case" in official and "20,074 training words that have a word vector" in official
    assert "GloVe 6B" in word_vector_sentence(preset("cpu"), {"source": "glove50", "dim": 50})
    assert "300-d word2vec vectors, as the paper does" in word_vector_sentence(preset("paper"), {"source": "word2vec", "dim": 300})
    assert "random vectors" in word_vector_sentence(preset("cpu", word_vectors="random"), {"source": "random"})
