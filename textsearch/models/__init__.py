"""Models: every class maps ``(B, C, H, W)`` images to ``(B, num_classes)`` logits."""

from textsearch.models.cnn import CNN, CNNConfig, ConvBlock, ResidualBlock
from textsearch.models.mlp import MLP, MLPConfig

MODEL_CLASSES = {"MLP": MLP, "CNN": CNN}

__all__ = ["CNN", "CNNConfig", "ConvBlock", "MLP", "MLPConfig", "MODEL_CLASSES", "ResidualBlock"]
