"""The matmul forward of the text CNN equals the same weights run as real Conv1d layers."""
import torch
import torch.nn.functional as F

from dualpath.models.text import TextCNN


def _conv_reference(model: TextCNN, ids: torch.Tensor) -> torch.Tensor:
    """SPEC 1.2 literally: [B, C, L] maps, F.conv1d with a left pad of one for the 1x2 convs."""
    x = model.embedding_bn(model.embedding(ids).transpose(1, 2))
    for stage in model.stages:
        for block in stage:
            y = torch.relu(block.bn1(F.conv1d(x, block.conv1.weight)))
            y = torch.relu(block.bn2(F.conv1d(F.pad(y, (1, 0)), block.conv2.weight, stride=block.stride)))
            y = block.bn3(F.conv1d(y, block.conv3.weight))
            if isinstance(block.shortcut, torch.nn.Identity):
                short = x
            else:
                conv, norm = block.shortcut
                short = norm(F.conv1d(x, conv.weight, stride=block.stride))
            x = torch.relu(y + short)
    return model.fc5_2_bn(model.fc5_2(x.amax(dim=2)))


def test_matmul_forward_equals_conv1d_reference():
    torch.manual_seed(0)
    for length, width in ((32, 0.25), (31, 0.5), (56, 0.125)):
        model = TextCNN(50, embed_dim=20, length=length, width=width, out_dim=64).double()
        ids = torch.randint(0, 50, (6, length))
        ids[:, :5] = 0   # padding columns, as the position shift leaves them
        for train in (True, False):
            model.train(train)
            torch.manual_seed(1)
            ours = model(ids)["feat"]
            torch.manual_seed(1)
            ref = _conv_reference(model, ids)
            assert torch.allclose(ours, ref, atol=1e-10, rtol=1e-9), (length, width, train)
