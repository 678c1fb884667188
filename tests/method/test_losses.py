"""Loss tests: hand-computed cases, the pytorch-metric-learning pin, gradients, mining."""

from __future__ import annotations

import math

import pytest
import torch

from dualpath.errors import ConfigError
from dualpath.losses import BatchInstanceLoss, instance_loss, mine_hard_negatives, ranking_loss

# Three unit images e1, e2, e3 and captions whose similarity matrix sim[i, j] = s(image i, caption j) is
#   [[0.6, 0.0, 0.8],
#    [0.8, 0.6, 0.0],
#    [0.0, 0.8, 0.6]]
IMG3 = torch.eye(3)
TXT3 = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.6, 0.8], [0.8, 0.0, 0.6]])


def test_instance_loss_by_hand():
    logits_img = torch.tensor([[0.0, 0.0]])
    logits_txt = torch.tensor([[math.log(3.0), 0.0]])
    loss_img, loss_txt = instance_loss(logits_img, logits_txt, torch.tensor([0]))
    assert loss_img.item() == pytest.approx(math.log(2))  # softmax (1/2, 1/2)
    assert loss_txt.item() == pytest.approx(math.log(4 / 3))  # softmax (3/4, 1/4)
    _, loss_txt = instance_loss(logits_img, logits_txt, torch.tensor([0]), labels_txt=torch.tensor([1]))
    assert loss_txt.item() == pytest.approx(math.log(4))


def test_instance_loss_is_batch_mean():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    loss_img, _ = instance_loss(logits, logits, torch.tensor([0, 0]))
    assert loss_img.item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)


def test_ranking_paper_by_hand():
    # pair 0: s(I,T)=0.6, s(I,Tn)=0.8, s(T,In)=0.8 -> hinges 1-0.6+0.8 = 1.2 each
    # pair 1: s(I,T)=1,   s(I,Tn)=-1,  s(T,In)=0   -> hinges 0 and 0
    img = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # unnormalised on purpose
    txt = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    neg_txt = torch.tensor([[0.8, 0.6], [0.0, -5.0]])
    neg_img = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    loss = ranking_loss(img, txt, margin=1.0, mode="paper", neg_img=neg_img, neg_txt=neg_txt)
    assert loss.item() == pytest.approx(2.4 / 4)  # summed over pairs, divided by B = 2 * pairs


def test_ranking_in_batch_modes_by_hand():
    # margin 1: hinge(i, j) = 1 - 0.6 + sim = 0.4 where sim = 0 and 1.2 where sim = 0.8
    # each anchor (row or column) has one 0.4 and one 1.2 violation
    hardest = ranking_loss(IMG3, TXT3, margin=1.0, mode="hardest")
    assert hardest.item() == pytest.approx((1.2 + 1.2) * 3 / 3)
    total = ranking_loss(IMG3, TXT3, margin=1.0, mode="sum")
    assert total.item() == pytest.approx((1.6 + 1.6) * 3 / 3)


def test_ranking_labels_mask_same_class_pairs():
    # labels 0,0,1: pairs (0,1) and (1,0) are not negatives
    # image rows: {1.2}, {0.4}, {0.4, 1.2}; caption columns: {0.4}, {1.2}, {1.2, 0.4}
    labels = torch.tensor([0, 0, 1])
    hardest = ranking_loss(IMG3, TXT3, margin=1.0, mode="hardest", labels=labels)
    assert hardest.item() == pytest.approx((1.2 + 0.4 + 1.2 + 0.4 + 1.2 + 1.2) / 3)
    total = ranking_loss(IMG3, TXT3, margin=1.0, mode="sum", labels=labels)
    assert total.item() == pytest.approx((1.2 + 0.4 + 1.6 + 0.4 + 1.2 + 1.6) / 3)


def test_ranking_zero_when_well_separated():
    x = torch.eye(4)
    assert ranking_loss(x, x, margin=0.5, mode="hardest").item() == 0
    assert ranking_loss(x, x, margin=0.5, mode="sum").item() == 0


def test_ranking_errors():
    with pytest.raises(ConfigError, match="hardest"):
        ranking_loss(IMG3, TXT3, mode="triplet")
    with pytest.raises(ValueError, match="neg_img"):
        ranking_loss(IMG3, TXT3, mode="paper")


@pytest.mark.parametrize("mode", ["paper", "hardest", "sum"])
def test_ranking_gradients_flow(mode):
    torch.manual_seed(0)
    img, txt = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    negs = {"neg_img": torch.randn(4, 8, requires_grad=True), "neg_txt": torch.randn(4, 8, requires_grad=True)}
    loss = ranking_loss(img, txt, margin=2.0, mode=mode, **(negs if mode == "paper" else {}))
    loss.backward()
    assert loss.item() > 0 and img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0
    if mode == "paper":
        assert negs["neg_img"].grad.abs().sum() > 0 and negs["neg_txt"].grad.abs().sum() > 0


def test_mine_hard_negatives_by_hand():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    candidates = torch.tensor([[0.0, 1.0], [10.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    # cosine to e1: 0, 0.995, 0.707, -1  -> 1;  to e2: 1, 0.0995, 0.707, 0 -> 0
    assert mine_hard_negatives(anchors, candidates).tolist() == [1, 0]
    excluded = mine_hard_negatives(anchors, candidates, torch.tensor([6, 5]), torch.tensor([5, 6, 7, 7]))
    assert excluded.tolist() == [2, 2]
    with pytest.raises(ValueError):
        mine_hard_negatives(anchors[:1], candidates[:1], torch.tensor([5]), torch.tensor([5]))


def test_batch_instance_loss_by_hand():
    # two orthogonal samples, gamma 1: logits [[1, 0], [0, 1]], each CE = log(1 + e^-1)
    loss = BatchInstanceLoss(gamma=1.0)(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_batch_instance_loss_matches_pytorch_metric_learning(seed):
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(16, 12, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 6, (16,), generator=generator)  # repeated labels
    for gamma in (1.0, 64.0):
        ours = BatchInstanceLoss(gamma=gamma)(embeddings, labels)
        theirs = pml_losses.InstanceLoss(gamma=gamma)(embeddings, labels)
        assert ours.item() == pytest.approx(theirs.item(), abs=1e-6, rel=1e-6)
    # without labels every sample is its own instance, PML's labels = arange(B)
    ours = BatchInstanceLoss()(embeddings)
    theirs = pml_losses.InstanceLoss()(embeddings, torch.arange(16))
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6, rel=1e-6)
