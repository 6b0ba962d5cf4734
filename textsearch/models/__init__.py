"""Models: every class maps ``(B, C, H, W)`` images to ``(B, num_classes)`` logits."""

from textsearch.config import MODEL_NAMES, MLPConfig
from textsearch.models.cnn import CNN, CNNConfig, ConvBlock, ResidualBlock
from textsearch.models.mlp import MLP

MODEL_CLASSES = {"MLP": MLP, "CNN": CNN}
assert tuple(MODEL_CLASSES) == MODEL_NAMES

__all__ = ["CNN", "CNNConfig", "ConvBlock", "MLP", "MLPConfig", "MODEL_CLASSES", "ResidualBlock"]
