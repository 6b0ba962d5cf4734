"""LineCNN: the character CNN slid across a whole line, one class-score vector per window.

The CNN's blocks (:class:`textsearch.models.cnn.CNN`, with all their options) run over the
whole ``28 x W`` line at once.  Their feature map is ``f`` times smaller than the line (``f``
= 2 per downsampling block), so a window of ``window_width`` pixels moved by
``window_stride`` pixels is a convolution of ``window_width / f`` feature columns with stride
``window_stride / f`` (rounded, at least 1), covering the feature map's full height: the
CNN's hidden fully-connected layer, applied to every window at once, as in the lab's
LineCNN.  A 1x1 convolution then gives each window's scores over the mapping, whose token 0
(``<B>``) is the CTC blank.

Output: ``(B, num_classes, T)`` for ``T`` windows.  Options the line cannot be read with
raise :class:`ModelConfigError`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from textsearch.config import CNNConfig
from textsearch.models.cnn import conv_blocks
from textsearch.models.errors import ModelConfigError


def window_steps(feature_width: int, kernel: int, stride: int) -> int:
    """Windows of ``kernel`` columns every ``stride`` columns that fit ``feature_width``."""
    return 0 if feature_width < kernel else (feature_width - kernel) // stride + 1


class LineCNN(nn.Module):
    def __init__(self, input_dims: tuple[int, ...], num_classes: int,
                 config: CNNConfig | None = None, window_width: int = 28,
                 window_stride: int = 14):
        super().__init__()
        channels, height, width = input_dims
        if window_width > width:
            raise ModelConfigError(f"window_width {window_width} is wider than the line "
                                   f"({width} pixels)")
        c = self.config = config or CNNConfig()
        self.features, (conv_dim, fh, fw) = conv_blocks(input_dims, c)  # over the whole line
        factor = width / fw  # how much narrower the feature map is than the line
        self.kernel = max(1, math.floor(window_width / factor + 0.5))  # halves round up
        self.stride = max(1, math.floor(window_stride / factor + 0.5))
        self.num_steps = window_steps(fw, self.kernel, self.stride)
        if self.num_steps < 1:
            raise ModelConfigError(f"window_width {window_width} does not fit the line's "
                                   f"feature map ({fw} columns after downsampling)")
        self.window = nn.Conv2d(conv_dim, c.fc_dim, kernel_size=(fh, self.kernel),
                                stride=(fh, self.stride))
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(c.dropout),
                                  nn.Conv1d(c.fc_dim, num_classes, 1))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        features = self.window(self.features(x))  # (B, fc_dim, 1, T)
        return self.head(features.squeeze(2))  # (B, num_classes, T)
