"""The loss network: VGG-16's convolutional part, frozen, returning the named ReLU feature maps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Index of each ReLU in torchvision's vgg16().features.
LAYERS = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}
# Preprocessing of an RGB image in [0, 1]: (x * scale - mean) / std.
PREPROCESSING = {
    "torchvision": dict(scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "caffe": dict(scale=255.0, mean=(123.68, 116.779, 103.939), std=(1.0, 1.0, 1.0)),
}


def vgg16_features() -> nn.Sequential:
    """VGG-16's convolutional part as torchvision lays it out (its key names, `features.N`), initialised as
    torchvision's VGG initialises it; its fully connected classifier (120 M of its 138 M parameters, never
    used by a loss network) is not built."""
    from torchvision.models.vgg import cfgs, make_layers  # here, not at the top: importing torchvision costs ~1 s

    features = make_layers(cfgs["D"])
    for m in features:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.ReLU):
            m.inplace = False  # we read intermediate maps
    return features


class LossNetwork(nn.Module):
    """Grayscale [0, 1] images -> {layer name: feature map} of a frozen VGG-16.

    The image is resized to `input_size` (bilinear, antialiased), replicated to 3 channels and
    normalised as the weights expect; the network never trains.
    """

    def __init__(self, features: nn.Sequential, layers: list[str], input_size: int, preprocessing: str):
        super().__init__()
        self.layers = list(layers)
        depth = max((LAYERS[name] for name in self.layers), default=-1) + 1
        self.features = features[:depth]
        self.input_size = input_size
        spec = PREPROCESSING[preprocessing]
        self.scale = spec["scale"]
        self.register_buffer("mean", torch.tensor(spec["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec["std"]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # frozen: never leaves eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        h = (x.expand(-1, 3, -1, -1) * self.scale - self.mean) / self.std
        wanted = {LAYERS[name]: name for name in self.layers}
        out = {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in wanted:
                out[wanted[i]] = h
        return out
