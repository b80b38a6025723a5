"""prepare: decode the raw files to uint8 arrays (N, C, H, W) with the dataset module's reader (CIFAR-10's
grayscale-resizes to 28x28), checked against what the module declares before anything is written.

Stored as uint8 (pixel value = 255 * intensity); every stage reads them as float32 x / 255 in [0, 1].
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np

from ..data import MANIFEST
from ..datasets import DATASETS, checked
from ..io import atomic_path, provenance

log = logging.getLogger(__name__)


def decode(raw_dir: Path, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    d = DATASETS[dataset]
    return checked(d, *d.read(raw_dir, split), f"{raw_dir} ({split} split)")


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
