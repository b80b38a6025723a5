"""Tiny datasets written in the canonical raw formats (gzipped IDX, the CIFAR-10 python tarball).

Each class is a bright square at its own place on a noisy background: easy for the LeNet to learn,
so a tiny run has a clean accuracy well above chance that an attack can push down.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

SPOTS = [(r, c) for r in (2, 11, 20) for c in (2, 11, 20)] + [(11, 11)]


def images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 60, size=(n, size, size)).astype(np.uint8)
    for i, label in enumerate(y):
        r, c = SPOTS[label]
        if label == 9:  # the centre spot doubles as class 4's: make class 9 a ring
            x[i, 8:20, 8:20] = 220
            x[i, 11:17, 11:17] = 30
        else:
            x[i, r:r + 6, c:c + 6] = 230
    return x, y.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(header + array.astype(np.uint8).tobytes())


def write_mnist(folder: Path, n_train: int = 300, n_test: int = 100) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = images(n, 28, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    return md5s(folder)


def write_cifar10(folder: Path, n_train: int = 300, n_test: int = 100) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n, seed):
        grey, y = images(n, 32, seed)
        rgb = np.stack([grey, np.roll(grey, 1, axis=2), grey // 2], axis=1)  # N, 3, 32, 32
        return pickle.dumps({"batch_label": "tiny", "labels": y.tolist(), "data": rgb.reshape(n, -1),
                             "filenames": [f"{i}.png" for i in range(n)]}, protocol=2)

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        members = {f"data_batch_{i}": batch(n_train // 5, 10 + i) for i in range(1, 6)}
        members["test_batch"] = batch(n_test, 20)
        members["batches.meta"] = pickle.dumps({"label_names": [str(i) for i in range(10)]}, protocol=2)
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    with open(folder / "cifar-10-python.tar.gz", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return md5s(folder)


def md5s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
