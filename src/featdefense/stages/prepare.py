"""prepare: decode the raw files to uint8 arrays (N, 28, 28); CIFAR-10 grayscale-resized to 28x28.

Stored as uint8 (pixel value = 255 * intensity); every stage reads them as float32 x / 255 in [0, 1].
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np

from ..data.formats import read_cifar10, read_mnist
from ..data.transforms import grayscale_resize
from ..io import atomic_path, provenance
from ..data import MANIFEST

log = logging.getLogger(__name__)


def decode(raw_dir: Path, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    if dataset == "mnist":
        return read_mnist(raw_dir, split)
    rgb, y = read_cifar10(raw_dir, split)
    return grayscale_resize(rgb), y


def run(p, inp, out, dataset):
    raw = Path(inp["raw"])
    manifest = json.loads((raw / MANIFEST).read_text())
    with atomic_path(out["prepared"]) as tmp, h5py.File(tmp, "w") as f:
        for split in ("train", "test"):
            x, y = decode(raw, dataset, split)
            g = f.create_group(split)
            g.create_dataset("x", data=x, track_times=False)
            g.create_dataset("y", data=y, track_times=False)
            log.info("%s %s: %s images %s", dataset, split, len(x), x.shape[1:])
        f.attrs["dataset"] = dataset
        f.attrs["canonical"] = manifest["canonical"]
        f.attrs["raw_files"] = json.dumps(manifest["files"], sort_keys=True)
        f.attrs["encoding"] = "uint8, intensity = value / 255"
        f.attrs["provenance"] = json.dumps(provenance("prepare", p, {"manifest": raw / MANIFEST}), sort_keys=True)
