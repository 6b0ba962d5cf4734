"""A CNN made of blocks: the lab's ConvBlock or a ResNet basic block, with options.

``num_blocks`` blocks of ``conv_dim`` channels; every ``downsample_every``-th block halves
the spatial size, with a 2x2 max-pool after it (``downsample="maxpool"``, as in the lab) or
with its first convolution strided (``downsample="stride"``).  Then dropout, flatten, a
hidden fully-connected layer of ``fc_dim`` units and the classifier.  Spatial sizes are
computed from the input; configurations that would shrink it to nothing are refused.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from textsearch.config import CNNConfig
from textsearch.models.errors import ModelConfigError


def _norm(channels: int, batchnorm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batchnorm else nn.Identity()


class ConvBlock(nn.Module):
    """The lab's block: 3x3 convolution (+ BatchNorm if asked), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, batchnorm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=not batchnorm)
        self.norm = _norm(out_ch, batchnorm)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    """ResNet basic block: conv-BN-ReLU-conv-BN plus shortcut, then ReLU.

    The shortcut is the identity when shape is kept, else a 1x1 (strided) projection.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, batchnorm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=not batchnorm)
        self.norm1 = _norm(out_ch, batchnorm)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=not batchnorm)
        self.norm2 = _norm(out_ch, batchnorm)
        self.relu = nn.ReLU()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=not batchnorm),
                _norm(out_ch, batchnorm),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _halve(size: int) -> int:
    """Size after a 2x max-pool with ceil_mode, equal to a stride-2 3x3 conv with padding 1."""
    return (size + 1) // 2


def conv_blocks(input_dims: tuple[int, ...], c: CNNConfig) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """``c``'s blocks for ``input_dims`` inputs, and the (channels, height, width) they give.

    Raises :class:`ModelConfigError` for options they cannot be built with.
    """
    problem = c.problem()
    if problem is not None:
        raise ModelConfigError(problem)
    channels, height, width = input_dims
    layers: list[nn.Module] = []
    in_ch = channels
    for i in range(1, c.num_blocks + 1):
        down = i % c.downsample_every == 0
        if down and min(height, width) < 2:
            raise ModelConfigError(
                f"impossible architecture: block {i} of {c.num_blocks} would downsample a "
                f"{height}x{width} feature map; use fewer blocks or a larger downsample_every"
            )
        stride = 2 if down and c.downsample == "stride" else 1
        block_cls = ResidualBlock if c.block == "residual" else ConvBlock
        layers.append(block_cls(in_ch, c.conv_dim, stride=stride, batchnorm=c.batchnorm))
        if down and c.downsample == "maxpool":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        if down:
            height, width = _halve(height), _halve(width)
        in_ch = c.conv_dim
    return nn.Sequential(*layers), (c.conv_dim, height, width)


class CNN(nn.Module):
    """``config``'s blocks on ``input_dims`` images (channels first), then the classifier.

    Raises :class:`ModelConfigError` for options it cannot be built with.
    """

    def __init__(self, input_dims: tuple[int, ...], num_classes: int,
                 config: CNNConfig | None = None):
        super().__init__()
        c = self.config = config or CNNConfig()
        self.features, self.feature_shape = conv_blocks(input_dims, c)
        self.head = nn.Sequential(
            nn.Dropout(c.dropout),
            nn.Flatten(),
            nn.Linear(math.prod(self.feature_shape), c.fc_dim),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.fc_dim, num_classes),
        )
        # NHWC: oneDNN's CPU convolutions train these CNNs 1.44x faster on the median (0.94-1.74x
        # over 8 configs, 1 thread; benchmarks/memory_format.py); cuDNN takes either.  Values are unchanged,
        # and so are checkpoints (a state dict keeps shapes, not strides).
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(x))
