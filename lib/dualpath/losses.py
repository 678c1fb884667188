"""Losses (SPEC §2): the classifier-based instance loss, the bidirectional ranking loss, hard-negative
mining (SPEC §3.3), and the later batch-wise instance loss for comparison.

Reductions follow SPEC §2 "Loss scale": MatConvNet sums every loss over the batch and divides the
gradient by the batch size B, so each loss here is a sum over the batch divided by B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import IN_BATCH_NEGATIVES
from .errors import ConfigError

RANKING_MODES = ("paper", *IN_BATCH_NEGATIVES)   # "paper": one given negative pair per anchor


def instance_loss(logits_img: torch.Tensor, logits_txt: torch.Tensor, labels: torch.Tensor,
                  labels_txt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of each branch against its instance labels: (L_img, L_txt).

    `labels_txt` defaults to `labels`; Stage II needs it because the mined negative texts carry
    their own classes, not those of the images at the same batch positions.
    """
    labels_txt = labels if labels_txt is None else labels_txt
    return F.cross_entropy(logits_img, labels), F.cross_entropy(logits_txt, labels_txt)


def _hinge(margin: float, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    return torch.clamp(margin - (positive - negative), min=0)


def ranking_loss(img: torch.Tensor, txt: torch.Tensor, margin: float = 1.0, mode: str = "paper",
                 neg_img: torch.Tensor | None = None, neg_txt: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None,
                 neg_labels: torch.Tensor | None = None) -> torch.Tensor:
    """Bidirectional hinge ranking loss on cosine similarity (features are L2-normalised here).

    (img[i], txt[i]) are the positive pairs.  Modes:

    'paper'   (SPEC §2, §3.3) each pair i has given negatives neg_txt[i] (the mined hard text) and
              neg_img[i] (a random image):
                  sum_i [ max(0, m - s(I_i,T_i) + s(I_i,Tn_i)) + max(0, m - s(T_i,I_i) + s(T_i,In_i)) ] / B
              with B = 2 * pairs, the batch that holds the anchors plus their negatives; this is
              lambda1 * (1/B) * sum over pairs in SPEC's loss-scale note.
    'hardest' (VSE++ max violation) negatives come from the batch: for each image the hardest other
              caption, for each caption the hardest other image; the two hinges are summed per index
              and averaged over the batch size.
    'sum'     (VSE0) every in-batch negative in both directions, summed, divided by the batch size.

    For the in-batch modes, `labels` (one per pair) marks pairs of the same image / class, which are
    not used as negatives; without labels only the diagonal is excluded. In 'paper' mode, `labels`
    (of the anchors) with `neg_labels` (of the negative images) drop the caption-anchored hinge of
    a pair whose negative image has the anchor's label (another view of the same image).
    """
    if mode not in RANKING_MODES:
        raise ConfigError(f"unknown ranking loss mode {mode!r}; known modes: {', '.join(RANKING_MODES)}")
    img, txt = F.normalize(img, dim=1), F.normalize(txt, dim=1)
    if mode == "paper":
        if neg_img is None or neg_txt is None:
            raise ValueError("ranking_loss mode 'paper' needs neg_img and neg_txt")
        neg_img, neg_txt = F.normalize(neg_img, dim=1), F.normalize(neg_txt, dim=1)
        pos = (img * txt).sum(1)
        i2t = _hinge(margin, pos, (img * neg_txt).sum(1))
        t2i = _hinge(margin, pos, (txt * neg_img).sum(1))
        if labels is not None and neg_labels is not None:
            t2i = t2i.masked_fill(labels.to(t2i.device) == neg_labels.to(t2i.device), 0)
        return (i2t + t2i).sum() / (2 * img.shape[0])

    sim = img @ txt.t()  # sim[i, j] = s(image i, caption j)
    pos = sim.diag()
    same = (torch.eye(len(sim), dtype=torch.bool, device=sim.device) if labels is None
            else labels[:, None] == labels[None, :])
    # rows: image anchors against every caption; columns: caption anchors against every image
    i2t = _hinge(margin, pos[:, None], sim).masked_fill(same, 0)
    t2i = _hinge(margin, pos[None, :], sim).masked_fill(same, 0)
    if mode == "hardest":
        return (i2t.amax(dim=1) + t2i.amax(dim=0)).mean()
    return (i2t.sum() + t2i.sum()) / len(sim)


@torch.no_grad()
def mine_hard_negatives(img_anchor: torch.Tensor, candidate_txt: torch.Tensor,
                        anchor_labels: torch.Tensor | None = None,
                        candidate_labels: torch.Tensor | None = None) -> torch.Tensor:
    """For each anchor image, the index of the candidate caption with the highest cosine similarity.

    SPEC §3.3 draws the candidates from other images, so no exclusion is needed; passing both label
    tensors additionally skips candidates of the anchor's own class.
    """
    sim = F.normalize(img_anchor, dim=1) @ F.normalize(candidate_txt, dim=1).t()
    if anchor_labels is not None and candidate_labels is not None:
        same = anchor_labels[:, None] == candidate_labels[None, :]
        if same.all(dim=1).any():
            raise ValueError("an anchor has no candidate of another class to mine")
        sim = sim.masked_fill(same, float("-inf"))
    return sim.argmax(dim=1)


class BatchInstanceLoss(nn.Module):
    """Batch-wise "instance loss" as in pytorch-metric-learning's `InstanceLoss` (SPEC §2, [PYREF]).

    logits = gamma * cos(e_i, e_j) over the batch (self-similarity included) and mean cross-entropy.
    The target of sample i is the rank r(i) of its label among the batch's distinct sorted labels,
    used as a column index.  With labels = arange(B) (the default: every sample its own instance)
    that is the sample itself.  With repeated labels it is sample r(i), which need not share i's label;
    this matches PML's definition exactly, for comparison runs, and is not the paper's loss.
    """

    def __init__(self, gamma: float = 64.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        e = F.normalize(embeddings, dim=1)
        logits = self.gamma * (e @ e.t())
        if labels is None:
            targets = torch.arange(len(e), device=e.device)
        else:
            targets = torch.unique(labels.to(e.device), return_inverse=True)[1]
        return F.cross_entropy(logits, targets)
