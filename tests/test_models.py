"""Every model variant: output shape, gradients flowing, impossible configs refused."""

from __future__ import annotations

import itertools

import pytest
import torch

from textsearch.errors import UserError
from textsearch.models import CNN, MLP, CNNConfig, ModelConfigError, ResidualBlock
from textsearch.models.cnn import ConvBlock


@pytest.mark.parametrize(
    "num_blocks,block,batchnorm,downsample",
    list(itertools.product([1, 2, 3, 6], ["plain", "residual"], [False, True], ["maxpool", "stride"])),
)
def test_cnn_variants_forward_backward(num_blocks, block, batchnorm, downsample):
    cfg = CNNConfig(num_blocks=num_blocks, block=block, batchnorm=batchnorm,
                    downsample=downsample, conv_dim=8, fc_dim=16)
    model = CNN((1, 28, 28), 83, cfg)
    x = torch.rand(4, 1, 28, 28)
    out = model(x)
    assert out.shape == (4, 83)
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    halvings = num_blocks // 2
    size = 28
    for _ in range(halvings):
        size = (size + 1) // 2
    assert model.feature_shape == (8, size, size)


def test_strided_and_maxpool_give_the_same_sizes():
    for every in (1, 2):
        a = CNN((1, 28, 28), 10, CNNConfig(num_blocks=4, downsample="maxpool", downsample_every=every))
        b = CNN((1, 28, 28), 10, CNNConfig(num_blocks=4, downsample="stride", downsample_every=every))
        assert a.feature_shape == b.feature_shape
    strided = CNN((1, 28, 28), 10, CNNConfig(num_blocks=2, downsample="stride"))
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in strided.modules())


def test_residual_block_shortcuts():
    same = ResidualBlock(8, 8, stride=1)
    assert isinstance(same.shortcut, torch.nn.Identity)
    proj = ResidualBlock(1, 8, stride=2)
    assert isinstance(proj.shortcut[0], torch.nn.Conv2d) and proj.shortcut[0].stride == (2, 2)
    assert proj(torch.rand(2, 1, 28, 28)).shape == (2, 8, 14, 14)
    no_bn = ResidualBlock(8, 8, batchnorm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in no_bn.modules())


def test_conv_block_is_the_labs_block():
    block = ConvBlock(1, 4)
    assert block.conv.kernel_size == (3, 3) and isinstance(block.norm, torch.nn.Identity)
    assert (block(torch.randn(1, 1, 5, 5)) >= 0).all()


def test_too_many_halvings_are_refused():
    with pytest.raises(ModelConfigError, match="impossible architecture"):
        CNN((1, 28, 28), 10, CNNConfig(num_blocks=6, downsample_every=1, downsample="stride"))
    with pytest.raises(ModelConfigError, match="impossible architecture"):
        CNN((1, 4, 4), 10, CNNConfig(num_blocks=4, downsample_every=1))


@pytest.mark.parametrize("kwargs,match", [
    ({"num_blocks": 0}, "num_blocks"), ({"num_blocks": 7}, "num_blocks"),
    ({"block": "dense"}, "block must be"), ({"downsample": "avg"}, "downsample must be"),
    ({"conv_dim": 0}, "conv_dim"), ({"fc_dim": -3}, "fc_dim"), ({"dropout": 1.0}, "dropout"),
])
def test_bad_cnn_options(kwargs, match):
    with pytest.raises(ModelConfigError, match=match):
        CNN((1, 28, 28), 10, CNNConfig(**kwargs))
    with pytest.raises(UserError, match=match):  # the same rule, checking a user's config
        CNNConfig(**kwargs).validate()


def test_mlp_shape_and_bad_sizes():
    mlp = MLP((1, 28, 28), 10, fc1=32, fc2=16, dropout=0.1)
    assert mlp(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ModelConfigError, match="fc1 and fc2 must be positive"):
        MLP((1, 28, 28), 10, fc1=0)


def test_model_errors_become_user_errors_where_a_config_builds_the_model():
    from textsearch.training import TrainConfig, make_model

    assert not issubclass(ModelConfigError, UserError)
    cfg = TrainConfig(num_blocks=6, downsample_every=1, downsample="stride")
    with pytest.raises(UserError, match="impossible architecture"):
        make_model(cfg, (1, 28, 28), 10)
    with pytest.raises(UserError, match="fc1 and fc2 must be positive"):
        make_model(TrainConfig(model_class="MLP", fc1=0), (1, 28, 28), 10)


def test_cnn_runs_channels_last_with_the_same_values():
    """NHWC weights and activations (faster on CPU), the values of the NCHW computation."""
    import copy

    cnn = CNN((1, 28, 28), 10, CNNConfig(num_blocks=3, block="residual", conv_dim=8,
                                         downsample="maxpool", downsample_every=2)).eval()
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not convs[1].weight.is_contiguous()  # truly NHWC, not merely both
    nchw = copy.deepcopy(cnn).to(memory_format=torch.contiguous_format)
    nchw.forward = lambda x: nchw.head(nchw.features(x))  # the plain NCHW path
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(cnn(x), nchw(x), rtol=1e-4, atol=1e-5)
    # a checkpoint written by one loads into the other
    nchw.load_state_dict(cnn.state_dict())
