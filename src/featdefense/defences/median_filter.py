"""median_filter: a k x k median filter in front of the target; needs no training.

The README's example of adding a defence: this one module and the params section
`defences.median_filter` are all it takes. The median passes gradients to the pixel it selects, so
white-box PGD attacks through it directly.
"""
import torch.nn.functional as F
from torch import nn

from . import Defence


class MedianFilter(nn.Module):
    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.k = kernel_size

    def forward(self, x):
        n, c, h, w = x.shape
        pad = self.k // 2
        patches = F.unfold(F.pad(x, (pad, pad, pad, pad), mode="reflect"), self.k)  # n, c*k*k, h*w
        return patches.view(n, c, self.k * self.k, h * w).median(dim=2).values.view(n, c, h, w)


DEFENCE = Defence(
    name="median_filter", label="median filter", kind="preprocessor",
    build=lambda cfg, shape: MedianFilter(cfg["kernel_size"]), order=40,
    description="a median filter (no training): the README's example of adding a defence",
    schema={"type": "object", "additionalProperties": False, "required": ["kernel_size"],
            "properties": {"kernel_size": {"enum": [3, 5]}}})
