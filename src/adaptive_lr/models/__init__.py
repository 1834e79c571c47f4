"""Plain nn.Modules; tasks receive them already built from config."""
from adaptive_lr.models.cnn import SmallCNN
from adaptive_lr.models.mlp import MLP

__all__ = ["MLP", "SmallCNN"]
