"""A CNN made of blocks: the lab's ConvBlock or a ResNet basic block, with options.

``num_blocks`` blocks of ``conv_dim`` channels; every ``downsample_every``-th block halves
the spatial size, with a 2x2 max-pool after it (``downsample="maxpool"``, as in the lab) or
with its first convolution strided (``downsample="stride"``).  Then dropout, flatten, a
hidden fully-connected layer of ``fc_dim`` units and the classifier.  Spatial sizes are
computed from the input; configurations that would shrink it to nothing are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from textsearch.errors import UserError
from textsearch.options import option

BLOCKS = ("plain", "residual")
DOWNSAMPLES = ("maxpool", "stride")


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


@dataclass
class CNNConfig:
    """The CNN's options (``dropout`` is the MLP's too)."""

    num_blocks: int = option(2, "CNN: number of blocks (1..6)", minimum=0, above=True)
    block: str = option("plain", f"CNN: block type ({', '.join(BLOCKS)})", choices=BLOCKS)
    batchnorm: bool = option(False, "CNN: BatchNorm after convolutions")
    downsample: str = option("maxpool", f"CNN: how to halve the feature map "
                             f"({', '.join(DOWNSAMPLES)})", choices=DOWNSAMPLES)
    downsample_every: int = option(2, "CNN: halve the feature map after every n-th block",
                                   minimum=0, above=True)
    conv_dim: int = option(64, "CNN: channels per block", minimum=0, above=True)
    fc_dim: int = option(128, "CNN: hidden fully-connected width", minimum=0, above=True)
    dropout: float = option(0.5, "dropout probability in [0, 1) (CNN and MLP)", minimum=0)

    def validate(self) -> None:
        if not 1 <= self.num_blocks <= 6:
            raise UserError(f"num_blocks must be between 1 and 6, got {self.num_blocks}")
        if self.block not in BLOCKS:
            raise UserError(f"block must be one of {', '.join(BLOCKS)}, got {self.block!r}")
        if self.downsample not in DOWNSAMPLES:
            raise UserError(
                f"downsample must be one of {', '.join(DOWNSAMPLES)}, got {self.downsample!r}")
        if self.downsample_every < 1:
            raise UserError(f"downsample_every must be >= 1, got {self.downsample_every}")
        if self.conv_dim <= 0 or self.fc_dim <= 0:
            raise UserError(f"conv_dim and fc_dim must be positive, got {self.conv_dim}, {self.fc_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")


def _halve(size: int) -> int:
    """Size after a 2x max-pool with ceil_mode, equal to a stride-2 3x3 conv with padding 1."""
    return (size + 1) // 2


class CNN(nn.Module):
    def __init__(self, input_dims: tuple[int, ...], num_classes: int,
                 config: CNNConfig | None = None):
        super().__init__()
        c = config or CNNConfig()
        c.validate()
        self.config = c
        channels, height, width = input_dims
        layers: list[nn.Module] = []
        in_ch = channels
        for i in range(1, c.num_blocks + 1):
            down = i % c.downsample_every == 0
            if down and min(height, width) < 2:
                raise UserError(
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
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c.conv_dim, height, width)
        self.head = nn.Sequential(
            nn.Dropout(c.dropout),
            nn.Flatten(),
            nn.Linear(math.prod(self.feature_shape), c.fc_dim),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.fc_dim, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
