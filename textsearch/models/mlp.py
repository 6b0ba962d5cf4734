"""The lab's multi-layer perceptron: flatten, fc1, ReLU, dropout, fc2, ReLU, dropout, fc3."""

from __future__ import annotations

import math

import torch
from torch import nn

from textsearch.models.errors import ModelConfigError


class MLP(nn.Module):
    """fc1/fc2: hidden widths (units). dropout: drop probability after each hidden layer.

    Raises :class:`ModelConfigError` for options it cannot be built with.
    """

    def __init__(self, input_dims: tuple[int, ...], num_classes: int, fc1: int = 1024,
                 fc2: int = 128, dropout: float = 0.5):
        super().__init__()
        if fc1 <= 0 or fc2 <= 0:
            raise ModelConfigError(f"fc1 and fc2 must be positive, got {fc1}, {fc2}")
        if not 0.0 <= dropout < 1.0:
            raise ModelConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_dims), fc1), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(fc1, fc2), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(fc2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
