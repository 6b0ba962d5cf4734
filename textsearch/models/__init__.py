"""Models: every class maps ``(B, C, H, W)`` images to ``(B, num_classes)`` logits.

Options a model cannot be built with raise :class:`ModelConfigError`.
"""

from textsearch.config import MLPConfig
from textsearch.models.cnn import CNN, CNNConfig, ConvBlock, ResidualBlock
from textsearch.models.errors import ModelConfigError
from textsearch.models.mlp import MLP

__all__ = ["CNN", "CNNConfig", "ConvBlock", "MLP", "MLPConfig", "ModelConfigError", "ResidualBlock"]
