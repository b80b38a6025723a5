"""The target classifier: the paper's 4-layer LeNet on 28x28x1 images in [0, 1]."""
import torch
from torch import nn


class Target(nn.Sequential):
    def __init__(self, num_classes: int = 10):
        super().__init__(
            nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2, 2),      # 20 x 12 x 12
            nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2, 2),     # 50 x 4 x 4
            nn.Flatten(),                                            # 800
            nn.Linear(800, 500), nn.ReLU(),
            nn.Linear(500, num_classes),
        )
        # Channels-last weights: oneDNN's convolutions, and above all the gradient with respect to the input
        # that every attack step takes, run about 1.6x faster on a CPU than with NCHW weights
        # (benchmarks/pgd.py). The weights' values, and the model files' state dicts, are the same.
        self.to(memory_format=torch.channels_last)
