"""The frozen-CNN feature cache.

Stage I never updates the backbone, and on a CPU Stage II only trains its top blocks, so
the expensive part of the image branch is computed once per (backbone, weights, dataset
split, image transform, view) and stored as safetensors (no pickle). The file name is a
hash of everything the features depend on, so a changed setting never reuses a stale file.

Views: 0 = the whole image, 1 = its mirror image (the two the test-time embedding sums),
2.. = the paper's random crops + flips (SPEC 3.4), each drawn from a seed derived from
(seed, image, view) so a cache is the same whichever worker computed which image.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from .data.corpus import Corpus
from .data.images import PaperRandomCrop, load_image, test_transform
from .errors import DataError
from .io import atomic_path
from .progress import progress

CACHE_FORMAT = 2   # bump when the layout of a cache file changes


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a cached feature depends on."""

    backbone: str
    weights: str
    image_size: int
    top_blocks: int      # maps are cached at the input of the top `top_blocks` blocks; 0: none
    views: int
    seed: int
    # images per forward pass: batched convolutions differ in the last float bits, which is
    # enough to send training down another trajectory, so the batch is part of the key
    batch: int = 32

    def key(self, corpus: Corpus, split: str) -> str:
        ids = corpus.splits[split]
        images = "\n".join(corpus.images[i] for i in ids)
        spec = asdict(self)
        if self.views <= 2:   # whole image and mirror: no random crop, so no seed in the key
            spec["seed"] = 0
        payload = json.dumps({"spec": spec, "format": CACHE_FORMAT,
                              "dataset": corpus.name, "split": split,
                              "images": hashlib.sha256(images.encode()).hexdigest(),
                              "weights_file": _file_stamp(self.weights)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _file_stamp(weights: str) -> str:
    """A local weights file is part of the key through its size and mtime."""
    p = Path(weights)
    if p.is_file():
        st = p.stat()
        return f"{st.st_size}-{int(st.st_mtime)}"
    return weights


class _ViewDataset(Dataset):
    def __init__(self, paths: list[Path], views: int, size: int, mean, std, seed: int):
        self.paths, self.views, self.seed = paths, views, seed
        self.plain = test_transform(size, mean, std)
        self.flip = test_transform(size, mean, std, flip=True)
        self.crop = PaperRandomCrop(size)
        self.after_crop = test_transform(size, mean, std)   # crop is already size x size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = load_image(self.paths[i])
        out = [self.plain(img)]
        if self.views > 1:
            out.append(self.flip(img))
        for v in range(2, self.views):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 1_000_003 + i * 101 + v)
                view = self.crop(img)
                if torch.rand(()) < 0.5:
                    view = view.transpose(0)   # PIL.Image.FLIP_LEFT_RIGHT
            out.append(self.after_crop(view))
        return torch.stack(out)


@dataclass
class Features:
    """Cached features of one split: ``pooled`` [views, n, C] and optional ``maps`` [views, n, c, h, w]."""

    pooled: torch.Tensor
    maps: torch.Tensor | None
    path: Path

    @property
    def n_views(self) -> int:
        return self.pooled.shape[0]

    def image_input(self, view: torch.Tensor | int, index: torch.Tensor, use_maps: bool) -> torch.Tensor:
        """Rows ``index`` from per-row view ids ``view``: what the trainable image path consumes."""
        src = self.maps if use_maps else self.pooled
        if src is None:
            raise DataError(f"{self.path}: cache holds no feature maps; rebuild it with top_blocks > 0")
        return src[view, index].float()


def cache_path(spec: FeatureSpec, corpus: Corpus, split: str, root: Path) -> Path:
    return Path(root) / corpus.name / f"{spec.backbone}-{split}-{spec.key(corpus, split)}.safetensors"


def load_or_extract(spec: FeatureSpec, backbone: torch.nn.Module, corpus: Corpus, split: str,
                    root: Path, *, num_workers: int | None = None,
                    show_progress: bool = True, log=print) -> Features:
    """Return the cached features of ``split``, extracting them first when absent."""
    path = cache_path(spec, corpus, split, root)
    if not path.exists():
        t0 = time.perf_counter()
        pooled, maps = extract(spec, backbone, corpus, split, batch_size=spec.batch,
                               num_workers=num_workers, show_progress=show_progress)
        tensors = {"pooled": pooled}
        if maps is not None:
            # float16 halves the largest cache; maps only feed training, where the rounding
            # is far below the augmentation noise.
            tensors["maps"] = maps.half()
        meta = {"spec": json.dumps(asdict(spec)), "dataset": corpus.name, "split": split}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        n = len(corpus.splits[split]) * spec.views
        dt = time.perf_counter() - t0
        log(f"features: {corpus.name}/{split} {n} views in {dt:.0f} s ({n / dt:.1f} img/s) -> {path.name}")
    return read(path)


def read(path: Path) -> Features:
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            pooled = f.get_tensor("pooled")
            maps = f.get_tensor("maps") if "maps" in keys else None
    except Exception as e:  # a truncated or foreign file: say which, and how to recover
        raise DataError(f"feature cache {path} is unreadable ({e}); delete it to recompute") from None
    return Features(pooled=pooled, maps=maps, path=path)


def extract(spec: FeatureSpec, backbone: torch.nn.Module, corpus: Corpus, split: str, *,
            batch_size: int = 32, num_workers: int | None = None,
            show_progress: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the frozen backbone over every view of every image of ``split``."""
    ids = corpus.splits[split]
    paths = [corpus.image_path(int(i)) for i in ids]
    ds = _ViewDataset(paths, spec.views, spec.image_size, backbone.mean, backbone.std, spec.seed)
    if num_workers is None:
        # JPEG decoding in one worker overlaps the convolutions that use every core.
        num_workers = 1 if (os.cpu_count() or 1) > 1 else 0
    loader = DataLoader(ds, batch_size=max(1, batch_size // spec.views), num_workers=num_workers,
                        persistent_workers=False)
    device = next(backbone.parameters()).device
    backbone.eval()
    # channels-last convolutions run about 2x faster on CPU (measured on EfficientNet-Lite0).
    # Converted outside inference mode: weights created inside it are inference tensors, which
    # Stage II could then never fine-tune in this process.
    # Extraction must leave the process as it found it, or a run that fills the cache trains to
    # other numbers than one that reads it: the loader draws its workers' base seed from the global
    # generator (fork_rng gives it back), and channels-last weights change the float rounding of
    # the top blocks that Stage II fine-tunes (the memory format is restored).
    with torch.random.fork_rng(devices=[]):
        backbone.to(memory_format=torch.channels_last)
        try:
            with torch.inference_mode():
                return _extract_loop(spec, backbone, loader, split, device, show_progress)
        finally:
            backbone.to(memory_format=torch.contiguous_format)


def _extract_loop(spec, backbone, loader, split, device, show_progress):
    pooled_out, maps_out = [], []
    for batch in progress(loader, desc=f"features {split}", enable=show_progress):
        b, v = batch.shape[:2]
        x = batch.flatten(0, 1).to(device).contiguous(memory_format=torch.channels_last)
        if spec.top_blocks > 0:
            fmap = backbone.features_before_top(spec.top_blocks, x)
            pooled = backbone.forward_top(spec.top_blocks, fmap)
            maps_out.append(fmap.float().cpu().unflatten(0, (b, v)))
        else:
            pooled = backbone(x)
        pooled_out.append(pooled.float().cpu().unflatten(0, (b, v)))
    pooled = torch.cat(pooled_out).transpose(0, 1).contiguous()
    maps = torch.cat(maps_out).transpose(0, 1).contiguous() if maps_out else None
    return pooled, maps
