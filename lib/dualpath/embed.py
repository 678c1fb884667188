"""Test-time embeddings (SPEC 1.4), shared by validation, testing and the search API.

Image: the pre-ReLU BN output of the head for the image and for its mirror image, summed,
then L2-normalised. Text: the pre-ReLU BN output of the text CNN, summed over the chosen
placements of the sentence (``all`` = every admissible offset), then L2-normalised.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .data.text import all_shifts, encode_ids
from .models.mode import eval_mode


@torch.no_grad()
def text_embeddings(text_cnn: torch.nn.Module, ids_list: Sequence[Sequence[int]], length: int,
                    policy: str = "all", batch_size: int = 1024) -> torch.Tensor:
    """L2-normalised text embeddings [n, d] of encoded captions."""
    device = next(text_cnn.parameters()).device
    if policy == "all":
        # One row per (caption, offset); rows of a caption are summed back with index_add.
        rows, owner = [], []
        for i, ids in enumerate(ids_list):
            shifts = all_shifts(ids, length)
            rows.append(shifts)
            owner.append(torch.full((shifts.shape[0],), i, dtype=torch.long))
        rows_t, owner_t = torch.cat(rows), torch.cat(owner)
    else:
        rows_t = encode_ids(ids_list, length, shift=policy)
        owner_t = torch.arange(len(ids_list))
    out = None
    with eval_mode(text_cnn):
        for start in range(0, rows_t.shape[0], batch_size):
            feat = text_cnn(rows_t[start:start + batch_size].to(device))["feat"].float().cpu()
            if out is None:
                out = torch.zeros(len(ids_list), feat.shape[1])
            out.index_add_(0, owner_t[start:start + batch_size], feat)
    if out is None:
        return torch.zeros(0, 0)
    return F.normalize(out, dim=1)


@torch.no_grad()
def image_embeddings_from_inputs(image_head: torch.nn.Module, view_inputs: Sequence[torch.Tensor],
                                 to_pooled=None, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings from per-view inputs (each [n, ...]), summed over views.

    ``to_pooled`` maps a view input to pooled backbone features (e.g. the fine-tuned top
    blocks applied to a cached map); ``None`` means the inputs already are pooled features.
    """
    device = next(image_head.parameters()).device
    total = None
    with eval_mode(image_head):
        for view in view_inputs:
            parts = []
            for start in range(0, view.shape[0], batch_size):
                x = view[start:start + batch_size].to(device).float()
                pooled = to_pooled(x) if to_pooled is not None else x
                parts.append(image_head(pooled)["feat"].float().cpu())
            feats = torch.cat(parts)
            total = feats if total is None else total + feats
    return F.normalize(total, dim=1)


@torch.no_grad()
def image_embeddings_from_pixels(backbone: torch.nn.Module, image_head: torch.nn.Module, images: Sequence,
                                 size: int, batch_size: int = 32, workers: int = 0,
                                 channels_last: bool = False) -> torch.Tensor:
    """L2-normalised image embeddings of image files or PIL images: whole image + mirror, summed.

    ``workers`` processes decode and resize while the model runs (0: in this process);
    ``channels_last`` hands the backbone NHWC batches (``cfg.channels_last``)."""
    from .data.images import MirroredImages, normalize

    device = next(image_head.parameters()).device
    # a generator of its own: iterating must not draw from torch's global RNG (training's dropout)
    loader = torch.utils.data.DataLoader(MirroredImages(images, size), batch_size=batch_size,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         generator=torch.Generator().manual_seed(0))
    out = []
    with eval_mode(backbone, image_head):
        for views in loader:                      # uint8 [B, 2, 3, size, size]
            views = views.to(device, non_blocking=True)
            feats = 0
            for v in range(views.shape[1]):
                x = normalize(views[:, v], backbone.mean, backbone.std)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                feats = feats + image_head(backbone(x))["feat"].float().cpu()
            out.append(feats)
    return F.normalize(torch.cat(out), dim=1) if out else torch.zeros(0, 0)
