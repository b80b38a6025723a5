"""Datasets: one module each, found here by name; a run uses those params.yaml lists under `datasets`.

A dataset module defines `DATASET = Dataset(...)` (declared and found as every plug-in kind is: plugins.py):
its name and label, its canonical raw files with their MD5s (written here once), the canonical host they
are downloaded from (a URL prefix; `sources.local.yaml` may name another place holding the same files),
`read(raw_dir, split)`, a function of the module giving a split as uint8 images (N, C, H, W) and int64
labels, the image shape and class count it promises, and the paper's table it fills, if any. The download
and prepare stages, the stage graph's dataset wildcard and the report learn the set from the modules; the
params section of a dataset is `download.<name>` (the MD5s of a non-canonical copy).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import plugins
from ..plugins import Kind


@dataclass(frozen=True)
class Dataset:
    name: str
    label: str                                  # its name in reports ("MNIST")
    files: dict[str, str]                       # canonical raw file name -> its MD5
    source: str                                 # the canonical host: a URL prefix holding those files
    read: Callable                              # read(raw_dir, split) -> (uint8 (N, C, H, W), int64 (N,))
    shape: tuple[int, int, int]                 # (channels, height, width) of what read returns
    classes: int                                # labels 0 .. classes - 1
    paper_table: str | None = None              # the paper's table it fills (paper_results.yaml), or None
    order: int = 100
    description: str = ""
    module: str = field(default="", compare=False)  # filled in by discovery: its source file

    def __post_init__(self):
        if not (isinstance(self.files, dict) and self.files
                and all(isinstance(v, str) and len(v) == 32 for v in self.files.values())):
            raise ValueError(f"dataset {self.name}: files must map each raw file's name to its 32-hex-digit MD5")
        plugins.check_image_spec(f"dataset {self.name}", "shape", self.shape, self.classes)


KIND = Kind("DATASET", Dataset, functions=("read",))
DATASETS: dict[str, Dataset] = plugins.discover(KIND, __path__[0], __name__, named=True)


def checked(d: Dataset, x, y, where: str):
    """What `d.read` returned, refused (naming `where`, the field and what is allowed) unless it is what the
    declaration promises: uint8 images of its shape, as many int64 labels in 0 .. classes - 1."""
    import numpy as np

    from ..io import ArtifactError

    def refuse(what: str):
        return ArtifactError(f"{where}: dataset {d.name}'s reader ({d.module}) returned {what}")

    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        raise refuse(f"images of type {getattr(x, 'dtype', type(x).__name__)}; allowed: a uint8 numpy array")
    if x.ndim != 4 or tuple(x.shape[1:]) != d.shape:
        raise refuse(f"images of shape {x.shape}; allowed: (N, {', '.join(map(str, d.shape))}) as its shape declares")
    if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.shape != (len(x),):
        raise refuse(f"labels {getattr(y, 'dtype', type(y).__name__)} of shape {getattr(y, 'shape', None)}; "
                     f"allowed: int64 of shape ({len(x)},), one per image")
    if len(y) and (y.min() < 0 or y.max() >= d.classes):
        raise refuse(f"labels {int(y.min())} .. {int(y.max())}; allowed: 0 .. {d.classes - 1} (classes: {d.classes})")
    return x, y


def listed(path: str | Path = "params.yaml") -> list[str]:
    """The datasets a run uses: the modules params.yaml's `datasets` names, read where the stage graph is built;
    every declared one where there is no params.yaml (the graph of all that can run). A name that is no module
    is left out here and refused by params.validate, which every command and Snakemake run before anything
    (with the key, the value and what is allowed), so that `featdefense params` can still mend the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        return list(DATASETS)
    try:
        names = (yaml.safe_load(path.read_text()) or {}).get("datasets", list(DATASETS))
    except (yaml.YAMLError, AttributeError):
        return list(DATASETS)  # not a mapping: params.validate says so
    return [n for n in names if n in DATASETS] if isinstance(names, list) else list(DATASETS)


__all__ = ["Dataset", "DATASETS", "KIND", "checked", "listed"]
