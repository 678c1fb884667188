"""Image reading errors, the paper's random crop, and the transforms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dualpath.data.images import (ImageDataset, PaperRandomCrop, load_image, test_transform,
                                  train_transform)
from dualpath.errors import DataError


@pytest.fixture
def jpeg(tmp_path):
    """A real 300x200 JPEG with a horizontal gradient (so flips are visible)."""
    img = Image.linear_gradient("L").transpose(Image.Transpose.TRANSPOSE).resize((300, 200)).convert("RGB")
    path = tmp_path / "gradient.jpg"
    img.save(path, quality=95)
    return path


def test_load_image_returns_rgb(jpeg, tmp_path):
    assert load_image(jpeg).mode == "RGB" and load_image(jpeg).size == (300, 200)
    gray = tmp_path / "gray.png"
    Image.new("L", (8, 8)).save(gray)
    assert load_image(gray).mode == "RGB"


def test_load_image_errors_name_the_file(jpeg, tmp_path):
    with pytest.raises(DataError, match=r"missing\.jpg does not exist"):
        load_image(tmp_path / "missing.jpg")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(DataError, match=r"garbage\.jpg"):
        load_image(garbage)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated\.jpg.*corrupt or truncated"):
        load_image(truncated)


def test_paper_crop_geometry():
    crop = PaperRandomCrop(224)
    gen = torch.Generator().manual_seed(0)
    for width, height in [(300, 200), (200, 300), (224, 224), (500, 120)]:
        for _ in range(200):
            top, left, h, w = crop.get_params(width, height, gen)
            assert 0 <= left <= width - w and 0 <= top <= height - h
            # aspect within [3/4, 4/3], up to rounding of small crops
            assert 0.75 - 2 / h <= w / h <= 4 / 3 + 2 / h
            # at least 80% of the largest crop of that aspect: one side touches 80%+ of the image
            assert w >= 0.8 * width - 1 or h >= 0.8 * height - 1


def test_paper_crop_full_scale_takes_the_largest_fitting_crop():
    crop = PaperRandomCrop(224, ratio=(1.0, 1.0), scale=(1.0, 1.0))
    top, left, h, w = crop.get_params(300, 200)
    assert (h, w, top) == (200, 200, 0) and 0 <= left <= 100


def test_paper_crop_output_and_determinism(jpeg):
    img = load_image(jpeg)
    torch.manual_seed(1)
    a = PaperRandomCrop(64)(img)
    torch.manual_seed(1)
    b = PaperRandomCrop(64)(img)
    assert a.size == (64, 64) and np.array_equal(np.asarray(a), np.asarray(b))


def test_train_and_test_transforms(jpeg):
    img = load_image(jpeg)
    x = train_transform(32)(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    t = test_transform(32)(img)
    assert torch.equal(t, test_transform(32)(img))  # deterministic
    flipped = test_transform(32, flip=True)(img)
    assert torch.allclose(flipped, t.flip(-1))
    assert t[:, :, -1].mean() > t[:, :, 0].mean()  # gradient survives: bright on the right


def test_image_dataset(jpeg):
    ds = ImageDataset([jpeg, jpeg], test_transform(16))
    assert len(ds) == 2 and ds[1].shape == (3, 16, 16)
    assert isinstance(ImageDataset([jpeg])[0], Image.Image)
