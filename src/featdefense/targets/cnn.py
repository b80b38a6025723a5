"""A larger target on the same input as the paper's LeNet: four 3x3 convolutions (32, 32, 64, 64) with batch
normalisation, two max-poolings, 256 hidden units. Not the paper's: it asks whether the paper's CIFAR-10
accuracy (92.9% clean) is within reach of a network on 28x28 grayscale images (issue 20, experiment 4).
"""
from torch import nn

from . import Target


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class CNN(nn.Sequential):
    def __init__(self, num_classes: int = 10):
        super().__init__(
            *_block(1, 32), *_block(32, 32), nn.MaxPool2d(2),    # 32 x 14 x 14
            *_block(32, 64), *_block(64, 64), nn.MaxPool2d(2),   # 64 x 7 x 7
            nn.Flatten(), nn.Dropout(0.3),
            nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(256, num_classes),
        )


TARGET = Target(name="cnn", label="CNN (4 conv)", input_shape=(1, 28, 28), classes=10, build=lambda classes: CNN(classes),
                order=10, description="four 3x3 convolutions (32, 32, 64, 64) with batch norm, two max-poolings, 256 hidden")
