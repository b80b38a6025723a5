"""Parsers for the canonical raw formats: gzipped IDX files (MNIST, Fashion-MNIST) and CIFAR-10's python
tarball. Below the dataset modules, which name their files and what a split is."""
from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

from .. import FeatdefenseError

IDX_FILES = {  # MNIST's file names, which Fashion-MNIST keeps
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class FormatError(FeatdefenseError):
    pass


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzip-compressed) as a uint8 array of its declared shape."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise FormatError(f"{path}: not a readable gzip file: {e}") from None
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise FormatError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise FormatError(f"{path}: IDX header declares shape {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def read_idx_split(raw_dir: str | Path, split: str, label: str = "MNIST") -> tuple[np.ndarray, np.ndarray]:
    """A split of an MNIST-like dataset (IDX files of MNIST's names): uint8 images (N, 1, H, W), int64 labels."""
    images_name, labels_name = IDX_FILES[split]
    x = read_idx(Path(raw_dir) / images_name)
    y = read_idx(Path(raw_dir) / labels_name)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise FormatError(f"{raw_dir}: {label} {split} images {x.shape} and labels {y.shape} do not match")
    return x[:, None], y.astype(np.int64)


def read_cifar10(raw_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 as uint8 NHWC RGB images (N, 32, 32, 3) and int64 labels."""
    path = Path(raw_dir) / CIFAR_ARCHIVE
    xs, ys = [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for batch in CIFAR_BATCHES[split]:
                member = tar.extractfile(f"cifar-10-batches-py/{batch}")
                entry = pickle.load(member, encoding="latin1")
                xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(entry["labels"], dtype=np.int64))
    except (OSError, EOFError, KeyError, tarfile.TarError, pickle.UnpicklingError) as e:
        raise FormatError(f"{path}: not a readable CIFAR-10 python archive: {e}") from None
    return np.concatenate(xs).transpose(0, 2, 3, 1), np.concatenate(ys)  # NCHW -> NHWC
