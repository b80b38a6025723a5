"""Colour images to a grayscale target's input: grayscale (ITU-R 601-2 luma), then a square bilinear resize,
antialiased (CIFAR-10 to the paper's 28x28)."""
from __future__ import annotations

import numpy as np
from PIL import Image


def grayscale_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, size, size) uint8.

    PIL does both steps: mode "L" is L = R*299/1000 + G*587/1000 + B*114/1000 (fixed point,
    rounded), and its bilinear resize widens the filter when it shrinks, i.e. it antialiases.
    Integer in, integer out: the same bytes give the same bytes.
    """
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    out = np.empty((len(rgb), size, size), dtype=np.uint8)
    for i, img in enumerate(rgb):
        grey = Image.fromarray(img, mode="RGB").convert("L")
        out[i] = np.asarray(grey.resize((size, size), Image.Resampling.BILINEAR))
    return out
