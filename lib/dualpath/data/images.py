"""Image reading and the paper's image transforms.

Training augmentation follows the official code (SPEC section 3.4): random aspect ratio
crop sized as a fraction of the largest crop that fits, bicubic resize, horizontal flip.
Normalisation uses ImageNet mean/std by default because the torchvision backbones were
trained with it (the MatConvNet original subtracted a dataset mean only).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from ..errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image fully as RGB; a missing, corrupt or truncated file raises DataError naming it."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: PIL is lazy and would fail later, far from the file name
            return img.convert("RGB")
    except FileNotFoundError as e:
        raise DataError(f"image file {path} does not exist") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path} (corrupt or truncated file?): {e}") from e


class PaperRandomCrop:
    """Random-aspect crop of the official code, resized to ``size`` x ``size`` (bicubic).

    1. aspect ratio W/H uniform in ``ratio``;
    2. the largest crop of that aspect that fits in the image, scaled (both sides) by a
       factor uniform in ``scale``;
    3. placed uniformly at random; 4. resized to ``size``.
    Unlike torchvision's RandomResizedCrop there is no rejection loop: the crop always fits.
    Randomness comes from torch's generator, so ``torch.manual_seed`` makes it reproducible.
    """

    def __init__(self, size: int = 224, ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 scale: tuple[float, float] = (0.8, 1.0)):
        if not (0 < ratio[0] <= ratio[1]) or not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"need 0 < ratio[0] <= ratio[1] and 0 < scale[0] <= scale[1] <= 1, "
                             f"got ratio={ratio}, scale={scale}")
        self.size = size
        self.ratio = ratio
        self.scale = scale

    def get_params(self, width: int, height: int,
                   generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
        """Crop box ``(top, left, h, w)`` for an image of ``width`` x ``height``."""
        u = torch.rand(4, generator=generator).tolist()
        aspect = self.ratio[0] + u[0] * (self.ratio[1] - self.ratio[0])
        frac = self.scale[0] + u[1] * (self.scale[1] - self.scale[0])
        if width / height >= aspect:   # image wider than the crop: height limits it
            max_h, max_w = height, height * aspect
        else:
            max_w, max_h = width, width / aspect
        w = min(width, max(1, round(frac * max_w)))
        h = min(height, max(1, round(frac * max_h)))
        left = min(width - w, math.floor(u[2] * (width - w + 1)))
        top = min(height - h, math.floor(u[3] * (height - h + 1)))
        return top, left, h, w

    def __call__(self, img: Any) -> Any:
        width, height = F.get_image_size(img)
        top, left, h, w = self.get_params(width, height)
        return F.resized_crop(img, top, left, h, w, [self.size, self.size],
                              interpolation=InterpolationMode.BICUBIC, antialias=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, ratio={self.ratio}, scale={self.scale})"


def train_transform(size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> T.Compose:
    """PIL image -> normalised float tensor [3, size, size] with the paper's augmentation."""
    return T.Compose([PaperRandomCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


def test_transform(size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD, flip: bool = False) -> T.Compose:
    """Deterministic resize to ``size`` x ``size``; ``flip=True`` always mirrors (test-time flip)."""
    steps: list[Callable] = [T.Resize((size, size), interpolation=InterpolationMode.BICUBIC, antialias=True)]
    if flip:
        steps.append(T.RandomHorizontalFlip(p=1.0))
    return T.Compose(steps + [T.ToTensor(), T.Normalize(mean, std)])


# Not a test: keeps pytest from collecting the function when a test module imports it.
test_transform.__test__ = False  # type: ignore[attr-defined]


# ------------------------------------------------------------- the loader's pixel path (uint8)
# Workers hand the training process uint8 tensors (4x fewer bytes to pickle, pin and copy than
# floats) and the model's device normalises them: `normalize(x, mean, std)` equals ToTensor +
# Normalize of the same pixels.
def augment(img: Image.Image, size: int, generator: torch.Generator) -> torch.Tensor:
    """The paper's training augmentation (the crop of :class:`PaperRandomCrop`, then a flip with
    probability 1/2) drawn from ``generator``: uint8 [3, size, size]. The same generator state
    gives the same pixels, in any process."""
    width, height = img.size
    top, left, h, w = PaperRandomCrop(size).get_params(width, height, generator)
    img = F.resized_crop(img, top, left, h, w, [size, size], interpolation=InterpolationMode.BICUBIC,
                         antialias=True)
    if torch.rand(1, generator=generator).item() < 0.5:
        img = F.hflip(img)
    return F.pil_to_tensor(img)


def resized(img: Image.Image, size: int, flip: bool = False) -> torch.Tensor:
    """:func:`test_transform`'s resize (and mirror) as uint8 [3, size, size]."""
    img = F.resize(img, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return F.pil_to_tensor(F.hflip(img) if flip else img)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 pixels [B, 3, H, W] -> floats normalised with ``mean`` / ``std`` on x's device."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255 - m) / s


class AugmentedImages(torch.utils.data.Dataset):
    """Training crops keyed by (image index, seed): ``dataset[(i, s)]`` is image ``i`` augmented
    with a generator seeded ``s``, so a crop depends on its key alone, not on the worker or the
    order in which workers read (a resumed run redraws the same crops)."""

    def __init__(self, paths: Sequence[str | os.PathLike], size: int):
        self.paths = [Path(p) for p in paths]
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        index, seed = key
        return augment(load_image(self.paths[index]), self.size, torch.Generator().manual_seed(seed))


class MirroredImages(torch.utils.data.Dataset):
    """Test views of images (file paths or PIL images): uint8 [2, 3, size, size], the whole image
    resized and its mirror (SPEC 1.4)."""

    def __init__(self, images: Sequence, size: int):
        self.images = list(images)
        self.size = size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        im = self.images[i]
        img = im.convert("RGB") if hasattr(im, "convert") else load_image(im)
        return torch.stack([resized(img, self.size), resized(img, self.size, flip=True)])


class ImageDataset(torch.utils.data.Dataset):
    """Images read from ``paths`` through ``transform`` (a PIL image is returned without one)."""

    def __init__(self, paths: Sequence[str | os.PathLike], transform: Callable | None = None):
        self.paths = [Path(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        img = load_image(self.paths[i])
        return self.transform(img) if self.transform is not None else img
